"""StoreConfig: the durability, buffering, compaction and recovery settings of one open."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

from ._types import Migration, RecoveryMode

MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreConfig:
    """Settings for one open store; checked at construction.

    Raises ``TypeError`` for a field of the wrong type and ``ValueError`` for an
    impossible value (a ratio not above 1, a negative size, a zero buffer).
    """

    sync_on_write: bool = False
    """fsync after every mutation (once per transaction): survives power loss."""
    write_through: bool = True
    """Hand every record to the OS before the call returns: survives ``kill -9``."""
    min_compact_bytes: int = MIB
    """No automatic compaction while the log is smaller than this."""
    compact_ratio: float = 2.0
    """Compact when ``total_records >= compact_ratio * live_records`` (or nothing is live)."""
    buf_capacity: int = MIB
    """Size of the user-space write buffer used when ``write_through`` is False."""
    recovery: RecoveryMode = "strict"
    """Damage before the tail: raise (``strict``), keep the prefix, or skip damaged records."""

    def __post_init__(self) -> None:
        _check_bool("sync_on_write", self.sync_on_write)
        _check_bool("write_through", self.write_through)
        _check_size("min_compact_bytes", self.min_compact_bytes, minimum=0)
        _check_size("buf_capacity", self.buf_capacity, minimum=1)
        ratio = self.compact_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise TypeError(f"compact_ratio must be a number, not {type(ratio).__name__}")
        if not ratio > 1:
            raise ValueError(f"compact_ratio must be above 1, got {ratio!r}")
        if self.recovery not in get_args(RecoveryMode):
            raise ValueError(
                f"recovery must be one of {get_args(RecoveryMode)}, got {self.recovery!r}"
            )
        if self.sync_on_write and not self.write_through:
            raise ValueError(
                "sync_on_write=True needs write_through=True: a buffer cannot be fsynced"
            )


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")


def _check_size(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Schema:
    """The application's schema version for its values, and how older records reach it.

    ``migrations[k]`` upgrades a value's decoded data from version ``k`` to ``k + 1``;
    ``dropped_fields`` names fields (dotted paths, ``[]`` for list items) that may
    disappear from stored data without a migration.
    """

    version: int = 1
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    dropped_fields: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _check_size("version", self.version, minimum=1)
        for step, migration in self.migrations.items():
            _check_size("a migrations key", step, minimum=1)
            if step >= self.version:
                raise ValueError(
                    f"migrations[{step}] would upgrade to version {step + 1}, "
                    f"beyond the declared version {self.version}"
                )
            if not callable(migration):
                raise TypeError(f"migrations[{step}] must be callable")
        if not all(isinstance(name, str) for name in self.dropped_fields):
            raise TypeError("dropped_fields must be a collection of field names")
