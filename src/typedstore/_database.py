"""Database: named, typed collections in one log, with transactions across them.

README.md, "Databases", describes what users see. The log, its lock and the one write
path are the ``_core.Core`` a database shares with its collections; this module is
the public face: declarations, opening, ``collection(...)`` and transactions.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import types
import typing
import warnings
from collections.abc import Callable, ItemsView, Iterator, Mapping, Sequence, ValuesView
from collections.abc import Collection as Sized
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from ._catalog import check_name, nfc_clash, nfc_message
from ._codec import Codec
from ._collection import UNBOUND, Collection, schema_of, substitute
from ._config import StoreConfig
from ._core import Changes, Core, LogOwner, Wanted, make_core
from ._errors import StoreClosedError
from ._index import Index, IndexView
from ._index_txn import IndexedTransaction
from ._pg_engine import PostgresEngine
from ._records import Write
from ._txn import OTHER_THREAD, Hold, Transaction
from ._types import MISSING, K, Migration, Stored, V

if TYPE_CHECKING:  # PEP 747: lets `collection(name, str, int | None)` infer the types
    from typing_extensions import TypeForm

K2 = TypeVar("K2")
V2 = TypeVar("V2")
T = TypeVar("T")


class Database(LogOwner):
    """A log of named, typed collections: one file, one lock, one writer.

    Declare collections as annotated attributes of a subclass
    (``users: Collection[str, User]``) or ask for them with :meth:`collection`.
    Opening, closing, :meth:`flush`, :meth:`compact` and :meth:`transaction` belong
    to the database; a collection of a closed database raises ``StoreClosedError``.
    """

    _core: Core
    _collections: dict[str, Collection[Any, Any]]
    _transaction: DatabaseTransaction[Any] | None
    _annotation_globals: ClassVar[dict[str, Any] | None] = None
    _annotation_locals: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check the collections a subclass declares: ValueError for a bad name, TypeError
        for a collection annotated as Optional (checked again at open if it cannot be
        resolved yet)."""
        super().__init_subclass__(**kwargs)
        # Where the class statement ran: annotations are resolved there at open. Not
        # always sys.modules[cls.__module__] (runpy, exec).
        frame = sys._getframe(1)
        if frame.f_globals.get("__name__") == cls.__module__:
            cls._annotation_globals = frame.f_globals
            if frame.f_locals is not frame.f_globals:  # a class made in a function
                cls._annotation_locals = dict(frame.f_locals)
        declared = [
            name
            for base in cls.__mro__[1:]
            if issubclass(base, Database)
            for name in inspect.get_annotations(base)
            if not name.startswith("_")
        ]
        for name, hint in inspect.get_annotations(cls).items():
            if not name.startswith("_"):
                check_name(name)
                other = nfc_clash(name, declared)
                if other is not None:
                    raise ValueError(f"{cls.__name__}: {nfc_message(name, other)}")
                declared.append(name)
                if hasattr(Database, name):  # the collection would hide it, or fail to be set
                    raise ValueError(
                        f"{cls.__name__}: {name!r} names a Database attribute; name the "
                        "collection otherwise"
                    )
                _check_not_optional(cls, name, _resolved_now(cls, hint))

    def __init__(self) -> None:
        raise TypeError("open a database with Database.open(path)")

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | PostgresEngine,
        *,
        config: StoreConfig | None = None,
        readonly: bool = False,
        shared: bool = False,
        dropped_collections: Sized[str] = (),
        renamed_collections: Mapping[str, str] | None = None,
    ) -> Self:
        """Open the database at ``path``, creating it (and its folders) if it does not exist.

        An existing log is replayed (README.md, "Durability and recovery"); the
        collections the class declares are validated as their records are read, and
        every other collection of the log is kept as it is. ``dropped_collections``
        and ``renamed_collections`` (old name to new) change the catalog, written
        durably before this returns; naming a collection the log lacks raises
        ValueError and a read-only open refuses them, nothing written. ``shared`` is as for
        ``TypedStore.open``. Raises what ``TypedStore.open`` raises.
        """
        if config is None:
            config = StoreConfig()
        elif not isinstance(config, StoreConfig):
            raise TypeError(f"config must be a StoreConfig, not {type(config).__name__}")
        if isinstance(dropped_collections, str):
            raise TypeError("dropped_collections must be a collection of names, not one string")
        changes = Changes(tuple(dropped_collections), dict(renamed_collections or {}))
        core = make_core(path, config, readonly=readonly, single=False, shared=shared)
        wanted = _declarations(cls)
        made = core.open(wanted, changes)
        database = object.__new__(cls)
        database._core = core
        database._transaction = None
        database._collections = {}
        for name, collection in zip(wanted, made, strict=True):
            database._adopt(name, collection)
            setattr(database, name, collection)
        return database

    def _adopt(self, name: str, collection: Collection[Any, Any]) -> None:
        self._collections[name] = collection
        collection._owner = self  # a collection keeps its database open while in use

    # -- collections -------------------------------------------------------------------------

    def collection(
        self,
        name: str,
        key_type: TypeForm[K2],
        value_type: TypeForm[V2],
        *,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Sized[str] = (),
    ) -> Collection[K2, V2]:
        """Return the collection ``name`` with these types, made (or validated) on first use.

        A collection the log holds is validated now, under the rules of "Changing your
        models" (SchemaMismatchError, nothing changed); a new one enters the catalog
        with its first write (in shared mode at once, under the writer lock, so that
        another process's catalog change cannot drop it). The same name with the same
        types returns the same collection; with other types, or a bad name, ValueError.
        """
        want = Wanted(
            Collection,
            Codec[Any, Any](key_type, value_type),
            schema_of(version, migrations, dropped_fields),
        )
        database = self._database()
        known = database._collections.get(name)
        if known is None:
            known = database._core.collection(name, want)
            database._adopt(name, known)
        else:
            database._core.collection(name, want)  # checks the types match
        if self._transaction is not None:
            return self._transaction.view(known)
        return known

    def collection_names(self) -> list[str]:
        """Return the names of the log's collections, declared or not, in catalog order."""
        return self._core.names()

    def _database(self) -> Database:
        """Return the database itself (a transaction's copy answers for its database)."""
        transaction = self._transaction
        if transaction is None:
            return self
        transaction.check_open()
        database: Database = transaction.database
        return database

    # -- transactions ------------------------------------------------------------------------

    def transaction(self) -> DatabaseTransaction[Self]:
        """Return a transaction, to use as ``with db.transaction() as tx:``.

        ``tx`` is a copy of the database whose collections stage their writes; when
        the block ends normally, every write to every collection becomes one batch
        record, applied at once. An exception in the block writes nothing. Entering
        the block takes the database: other threads wait until it ends. Nesting is
        refused with RuntimeError.
        """
        if self._transaction is not None:
            self._transaction.check_open()
        with self._core.lock:
            self._core._writable_log()
        return DatabaseTransaction(self)

    def __del__(self) -> None:
        core: Core | None = self.__dict__.get("_core")
        if core is None or core.is_closed or self.__dict__.get("_transaction") is not None:
            return
        warnings.warn(f"unclosed database {core.path}", ResourceWarning, stacklevel=2)
        try:
            core.close()
        except OSError:
            core.abandon()

    # -- state -------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._core.is_closed

    def __repr__(self) -> str:
        state = (
            "closed"
            if self._core.is_closed
            else f"{len(self._core.catalog.collections)} collections"
        )
        return f"<{type(self).__name__} {str(self._core.path)!r} {state}>"


