"""TypedStore: a database of exactly one collection, which is the store itself."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Collection as Sized
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._codec import Codec, type_name
from ._collection import UNBOUND, Collection, schema_of
from ._config import StoreConfig
from ._core import Changes, LogOwner, Wanted, make_core
from ._index_txn import IndexedTransaction
from ._pg_engine import PostgresEngine
from ._txn import Transaction
from ._types import K, Migration, V

if TYPE_CHECKING:  # PEP 747: lets `open(path, str, int | None)` infer TypedStore[str, int | None]
    from typing_extensions import TypeForm

logger = logging.getLogger("typedstore")

S = TypeVar("S", bound="TypedStore[Any, Any]")
K2 = TypeVar("K2")
V2 = TypeVar("V2")


class TypedStore(LogOwner, Collection[K, V]):
    """A persistent, typed, insertion-ordered mapping backed by one append-only log.

    Open it with :meth:`open`. Every write validates its key and value, appends one
    checksummed record and only then changes memory. Values of mutable types are
    returned as fresh copies, immutable ones as they are. Every method is atomic
    with respect to other threads. A TypedStore is a database of one collection: its
    log opens as a ``Database`` too (README.md, "Databases").
    """

    def __init__(self) -> None:
        raise TypeError("open a store with TypedStore.open(path, key_type, value_type)")

    if TYPE_CHECKING:
        # mypy names the class defining a method in its messages: users of a TypedStore
        # read `"insert" of "TypedStore"`. At run time this is Collection.insert.
        def insert(self, key: K, value: V) -> V | None: ...

    # -- opening ---------------------------------------------------------------------------

    @overload
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | PostgresEngine,
        key_type: TypeForm[K2],
        value_type: TypeForm[V2],
        *,
        config: StoreConfig | None = None,
        readonly: bool = False,
        shared: bool = False,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Sized[str] = (),
    ) -> TypedStore[K2, V2]: ...
    @overload
    @classmethod
    def open(
        cls: type[S],
        path: str | os.PathLike[str] | PostgresEngine,
        *,
        config: StoreConfig | None = None,
        readonly: bool = False,
        shared: bool = False,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Sized[str] = (),
    ) -> S: ...
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | PostgresEngine,
        key_type: object = UNBOUND,
        value_type: object = UNBOUND,
        *,
        config: StoreConfig | None = None,
        readonly: bool = False,
        shared: bool = False,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Sized[str] = (),
    ) -> Any:
        """Open the store at ``path``, creating it (and its folders) if it does not exist.

        An existing log is replayed (README.md, "Durability and recovery"). Raises
        ``StoreLockedError`` when another writer holds it, ``NotAStoreError``,
        ``CorruptLogError`` or ``SchemaMismatchError`` for a log it cannot use (the file
        is left as it was), and ``FileNotFoundError`` for a missing file with
        ``readonly=True``. ``shared=True`` lets several processes open it read-write
        at once, each operation seeing every write acknowledged before it began (README,
        "Several processes"); a shared and an exclusive open refuse each other.

        ``version`` is the schema version of the values (default 1); records written
        at an older version pass through ``migrations[k]`` (version k to k + 1) on
        their decoded data before validation. Fields that stored records hold and the
        value type no longer has raise ``SchemaMismatchError`` unless a migration
        removes them or ``dropped_fields`` names them. A declarative subclass may
        declare all three as class keywords instead.
        """
        key_type, value_type = cls._bind_types(key_type, value_type)
        if cls._schema is None:
            schema = schema_of(version, migrations, dropped_fields)
        elif version is not None or migrations is not None or dropped_fields:
            raise TypeError(f"{cls.__name__} declares its schema version and migrations already")
        else:
            schema = cls._schema
        if config is None:
            config = StoreConfig()
        elif not isinstance(config, StoreConfig):
            raise TypeError(f"config must be a StoreConfig, not {type(config).__name__}")
        core = make_core(path, config, readonly=readonly, single=True, shared=shared)
        wanted = {"": Wanted(cls, Codec[Any, Any](key_type, value_type), schema)}
        (store,) = core.open(wanted, Changes())
        assert isinstance(store, TypedStore)
        return store

    @classmethod
    def _bind_types(cls, key_type: object, value_type: object) -> tuple[object, object]:
        if cls._key_type is not UNBOUND:
            if key_type is not UNBOUND or value_type is not UNBOUND:
                raise TypeError(
                    f"{cls.__name__} binds its types already; call {cls.__name__}.open(path)"
                )
            return cls._key_type, cls._value_type
        if key_type is UNBOUND or value_type is UNBOUND:
            raise TypeError(
                "pass the key and value types: TypedStore.open(path, key_type, value_type)"
            )
        return key_type, value_type

    def transaction(self) -> Transaction[K, V]:
        """Return a transaction, to use as ``with store.transaction() as txn:``.

        Entering the block takes the store: other threads' reads and writes wait
        until it ends. Nesting is refused with RuntimeError: commit the outer
        transaction first.
        """
        with self._lock:
            self._core._writable_log()
        if self._indexes:
            return IndexedTransaction(self, self._codec, self._indexes)
        return Transaction(self, self._codec)

    def __del__(self) -> None:
        if getattr(self, "_is_closed", True):
            return
        warnings.warn(f"unclosed store {self._core.path}", ResourceWarning, stacklevel=2)
        try:
            self.close()
        except OSError:
            # Nobody is left to retry close() or to catch the error: release the file
            # and the lock anyway, or the log stays locked for the life of the process,
            # and report what was lost on the logger.
            dropped = self._core.abandon()
            logger.error(
                "%s: dropped %d buffered bytes of a store that could not close",
                self._core.path,
                dropped,
                exc_info=True,
            )

    # -- state -------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._is_closed

    def __repr__(self) -> str:
        types = f"{type_name(self._codec.key_type)}, {type_name(self._codec.value_type)}"
        state = "closed" if self._is_closed else f"{len(self._table.entries)} entries"
        return f"<{type(self).__name__}[{types}] {str(self._core.path)!r} {state}>"
