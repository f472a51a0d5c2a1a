"""Generates docs/configuration.md from the config model, so the reference cannot drift from the code."""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from entrasync_pipeline.settings import FieldRule, Settings

HEADER = """# Configuration reference

Generated from `entrasync_pipeline/settings.py` by `entrasync config-reference`; a test fails when
this file is stale. One YAML file (`--config` or `$ENTRASYNC_CONFIG`). Secrets never go in the file:
each profile names the environment variables that hold them.

| key | type | default | description |
|---|---|---|---|
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (list, dict, typing.Union) or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = ", ".join(_type_name(a) for a in args)
        name = {list: "list", dict: "map"}.get(origin, "")
        optional = type(None) in typing.get_args(annotation)
        text = f"{name}[{inner}]" if name else inner
        return f"{text} (optional)" if optional else text
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(see below)"
    if isinstance(value, dict) and value and all(isinstance(v, FieldRule) for v in value.values()):
        return ", ".join(f"{k} ← {'/'.join(v.source) or v.constant}" for k, v in value.items())
    return f"`{json.dumps(value)}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}{key}"
        annotation = field.annotation
        nested = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        args = typing.get_args(annotation)
        if (
            typing.get_origin(annotation) is dict
            and args
            and isinstance(args[1], type)
            and issubclass(args[1], BaseModel)
        ):
            child = "<profile>" if name == "profiles" else "<field>"
            rows.append(f"| `{path}` | map | {_default(field)} | {field.description or ''} |")
            rows += _rows(args[1], f"{path}.{child}.")
            continue
        if (
            typing.get_origin(annotation) is list
            and args
            and isinstance(args[0], type)
            and issubclass(args[0], BaseModel)
        ):
            rows.append(f"| `{path}` | list | {_default(field)} | {field.description or ''} |")
            rows += _rows(args[0], f"{path}[].")
            continue
        if nested is not None:
            rows += _rows(nested, f"{path}.")
            continue
        rows.append(f"| `{path}` | {_type_name(annotation)} | {_default(field)} | {field.description or ''} |")
    return rows


def render() -> str:
    return HEADER + "\n".join(_rows(Settings, "")) + "\n"
