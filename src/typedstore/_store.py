"""TypedStore: the public, typed, thread-safe mapping over the log."""

from __future__ import annotations

import enum
import logging
import os
import threading
import typing
import warnings
from collections.abc import (
    Callable,
    Collection,
    ItemsView,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
    ValuesView,
)
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from . import _compact, _fs
from ._codec import Codec, type_name
from ._config import Schema, StoreConfig
from ._errors import StoreClosedError, StoreReadOnlyError
from ._log import Log
from ._open import load
from ._records import Write, batch_record_body, operation_body, removal
from ._replay import Recovery
from ._table import Table
from ._txn import Transaction
from ._types import MISSING, K, Migration, Stored, V

if TYPE_CHECKING:  # PEP 747: lets `open(path, str, int | None)` infer TypedStore[str, int | None]
    from typing_extensions import TypeForm

logger = logging.getLogger("typedstore")

S = TypeVar("S", bound="TypedStore[Any, Any]")
K2 = TypeVar("K2")
V2 = TypeVar("V2")
T = TypeVar("T")
_UNBOUND: object = object()
_REENTERED = (
    "a write to this store from code running inside one of its writes in the same thread "
    "(a signal handler, a finalizer, a validator or modify's fn) is refused: it would "
    "interleave with the write in progress"
)


class _Phase(enum.Enum):
    """Where this thread is in a write; other threads wait on the lock."""

    IDLE = enum.auto()
    USER_CODE = enum.auto()
    """Running validators or ``modify``'s ``fn``: closing the store is allowed."""
    APPENDING = enum.auto()
    """Appending the record and applying it, or flushing, compacting or closing the log:
    nothing may touch the log."""


_IDLE, _USER_CODE, _APPENDING = _Phase.IDLE, _Phase.USER_CODE, _Phase.APPENDING
"""As plain globals: read on the path of every write."""


