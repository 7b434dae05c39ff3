"""The fuzz harness's inputs (see ``tests/test_fuzz.py`` and README, "Fuzzing").

Inputs are whole log files. Mutated logs start from real logs the store wrote, are
changed record by record and then framed again with fresh checksums (``assemble``), so
that the decoders behind the checksums are reached; a few also get raw damage on top.
Structured logs are framed from crafted bodies (``tests/strategies.py``).

Each target is a set of types to open a log with, and a base log written with them.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import strategies as st

from tests import strategies as hs
from tests.models import User
from typedstore import StoreConfig, TypedStore
from typedstore._format import (
    GENERATIONS,
    MAX_RECORD_BYTES,
    RecordKind,
    batch_body,
    decode_header,
    encode_frame,
    encode_header,
    insert_body,
    read_frame,
    remove_body,
    schema_body,
    tag,
)
from typedstore._types import RecoveryMode

MODES: tuple[RecoveryMode, ...] = ("strict", "truncate", "skip")


# -- framing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Log:
    """A log as metadata and record bodies, framed afresh by :func:`assemble`."""

    meta: bytes
    bodies: tuple[bytes, ...]


def assemble(meta: bytes, bodies: Sequence[bytes]) -> bytes:
    """Return a log of ``bodies`` after a header of ``meta``, every checksum valid."""
    buf = bytearray(encode_header(meta))
    for body in bodies:
        buf += encode_frame(body, len(buf))
    return bytes(buf)


def parse(buf: bytes) -> Log:
    """Return the metadata and bodies of the clean log ``buf``."""
    meta, offset = decode_header(buf)
    bodies = []
    while offset < len(buf):
        end = read_frame(buf, offset)
        assert end != -1, f"base log damaged at {offset}"
        bodies.append(buf[offset + 12 : end])
        offset = end
    return Log(meta, tuple(bodies))


def claimed_head(offset: int, length: int, body_crc: int = 0) -> bytes:
    """Return a frame head at ``offset`` whose own checksum is valid, claiming ``length``."""
    tail = struct.pack("<II", length, body_crc)
    seed = zlib.crc32(struct.pack("<Q", offset))
    return struct.pack("<I", zlib.crc32(tail, seed)) + tail


# -- targets and their base logs ------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Types a fuzzed log is opened with, and one entry a writable open then writes."""

    name: str
    key_type: Any
    value_type: Any
    version: int
    migrations: Mapping[int, Callable[[Any], Any]]
    sample: tuple[object, object]
    write: Callable[[Path], None] = field(repr=False)
    """Writes the base log: every record kind, and a schema record."""
    values: st.SearchStrategy[object] = field(repr=False)
    """Data that mostly validates as a value, so that crafted records get past validation."""

    def open(self, path: Path, mode: RecoveryMode, *, readonly: bool) -> TypedStore[Any, Any]:
        """Open ``path`` with this target's types and schema."""
        return TypedStore.open(
            path,
            self.key_type,
            self.value_type,
            config=StoreConfig(recovery=mode),
            readonly=readonly,
            version=self.version,
            migrations=self.migrations,
        )


def _write_any(path: Path) -> None:
    with TypedStore.open(path, str, int) as first:  # its header, then a schema record
        first["n"] = 1
    with TypedStore.open(path, str, Any) as store:
        store["a"] = [1, 2.5, "x", b"\x00", None, True]
        store["b"] = {"k": {"nested": [[1], [2]]}, "f": float("inf")}
        store["c"] = "text"
        del store["n"]
        with store.transaction() as tx:
            tx["d"] = [{"x": 1}]
            del tx["c"]


def _write_user(path: Path) -> None:
    with TypedStore.open(path, int, User) as old:
        old[1] = User(name="Ann", age=30, tags=["a"])
        old[2] = User(name="Bob", age=25)
    with TypedStore.open(path, int, User, version=2, migrations={1: _upgrade}) as store:
        store[3] = User(name="Cy", age=41)
        store.remove(2)
        with store.transaction() as tx:
            tx[4] = User(name="Di", age=52, tags=["x", "y"])
            tx[1] = User(name="Ann", age=31)


def _write_nested(path: Path) -> None:
    with TypedStore.open(path, tuple[int, str], dict[str, Any]) as store:
        store[(1, "a")] = {"deep": {"er": [1, {"est": None}]}}
        store[(2, "b")] = {}
        with store.transaction() as tx:
            tx[(3, "c")] = {"x": [[[]]]}
            del tx[(2, "b")]


