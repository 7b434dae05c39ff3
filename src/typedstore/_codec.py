"""Codec: validation with pydantic of one store's keys and values, and their bytes.

A key or value is written as ``msgpack(pydantic dump)``. What the store keeps in memory is
always what validating the decoded bytes gives, so memory and a replay agree by
construction, not by assumption. Where decoding the bytes provably gives the dump back
exactly (plain scalars; types ``_plain_types`` accepts, checked value by value as they
are packed), validating the dump is that same validation, and the decode is skipped.
The codec's helpers each hold one concept: ``_packing`` (msgpack and its extension
types), ``_metadata`` (what the log's header says about the types), ``_immutability``
(which values need copies on read), ``_plain_types`` (which types dump to plain data)
and ``_strictness`` (strict rules for instances built without validation); the names
other modules use from them are re-exported here.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import reprlib
import typing
import uuid
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, cast

import pydantic

from . import _metadata
from ._errors import EncodingError
from ._format import MAX_RECORD_BYTES
from ._immutability import is_immutable
from ._metadata import describe_changes, type_name
from ._packing import (
    ENCODE_FAILURES,
    RecordDecodeError,
    decode_ext,
    decode_metadata,
    packb,
    packb_exact,
    packb_plain,
    packb_plain_pair,
    packed_plain_pair,
    unpack,
    unpack_or_raise,
)
from ._plain_types import dumps_plain_data
from ._strictness import check_dumped, check_strictly, has_strict_rules
from ._types import K, V

__all__ = [
    "Codec",
    "RecordDecodeError",
    "decode_metadata",
    "describe_changes",
    "is_immutable",
    "type_name",
    "unpack",
]


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
        self.copies_values = not is_immutable(value_type)
        """True when values are mutable: memory then keeps their bytes and reads decode a copy."""
        self.plain_key = key_type if any(key_type is tp for tp in _PLAIN_KEYS) else None
        """The key type when it is a plain type whose instances need no validation."""
        self._plain_value = value_type if any(value_type is tp for tp in _PLAIN_VALUES) else None
        """The value type when it is a plain type whose instances need no validation."""
        self._reads_back_as_dumped = self.copies_values and dumps_plain_data(value_type)
        """Whether a write may prove its value reads back without reading it back (see
        ``_dumped_round_trip``). Not for immutable values: see ``_read_back``."""
        self.canonical_keys = key_type in (str, bytes, int, uuid.UUID) or (
            isinstance(key_type, type) and issubclass(key_type, enum.Enum)
        )
        """True when equal keys always encode to equal bytes (not so for Decimal, float
        or aware datetime keys: 1.0 == 1.00, 0.0 == -0.0, the same instant in two zones)."""
        self._description: dict[str, object] | None = None
        self._strict_keys: bool | None = None
        self._strict_values: bool | None = None
        """Whether the types have a strict rule (see ``_strictness``): known on first use."""

    # -- keys -----------------------------------------------------------------------------

    def encode_key(self, key: object) -> tuple[K, bytes]:
        """Validate ``key``; return it as the store holds it, and its bytes.

        Raises ``pydantic.ValidationError``, ``EncodingError`` (also for a key that is
        not equal to itself once read back, a NaN: no lookup could find it), or
        ``TypeError`` for a key that is not hashable after validation.
        """
        if self.plain_key is not None and type(key) is self.plain_key:
            return key, packb_plain(key)  # type: ignore[return-value]  # an exact plain K; no cast(), a call on every write
        validated, blob = self._validated_key(key)
        if not self.finds(validated, blob):
            raise EncodingError(
                f"key {reprlib.repr(key)} is not equal to itself (a NaN), so none could find it"
            )
        return validated, blob

    def _validated_key(self, key: object) -> tuple[K, bytes]:
        if self._strict_keys is None:
            self._strict_keys = has_strict_rules(self._keys.core_schema)
        validated, blob = _round_trip(self._keys, key, stable=True, strict=self._strict_keys)
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
        if type(key) is self.plain_key:  # never NoneType: None when no plain key type
            try:
                return key, packb_plain(key)  # type: ignore[return-value]  # an exact plain K; no cast(), a call on every write
            except EncodingError:  # an int beyond 64 bits, a str with a lone surrogate
                return None
        try:
            validated, blob = self._validated_key(key)
        except (pydantic.ValidationError, EncodingError, TypeError):
            return None
        return (validated, blob) if self.finds(validated, blob) else (cast(K, key), blob)

    def validate_key(self, data: object) -> K:
        """Return the key that decoded ``data`` validates to."""
        if self.plain_key is not None and type(data) is self.plain_key:
            return cast(K, data)
        return _validate_decoded(self._keys, data)

    def decode_key(self, blob: bytes) -> object:
        """Return the data a key's bytes hold, as :func:`unpack` does, for :meth:`validate_key`.

        Short ``str`` keys, the common case, are read without msgpack's call overhead.
        """
        # A msgpack fixstr (0xA0 plus its length, up to 31) and nothing after it:
        if self.plain_key is str and 0 < len(blob) <= 32 and blob[0] == 0xA0 + len(blob) - 1:
            try:
                return blob[1:].decode()
            except UnicodeDecodeError as exc:
                raise RecordDecodeError(str(exc)) from exc
        return unpack(blob)

    def key_bytes(self, key: K) -> bytes:
        """Return the bytes of a key that was already validated."""
        if self.plain_key is not None:
            return packb_plain(key)
        return _pack(self._keys, key)

    # -- values ---------------------------------------------------------------------------

    def encode_value(self, value: object) -> tuple[V, bytes]:
        """Validate ``value``; return it as a replay would give it, and its bytes."""
        if self._plain_value is not None and type(value) is self._plain_value:
            return value, packb_plain(value)  # type: ignore[return-value]  # an exact plain V; no cast()
        validated = self._values.validator.validate_python(value)  # the type's own rules
        if self._strict_values is None:
            # Not before first use, as for ``_bound_validate``.
            self._strict_values = has_strict_rules(self._values.core_schema)
        if self._reads_back_as_dumped:
            fast = _dumped_round_trip(
                self._values,
                validated,
                self._bound_validate or self._bind_validate(),
                strict=self._strict_values,
            )
            if fast is not None:
                return fast
        if self._strict_values:
            check_strictly(self._values, validated)
        # Memory keeps the bytes of mutable values; immutable ones are encoded again
        # by compaction, so those must give their own bytes back.
        return _read_back(self._values, validated, value, stable=not self.copies_values)

    def encode_write(self, key: object, value: object) -> tuple[K, bytes, object, bytes]:
        """Return the insert ``key = value``: :meth:`encode_key`, :meth:`encode_value` and
        :meth:`freeze` in one call, the path of every write (plain types need no more)."""
        if type(key) is self.plain_key:
            if type(value) is self._plain_value:
                return packed_plain_pair(key, value)  # type: ignore[return-value]  # an exact plain K; no cast(), a call on every write
            validated_key: K = key  # type: ignore[assignment]  # an exact plain K, as above
            key_bytes = packb_plain(key)  # encode_key's first case, inlined
        else:
            validated_key, key_bytes = self.encode_key(key)
        if self._reads_back_as_dumped and self._strict_values is False:
            # encode_value's commonest case, with _dumped_round_trip's non-strict one,
            # inlined (each step and its fallback as there): a mutable value, so memory
            # keeps its bytes, and the validated dump is the proof, not needed after it.
            values = self._values
            validated = values.validator.validate_python(value)
            try:
                data = values.serializer.to_python(
                    validated, by_alias=False, round_trip=True, warnings=False
                )
            except ENCODE_FAILURES:
                blob = None
            else:
                blob = packb_exact(data)
            if blob is not None and len(blob) <= MAX_RECORD_BYTES:
                try:
                    (self._bound_validate or self._bind_validate())(data)
                except pydantic.ValidationError:
                    pass
                else:
                    return validated_key, key_bytes, blob, blob
            blob = _read_back(values, validated, value, stable=False)[1]
            return validated_key, key_bytes, blob, blob
        validated, blob = self.encode_value(value)
        return validated_key, key_bytes, blob if self.copies_values else validated, blob

    def encode_insert(self, key: object, value: object) -> tuple[tuple[K, bytes, object, bytes], V]:
        """Return :meth:`encode_write`'s insert and the validated value it holds: the
        write of a collection with indexes, which read the value rather than decode its
        bytes again. Its commonest case inlined as in :meth:`encode_write`, which keeps
        nothing of the value."""
        if type(key) is self.plain_key:
            validated_key: K = key  # type: ignore[assignment]  # an exact plain K; no cast(), a call on every write
            key_bytes = packb_plain(key)  # encode_key's first case, inlined
        else:
            validated_key, key_bytes = self.encode_key(key)
        if self._reads_back_as_dumped and self._strict_values is False:
            values = self._values  # as in encode_write
            validated = values.validator.validate_python(value)
            try:
                data = values.serializer.to_python(
                    validated, by_alias=False, round_trip=True, warnings=False
                )
            except ENCODE_FAILURES:
                blob = None
            else:
                blob = packb_exact(data)
            # The value the indexes see is the one memory keeps (its bytes read back),
            # as in encode_value: not ``validated``, which may differ from it (a tuple
            # where a list is declared, in an instance built without validation).
            if blob is not None and len(blob) <= MAX_RECORD_BYTES:
                try:
                    kept = (self._bound_validate or self._bind_validate())(data)
                except pydantic.ValidationError:
                    pass
                else:
                    return (validated_key, key_bytes, blob, blob), kept
            kept, blob = _read_back(values, validated, value, stable=False)
            return (validated_key, key_bytes, blob, blob), kept
        validated, blob = self.encode_value(value)
        return (
            validated_key,
            key_bytes,
            blob if self.copies_values else validated,
            blob,
        ), validated

    def encode_modified(
        self, key: object, key_bytes: bytes | None, stored: object, fn: Callable[[V], object]
    ) -> tuple[V, bytes, object, bytes]:
        """Return what ``modify`` writes for ``key``, held as ``stored``: ``fn`` of a copy
        of its value (:meth:`thaw`), validated, the key's bytes, what memory keeps, and the
        value's bytes, as :meth:`encode_value` and :meth:`freeze` give them.

        ``key_bytes`` None: ``key`` is an exact :attr:`plain_key`, packed here, with a
        plain value in the same call (as :meth:`encode_write` does). One call for the
        whole of ``modify``'s codec work: its commonest case runs no other of this class.
        """
        if self.copies_values:
            # thaw and unpack, inlined: msgpack's unpack directly, unpack's own way on
            # anything it raises (a map keyed by arrays, damaged bytes).
            try:
                data = unpack_or_raise(stored, strict_map_key=False, ext_hook=decode_ext)
            except Exception:
                data = unpack(stored)  # type: ignore[arg-type]  # a mutable V is kept as its bytes
            validate = self._bound_validate or self._bind_validate()
            value = fn(validate(data))
            if self._reads_back_as_dumped and self._strict_values is False:
                # encode_value's commonest case, with _dumped_round_trip's non-strict
                # one, inlined (each step and its fallback as there; see encode_write).
                values = self._values
                validated = values.validator.validate_python(value)
                if key_bytes is None:
                    key_bytes = packb_plain(key)
                try:
                    data = values.serializer.to_python(
                        validated, by_alias=False, round_trip=True, warnings=False
                    )
                except ENCODE_FAILURES:
                    blob = None
                else:
                    blob = packb_exact(data)
                if blob is not None and len(blob) <= MAX_RECORD_BYTES:
                    try:
                        return validate(data), key_bytes, blob, blob
                    except pydantic.ValidationError:
                        pass
                fast = _read_back(values, validated, value, stable=False)
                return fast[0], key_bytes, fast[1], fast[1]
        else:
            value = fn(stored)  # type: ignore[arg-type]  # an immutable V is kept as itself
            if key_bytes is None and type(value) is self._plain_value:
                key_bytes, blob = packb_plain_pair(key, value)
                return value, key_bytes, value, blob  # type: ignore[return-value]  # an exact plain V; no cast()
        validated, blob = self.encode_value(value)
        if key_bytes is None:
            key_bytes = packb_plain(key)
        return validated, key_bytes, blob if self.copies_values else validated, blob

    def decode_value(self, blob: bytes) -> V:
        """Return the validated value held in ``blob``: a new object on every call."""
        return self.validate_value(unpack(blob))

    def freeze(self, value: V, blob: bytes) -> object:
        """Return what memory keeps for a value: its bytes when mutable, else itself."""
        return blob if self.copies_values else value

    def thaw(self, stored: object) -> V:
        """Return the value for what memory keeps: a fresh copy when values are mutable."""
        if self.copies_values:
            # decode_value and validate_value, inlined: every read of a mutable value
            # runs this. A mutable type is never a plain one, so no shortcut is missed.
            # No cast(): a call, on every read.
            return (self._bound_validate or self._bind_validate())(unpack(stored))  # type: ignore[arg-type]  # a mutable V is kept as its bytes
        return stored  # type: ignore[return-value]  # an immutable V is kept as itself

    def stored_bytes(self, stored: object) -> bytes:
        """Return the bytes of what memory keeps, for compaction."""
        if self.copies_values:
            return cast(bytes, stored)
        if self._plain_value is not None and type(stored) is self._plain_value:
            return packb_plain(stored)
        return _pack(self._values, cast(V, stored))

    def validate_value(self, data: object) -> V:
        """Return the value that decoded (or migrated) ``data`` validates to."""
        if self._plain_value is not None and type(data) is self._plain_value:
            return cast(V, data)
        return (self._bound_validate or self._bind_validate())(data)

    def decoding(self) -> Decoding[V] | None:
        """Return what replay's short path needs to decode records as :meth:`decode_key`,
        :meth:`validate_key`, :meth:`decode_value`, :meth:`validate_value` and
        :meth:`freeze` do; None unless the key type is a plain one (whose exact
        instances are valid keys as they are decoded)."""
        if self.plain_key is None:
            return None
        validate = self._bound_validate or self._bind_validate()
        return Decoding(
            self.plain_key,
            self._plain_value,
            validate,
            self.copies_values,
            unpack_or_raise,
            decode_ext,
        )

    def _bind_validate(self) -> Callable[[object], V]:
        """Return the value validator with the decoding options, bound once.

        Bound on first use, since every read of a mutable value and every replayed
        record calls it; but not before: a model with a forward reference may be
        completed (model_rebuild) after the store is opened.
        """
        validator = self._values.validator.validate_python
        validate: Callable[[object], V] = validator
        if decoding_options_matter(self._values.core_schema):
            validate = functools.partial(validator, **_DECODED)
        # Else the options change nothing, and passing them costs: 0.4 µs of a 1.5 µs
        # validation of a small model, on every read of a mutable value and every record
        # replayed.
        self._bound_validate = validate
        return validate

    def lost_fields(self, data: object, value: V) -> set[str]:
        """Return the fields ``data`` holds that ``value``, validated from it, no longer has.

        Paths are dotted, with ``[]`` for list items: ``address.zip``, ``items[].sku``.
        ``data`` may nest as deep as msgpack allows: no part of this recurses on it.
        """
        dumped = self._values.dump_python(value, by_alias=False, round_trip=True, warnings=False)
        return set(_metadata.missing_paths(data, dumped))

    # -- metadata -------------------------------------------------------------------------

    def metadata(self, version: int) -> bytes:
        """Return the metadata describing this codec's types at schema ``version``."""
        return packb(self.describe() | {"version": version, "fingerprint": self.fingerprint})

    def describe(self) -> dict[str, object]:
        """Return the type names and JSON schemas of the key and value types."""
        if self._description is None:
            self._description = _metadata.describe(
                self.key_type, self.value_type, self._keys, self._values
            )
        return self._description

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of :meth:`describe`: equal fingerprints mean unchanged types."""
        return _metadata.fingerprint(self.describe())


class Decoding(NamedTuple, Generic[V]):
    """What :meth:`Codec.decoding` returns: a codec's decoding, taken apart."""

    plain_key: object
    """The key type: exact instances of it are the keys they decode to."""
    plain_value: object
    """The value type if it is plain (exact instances of it are valid as decoded), else None."""
    validate: Callable[[object], V]
    """:meth:`Codec.validate_value` for a value that is not an exact ``plain_value``."""
    copies_values: bool
    """Whether memory keeps a value's bytes (see :meth:`Codec.freeze`) rather than it."""
    unpack: Callable[..., object]
    """msgpack's unpack, which raises its own exceptions: called as ``unpack(blob)`` for
    keys and ``plain_value`` values, it gives what :func:`unpack` gives for exact instances
    of a plain type, and something else (or raises) otherwise; called as ``unpack(blob,
    strict_map_key=False, ext_hook=ext_hook)``, it gives what :func:`unpack` gives, or
    raises where that would retry or refuse. A caller takes :func:`unpack`'s way (which
    reports errors, or reads a map keyed by arrays) on any exception."""
    ext_hook: Callable[[int, bytes], object]
    """The extension hook :func:`unpack` decodes with."""


