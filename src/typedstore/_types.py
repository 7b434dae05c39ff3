"""Type aliases shared across typedstore's modules."""

from __future__ import annotations

from typing import Literal, TypeVar

K = TypeVar("K")
"""The store's key type, bound once at open."""

V = TypeVar("V")
"""The store's value type, bound once at open."""

RecoveryMode = Literal["strict", "truncate", "skip"]
"""What open does with damage before the tail: refuse, keep the prefix, or skip damaged records."""
