"""Property-based checks of the config edge, with pipelines drawn from the schema itself.

Whatever a pipeline, a search file or an override holds, validation either accepts it or
raises a ConfigError whose line is one line starting `error:`; nothing else escapes. A
pipeline that is accepted builds its Keras model, or is refused the same way.
"""

import json
import types
import typing
from typing import Annotated, Literal, Union

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tfdl.config import (
    Param,
    PipelineConfig,
    TuningConfig,
    flatten,
    load_pipeline,
    load_tuning,
    validate,
)
from tfdl.data.spec import DataSpec
from tfdl.errors import ConfigError

from .conftest import TINY

FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values of the wrong kind for any field, YAML dates and non-finite numbers included.
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(),
    st.text(max_size=8),
    st.dates(),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
)


def _metadata(items) -> list:
    out = []
    for m in items:
        out += m.metadata if isinstance(m, FieldInfo) else [m]
    return out


def _bounds(meta) -> tuple[float | None, float | None, bool, bool]:
    lo = hi = None
    lo_open = hi_open = False
    for m in meta:
        if getattr(m, "ge", None) is not None:
            lo = m.ge
        if getattr(m, "gt", None) is not None:
            lo, lo_open = m.gt, True
        if getattr(m, "le", None) is not None:
            hi = m.le
        if getattr(m, "lt", None) is not None:
            hi, hi_open = m.lt, True
    return lo, hi, lo_open, hi_open


def numbers(kind, meta, small: bool):
    """Numbers inside the bounds; with `small`, near the lower one (tiny models)."""
    lo, hi, lo_open, hi_open = _bounds(meta)
    if kind is int:
        first = None if lo is None else int(lo) + lo_open
        last = None if hi is None else int(hi) - hi_open
        if small:
            first = 0 if first is None else first
            last = first + 3 if last is None else min(last, first + 3)
        return st.integers(first, last)
    top = hi if hi is not None else (10.0 if small else None)
    return st.floats(
        lo,
        top,
        exclude_min=lo_open,
        exclude_max=hi_open and hi is not None,
        allow_nan=False,
        allow_infinity=False,
    )


def out_of_range(meta):
    """Numbers just past each bound."""
    lo, hi, _, _ = _bounds(meta)
    edges = [b + d for b in (lo, hi) if b is not None for d in (-1, 0, 1)]
    return st.sampled_from(edges) if edges else st.nothing()


def values(ann, meta=(), small=False):
    """Valid values of a type: what the schema says it takes."""
    origin = typing.get_origin(ann)
    if origin is Annotated:
        base, *extra = typing.get_args(ann)
        return values(base, [*meta, *_metadata(extra)], small)
    if origin in (Union, types.UnionType):
        return st.one_of([values(a, meta, small) for a in typing.get_args(ann)])
    if origin is Literal:
        return st.sampled_from(typing.get_args(ann))
    if origin is list:
        least = max([getattr(m, "min_length", 0) or 0 for m in meta], default=0)
        return st.lists(values(typing.get_args(ann)[0], (), small), min_size=least, max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=6), values(typing.get_args(ann)[1]), max_size=2)
    if ann is type(None):
        return st.none()
    if ann is bool:
        return st.booleans()
    if ann in (int, float):
        return numbers(ann, meta, small)
    if ann is str:
        least = max([getattr(m, "min_length", 0) or 0 for m in meta], default=0)
        return st.text(min_size=least, max_size=8)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return section(ann, small)
    return JUNK  # Any


