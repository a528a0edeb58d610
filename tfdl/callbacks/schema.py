"""The `callbacks` section: each key switches one callback of the stack on or off.

Light on purpose (pydantic only): the CLI validates pipelines without importing Keras.
"""

import math
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from tfdl.schema import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Rate,
    StrictModel,
)

Mode = Literal["auto", "min", "max"]


class EarlyStoppingConfig(StrictModel):
    monitor: str = "val_loss"
    mode: Mode = "auto"
    min_delta: NonNegativeFloat = 0.0
    patience: NonNegativeInt = 5
    start_from_epoch: NonNegativeInt = 0
    restore_best_weights: bool = True


class ReduceLROnPlateauConfig(StrictModel):
    monitor: str = "val_loss"
    mode: Mode = "auto"
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    patience: NonNegativeInt = 3
    min_delta: NonNegativeFloat = 1e-4
    cooldown: NonNegativeInt = 0
    min_lr: NonNegativeFloat = 0.0


class DropoutSchedule(StrictModel):
    """The rate of every dropout layer, set at the start of each epoch e (0-based).

    constant: start;  linear: start -> end over `epochs`;  step: start for `epochs`
    epochs, then end;  cosine: end + (start - end) (1 + cos(pi min(e / epochs, 1))) / 2.
    """

    kind: Literal["constant", "linear", "step", "cosine"] = "linear"
    start: Rate = 0.5
    end: Rate = 0.1
    epochs: PositiveInt = 10

    def rate(self, epoch: int) -> float:
        t = min(epoch / self.epochs, 1.0)
        match self.kind:
            case "constant":
                return self.start
            case "linear":
                return self.start + (self.end - self.start) * t
            case "step":
                return self.start if epoch < self.epochs else self.end
            case "cosine":
                return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * t))


# Learning-rate schedules, per optimizer step; lengths are given in epochs. They start
# from train.optimizer.learning_rate (one-cycle: from max_lr / div_factor).


class ExponentialLR(StrictModel):
    """lr = lr0 * decay_rate ** (step / steps_per_epoch): decay_rate per epoch, smoothly."""

    kind: Literal["exponential"]
    decay_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9


class PiecewiseLR(StrictModel):
    """lr = values[i] between boundaries[i-1] and boundaries[i] (boundaries in epochs)."""

    kind: Literal["piecewise"]
    boundaries: Annotated[list[PositiveInt], Field(min_length=1)]
    values: Annotated[list[PositiveFloat], Field(min_length=2)]

    @model_validator(mode="after")
    def _one_more_value(self):
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(
                f"{len(self.boundaries)} boundaries need {len(self.boundaries) + 1} values, "
                f"got {len(self.values)}"
            )
        if self.boundaries != sorted(set(self.boundaries)):
            raise ValueError(f"boundaries must increase, got {self.boundaries}")
        return self


class CosineLR(StrictModel):
    """Linear warmup 0 -> lr0 over warmup_epochs, then cosine decay to alpha * lr0."""

    kind: Literal["cosine"]
    warmup_epochs: NonNegativeInt = 0
    alpha: Rate = 0.0  # final rate as a fraction of lr0


class OneCycleLR(StrictModel):
    """One-cycle: cosine up from max_lr/div_factor to max_lr over pct_start of training,
    then cosine down to max_lr/(div_factor*final_div_factor)."""

    kind: Literal["one_cycle"]
    max_lr: PositiveFloat | None = None  # None: train.optimizer.learning_rate
    pct_start: Fraction = 0.3
    div_factor: Annotated[float, Field(gt=1.0)] = 25.0
    final_div_factor: Annotated[float, Field(gt=1.0)] = 1e4


LRSchedule = Annotated[
    Union[ExponentialLR, PiecewiseLR, CosineLR, OneCycleLR],  # noqa: UP007
    Field(discriminator="kind"),
]


class ModelCheckpointConfig(StrictModel):
    """Keep the best model seen (by `monitor`); logged as the run's `best_model` artifact."""

    monitor: str = "val_loss"
    mode: Mode = "auto"


class GradientHealthConfig(StrictModel):
    """Per-layer gradient norms on one fixed training batch at the end of each epoch."""

    batch_size: PositiveInt = 128
    vanish_below: PositiveFloat = 1e-6  # a layer's norm below this: vanishing
    explode_above: PositiveFloat = 1e3  # above this: exploding


class HiddenUnitsConfig(StrictModel):
    """Distinct units of each hidden dense layer at the end of each epoch: units whose
    weights and bias differ by at most `tolerance` (relative to the layer's largest
    weight) count as one."""

    tolerance: PositiveFloat = 1e-5


class CallbacksConfig(StrictModel):
    """Each key switches a callback on (a mapping, `{}` for defaults) or off (null)."""

    dropout_schedule: DropoutSchedule | None = None
    lr_schedule: LRSchedule | None = None
    reduce_lr_on_plateau: ReduceLROnPlateauConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    model_checkpoint: ModelCheckpointConfig | None = None
    gradient_health: GradientHealthConfig | None = None
    hidden_units: HiddenUnitsConfig | None = None
    terminate_on_nan: bool = True  # a NaN loss stops the run and marks it FAILED
    backup: bool = True  # back up each finished epoch so `tfdl train --resume` can continue

    @model_validator(mode="after")
    def _one_owner_of_the_learning_rate(self):
        if self.lr_schedule is not None and self.reduce_lr_on_plateau is not None:
            raise ValueError(
                "lr_schedule and reduce_lr_on_plateau both set the learning rate; keep one"
            )
        return self
