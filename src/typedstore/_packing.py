"""msgpack packing and unpacking: the log's own extension types and its one packer per thread.

The only module that imports msgpack. What a key or value is as data (the pydantic dump)
is the codec's business; this module turns such data into bytes and back.
"""

from __future__ import annotations

import datetime
import re
import threading
from collections.abc import Callable
from typing import TypeVar, cast

# msgpack ships no type information; this module narrows what it returns on the spot.
# The ignore is for users' mypy runs, which do not read this repository's mypy.ini.
import msgpack  # type: ignore[import-untyped, unused-ignore]
import pydantic_core

from ._errors import EncodingError

EXT_DATETIME = 1
"""msgpack extension code of a ``datetime``: its ``isoformat()`` text in UTF-8."""
EXT_TIME = 2
"""msgpack extension code of a ``time``: its ``isoformat()`` text in UTF-8."""

MAX_NESTING = 1024
"""How deep msgpack packs and unpacks nested arrays and maps: deeper data raises."""
ENCODE_FAILURES = (TypeError, ValueError, OverflowError, pydantic_core.PydanticSerializationError)
"""What packing or pydantic's dump raise for data they cannot encode."""
_DECODE_FAILURES = (ValueError, TypeError, msgpack.UnpackException)


class RecordDecodeError(Exception):
    """Bytes in a checksum-valid record that msgpack cannot decode."""


def _decode_ext(code: int, data: bytes) -> object:
    if code == EXT_DATETIME:
        text = data.decode()
        value = _datetime_from_text(text)
        # _with_offset_of's first test, inlined: a datetime of every replayed value runs it.
        if value.tzinfo is not _UTC or text.endswith("+00:00"):
            return value
        return _with_offset_of(value, text)
    if code == EXT_TIME:
        text = data.decode()
        return _with_offset_of(datetime.time.fromisoformat(text), text)
    return msgpack.ExtType(code, data)


_Clock = TypeVar("_Clock", datetime.datetime, datetime.time)


def _with_offset_of(value: _Clock, text: str) -> _Clock:
    """Return ``value``, read from ``text``, with the UTC offset ``text`` ends with.

    Python 3.11's ``fromisoformat`` reads an offset under a second that is not zero
    (``+00:00:00.000001``, as ``isoformat`` writes it) as UTC: another instant.
    """
    if value.tzinfo is not datetime.UTC or text.endswith("+00:00"):
        return value
    match = _SUB_SECOND_OFFSET.search(text)
    if match is None:
        return value
    microseconds = int(match[2]) if match[1] == "+" else -int(match[2])
    return value.replace(tzinfo=datetime.timezone(datetime.timedelta(microseconds=microseconds)))


_SUB_SECOND_OFFSET = re.compile(r"([+-])00:00:00\.(\d{6})$")
_UTC = datetime.UTC
_datetime_from_text = datetime.datetime.fromisoformat


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


unpack_or_raise: Callable[..., object] = msgpack.unpackb
"""msgpack's own unpack, for a short path that takes :func:`unpack`'s way on any exception
it raises (replay's, for each record of the common case).

Called on its own, it gives what :func:`unpack` gives for an exact ``str``, ``bytes``,
``int``, ``float`` or ``bool``, and for anything else either something else (an extension
type as msgpack's ``ExtType``) or an exception (a map keyed by other than ``str``). Called
as ``unpack_or_raise(blob, strict_map_key=False, ext_hook=decode_ext)``, it gives what
:func:`unpack` gives, or raises where :func:`unpack` would retry or refuse. The options
are spelled out at the call rather than bound in a ``functools.partial``, which costs
0.2 µs per call."""
decode_ext = _decode_ext
"""The extension hook :func:`unpack` passes msgpack (datetimes and times)."""


def decode_metadata(blob: bytes) -> dict[str, object]:
    """Return the header metadata as a dict, or raise ``RecordDecodeError``."""
    data = unpack(blob)
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise RecordDecodeError("header metadata is not a map of strings")
    return cast(dict[str, object], data)


_packers = threading.local()
_PACKER_KEEP_BYTES = 64 * 1024
"""A packer that packed more than this is dropped: it would keep a buffer that large."""