def rarely(good, bad, one_in: int):
    """`bad` about once in `one_in` draws, else `good`: a pipeline holds a mistake or two,
    so the checks behind the first one are reached too."""
    # A middle value: hypothesis favours the ends of a range.
    return st.integers(1, one_in).flatmap(lambda i: bad if i == one_in // 2 else good)


def field_values(info: FieldInfo, small: bool):
    """A field's valid values; unless `small`, now and then a wrong kind or a number just
    out of range."""
    good = values(info.annotation, _metadata(info.metadata), small)
    if small:
        return good
    bad = st.one_of(out_of_range(_metadata(info.metadata) + _annotated_meta(info.annotation)), JUNK)
    return rarely(good, bad, 30)


def _annotated_meta(ann) -> list:
    while typing.get_origin(ann) in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else None
    if typing.get_origin(ann) is Annotated:
        return _metadata(typing.get_args(ann)[1:])
    return []


FIELD_NAMES: set[str] = set()


def section(cls: type[BaseModel], small=False):
    """A mapping for the model `cls`; unless `small`, sometimes with a key dropped or an
    unknown one added."""
    FIELD_NAMES.update(cls.model_fields)
    required = {n: field_values(f, small) for n, f in cls.model_fields.items() if f.is_required()}
    optional = {n: field_values(f, small) for n, f in cls.model_fields.items() if n not in required}
    base = st.fixed_dictionaries(required, optional=optional)
    if small:
        return base
    names = sorted(cls.model_fields)
    dropped = st.tuples(base, st.sampled_from(names)).map(
        lambda t: {k: v for k, v in t[0].items() if k != t[1]}
    )
    unknown = st.one_of(st.sampled_from(sorted(FIELD_NAMES) + ["unitz", "epoch"]), st.text())
    added = st.tuples(base, unknown, JUNK).map(lambda t: {**t[0], t[1]: t[2]})
    return rarely(base, st.one_of(dropped, added), 10)


def dotted_paths(cls: type[BaseModel], prefix="") -> list[str]:
    """Every dotted path of the schema, through each member of a tagged union."""
    out = []
    for name, info in cls.model_fields.items():
        path = f"{prefix}{name}"
        out.append(path)
        ann = info.annotation
        while typing.get_origin(ann) is Annotated:
            ann = typing.get_args(ann)[0]
        members = (
            typing.get_args(ann) if typing.get_origin(ann) in (Union, types.UnionType) else [ann]
        )
        for m in members:
            m = typing.get_args(m)[0] if typing.get_origin(m) is Annotated else m
            if isinstance(m, type) and issubclass(m, BaseModel):
                out += dotted_paths(m, f"{path}.")
    return sorted(set(out))


PATHS = dotted_paths(PipelineConfig)
IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
OVERRIDES = st.lists(
    st.one_of(
        st.tuples(
            st.one_of(
                st.sampled_from(PATHS), st.lists(IDENT, min_size=1, max_size=3).map(".".join)
            ),
            st.one_of(
                JUNK.filter(lambda v: not hasattr(v, "isoformat")).map(json.dumps),
                st.text(max_size=10),
            ),
        ).map("=".join),
        st.text(max_size=12),  # no `=`, odd characters: a malformed override
    ),
    max_size=3,
)
PIPELINES = section(PipelineConfig)


def one_line(err: ConfigError) -> None:
    line = err.line()
    assert line.startswith("error: ") and len(line.splitlines()) == 1, line
    assert err.field and err.problem, line


def accepted_or_one_line(call):
    """call()'s result, or None when it raised a ConfigError of one proper line."""
    try:
        return call()
    except ConfigError as err:
        one_line(err)
        return None


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz")
    (path / "pipeline.yaml").write_text(yaml.safe_dump(TINY))
    return path


@FAST
@given(
    raw=st.one_of(PIPELINES, PIPELINES, PIPELINES, JUNK),
    text=rarely(st.none(), st.text(), 10),  # now and then a file of anything but YAML
    overrides=OVERRIDES,
)
def test_validation_accepts_or_rejects_with_one_line(raw, text, overrides, folder):
    path = folder / "fuzzed.yaml"
    path.write_text(yaml.safe_dump(raw) if text is None else text, encoding="utf-8")
    accepted_or_one_line(lambda: load_pipeline(path, overrides))
    # A notebook, or a run's logged config.yaml, hands validate any mapping or none.
    accepted_or_one_line(lambda: validate(raw))


# Search files over the TINY pipeline: spaces keyed mostly by its settings, now and then
# by another path of the schema or by nonsense.
SETTINGS = sorted(flatten(validate(TINY).to_dict()))
TUNINGS = st.fixed_dictionaries(
    {
        "pipeline": rarely(st.just("pipeline.yaml"), JUNK, 10),
        "space": st.dictionaries(
            rarely(st.sampled_from(SETTINGS), st.one_of(st.sampled_from(PATHS), st.text()), 5),
            rarely(values(Param), JUNK, 10),
            min_size=1,  # an empty space is one mistake, not most searches
            max_size=3,
        ),
    },
    optional={
        n: field_values(f, False)
        for n, f in TuningConfig.model_fields.items()
        if n not in ("pipeline", "space")
    },
)


@FAST
@given(job=TUNINGS)
def test_search_files_are_accepted_or_rejected_with_one_line(job, folder):
    path = folder / "tuning.yaml"
    path.write_text(yaml.safe_dump(job))
    accepted_or_one_line(lambda: load_tuning(path))


# Data sets as a builder sees them, one per kind of input the sources give.
SPECS = [
    DataSpec((64,), "multiclass", 10, tuple("0123456789")),
    DataSpec((8, 8, 1), "multiclass", 10, tuple("0123456789")),
    DataSpec((40, 1), "multiclass", 10, tuple("0123456789")),
    DataSpec((2,), "binary", 2, ("red", "green")),
    DataSpec((10,), "regression"),
    DataSpec((16,), "language_model", 12, vocabulary=tuple("abcdefghijkl"), input_dtype="int32"),
    DataSpec(
        (12,),
        "seq2seq",
        14,
        vocabulary=tuple("abcdefghijklmn"),
        input_dtype="int32",
        target_length=10,
    ),
]


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=section(PipelineConfig, small=True), draw=st.data())
def test_an_accepted_pipeline_builds_or_is_refused_in_one_line(raw, draw):
    """Tiny models from valid sections, on data of a task they take: built and compiled,
    or refused with one line."""
    import keras

    from tfdl.compile import TASK_LOSSES, TASK_METRICS, resolve
    from tfdl.data.spec import Splits
    from tfdl.models.schema import ARCHITECTURES
    from tfdl.prepared import Prepared
    from tfdl.training import build

    tasks = ARCHITECTURES[raw["model"]["arch"]].tasks
    spec = draw.draw(st.sampled_from([s for s in SPECS if s.task in tasks]), label="spec")
    loss = draw.draw(st.sampled_from(["auto", *TASK_LOSSES[spec.task]]), label="loss")
    metrics = draw.draw(st.lists(st.sampled_from(TASK_METRICS[spec.task]), max_size=2))
    # Deterministic kernels are a process-wide switch: not for a test to flip.
    train = {"deterministic": False, "loss": loss, "metrics": metrics}
    raw["train"] = {**raw.get("train", {}), **train}
    cfg = accepted_or_one_line(lambda: validate(raw))
    resolved = None if cfg is None else accepted_or_one_line(lambda: resolve(cfg, spec))
    if resolved is not None:
        # No data is needed to build: only its spec, and three batches' worth of labels.
        labels = np.zeros(3 * resolved.train.batch_size)
        splits = Splits(None, labels, None, None, None, None, spec)
        model = accepted_or_one_line(lambda: build(Prepared(resolved, splits)))
        assert model is None or model.optimizer is not None
    keras.backend.clear_session()