D = TypeVar("D", bound=Database)


class DatabaseTransaction(Generic[D]):
    """A group of writes to any collections that commit as one record when the block ends.

    ``with db.transaction() as tx:`` gives ``tx``, a copy of the database whose
    collections see the transaction's own writes. Using it after the block raises
    ``StoreClosedError``.
    """

    def __init__(self, database: D) -> None:
        self.database = database
        self._views: dict[int, _View[Any, Any]] = {}
        self._groups: list[tuple[Collection[Any, Any], Sequence[Write[Any]]]] = []
        """The writes of each collection, staged when the block ends."""
        self._entered = False
        self._ended = False
        self._hold: Hold | None = None
        self._thread = 0
        """The thread that entered the block: the only one that can end it."""

    def __enter__(self) -> D:
        if self._entered:
            raise StoreClosedError("a transaction is used for one with block; start a new one")
        self._thread = threading.get_ident()
        database = self.database
        try:
            # Straight into the attribute: a KeyboardInterrupt before it holds the hold
            # drops it, which lets the database go (see Core._begin_transaction).
            self._hold = database._core._begin_transaction()
            self._entered = True
            copy = object.__new__(type(database))
            copy._core = database._core
            copy._collections = database._collections
            copy._transaction = self
            for name, collection in database._collections.items():
                if name in _declarations(type(database)):
                    setattr(copy, name, self.view(collection))
        except BaseException:
            if self._hold is not None:  # taken: the with block never runs to let it go
                self._end()
            raise
        return copy

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        other = False  # as in Transaction.__exit__
        try:
            other = self._hold is not None and threading.get_ident() != self._thread
            if other:
                raise RuntimeError(OTHER_THREAD)
            for view in self._views.values():  # each stages its writes in self._groups
                view._txn.__exit__(exc_type, exc, traceback)
            if exc_type is None and self._groups:
                self.database._core._commit(self._groups)
        finally:
            if not other:
                self._end()

    def _end(self) -> None:
        self._ended = True
        if self._hold is not None:
            self._hold.close()

    def view(self, collection: Collection[K, V]) -> Collection[K, V]:
        """Return ``collection`` as this transaction sees it (one view per collection)."""
        self.check_open()
        view = self._views.get(collection._id)
        if view is None:
            view = _View._of(collection, self._groups)
            self._views[collection._id] = view
        return view

    def check_open(self) -> None:
        """Raise StoreClosedError unless the block is running."""
        if not self._entered:
            raise StoreClosedError(
                "this transaction has not started: use it as `with db.transaction() as tx:`"
            )
        if self._ended:
            raise StoreClosedError("this transaction has ended; start a new one")


