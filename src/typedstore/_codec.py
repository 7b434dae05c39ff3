"""Codec: validation with pydantic and encoding with msgpack, the only module that imports either.

A key or value is written as ``msgpack(pydantic dump)``. What the store keeps in memory is
always what validating the decoded bytes gives, so memory and a replay agree by
construction, not by assumption.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import hashlib
import ipaddress
import json
import pathlib
import reprlib
import threading
import types
import typing
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Generic, cast

# msgpack ships no type information; this module narrows what it returns on the spot.
# The ignore is for users' mypy runs, which do not read this repository's mypy.ini.
import msgpack  # type: ignore[import-untyped, unused-ignore]
import pydantic
import pydantic_core

from ._errors import EncodingError
from ._types import K, V

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
_DECODE_FAILURES = (ValueError, TypeError, msgpack.UnpackException)
_ENCODE_FAILURES = (TypeError, ValueError, OverflowError, pydantic_core.PydanticSerializationError)


_NO_ALIAS = object()


class RecordDecodeError(Exception):
    """Bytes in a checksum-valid record that msgpack cannot decode."""


class Codec(Generic[K, V]):
    """Validate, encode and decode the keys and values of one store's types."""

    def __init__(self, key_type: object, value_type: object) -> None:
        self.key_type = key_type
        self.value_type = value_type
        # The types arrive as plain objects (any type form pydantic accepts); K and V
        # are bound by the caller's annotation, which is what the adapters validate to.
        self._keys: pydantic.TypeAdapter[K] = pydantic.TypeAdapter(cast(Any, key_type))
        self._values: pydantic.TypeAdapter[V] = pydantic.TypeAdapter(cast(Any, value_type))
        self._bound_validate: Callable[[object], V] | None = None
        """The value validator with the decoding options, bound on first use (see below)."""
        self._plain_key = key_type if key_type in (str, bytes) else None
        self.canonical_keys = key_type in (str, bytes, int, uuid.UUID) or (
            isinstance(key_type, type) and issubclass(key_type, enum.Enum)
        )
        """True when equal keys always encode to equal bytes (not so for Decimal, float
        or aware datetime keys: 1.0 == 1.00, 0.0 == -0.0, the same instant in two zones)."""
        self._description: dict[str, object] | None = None
        self.copies_values = not is_immutable(value_type)
        """True when values are mutable: memory then keeps their bytes and reads decode a copy."""

    # -- keys -----------------------------------------------------------------------------

    def encode_key(self, key: object) -> tuple[K, bytes]:
        """Validate ``key``; return it as the store holds it, and its bytes.

        Raises ``pydantic.ValidationError``, ``EncodingError`` (also for a key that is
        not equal to itself once read back, a NaN: no lookup could find it), or
        ``TypeError`` for a key that is not hashable after validation.
        """
        if self._plain_key is not None and type(key) is self._plain_key:
            return cast(K, key), _packb(key)
        validated, blob = self._validated_key(key)
        if not self.finds(validated, blob):
            raise EncodingError(
                f"key {reprlib.repr(key)} is not equal to itself (a NaN), so none could find it"
            )
        return validated, blob

    def _validated_key(self, key: object) -> tuple[K, bytes]:
        validated, blob = _round_trip(self._keys, key, stable=True)
        try:
            hash(validated)
        except TypeError as exc:
            raise TypeError(f"keys must be hashable after validation: {exc}") from exc
        return validated, blob

    def finds(self, key: K, blob: bytes) -> bool:
        """Return whether the key ``blob`` holds equals ``key``: not so for a NaN."""
        return self.canonical_keys or self.validate_key(self.decode_key(blob)) == key

    def find_key(self, key: object) -> tuple[K, bytes] | None:
        """Return ``key`` validated, and its bytes, or None when it does not validate.

        Removals and ``modify`` use it: a key that does not validate cannot have been
        stored, so for them it is absent. A key not equal to itself (a NaN, stored by
        an older version) is returned as given: only the stored object finds it.
        """
        if self._plain_key is not None and type(key) is self._plain_key:
            return cast(K, key), _packb(key)
        try:
            validated, blob = self._validated_key(key)
        except (pydantic.ValidationError, EncodingError, TypeError):
            return None
        return (validated, blob) if self.finds(validated, blob) else (cast(K, key), blob)

    def validate_key(self, data: object) -> K:
        """Return the key that decoded ``data`` validates to."""
        if self._plain_key is not None and type(data) is self._plain_key:
            return cast(K, data)
        return _validate_decoded(self._keys, data)

    def decode_key(self, blob: bytes) -> object:
        """Return the data a key's bytes hold, as :func:`unpack` does, for :meth:`validate_key`.

        Short ``str`` keys, the common case, are read without msgpack's call overhead.
        """
        # A msgpack fixstr (0xA0 plus its length, up to 31) and nothing after it:
        if self._plain_key is str and 0 < len(blob) <= 32 and blob[0] == 0xA0 + len(blob) - 1:
            try:
                return blob[1:].decode()
            except UnicodeDecodeError as exc:
                raise RecordDecodeError(str(exc)) from exc
        return unpack(blob)

    def key_bytes(self, key: K) -> bytes:
        """Return the bytes of a key that was already validated."""
        if self._plain_key is not None:
            return _packb(key)
        return _pack(self._keys, key)

    # -- values ---------------------------------------------------------------------------

    def encode_value(self, value: object) -> tuple[V, bytes]:
        """Validate ``value``; return it as a replay would give it, and its bytes."""
        # Memory keeps the bytes of mutable values; immutable ones are encoded again
        # by compaction, so those must give their own bytes back.
        return _round_trip(self._values, value, stable=not self.copies_values)

    def decode_value(self, blob: bytes) -> V:
        """Return the validated value held in ``blob``: a new object on every call."""
        return self.validate_value(unpack(blob))

    def freeze(self, value: V, blob: bytes) -> object:
        """Return what memory keeps for a value: its bytes when mutable, else itself."""
        return blob if self.copies_values else value

    def thaw(self, stored: object) -> V:
        """Return the value for what memory keeps: a fresh copy when values are mutable."""
        if self.copies_values:
            return self.decode_value(cast(bytes, stored))
        return cast(V, stored)

    def stored_bytes(self, stored: object) -> bytes:
        """Return the bytes of what memory keeps, for compaction."""
        if self.copies_values:
            return cast(bytes, stored)
        return _pack(self._values, cast(V, stored))

    def validate_value(self, data: object) -> V:
        """Return the value that decoded (or migrated) ``data`` validates to."""
        validate = self._bound_validate
        if validate is None:
            # Bound once, since every read of a mutable value and every replayed record
            # calls it; but not before first use: a model with a forward reference may
            # be completed (model_rebuild) after the store is opened.
            validate = functools.partial(self._values.validator.validate_python, **_DECODED)
            self._bound_validate = validate
        return validate(data)

    def lost_fields(self, data: object, value: V) -> set[str]:
        """Return the fields ``data`` holds that ``value``, validated from it, no longer has.

        Paths are dotted, with ``[]`` for list items: ``address.zip``, ``items[].sku``.
        """
        dumped = self._values.dump_python(value, by_alias=False, round_trip=True, warnings=False)
        return set(_missing_paths(data, dumped, ""))

    # -- metadata -------------------------------------------------------------------------

    def metadata(self, version: int) -> bytes:
        """Return the metadata describing this codec's types at schema ``version``."""
        return _packb(self.describe() | {"version": version, "fingerprint": self.fingerprint})

    def describe(self) -> dict[str, object]:
        """Return the type names and JSON schemas of the key and value types."""
        if self._description is None:
            self._description = {
                "key_type": type_name(self.key_type),
                "value_type": type_name(self.value_type),
                "key_schema": _json_schema(self._keys),
                "value_schema": _json_schema(self._values),
            }
        return self._description

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of :meth:`describe`: equal fingerprints mean unchanged types."""
        text = json.dumps(self.describe(), sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def describe_changes(old: dict[str, object], new: dict[str, object]) -> str:
    """Return a one-line account of how the value type changed between two metadata maps."""
    old_fields = _properties(old.get("value_schema"))
    new_fields = _properties(new.get("value_schema"))
    if old_fields is None or new_fields is None:
        return f"value type {old.get('value_type')!s} is now {new.get('value_type')!s}"
    added = sorted(map(str, new_fields.keys() - old_fields.keys()))
    removed = sorted(map(str, old_fields.keys() - new_fields.keys()))
    kept = old_fields.keys() & new_fields.keys()
    changed = sorted(str(name) for name in kept if old_fields[name] != new_fields[name])
    labelled = (("added", added), ("removed", removed), ("changed", changed))
    parts = [f"{label}: {', '.join(names)}" for label, names in labelled if names]
    return "; ".join(parts) or "the JSON schema changed, not its fields"


def _properties(schema: object) -> dict[object, object] | None:
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        return cast(dict[object, object], schema["properties"])
    return None


def _missing_paths(data: object, dumped: object, prefix: str) -> Iterator[str]:
    if isinstance(data, dict) and isinstance(dumped, dict):
        for key, item in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in dumped:
                yield path
            else:
                yield from _missing_paths(item, dumped[key], path)
    elif isinstance(data, (list, tuple)) and isinstance(dumped, (list, tuple)):
        for item, dumped_item in zip(data, dumped, strict=False):
            yield from _missing_paths(item, dumped_item, f"{prefix}[]")


EXT_DATETIME = 1
"""msgpack extension code of a ``datetime``: its ``isoformat()`` text in UTF-8."""
EXT_TIME = 2
"""msgpack extension code of a ``time``: its ``isoformat()`` text in UTF-8."""


def _decode_ext(code: int, data: bytes) -> object:
    if code == EXT_DATETIME:
        return datetime.datetime.fromisoformat(data.decode())
    if code == EXT_TIME:
        return datetime.time.fromisoformat(data.decode())
    return msgpack.ExtType(code, data)


def unpack(blob: bytes) -> object:
    """Return the data msgpack holds in ``blob``; raise ``RecordDecodeError`` if it cannot."""
    try:
        return msgpack.unpackb(blob, strict_map_key=False, ext_hook=_decode_ext)
    except TypeError:
        # A map keyed by arrays (a dict keyed by tuples): lists are unhashable, so
        # decode every array as a tuple; pydantic accepts tuples wherever lists go.
        pass
    except _DECODE_FAILURES as exc:
        raise RecordDecodeError(str(exc)) from exc
    try:
        return msgpack.unpackb(blob, strict_map_key=False, use_list=False, ext_hook=_decode_ext)
    except _DECODE_FAILURES as exc:
        raise RecordDecodeError(str(exc)) from exc


def decode_metadata(blob: bytes) -> dict[str, object]:
    """Return the header metadata as a dict, or raise ``RecordDecodeError``."""
    data = unpack(blob)
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise RecordDecodeError("header metadata is not a map of strings")
    return cast(dict[str, object], data)


class _DecodedOptions(typing.TypedDict):
    strict: bool
    by_alias: bool
    by_name: bool


_DECODED: _DecodedOptions = {"strict": False, "by_alias": False, "by_name": True}
"""How decoded data is validated: by field name, and lax, since msgpack has no tuples,
enums or UUIDs that strict mode would insist on (the input itself was validated as given)."""


def _round_trip(adapter: pydantic.TypeAdapter[V], raw: object, *, stable: bool) -> tuple[V, bytes]:
    """Validate ``raw`` as given; return what validating its bytes gives, and the bytes.

    With ``stable``, the bytes are those of the returned value itself, as compaction
    writes them; a value whose validation changes it again raises ``EncodingError``.
    """
    validated = adapter.validator.validate_python(raw)  # the type's own rules, strict included
    blob = _pack(adapter, validated)
    try:
        value = _validate_decoded(adapter, unpack(blob))
    except RecordDecodeError as exc:  # pragma: no cover - msgpack reads what it wrote
        raise EncodingError(f"msgpack cannot read back {type(raw).__name__}: {exc}") from exc
    if stable:
        again = _pack(adapter, value)
        if again != blob:
            if _validate_decoded(adapter, unpack(again)) != value:
                raise EncodingError(
                    f"{type(raw).__name__} changes each time it is validated (a validator "
                    "that is not idempotent), so it would not read back as stored"
                )
            blob = again
    return value, blob


def _validate_decoded(adapter: pydantic.TypeAdapter[V], data: object) -> V:
    # The adapter's validator and serializer are called directly here and in _pack and
    # _round_trip: TypeAdapter's methods only forward to them, at a cost on every read,
    # write and replayed record.
    return cast(V, adapter.validator.validate_python(data, **_DECODED))


def _pack(adapter: pydantic.TypeAdapter[Any], raw: object) -> bytes:
    # warnings=False: an unvalidated input (model_construct) may not match the schema;
    # validation of the decoded bytes right after reports that properly.
    try:
        data = adapter.serializer.to_python(raw, by_alias=False, round_trip=True, warnings=False)
    except _ENCODE_FAILURES as exc:
        raise EncodingError(f"cannot dump {type(raw).__name__}: {exc}") from exc
    return _packb(data)


_packers = threading.local()
_PACKER_KEEP_BYTES = 64 * 1024
"""A packer that packed more than this is dropped: it would keep a buffer that large."""


def _packb(data: object) -> bytes:
    """Pack ``data`` with this thread's packer: making one per value costs more than packing.

    The packer is taken out of the thread's slot while it packs. Code that runs inside a
    pack (``_encode_default`` packing a set's elements, or a signal handler or finalizer
    that writes to a store) and packs again then finds the slot empty and makes its own
    packer, instead of writing into the middle of this one's buffer.
    """
    packer: msgpack.Packer | None = _packers.__dict__.pop("packer", None)
    if packer is None:
        packer = msgpack.Packer(default=_encode_default)
    try:
        packed: bytes = packer.pack(data)
    except _ENCODE_FAILURES as exc:  # the packer is dropped: its buffer may have grown
        raise EncodingError(f"cannot encode {type(data).__name__} as msgpack: {exc}") from exc
    if len(packed) <= _PACKER_KEEP_BYTES:
        _packers.packer = packer
    return packed


def _encode_default(obj: object) -> object:
    # datetime and time get extension types of their own: pydantic's ISO text would
    # round a UTC offset with seconds (historic zones) to minutes, another instant.
    if isinstance(obj, datetime.datetime):
        return msgpack.ExtType(EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, datetime.time):
        return msgpack.ExtType(EXT_TIME, obj.isoformat().encode())
    if isinstance(obj, (set, frozenset)):
        # In a fixed order: equal sets must give equal bytes, or a model-free reader
        # (the CLI) would take one key, built two ways, for two keys.
        return sorted(obj, key=_packb)
    return pydantic_core.to_jsonable_python(obj)


def _json_schema(adapter: pydantic.TypeAdapter[Any]) -> object:
    try:
        return adapter.json_schema()
    except pydantic.PydanticUserError:  # types with no JSON schema are still storable
        return None


def type_name(tp: object) -> str:
    """Return a readable, qualified name for a type."""
    if isinstance(tp, type) and not typing.get_args(tp):
        module = tp.__module__
        return tp.__qualname__ if module == "builtins" else f"{module}.{tp.__qualname__}"
    return repr(tp)


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
