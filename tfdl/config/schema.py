"""The pipeline schema: data, model, training (its optimizer, loss, metrics), callbacks and
tracking, as pydantic models. A pipeline file is one `PipelineConfig`."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from tfdl.callbacks.schema import CallbacksConfig
from tfdl.data.schema import DataConfig, Seed
from tfdl.models.schema import ModelConfig
from tfdl.schema import PositiveFloat, PositiveInt, Rate, RegisteredName, StrictModel

# ----------------------------------------------------------------------------- optimizers


class _Optimizer(StrictModel):
    learning_rate: PositiveFloat = 0.001
    clipnorm: PositiveFloat | None = None  # clip each gradient tensor's norm
    clipvalue: PositiveFloat | None = None  # clip each gradient element
    global_clipnorm: PositiveFloat | None = None  # clip the norm of all gradients together

    @model_validator(mode="after")
    def _one_clip(self):
        set_ = [k for k in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(self, k)]
        if len(set_) > 1:
            raise ValueError(
                f"set at most one of clipnorm, clipvalue, global_clipnorm (got {set_})"
            )
        return self


class SGD(_Optimizer):
    name: Literal["sgd"] = "sgd"
    learning_rate: PositiveFloat = 0.01


class Momentum(_Optimizer):
    """SGD with momentum."""

    name: Literal["momentum"] = "momentum"
    learning_rate: PositiveFloat = 0.01
    momentum: Rate = 0.9


class Nesterov(_Optimizer):
    """SGD with Nesterov momentum."""

    name: Literal["nesterov"] = "nesterov"
    learning_rate: PositiveFloat = 0.01
    momentum: Rate = 0.9


class Adagrad(_Optimizer):
    name: Literal["adagrad"] = "adagrad"
    learning_rate: PositiveFloat = 0.01
    initial_accumulator_value: PositiveFloat = 0.1
    epsilon: PositiveFloat = 1e-7


class Adadelta(_Optimizer):
    name: Literal["adadelta"] = "adadelta"
    learning_rate: PositiveFloat = 1.0  # Adadelta's step is scaled by rates it tracks itself
    rho: Rate = 0.95
    epsilon: PositiveFloat = 1e-7


class RMSprop(_Optimizer):
    name: Literal["rmsprop"] = "rmsprop"
    rho: Rate = 0.9
    momentum: Rate = 0.0
    epsilon: PositiveFloat = 1e-7


class Adam(_Optimizer):
    name: Literal["adam"] = "adam"
    beta_1: Rate = 0.9
    beta_2: Rate = 0.999
    epsilon: PositiveFloat = 1e-7
    amsgrad: bool = False


class AdamW(Adam):
    name: Literal["adamw"] = "adamw"
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.004


OPTIMIZERS = (SGD, Momentum, Nesterov, Adagrad, Adadelta, RMSprop, Adam, AdamW)


def _optimizer_name(value) -> str | None:
    # A section without a name is Adam, so `train.optimizer.learning_rate=0.1` just works.
    return value.get("name", "adam") if isinstance(value, dict) else getattr(value, "name", None)


OptimizerConfig = Annotated[
    Union[tuple(Annotated[c, Tag(c.model_fields["name"].default)] for c in OPTIMIZERS)],  # noqa: UP007
    Discriminator(_optimizer_name),
]

# ------------------------------------------------------------------------ train and callbacks

Loss = Literal[
    "auto",
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "mse",
    "mae",
    "huber",
]
Metric = Literal["accuracy", "auc", "precision", "recall", "mae", "mse", "rmse"]


class TrainConfig(StrictModel):
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 32
    seed: Seed = 42  # drives the split, data generation and initial weights
    optimizer: OptimizerConfig = Field(default_factory=Adam)
    loss: Loss = "auto"  # auto: follows the task (and the output activation)
    metrics: list[Metric] | None = None  # None: accuracy for classifiers, mae for regression
    verbose: Literal[0, 1, 2] = 2  # Keras fit verbosity: 2 prints one line per epoch
    # Bit-identical reruns on CPU: TensorFlow's deterministic kernels (slower) and the seed.
    deterministic: bool = False
    # Batches per compiled call (Keras steps_per_execution): fewer trips through Python per
    # epoch; batch-level callbacks then see every Nth batch. "auto" and the XLA choice are
    # set from measurement: see benchmarks/results/speed.md.
    steps_per_execution: PositiveInt | Literal["auto"] = "auto"
    jit_compile: bool | Literal["auto"] = "auto"
    # fit: Keras's model.fit. custom: the lecture's loop written out (tfdl.gradient_descent):
    # a GradientTape step per batch, same data, metrics, callbacks and records.
    loop: Literal["fit", "custom"] = "fit"
    # How fit reads the training split. auto: a split in memory is held whole as tensors
    # and each compiled call gathers its batches from it (tfdl.resident; measured faster);
    # streamed sources, splits over 1 GiB and distributed runs read tf.data. tf_data:
    # always the tf.data pipeline.
    input: Literal["auto", "tf_data"] = "auto"
    # none: one device. mirrored: one replica per GPU (without GPUs, per logical CPU
    # device), each global batch split between them and the gradients summed every step.
    # multi_worker: one process per machine, the cluster given to `tfdl train --workers
    # host:port,... --worker-index i`; worker 0 records the run (tfdl.distribute).
    distribution: Literal["none", "mirrored", "multi_worker"] = "none"
    # Compute in float16 with float32 weights and output layers (Keras' mixed_float16
    # policy; the optimizer scales the loss so small float16 gradients do not vanish).
    mixed_precision: bool = False


class TrackingConfig(StrictModel):
    experiment: Annotated[str, Field(min_length=1)] = "tfdl"
    run_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    log_model: bool = True
    # A name in MLflow's model registry: each run's model becomes a new version of it.
    register_as: RegisteredName | None = None
    system_metrics: bool = False  # MLflow's CPU, memory and GPU samples, into the run
    # How long a run waits for a tracking server that stopped answering before it fails
    # (what it could not write is kept for tfdl runs --upload).
    outage_wait_s: PositiveFloat = 300.0


class PipelineConfig(StrictModel):
    """One experiment: data -> model -> training, recorded as one MLflow run."""

    description: str = ""
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    callbacks: CallbacksConfig = Field(default_factory=CallbacksConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


SECTIONS = tuple(PipelineConfig.model_fields)