def _write_float(path: Path) -> None:
    with TypedStore.open(path, float, list[int]) as store:
        store[1.5] = [1]
        store[-0.0] = []
        store[float("inf")] = [2, 3]
        with store.transaction() as tx:
            tx[2.0] = [4]
            del tx[1.5]


def _upgrade(data: Any) -> Any:
    return data


_users = st.fixed_dictionaries(
    {"name": st.text(max_size=4), "age": hs.msgpack_ints},
    optional={"tags": st.lists(st.text(max_size=2), max_size=2), "gone": hs.msgpack_data},
)
TARGETS = (
    Target("any", str, Any, 1, {}, ("fuzz", 1), _write_any, hs.msgpack_data),
    Target("user", int, User, 2, {1: _upgrade}, (7, User(name="F", age=1)), _write_user, _users),
    Target(
        "nested",
        tuple[int, str],
        dict[str, Any],
        1,
        {},
        ((9, "z"), {"w": 1}),
        _write_nested,
        st.dictionaries(st.text(max_size=3), hs.msgpack_data, max_size=3),
    ),
    # NaN keys (issue 10 item 3) come from crafted records: see _target_keys.
    Target("float", float, list[int], 1, {}, (0.5, [5]), _write_float, st.lists(hs.msgpack_ints)),
)


def base_log(target: Target) -> Log:
    """Return the log ``target.write`` produces, parsed into metadata and bodies."""
    return _base_log(target.name)


def metas(target: Target) -> list[bytes]:
    """Return the header's metadata and every schema record's in ``target``'s base log."""
    log = base_log(target)
    schemas = [body[1:] for body in log.bodies if body[0] & 0x07 == RecordKind.SCHEMA]
    return [log.meta, *schemas]


@cache
def _base_log(name: str) -> Log:
    (target,) = (target for target in TARGETS if target.name == name)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "base.log"
        target.write(path)
        return parse(path.read_bytes())


# -- mutations ------------------------------------------------------------------------------

_INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x07, 0x0B, 0x7F, 0x80, 0xC1, 0xFF]
_INTERESTING_U32 = [0, 1, 2, 0x7FFFFFFF, 0xFFFFFFFF, MAX_RECORD_BYTES, MAX_RECORD_BYTES + 1]


@st.composite
def mutated_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """Return ``data`` with one structure-unaware change: a bit, a byte, a u32, a range."""
    buf = bytearray(data)
    where = draw(st.integers(0, max(len(buf) - 1, 0)))
    how = draw(st.sampled_from(["bit", "byte", "u32", "insert", "delete", "cut"]))
    if how == "bit" and buf:
        buf[where] ^= 1 << draw(st.integers(0, 7))
    elif how == "byte" and buf:
        buf[where] = draw(st.sampled_from(_INTERESTING_BYTES) | st.integers(0, 255))
    elif how == "u32":
        value = draw(st.sampled_from([*_INTERESTING_U32, len(buf), len(buf) + 1]))
        buf[where : where + 4] = struct.pack("<I", value)
    elif how == "insert":
        buf[where:where] = draw(st.binary(min_size=1, max_size=8) | hs.hostile_blobs)
    elif how == "delete":
        del buf[where : where + draw(st.integers(1, 8))]
    else:
        del buf[where:]
    return bytes(buf) or b"\x01"


@st.composite
def mutated_logs(draw: st.DrawFn, target: Target) -> bytes:
    """Return a log the store wrote, changed record by record, with valid checksums."""
    log = base_log(target)
    meta, bodies = log.meta, list(log.bodies)
    for _ in range(draw(st.integers(1, 3))):
        change = draw(st.sampled_from(_CHANGES))
        meta, bodies = change(draw, target, meta, bodies)
    return draw(raw_damage(assemble(meta, bodies)))


def _change_body(
    draw: st.DrawFn, target: Target, meta: bytes, bodies: list[bytes]
) -> tuple[bytes, list[bytes]]:
    if bodies:
        index = draw(st.integers(0, len(bodies) - 1))
        bodies[index] = draw(mutated_bytes(bodies[index]))
    return meta, bodies


def _change_meta(
    draw: st.DrawFn, target: Target, meta: bytes, bodies: list[bytes]
) -> tuple[bytes, list[bytes]]:
    return draw(mutated_bytes(meta) | crafted_metas(meta)), bodies


def _add_body(
    draw: st.DrawFn, target: Target, meta: bytes, bodies: list[bytes]
) -> tuple[bytes, list[bytes]]:
    index = draw(st.integers(0, len(bodies)))
    bodies.insert(index, draw(crafted_bodies(target, log_meta(target, meta))))
    return meta, bodies


