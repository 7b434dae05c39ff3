"""Collection: the typed, insertion-ordered mapping view of one collection of a log.

Every method that is about entries lives here: reads from memory, and writes that
validate and hand their record to the database's one write path
(``_core.Core._write``). ``TypedStore`` is a collection that owns its log alone.
"""

from __future__ import annotations

import typing
from collections.abc import (
    Callable,
    ItemsView,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
    ValuesView,
)
from collections.abc import Collection as Sized
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, overload

from ._codec import Codec, type_name
from ._config import Schema
from ._errors import StoreClosedError
from ._index import Index, IndexView, declared_indexes
from ._index_hook import IndexHook
from ._index_set import Change, IndexSet
from ._records import NO_VALUE, Write, record_head, removal
from ._table import Table
from ._txn import Hold, Transaction
from ._types import MISSING, K, Migration, Stored, V

if TYPE_CHECKING:
    from ._core import Core

T = TypeVar("T")

UNLOCKED_KEYS: frozenset[type] = frozenset((str, bytes, int, bool))
"""The exact key types whose single-key reads skip the lock when no transaction or batch
is under way (``Core.writing`` even, and the same after the lookup as before it).

Looking one of them up in a dict runs no Python code (their hash and equality are C),
so under the GIL the lookup is one step that sees the entry before or after a lone
write, never half of one, as a locked read would. A transaction or batch changes several
entries (the same key twice, say: removed then inserted), so it makes ``writing`` odd
from start to end: a read that begins meanwhile takes the lock (and waits, as README
promises), and one that began before and looked up during it sees ``writing`` changed
and reads again under the lock. A catch-up with other processes' writes does the same.

Where other processes write the log, taking the lock catches up with them: a shared
store reads without it only when one ``lseek`` finds the log as it last read it, or
inside a reading block, which looked as it began (``_core._KeysWhileUnchanged``).
Read-only stores and stores on PostgreSQL always lock."""


class WriteHook(Protocol):
    """Something kept beside a collection that follows its writes (an index, say).

    The database's write path (``_core.Core._write`` and ``_commit``) calls ``before``
    with a record's writes to the collection before anything is written, under the lock
    (raising there refuses the write, nothing written), then ``after`` once the log
    holds the record, even when an exception (a KeyboardInterrupt) arrived meanwhile:
    memory has then applied it, or is applying it on the way out (``Table.settle``).
    """

    def before(self, writes: Sequence[Write[Any]]) -> None:
        """Check ``writes``; raise to refuse them."""

    def after(self, writes: Sequence[Write[Any]]) -> None:
        """Follow ``writes``, now in the log; must leave the hook whole whatever arrives."""


UNBOUND: object = object()
"""A type not given: neither at open nor by a declarative subclass."""


