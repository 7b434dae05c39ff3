"""The log's byte layout: header, frames, checksums and record bodies.

This module knows bytes only; keys and values are opaque msgpack blobs here.
The layout is documented with a worked example in ``docs/FORMAT.md``.
"""

from __future__ import annotations

import enum
import functools
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ._errors import EncodingError

MAGIC = b"\x89TDSLOG\n"
"""First 8 bytes of every log. The high byte and newline catch text-mode mangling."""
FORMAT_VERSION = 1
MAX_META_BYTES = 16 * 1024 * 1024
"""Sanity bound on the header's metadata, so a damaged length never allocates much."""
MAX_RECORD_BYTES = 256 * 1024 * 1024
"""Sanity bound on a frame's body length, so a damaged length never allocates gigabytes."""

_HEADER_FIXED = struct.Struct("<8sHHI")  # magic, version, flags, metadata length
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_FRAME_HEAD = struct.Struct("<III")  # head checksum, body length, body checksum
_HEAD_TAIL = struct.Struct("<II")  # body length, body checksum: what the head checksum covers
FRAME_OVERHEAD = _FRAME_HEAD.size
HEADER_OVERHEAD = _HEADER_FIXED.size + _U32.size


class RecordKind(enum.IntEnum):
    """The first byte of a frame's body."""

    INSERT = 1
    REMOVE = 2
    BATCH = 3
    SCHEMA = 4
    COLLECTION = 5


class Op(NamedTuple):
    """One insert (``value`` set) or remove (``value`` is None) decoded from a body.

    ``collection`` is the id of the collection it applies to: 0 for the records of a
    single-collection log and of a database's collection 0 (bare insert and remove
    records), the id a collection record names otherwise.
    """

    key: bytes
    value: bytes | None
    collection: int = 0


class FormatError(Exception):
    """Bytes that are not a well-formed header or body; carries the reason."""


class ForeignFileError(FormatError):
    """The bytes do not start with a typedstore header this version can read."""


# -- header ---------------------------------------------------------------------------------


def encode_header(meta: bytes) -> bytes:
    """Return the header bytes carrying ``meta`` (opaque metadata)."""
    if len(meta) > MAX_META_BYTES:
        raise ValueError(f"header metadata of {len(meta)} bytes exceeds {MAX_META_BYTES}")
    head = _HEADER_FIXED.pack(MAGIC, FORMAT_VERSION, 0, len(meta)) + meta
    return head + _U32.pack(zlib.crc32(head))


def decode_header(buf: bytes) -> tuple[bytes, int]:
    """Return ``(meta, end_offset)`` of the header at the start of ``buf``.

    Raises ``ForeignFileError`` when the magic or version is not ours and
    ``FormatError`` when a header of ours is damaged or cut short.
    """
    if buf[: len(MAGIC)] != MAGIC:
        raise ForeignFileError("no typedstore magic number at offset 0")
    if len(buf) >= len(MAGIC) + 2:  # the version is known even if the rest is cut short
        (version,) = struct.unpack_from("<H", buf, len(MAGIC))
        if version != FORMAT_VERSION:
            raise ForeignFileError(
                f"format version {version}; this typedstore reads version {FORMAT_VERSION}"
            )
    if len(buf) < _HEADER_FIXED.size:
        raise FormatError("header cut short")
    _, _, flags, meta_len = _HEADER_FIXED.unpack_from(buf, 0)
    end = _HEADER_FIXED.size + meta_len
    if flags != 0 or meta_len > MAX_META_BYTES or len(buf) < end + _U32.size:
        raise FormatError("header damaged or cut short")
    (crc,) = _U32.unpack_from(buf, end)
    if crc != zlib.crc32(memoryview(buf)[:end]):
        raise FormatError("header checksum mismatch")
    return bytes(buf[_HEADER_FIXED.size : end]), end + _U32.size


# -- frames ---------------------------------------------------------------------------------


