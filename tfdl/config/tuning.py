"""The search schema (a Keras Tuner job over a pipeline's dotted paths) and its loading,
checked so that every trial the space allows is a valid pipeline."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, model_validator

from tfdl.config.loading import apply_overrides, flatten, read_yaml, validate
from tfdl.config.schema import OPTIMIZERS
from tfdl.data.schema import Seed
from tfdl.errors import ConfigError
from tfdl.schema import Int32, PositiveFloat, PositiveInt, RegisteredName, StrictModel
from tfdl.store import PROJECT


class ChoiceParam(StrictModel):
    """One of the listed values (any YAML values: numbers, strings, lists)."""

    type: Literal["choice"]
    values: Annotated[list[Any], Field(min_length=1)]

    @model_validator(mode="after")
    def _plain(self):
        # Values travel as JSON: in the overrides, Keras Tuner's choices and the logged
        # parameters. YAML also reads dates and timestamps, which JSON cannot hold.
        for value in self.values:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{value!r} is no plain YAML value (number, string, bool, list, mapping); "
                    "quote it to make it a string"
                ) from None
        return self


class IntParam(StrictModel):
    type: Literal["int"]
    min: Int32
    max: Int32
    step: PositiveInt = 1

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class FloatParam(StrictModel):
    type: Literal["float"]
    min: float
    max: float
    step: PositiveFloat | None = None  # None: continuous (random and Bayesian search only)
    sampling: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.sampling == "log" and self.min <= 0:
            raise ValueError(f"log sampling needs min > 0, got {self.min}")
        return self


class BoolParam(StrictModel):
    type: Literal["bool"]


Param = Annotated[
    Union[ChoiceParam, IntParam, FloatParam, BoolParam],  # noqa: UP007
    Field(discriminator="type"),
]


class Objective(StrictModel):
    metric: str = "val_loss"  # any metric the pipeline logs per epoch
    direction: Literal["min", "max"] = "min"


class TuningConfig(StrictModel):
    """A Keras Tuner search over a pipeline's dotted config paths."""

    # What an error about the file as a whole calls it (a pipeline's is "pipeline").
    config_noun: ClassVar[str] = "search"

    description: str = ""
    pipeline: Annotated[str, Field(min_length=1)]  # relative to the project or this file
    overrides: list[str] = Field(default_factory=list)  # fixed for every trial
    space: Annotated[dict[str, Param], Field(min_length=1)]
    tuner: Literal["random", "grid", "hyperband", "bayesian"] = "random"
    objective: Objective = Field(default_factory=Objective)
    max_trials: PositiveInt = 10
    executions_per_trial: PositiveInt = 1
    epochs: PositiveInt | None = None  # per trial; None: the pipeline's train.epochs
    hyperband_factor: Annotated[int, Field(ge=2)] = 3
    seed: Seed = 42
    # Set, these override the pipeline's train.distribution and train.mixed_precision for
    # every trial (where a search file of before set them); unset, the pipeline decides.
    distribution: Literal["none", "mirrored"] = "none"  # mirrored: one trial over all GPUs
    mixed_precision: bool = False
    # Trials per process: `tfdl tune` runs a longer search's trials in child processes,
    # each replaced after this many, as TensorFlow's memory grows with every trial a
    # process runs (tfdl/search_workers.py); null: every trial in the command's process.
    # Strict: `true` would otherwise pass as 1, a process per trial.
    worker_trials: Annotated[PositiveInt, Field(strict=True)] | None = 10
    # The best model becomes a new version of this registered model, alias "champion".
    register_as: RegisteredName | None = None


OPTIMIZER_NAME = "train.optimizer.name"
# What every optimizer takes alike, bar the learning rate whose default is each one's own.
SHARED = set.intersection(*(set(c.model_fields) for c in OPTIMIZERS)) - {"learning_rate"}


def fresh_optimizer(raw: dict) -> dict:
    """The pipeline with its optimizer section cut to the settings every optimizer shares
    (its name and clipping): when a search picks the optimizer, the pipeline's learning
    rate and its optimizer's own settings (momentum, betas) belonged to that optimizer,
    so each trial's optimizer starts from its own defaults instead. The space or the
    job's overrides set them for every trial."""
    section = (raw.get("train") or {}).get("optimizer")
    if not isinstance(section, dict):  # absent (the default), or wrong: validation says
        return raw
    kept = {k: v for k, v in section.items() if k in SHARED}
    return {**raw, "train": {**raw["train"], "optimizer": kept}}


def load_tuning(path: str | Path, overrides=()) -> tuple[TuningConfig, dict]:
    """A tuning file and its pipeline (as a raw mapping, the job's overrides applied),
    checked so that every trial the space allows is a valid pipeline."""
    path = Path(path)
    job = validate(apply_overrides(read_yaml(path), list(overrides)), TuningConfig)
    candidates = [Path(job.pipeline), path.parent / job.pipeline, PROJECT / job.pipeline]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ConfigError("pipeline", f"no such file {job.pipeline!r}", "a pipeline YAML file")
    pipeline = read_yaml(found)
    fixed = [
        *_devices(job),
        *job.overrides,
        *([f"train.epochs={job.epochs}"] if job.epochs else []),
    ]
    base = apply_overrides(pipeline, fixed)
    known = flatten(_one_process(validate(base), "train.distribution").to_dict())
    if OPTIMIZER_NAME in job.space:
        base = apply_overrides(fresh_optimizer(pipeline), fixed)
    for key, param in job.space.items():
        field = f"space.{key}"
        if key not in known:
            close = difflib.get_close_matches(key, known, n=5)
            raise ConfigError(field, f"not a setting of {job.pipeline}", ", ".join(close) or None)
        if job.tuner == "grid" and param.type == "float" and param.step is None:
            raise ConfigError(
                field, "a grid cannot enumerate a continuous float", "a step, or tuner: random"
            )
        samples = {"choice": getattr(param, "values", None), "bool": [True, False]}.get(
            param.type, [getattr(param, "min", None), getattr(param, "max", None)]
        )
        for value in samples:
            try:
                _one_process(validate(apply_overrides(base, [f"{key}={json.dumps(value)}"])))
            except ConfigError as err:
                raise ConfigError(field, f"value {value!r}: {err.problem}", err.allowed) from None
    return job, base


def _devices(job: TuningConfig) -> list[str]:
    """The job's own `distribution` and `mixed_precision`, where set, as overrides of the
    pipeline's train section: trials train through tfdl.training like any run."""
    out = [f"train.distribution={job.distribution}"] if job.distribution != "none" else []
    return out + (["train.mixed_precision=true"] if job.mixed_precision else [])


def _one_process(cfg, field: str = "train.distribution"):
    """A trial trains in one process: multi_worker, a cluster of processes, is refused."""
    if cfg.train.distribution == "multi_worker":
        raise ConfigError(
            field, "a search trains each trial in one process, not multi_worker", "none, mirrored"
        )
    return cfg