def packb(data: object) -> bytes:
    """Pack ``data`` with this thread's packer: making one per value costs more than packing.

    The packer is taken out of the thread's slot while it packs. Code that runs inside a
    pack (``_encode_default`` packing a set's elements, or a signal handler or finalizer
    that writes to a store) and packs again then finds the slot empty and makes its own
    packer, instead of writing into the middle of this one's buffer.
    Raises ``EncodingError``, also for data nested deeper than ``MAX_NESTING``.
    """
    packer: msgpack.Packer | None = _packers.__dict__.pop("packer", None)
    if packer is None:
        packer = msgpack.Packer(default=_encode_default)
    # On any failure the packer is dropped: its buffer may have grown.
    try:
        packed: bytes = packer.pack(data)
    except EncodingError:  # from a set's element, packed on its own: it names the problem
        raise
    except RecursionError as exc:  # sets nested in sets: each level packs its elements
        raise EncodingError(f"{type(data).__name__} is nested too deeply to encode") from exc
    except ENCODE_FAILURES as exc:
        reason = _reason(exc)
        raise EncodingError(f"cannot encode {type(data).__name__} as msgpack: {reason}") from exc
    if len(packed) <= _PACKER_KEEP_BYTES:
        _packers.packer = packer
    return packed


_SHARED_PLAIN_PACKER = msgpack.Packer.__module__ != "msgpack.fallback"
"""Whether threads can share one packer of plain data: msgpack's C packer, not its
pure-Python fallback (PyPy, or ``MSGPACK_PUREPYTHON``), which runs Python code while it
packs, where another thread can enter the same packer and mix two writes' bytes."""


def _new_plain_packer() -> Callable[[object], bytes]:
    """Return what packs plain data: one packer's ``pack`` for every thread (see
    :func:`packb_plain`), or with the fallback ``msgpack.packb``, a packer per pack."""
    packs: Callable[[object], bytes] = (
        msgpack.Packer().pack if _SHARED_PLAIN_PACKER else msgpack.packb
    )
    return packs


_plain_pack: Callable[[object], bytes] = _new_plain_packer()
"""The packer of plain data, one for every thread: see :func:`packb_plain`."""


def packb_plain(data: object) -> bytes:
    """Pack an exact ``str``, ``bytes``, ``int``, ``float`` or ``bool`` as :func:`packb` does.

    Faster than :func:`packb`, with one packer for every thread: packing such data is
    one call into msgpack's C code that runs no Python code (no default hook) and does
    not let go of the GIL, so no other thread, signal handler or nested pack can enter
    the packer while it packs, and it holds nothing between packs (it resets after
    each). Not so with msgpack's pure-Python fallback, which gets a packer per pack
    (:data:`_SHARED_PLAIN_PACKER`). Raises ``EncodingError`` as :func:`packb` does.
    """
    try:
        packed = _plain_pack(data)
    except ENCODE_FAILURES as exc:  # msgpack resets its buffer before raising
        reason = _reason(exc)
        raise EncodingError(f"cannot encode {type(data).__name__} as msgpack: {reason}") from exc
    if len(packed) > _PACKER_KEEP_BYTES:
        _renew_plain_packer()
    return packed


def packb_plain_pair(key: object, value: object) -> tuple[bytes, bytes]:
    """Return :func:`packb_plain` of ``key`` and of ``value``: one write's, in one call."""
    try:
        packed = _plain_pack(key), _plain_pack(value)
    except ENCODE_FAILURES:  # msgpack resets its buffer before raising
        packb_plain(key)  # whichever fails raises EncodingError naming its type
        packb_plain(value)
        raise
    if len(packed[0]) + len(packed[1]) > _PACKER_KEEP_BYTES:
        _renew_plain_packer()
    return packed


def packed_plain_pair(key: object, value: object) -> tuple[object, bytes, object, bytes]:
    """Return ``key``, its bytes, ``value`` and its bytes, packed as :func:`packb_plain_pair`
    packs them: an insert of plain data in one call, in the order the codec gives it."""
    try:
        key_bytes = _plain_pack(key)
        blob = _plain_pack(value)
    except ENCODE_FAILURES:  # msgpack resets its buffer before raising
        packb_plain(key)  # whichever fails raises EncodingError naming its type
        packb_plain(value)
        raise
    if len(key_bytes) + len(blob) > _PACKER_KEEP_BYTES:
        _renew_plain_packer()
    return key, key_bytes, value, blob


def _renew_plain_packer() -> None:
    """Drop the packer of plain data, which would keep a buffer as large as its last pack."""
    global _plain_pack  # one packer for every thread, replaced whole
    _plain_pack = _new_plain_packer()


_exact_packers = threading.local()