_PLAIN_KEYS = (str, bytes, int, bool)
"""Key types whose exact instances are valid as they are and pack to bytes that read back
as themselves, equal and of the same type. Not ``float``: a NaN key must be refused."""
_PLAIN_VALUES = (str, bytes, int, bool, float)
"""The same for values, where a NaN is stored as any float is."""


class _DecodedOptions(typing.TypedDict):
    strict: bool
    by_alias: bool
    by_name: bool


_DECODED: _DecodedOptions = {"strict": False, "by_alias": False, "by_name": True}
"""How decoded data is validated: by field name, and lax, since msgpack has no tuples,
enums or UUIDs that strict mode would insist on (the input itself was validated as given,
and an instance built without validation is checked by ``_strictness``)."""


def decoding_options_matter(schema: object) -> bool:
    """Return whether validating with ``_DECODED`` may differ from validating without.

    Only a type with something strict (a strict field, or a ``strict`` config) or an alias
    (a field's, or an alias setting) can tell: ``_DECODED`` makes validation lax and by
    field name, which is what it is without options when no such thing is set. Read from
    the type's core schema, all of it (nested types and definitions included), and
    erring on the safe side: any key of those names anywhere, whatever its value, even
    in metadata, counts.
    """
    pending = [schema]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            if not _OPTION_KEYS.isdisjoint(item):
                return True
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


