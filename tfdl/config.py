"""The pipeline schema, YAML loading, dotted overrides, and pydantic errors as one line.

Config is data, validated once here: past this module, code trusts its inputs. Nothing in
this module imports TensorFlow, NumPy or scikit-learn, so errors answer at once.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Discriminator, Field, Tag, ValidationError, model_validator
from pydantic.fields import FieldInfo

from tfdl.callbacks.schema import CallbacksConfig
from tfdl.data.schema import DataConfig, Seed
from tfdl.errors import ConfigError
from tfdl.models.schema import ModelConfig
from tfdl.schema import PositiveFloat, PositiveInt, Rate, StrictModel
from tfdl.store import PROJECT

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


class TrackingConfig(StrictModel):
    experiment: Annotated[str, Field(min_length=1)] = "tfdl"
    run_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    log_model: bool = True


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

# ------------------------------------------------------------------------------- tuning


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
    min: int
    max: int
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
    distribution: Literal["none", "mirrored"] = "none"  # mirrored: one trial over all GPUs
    mixed_precision: bool = False


# ------------------------------------------------------------------------------- loading


def read_yaml(path: str | Path) -> dict:
    """A YAML file that must hold a mapping; any problem is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            str(path), "no such file", "a pipeline YAML file, e.g. pipelines/mlp.yaml"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "cannot be parsed"
        raise ConfigError(str(path), f"malformed YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), f"cannot be read: {err}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            str(path),
            f"the top level is a {type(raw).__name__}, not a mapping",
            ", ".join(SECTIONS),
        )
    return raw


