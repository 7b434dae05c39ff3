"""The database core: one log, its lock and catalog, and the one path every write takes.

A ``Core`` is what one open log shares with its collections: the lock, the writer,
the catalog (docs/FORMAT.md, "Collections") and the state of each collection. Every
write, of any collection, single or a transaction's batch, goes through
:meth:`Core._write` or :meth:`Core._commit`, except the commonest: a lone insert,
removal or ``modify`` of an exclusive store with nothing else under way, which
:meth:`Core._write_one` and :meth:`Core._modify_one` do in fewer steps, writing the
same bytes. :class:`Database` is the public face of a
core holding named collections; ``TypedStore`` (``_store``) is a core holding one.
"""

from __future__ import annotations

import _thread
import contextlib
import enum
import logging
import os
import threading
import unicodedata
import weakref
from collections.abc import Callable, Container, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from . import _compact, _format, _fs, _reading
from ._catalog import (
    DEFAULT_NAME,
    Catalog,
    CollectionMeta,
    check_name,
    database,
    nfc_clash,
    nfc_message,
    nfc_spellings,
)
from ._codec import Codec
from ._collection import UNLOCKED_KEYS, Collection
from ._config import Schema, StoreConfig
from ._engine import StaleLogError
from ._errors import CorruptLogError, SchemaMismatchError, StoreClosedError, StoreReadOnlyError
from ._file_engine import FileEngine
from ._follow import Following
from ._index import has_indexes, index_functions
from ._log import Log
from ._open import Opened, load
from ._packing import packb
from ._pg_engine import PostgresEngine
from ._reading import Reading
from ._records import (
    Write,
    collection_record,
    groups_body,
    operation_record,
)
from ._replay import (
    Declaration,
    Declared,
    Kept,
    Recovery,
    Replay,
    Replayer,
    collection_segment,
    collector_paused,
    generation_at,
    replay,
    resume_bare,
    resumed,
)
from ._table import Table
from ._txn import started
from ._types import MISSING, Stored

logger = logging.getLogger("typedstore")

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

_COMPACT_TRIES = 20
"""How often compaction on PostgreSQL catches up and tries again when writes keep landing."""


@dataclass(frozen=True, slots=True)
class Wanted:
    """A collection the opening code declares: the class of its object, types and schema."""

    cls: type[Collection[Any, Any]]
    codec: Codec[Any, Any]
    schema: Schema

    def same(self, other: Wanted) -> bool:
        """Whether ``other`` declares the same types and schema version."""
        return (
            self.codec.key_type == other.codec.key_type
            and self.codec.value_type == other.codec.value_type
            and self.schema.version == other.schema.version
        )


@dataclass(frozen=True, slots=True)
class Changes:
    """What a writable open changes in the catalog: collections dropped and renamed."""

    dropped: tuple[str, ...] = ()
    renamed: Mapping[str, str] | None = None