def encode_frame(body: bytes, offset: int) -> bytes:
    """Return ``body`` framed to be written at byte ``offset``; see ``docs/FORMAT.md``.

    The frame's head (length and body checksum) has a checksum of its own, which
    also covers the offset: a frame is valid only where it was written, so a frame
    stored inside a value never passes for a record, and an intact head tells a
    record cut short by a crash apart without reading further.
    Raises ``EncodingError`` when the body exceeds ``MAX_RECORD_BYTES``.
    """
    # _frame_head and _seed, inlined: every write frames its record here.
    length = len(body)
    if length > MAX_RECORD_BYTES:
        raise _record_too_large(length)
    tail = _pack_head_tail(length, _crc32(body))
    return _pack_u32(_crc32(tail, _crc32(_pack_u64(offset)))) + tail + body


def operation_frame(head: bytes, key: bytes, value: bytes | None, offset: int) -> bytes:
    """Return the frame :func:`encode_frame` makes at ``offset`` of ``head`` (a collection
    record's head, or nothing) followed by the insert body of ``key`` and ``value``, or the
    remove body of ``key`` when ``value`` is None: a single write's record, in one call.

    The record every single write appends, so the bodies and the frame are built here
    without a call each. Raises ``EncodingError`` when the body exceeds ``MAX_RECORD_BYTES``.
    """
    if value is None:
        body = head + b"\x02" + key  # remove_body's
    else:
        try:  # insert_body's: the kind and key length, made once for keys under 256 bytes
            kind_and_size = _INSERT_HEADS[len(key)]
        except IndexError:
            kind_and_size = _pack_insert_head(_INSERT, len(key))
        body = head + kind_and_size + key + value
    length = len(body)
    if length > MAX_RECORD_BYTES:
        raise _record_too_large(length)
    crc = _crc32(body)
    # The head's checksum covers the offset's bytes, then length and body checksum: one
    # CRC of the three packed together is the same number as encode_frame's seeded one.
    return _pack_frame_head(_crc32(_pack_covered(offset, length, crc)), length, crc) + body


_pack_frame_head = _FRAME_HEAD.pack
_pack_covered = struct.Struct("<QII").pack
"""The offset, length and body checksum: what a frame head's checksum covers, in order."""


def frame_parts(body: list[bytes], offset: int) -> list[bytes]:
    """Return the frame :func:`encode_frame` makes of the concatenated ``body``, as parts.

    The parts are the frame's head followed by ``body``'s own parts, uncopied: a huge
    value is framed and written without a second copy of it. Raises ``EncodingError``
    when the body exceeds ``MAX_RECORD_BYTES``.
    """
    crc = 0
    for part in body:
        crc = zlib.crc32(part, crc)
    return [_frame_head(sum(map(len, body)), crc, offset), *body]


def _frame_head(length: int, crc: int, offset: int) -> bytes:
    """Return the head of a frame at ``offset`` whose body has ``length`` and ``crc``."""
    if length > MAX_RECORD_BYTES:
        raise _record_too_large(length)
    tail = _HEAD_TAIL.pack(length, crc)
    return _U32.pack(zlib.crc32(tail, _seed(offset))) + tail


def _record_too_large(length: int) -> EncodingError:
    return EncodingError(
        f"a record of {length} bytes exceeds MAX_RECORD_BYTES ({MAX_RECORD_BYTES}); "
        "store large values in smaller pieces or commit smaller transactions"
    )


def _seed(offset: int) -> int:
    return zlib.crc32(_U64.pack(offset))


_crc32 = zlib.crc32
_pack_u64 = _U64.pack
_pack_u32 = _U32.pack
_pack_head_tail = _HEAD_TAIL.pack


def read_head(buf: bytes, offset: int, base: int = 0) -> int:
    """Return where the frame whose head at ``offset`` is intact ends, or -1.

    Intact: all head bytes present, the length within bounds and the head checksum
    matching. The end returned may lie beyond ``buf``: the frame is then cut short.
    ``base`` is the position of ``buf[0]`` in the log, when ``buf`` is not read from
    the log's first byte: the frame's position is ``base + offset``.
    """
    if offset + FRAME_OVERHEAD > len(buf):
        return -1
    crc, length, _ = _FRAME_HEAD.unpack_from(buf, offset)
    if length == 0 or length > MAX_RECORD_BYTES:
        return -1
    if zlib.crc32(buf[offset + 4 : offset + FRAME_OVERHEAD], _seed(base + offset)) != crc:
        return -1
    end: int = offset + FRAME_OVERHEAD + length
    return end


