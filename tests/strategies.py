"""Hypothesis strategies shared by the property tests: keys, values, records, operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import msgpack
from hypothesis import strategies as st

from tests.models import Point, User

K = TypeVar("K")
V = TypeVar("V")

# A small pool makes collisions (overwrites, removals of present keys) common;
# arbitrary text and integers keep unusual keys in play.
str_keys: st.SearchStrategy[str] = st.sampled_from(["a", "b", "c", "d", "e", "f"]) | st.text(
    max_size=6
)
int_keys: st.SearchStrategy[int] = st.integers(-3, 3) | st.integers(-(2**63), 2**63 - 1)

msgpack_ints: st.SearchStrategy[int] = st.integers(-(2**63), 2**64 - 1)
"""Integers msgpack can hold."""

users: st.SearchStrategy[User] = st.builds(
    User,
    name=st.text(max_size=8),
    age=st.integers(-(2**31), 2**31),
    tags=st.lists(st.text(max_size=4), max_size=3),
)
points: st.SearchStrategy[Point] = st.builds(
    Point, x=st.integers(-(2**40), 2**40), y=st.integers(-(2**40), 2**40)
)

# -- framing ------------------------------------------------------------------------------

frame_bodies: st.SearchStrategy[bytes] = st.binary(min_size=1, max_size=300)
"""Record bodies: a frame never carries an empty body."""
record_keys: st.SearchStrategy[bytes] = st.binary(min_size=1, max_size=40)
"""Encoded keys as the format sees them: opaque, never empty."""
record_values: st.SearchStrategy[bytes] = st.binary(min_size=1, max_size=80)
"""Encoded values as the format sees them: opaque, never empty."""
record_ops: st.SearchStrategy[tuple[bytes, bytes | None]] = st.tuples(
    record_keys, st.none() | record_values
)
"""One insert ``(key, value)`` or remove ``(key, None)``, as a batch groups them."""
header_metas: st.SearchStrategy[bytes] = st.binary(max_size=200)

# -- store operations ---------------------------------------------------------------------

OpName = Literal["insert", "setitem", "remove", "delitem", "modify", "spoil", "get", "contains"]
"""What a transaction step does with its key; ``spoil`` is a modify whose function raises."""


@dataclass(frozen=True)
class Op(Generic[K, V]):
    """One step of a transaction: ``name`` applied to ``key`` (with ``value`` for writes)."""

    name: OpName
    key: K
    value: V


def operations(
    keys: st.SearchStrategy[K], values: st.SearchStrategy[V]
) -> st.SearchStrategy[Op[K, V]]:
    """Return a strategy for transaction steps over ``keys`` and ``values``."""
    names: st.SearchStrategy[OpName] = st.sampled_from(
        ["insert", "setitem", "remove", "delitem", "modify", "spoil", "get", "contains"]
    )
    return st.builds(Op[K, V], name=names, key=keys, value=values)


# -- hostile msgpack and record bodies (the fuzz harness, tests/test_fuzz.py) ----------------

DEEP = 200
"""Nesting from which a blob counts as deep: past what a recursive walk of it survives."""

_scalars = (
    st.none()
    | st.booleans()
    | msgpack_ints
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
msgpack_data: st.SearchStrategy[object] = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | msgpack_ints | st.floats(), inner, max_size=4)
    ),
    max_leaves=12,
)
"""Data msgpack can hold: NaN, infinities, extreme ints, bytes, maps keyed by non-strings."""


def _pack(data: object) -> bytes:
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


def _nested(depth: int, shape: str, leaf: bytes) -> bytes:
    """Return ``leaf`` nested ``depth`` deep in arrays, map values or map keys."""
    if shape == "array":
        return b"\x91" * depth + leaf
    if shape == "map_value":
        return b"\x81\xa1k" * depth + leaf
    return b"\x81" + b"\x91" * depth + leaf + b"\xc0"  # a map key: decoded as a tuple


nestings: st.SearchStrategy[bytes] = st.builds(
    _nested,
    st.sampled_from([2, 50, DEEP, 400, 600, 900, 990, 1000, 1023, 1024, 1100, 5000]),
    st.sampled_from(["array", "map_value", "map_key"]),
    st.sampled_from([b"\x01", b"\xa1a", b"\xc0", b"\x90", b"\x80"]),
)
"""msgpack nested deep enough to reach every recursion limit (msgpack's own is 1024)."""

huge_claims: st.SearchStrategy[bytes] = st.builds(
    bytes.__add__,
    st.sampled_from(
        [
            b"\xdd\xff\xff\xff\xff",  # array32
            b"\xdf\xff\xff\xff\xff",  # map32
            b"\xdb\xff\xff\xff\xff",  # str32
            b"\xc6\xff\xff\xff\xff",  # bin32
            b"\xc9\xff\xff\xff\xff\x01",  # ext32, code 1
            b"\xdc\xff\xff",  # array16
            b"\xde\xff\xff",  # map16
        ]
    ),
    st.binary(max_size=16),
)
"""msgpack whose length prefix claims far more than the blob holds."""

_NAN = b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"
special_floats: st.SearchStrategy[bytes] = st.sampled_from(
    [
        _NAN,
        b"\xcb\xff\xf8\x00\x00\x00\x00\x00\x01",  # a negative NaN with a payload
        b"\xca\x7f\xc0\x00\x00",  # float32 NaN
        b"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00",  # inf
        b"\xcb\x80\x00\x00\x00\x00\x00\x00\x00",  # -0.0
        b"\x92" + _NAN + _NAN,
        b"\x81" + _NAN + b"\x01",
    ]
)
"""NaN, infinity and negative zero, alone and as array items or map keys."""

duplicate_keys: st.SearchStrategy[bytes] = st.builds(
    lambda key, first, second: b"\x82" + key + first + key + second,
    st.sampled_from([b"\xa1a", b"\x01", _NAN, b"\xc0", b"\x91\x01"]),
    st.sampled_from([b"\x01", b"\xa1x", b"\x90"]),
    st.sampled_from([b"\x02", b"\xa1y", b"\x80"]),
)
"""A map holding one key twice."""

extensions: st.SearchStrategy[bytes] = st.builds(
    lambda code, data: b"\xc7" + bytes((len(data), code & 0xFF)) + data,
    st.sampled_from([1, 2, -1, 0, 5, 127]),
    st.sampled_from(
        [
            b"2024-01-02T03:04:05+01:00",
            b"12:34:56.789",
            b"not a date",
            b"\xff\xfe",
            b"",
            b"\x00\x00\x00\x00",
            b"\x00" * 12,
            b"9999-12-31T23:59:59.999999+23:59",
        ]
    )
    | st.binary(max_size=16),
)
"""Extension types: the log's datetime (1) and time (2), msgpack's timestamp (-1), others."""

hostile_blobs: st.SearchStrategy[bytes] = st.one_of(
    msgpack_data.map(_pack),
    nestings,
    huge_claims,
    special_floats,
    duplicate_keys,
    extensions,
    st.builds(bytes.__add__, msgpack_data.map(_pack), st.binary(min_size=1, max_size=4)),
    st.binary(min_size=1, max_size=24),
)
"""Keys or values as a hostile log holds them: crafted msgpack, valid or not."""