def _move_body(
    draw: st.DrawFn, target: Target, meta: bytes, bodies: list[bytes]
) -> tuple[bytes, list[bytes]]:
    if bodies:
        body = bodies[draw(st.integers(0, len(bodies) - 1))]
        if draw(st.booleans()):
            bodies.remove(body)
        bodies.insert(draw(st.integers(0, len(bodies))), body)
    return meta, bodies


def _retag_body(
    draw: st.DrawFn, target: Target, meta: bytes, bodies: list[bytes]
) -> tuple[bytes, list[bytes]]:
    if bodies:
        index = draw(st.integers(0, len(bodies) - 1))
        kind = draw(st.integers(0, 7))
        generation = draw(st.integers(0, GENERATIONS - 1))
        bodies[index] = bytes((kind | generation << 3,)) + bodies[index][1:]
    return meta, bodies


_CHANGES = [_change_body, _change_meta, _add_body, _move_body, _retag_body]


@st.composite
def raw_damage(draw: st.DrawFn, buf: bytes) -> bytes:
    """Return ``buf`` as it is, mostly, or with damage no checksum was recomputed for."""
    how = draw(st.sampled_from(["none"] * 6 + ["cut", "flip", "junk", "claim", "twice", "splice"]))
    where = draw(st.integers(0, len(buf)))
    if how == "cut":
        return buf[:where]
    if how == "flip" and where < len(buf):
        return buf[:where] + bytes((buf[where] ^ 0xFF,)) + buf[where + 1 :]
    if how == "junk":
        return buf + draw(st.binary(min_size=1, max_size=64))
    if how == "claim":  # an intact head claiming a huge body: a torn tail or damage
        length = draw(st.sampled_from([1, 100, MAX_RECORD_BYTES, MAX_RECORD_BYTES + 1]))
        return buf + claimed_head(len(buf), length) + draw(st.binary(max_size=16))
    if how == "bomb":  # a damaged frame, then a head every 8 bytes claiming the rest of the file
        return buf + scan_bomb(len(buf), draw(st.integers(1, 2048)))
    if how == "twice":  # cat a.log a.log: a second header where a frame should be
        return buf + buf
    if how == "splice":
        return buf[:where] + draw(st.binary(min_size=1, max_size=16)) + buf[where:]
    return buf


def scan_bomb(offset: int, heads: int) -> bytes:
    """Return ``heads`` intact frame heads 8 bytes apart from ``offset``, each claiming a
    body to the end: the quadratic damage scan of issue 10 item 16, at a harmless size.

    Heads overlap: a head's body checksum is the next head's own checksum, so they are
    built from the last to the first.
    """
    first = offset + 12  # after a damaged frame the scan starts from
    end = first + 8 * heads + 4
    parts, following = [], 0  # the last head claims no body (length 0): not intact
    for index in reversed(range(heads)):
        at = first + 8 * index
        head = claimed_head(at, end - at - 12, following)
        parts.append(head[:8])
        following = struct.unpack_from("<I", head)[0]
    return b"\xff" * 12 + b"".join(reversed(parts)) + b"\0" * 4  # the last head's body checksum


# -- crafted inputs -------------------------------------------------------------------------


@st.composite
def crafted_metas(draw: st.DrawFn, meta: bytes) -> bytes:
    """Return the metadata ``meta`` with one field crafted, or a hostile blob instead."""
    if draw(st.integers(0, 4)) == 0:
        return draw(hs.hostile_blobs)
    try:
        fields: dict[object, object] = dict(msgpack.unpackb(meta, strict_map_key=False))
    except (ValueError, TypeError, msgpack.UnpackException):
        fields = {}
    name = draw(
        st.sampled_from(["version", "fingerprint", "key_type", "value_type", "value_schema"])
        | st.text(max_size=3)
    )
    raw = draw(hs.hostile_blobs)
    fields[name] = draw(
        st.sampled_from([0, 1, 2, 3, -1, 2**64 - 1, True, 1.5, "1", None])
        | hs.msgpack_data
        | st.just(msgpack.ExtType(0, b"")),
    )
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    if name == "value_schema" and draw(st.booleans()):
        # Splice raw (deep, NaN, huge-claim...) msgpack in as that field's value.
        head = msgpack.packb({k: v for k, v in fields.items() if k != name}, use_bin_type=True)
        packed = _map_with(head, msgpack.packb(name), raw)
    return packed