def read_frame(buf: bytes, offset: int, view: memoryview | None = None, base: int = 0) -> int:
    """Return the end offset of the valid frame at ``offset``, or -1 if there is none.

    A frame is invalid when its head is not intact (see :func:`read_head`), its body
    is cut short, or the body checksum does not match. ``view``, a memoryview of
    ``buf``, saves making one per call when walking many frames; ``base`` is as for
    :func:`read_head`.
    """
    # read_head's checks, inlined: this runs once per record on every open. A frame
    # cut short is invalid here whatever its head, so the cheap length test goes first.
    body = offset + FRAME_OVERHEAD
    if body > len(buf):
        return -1
    crc, length, body_crc = _FRAME_HEAD.unpack_from(buf, offset)
    end: int = body + length
    if length == 0 or end > len(buf) or length > MAX_RECORD_BYTES:
        return -1
    # The head checksum seeded with the offset's (see _frame_head), as one CRC.
    if _crc32(_pack_u64(base + offset) + buf[offset + 4 : body]) != crc:
        return -1
    if view is None:
        view = memoryview(buf)
    if _crc32(view[body:end]) != body_crc:
        return -1
    return end


def bare_records(
    buf: bytes, offset: int, generation: int, limit: int, base: int = 0
) -> tuple[list[int], int]:
    """Return the run of valid frames from ``offset`` on that hold bare inserts and removes
    written under schema ``generation``, and the offset where the run ends. ``base`` is
    as for :func:`read_head`: the log's position of ``buf[0]`` (a catch-up's new bytes).

    The most common records, read in a run at a time: at most ``limit`` frames, as a flat
    list of ``offset, split, end`` for each, where ``[offset, end)`` is the frame and
    ``split`` where an insert's value starts (its key is ``buf[offset + 17 : split]``),
    or 0 for a removal (its key is ``buf[offset + 13 : end]``). The run ends at the first
    frame that is not valid (see :func:`read_frame`), holds any other record (a bare
    insert with an impossible key length included) or starts fewer than 17 bytes before
    the end of ``buf``: :func:`read_frame` and :func:`decode_body` read that one, and say
    what is wrong with it, if anything is.
    """
    found: list[int] = []
    size = len(buf)
    view = memoryview(buf)
    insert, remove = _INSERT | generation << 3, _REMOVE | generation << 3
    unpack_head, crc32, pack_checked = _FRAME_HEAD_INSERT.unpack_from, _crc32, _HEAD_CHECKED.pack
    # A frame with fewer bytes left than an insert's head is left to the caller, as the
    # last of a log may be: reading it takes one unpack per frame here, not two.
    last = size - _FRAME_HEAD_INSERT.size
    while limit and offset <= last:
        # read_frame's and _insert_split's checks, inlined: this runs once per record on
        # every open. The key length of a removal is bytes of its key, and unused.
        crc, length, body_crc, kind, key_len = unpack_head(buf, offset)
        start = offset + FRAME_OVERHEAD
        end = start + length
        if kind == insert:
            split = start + 5 + key_len
            if key_len == 0 or split >= end:
                break
        elif kind == remove and length > 1:
            split = 0
        else:  # any other record is left before its checksums are computed
            break
        if (
            end > size
            or length > MAX_RECORD_BYTES
            # The bytes the head's checksum covers, packed from the head's own fields.
            or crc32(pack_checked(base + offset, length, body_crc)) != crc
            or crc32(view[start:end]) != body_crc
        ):
            break
        found += (offset, split, end)
        offset = end
        limit -= 1
    return found, offset


_FRAME_HEAD_INSERT = struct.Struct("<IIIBI")
"""A frame's head, then an insert body's kind and key length."""
_HEAD_CHECKED = struct.Struct("<QII")
"""What a head's checksum covers: the frame's offset, then its body length and checksum."""
INSERT_KEY = FRAME_OVERHEAD + 5
"""Where a bare insert's key starts in its frame."""
REMOVE_KEY = FRAME_OVERHEAD + 1
"""Where a bare removal's key starts in its frame."""