_OPTION_KEYS = frozenset(
    {
        "strict",
        "alias",
        "validation_alias",
        "validate_by_alias",
        "validate_by_name",
        "populate_by_name",
        "alias_generator",
    }
)
"""Keys of a core schema or config that make the options of ``_DECODED`` matter."""


def _round_trip(
    adapter: pydantic.TypeAdapter[V], raw: object, *, stable: bool, strict: bool
) -> tuple[V, bytes]:
    """Validate ``raw`` as given; return what validating its bytes gives, and the bytes.

    With ``strict`` (the type has a strict rule), an instance built without validation
    is checked by :func:`check_strictly`. See :func:`_read_back`.
    """
    validated = adapter.validator.validate_python(raw)  # the type's own rules, strict included
    if strict:
        check_strictly(adapter, validated)
    return _read_back(adapter, validated, raw, stable=stable)


def _read_back(
    adapter: pydantic.TypeAdapter[V], validated: V, raw: object, *, stable: bool
) -> tuple[V, bytes]:
    """Return what validating the bytes of ``validated`` (``raw`` validated) gives, and the bytes.

    With ``stable``, the bytes are those of the returned value itself, as compaction
    writes them; a value whose validation changes it again raises ``EncodingError``.
    For huge values (README, "Limitations"), the bytes are checked against the record
    bound before more copies are made, and a large value's first and second bytes are
    never held at once.
    """
    blob = _pack(adapter, validated)
    del validated  # a copy of a huge input need not outlive its bytes
    if len(blob) > MAX_RECORD_BYTES:
        raise _too_large(blob, raw)
    try:
        value = _validate_decoded(adapter, unpack(blob))
    except RecordDecodeError as exc:  # pragma: no cover - msgpack reads what it wrote
        raise EncodingError(f"msgpack cannot read back {type(raw).__name__}: {exc}") from exc
    if not stable:
        return value, blob
    # Inline rather than in a helper: this runs for every immutable value and most keys.
    written = blob if len(blob) <= _LARGE_BLOB else _digest(blob)
    del blob
    again = _pack(adapter, value)
    if (again if len(again) <= _LARGE_BLOB else _digest(again)) != written and not _same(
        _validate_decoded(adapter, unpack(again)), value
    ):
        raise EncodingError(
            f"{type(raw).__name__} changes each time it is validated (a validator "
            "that is not idempotent), so it would not read back as stored"
        )
    return value, again