def _map_with(packed_map: bytes, key: bytes, value: bytes) -> bytes:
    """Return the packed map ``packed_map`` with one more entry, packed as given."""
    count = len(msgpack.unpackb(packed_map, strict_map_key=False))
    body = packed_map[1:] if count <= 15 else packed_map[3:]
    if count + 1 <= 15:
        return bytes((0x80 | count + 1,)) + body + key + value
    return b"\xde" + struct.pack(">H", count + 1) + body + key + value


def _target_keys(meta: bytes) -> st.SearchStrategy[bytes]:
    """Keys of the target's type mostly (so validation is reached), or hostile ones."""
    try:
        fields = msgpack.unpackb(meta, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        fields = None
    key_type = fields.get("key_type") if isinstance(fields, dict) else None
    if key_type == "int":
        plain: st.SearchStrategy[object] = hs.msgpack_ints | st.sampled_from([1, 2, 3, 4])
    elif key_type == "str":
        plain = hs.str_keys
    elif key_type == "float":
        plain = st.floats() | st.sampled_from([float("nan"), 0.0, -0.0, 1.5])
    else:
        plain = st.tuples(st.integers(0, 4), hs.str_keys).map(list)
    packed = plain.map(lambda key: bytes(msgpack.packb(key, use_bin_type=True)))
    return st.one_of(*[packed] * 4, hs.hostile_blobs)


def log_meta(target: Target, meta: bytes) -> bytes:
    """Return ``meta`` if it is one of ``target``'s real metadata, else its header's."""
    return meta if meta in metas(target) else base_log(target).meta


def _packed(data: object) -> bytes:
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


def _deep_in(target: Target) -> st.SearchStrategy[bytes]:
    """Deep nesting where the value type takes it: a map's value for dict values."""
    if target.name == "nested":
        return hs.nestings.map(lambda blob: b"\x81\xa1k" + blob)
    if target.name == "user":
        return hs.nestings.map(lambda blob: b"\x83\xa4name\xa1n\xa3age\x01\xa4gone" + blob)
    return hs.nestings


_BODY_KINDS = [
    *["insert"] * 4,
    *["remove", "batch"] * 2,
    *["nested batch", "schema", "lying batch", "junk"],
]


@st.composite
def crafted_bodies(draw: st.DrawFn, target: Target, meta: bytes) -> bytes:
    """Return one record body: insert, remove, batch (nested ones too), schema or junk."""
    keys = _target_keys(meta)
    valid = target.values.map(_packed)
    values = st.one_of(*[valid] * 6, _deep_in(target), hs.hostile_blobs)
    insert = st.builds(insert_body, keys, values)
    remove = st.builds(remove_body, keys)
    operation = insert | remove
    batch = st.lists(operation, min_size=1, max_size=4)
    kind = draw(st.sampled_from(_BODY_KINDS))
    if kind == "insert":
        return draw(insert)
    if kind == "remove":
        return draw(remove)
    if kind == "batch":
        return batch_body(draw(batch))
    if kind == "nested batch":  # a batch or a schema record as an operation of a batch
        inner = st.builds(batch_body, batch) | st.just(schema_body(meta, 1))
        return batch_body([*draw(batch), draw(inner)])
    if kind == "schema":
        metadata = st.sampled_from([meta] * 3) | crafted_metas(meta)
        return schema_body(draw(metadata), draw(st.integers(0, GENERATIONS - 1)))
    if kind == "lying batch":  # an operation count that does not match what follows
        body = bytearray(batch_body(draw(batch)))
        body[1:5] = struct.pack("<I", draw(st.sampled_from(_INTERESTING_U32)))
        return bytes(body)
    return draw(st.binary(min_size=1, max_size=32))


@st.composite
def structured_logs(draw: st.DrawFn, target: Target) -> bytes:
    """Return a log of crafted bodies, schema generations mostly consistent, checksums valid."""
    meta = draw(st.sampled_from(metas(target)))
    bodies_for = crafted_bodies(target, meta)
    if draw(st.integers(0, 5)) == 0:
        meta = draw(crafted_metas(meta))
    generation, bodies = 0, []
    for body in draw(st.lists(bodies_for, min_size=1, max_size=6)):
        if body[0] & 0x07 == RecordKind.SCHEMA and draw(st.integers(0, 3)) != 0:
            generation = (generation + 1) % GENERATIONS
            body = bytes((RecordKind.SCHEMA | generation << 3,)) + body[1:]
        elif body[0] & 0x07 != RecordKind.SCHEMA and draw(st.integers(0, 5)) != 0:
            body = tag(bytes((body[0] & 0x07,)) + body[1:], generation)
        bodies.append(body)
    return draw(raw_damage(assemble(meta, bodies)))
