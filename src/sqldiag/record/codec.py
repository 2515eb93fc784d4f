"""JSON to frozen dataclasses and back, checked field by field against the type hints.

One decoder for every part of a record: it accepts exactly the JSON shapes the hints
describe (int, float, str, bool, None, enums by value, tuples, string-keyed dicts,
nested value classes) and names the first wrong field by its path, so that a malformed
or hostile record fails at load with one line instead of deep inside a renderer. It
builds nothing but these classes and plain values: no code named by the file is run.
Keys a class does not know are ignored, so a record that carries parts this version no
longer stores (older derived figures) still loads.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import types
import typing
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

from typing_extensions import Self

from sqldiag.errors import SqldiagError

T = TypeVar("T")

MAX_DEPTH = 40  # nesting deeper than any record has: a hostile file, not a record


class RecordError(SqldiagError):
    """A record part that does not have the shape its class describes."""


@cache
def _hints(cls: type) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls, vars(module))


@cache
def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _fail(where: str, expected: str, value: object) -> RecordError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return RecordError(f"{where or 'record'}: expected {expected}, got {_kind(value)} {shown}")


def decode(hint: Any, value: object, where: str = "", depth: int = 0) -> Any:
    """`value` (parsed JSON) as an instance of `hint`; RecordError names the first misfit."""
    if depth > MAX_DEPTH:
        raise RecordError(f"{where}: nested too deeply")
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return decode(option, value, where, depth + 1)
            except RecordError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else _fail(
            where, " or ".join(getattr(o, "__name__", str(o)) for o in options), value)
    if hint is type(None):
        if value is not None:
            raise _fail(where, "null", value)
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise _fail(where, "a boolean", value)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, "an integer", value)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise _fail(where, "a number", value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _fail(where, "a string", value)
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            known = ", ".join(str(m.value) for m in hint)
            raise _fail(where, f"one of {known}", value) from None
    if origin is tuple:
        if not isinstance(value, list):
            raise _fail(where, "a list", value)
        item = get_args(hint)[0]
        return tuple(decode(item, v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(where, "an object", value)
        key_hint, item = get_args(hint)
        if key_hint is not str:
            raise TypeError(f"record dict keys must be str, not {key_hint}")
        return {k: decode(item, v, f"{where}.{k}" if where else k, depth + 1)
                for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return decode_object(hint, value, where, depth)
    raise TypeError(f"no JSON decoding for {hint!r}")


def decode_object(cls: type[T], value: object, where: str = "", depth: int = 0) -> T:
    if not isinstance(value, dict):
        raise _fail(where, f"an object ({cls.__name__})", value)
    hints = _hints(cls)
    kwargs = {}
    for field in _fields(cls):
        if not field.init:
            continue
        path = f"{where}.{field.name}" if where else field.name
        if field.name in value:
            kwargs[field.name] = decode(hints[field.name], value[field.name], path, depth + 1)
        elif (field.default is dataclasses.MISSING
              and field.default_factory is dataclasses.MISSING):
            raise RecordError(f"{path}: missing")
    return cls(**kwargs)


def encode(value: object) -> Any:
    """Plain JSON values of a value class (fields in declaration order) or container."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in _fields(type(value))}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


class JsonValue:
    """Mixin for record value classes: `Cls.from_json(data)` and `obj.to_json()`."""

    @classmethod
    def from_json(cls, data: object, where: str = "") -> Self:
        return decode_object(cls, data, where)

    def to_json(self) -> Any:
        return encode(self)
