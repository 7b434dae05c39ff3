"""typedstore: an embedded, persistent, typed, insertion-ordered key-value store."""

from ._collection import Collection
from ._config import StoreConfig
from ._database import Database, DatabaseTransaction
from ._errors import (
    CorruptLogError,
    EncodingError,
    NotAStoreError,
    SchemaMismatchError,
    StoreClosedError,
    StoreError,
    StoreFailedError,
    StoreLockedError,
    StoreReadOnlyError,
    UniqueViolationError,
)
from ._index import Index
from ._pg_engine import PostgresEngine
from ._replay import Recovery
from ._store import TypedStore
from ._txn import Transaction
from ._types import RecoveryMode

__all__ = [
    "Collection",
    "CorruptLogError",
    "Database",
    "DatabaseTransaction",
    "EncodingError",
    "Index",
    "NotAStoreError",
    "PostgresEngine",
    "Recovery",
    "RecoveryMode",
    "SchemaMismatchError",
    "StoreClosedError",
    "StoreConfig",
    "StoreError",
    "StoreFailedError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "Transaction",
    "TypedStore",
    "UniqueViolationError",
]