def find_next_frame(buf: bytes, offset: int) -> int:
    """Return the first offset after the invalid frame at ``offset`` where a valid frame
    starts, or -1.

    A frame head whose checksum is intact was written where it stands, with the length
    it claims, and the next write went where that record ends: no frame starts inside
    it. So an intact head with a bad body sends the search to its end. A head further on
    that claims more bytes than are left, or whose body does not start with a record
    kind, is passed over, but one at ``offset`` whose record reaches past the end of
    ``buf`` leaves nothing to find. Each byte is checksummed at most once as part of a
    body, and the scan stays linear whatever the input. Candidate heads come from
    :func:`_candidates`, found at C speed a window at a time; a window's candidates are
    used up before the next window is searched.
    """
    size = len(buf)
    end = read_head(buf, offset)
    position = offset + 1 if end == -1 else end
    limit = size - FRAME_OVERHEAD  # a head starting here or later has no body byte
    while position < limit:
        stop = min((position | (_WINDOW - 1)) + 1, limit)
        for candidate in _candidates(buf, position, stop):
            if candidate < position or not _KIND_OK[buf[candidate + FRAME_OVERHEAD]]:
                continue
            end = read_head(buf, candidate)
            if end == -1 or end > size:
                continue
            if _body_intact(buf, candidate, end):
                return candidate
            position = end
        position = max(position, stop)
    return -1


def _body_intact(buf: bytes, offset: int, end: int) -> bool:
    (crc,) = _U32.unpack_from(buf, offset + 8)
    intact: bool = zlib.crc32(memoryview(buf)[offset + FRAME_OVERHEAD : end]) == crc
    return intact


_WINDOW = 1 << 20
"""Bytes of a log examined per call of :func:`_candidates`; windows are aligned to it."""
_KIND_OK = bytes(1 if 1 <= byte & 0x07 <= 5 else 0 for byte in range(256))
"""1 for a byte that can start a body (a record kind, with any schema generation), else 0."""


def _candidates(buf: bytes, start: int, stop: int) -> list[int]:
    """Return, in order, offsets in ``[start, stop)`` where a frame head may be intact.

    ``[start, stop)`` lies in one ``_WINDOW``-aligned window. Where few offsets pass the
    cheap length test of :func:`_length_candidates` they are returned; otherwise, as on
    random bytes in a large log or on msgpack, :func:`_checksum_candidates`' filter,
    whose cost does not depend on the data, is used.
    """
    found = _length_candidates(buf, start, stop)
    return _checksum_candidates(buf, start, stop) if found is None else found


def _length_candidates(buf: bytes, start: int, stop: int) -> list[int] | None:
    """Return the offsets in ``[start, stop)`` whose length field fits the bytes left in
    ``buf``, or None when there are more than about one in 128.

    A head's length is a little-endian u32 from 1 to the bytes left. Unless its top byte
    is set, the length's highest non-zero byte is followed by zeros: a non-zero byte then
    a zero byte. The window is translated to Z (zero) and N (not zero), those pairs are
    counted and found with ``bytes.find``, and the top byte's values with a second
    translation, so Python time is spent only per pair (about one in 256 random bytes,
    none in zeros or text).
    """
    longest = min(len(buf) - FRAME_OVERHEAD - start, MAX_RECORD_BYTES)
    top = (max(longest, 1).bit_length() - 1) // 8  # the highest length byte that may be set
    bound = longest >> (8 * top)
    window = buf[start : stop + FRAME_OVERHEAD]
    budget = (stop - start) >> 7
    tops: list[int] = []
    if top == 3:  # a length whose top byte is set: that byte is 1 to ``bound``
        marks = window.translate(bytes(1 if 1 <= byte <= bound else 0 for byte in range(256)))
        if marks.count(1) > budget:
            return None
        tops = _top_bytes(marks)
    letters = window.translate(_ZERO_OR_NOT)
    if letters.count(b"NZ") > budget:
        return None
    found = _falling_edges(letters, window, top, bound)
    if tops:
        found = sorted(found + tops)
    size = stop - start
    return [start + head for head in found if 0 <= head < size]


