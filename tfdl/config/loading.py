"""YAML loading, dotted overrides and validation: the one place a raw mapping becomes a
config, or a one-line ConfigError."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tfdl.config.errors import to_config_error
from tfdl.config.schema import SECTIONS, PipelineConfig
from tfdl.errors import ConfigError


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


def describe(path: str | Path) -> str:
    """The one-line description of a pipeline file, without validating it, marked when its
    data must be downloaded once (a source that downloads, and no local `data.path`)."""
    from tfdl.data.schema import SOURCES

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
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
