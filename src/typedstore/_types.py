"""Type aliases shared across typedstore's modules."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Literal, TypeAlias, TypeVar

K = TypeVar("K")
"""The store's key type, bound once at open."""

V = TypeVar("V")
"""The store's value type, bound once at open."""

Stored: TypeAlias = object
"""A value in the form memory keeps it: the value itself when immutable, its bytes when not."""

KeyBytes: TypeAlias = bytes
"""A key's msgpack bytes, as the log's records name it."""

RecoveryMode = Literal["strict", "truncate", "skip"]
"""What open does with damage before the tail: refuse, keep the prefix, or skip damaged records."""

Migration = Callable[[Any], Any]
"""Upgrade one value's decoded data by one schema version. ``Any``: decoded msgpack has no
static type, and callers annotate their migrations with what their old data looks like."""


class _Missing(enum.Enum):
    MISSING = enum.auto()


MISSING = _Missing.MISSING
"""No value: distinct from a stored ``None``."""