_ZERO_OR_NOT = bytes(0x5A if byte == 0 else 0x4E for byte in range(256))
"""Translates a byte to Z (zero) or N (not zero)."""


def _falling_edges(letters: bytes, window: bytes, top: int, bound: int) -> list[int]:
    """Return the heads in ``window`` whose length's highest set byte is not byte 3."""
    heads = []
    highest = min(top, 2)
    edge = letters.find(b"NZ")
    while edge != -1:
        zeros = letters[edge + 1 : edge + 4]
        run = 3 if zeros == b"ZZZ" else 2 if zeros[:2] == b"ZZ" else 1
        for high in range(3 - run, highest + 1):  # the set byte is length byte ``high``
            if high < top or window[edge] <= bound:
                heads.append(edge - 4 - high)
        edge = letters.find(b"NZ", edge + 1)
    return heads


def _top_bytes(marks: bytes) -> list[int]:
    """Return the heads whose length byte 3 is marked in ``marks``."""
    heads = []
    index = marks.find(1, 7)
    while index != -1:
        heads.append(index - 7)
        index = marks.find(1, index + 1)
    return heads


def _checksum_candidates(buf: bytes, start: int, stop: int) -> list[int]:
    """Return the offsets in ``[start, stop)`` where a head checksum's low byte matches.

    A head's checksum is CRC-32, affine over GF(2) in the head's other 8 bytes and in
    the offset's bits (the seed), so its low byte is an XOR of per-byte table lookups:
    ``bytes.translate`` looks them up for every offset at once, and Python integers XOR
    the translated strings. About one offset in 256 matches, whatever the data.
    """
    tables = _crc_tables()[0]
    base = start & -_WINDOW  # bits of the offset above the window's are one constant
    total = int.from_bytes(buf[start:stop], "little")
    total ^= _low_offset_bytes(start - base, stop - base)
    for index, table in enumerate(tables):
        if index == 0:
            table = table.translate(_xor_table(_offset_byte(base)))
        shift = start + 4 + index
        total ^= int.from_bytes(buf[shift : stop + 4 + index].translate(table), "little")
    matches = total.to_bytes(stop - start, "little")
    found = []
    index = matches.find(0)
    while index != -1:
        found.append(start + index)
        index = matches.find(0, index + 1)
    return found


@functools.cache
def _crc_tables() -> tuple[list[bytes], bytes, int]:
    """Return the tables :func:`_candidates` translates with.

    The low byte of ``crc32(head[4:12], _seed(offset))`` is the XOR of ``tables[m]``
    looked up at ``head[4 + m]`` for each ``m``, of ``_offset_byte`` of the offset's
    window, and of ``low`` at the offset within that window (also given as an integer).
    """
    zeros = bytes(8)
    origin = zlib.crc32(zeros, _seed(0))
    tables = []
    for index in range(8):
        entries = bytearray(256)
        for byte in range(256):
            head = bytearray(8)
            head[index] = byte
            entries[byte] = (zlib.crc32(head, _seed(0)) ^ origin) & 0xFF
        tables.append(bytes(entries))
    low = b"\x00"
    while len(low) < _WINDOW:  # each doubling adds one bit of the offset, linearly
        low += low.translate(_xor_table((zlib.crc32(zeros, _seed(len(low))) ^ origin) & 0xFF))
    return tables, low, int.from_bytes(low, "little")


def _offset_byte(base: int) -> int:
    return zlib.crc32(bytes(8), _seed(base)) & 0xFF


def _low_offset_bytes(start: int, stop: int) -> int:
    _, low, whole = _crc_tables()
    if start == 0 and stop == _WINDOW:
        return whole
    return int.from_bytes(low[start:stop], "little")


def _xor_table(mask: int) -> bytes:
    return bytes(byte ^ mask for byte in range(256))


def frame_body(buf: bytes, offset: int, end: int) -> memoryview:
    """Return the body of the valid frame spanning ``[offset, end)``."""
    return memoryview(buf)[offset + FRAME_OVERHEAD : end]


# -- bodies ---------------------------------------------------------------------------------