class Collection(MutableMapping[K, V], Generic[K, V]):
    """A named, typed, insertion-ordered mapping kept in a database's log.

    Get one from a :class:`Database` (an annotated attribute, or ``collection(...)``).
    Every write validates its key and value, appends one checksummed record and only
    then changes memory. Values of mutable types are returned as fresh copies,
    immutable ones as they are. Every method is atomic with respect to other threads.
    """

    _key_type: ClassVar[object] = UNBOUND
    _value_type: ClassVar[object] = UNBOUND
    _type_args: ClassVar[tuple[object, object]] = (UNBOUND, UNBOUND)
    """The key and value types as this class binds them, type variables where it does not."""
    _schema: ClassVar[Schema | None] = None
    _owner: object
    """The database this collection belongs to, kept open while the collection is in use."""
    _hooks: tuple[WriteHook, ...] = ()
    """What follows this collection's writes (its indexes): see :class:`WriteHook`."""

    def __init_subclass__(
        cls,
        *,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Sized[str] = (),
        **kwargs: Any,
    ) -> None:
        """Bind a declarative subclass's types, and its schema version and migrations."""
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Collection):
                cls._type_args = substitute(origin, typing.get_args(base))
        if not any(isinstance(arg, TypeVar) or arg is UNBOUND for arg in cls._type_args):
            cls._key_type, cls._value_type = cls._type_args
        if version is not None or migrations is not None or dropped_fields:
            cls._schema = schema_of(version, migrations, dropped_fields)

    def __init__(self) -> None:
        raise TypeError("get a collection from a Database: an attribute, or db.collection(...)")

    def _attach(
        self,
        core: Core,
        ident: int,
        name: str,
        codec: Codec[K, V],
        schema: Schema,
        table: Table[K],
        found: dict[K, object] | None = None,
    ) -> None:
        """Bind this new collection to its database's ``core`` as collection ``ident``.

        ``found`` holds what replay kept of the values of ``table``'s entries (some, all
        or none): what each index function returned for them (``index_functions``). With
        all of them, the indexes are built from it; else from the values, decoded again.
        """
        self._core = core
        self._lock = core.lock
        self._id = ident
        self._head = record_head(ident)
        """What precedes an insert or remove body in this collection's records."""
        self._name = name
        self._codec = codec
        self._copies = codec.copies_values
        """Whether reads return copies (``Codec.thaw``); else what memory keeps, as it is."""
        self._schema_now = schema
        self._table = table
        self._is_closed = core.is_closed
        """Kept by the database as its own (open or closed): checked first by every read."""
        self._unlocked_keys = core.unlocked_keys
        """The types of key :meth:`get` and ``[]`` look up without the lock (see
        ``UNLOCKED_KEYS`` and ``Core.unlocked_keys``)."""
        self._indexes: IndexSet[K, V] = declared_indexes(type(self), self._read_value, self._lock)
        """The indexes its class declares, built from ``table`` (README.md, "Indexes")."""
        self._index_views: dict[int, IndexView[K, V, Any]] = {}
        """Each index's lookups, made on first use, by the id of its (class attribute) Index."""
        self._index_hook: IndexHook[K, V] | None = None
        if self._indexes:
            keys = list(table.entries)
            known = {} if found is None else found
            # At C speed. A value replay left for the end (another schema) is not known;
            # one it found, left, and found again is known out of the table's order.
            in_order = list(known) == keys
            if not in_order and len(known) == len(keys) and all(map(known.__contains__, keys)):
                known, in_order = dict(zip(keys, map(known.__getitem__, keys), strict=True)), True
            if not in_order or not self._indexes.rebuild_found(known, keys):
                self._indexes.rebuild(self._thawed({}))  # raises the error that applies
            self._indexes.entries = lambda: self._thawed({})
            self._index_hook = IndexHook(self._indexes, codec)
            self._hooks = (self._index_hook,)

    def _read_value(self, key: K) -> V:
        """Return a copy of the value of a present ``key`` (index lookups, under the lock)."""
        return self._codec.thaw(self._table.entries[key])

    def _thawed(self, known: Mapping[K, V]) -> list[tuple[K, V]]:
        """Return each entry with its value: from ``known``, else decoded from memory."""
        thaw = self._codec.thaw
        return [
            (key, thaw(stored) if (value := known.get(key, MISSING)) is MISSING else value)
            for key, stored in self._table.entries.items()
        ]

    def _index_view(self, index: Index[V, T]) -> IndexView[K, V, T]:
        """Return the lookups of ``index``, one of this collection's class (``IndexHost``).

        The view is also kept as an attribute of this instance, under the index's name:
        ``Index`` is a non-data descriptor, so the next ``collection.by_email`` finds it
        there without two calls (a fifth of a unique lookup's cost). A close drops it and
        closes the indexes (:meth:`_close_indexes`), so a closed collection's lookups
        raise, through it or not; a transaction's view of the collection, which copies
        this instance's attributes, drops it (``_database._View``).
        """
        if self._is_closed:
            self._check_open()
        view = self._index_views.get(id(index))
        if view is None:
            view = self._index_views[id(index)] = IndexView(self._indexes, index)
        self.__dict__[view.name] = view
        return view

    def _drop_index_views(self) -> None:
        """Forget the views :meth:`_index_view` kept as attributes (see there)."""
        attributes = self.__dict__
        # A copy, made in one C call: another thread's first lookup may add a view.
        for view in list(self._index_views.values()):
            attributes.pop(view.name, None)

    def _close_indexes(self) -> None:
        """Refuse lookups from now on, also through a view kept from before: the
        database closes this collection (before it marks it closed)."""
        self._drop_index_views()
        if self._indexes:
            self._indexes.close(f"{self._core.path}: the store is closed")

    def _follow(self, changes: Sequence[Change[K, V]]) -> None:
        """Bring the indexes up to date with ``changes``, other processes' records a
        catch-up applied to the table in place, key by key (``IndexSet.follow``); on
        any error, rebuild them from memory (:meth:`_reindex`), which raises as an open
        would if the entries break a unique index."""
        if self._indexes:
            with self._lock:
                try:
                    self._indexes.follow(changes)
                except Exception:
                    self._reindex()

    def _reindex(self) -> None:
        """Rebuild the indexes from memory, after a catch-up applied other processes'
        records to the table in place (shared and read-only mode). Raises if the entries
        break a unique index, as an open would."""
        if self._indexes:
            with self._lock:
                self._indexes.rebuild(self._thawed({}))

    # -- reading ---------------------------------------------------------------------------

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, /, default: V | T) -> V | T: ...
    def get(self, key: K, /, default: object = None) -> object:
        """Return the value of ``key`` (a copy for mutable types), or ``default``."""
        core = self._core
        seen = core.writing
        entries = self._table.entries  # before the closed check: close() replaces the table
        unlocked = not seen & 1 and type(key) in self._unlocked_keys and not self._is_closed
        if unlocked:  # see UNLOCKED_KEYS
            stored = entries.get(key, MISSING)
            unlocked = core.writing == seen
        if not unlocked:
            with self._lock:
                if self._is_closed:  # _check_open, inlined in the hottest reads
                    self._check_open()
                stored = self._table.entries.get(key, MISSING)
        if stored is MISSING:
            return default
        return self._codec.thaw(stored) if self._copies else stored

    def __getitem__(self, key: K) -> V:
        core = self._core  # as get does
        seen = core.writing
        entries = self._table.entries
        unlocked = not seen & 1 and type(key) in self._unlocked_keys and not self._is_closed
        if unlocked:
            stored = entries.get(key, MISSING)
            unlocked = core.writing == seen
        if not unlocked:
            with self._lock:
                if self._is_closed:
                    self._check_open()
                stored = self._table.entries.get(key, MISSING)
        if stored is MISSING:
            raise KeyError(key)
        if self._copies:
            return self._codec.thaw(stored)
        return stored  # type: ignore[return-value]  # an immutable V is kept as itself

    def contains_key(self, key: K) -> bool:
        """Return whether ``key`` is in the store (same as ``key in store``)."""
        return key in self

    def __contains__(self, key: object) -> bool:
        with self._lock:
            if self._is_closed:
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
        if entry is None or not self._copies:
            return entry  # type: ignore[return-value]  # an immutable V is kept as itself
        return entry[0], self._codec.thaw(entry[1])

    def _snapshot(self) -> list[tuple[K, Stored]]:
        with self._lock:
            if self._is_closed:
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
        if self._index_hook is None:  # _put's first case, inlined: the commonest write
            self._core._write_one(self, self._codec.encode_write(key, value))
        else:
            self._put(key, value)

    def _put(self, key: K, value: V) -> Stored:
        codec = self._codec
        hook = self._index_hook
        if hook is None:
            return self._core._write_one(self, codec.encode_write(key, value))
        write, validated = codec.encode_insert(key, value)
        return self._core._write_one(self, write, validated)  # the indexes need not decode it

    def setdefault(self, key: K, default: V, /) -> V:
        """Return the value of ``key``; if absent, first insert ``default`` (validated).

        The key is validated first, like every write. Atomic: two threads calling it
        for the same absent key get the same value back.
        """
        codec = self._codec
        validated_key, key_bytes = codec.encode_key(key)
        present: list[Stored] = []

        # ``stage`` runs again when a write on PostgreSQL finds the log grew: the last
        # run's outcome is the one written.
        def stage(table: Table[K]) -> tuple[Write[K], ...]:
            stored = table.entries.get(validated_key, MISSING)
            if stored is not MISSING:
                present.append(stored)
                return ()
            validated, blob = codec.encode_value(default)
            present.append(codec.freeze(validated, blob))
            return ((validated_key, key_bytes, present[-1], blob),)

        self._core._write(self, stage)
        return codec.thaw(present[-1])

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

        if self._core.readers:  # in a reading block the lock looks at the log no more
            self._core._look()  # the newest last key, inside one too
        with self._lock:  # the last key, and its removal, under one hold of the lock
            self._core._writable_log()
            if not self._table.entries:
                raise KeyError("popitem(): the store is empty")
            # The key object as stored: a NaN key written by an older version equals
            # no other object, and the table finds it by identity.
            key = next(reversed(self._table.entries))
            key_bytes = self._codec.key_bytes(key)
            (previous,) = self._core._write(
                self, (removal(key, key_bytes),), compact=not self._codec.finds(key, key_bytes)
            )
        return key, self._codec.thaw(previous)

    def _delete(self, key: K) -> Stored:
        """Remove ``key`` if present; return its stored value, or MISSING."""
        codec = self._codec
        found = codec.find_key(key)
        if found is None:  # a key that does not validate cannot have been stored
            self._core._write(self, ())  # writes nothing, but checks the store may be written
            return MISSING
        if codec.canonical_keys:  # equal keys, equal bytes: found by its bytes (most types)
            return self._core._write_one(self, found + NO_VALUE)
        # A key not equal to itself (a NaN from an older log) compacts: see _write.
        compact = not codec.finds(*found)
        return self._core._write_one(self, found + NO_VALUE, compact=compact)

    def clear(self) -> None:
        """Remove every entry, as one atomic record."""
        with Transaction(self, self._codec) as txn:
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
        if default is MISSING and type(key) is self._codec.plain_key:  # the commonest: no
            # closure, no list; an exact plain key is valid as it is, packed once fn has run
            done = self._core._modify_one(self, key, None, fn, False)
            if done is not MISSING:  # else the store takes the general path, below
                return done  # type: ignore[return-value]  # fn's value, validated as a V
        codec, copies = self._codec, self._copies
        # With a default, modify may insert: the key is validated as for any write.
        found = codec.find_key(key) if default is MISSING else codec.encode_key(key)
        # A key not equal to itself (a NaN from an older log) compacts: see _write.
        compact = not codec.canonical_keys and found is not None and not codec.finds(*found)
        if default is MISSING and found is not None and type(key) is not codec.plain_key:
            done = self._core._modify_one(self, key, found, fn, compact)
            if done is not MISSING:  # else the store takes the general path, below
                return done  # type: ignore[return-value]  # fn's value, validated as a V
        result: list[V] = []

        def stage(table: Table[K]) -> tuple[Write[K]]:
            stored = MISSING if found is None else table.entries.get(found[0], MISSING)
            if stored is MISSING and default is not MISSING:
                stored = codec.freeze(*codec.encode_value(default))
            if found is None or stored is MISSING:
                raise KeyError(key)
            # thaw and freeze, inlined: what memory keeps is the bytes when values copy
            validated, blob = codec.encode_value(fn(codec.thaw(stored) if copies else stored))  # type: ignore[arg-type]  # an immutable V is kept as itself
            result.append(validated)
            return ((found[0], found[1], blob if copies else validated, blob),)

        self._core._write(self, stage, compact=compact)
        # Memory keeps the bytes of a mutable value, so ``validated`` is the caller's; the
        # last: ``stage`` runs again when a write on PostgreSQL finds the log grew.
        return result[-1]

    # -- transactions (TransactionHost) -----------------------------------------------------

    def _begin_transaction(self) -> tuple[Hold, Mapping[K, Stored]]:
        return self._core._begin_transaction(), self._table.entries

    def _commit(self, writes: Sequence[Write[K]]) -> None:
        self._core._commit(((self, writes),))

    # -- state -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The collection's name in its database's catalog."""
        return self._name

    @property
    def schema_version(self) -> int:
        """The schema version this collection writes its values at."""
        return self._schema_now.version

    def __repr__(self) -> str:
        types = f"{type_name(self._codec.key_type)}, {type_name(self._codec.value_type)}"
        state = "closed" if self._is_closed else f"{len(self._table.entries)} entries"
        return (
            f"<{type(self).__name__}[{types}] {self._name!r} of {str(self._core.path)!r} {state}>"
        )

    def _check_open(self) -> None:
        if self._is_closed:
            raise StoreClosedError(f"{self._core.path}: the store is closed")