def _dumped_round_trip(
    adapter: pydantic.TypeAdapter[V],
    validated: V,
    validate_decoded: Callable[[object], V],
    *,
    strict: bool,
) -> tuple[V, bytes] | None:
    """Return what :func:`_read_back` returns for a mutable value, or None to take that way.

    For a type whose dumps are plain data (``_plain_types``), validating the dump gives
    what validating its bytes would, when :func:`packb_exact` shows msgpack gives the
    dump back exactly: the read-back is skipped. A dump it cannot show that for (a
    tuple or a ``str`` subclass in an instance built without validation, a datetime in
    a named zone), or one that does not validate, takes the long way, which also
    reports any error as it always has. With ``strict`` (the type has a strict rule), a
    dump that is not what its value dumps to is checked by :func:`check_dumped`.
    """
    try:
        data = adapter.serializer.to_python(
            validated, by_alias=False, round_trip=True, warnings=False
        )
    except ENCODE_FAILURES:
        return None
    blob = packb_exact(data)
    if blob is None or len(blob) > MAX_RECORD_BYTES:
        return None
    try:
        value = validate_decoded(data)  # _validate_decoded, bound once by the codec
    except pydantic.ValidationError:
        return None
    if strict:
        check_dumped(adapter, data, blob, value)
    return value, blob


def _too_large(blob: bytes, raw: object) -> EncodingError:
    """Refuse bytes no record can hold, before more copies of them are made."""
    return EncodingError(
        f"{type(raw).__name__} encodes to {len(blob)} bytes, more than a record holds "
        f"(MAX_RECORD_BYTES, {MAX_RECORD_BYTES}); store large values in smaller pieces"
    )


_LARGE_BLOB = 1024 * 1024
"""Above this, hashing bytes twice costs less than holding two copies of them at once."""


def _digest(blob: bytes) -> bytes:
    """Return what stands for a large ``blob`` in a comparison: its size and SHA-256.

    Two blobs are equal exactly when their digests are (up to SHA-256 collisions), so
    the first can be freed before the second is made.
    """
    return len(blob).to_bytes(8, "big") + hashlib.sha256(blob).digest()


def _same(first: object, second: object) -> bool:
    try:
        return first == second
    except RecursionError:  # nested beyond what Python compares: not provably the same
        return False


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
    except ENCODE_FAILURES as exc:
        raise EncodingError(f"cannot dump {type(raw).__name__}: {exc}") from exc
    return packb(data)
