"""The store's own exceptions, all rooted at :class:`StoreError`.

::

    StoreError
    ├── NotAStoreError       (also ValueError)  the file is not a typedstore log; nothing changed
    ├── CorruptLogError      (also ValueError)  damage before the log's tail, at ``offset``
    ├── SchemaMismatchError  (also ValueError)  a checksum-valid record no longer validates
    ├── EncodingError        (also ValueError)  a validated value msgpack cannot hold
    ├── StoreLockedError                        another writer holds the log
    ├── StoreClosedError     (also ValueError)  the store was closed
    ├── StoreReadOnlyError   (also ValueError)  a write on a ``readonly=True`` store
    ├── StoreFailedError                        an earlier fsync failed; reopen the store
    └── UniqueViolationError (also ValueError)  two entries would share a unique index key

Invalid keys and values raise ``pydantic.ValidationError`` unchanged, and ``OSError``
from the file system passes through unchanged; neither is wrapped here.
"""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base of every error typedstore raises on its own account."""


class NotAStoreError(StoreError, ValueError):
    """The file is not a typedstore log this version can read; it was left untouched."""

    def __init__(self, path: Path, reason: str, *, untouched: str = "the file") -> None:
        super().__init__(f"{path}: not a typedstore log ({reason}); {untouched} was not changed")
        self.path = path
        self.reason = reason


class CorruptLogError(StoreError, ValueError):
    """The log is damaged; ``offset`` is where the first damage starts.

    ``hint`` ends the message with what the caller can do, when something can be done.
    """

    def __init__(self, path: Path, offset: int, reason: str, *, hint: str = "") -> None:
        super().__init__(
            f"{path}: damaged record at byte offset {offset} ({reason}); nothing was changed"
            + (f". {hint}" if hint else "")
        )
        self.path = path
        self.offset = offset
        self.reason = reason


class SchemaMismatchError(StoreError, ValueError):
    """Records in the log do not fit the types or schema version given at open.

    Raised for a checksum-valid record that does not validate, a migration that
    fails, fields a type change would drop, or a log written at a newer schema
    version. ``offset``, ``key`` and ``version`` locate the record when one is at
    fault; ``fields`` names the fields that would be lost; ``error`` is the cause.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path,
        offset: int | None = None,
        key: object = None,
        version: int | None = None,
        fields: tuple[str, ...] = (),
        error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.key = key
        self.version = version
        self.fields = fields
        self.error = error


class EncodingError(StoreError, ValueError):
    """A key or value passed validation but cannot be encoded as msgpack."""


class StoreLockedError(StoreError):
    """Another writable store, in this process or another, holds the log's lock.

    Also raised, with ``reason`` saying why, when the lock could not keep other
    writers out (a log with several hard links).
    """

    def __init__(self, path: Path, reason: str | None = None) -> None:
        super().__init__(
            f"{path}: {reason}"
            if reason is not None
            else f"{path}: another writer holds this log; open it with readonly=True to read it"
        )
        self.path = path
        self.reason = reason


class StoreClosedError(StoreError, ValueError):
    """The store was closed; open it again to use it."""


class StoreReadOnlyError(StoreError, ValueError):
    """A write was attempted on a store opened with ``readonly=True``."""


class StoreFailedError(StoreError):
    """An fsync failed earlier, so durability is unknown: writes are refused until reopening."""


class UniqueViolationError(StoreError, ValueError):
    """Two live entries would hold one index key of a unique index; nothing was changed.

    ``index``, ``index_key`` and ``key`` name the first conflict found: the index, the
    index key, and the key that already holds it. ``conflicts`` lists every conflict
    found, as ``(index, index_key, keys)``: at a write, the holder and the key written;
    at open, every key of the data that holds the index key.
    """

    def __init__(
        self,
        message: str,
        *,
        index: str,
        index_key: object,
        key: object,
        conflicts: tuple[tuple[str, object, tuple[object, ...]], ...],
    ) -> None:
        super().__init__(message)
        self.index = index
        self.index_key = index_key
        self.key = key
        self.conflicts = conflicts