class TypedStore(MutableMapping[K, V], Generic[K, V]):
    """A persistent, typed, insertion-ordered mapping backed by one append-only log.

    Open it with :meth:`open`. Every write validates its key and value, appends one
    checksummed record and only then changes memory. Values of mutable types are
    returned as fresh copies, immutable ones as they are. Every method is atomic
    with respect to other threads.
    """

    _key_type: ClassVar[object] = _UNBOUND
    _value_type: ClassVar[object] = _UNBOUND
    _type_args: ClassVar[tuple[object, object]] = (_UNBOUND, _UNBOUND)
    """The key and value types as this class binds them, type variables where it does not."""
    _schema: ClassVar[Schema | None] = None

    def __init_subclass__(
        cls,
        *,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Collection[str] = (),
        **kwargs: Any,
    ) -> None:
        """Bind a declarative subclass's types, and its schema version and migrations."""
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, TypedStore):
                cls._type_args = _substitute(origin, typing.get_args(base))
        if not any(isinstance(arg, TypeVar) or arg is _UNBOUND for arg in cls._type_args):
            cls._key_type, cls._value_type = cls._type_args
        if version is not None or migrations is not None or dropped_fields:
            cls._schema = _schema_of(version, migrations, dropped_fields)

    def __init__(self) -> None:
        raise TypeError("open a store with TypedStore.open(path, key_type, value_type)")

    # -- opening ---------------------------------------------------------------------------

    @overload
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        key_type: TypeForm[K2],
        value_type: TypeForm[V2],
        *,
        config: StoreConfig | None = None,
        readonly: bool = False,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Collection[str] = (),
    ) -> TypedStore[K2, V2]: ...
    @overload
    @classmethod
    def open(
        cls: type[S],
        path: str | os.PathLike[str],
        *,
        config: StoreConfig | None = None,
        readonly: bool = False,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Collection[str] = (),
    ) -> S: ...
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        key_type: object = _UNBOUND,
        value_type: object = _UNBOUND,
        *,
        config: StoreConfig | None = None,
        readonly: bool = False,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Collection[str] = (),
    ) -> Any:
        """Open the store at ``path``, creating it (and its folders) if it does not exist.

        An existing log is replayed (README.md, "Durability and recovery"). Raises
        ``StoreLockedError`` when another writer holds it, ``NotAStoreError``,
        ``CorruptLogError`` or ``SchemaMismatchError`` for a log it cannot use (the file
        is left as it was), and ``FileNotFoundError`` for a missing file with
        ``readonly=True``.

        ``version`` is the schema version of the values (default 1); records written
        at an older version pass through ``migrations[k]`` (version k to k + 1) on
        their decoded data before validation. Fields that stored records hold and the
        value type no longer has raise ``SchemaMismatchError`` unless a migration
        removes them or ``dropped_fields`` names them. A declarative subclass may
        declare all three as class keywords instead.
        """
        key_type, value_type = cls._bind_types(key_type, value_type)
        if cls._schema is None:
            schema = _schema_of(version, migrations, dropped_fields)
        elif version is not None or migrations is not None or dropped_fields:
            raise TypeError(f"{cls.__name__} declares its schema version and migrations already")
        else:
            schema = cls._schema
        if config is None:
            config = StoreConfig()
        elif not isinstance(config, StoreConfig):
            raise TypeError(f"config must be a StoreConfig, not {type(config).__name__}")
        store = object.__new__(cls)
        codec = Codec[Any, Any](key_type, value_type)
        store._setup(_fs.real_path(Path(path)), codec, schema, config, readonly=readonly)
        return store

    @classmethod
    def _bind_types(cls, key_type: object, value_type: object) -> tuple[object, object]:
        if cls._key_type is not _UNBOUND:
            if key_type is not _UNBOUND or value_type is not _UNBOUND:
                raise TypeError(
                    f"{cls.__name__} binds its types already; call {cls.__name__}.open(path)"
                )
            return cls._key_type, cls._value_type
        if key_type is _UNBOUND or value_type is _UNBOUND:
            raise TypeError(
                "pass the key and value types: TypedStore.open(path, key_type, value_type)"
            )
        return key_type, value_type

    def _setup(
        self, path: Path, codec: Codec[K, V], schema: Schema, config: StoreConfig, *, readonly: bool
    ) -> None:
        self._path = path
        self._codec = codec
        self._schema_now = schema
        self._config = config
        self._readonly = readonly
        self._lock = threading.RLock()
        self._txn_thread: int | None = None
        self._phase = _IDLE
        self._is_closed = True  # until fully open, so __del__ has nothing to close
        self._file_lock: _fs.FileLock | None = None
        self._skip_auto_compact_below = config.min_compact_bytes
        """No automatic compaction below this size: the policy's minimum, or more after
        a compaction failed. Checked first, so that most writes skip the policy."""
        if not readonly:
            _fs.make_parents(path)
            self._file_lock = _fs.FileLock(path)
        try:
            opened = load(path, codec, schema, config, readonly=readonly)
        except BaseException:
            if self._file_lock is not None:
                self._file_lock.release()
            raise
        key_bytes = None
        if not codec.canonical_keys:
            key_bytes = {key: codec.key_bytes(key) for key in opened.entries}
        self._table = Table(opened.entries, key_bytes)
        self._log = opened.log
        self.recovery: Recovery | None = opened.recovery
        """What opening did about damage in the log (None when it found none)."""
        self._is_closed = False

    # -- reading ---------------------------------------------------------------------------

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, /, default: V | T) -> V | T: ...
    def get(self, key: K, /, default: object = None) -> object:
        """Return the value of ``key`` (a copy for mutable types), or ``default``."""
        with self._lock:
            if self._is_closed:  # _check_open, inlined in the two hottest reads
                self._check_open()
            stored = self._table.entries.get(key, MISSING)
        return default if stored is MISSING else self._codec.thaw(stored)

    def __getitem__(self, key: K) -> V:
        with self._lock:
            if self._is_closed:
                self._check_open()
            stored = self._table.entries.get(key, MISSING)
        if stored is MISSING:
            raise KeyError(key)
        return self._codec.thaw(stored)

    def contains_key(self, key: K) -> bool:
        """Return whether ``key`` is in the store (same as ``key in store``)."""
        return key in self

    def __contains__(self, key: object) -> bool:
        with self._lock:
            self._check_open()
            return key in self._table.entries

    def __len__(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._table.entries)

    def __iter__(self) -> Iterator[K]:
        """Iterate over a snapshot of the keys, in insertion order."""
        with self._lock:
            self._check_open()
            return iter(list(self._table.entries))

    def __reversed__(self) -> Iterator[K]:
        """Iterate over a snapshot of the keys, last inserted first, like a dict."""
        with self._lock:
            self._check_open()
            return iter(list(reversed(self._table.entries)))

    def values(self) -> ValuesView[V]:
        """Return a view of the values in insertion order; iterating it takes a snapshot."""
        return _ValuesView(self)

    def items(self) -> ItemsView[K, V]:
        """Return a view of the entries in insertion order; iterating it takes a snapshot."""
        return _ItemsView(self)

    def get_index(self, index: int) -> tuple[K, V] | None:
        """Return the entry at insertion position ``index`` (negative counts from the end).

        Out of range gives None. O(1), except that the first call after a removal
        rebuilds the position index in O(n).
        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int, not {type(index).__name__}")
        with self._lock:
            self._check_open()
            entry = self._table.at(index)
        return None if entry is None else (entry[0], self._codec.thaw(entry[1]))

    def _snapshot(self) -> list[tuple[K, Stored]]:
        with self._lock:
            self._check_open()
            return list(self._table.entries.items())

    # -- writing ---------------------------------------------------------------------------

    def insert(self, key: K, value: V) -> V | None:
        """Validate and write ``key = value``; return the previous value, or None.

        An existing key keeps its position. When it returns, the record is durable
        as the config promises; when it raises, nothing changed (unless a signal
        handler raised the exception: README.md, "Limitations").
        """
        previous = self._put(key, value)
        return None if previous is MISSING else self._codec.thaw(previous)

    def __setitem__(self, key: K, value: V) -> None:
        self._put(key, value)

    def _put(self, key: K, value: V) -> Stored:
        codec = self._codec
        validated_key, key_bytes = codec.encode_key(key)
        validated, blob = codec.encode_value(value)
        return self._write(((validated_key, key_bytes, codec.freeze(validated, blob), blob),))[0]

    def setdefault(self, key: K, default: V, /) -> V:
        """Return the value of ``key``; if absent, first insert ``default`` (validated).

        The key is validated first, like every write. Atomic: two threads calling it
        for the same absent key get the same value back.
        """
        codec = self._codec
        validated_key, key_bytes = codec.encode_key(key)
        present: list[Stored] = []

        def stage(table: Table[K]) -> tuple[Write[K], ...]:
            stored = table.entries.get(validated_key, MISSING)
            if stored is not MISSING:
                present.append(stored)
                return ()
            validated, blob = codec.encode_value(default)
            present.append(codec.freeze(validated, blob))
            return ((validated_key, key_bytes, present[0], blob),)

        self._write(stage)
        return codec.thaw(present[0])

    def remove(self, key: K) -> V | None:
        """Remove ``key``, keeping the order of the rest; return its value, or None if absent.

        An absent key writes nothing.
        """
        previous = self._delete(key)
        return None if previous is MISSING else self._codec.thaw(previous)

    def __delitem__(self, key: K) -> None:
        if self._delete(key) is MISSING:
            raise KeyError(key)

    @overload
    def pop(self, key: K, /) -> V: ...
    @overload
    def pop(self, key: K, /, default: V | T) -> V | T: ...
    def pop(self, key: K, /, default: object = MISSING) -> object:
        """Remove ``key`` and return its value; without ``default``, raise KeyError if absent."""
        previous = self._delete(key)
        if previous is not MISSING:
            return self._codec.thaw(previous)
        if default is MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[K, V]:
        """Remove and return the last entry, like ``dict.popitem``; KeyError if empty."""

        with self._lock:  # the last key, and its removal, under one hold of the lock
            self._writable_log()
            if not self._table.entries:
                raise KeyError("popitem(): the store is empty")
            # The key object as stored: a NaN key written by an older version equals
            # no other object, and the table finds it by identity.
            key = next(reversed(self._table.entries))
            key_bytes = self._codec.key_bytes(key)
            (previous,) = self._write(
                (removal(key, key_bytes),), compact=not self._codec.finds(key, key_bytes)
            )
        return key, self._codec.thaw(previous)

    def _delete(self, key: K) -> Stored:
        """Remove ``key`` if present; return its stored value, or MISSING."""
        found = self._codec.find_key(key)
        if found is None:  # a key that does not validate cannot have been stored
            self._write(())  # writes nothing, but checks the store may be written
            return MISSING
        stored_key, key_bytes = found
        codec = self._codec
        # A key not equal to itself (a NaN from an older log) compacts: see _write.
        compact = not codec.canonical_keys and not codec.finds(stored_key, key_bytes)
        return self._write(((stored_key, key_bytes, None, None),), compact=compact)[0]

    def clear(self) -> None:
        """Remove every entry, as one atomic record."""
        with self.transaction() as txn:
            for key in list(self._table.entries):
                del txn[key]

    @overload
    def modify(self, key: K, fn: Callable[[V], V]) -> V: ...
    @overload
    def modify(self, key: K, fn: Callable[[V], V], *, default: V) -> V: ...
    def modify(self, key: K, fn: Callable[[V], V], *, default: object = MISSING) -> V:
        """Replace the value of ``key`` by ``fn(private copy of it)``; return the new value.

        ``fn`` runs while the store is locked. If ``fn``, validation, encoding or the
        write raises, nothing changed, in memory or on disk, and the exception
        propagates. An absent key raises KeyError, writing nothing; with ``default``,
        ``fn`` starts from a validated copy of ``default`` instead (one insert record).
        """
        codec = self._codec
        # With a default, modify may insert: the key is validated as for any write.
        found = codec.find_key(key) if default is MISSING else codec.encode_key(key)
        result: list[V] = []

        def stage(table: Table[K]) -> tuple[Write[K]]:
            stored = MISSING if found is None else table.entries.get(found[0], MISSING)
            if stored is MISSING and default is not MISSING:
                stored = codec.freeze(*codec.encode_value(default))
            if found is None or stored is MISSING:
                raise KeyError(key)
            validated, blob = codec.encode_value(fn(codec.thaw(stored)))
            result.append(validated)
            return ((found[0], found[1], codec.freeze(validated, blob), blob),)

        # A key not equal to itself (a NaN from an older log) compacts: see _write.
        compact = not codec.canonical_keys and found is not None and not codec.finds(*found)
        self._write(stage, compact=compact)
        # Memory keeps the bytes of a mutable value, so ``validated`` is the caller's.
        return result[0]

    def transaction(self) -> Transaction[K, V]:
        """Return a transaction, to use as ``with store.transaction() as txn:``.

        Entering the block takes the store: other threads' reads and writes wait
        until it ends. Nesting is refused with RuntimeError: commit the outer
        transaction first.
        """
        with self._lock:
            self._writable_log()
        return Transaction(self, self._codec)

    def _write(
        self,
        stage: Callable[[Table[K]], Sequence[Write[K]]] | Sequence[Write[K]],
        *,
        batch: bool = False,
        compact: bool = False,
    ) -> list[Stored]:
        """Write ``stage``'s writes as one record, then apply them to memory: every write's path.

        ``stage`` is the writes, or a function of the table that runs under the lock and
        may run user code (validators, ``modify``'s ``fn``), and returns them; nothing,
        or a lone removal of an absent key, writes nothing. Returns what each write
        replaced (MISSING where nothing).

        Raises RuntimeError for a write from code running inside a write of this store
        in this thread (a signal handler, a finalizer, a validator or ``fn``): the
        store's lock is re-entrant, and such a write would interleave its record with
        the interrupted one. An exception a signal handler raises into it once the
        log holds the record propagates after memory applied it (see ``_append``).

        ``compact`` rewrites the log right after: for a record naming a key that is
        not equal to itself (a NaN key stored by an older version), which replay
        could never match to the entry it is about.
        """
        with self._lock:
            log = self._log
            if self._is_closed or log is None or log.failure or self._txn_thread is not None:
                log = self._writable_log()  # raises the error that applies
            if self._phase is not _IDLE:
                raise RuntimeError(_REENTERED)
            self._phase = _USER_CODE
            try:
                writes = stage(self._table) if callable(stage) else stage
                if not writes:
                    return []
                # User code may have closed the store, and something else may now own
                # its file's descriptor number: write nowhere.
                if self._is_closed or self._log is not log:
                    raise StoreClosedError(f"{self._path}: the store was closed during a write")
                self._phase = _APPENDING
                previous = self._append(log, writes, batch)
                if compact or log.size >= self._skip_auto_compact_below:
                    self._after_write(log, compact)
                return previous
            finally:
                self._phase = _IDLE

    def _append(self, log: Log, writes: Sequence[Write[K]], batch: bool) -> list[Stored]:
        """Append ``writes`` as one record, then apply them to memory; see ``_write``."""
        table = self._table
        # An exception from a signal handler (KeyboardInterrupt, a refused write) can
        # arrive between any two bytecodes. Once the log counts the record, memory must
        # follow whatever arrives: the handlers below finish applying it, then re-raise.
        records = log.total_records
        if batch:
            key_bytes = table.record_keys(writes)
            applied: list[Stored] = []  # what each write applied replaced: where to resume
            try:
                log.append(batch_record_body(writes, key_bytes), len(writes))
                table.apply(writes, key_bytes, applied)
            except BaseException:
                if log.total_records != records:
                    done = len(applied)
                    table.settle(writes[done:], key_bytes[done:])
                raise
            return applied
        ((key, given, stored, blob),) = writes  # one write: the hottest path, kept short
        if blob is None and key not in table.entries:
            return [MISSING]  # the removal of an absent key writes nothing
        named = table.record_key(key, given)
        try:
            log.append(operation_body(named, blob), 1)
            return [table.pop(key) if blob is None else table.put(key, named, stored)]
        except BaseException:
            if log.total_records != records:
                table.settle(writes, (named,))
            raise

    def _after_write(self, log: Log, compact: bool) -> None:
        """Compact when asked or the policy says so; a failure is logged, never fails the write."""
        size = log.size
        if not compact and (
            size < self._skip_auto_compact_below
            or not _compact.is_due(self._config, size, log.total_records, len(self._table.entries))
        ):
            return
        try:
            self._compact_locked(log)
        except OSError:
            # The write that triggered this already succeeded and is durable; only
            # the space reclaim failed. Retry once the log has doubled.
            self._skip_auto_compact_below = 2 * log.size
            logger.warning("%s: automatic compaction failed", self._path, exc_info=True)

    # -- transactions (TransactionHost) -----------------------------------------------------

    def _begin_transaction(self) -> Mapping[K, Stored]:
        self._lock.acquire()
        try:
            self._writable_log()
            if self._phase is not _IDLE:
                raise RuntimeError(_REENTERED)
        except BaseException:
            self._lock.release()
            raise
        self._txn_thread = threading.get_ident()
        return self._table.entries

    def _commit(self, writes: Sequence[Write[K]]) -> None:
        # The transaction holds the lock until _end_transaction: only its thread is here.
        self._txn_thread = None
        finds = self._codec.finds
        unmatched = any(blob is None and not finds(key, named) for key, named, _, blob in writes)
        self._write(writes, batch=True, compact=unmatched)

    def _end_transaction(self) -> None:
        self._txn_thread = None
        self._lock.release()

    # -- durability --------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand buffered records to the OS and fsync the log; a no-op when read-only."""
        with self._lock:
            self._check_open()
            self._check_not_writing("flush()")
            if self._log is not None:
                self._phase = _APPENDING  # a write from a signal handler now is refused
                try:
                    self._log.flush()
                finally:
                    self._phase = _IDLE

    def compact(self) -> None:
        """Rewrite the log to its header and one insert per live entry, atomically.

        README.md, "Durability and recovery", says what survives a crash meanwhile.
        """
        with self._lock:
            log = self._writable_log()
            self._check_not_writing("compact()")
            self._phase = _APPENDING  # a write from a signal handler now is refused
            try:
                self._compact_locked(log)
            finally:
                self._phase = _IDLE

    def _compact_locked(self, log: Log) -> None:
        entries = _compact.insert_bodies(self._table.entries, self._codec)
        header = _compact.header(self._codec, self._schema_now.version)
        log.rewrite(_compact.live_chunks(header, entries), len(self._table.entries))
        self._skip_auto_compact_below = self._config.min_compact_bytes

    def close(self) -> None:
        """Flush, fsync and close the log and release its lock; closing twice is harmless.

        If the buffered records cannot be written (disk full, say), the OSError
        propagates and the store stays open with them, so ``close()`` can be retried.
        If an fsync fails, the store is closed anyway and the OSError propagates.
        """
        with self._lock:
            if self._is_closed:
                return
            phase = self._phase
            if phase is _APPENDING:  # a signal handler, say: the write goes on
                raise RuntimeError("close() from code that interrupted a write of this store")
            log = self._log
            # A write from a signal handler now is refused; close() from a validator or
            # modify's fn returns to that write, which then finds the store closed.
            self._phase = _APPENDING
            try:
                if log is not None:
                    log.close()
            except OSError:
                if log is not None and not log.has_failed():
                    raise  # still open, records still buffered: close() can be retried
                self._release()
                raise
            finally:
                self._phase = phase
            self._release()

    def _release(self) -> None:
        self._is_closed = True
        # A closed store answers nothing: let its entries go now, not when the object does
        # (`store.close(); store = TypedStore.open(...)` would otherwise hold both).
        self._table = Table({}, None)
        if self._file_lock is not None:
            self._file_lock.release()

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_is_closed", True):
            return
        warnings.warn(f"unclosed store {self._path}", ResourceWarning, stacklevel=2)
        try:
            self.close()
        except OSError:
            # Nobody is left to retry close() or to catch the error: release the file
            # and the lock anyway, or the log stays locked for the life of the process,
            # and report what was lost on the logger.
            dropped = 0
            if not self._is_closed:
                dropped = 0 if self._log is None else self._log.abandon()
                self._release()
            logger.error(
                "%s: dropped %d buffered bytes of a store that could not close",
                self._path,
                dropped,
                exc_info=True,
            )

    # -- state -------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The log file's path."""
        return self._path

    @property
    def config(self) -> StoreConfig:
        """The settings this store was opened with."""
        return self._config

    @property
    def readonly(self) -> bool:
        """Whether the store was opened with ``readonly=True``."""
        return self._readonly

    @property
    def schema_version(self) -> int:
        """The schema version this store writes its values at."""
        return self._schema_now.version

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._is_closed

    def __repr__(self) -> str:
        types = f"{type_name(self._codec.key_type)}, {type_name(self._codec.value_type)}"
        state = "closed" if self._is_closed else f"{len(self._table.entries)} entries"
        return f"<{type(self).__name__}[{types}] {str(self._path)!r} {state}>"

    def _check_open(self) -> None:
        if self._is_closed:
            raise StoreClosedError(f"{self._path}: the store is closed")

    def _writable_log(self) -> Log:
        if self._is_closed:
            self._check_open()
        if self._log is None:
            raise StoreReadOnlyError(f"{self._path}: the store was opened with readonly=True")
        if self._txn_thread is not None:  # under the lock, which the transaction holds
            raise RuntimeError(
                "a transaction is open on this store in this thread: write through it, "
                "or end it first"
            )
        if self._log.failure is not None:
            self._log.check_writable()
        return self._log

    def _check_not_writing(self, action: str) -> None:
        """Refuse ``action`` from code that runs inside a write of this store (under the lock)."""
        if self._phase is not _IDLE:
            raise RuntimeError(f"{action} from code running inside a write of this store")


# TypedStore's own key and value types are its type parameters, K and V.
TypedStore._type_args = getattr(TypedStore, "__parameters__")  # noqa: B009 - not in the stubs


def _substitute(
    origin: type[TypedStore[Any, Any]], args: tuple[object, ...]
) -> tuple[object, object]:
    """Return ``origin``'s key and value types with its type parameters bound to ``args``.

    ``TypedStore[str, User]`` gives ``(str, User)``; with ``class ByName(TypedStore[str,
    VT], Generic[VT])``, ``ByName[User]`` gives ``(str, User)`` too.
    """
    parameters = getattr(origin, "__parameters__", ())
    bound = dict(zip(parameters, args, strict=False))
    key, value = origin._type_args
    return _bind(key, bound), _bind(value, bound)


def _bind(tp: object, bound: dict[object, object]) -> object:
    if isinstance(tp, TypeVar):
        return bound.get(tp, tp)
    parameters = getattr(tp, "__parameters__", ())
    if parameters and not isinstance(tp, type):  # a generic alias such as list[VT]
        return tp[tuple(bound.get(p, p) for p in parameters)]  # type: ignore[index]  # an alias
    return tp


def _schema_of(
    version: int | None,
    migrations: Mapping[int, Migration] | None,
    dropped_fields: Collection[str],
) -> Schema:
    if isinstance(dropped_fields, str):
        raise TypeError("dropped_fields must be a collection of field names, not one string")
    return Schema(
        version=1 if version is None else version,
        migrations=dict(migrations or {}),
        dropped_fields=frozenset(dropped_fields),
    )


class _ValuesView(ValuesView[V], Generic[K, V]):
    _mapping: TypedStore[K, V]

    def __iter__(self) -> Iterator[V]:
        thaw = self._mapping._codec.thaw
        for _, stored in self._mapping._snapshot():
            yield thaw(stored)


class _ItemsView(ItemsView[K, V], Generic[K, V]):
    _mapping: TypedStore[K, V]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        thaw = self._mapping._codec.thaw
        for key, stored in self._mapping._snapshot():
            yield key, thaw(stored)