class Core:
    """One open log: its lock, writer, catalog and collections, and the one write path."""

    def __init__(
        self,
        path: Path,
        config: StoreConfig,
        *,
        readonly: bool,
        single: bool,
        shared: bool = False,
        pg: PostgresEngine | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.readonly = readonly
        self._pg = pg
        """The PostgreSQL engine the log lives in (README, "Several machines"): always
        shared; None for a log file at ``path``."""
        self.shared = (shared or pg is not None) and not readonly
        """Whether other processes write the log too (README, "Several processes")."""
        if self.shared and pg is None and not config.write_through:
            raise ValueError(
                "shared=True needs write_through=True: a record buffered in one process "
                "is a write the others cannot see (README, 'Several processes')"
            )
        self.lock: threading.RLock | _FollowingLock = threading.RLock()
        self._engine: FileEngine | PostgresEngine | None = None
        """The engine other processes' writes are read through: a shared or read-only
        core's (see :meth:`_catch_up`); None for an exclusive one, which never looks."""
        self._known = 0
        """The position up to which this core has applied the log (shared, read-only)."""
        self._generation = 0
        """The schema generation in force at ``_known``."""
        self._total = 0
        """How many records the log holds up to ``_known``, as far as compaction cares."""
        self._resume_cache: (
            tuple[Catalog, Replayer, list[tuple[Collection[Any, Any], Following[Any, Any]]]] | None
        ) = None
        """What :meth:`_resumed` returned last, and for which catalog."""
        self._bare: tuple[Catalog, object, Table[Any], Following[Any, Any]] | None = None
        """What :meth:`_read_bare` applies collection 0's records with: the catalog, the
        :attr:`_resume_cache` and the table its state was made for, and the state."""
        self._indexes_behind = False
        """Whether a catch-up stopped (raised) before the indexes followed the records it
        applied to the tables: the next one rebuilds them whole (see :meth:`_read_new`)."""
        if self.shared or readonly:
            self.lock = _FollowingLock(self)
        if pg is not None and not readonly:
            # A compare-and-append, retried after a catch-up: one round trip per write.
            self._write = self._write_optimistic  # type: ignore[method-assign]
        elif self.shared:
            # Every write, from any collection, takes the writer lock first. An instance
            # attribute, so that an exclusive core's writes pay no test for it.
            self._write = self._write_shared  # type: ignore[method-assign]
        if pg is not None or self.shared:
            # Their writes take the writer lock, or retry: only through _write.
            self._write_one = self._write_one_general  # type: ignore[method-assign]
            self._modify_one = self._modify_one_general  # type: ignore[method-assign]
        self._txn_thread: int | None = None
        self._phase = _IDLE
        self.unlocked_keys: Container[type] = (
            frozenset() if self.shared or readonly else UNLOCKED_KEYS
        )
        """The types of key single-key reads look up without the lock (see
        ``_collection.UNLOCKED_KEYS``): a shared core on a log file gets
        :class:`_KeysWhileUnchanged` once open; none where the lock must catch up."""
        self.readers: dict[object, int] = {}
        """The threads inside a ``reading()`` block of this core, by ``_reading.mark``,
        and how many blocks deep (``_reading``): their reads look at the log no more."""
        self.writing = 0
        """Odd while a transaction is open, a batch is applied or a catch-up runs, and
        larger after each: single-key reads check it to skip the lock
        (``_collection.UNLOCKED_KEYS``). Set under the lock only: ``(writing + 2) | 1``
        as one starts, ``(writing + 1) & ~1`` as it ends (no call: a Ctrl-C could land
        at a call). Left odd by an interrupt, it only makes reads lock until the next
        batch or catch-up ends."""
        self.is_closed = True  # until fully open, so __del__ has nothing to close
        self._file_lock: _fs.FileLock | None = None
        self._log: Log | None = None
        self._skip_auto_compact_below = config.min_compact_bytes
        """No automatic compaction below this size: the policy's minimum, or more after
        a compaction failed. Checked first, so that most writes skip the policy."""
        self._policy_from = self._policy_until = 0
        """While the log holds from ``_policy_from`` up to (not including)
        ``_policy_until`` records, the policy cannot be due (see :meth:`_after_write`):
        the short write path (:meth:`_write_one`) does not ask it."""
        self._single = single
        """Whether this core keeps one collection (a TypedStore) rather than named ones."""
        self.catalog = Catalog((), single=single)
        self.collections: weakref.WeakValueDictionary[int, Collection[Any, Any]]
        self.collections = weakref.WeakValueDictionary()
        """The declared collections, by id. Weak: a collection refers to its core, and a
        TypedStore (a collection) must go, and warn if unclosed, when its last user
        lets it go, not when the cycle collector runs."""
        self._tables: dict[int, Table[Any]] = {}
        """The declared collections' tables, by id (the same objects as theirs)."""
        self._kept: dict[int, Kept] = {}
        """The collections no code declared, by id: entries as bytes."""
        self._next_id = 0
        self.recovery: Recovery | None = None

    # -- opening ---------------------------------------------------------------------------

    def open(self, wanted: dict[str, Wanted], changes: Changes) -> list[Collection[Any, Any]]:
        """Replay or create the log; return the declared collections, made in ``wanted``'s order.

        ``wanted`` maps names to declarations; a single core's one entry declares the
        only collection of the log, whatever its name.
        """
        made: list[Collection[Any, Any]] = []
        if (changes.dropped or changes.renamed) and self.readonly:
            raise ValueError("dropped_collections and renamed_collections need a writable open")
        engine: FileEngine | PostgresEngine | None = None
        if self._pg is not None:
            engine = self._pg.copy(readonly=self.readonly)
        elif self.shared:
            engine = FileEngine.open(self.path, "shared")
            self.unlocked_keys = _KeysWhileUnchanged(self, engine)
        elif not self.readonly:
            _fs.make_parents(self.path)
            self._file_lock = _fs.FileLock(self.path)
        try:
            # A shared open reads, and writes a changed catalog, under the writer lock.
            writing = engine is not None and engine.mode != "readonly"
            with engine.writing() if writing else contextlib.nullcontext():  # type: ignore[union-attr]  # engine is set when writing
                # Replay, then the indexes built from what it kept: the collector would
                # walk those many objects, all kept or freed by their count, for nothing.
                with collector_paused():
                    opened = self._load(engine, wanted, changes, made)
                self._log = opened.log
                self.recovery = opened.recovery
                if opened.log is not None and opened.replay is not None:
                    self._settle_catalog(opened.log, opened.replay, changes)
        except BaseException:
            if engine is not None:
                engine.close()
            if self._file_lock is not None:
                self._file_lock.release()
            raise
        self._start_following(engine if self.shared else opened.reader, opened)
        self.is_closed = False
        for collection in made:
            collection._is_closed = False
        return made

    def _load(
        self,
        engine: FileEngine | PostgresEngine | None,
        wanted: dict[str, Wanted],
        changes: Changes,
        made: list[Collection[Any, Any]],
    ) -> Opened:
        """Replay or create the log in ``engine`` (None: an exclusive or read-only file)."""

        def adopt(replay: Replay | None) -> None:
            made.extend(self._adopt(replay, wanted, changes))

        if isinstance(engine, PostgresEngine):
            from . import _pg_open

            return _pg_open.load(
                self.path,
                engine,
                self._declare(wanted),
                self.config,
                adopt=adopt,
                image=self._new_image,
            )
        return load(
            self.path,
            self._declare(wanted),
            self.config,
            readonly=self.readonly,
            adopt=adopt,
            image=self._new_image,
            engine=engine,
        )

    def _settle_catalog(self, log: Log, replayed: Replay, changes: Changes) -> None:
        """Write the catalog this open changed: dropped, renamed or added collections at
        once (a collection listed is in the log); changed types with the next record, or at
        once in shared mode, where other processes would otherwise keep writing under the
        old catalog."""
        changed = self.catalog != replayed.catalog
        old = {meta.id for meta in replayed.catalog.collections}
        added = any(meta.id not in old for meta in self.catalog.collections)
        if changes.dropped or changes.renamed or (changed and (self.shared or added)):
            self._write_catalog(log)
        elif changed:
            # Later records must say they were written under the current catalog.
            log.pending_schema = self._catalog_bytes()

    def _declare(self, wanted: dict[str, Wanted]) -> Callable[[Catalog, CollectionMeta], Any]:
        def declare(catalog: Catalog, meta: CollectionMeta) -> Declaration[Any, Any] | None:
            only: Wanted | None
            if self._single:
                only = next(iter(wanted.values())) if len(catalog.collections) == 1 else None
            else:
                only = wanted.get(meta.name)
            if only is None:
                return None
            if not has_indexes(only.cls):
                return Declaration(only.codec, only.schema)
            keep = index_functions(only.cls)
            return Declaration(only.codec, only.schema, keeps_values=True, keep=keep)

        return declare

    def _adopt(
        self, replay: Replay | None, wanted: dict[str, Wanted], changes: Changes
    ) -> list[Collection[Any, Any]]:
        """Take the replayed state (None for a new log) and make the declared collections."""
        states: dict[int, Declared[Any, Any] | Kept] = {}
        if replay is not None:
            self.catalog, self._next_id = replay.catalog, replay.next_id
            states = replay.collections
        else:
            self.catalog = Catalog((), single=self._single)
        self._apply_changes(changes, states)
        if self._single:
            wanted = self._single_wanted(wanted)
        listed = nfc_spellings(meta.name for meta in self.catalog.collections)
        for name in wanted:
            other = listed.get(unicodedata.normalize("NFC", name), name)
            if other != name:
                raise ValueError(f"{self.path}: {nfc_message(name, other)}; nothing was changed")
        made = [self._make(name, want, states) for name, want in wanted.items()]
        self._kept = {ident: s for ident, s in states.items() if isinstance(s, Kept)}
        return made

    def _single_wanted(self, wanted: dict[str, Wanted]) -> dict[str, Wanted]:
        """Name a TypedStore's one collection as the log does; refuse a log of several."""
        names = [meta.name for meta in self.catalog.collections]
        if len(names) > 1:
            raise SchemaMismatchError(
                f"{self.path}: the log holds {len(names)} collections "
                f"({', '.join(map(repr, names))}); a TypedStore keeps one. Open it as a "
                "Database; nothing was changed",
                path=self.path,
            )
        (want,) = wanted.values()
        return {names[0] if names else DEFAULT_NAME: want}

    def _apply_changes(self, changes: Changes, states: dict[int, Any]) -> None:
        """Drop and rename collections as the open asks, all renames at once (a swap or a
        chain is a rename like any other); ValueError, nothing changed, for a name the log
        lacks, one dropped and renamed, or a rename that leaves two collections one name."""
        listed = list(self.catalog.collections)
        names = {meta.name for meta in listed}
        renamed = changes.renamed or {}
        for name in [*changes.dropped, *renamed]:
            if name not in names:
                raise ValueError(f"{self.path}: the log has no collection {name!r}")
            if name in changes.dropped and name in renamed:
                raise ValueError(f"{self.path}: collection {name!r} is both dropped and renamed")
        for new in renamed.values():
            check_name(new)
        kept = [
            replace(meta, name=renamed.get(meta.name, meta.name))
            for meta in listed
            if meta.name not in changes.dropped
        ]
        self._check_renamed(listed, kept, renamed)
        for meta in listed:
            if meta.name in changes.dropped:
                states.pop(meta.id, None)
        if changes.dropped or renamed:
            self.catalog = database(kept)
            for meta in listed:  # a renamed collection is matched to the code by its new name
                state = states.get(meta.id)
                if meta.name in renamed and isinstance(state, Declared):
                    states[meta.id] = state.kept()

    def _check_renamed(
        self, listed: list[CollectionMeta], kept: list[CollectionMeta], renamed: Mapping[str, str]
    ) -> None:
        """Refuse renames that leave two collections one name, or names equal under NFC."""
        old = {meta.id: meta.name for meta in listed}
        final: dict[str, int] = {}
        for meta in kept:
            first = final.setdefault(meta.name, meta.id)
            if first != meta.id:
                one, two = old[first], old[meta.id]
                if one in renamed and two in renamed:
                    raise ValueError(
                        f"{self.path}: renamed_collections renames {one!r} and {two!r} to "
                        f"one name {meta.name!r}; nothing was changed"
                    )
                staying = one if one not in renamed else two
                raise ValueError(
                    f"{self.path}: the log has a collection {staying!r} already; rename or "
                    f"drop it too to take its name; nothing was changed"
                )
            other = nfc_clash(meta.name, final)
            if other is not None:
                raise ValueError(
                    f"{self.path}: {nfc_message(meta.name, other)}; nothing was changed"
                )

    def _make(
        self, name: str, want: Wanted, states: Mapping[int, Declared[Any, Any] | Kept]
    ) -> Collection[Any, Any]:
        """Make the declared collection ``name``: the log's, validated, or a new one."""
        meta = self.catalog.by_name(name)
        values: dict[Any, Any] | None = None
        state = None
        if meta is None:
            ident = self._next_id
            self._next_id += 1
            entries: dict[Any, Stored] = {}
        else:
            ident = meta.id
            state = states.get(ident)
            entries = self._validated(state, want)
            if isinstance(state, Declared):  # values replay validated, for the indexes
                values = state.values
        schema = want.codec.describe() | {
            "version": want.schema.version,
            "fingerprint": want.codec.fingerprint,
        }
        if meta is None or (meta.version, meta.fingerprint) != (
            want.schema.version,
            want.codec.fingerprint,
        ):
            self._set_meta(CollectionMeta(name, ident, schema))
        key_bytes = None
        if not want.codec.canonical_keys:
            key_bytes = {key: want.codec.key_bytes(key) for key in entries}
        collection = object.__new__(want.cls)
        table = Table(entries, key_bytes)
        # The indexes are built here from what replay kept: many small objects, all kept,
        # which the collector would walk again and again for nothing (as in replay).
        with collector_paused():
            collection._attach(self, ident, name, want.codec, want.schema, table, values)
            if isinstance(state, Declared):
                state.values = None  # what replay kept for the indexes, built now: freed
        self.collections[ident] = collection
        self._tables[ident] = table
        return collection

    def _validated(
        self, state: Declared[Any, Any] | Kept | None, want: Wanted
    ) -> dict[Any, Stored]:
        """Return the entries of a collection the log holds, validated under ``want``."""
        if isinstance(state, Declared):
            with collector_paused():
                state.settle()
            return state.entries
        declared = Declared(self.path, want.codec, want.schema)
        if state is not None:
            declared.adopt(state)
            declared.settle()
        return declared.entries

    def _set_meta(self, meta: CollectionMeta) -> None:
        """Put ``meta`` in the catalog, replacing the collection of its id."""
        listed = [m for m in self.catalog.collections if m.id != meta.id]
        index = next(
            (i for i, m in enumerate(self.catalog.collections) if m.id == meta.id), len(listed)
        )
        listed.insert(index, meta)
        # A TypedStore keeps the form its log has (a new one, the single-collection form,
        # which means id 0: a log whose collections were dropped gives a new one a higher
        # id); a database's first catalog change writes the database form.
        if self._single and meta.id == 0 and (self.catalog.single or not self.catalog.collections):
            self.catalog = Catalog(tuple(listed), single=True)
        else:
            self.catalog = database(listed)

    def collection(self, name: str, want: Wanted) -> Collection[Any, Any]:
        """Return the collection ``name``, made on first use; see ``Database.collection``."""
        check_name(name)
        with self.lock:
            self._check_open()
            for collection in self.collections.values():
                if collection._name == name:
                    declared = Wanted(type(collection), collection._codec, collection._schema_now)
                    if not declared.same(want):
                        raise ValueError(
                            f"collection {name!r} is declared already with other types or "
                            "schema version"
                        )
                    return collection
            if self._phase is _APPENDING:  # a signal handler: the catalog would not reach the log
                raise RuntimeError(
                    f"collection({name!r}) from code that interrupted a write of this store"
                )
            if self.shared and self._log is not None and self._holds_no_writer():
                return self._declare_shared(name, want, self._log)
            return self._declare_collection(name, want)

    def _declare_shared(self, name: str, want: Wanted, log: Log) -> Collection[Any, Any]:
        """:meth:`_declare_collection` under the writer lock, caught up first: the catalog
        this adds to is the log's. Let go as :meth:`_write_shared` does, wherever a Ctrl-C
        lands."""
        engine = self._engine
        assert engine is not None, "only a shared core writes this way"
        was_writing = engine.is_writing
        try:
            self._start_writer()
            collection = self._declare_collection(name, want)
            self._stop_writer(log)
        except BaseException:
            if engine.is_writing and not was_writing:
                self._stop_writer(log)
            raise
        return collection

    def _holds_no_writer(self) -> bool:
        """Whether this thread holds no writer lock (shared mode): no write or transaction
        of its own is in progress."""
        return self._phase is _IDLE and self._txn_thread is None

    def _declare_collection(self, name: str, want: Wanted) -> Collection[Any, Any]:
        """Make the collection ``name``, new or kept until now.

        A new one's catalog entry is written at once, so that a collection listed is one
        the log has. Changed types of a kept one go with the next record, except in shared
        mode: there another process's catalog change, made without them meanwhile, would
        overwrite them, so they are written at once too, under the writer lock.
        """
        before = self.catalog
        meta = before.by_name(name)
        if meta is None:
            other = nfc_clash(name, (m.name for m in before.collections))
            if other is not None:
                raise ValueError(f"{self.path}: {nfc_message(name, other)}")
        kept = None if meta is None else self._kept.get(meta.id)
        try:
            collection = self._make(name, want, {} if kept is None else {meta.id: kept})  # type: ignore[union-attr]  # meta is set with kept
        except BaseException:
            made = self.catalog.by_name(name)
            if made is not None and meta is None:
                self.collections.pop(made.id, None)
                self._tables.pop(made.id, None)
            self._restore_meta(name, meta)
            raise
        if meta is not None:
            self._kept.pop(meta.id, None)
        log = self._log
        if self.catalog == before or log is None:
            return collection
        if meta is not None and not self.shared:
            log.pending_schema = self._catalog_bytes()
            return collection
        phase, self._phase = self._phase, _APPENDING  # a write from a signal handler: refused
        generation = log.generation
        try:
            self._write_catalog(log)
        except BaseException:
            # Taken back unless the log holds the record (a Ctrl-C once it landed):
            # then the collection stays, as a reopen would list it.
            if log.generation == generation or log.failure is not None:
                self._undeclare(collection, meta, kept)
            raise
        finally:
            self._phase = phase
        return collection

    def _undeclare(
        self, collection: Collection[Any, Any], meta: CollectionMeta | None, kept: Kept | None
    ) -> None:
        """Take back the declaration of ``collection``, whose catalog was not written."""
        ident = collection._id
        self.collections.pop(ident, None)
        self._tables.pop(ident, None)
        collection._close_indexes()  # before it is closed: see Collection._index_view
        collection._is_closed = True
        self._restore_meta(collection._name, meta)
        if meta is not None and kept is not None:
            self._kept[meta.id] = kept

    def _restore_meta(self, name: str, meta: CollectionMeta | None) -> None:
        """Put back the catalog entry of ``name`` as it was (``meta``; None: no entry).

        Only this one: a validator run by the failed declaration may have declared
        other collections, which stay.
        """
        if meta is not None:
            self._set_meta(meta)
        elif self.catalog.by_name(name) is not None:
            listed = tuple(m for m in self.catalog.collections if m.name != name)
            self.catalog = replace(self.catalog, collections=listed)

    def names(self) -> list[str]:
        """Return the names of every collection of the log, declared or not, in catalog order."""
        with self.lock:
            self._check_open()
            return [meta.name for meta in self.catalog.collections]

    def _catalog_bytes(self) -> bytes:
        """Return the metadata of the catalog in force, as a header or schema record holds it."""
        return packb(self.catalog.to_meta())

    def _write_catalog(self, log: Log) -> None:
        """Write the catalog now in force as a schema record, at once (drops and renames)."""
        log.append_schema(self._catalog_bytes())

    # -- following other processes (shared and read-only cores) ------------------------------

    def _start_following(self, engine: FileEngine | PostgresEngine | None, opened: Opened) -> None:
        """Note where the log stands once open: catching up reads on from there."""
        self._engine = engine
        if opened.log is not None:
            log = opened.log
            self._known, self._generation = log.end, log.generation
            self._total = log.total_records
        elif opened.replay is not None:
            self._known, self._generation = opened.replay.end, opened.replay.generation
            self._total = opened.replay.total_records

    def _catch_up(self, *, changed: bool = False) -> bool:
        """Apply what other processes wrote since this core last looked: every operation's
        first step in shared and read-only mode (README, "Several processes"). ``changed``
        says the caller just found the log changed (``FileEngine.grew_or_moved``).

        Return True when the log, as read, ended at ``_known`` exactly, in the same
        file: under the writer lock, where it can then be appended to unchecked.

        One ``lseek`` when nothing changed. Records appended since are
        read from the last known position and applied through replay's own code. A log
        another process compacted is read to its end, then followed to its new file
        without replaying that (it holds exactly the state this core then has), unless
        the engine cannot tell where the two match (two compactions since): then, as
        after a change of catalog by another process, the new log is replayed whole.
        """
        engine = self._engine
        assert engine is not None, "only a shared or read-only core follows"
        if not changed and not engine.grew_or_moved(self._known):
            return True
        # It changes entries, several at once: reads that skip the lock wait, as for a
        # batch (see ``writing``), then see it whole, ``_known`` included.
        self.writing = (self.writing + 2) | 1
        try:
            return self._catch_up_changed(engine)
        finally:
            self.writing = (self.writing + 1) & ~1

    def _catch_up_changed(self, engine: FileEngine | PostgresEngine) -> bool:
        """:meth:`_catch_up` once the log is seen changed.

        In shared mode on a file the new bytes are read first, without asking whether
        the log was replaced: a compaction grows the file it replaces by one byte, less
        than a frame, before the rename (``_fs.LogFile.mark_replaced``). So new bytes that
        are all complete records, read to the end, were appended to the log in force
        when this catch-up looked, and were all it held then (see :meth:`_read_bare`).
        """
        bare = True
        if isinstance(engine, FileEngine) and engine.mode == "shared":
            if self._read_bare(engine):
                return True  # the common case: records a writer appended, all complete
            bare = False  # read already: what follows them is for the general way
        if not engine.is_replaced():
            return self._read_new(engine, bare=bare)  # the log grew
        if engine.end() != self._known:
            self._read_new(engine)  # the rest of the old log, still open here
        if engine.is_replaced():  # unless that replayed the new one whole
            position = engine.follow(self._known)
            if position is None:
                self._reload()
                return False
            self._moved(position)
        if engine.end() != self._known:
            self._read_new(engine)
        return False

    def _moved(self, position: int) -> None:
        """Continue at ``position`` of the file a compaction put in place of the old one."""
        engine = self._engine
        self._known = position
        if isinstance(engine, PostgresEngine):
            self._generation = engine.generation_at(position)
        else:
            file = engine.file if engine is not None else None
            assert file is not None, "follow opened the new log"
            self._generation = generation_at(self.path, file.read_from(0, position))
        self._total = self._live()
        if self._log is not None:
            self._log.resume(self._total, self._generation)

    def _read_new(self, engine: FileEngine | PostgresEngine, *, bare: bool = True) -> bool:
        """Apply the complete records appended since ``_known``; one still being written
        (or left by a killed writer) is not there yet. Return whether the log ended
        right after them when read (no partial record after), so that a writer holding
        the lock knows its end without asking again.

        Bare inserts and removes of collection 0 take the short way first
        (:meth:`_read_bare`, unless ``bare`` is false: the caller just did); whatever
        it leaves, from its first other record on, takes the general one here.
        """
        if self._known == 0:  # a read-only core that found the log empty: no header yet
            self._reload()
            return False
        if bare and isinstance(engine, FileEngine) and self._read_bare(engine):
            return True
        frames = engine.read_frames(self._known)
        if frames.stop == "invalid" and engine.mode == "shared":
            raise CorruptLogError(
                self.path,
                frames.end,
                "a complete record that is not valid, written since this store last read "
                "the log; reopen it to recover (README, 'Durability and recovery')",
            )
        bodies = frames.bodies
        if not bodies:
            return frames.stop == "end"
        if any(_format.kind_of(body)[0] == _format.RecordKind.SCHEMA for _, body in bodies):
            self._reload()  # another process changed the catalog: rare, replayed whole
            return False
        replayer, declared = self._resumed()
        replayer.trail.generation = self._generation
        rebuild, self._indexes_behind = self._indexes_behind, True  # until they follow
        for collection, state in declared:
            state.begin(keeps_values=bool(collection._indexes))
        try:
            applied = replayer.resume(bodies)
        finally:  # the tables follow whatever was applied, even if not all of it
            for collection, state in declared:
                key_bytes = collection._table._key_bytes
                if key_bytes is not None:
                    state.follow_key_bytes(key_bytes)
                # A new table: positions (Table.at) are computed anew.
                collection._table = self._tables[collection._id] = Table(state.entries, key_bytes)
            for _, state in declared:
                state.settle()
        for collection, state in declared:
            if not collection._indexes:
                continue
            if rebuild:
                collection._reindex()
            elif state.before:
                collection._follow(state.changes())
        self._indexes_behind = False
        # Counted with the position, no call between: a Ctrl-C before them leaves both
        # for the next catch-up, which applies these records again, and counts them once.
        self._total += applied
        self._known = frames.end
        if self._log is not None:
            self._log.resume(self._total, self._generation)
        return frames.stop == "end"

    def _read_bare(self, engine: FileEngine) -> bool:
        """Apply the bare inserts and removes (collection 0's) that start the log's bytes
        since ``_known``, a run at a time, as open does (``_replay.resume_bare``);
        return whether they are all those bytes (a record, at least, and nothing after).

        The short way of the commonest catch-up: a store's, or a database's collection 0,
        with no index and keys that are their own bytes, records of the schema in force
        (other processes' single writes). It reads the bytes with one ``pread`` and
        applies them to the table's entries in place, keeping the table. From the first
        frame that is anything else, of another generation, not valid or not complete
        yet, the general way (:meth:`_read_new`) reads on, and says what is wrong.
        Nothing applies (False) when the collection is none of these.
        """
        collection = self.collections.get(0)
        if collection is None or self._known == 0:
            return False
        table = collection._table
        cached = self._bare
        if (
            cached is not None
            and cached[2] is table
            and cached[0] is self.catalog
            and cached[1] is self._resume_cache
        ):
            state = cached[3]
        else:
            found = self._bare_state(collection)
            if found is None:
                return False
            state = found
        known = self._known
        buf = engine.read_bytes(known)
        state.begin(keeps_values=False)
        try:
            count, end = resume_bare(state, buf, known, self._generation)
        finally:  # as Replayer.resume's caller: whatever was applied
            table._order = None  # positions are computed anew (Table.at)
            state.settle()
        if not count:
            return False
        self._total += count
        self._known = known + end
        if self._log is not None:
            self._log.total_records = self._total
        return end == len(buf)

    def _bare_state(self, collection: Collection[Any, Any]) -> Following[Any, Any] | None:
        """Return the state :meth:`_read_bare` applies ``collection``'s records with, noted
        for the next catch-up; None if that collection needs the general way."""
        table = collection._table
        if collection._indexes or table._key_bytes is not None:
            return None  # the general way keeps them following
        _, declared = self._resumed()
        for held, state in declared:
            if held is collection and state.values is None and state.entries is table.entries:
                self._bare = (self.catalog, self._resume_cache, table, state)
                return state
        return None

    def _resumed(self) -> tuple[Replayer, list[tuple[Collection[Any, Any], Following[Any, Any]]]]:
        """Return a replay resumed from the state in memory, and the declared collections'
        states in it, which apply records to their tables' entries in place.

        Kept from one catch-up to the next while the catalog and the tables are the same
        objects (a catalog change, a reload or a compaction's follow-up makes new ones).
        """
        cached = self._resume_cache
        if cached is not None and cached[0] is self.catalog:
            replayer, declared = cached[1], cached[2]
            if all(state.entries is c._table.entries for c, state in declared):
                return replayer, declared
        declared = []
        states: dict[int, Declared[Any, Any] | Kept] = dict(self._kept)
        for meta in self.catalog.collections:
            collection = self.collections.get(meta.id)
            if collection is None:  # being let go: its records go nowhere
                kept = states.setdefault(meta.id, Kept())
                kept.enter(collection_segment(self.path, meta, 0))
                continue
            state = Following[Any, Any](self.path, collection._codec, collection._schema_now)
            state.entries = collection._table.entries  # applied in place
            state.enter(collection_segment(self.path, meta, 0))
            states[meta.id] = state
            declared.append((collection, state))

        def declare(catalog: Catalog, meta: CollectionMeta) -> Declaration[Any, Any] | None:
            found: Declaration[Any, Any] | None = self._declare(self._wanted_now())(catalog, meta)
            return found

        replayer = resumed(self.path, declare, self.catalog, states, self._generation)
        self._resume_cache = (self.catalog, replayer, declared)
        return replayer, declared

    def _reload(self) -> None:
        """Replay the log whole into the collections this core holds (see :meth:`_catch_up`)."""
        engine = self._engine
        assert engine is not None, "only a shared or read-only core follows"
        buf = engine.read_log()
        if not buf:
            return
        wanted = self._wanted_now()
        if isinstance(engine, PostgresEngine):
            from . import _pg_open

            state = _pg_open.replay(self.path, engine, buf, self._declare(wanted))
        else:
            state = replay(
                self.path,
                buf,
                self._declare(wanted),
                self.config.recovery,
                self.config.buf_capacity,
            )
        kept: dict[int, Kept] = {}
        for ident, found in state.collections.items():
            collection = self.collections.get(ident)
            if collection is None:
                if isinstance(found, Kept):
                    kept[ident] = found
                continue
            want = Wanted(type(collection), collection._codec, collection._schema_now)
            self._install(collection, self._validated(found, want))
            collection._reindex()
        self._indexes_behind = False
        self.catalog, self._next_id, self._kept = state.catalog, state.next_id, kept
        self._known, self._generation, self._total = (
            state.end,
            state.generation,
            state.total_records,
        )
        if self._log is not None:
            self._log.resume(self._total, self._generation)

    def _wanted_now(self) -> dict[str, Wanted]:
        """Return the declarations of the collections this core holds, by name."""
        return {
            c._name: Wanted(type(c), c._codec, c._schema_now) for c in self.collections.values()
        }

    def _install(self, collection: Collection[Any, Any], entries: dict[Any, Stored]) -> None:
        """Give ``collection`` a table of ``entries``, caught up from the log."""
        codec = collection._codec
        key_bytes = None if codec.canonical_keys else {key: codec.key_bytes(key) for key in entries}
        table = Table(entries, key_bytes)
        collection._table = table
        self._tables[collection._id] = table

    def _start_writer(self) -> Log:
        """Take the writer lock of shared mode, catch up, and take the log's end for appending.

        A ``StaleLogError`` cannot happen under the lock, as no other process appends;
        should the engine raise it all the same, this core catches up and tries once more.
        Every caller lets go with :meth:`_stop_writer` in a handler that runs it once more
        if a Ctrl-C lands midway (unlocking twice is harmless); not a context manager,
        whose ``__exit__``, Python code, could itself be interrupted before it let go.
        """
        engine, log = self._engine, self._log
        assert engine is not None, "only a shared core writes this way"
        assert log is not None, "only a writable core writes"
        was_writing = engine.is_writing
        try:
            if not engine.try_start_writing():
                # Another writer holds the lock: read what was written so far while waiting,
                # so that the catch-up under the lock, which holds up every other writer,
                # reads only what the last holders added.
                self._catch_up()
                engine.start_writing()
            if not engine.grew_or_moved(self._known):
                engine.take_end(self._known)  # the common case: 4 system calls a write
            elif self._catch_up(changed=True):  # read up to the end, under the lock
                engine.take_end(self._known)
            else:
                try:
                    engine.claim(self._known)
                except StaleLogError:
                    self._catch_up()
                    engine.claim(self._known)
        except BaseException:
            if engine.is_writing and not was_writing:  # taken here, then failed or interrupted
                engine.stop_writing()
            raise
        return log

    def _stop_writer(self, log: Log) -> None:
        """Note where the log now ends, then release the writer lock."""
        try:
            self._known, self._generation = log.end, log.generation
            self._total = log.total_records
        finally:
            if self._engine is not None:
                self._engine.stop_writing()

    def _write_shared(
        self,
        collection: Collection[Any, Any],
        stage: Callable[[Table[Any]], Sequence[Write[Any]]] | Sequence[Write[Any]],
        *,
        compact: bool = False,
    ) -> list[Stored]:
        """:meth:`_write` in shared mode: under the writer lock, caught up first, so that
        ``stage`` (``modify``'s ``fn``, validators) sees every write acknowledged before."""
        lock, engine = self.lock, self._engine
        assert isinstance(lock, _FollowingLock)
        assert engine is not None, "only a shared core writes this way"
        # A Ctrl-C can land after any call, the releases' own included: one handler lets
        # go of whatever this write took and still holds. Not finally blocks: their
        # calls before a release would be such places too.
        held = lock.holds()
        was_writing = True  # until read under the lock: not this write's writer lock
        try:
            lock.acquire_quietly()
            was_writing = engine.is_writing  # a write from a compaction's signal handler
            # Closed, read-only, in a transaction: the error that applies.
            log = self._writable_log()
            if self._phase is not _IDLE:
                raise RuntimeError(_REENTERED)
            self._start_writer()
            previous = Core._write(self, collection, stage, compact=compact)
            self._stop_writer(log)
        except BaseException:
            try:  # also once more if the normal path's _stop_writer was interrupted
                if engine.is_writing and not was_writing:
                    self._stop_writer(self._log)  # type: ignore[arg-type]  # writable: set
            finally:
                if lock.holds() > held:
                    lock.release()
            raise
        lock.release()
        return previous

    def _write_optimistic(
        self,
        collection: Collection[Any, Any],
        stage: Callable[[Table[Any]], Sequence[Write[Any]]] | Sequence[Write[Any]],
        *,
        compact: bool = False,
    ) -> list[Stored]:
        """:meth:`_write` on PostgreSQL: no writer lock, and no catch-up first.

        ``stage`` runs on the state this core knows, and the record is appended there by
        one compare-and-append statement, which lands only if no other instance appended
        since: then that state was the newest, and the write took one round trip. If one
        did (``StaleLogError``), nothing was written: catch up and run ``stage`` again, so
        that ``modify``'s ``fn`` sees the new value. A write that appends nothing (a
        removal of an absent key, ``setdefault`` of a present one) or raises (``modify``
        of a missing key) decided on that state without the server: it returns, or
        raises, only once the log is seen not to have grown (one round trip more).
        """
        lock = self.lock
        assert isinstance(lock, _FollowingLock)
        held = lock.holds()
        try:  # released as _write_shared does, wherever a Ctrl-C lands
            lock.acquire_quietly()
            written = self._write_optimistic_locked(collection, stage, compact=compact)
        except BaseException:
            if lock.holds() > held:
                lock.release()
            raise
        lock.release()
        return written

    def _write_optimistic_locked(
        self,
        collection: Collection[Any, Any],
        stage: Callable[[Table[Any]], Sequence[Write[Any]]] | Sequence[Write[Any]],
        *,
        compact: bool,
    ) -> list[Stored]:
        """:meth:`_write_optimistic`, its lock held."""
        engine = self._engine
        assert isinstance(engine, PostgresEngine), "only a core on PostgreSQL writes this way"
        while True:
            log = self._writable_log()  # closed, in a transaction: the error that applies
            if self._phase is not _IDLE:
                raise RuntimeError(_REENTERED)
            engine.claim(self._known)
            try:
                written = Core._write(self, collection, stage, compact=compact)
            except StaleLogError:
                # Nothing landed: catch up and decide again. The claim may be older than
                # _known: a signal handler's write that landed between the claim's
                # argument and its assignment noted its own end, and memory followed it.
                self._catch_up()
                continue
            except BaseException as exc:
                if engine.claimed != self._known:
                    self._wrote(log)  # landed, then interrupted: memory followed
                elif isinstance(exc, Exception) and self._grew(engine):
                    continue  # decided on an old state (a Ctrl-C is not retried): again
                raise
            if engine.claimed != self._known:
                self._wrote(log)
            elif self._grew(engine):
                continue
            return written

    def _wrote(self, log: Log) -> None:
        """Note where the log ends after this core's own write (on PostgreSQL)."""
        self._known, self._generation, self._total = log.end, log.generation, log.total_records

    def _grew(self, engine: PostgresEngine) -> bool:
        """Catch up if the log grew since this core last looked; whether it had."""
        if not engine.grew_or_moved(self._known):
            return False
        self._catch_up()
        return True

    def _look(self) -> None:
        """Catch up with what other processes wrote before now, with one look at the log
        (none for an exclusive core): a reading block's start (``_reading``). Raises
        StoreClosedError on a closed store."""
        lock = self.lock
        if not isinstance(lock, _FollowingLock) or lock.holds():
            # This thread is inside an operation (a transaction, a write running modify's
            # function): it looked as it began, and a catch-up now would change the
            # state under it. So does an outermost acquire (_FollowingLock.acquire).
            self._check_open()
            return
        # Let go as _write_shared does, wherever a Ctrl-C lands: a finally block's call
        # before the release would be one more place for it.
        try:
            lock.acquire_quietly()  # quietly: in a reading block already, it would not look
            self._check_open()
            engine = self._engine
            if engine is not None and engine.grew_or_moved(self._known):
                self._catch_up(changed=True)
        except BaseException:
            if lock.holds():
                lock.release()
            raise
        lock.release()

    # -- the write path ----------------------------------------------------------------------

    def _write(
        self,
        collection: Collection[Any, Any],
        stage: Callable[[Table[Any]], Sequence[Write[Any]]] | Sequence[Write[Any]],
        *,
        compact: bool = False,
    ) -> list[Stored]:
        """Write ``stage``'s writes to ``collection`` as one record, then apply them: every
        single write's path.

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
        with self.lock:
            log = self._log
            if self.is_closed or log is None or log.failure or self._txn_thread is not None:
                log = self._writable_log()  # raises the error that applies
            if self._phase is not _IDLE:
                raise RuntimeError(_REENTERED)
            self._phase = _USER_CODE
            try:
                writes = stage(collection._table) if callable(stage) else stage
                if not writes:
                    return []
                hooks = collection._hooks
                for hook in hooks:  # index functions: user code too
                    hook.before(writes)
                # User code may have closed the store, and something else may now own
                # its file's descriptor number: write nowhere.
                if self.is_closed or self._log is not log:
                    raise StoreClosedError(f"{self.path}: the store was closed during a write")
                self._phase = _APPENDING
                if not hooks:
                    previous = self._append(log, collection, writes)
                else:  # each hook follows the record once the log holds it, whatever arrives
                    records = log.total_records
                    try:
                        previous = self._append(log, collection, writes)
                    finally:
                        if log.total_records != records:
                            for hook in hooks:
                                hook.after(writes)
                if compact or log.size >= self._skip_auto_compact_below:
                    self._after_write(log, compact)
                return previous
            finally:
                self._phase = _IDLE

    def _write_one(
        self,
        collection: Collection[Any, Any],
        write: Write[Any],
        value: object = MISSING,
        *,
        compact: bool = False,
    ) -> Stored:
        """Write one insert or removal, as ``_write(collection, (write,), compact=compact)``
        does; return what it replaced (MISSING where nothing). ``value``, if given, is
        the validated value of an insert, which hooks (indexes) then need not decode.

        The commonest write (an exclusive store, no transaction open, no hook, nothing
        in progress in this thread) is done here, in as few calls as it can be: a lone
        write runs no user code once validated, so it goes straight to its append. Any
        other takes ``_write``, which also raises the error that applies. Shared cores
        take ``_write`` always (``_write_one_general``).
        """
        with self.lock:
            log = self._log
            if (
                log is None
                or self._phase is not _IDLE
                or self.is_closed
                or log.failure is not None
                or self._txn_thread is not None
            ):
                return self._write_one_general(collection, write, value, compact=compact)
            if collection._hooks:
                return self._write_one_hooked(log, collection, write, value, compact)
            # From here to the end, a write from a signal handler is refused (_REENTERED).
            self._phase = _APPENDING
            try:
                # _append's single write, inlined: a call less on every insert and removal.
                table = collection._table
                key, given, stored, blob = write
                if blob is None and key not in table.entries:
                    return MISSING  # the removal of an absent key writes nothing
                key_bytes = table._key_bytes  # table.record_key, inlined
                named = given if key_bytes is None else key_bytes.get(key, given)
                records = log.total_records
                try:
                    size = log.append_operation(collection._head, named, blob)
                    previous = table.pop(key) if blob is None else table.put(key, named, stored)
                except BaseException:
                    if log.total_records != records:  # in the log: memory follows (_append)
                        table.settle((write,), (named,))
                    raise
                if compact or (
                    size >= self._skip_auto_compact_below
                    and not self._policy_from <= log.total_records < self._policy_until
                ):
                    self._after_write(log, compact)
                return previous
            finally:
                self._phase = _IDLE

    def _write_one_hooked(
        self,
        log: Log,
        collection: Collection[Any, Any],
        write: Write[Any],
        value: object,
        compact: bool,
    ) -> Stored:
        """:meth:`_write_one` for a collection with hooks, the lock held. Its indexes'
        hook alone, the only one there is outside tests: as ``_write`` does, the hook
        plans the write before the record (user code, the index functions) and follows
        it once the log holds it, whatever arrives; the plan goes from one to the other
        here (``IndexHook.before_one``). Any other hooks: by way of ``_write``."""
        hooks, hook = collection._hooks, collection._index_hook
        if hook is None or len(hooks) != 1 or hooks[0] is not hook:
            return self._write_one_general(collection, write, value, compact=compact)
        self._phase = _USER_CODE
        try:
            table = collection._table
            key, given, stored, blob = write
            if blob is None and key not in table.entries:
                return MISSING  # the removal of an absent key writes nothing
            plan = hook.before_one(write, value)
            # The index functions may have closed the store: write nowhere (see _write).
            if self.is_closed or self._log is not log:
                raise StoreClosedError(f"{self.path}: the store was closed during a write")
            self._phase = _APPENDING
            key_bytes = table._key_bytes  # table.record_key, inlined
            named = given if key_bytes is None else key_bytes.get(key, given)
            records = log.total_records
            try:
                # Log.append, not append_operation: the record goes where every write
                # with hooks sends it (tests/test_indexes.py interrupts it right there),
                # as the parts append_operation frames in one call.
                log.append((collection._head, named, blob), 1)
                previous = table.pop(key) if blob is None else table.put(key, named, stored)
            except BaseException:
                if log.total_records != records:  # in the log: memory follows (_append)
                    table.settle((write,), (named,))
                raise
            finally:
                if log.total_records != records:
                    hook.after_one(plan)
            if compact or (
                log.size >= self._skip_auto_compact_below
                and not self._policy_from <= log.total_records < self._policy_until
            ):
                self._after_write(log, compact)
            return previous
        finally:
            self._phase = _IDLE

    def _modify_one(
        self,
        collection: Collection[Any, Any],
        key: object,
        found: tuple[Any, bytes] | None,
        fn: Callable[[Any], Any],
        compact: bool,
    ) -> object:
        """Replace the value of the present key ``found`` (validated, and its bytes; None
        when ``key`` is an exact plain key, valid as it is) by ``fn`` of a copy of it, as
        ``modify`` does through ``_write``; return the new value.

        ``modify``'s commonest case (no default), on the terms of :meth:`_write_one`:
        returns MISSING, having done nothing, where those do not hold, and ``modify``
        then takes ``_write``. Raises KeyError(``key``) for an absent key.
        """
        with self.lock:
            log = self._log
            if (
                log is None
                or self._phase is not _IDLE
                or self.is_closed
                or log.failure is not None
                or self._txn_thread is not None
                or collection._hooks
            ):
                return MISSING
            self._phase = _USER_CODE  # fn and validators may run: see _write
            try:
                table = collection._table
                stored_key = key if found is None else found[0]
                stored = table.entries.get(stored_key, MISSING)
                if stored is MISSING:
                    raise KeyError(key)
                validated, given, kept, blob = collection._codec.encode_modified(
                    stored_key, None if found is None else found[1], stored, fn
                )
                if self.is_closed or self._log is not log:  # closed by that user code
                    raise StoreClosedError(f"{self.path}: the store was closed during a write")
                self._phase = _APPENDING
                # _append's single write, inlined, for an insert of a present key.
                key_bytes = table._key_bytes  # table.record_key, inlined
                named = given if key_bytes is None else key_bytes.get(stored_key, given)
                records = log.total_records
                try:
                    size = log.append_operation(collection._head, named, blob)
                    # table.put, inlined: the key is present (a write from fn is refused),
                    # so its position and key bytes stay as they are.
                    table.entries[stored_key] = kept
                except BaseException:
                    if log.total_records != records:  # in the log: memory follows (_append)
                        table.settle(((stored_key, given, kept, blob),), (named,))
                    raise
                if compact or (
                    size >= self._skip_auto_compact_below
                    and not self._policy_from <= log.total_records < self._policy_until
                ):
                    self._after_write(log, compact)
                return validated
            finally:
                self._phase = _IDLE

    def _write_one_general(
        self,
        collection: Collection[Any, Any],
        write: Write[Any],
        value: object = MISSING,
        *,
        compact: bool = False,
    ) -> Stored:
        """:meth:`_write_one` by way of ``_write``: a shared core's, and any write the
        short path passes on. An insert's validated ``value`` goes to the indexes through
        ``IndexHook.given``."""
        hook, blob = collection._index_hook, write[3]
        if hook is None or value is MISSING or blob is None:
            return self._write(collection, (write,), compact=compact)[0]
        hook.given = (blob, value)
        try:
            return self._write(collection, (write,), compact=compact)[0]
        finally:
            hook.given = None

    def _modify_one_general(
        self,
        collection: Collection[Any, Any],
        key: object,
        found: tuple[Any, bytes] | None,
        fn: Callable[[Any], Any],
        compact: bool,
    ) -> object:
        """:meth:`_modify_one` of a shared core: always by way of ``_write``."""
        return MISSING

    def _append(
        self, log: Log, collection: Collection[Any, Any], writes: Sequence[Write[Any]]
    ) -> list[Stored]:
        """Append one write as one record, then apply it to memory; see ``_write``."""
        table = collection._table
        if len(writes) > 1:
            return self._append_batch(log, ((collection, writes),))[0]
        # An exception from a signal handler (KeyboardInterrupt, a refused write) can
        # arrive between any two bytecodes. Once the log counts the record, memory must
        # follow whatever arrives: the handlers below finish applying it, then re-raise.
        records = log.total_records
        ((key, given, stored, blob),) = writes  # one write: the hottest path, kept short
        if blob is None and key not in table.entries:
            return [MISSING]  # the removal of an absent key writes nothing
        key_bytes = table._key_bytes  # table.record_key, inlined
        named = given if key_bytes is None else key_bytes.get(key, given)
        try:
            # A collection other than 0: its records name it (docs/FORMAT.md).
            log.append(operation_record(collection._head, named, blob), 1)
            return [table.pop(key) if blob is None else table.put(key, named, stored)]
        except BaseException:
            if log.total_records != records:
                table.settle(writes, (named,))
            raise

    def _append_batch(
        self, log: Log, groups: Sequence[tuple[Collection[Any, Any], Sequence[Write[Any]]]]
    ) -> list[list[Stored]]:
        """Append the writes of ``groups`` as one batch record, then apply them to memory.

        Returns what each write of each group replaced (MISSING where nothing).
        """
        keyed = [(c, writes, c._table.record_keys(writes)) for c, writes in groups]
        body: bytes | list[bytes] = groups_body([(c._id, w, k) for c, w, k in keyed])
        applied: list[list[Stored]] = [[] for _ in keyed]  # what each applied write replaced
        records = log.total_records
        self.writing = (self.writing + 2) | 1  # several entries change: reads wait for all
        try:
            log.append(body, sum(len(writes) for _, writes, _ in keyed))
            for (collection, writes, key_bytes), done in zip(keyed, applied, strict=True):
                collection._table.apply(writes, key_bytes, done)
        except BaseException:
            if log.total_records != records:  # in the log: memory must follow (see _append)
                for (collection, writes, key_bytes), done in zip(keyed, applied, strict=True):
                    collection._table.settle(writes[len(done) :], key_bytes[len(done) :])
            raise
        finally:
            self.writing = (self.writing + 1) & ~1
        return applied

    def _after_write(self, log: Log, compact: bool) -> None:
        """Compact when asked or the policy says so; a failure is logged, never fails the write."""
        size = log.size
        if not compact:
            if size < self._skip_auto_compact_below:
                return
            total, live = log.total_records, self._live()
            if not _compact.is_due(self.config, size, total, live):
                if self._engine is None:  # records of other processes are not counted here
                    self._policy_from = total
                    self._policy_until = total + _compact.records_before_due(
                        self.config, total, live
                    )
                return
        try:
            self._compact_locked(log)
        except StaleLogError:
            return  # on PostgreSQL, another instance wrote meanwhile: the next write tries
        except OSError:
            # The write that triggered this already succeeded and is durable; only
            # the space reclaim failed. Retry once the log has doubled.
            self._skip_auto_compact_below = 2 * log.size
            logger.warning("%s: automatic compaction failed", self.path, exc_info=True)

    def _live(self) -> int:
        """Return how many entries the log holds live: the compaction policy's count."""
        tables = self._tables
        if len(tables) == 1 and not self._kept:  # on the path of every write past min_compact_bytes
            for table in tables.values():
                return len(table.entries)
        live = 0
        for table in tables.values():  # no generator: on the path of every write past it too
            live += len(table.entries)
        for kept in self._kept.values():
            live += len(kept.entries)
        return live

    # -- transactions ------------------------------------------------------------------------

    def _begin_transaction(self) -> Generator[None, None, None]:
        """Take the database for a transaction: other threads wait until the returned hold
        is closed, which ends the transaction.

        The hold is a generator suspended inside ``with self.lock``: a KeyboardInterrupt
        landing anywhere between the lock's acquire and the caller storing the hold
        drops the generator, and dropping it runs its ``with`` exits, so the lock cannot
        stay taken by a transaction that never began (a bare ``acquire()`` followed by a
        ``try`` leaves a window between the two).
        """
        return started(self._holding)

    def _holding(self) -> Generator[None, None, None]:
        """Hold the lock (and in shared mode the writer lock) until closed; see above."""
        with self.lock:
            self._writable_log()
            if self._phase is not _IDLE:
                raise RuntimeError(_REENTERED)
            engine, log = self._engine, self._log
            was_writing = engine is None or engine.is_writing
            try:
                if self.shared:  # held until the hold closes: atomic across processes
                    self._start_writer()
                self._txn_thread = threading.get_ident()
                self.writing = (self.writing + 2) | 1  # other threads' reads wait (README)
                yield
            finally:
                self.writing = (self.writing + 1) & ~1
                self._txn_thread = None
                if engine is not None and engine.is_writing and not was_writing:
                    try:
                        self._stop_writer(log)  # type: ignore[arg-type]  # writable: set
                    except BaseException:  # a Ctrl-C midway: once more
                        if engine.is_writing:
                            self._stop_writer(log)  # type: ignore[arg-type]  # as above
                        raise

    def _commit(self, groups: Sequence[tuple[Collection[Any, Any], Sequence[Write[Any]]]]) -> None:
        """Write a transaction's writes, grouped by collection, as one batch record."""
        # The transaction holds the lock until its hold closes: only its thread is here.
        groups = [(c, writes) for c, writes in groups if writes]
        if not groups:
            return
        with self.lock:
            if self._phase is not _IDLE:
                raise RuntimeError(_REENTERED)
            # Before the transaction lets go: a write from the user code below (a key's
            # validator finding a removal's entry, a hook) is refused, not appended.
            self._phase = _USER_CODE
            try:
                self._txn_thread = None
                log = self._writable_log()
                for collection, _ in groups:
                    collection._check_open()
                unmatched = any(
                    blob is None and not c._codec.finds(key, named)
                    for c, writes in groups
                    for key, named, _, blob in writes
                )
                hooked = any(collection._hooks for collection, _ in groups)
                if hooked:
                    _before(groups)
                if self.is_closed or self._log is not log:  # closed by that user code
                    raise StoreClosedError(f"{self.path}: the store was closed during a write")
                self._phase = _APPENDING
                records = log.total_records
                try:
                    self._append_batch(log, groups)
                finally:
                    # Once the log holds the record, the hooks follow it, whatever
                    # exception arrives meanwhile (see ``_append``).
                    if hooked and log.total_records != records:
                        _after(groups)
                if unmatched or log.size >= self._skip_auto_compact_below:
                    self._after_write(log, unmatched)
            finally:
                self._phase = _IDLE

    # -- durability --------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand buffered records to the OS and fsync the log; a no-op when read-only."""
        with self.lock:
            self._check_open()
            self._check_not_writing("flush()")
            if self._log is not None:
                self._phase = _APPENDING  # a write from a signal handler now is refused
                try:
                    self._log.flush()
                finally:
                    self._phase = _IDLE

    def compact(self) -> None:
        """Rewrite the log to its catalog and one record per live entry, atomically."""
        with self.lock:
            log = self._writable_log()
            self._check_not_writing("compact()")
            engine = self._engine
            for _ in range(_COMPACT_TRIES if self._pg is not None else 1):
                was_writing = not self.shared or engine is None or engine.is_writing
                try:
                    if self.shared:
                        self._start_writer()
                    self._phase = _APPENDING  # a write from a signal handler now is refused
                    try:
                        self._compact_locked(log)
                        return
                    except StaleLogError:
                        # On PostgreSQL writes take no writer lock: one landed meanwhile.
                        if self._pg is None:
                            raise
                finally:
                    self._phase = _IDLE
                    if engine is not None and engine.is_writing and not was_writing:
                        try:
                            self._stop_writer(log)
                        except BaseException:  # a Ctrl-C midway: once more
                            if engine.is_writing:
                                self._stop_writer(log)
                            raise
            raise TimeoutError(
                f"{self.path}: compaction gave up after {_COMPACT_TRIES} tries: other "
                "instances kept writing between its catch-up and its switch"
            )

    def _compact_locked(self, log: Log) -> None:
        # The records the policy cannot be due for were counted on the log before: the
        # rewritten one holds fewer, so the count starts afresh (before the switch, so
        # that nothing arriving midway can leave it standing).
        self._policy_from = self._policy_until = 0
        rewrite = _compact.Rewrite()
        chunks, records = self._image(rewrite)
        log.rewrite(chunks, records, lambda: rewrite.generation)
        self._skip_auto_compact_below = self.config.min_compact_bytes

    def _image(self, rewrite: _compact.Rewrite | None = None) -> tuple[Iterator[bytes], int]:
        """Return the content of the log rewritten from memory, and its record count.

        Each collection's entries in catalog order; a kept collection's as they are, with
        a schema record wherever the next entry was written under another of its schemas.
        """
        if not self._kept:  # the common case, a TypedStore's always: no schema switches
            header = _format.encode_header(self._catalog_bytes())
            return _compact.live_chunks(header, self._declared_bodies()), self._live()
        rewrite = rewrite or _compact.Rewrite()
        catalog = self.catalog
        first = {
            ident: next(iter(kept.entries.values()))[2].meta
            for ident, kept in self._kept.items()
            if kept.entries
        }
        opening = self._with_schemas(first)
        header = _format.encode_header(packb(opening.to_meta()))
        return rewrite.chunks(header, self._records(opening, catalog)), self._live()

    def _new_image(self) -> tuple[Iterator[bytes], int, Callable[[], int]]:
        """Return :meth:`_image` for a log written anew, and its generation at the end."""
        rewrite = _compact.Rewrite()
        chunks, records = self._image(rewrite)
        return chunks, records, lambda: rewrite.generation

    def _declared_bodies(self) -> Iterator[bytes]:
        """Yield one insert body per live entry of each declared collection, in catalog order."""
        for meta in self.catalog.collections:
            collection = self.collections.get(meta.id)
            if collection is None:
                continue
            yield from _compact.insert_bodies(
                collection._table.entries, collection._codec, collection._head
            )

    def _records(self, opening: Catalog, final: Catalog) -> Iterator[bytes | _compact.Switch]:
        """Yield every live entry's record body, and a schema record where one is due."""
        schemas = {meta.id: meta.schema for meta in opening.collections}
        for meta in final.collections:
            collection = self.collections.get(meta.id)
            if collection is not None:
                yield from _compact.insert_bodies(
                    collection._table.entries, collection._codec, collection._head
                )
                continue
            for key, (blob, _, segment) in self._kept.get(meta.id, Kept()).entries.items():
                if segment.meta != schemas[meta.id]:
                    schemas[meta.id] = segment.meta
                    yield _compact.Switch(packb(self._with_schemas(schemas).to_meta()))
                yield _as_bytes(collection_record(meta.id, _format.insert_body(key, blob)))
        if any(schemas[meta.id] != meta.schema for meta in final.collections):
            yield _compact.Switch(self._catalog_bytes())

    def _with_schemas(self, schemas: Mapping[int, dict[str, object]]) -> Catalog:
        """Return the catalog in force with the given collections' schemas in place."""
        listed = tuple(
            replace(meta, schema=schemas.get(meta.id, meta.schema))
            for meta in self.catalog.collections
        )
        return Catalog(listed, single=self.catalog.single)

    def close(self) -> None:
        """Flush, fsync and close the log and release its lock; see ``TypedStore.close``."""
        lock = self.lock
        if isinstance(lock, _FollowingLock):
            held = lock.holds()
            try:  # taken inside the try: a Ctrl-C right after it still lets go
                lock.acquire_quietly()  # what others wrote since matters no more
                self._close_locked()
            finally:
                if lock.holds() > held:
                    lock.release()
            return
        with self.lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self.is_closed:
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
            self.release()
            raise
        finally:
            self._phase = phase
        self.release()

    def release(self) -> None:
        """Mark the database and its collections closed, let their entries go, unlock."""
        self.is_closed = True
        # A closed store answers nothing: let its entries go now, not when the object does
        # (`store.close(); store = TypedStore.open(...)` would otherwise hold both).
        for collection in self.collections.values():
            collection._close_indexes()  # before it is closed: see Collection._index_view
            collection._is_closed = True  # before the table goes: see Collection.get
            collection._table = Table({}, None)
        self._tables = {}
        self._kept = {}
        if self._file_lock is not None:
            self._file_lock.release()
        if self.readonly and self._engine is not None:
            self._engine.close()

    def abandon(self) -> int:
        """Close the log without flushing and release everything; return the bytes dropped."""
        dropped = 0
        if not self.is_closed:
            dropped = 0 if self._log is None else self._log.abandon()
            self.release()
        return dropped

    # -- checks ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.is_closed:
            raise StoreClosedError(f"{self.path}: the store is closed")

    def _writable_log(self) -> Log:
        if self.is_closed:
            self._check_open()
        if self._log is None:
            raise StoreReadOnlyError(f"{self.path}: the store was opened with readonly=True")
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


def make_core(
    where: str | os.PathLike[str] | PostgresEngine,
    config: StoreConfig,
    *,
    readonly: bool,
    single: bool,
    shared: bool,
) -> Core:
    """Return the core of a log at the path ``where``, or in the PostgreSQL engine ``where``
    (README, "Several machines"): always shared, so ``shared`` changes nothing there."""
    if isinstance(where, PostgresEngine):
        path = Path(where.where())
        return Core(path, config, readonly=readonly, single=single, shared=True, pg=where)
    path = _fs.real_path(Path(where))
    return Core(path, config, readonly=readonly, single=single, shared=shared)


class LogOwner:
    """What a ``TypedStore`` and a ``Database`` say and do about the log they own: its
    path, settings and recovery, and flushing, compacting and closing it. All of it is the
    core's; this base only forwards, so the two public classes cannot drift apart."""

    _core: Core

    @property
    def path(self) -> Path:
        """The log file's path."""
        return self._core.path

    @property
    def config(self) -> StoreConfig:
        """The settings the log was opened with."""
        return self._core.config

    @property
    def readonly(self) -> bool:
        """Whether the log was opened with ``readonly=True``."""
        return self._core.readonly

    @property
    def recovery(self) -> Recovery | None:
        """What opening did about damage in the log (None when it found none)."""
        return self._core.recovery

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Return a block, ``with store.reading():``, whose reads look at the log once.

        Entering it catches up with every write any process acknowledged before then
        (one ``lseek`` on a shared log file, one round trip on PostgreSQL; nothing on an
        exclusive store), and raises StoreClosedError on a closed store. This thread's
        reads inside then use memory without looking again: each sees every write
        acknowledged before the block began and whatever this process applied since
        (not a snapshot). It holds no lock: writes, this thread's included, work as
        usual. Other threads' reads still look. README.md, "Reading many keys at once".
        """
        core = self._core
        return Reading(core._look, core.readers)

    def flush(self) -> None:
        """Hand buffered records to the OS and fsync the log; a no-op when read-only."""
        self._core.flush()

    def compact(self) -> None:
        """Rewrite the log to its catalog and one record per live entry, atomically.

        Collections no code declared keep their records' bytes (README.md, "Databases");
        README.md, "Durability and recovery", says what survives a crash meanwhile.
        """
        self._core.compact()

    def close(self) -> None:
        """Flush, fsync and close the log and release its lock; closing twice is harmless.

        If the buffered records cannot be written (disk full, say), the OSError
        propagates and the log stays open with them, so ``close()`` can be retried.
        If an fsync fails, the log is closed anyway and the OSError propagates.
        """
        self._core.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _before(groups: Sequence[tuple[Collection[Any, Any], Sequence[Write[Any]]]]) -> None:
    """Show each collection's hooks (indexes) its writes before anything is written."""
    for collection, writes in groups:
        for hook in collection._hooks:
            hook.before(writes)


def _after(groups: Sequence[tuple[Collection[Any, Any], Sequence[Write[Any]]]]) -> None:
    """Show each collection's hooks its writes once the log holds them."""
    for collection, writes in groups:
        for hook in collection._hooks:
            hook.after(writes)


def _as_bytes(body: bytes | list[bytes]) -> bytes:
    return body if isinstance(body, bytes) else b"".join(body)


class _FollowingLock(_thread.RLock):  # type: ignore[misc]  # final in typeshed only
    """The lock of a core that follows other processes (shared or read-only): taking it,
    outermost, catches the core up with the log first (``Core._catch_up``).

    So every operation, read or write, sees what other processes wrote before it
    began. An ``RLock`` itself, so that ``release`` and ``__exit__`` are the C ones: a
    Python ``__exit__`` could be interrupted by Ctrl-C before it released. Taking it
    releases on any exception once acquired, counted by the RLock itself, so that a
    KeyboardInterrupt landing right after the acquire leaves nothing held.
    """

    __slots__ = ("_core",)

    holds = _thread.RLock._recursion_count  # type: ignore[attr-defined]  # untyped in typeshed
    """How many times this thread holds the lock (0: not at all)."""

    def __init__(self, core: Core) -> None:
        super().__init__()
        self._core = core

    acquire_quietly = _thread.RLock.acquire
    """Take the lock without catching up (a writer catches up under the writer lock,
    closing does not); release it. The C acquire, with no bytecode after it."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, catching up if this is its outermost hold (always blocking)."""
        held: int = self.holds()
        try:
            _thread.RLock.acquire(self)
            core = self._core
            # Outermost, outside a reading block of this thread: catch up if the log moved.
            if not held and not core.is_closed and not _reading.inside(core.readers):
                engine = core._engine
                if engine is not None and engine.grew_or_moved(core._known):
                    core._catch_up(changed=True)
        except BaseException:
            if self.holds() > held:  # taken, then interrupted or failed
                self.release()
            raise
        return True

    __enter__ = acquire


class _KeysWhileUnchanged:
    """The key types of ``_collection.UNLOCKED_KEYS`` for a shared core on a log file,
    as long as the log ends where this core last read it: asking whether a type is
    in, which a read does after reading ``Core.writing`` and before its lookup, costs
    one ``lseek`` (``FileEngine.grew_or_moved``, inlined), as taking the lock would.

    A read that skips the lock this way still sees every write acknowledged before it
    began, from any process. Such a write ended before the ``lseek``, so the file then
    held it (a compaction grows the file it replaces: never the size this core knows),
    and ``_known`` is set only once memory holds what precedes it: by a catch-up, which
    makes ``writing`` odd from start to end (reads that overlap one read again under the
    lock), and by this core's own writes (``_stop_writer``) once they are applied.
    Neither this core's own compaction nor a write by it still under way is
    acknowledged before it ends. An ``in`` in an object, not a test in the read:
    exclusive stores keep their ``frozenset`` and pay nothing for it.

    Inside a reading block of the reading thread (``Core.readers``, ``_reading``), every
    such type is in without the ``lseek``: the block's start looked at the log, and the
    same argument holds from there, for the writes acknowledged before the block began.
    """

    __slots__ = ("_core", "_engine", "_readers")

    def __init__(self, core: Core, engine: FileEngine) -> None:
        self._core = core
        self._engine = engine
        self._readers = core.readers

    def __contains__(self, kind: object) -> bool:
        try:
            if kind not in UNLOCKED_KEYS:
                return False
            if self._readers and _reading.inside(self._readers):  # a block looked at its start
                return True
            file = self._engine.file
            return file.end() == self._core._known  # type: ignore[union-attr]  # None once closed: caught below
        except (AttributeError, TypeError, OSError):
            # Closed by another thread meanwhile (no file, or a descriptor gone): the read
            # takes the lock, and raises there what applies.
            return False
