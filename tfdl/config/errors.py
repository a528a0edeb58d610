"""Pydantic's validation errors as one line: `error: <field path>: <problem>; allowed: ...`,
the path as the user writes it in YAML and the allowed values named from the schema."""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tfdl.config.schema import PipelineConfig
from tfdl.errors import ConfigError

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
    path = path or getattr(model, "config_noun", "pipeline")
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