def insert_body(key: bytes, value: bytes) -> bytes:
    """Return the body of an insert record."""
    return _pack_insert_head(_INSERT, len(key)) + key + value  # _insert_head's


def insert_parts(key: bytes, value: bytes) -> list[bytes]:
    """Return the body of an insert record as parts, ``value`` uncopied among them."""
    return [_insert_head(key), value]


def _insert_head(key: bytes) -> bytes:
    """Return what an insert record's body holds before its value: kind and key."""
    return _pack_insert_head(_INSERT, len(key)) + key


_pack_insert_head = struct.Struct("<BI").pack
"""The kind and key length an insert body starts with."""
_INSERT = int(RecordKind.INSERT)
_INSERT_HEADS = tuple(_pack_insert_head(_INSERT, size) for size in range(256))
"""An insert body's kind and key length, for keys of under 256 bytes (most)."""


def remove_body(key: bytes) -> bytes:
    """Return the body of a remove record."""
    return b"\x02" + key


def collection_body(collection: int, body: bytes) -> bytes:
    """Return the body of a collection record: the insert or remove ``body`` applied to
    the collection with id ``collection`` (at least 1; collection 0's are bare)."""
    return _collection_head(collection) + body


def _collection_head(collection: int) -> bytes:
    if not 1 <= collection <= _MAX_COLLECTION:
        raise ValueError(f"collection id {collection} is out of range 1..{_MAX_COLLECTION}")
    return b"\x05" + _U32.pack(collection)


_MAX_COLLECTION = 0xFFFFFFFF


