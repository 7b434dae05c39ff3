"""Which value types are immutable, so that the store may return them without a copy.

README ("What the store returns"): immutable values are returned as they are, mutable
ones as fresh copies. This module decides which is which from the type alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import ipaddress
import pathlib
import types
import typing
import uuid

import pydantic

_IMMUTABLE_LEAVES: frozenset[object] = frozenset(
    {
        int, float, complex, bool, str, bytes, type(None), decimal.Decimal, fractions.Fraction,
        uuid.UUID, datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
        datetime.timezone, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath,
        pathlib.Path, pathlib.PosixPath, ipaddress.IPv4Address, ipaddress.IPv6Address,
        ipaddress.IPv4Network, ipaddress.IPv6Network, ipaddress.IPv4Interface,
        ipaddress.IPv6Interface, typing.Literal, range,
        # pydantic's constrained forms of the above: they validate to plain dates and strs.
        pydantic.AwareDatetime, pydantic.NaiveDatetime, pydantic.PastDatetime,
        pydantic.FutureDatetime, pydantic.PastDate, pydantic.FutureDate, pydantic.EmailStr,
    }
)  # fmt: skip
_IMMUTABLE_CONTAINERS: frozenset[object] = frozenset(
    {tuple, frozenset, typing.Union, types.UnionType, typing.Literal}
)
_NO_ALIAS = object()


def is_immutable(tp: object, seen: frozenset[int] = frozenset()) -> bool:
    """Return True when no instance of ``tp`` can be changed in place after validation."""
    if id(tp) in seen:  # by id: type forms may hold unhashable metadata (Annotated)
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return is_immutable(typing.get_args(tp)[0], seen)
    if origin is not None:
        return _is_immutable_generic(origin, typing.get_args(tp), seen | {id(tp)})
    alias_value = getattr(tp, "__value__", _NO_ALIAS)  # a `type X = ...` alias (3.12+)
    if alias_value is not _NO_ALIAS:
        return is_immutable(alias_value, seen | {id(tp)})
    if isinstance(tp, typing.NewType):
        return is_immutable(tp.__supertype__, seen)
    if any(tp is leaf for leaf in _IMMUTABLE_LEAVES):
        return True
    if not isinstance(tp, type):
        return False
    if issubclass(tp, enum.Enum):
        return True
    return _is_immutable_class(tp, seen | {id(tp)})


def _is_immutable_generic(origin: object, args: tuple[object, ...], seen: frozenset[int]) -> bool:
    if origin is typing.Literal:
        return True
    if not any(origin is container for container in _IMMUTABLE_CONTAINERS):
        return isinstance(origin, type) and _is_immutable_class(origin, seen)
    return all(arg is Ellipsis or is_immutable(arg, seen) for arg in args)


def _is_immutable_class(tp: type, seen: frozenset[int]) -> bool:
    if issubclass(tp, pydantic.BaseModel):
        config = tp.model_config
        # Private attributes stay settable on frozen models and are never stored.
        if not config.get("frozen") or config.get("extra") == "allow" or tp.__private_attributes__:
            return False
        return all(is_immutable(field.annotation, seen) for field in tp.model_fields.values())
    if dataclasses.is_dataclass(tp):
        if not tp.__dataclass_params__.frozen:  # type: ignore[attr-defined]  # set by @dataclass
            return False
        hints = typing.get_type_hints(tp)
        return all(is_immutable(hints[field.name], seen) for field in dataclasses.fields(tp))
    if issubclass(tp, tuple) and hasattr(tp, "_fields"):  # NamedTuple
        hints = typing.get_type_hints(tp)
        return all(is_immutable(hints.get(name, object), seen) for name in tp._fields)
    return False
