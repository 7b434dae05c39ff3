"""Which types dump to plain data, so that a write may skip reading its bytes back.

A write proves that what memory holds is what a replay would give by decoding and
validating the bytes it has just packed (``_codec``). For a type decided here, once per
store, validating the dump itself gives the same: its dump holds only data that msgpack
gives back exactly (``_packing.packb_exact`` checks each value as it packs it), and
nothing of the type's own can make two equal dumps validate differently. The decision
is conservative: a type it does not know takes the long way, which is always correct.
"""

from __future__ import annotations

import datetime
import types
import typing

import annotated_types
import pydantic

_PLAIN_LEAVES: frozenset[object] = frozenset(
    {
        str, int, float, bool, bytes, type(None), datetime.datetime,
        pydantic.AwareDatetime, pydantic.NaiveDatetime,
    }
)  # fmt: skip
_PLAIN_KEYS: frozenset[object] = frozenset({str, int})
_UNIONS: frozenset[object] = frozenset({typing.Union, types.UnionType})
_DECORATOR_KINDS = (
    "validators",
    "field_validators",
    "root_validators",
    "model_validators",
    "field_serializers",
    "model_serializers",
    "computed_fields",
)


def dumps_plain_data(tp: object, seen: frozenset[int] = frozenset()) -> bool:
    """Return True when validating any dump of ``tp`` gives what validating its bytes gives.

    True for ``str``, ``int``, ``float``, ``bool``, ``bytes``, ``None`` and ``datetime``;
    for lists of them, dicts keyed by ``str`` or ``int``, ``X | None``; and for models
    whose fields are all such types, with no validators, serializers or computed
    fields and no extra fields kept. Not for other unions: a value msgpack gives back
    as another type (``bytearray`` as ``bytes``) might pick another member.
    """
    if id(tp) in seen:  # a recursive model: its other fields decide
        return True
    if any(tp is leaf for leaf in _PLAIN_LEAVES):
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _only_constraints(tp) and dumps_plain_data(args[0], seen)
    if origin is list:
        return dumps_plain_data(args[0], seen)
    if origin is dict:
        return any(args[0] is key for key in _PLAIN_KEYS) and dumps_plain_data(args[1], seen)
    if any(origin is union for union in _UNIONS):
        members = [arg for arg in args if arg is not type(None)]
        return len(members) == 1 and dumps_plain_data(members[0], seen)
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return _is_plain_model(tp, seen | {id(tp)})
    return False


def _is_plain_model(model: type[pydantic.BaseModel], seen: frozenset[int]) -> bool:
    if model.model_config.get("extra") == "allow" or model.__pydantic_root_model__:
        return False
    decorators = model.__pydantic_decorators__
    if any(getattr(decorators, kind) for kind in _DECORATOR_KINDS):
        return False
    return all(
        all(_is_constraint(item) for item in field.metadata)
        and dumps_plain_data(field.annotation, seen)
        for field in model.model_fields.values()
    )


def _only_constraints(annotated: object) -> bool:
    return all(_is_constraint(item) for item in getattr(annotated, "__metadata__", ()))


def _is_constraint(item: object) -> bool:
    """Return whether ``item`` only narrows what validates (``Gt``, ``MaxLen``...)."""
    return isinstance(item, annotated_types.BaseMetadata)