def batch_body(bodies: Iterable[bytes]) -> bytes:
    """Return the body of a batch record grouping insert and remove ``bodies``."""
    parts = [b""]
    for body in bodies:
        parts.append(_U32.pack(len(body)))
        parts.append(body)
    parts[0] = b"\x03" + _U32.pack(len(parts) // 2)
    return b"".join(parts)


def batch_parts(bodies: Iterable[list[bytes]], join_below: int) -> list[bytes]:
    """Return the body of a batch record grouping the bodies given as parts, as parts.

    Parts of ``join_below`` bytes or more are kept uncopied; the runs of smaller ones
    between them are joined, so a batch of many small operations stays a few parts.
    """
    parts: list[bytes] = []
    run: list[bytes] = []
    count = 0
    for body in bodies:
        run.append(_U32.pack(sum(map(len, body))))
        for part in body:
            if len(part) < join_below:
                run.append(part)
            else:
                parts += (b"".join(run), part)
                run = []
        count += 1
    parts.append(b"".join(run))
    parts[0] = b"\x03" + _U32.pack(count) + parts[0]
    return parts


_OPERATION_KINDS = (RecordKind.INSERT, RecordKind.REMOVE, RecordKind.COLLECTION)
GENERATIONS = 32
"""Schema generations cycle through 0 to 31, kept in the upper 5 bits of a body's kind byte."""


def tag(body: bytes, generation: int) -> bytes:
    """Return ``body`` marked as written under schema ``generation`` (see ``GENERATIONS``)."""
    if generation == 0:
        return body
    return bytes((body[0] | generation << 3,)) + body[1:]


def tag_parts(body: list[bytes], generation: int) -> list[bytes]:
    """Return the parts of ``body`` marked as :func:`tag` marks a body; only the first is copied."""
    if generation == 0:
        return body
    return [tag(body[0], generation), *body[1:]]


def kind_of(body: memoryview) -> tuple[int, int]:
    """Return a body's record kind and the schema generation it was written under."""
    return body[0] & 0x07, body[0] >> 3


def schema_body(meta: bytes, generation: int) -> bytes:
    """Return the body of a schema record opening ``generation``, described by ``meta``."""
    return bytes((RecordKind.SCHEMA | generation << 3,)) + meta


def schema_meta(body: memoryview) -> bytes | None:
    """Return the metadata of a schema record, or None for any other body."""
    return bytes(body[1:]) if body[0] & 0x07 == RecordKind.SCHEMA else None


def decode_body(body: memoryview) -> list[Op]:
    """Return the operations of a record body, a batch's in order.

    Raises ``FormatError`` for an unknown kind or inconsistent lengths.
    """
    kind = body[0] & 0x07
    if kind == _BATCH:
        return list(_decode_batch(body))
    return [_decode_op(body, kind)]


# Plain ints: the kinds are compared once per record on every open.
_INSERT, _REMOVE, _BATCH = int(RecordKind.INSERT), int(RecordKind.REMOVE), int(RecordKind.BATCH)
_COLLECTION = int(RecordKind.COLLECTION)


def lone_insert(
    buf: bytes, offset: int, end: int, generation: int
) -> tuple[int, bytes, bytes] | None:
    """Return the collection id, key and value bytes of the valid frame ``[offset, end)``,
    if it is a lone insert written under schema ``generation``.

    The most common record, read on this short path whichever collection it belongs to:
    a bare insert (collection 0) or a collection record of another collection holding
    one. Anything else gives None, and :func:`decode_body` reads it (and says what is
    wrong with it, if anything is).
    """
    start = offset + FRAME_OVERHEAD
    kind = buf[start] ^ generation << 3
    if kind == _INSERT:
        if end - start < 5:
            return None
        (key_len,) = _U32.unpack_from(buf, start + 1)  # _insert_split, inlined
        split = start + 5 + key_len
        if key_len == 0 or split >= end:
            return None
        return 0, buf[start + 5 : split], buf[split:end]
    if kind != _COLLECTION or end - start < 10:
        return None
    collection, inner, key_len = _COLLECTION_INSERT.unpack_from(buf, start + 1)
    split = start + 10 + key_len
    if inner != _INSERT or key_len == 0 or split >= end or collection == 0:
        return None
    return collection, buf[start + 10 : split], buf[split:end]


_COLLECTION_INSERT = struct.Struct("<IBI")
"""A collection record's id, then its insert's kind and key length."""


def _insert_split(data: bytes | memoryview, start: int, end: int) -> int:
    """Return where the value starts in the insert body ``data[start:end]``; its key is
    ``data[start + 5 : split]``. Raises ``FormatError`` for an impossible key length."""
    if end - start < 5:
        raise FormatError("insert record cut short")
    (key_len,) = _U32.unpack_from(data, start + 1)
    split: int = start + 5 + key_len
    if key_len == 0 or split >= end:
        raise FormatError("insert record with an impossible key length")
    return split


def _decode_op(body: memoryview, kind: int) -> Op:
    if kind == _INSERT:
        split = _insert_split(body, 0, len(body))
        return Op(body[5:split].tobytes(), body[split:].tobytes())
    if kind == _REMOVE:
        if len(body) < 2:
            raise FormatError("remove record without a key")
        return Op(body[1:].tobytes(), None)
    if kind == _COLLECTION:
        return _decode_collection_op(body)
    raise FormatError(f"unknown record kind {kind}")


def _decode_collection_op(body: memoryview) -> Op:
    """Decode a collection record: a collection id, then a bare insert or remove body."""
    if len(body) < 6:
        raise FormatError("collection record cut short")
    (collection,) = _U32.unpack_from(body, 1)
    if collection == 0:
        raise FormatError("collection record naming collection 0, whose records are bare")
    inner = body[5:]
    if inner[0] not in (_INSERT, _REMOVE):
        raise FormatError("collection record holding neither an insert nor a remove")
    return _decode_op(inner, inner[0])._replace(collection=collection)


def _decode_batch(body: memoryview) -> Iterator[Op]:
    if len(body) < 5:
        raise FormatError("batch record cut short")
    (count,) = _U32.unpack_from(body, 1)
    offset = 5
    for _ in range(count):
        if offset + 4 > len(body):
            raise FormatError("batch record cut short")
        (length,) = _U32.unpack_from(body, offset)
        end = offset + 4 + length
        # An operation's kind byte is a bare insert, remove or collection record: no
        # batch, no generation.
        if length == 0 or end > len(body) or body[offset + 4] not in _OPERATION_KINDS:
            raise FormatError("batch record with an impossible operation")
        yield _decode_op(body[offset + 4 : end], body[offset + 4])
        offset = end
    if count == 0 or offset != len(body):
        raise FormatError("batch record with an impossible length")
