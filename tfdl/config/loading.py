"""YAML loading, dotted overrides and validation: the one place a raw mapping becomes a
config, or a one-line ConfigError."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tfdl.config.errors import to_config_error
from tfdl.config.limits import check_params, check_tracking
from tfdl.config.schema import SECTIONS, PipelineConfig
from tfdl.errors import ConfigError

# Aliases are expanded by whoever walks the result: a few hundred bytes of nested aliases
# ("billion laughs") stand for billions of nodes. No pipeline comes near this many.
MAX_NODES = 100_000


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what it would accept silently: a key given twice in
    one mapping (the last would win) and aliases that expand beyond MAX_NODES nodes."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`, merged by PyYAML
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_document(self, node):
        sizes: dict[int, int] = {}

        def expanded(n) -> int:  # nodes after alias expansion; each shared node sized once
            if id(n) not in sizes:
                sizes[id(n)] = 0  # a recursive alias counts as a leaf where it recurs
                inner = n.value if isinstance(n.value, list) else []  # a scalar's is a str
                flat = [c for item in inner for c in (item if isinstance(item, tuple) else [item])]
                sizes[id(n)] = min(MAX_NODES + 1, 1 + sum(expanded(c) for c in flat))
            return sizes[id(n)]

        if expanded(node) > MAX_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases expand to more than {MAX_NODES} values", node.start_mark
            )
        return super().construct_document(node)


def load_yaml(text: str):
    """YAML text as Python values, by StrictLoader."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)


def read_yaml(path: str | Path) -> dict:
    """A YAML file that must hold a mapping; any problem is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            str(path), "no such file", "a pipeline YAML file, e.g. pipelines/mlp.yaml"
        )
    try:
        raw = load_yaml(path.read_text())
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
        parsed = load_yaml(value) if value.strip() else None
    except yaml.YAMLError as err:
        why = getattr(err, "problem", None)
        problem = f"cannot parse override value {value!r}" + (f": {why}" if why else "")
        raise ConfigError(key, problem, "a YAML value") from None
    return key.strip().split("."), parsed


def as_overrides(overrides) -> list[str]:
    """Overrides as `path=value` strings: a mapping {"model.units": [64, 32]} becomes
    ["model.units=[64, 32]"] (values as YAML flow text); a list is taken as it is."""
    if isinstance(overrides, dict):
        return [f"{path}={json.dumps(value)}" for path, value in overrides.items()]
    return list(overrides)


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
    """The config `raw` describes, checked against its schema and against what MLflow
    will take from it (every value is logged as a parameter)."""
    try:
        cfg = model.model_validate(raw)
    except ValidationError as err:
        raise to_config_error(err, model) from None
    if hasattr(cfg, "tracking"):
        check_tracking(cfg.tracking)
    check_params(flatten(cfg.model_dump(mode="json")))
    return cfg


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


def describe(path: str | Path) -> str:
    """The one-line description of a pipeline file, without validating it, marked when its
    data must be downloaded once (a source that downloads, and no local `data.path`)."""
    from tfdl.data.schema import SOURCES

    try:
        raw = load_yaml(Path(path).read_text()) or {}
        text = str(raw.get("description", "")).strip().splitlines()[0]
        data = raw.get("data") or {}
        source = SOURCES.get(data.get("source"))
        if source is not None and source.downloads and not data.get("path"):
            text += f" [downloads {data['source']} once, or set data.path]"
        elif source is not None and source.example and not Path(data.get("path", "")).exists():
            text += f" [first: {source.example.format(path=data['path'])}]"
        return text
    except Exception:  # a listing must never fail on one bad file
        return ""