class _Staging(Generic[K]):
    """The host of one collection's part of a database transaction (``TransactionHost``):
    the database is taken already; the writes are committed by the database's transaction."""

    def __init__(
        self,
        collection: Collection[K, Any],
        groups: list[tuple[Collection[Any, Any], Sequence[Write[Any]]]],
    ) -> None:
        self._collection = collection
        self._groups = groups

    def _begin_transaction(self) -> tuple[Hold | None, Mapping[K, Stored]]:
        return None, self._collection._table.entries  # the database's transaction holds it

    def _commit(self, writes: Sequence[Write[K]]) -> None:
        self._groups.append((self._collection, writes))


class _View(Collection[K, V]):
    """A collection as a database transaction sees it: reads see its writes, writes stage."""

    _txn: Transaction[K, V]
    _collection: Collection[K, V]

    @classmethod
    def _of(
        cls,
        collection: Collection[K, V],
        groups: list[tuple[Collection[Any, Any], Sequence[Write[Any]]]],
    ) -> _View[K, V]:
        view: _View[K, V] = object.__new__(_view_class(type(collection)))
        view.__dict__.update(collection.__dict__)
        view._drop_index_views()  # the collection's own: this view's lookups see its writes
        view._collection = collection
        staging = _Staging(collection, groups)
        if collection._indexes:
            view._txn = IndexedTransaction(staging, collection._codec, collection._indexes)
        else:
            view._txn = Transaction(staging, collection._codec)
        view._txn.__enter__()
        return view

    def _index_view(self, index: Index[V, T]) -> IndexView[K, V, T]:
        """Return ``index``'s lookups as the transaction sees them (its own writes too)."""
        txn = self._txn
        if not isinstance(txn, IndexedTransaction):
            return IndexView(self._indexes, index)  # raises: no such index here
        return txn.index_view(index)

    def get(self, key: K, /, default: object = None) -> Any:
        return self._txn.get(key, default)

    def __getitem__(self, key: K) -> V:
        return self._txn[key]

    def __contains__(self, key: object) -> bool:
        return key in self._txn

    def __len__(self) -> int:
        return len(self._txn)

    def __iter__(self) -> Iterator[K]:
        return iter(self._txn)

    def __reversed__(self) -> Iterator[K]:
        return iter(list(self._txn)[::-1])

    def values(self) -> ValuesView[V]:
        return ValuesView(self)

    def items(self) -> ItemsView[K, V]:
        return ItemsView(self)

    def get_index(self, index: int) -> tuple[K, V] | None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int, not {type(index).__name__}")
        keys = list(self._txn)
        if not -len(keys) <= index < len(keys):
            return None
        return keys[index], self._txn[keys[index]]

    def insert(self, key: K, value: V) -> V | None:
        return self._txn.insert(key, value)

    def __setitem__(self, key: K, value: V) -> None:
        self._txn[key] = value

    def setdefault(self, key: K, default: V, /) -> V:
        if key in self._txn:
            return self._txn[key]
        return self._txn.modify(key, lambda value: value, default=default)

    def remove(self, key: K) -> V | None:
        return self._txn.remove(key)

    def __delitem__(self, key: K) -> None:
        del self._txn[key]

    def pop(self, key: K, /, default: object = MISSING) -> Any:
        if key in self._txn:
            value = self._txn[key]
            del self._txn[key]
            return value
        if default is MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[K, V]:
        keys = list(self._txn)
        if not keys:
            raise KeyError("popitem(): the collection is empty")
        value = self._txn[keys[-1]]
        del self._txn[keys[-1]]
        return keys[-1], value

    def clear(self) -> None:
        for key in list(self._txn):
            del self._txn[key]

    def modify(self, key: K, fn: Callable[[V], V], *, default: object = MISSING) -> V:
        if default is MISSING:
            return self._txn.modify(key, fn)
        return self._txn.modify(key, fn, default=typing.cast(V, default))