_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.epochs=3` -> (["train", "epochs"], 3); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not _PATH.match(key.strip()):
        raise ConfigError(
            text if text.strip() else repr(text),  # an empty override is still named
            "bad override syntax",
            "dotted.path=value, e.g. train.epochs=3 model.units=[64,32]",
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(key, f"cannot parse override value {value!r}", "a YAML value") from None
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """A copy of the raw mapping with dotted paths set; validation then catches unknown keys."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for i, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                where = ".".join(keys[: i + 1])
                raise ConfigError(where, f"is a value ({child!r}), not a section", "a mapping")
            node = child
        node[keys[-1]] = value
    return raw


def validate(raw: dict, model: type[BaseModel] = PipelineConfig) -> BaseModel:
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise to_config_error(err, model) from None


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read, override and validate a pipeline file."""
    return validate(apply_overrides(read_yaml(path), list(overrides)))


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """{"train": {"epochs": 3}} -> {"train.epochs": "3"}: every config value as a parameter."""
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return out


def load_tuning(path: str | Path, overrides=()) -> tuple[TuningConfig, dict]:
    """A tuning file and its pipeline (as a raw mapping, the job's overrides applied),
    checked so that every trial the space allows is a valid pipeline."""
    path = Path(path)
    job = validate(apply_overrides(read_yaml(path), list(overrides)), TuningConfig)
    candidates = [Path(job.pipeline), path.parent / job.pipeline, PROJECT / job.pipeline]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ConfigError("pipeline", f"no such file {job.pipeline!r}", "a pipeline YAML file")
    base = apply_overrides(read_yaml(found), list(job.overrides))
    if job.epochs:
        base = apply_overrides(base, [f"train.epochs={job.epochs}"])
    known = flatten(validate(base).to_dict())
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
                validate(apply_overrides(base, [f"{key}={json.dumps(value)}"]))
            except ConfigError as err:
                raise ConfigError(field, f"value {value!r}: {err.problem}", err.allowed) from None
    return job, base


def describe(path: str | Path) -> str:
    """The one-line description of a pipeline file, without validating it."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return str(raw.get("description", "")).strip().splitlines()[0]
    except Exception:  # a listing must never fail on one bad file
        return ""


# ------------------------------------------------------------------ pydantic errors, one line

# What the discriminator of each tagged section is called in the course's words.
_TAG_NOUN = {"arch": "architecture", "source": "dataset", "name": "optimizer"}
_KIND = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _strip_optional(ann):
    if typing.get_origin(ann) in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _constraints(ann, metadata=()) -> list:
    """Bounds like Gt(0) from a field's metadata or an Annotated type (Field() nests them)."""
    out: list = []
    for m in metadata:
        out += m.metadata if isinstance(m, FieldInfo) else [m]
    while typing.get_origin(ann) is Annotated:
        ann, *meta = typing.get_args(ann)
        out += _constraints(None, meta)
    return out


def _members(node) -> list[type[BaseModel]]:
    """The models of a (tagged) union, or [] when `node` is not one."""
    node = _strip_optional(node)
    while typing.get_origin(node) is Annotated:
        node = typing.get_args(node)[0]
    if typing.get_origin(node) not in (Union, types.UnionType):
        return []
    args = [
        typing.get_args(a)[0] if typing.get_origin(a) is Annotated else a
        for a in typing.get_args(node)
    ]
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _walk(model: type[BaseModel], loc: tuple):
    """Follow an error location through the schema.

    Returns the path as the user writes it (tags of discriminated unions dropped), the
    model class that holds the last key, and the constraints on the last value.
    """
    shown: list[str] = []
    node: Any = model
    parent: type[BaseModel] | None = None
    meta: list = []
    for part in loc:
        members = _members(node)
        # A tag picks the union's member; it is not part of the path the user wrote.
        tagged = [m for m in members if _tag(m, _tag_field(members)) == part]
        if tagged:
            node = tagged[0]
            continue
        node = _strip_optional(node)
        while typing.get_origin(node) is Annotated:
            node = typing.get_args(node)[0]
        if isinstance(node, type) and issubclass(node, BaseModel):
            parent = node
            field = node.model_fields.get(str(part))
            shown.append(str(part))
            if field is None:
                node, meta = None, []
            else:
                # Bounds of an optional value sit inside its `| None`.
                ann = field.annotation
                node, meta = ann, _constraints(_strip_optional(ann), field.metadata)
        elif typing.get_origin(node) in (list, tuple):
            shown[-1:] = [f"{shown[-1]}[{part}]"] if shown else [f"[{part}]"]
            node = typing.get_args(node)[0] if typing.get_args(node) else None
            meta = _constraints(node)
        elif typing.get_origin(node) is dict:
            shown.append(str(part))
            node = typing.get_args(node)[1]
            meta = []
        else:
            shown.append(str(part))
    return ".".join(shown), parent, meta, node


def _tag(member: type[BaseModel], field: str | None):
    args = typing.get_args(member.model_fields[field].annotation) if field else ()
    return args[0] if len(args) == 1 else None


def _tag_field(members: list[type[BaseModel]]) -> str | None:
    """The field that tells a union's members apart (arch, source, name): one value each."""
    if not members:
        return None
    for name, field in members[0].model_fields.items():
        if typing.get_origin(field.annotation) is not Literal:
            continue
        if all(name in m.model_fields for m in members):
            values = [_tag(m, name) for m in members]
            if None not in values and len(set(values)) == len(values):
                return name
    return None


def _bounds(meta: list) -> str:
    words = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    parts = []
    for m in meta:
        for attr, sym in words.items():
            value = getattr(m, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
        if getattr(m, "min_length", None):
            parts.append(f"at least {m.min_length} item(s)")
    return " and ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields(model: type[BaseModel] | None) -> str:
    return ", ".join(model.model_fields) if model else ""


def to_config_error(err: ValidationError, model: type[BaseModel] = PipelineConfig) -> ConfigError:
    """The first pydantic error as `error: <field path>: <problem>; allowed: ...`."""
    e = err.errors()[0]
    kind, loc, ctx, value = e["type"], tuple(e["loc"]), e.get("ctx", {}), e.get("input")
    path, parent, meta, node = _walk(model, loc)
    # An error about the whole mapping (e.g. it is none) still names what it is.
    path = path or ("search" if model is TuningConfig else "pipeline")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        members = _members(node)
        tag = _tag_field(members)
        tags = ", ".join(str(_tag(m, tag)) for m in members)
        where = f"{path}.{tag}"
        if kind == "union_tag_not_found":
            if not isinstance(value, dict):  # no mapping to look the tag up in
                return ConfigError(path, f"{_short(value)} is not a mapping", "a mapping")
            return ConfigError(where, "missing", tags)
        noun = _TAG_NOUN.get(tag, tag)
        return ConfigError(where, f"unknown {noun} {ctx.get('tag')!r}", tags)
    if kind == "extra_forbidden":
        return ConfigError(path, "unknown key", _fields(parent))
    if kind == "missing":
        return ConfigError(path, "missing required key")
    if kind == "literal_error":
        allowed = ", ".join(t.strip(" '") for t in re.split(r",| or ", ctx.get("expected", "")))
        return ConfigError(path, f"{_short(value)} is not allowed", allowed)
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short"):
        return ConfigError(path, f"{_short(value)} is out of range", _bounds(meta) or e["msg"])
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return ConfigError(path, f"{_short(value)} is too short", f"at least {least} character(s)")
    if kind in _KIND:
        return ConfigError(path, f"{_short(value)} is not {_KIND[kind]}", _KIND[kind])
    msg = e["msg"].removeprefix("Value error, ")
    return ConfigError(path, msg[:1].lower() + msg[1:])
