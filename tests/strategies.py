"""Hypothesis strategies shared by the property tests: keys, values, records, operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

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