_VIEW_CLASSES: dict[type[Collection[Any, Any]], type[_View[Any, Any]]] = {}
"""Per collection class, the class of its transaction views."""


def _view_class(cls: type[Collection[Any, Any]]) -> type[_View[Any, Any]]:
    """Return a :class:`_View` that is also a ``cls``: its indexes, its own methods."""
    if cls is Collection or issubclass(cls, _View):
        return _View
    found = _VIEW_CLASSES.get(cls)
    if found is None:
        found = type(f"{cls.__name__}View", (cls, _View), {"__module__": cls.__module__})
        _VIEW_CLASSES[cls] = found
    return found


def _annotations(cls: type[Database]) -> dict[str, object]:
    """Return the annotations ``cls`` and its bases declare, resolved (``get_type_hints``
    resolves them in ``sys.modules[cls.__module__]``, absent under runpy or exec)."""
    hints: dict[str, object] = {}
    for base in reversed(cls.__mro__):
        if not (isinstance(base, type) and issubclass(base, Database)) or base is Database:
            continue
        for name, hint in inspect.get_annotations(base).items():
            hints[name] = _resolve(base, hint)
    return hints


def _resolve(base: type[Database], hint: object) -> object:
    """Return ``hint``, an annotation of ``base``, resolved where ``base`` was made;
    raise what evaluating it raises (a name not defined yet, say)."""
    if not isinstance(hint, str):
        return hint
    namespace = base.__dict__.get("_annotation_globals")
    if namespace is None:
        namespace = vars(sys.modules[base.__module__])
    return eval(hint, namespace, {**base.__dict__.get("_annotation_locals", {}), **vars(base)})


def _declarations(cls: type[Database]) -> dict[str, Wanted]:
    """Return the collections ``cls`` declares as annotated attributes, by name.

    Annotations are resolved here, at open, so forward references work.
    """
    cached: dict[str, Wanted] | None = cls.__dict__.get("_wanted_cache")
    if cached is not None:
        return cached
    wanted = {}
    for name, hint in _annotations(cls).items():
        _check_not_optional(cls, name, hint)
        origin = typing.get_origin(hint) or hint
        if name.startswith("_") or not (
            isinstance(origin, type) and issubclass(origin, Collection)
        ):
            continue
        args = typing.get_args(hint)
        key_type, value_type = substitute(origin, args) if args else origin._type_args
        if key_type is UNBOUND or isinstance(key_type, TypeVar) or isinstance(value_type, TypeVar):
            raise TypeError(f"{cls.__name__}.{name}: give its key and value types")
        schema = origin._schema or schema_of(None, None, ())
        wanted[name] = Wanted(origin, Codec[Any, Any](key_type, value_type), schema)
    cls._wanted_cache = wanted  # type: ignore[attr-defined]  # a per-class cache
    return wanted


def _resolved_now(cls: type[Database], hint: object) -> object:
    """Return ``hint`` resolved where ``cls`` was made, or None if it cannot be yet (a
    forward reference: :func:`_declarations` resolves it at open)."""
    try:
        return _resolve(cls, hint)
    except Exception:
        return None


def _check_not_optional(cls: type[Database], name: str, hint: object) -> None:
    """Refuse a collection annotated as Optional, or in any union: TypeError."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return
    for arg in typing.get_args(hint):
        origin = typing.get_origin(arg) or arg
        if isinstance(origin, type) and issubclass(origin, Collection):
            raise TypeError(
                f"{cls.__name__}.{name}: a collection cannot be Optional or part of a union "
                f"({hint}); a database always has each collection it declares, so annotate "
                "it as the collection alone"
            )