class _NotExact(Exception):
    """Raised inside :func:`packb_exact` for an object msgpack would not give back as it is."""


def packb_exact(data: object) -> bytes | None:
    """Return ``data`` packed as :func:`packb` would, or None if it might not read back exactly.

    Exactly: :func:`unpack` of the bytes gives data equal to ``data`` and of the same
    types all the way down, since it holds nothing but plain ``dict``, ``list``,
    ``str``, ``int``, ``float``, ``bool``, ``None`` and ``bytes``, and ``datetime``
    objects whose extension type reads back as the same object (see
    :func:`_exact_default`). Tuples, sets, subclasses and every other object make it
    return None (packing stops there), so that the caller proves the round trip the long
    way. One exception: msgpack packs ``bytearray`` and ``memoryview`` as it packs
    ``bytes``, and gives them back as ``bytes``. Raises ``EncodingError`` as
    :func:`packb` does.
    """
    packer: msgpack.Packer | None = _exact_packers.__dict__.pop("packer", None)
    if packer is None:
        # strict_types: a subclass of str, int, dict... or a tuple goes to the default,
        # which refuses it, instead of being packed as its base type.
        packer = msgpack.Packer(default=_exact_default, strict_types=True)
    try:
        packed: bytes = packer.pack(data)
    except _NotExact:
        packer.reset()
        _exact_packers.packer = packer
        return None
    except RecursionError as exc:  # pragma: no cover - msgpack's own limit comes first
        raise EncodingError(f"{type(data).__name__} is nested too deeply to encode") from exc
    except ENCODE_FAILURES as exc:
        reason = _reason(exc)
        raise EncodingError(f"cannot encode {type(data).__name__} as msgpack: {reason}") from exc
    if len(packed) <= _PACKER_KEEP_BYTES:
        _exact_packers.packer = packer
    return packed


def _exact_default(obj: object) -> object:
    # A datetime is its ISO text, which datetime.fromisoformat reads back as an equal
    # datetime; the same object only when its zone is a plain offset that carries no
    # name of its own (fromisoformat gives unnamed offsets) and fold is 0 (ISO has none).
    # Unnamed: not by comparing the zone's name with that of the unnamed zone of its
    # offset, since a zone may be given that very name (``timezone(timedelta(0),
    # "UTC")``) and still keeps it, in its repr and its pickle, where fromisoformat gives
    # a zone without one. Its constructor arguments (the pickle protocol's
    # ``__getinitargs__``, which typeshed omits) say which it is, and cost less.
    if type(obj) is _DATETIME and not obj.fold:
        zone = obj.tzinfo
        if (
            zone is None
            or zone is _UTC
            or (type(zone) is _TIMEZONE and len(zone.__getinitargs__()) == 1)  # type: ignore[attr-defined]
        ):
            return _new_ext_type(_ExtType, (EXT_DATETIME, obj.isoformat().encode()))
    raise _NotExact


_ExtType = msgpack.ExtType
_DATETIME, _TIMEZONE = datetime.datetime, datetime.timezone
_new_ext_type = tuple.__new__
"""Builds an ``ExtType`` as its own ``__new__`` does once its checks pass, without its
two Python-level calls: the code is a constant in range and the data ``bytes``."""


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValueError) and "recursion limit" in str(exc):  # msgpack's wording
        return f"it is nested deeper than {MAX_NESTING} levels, the most msgpack reads back"
    return str(exc)


def _encode_default(obj: object) -> object:
    # datetime and time get extension types of their own: pydantic's ISO text would
    # round a UTC offset with seconds (historic zones) to minutes, another instant.
    if isinstance(obj, datetime.datetime):
        return msgpack.ExtType(EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, datetime.time):
        return msgpack.ExtType(EXT_TIME, obj.isoformat().encode())
    if isinstance(obj, (set, frozenset)):
        return _sorted_elements(obj)
    return pydantic_core.to_jsonable_python(obj)


def _sorted_elements(elements: set[object] | frozenset[object]) -> list[object]:
    """Return a set's elements in the order of their bytes, as data with no set left in it.

    In a fixed order: equal sets must give equal bytes, or a model-free reader (the CLI)
    would take one key, built two ways, for two keys. The elements come back as their
    bytes decoded (which pack to the same bytes), not as themselves: packing themselves
    again would sort every set inside them again, twice per level of nesting.
    """
    return [
        msgpack.unpackb(packed, use_list=False, strict_map_key=False)
        for packed in sorted(map(packb, elements))
    ]