# Collection's own key and value types are its type parameters, K and V.
Collection._type_args = getattr(Collection, "__parameters__")  # noqa: B009 - not in the stubs


def substitute(
    origin: type[Collection[Any, Any]], args: tuple[object, ...]
) -> tuple[object, object]:
    """Return ``origin``'s key and value types with its type parameters bound to ``args``.

    ``Collection[str, User]`` gives ``(str, User)``; with ``class ByName(Collection[str,
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


def schema_of(
    version: int | None,
    migrations: Mapping[int, Migration] | None,
    dropped_fields: Sized[str],
) -> Schema:
    if isinstance(dropped_fields, str):
        raise TypeError("dropped_fields must be a collection of field names, not one string")
    return Schema(
        version=1 if version is None else version,
        migrations=dict(migrations or {}),
        dropped_fields=frozenset(dropped_fields),
    )


class _ValuesView(ValuesView[V], Generic[K, V]):
    _mapping: Collection[K, V]

    def __iter__(self) -> Iterator[V]:
        mapping = self._mapping
        if mapping._copies:
            thaw = mapping._codec.thaw
            for _, stored in mapping._snapshot():
                yield thaw(stored)
        else:  # an immutable V is kept as itself
            for _, value in typing.cast(list[tuple[K, V]], mapping._snapshot()):
                yield value


class _ItemsView(ItemsView[K, V], Generic[K, V]):
    _mapping: Collection[K, V]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        mapping = self._mapping
        if mapping._copies:
            thaw = mapping._codec.thaw
            for key, stored in mapping._snapshot():
                yield key, thaw(stored)
        else:  # an immutable V is kept as itself: the snapshot's pairs are the items
            yield from typing.cast(list[tuple[K, V]], mapping._snapshot())
