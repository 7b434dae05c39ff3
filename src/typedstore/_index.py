"""Index: a lookup by a function of the value, declared as a class attribute of its host.

``Index`` is a descriptor: on the class it is the declaration, on an instance it is an
:class:`IndexView` that the instance makes through :class:`IndexHost`. The indexes'
state and how writes keep it current live in ``_index_set``. README.md, "Indexes",
says what users see.
"""

from __future__ import annotations

import dis
import inspect
import operator
import types
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Generic, Literal, Protocol, TypeVar, cast, overload

from . import _index_overlay
from ._index_set import IndexSet, StagedIndexes
from ._index_state import IndexSpec, SortedEntries, first
from ._types import K, V, _Missing

T = TypeVar("T")
"""An index's key type: what its function returns (a multi index: each element)."""

_KINDS = ("unique", "ordered", "multi")


class IndexHost(Protocol[K, V]):
    """What an instance needs to serve its class's indexes: a typed view of each."""

    def _index_view(self, index: Index[V, T]) -> IndexView[K, V, T]:
        """Return the lookups of ``index``, declared on this instance's class."""
        ...


class Index(Generic[V, T]):
    """Declare an index on a collection's values: ``by_email = Index(lambda u: u.email)``.

    ``fn`` is a pure function of the validated value; its result must be hashable,
    and None leaves the entry out. ``unique`` refuses a write giving two entries one
    index key (UniqueViolationError); ``ordered`` keeps the index keys sorted, for
    ``range`` and iteration (they must compare with each other); ``multi`` indexes
    each element of the iterable ``fn`` returns. For mypy to know the index key type,
    annotate the attribute (``by_email: Index[User, str] = Index(lambda u: u.email)``)
    or pass a function with annotations.
    """

    @overload
    def __init__(
        self,
        fn: Callable[[V], T | None],
        *,
        unique: bool = False,
        ordered: bool = False,
        multi: Literal[False] = False,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[[V], Iterable[T | None] | None],
        *,
        unique: bool = False,
        ordered: bool = False,
        multi: Literal[True],
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[[V], object],
        *,
        unique: bool = False,
        ordered: bool = False,
        multi: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"an index needs a function of the value, not {fn!r}")
        for flag, given in (("unique", unique), ("ordered", ordered), ("multi", multi)):
            if not isinstance(given, bool):
                raise TypeError(f"{flag} must be True or False, not {given!r}")
        self._fn = fn
        self._flags = (unique, ordered, multi)
        self.names: list[str] = []
        """The attribute names it was declared under: one, to be used."""

    def __set_name__(self, owner: type[object], name: str) -> None:
        # Checked in ``spec``, not here: Python 3.11 wraps an error raised here in a
        # RuntimeError, which would hide the TypeError users expect.
        self.names.append(name)

    @property
    def spec(self) -> IndexSpec[V]:
        """Return what this index declares; TypeError unless it is one class attribute."""
        if len(set(self.names)) != 1:
            raise TypeError(
                "an Index must be declared as one class attribute to be used, not"
                f" {self.names or 'none'}: declare one Index per attribute"
            )
        unique, ordered, multi = self._flags
        return IndexSpec(self.names[0], self._fn, unique, ordered, multi)

    @overload
    def __get__(self, instance: None, owner: type[object]) -> Index[V, T]: ...
    @overload
    def __get__(self, instance: IndexHost[K, V], owner: type[object]) -> IndexView[K, V, T]: ...
    def __get__(
        self, instance: IndexHost[K, V] | None, owner: type[object]
    ) -> Index[V, T] | IndexView[K, V, T]:
        if instance is None:
            return self
        return instance._index_view(self)

    def __repr__(self) -> str:
        kinds = [kind for kind, on in zip(_KINDS, self._flags, strict=True) if on]
        name = "/".join(self.names) or "(undeclared)"
        return f"<Index {name}{''.join(f' {kind}' for kind in kinds)}>"


class IndexView(Generic[K, V, T]):
    """The lookups of one index of one host. Results are ``(key, value)`` pairs of copies,
    taken as one snapshot; entries sharing an index key come in insertion order.

    Made with ``staged`` (and the transaction's ``read``), it is a transaction's view:
    lookups see the transaction's own writes (``_index_overlay``).
    """

    __slots__ = ("_index", "_indexes", "_lock", "_read", "_staged", "name")

    def __init__(
        self,
        indexes: IndexSet[K, V],
        index: Index[V, T],
        *,
        staged: StagedIndexes[K] | None = None,
        read: Callable[[K], V] | None = None,
    ) -> None:
        self.name = index.spec.name
        """The index's attribute name."""
        self._index = indexes.named(self.name)  # checks it is this host's
        self._indexes = indexes
        self._staged = staged
        self._read = indexes.read if read is None else read
        self._lock = indexes.lock

    def get(self, index_key: T) -> tuple[K, V] | None:
        """Return the entry holding ``index_key`` in a unique index, or None."""
        index = self._index
        if not index.unique:
            raise TypeError(f"index {self.name!r} is not unique: use find()")
        if index_key is None:
            return None
        with self._lock:
            if self._indexes.unsettled:
                self._indexes.settle()
            if self._staged is not None:
                keys = self._keys_of(index_key)
                return (keys[0], self._read(keys[0])) if keys else None
            holder = index.entries.holder(index_key)
            return None if holder is _Missing.MISSING else (holder, self._read(holder))

    def find(self, index_key: T) -> list[tuple[K, V]]:
        """Return every entry holding ``index_key``, in insertion order."""
        if index_key is None:
            return []
        with self._lock:
            if self._indexes.unsettled:
                self._indexes.settle()
            return self._read_all(self._keys_of(index_key))

    def count(self, index_key: T) -> int:
        """Return how many entries hold ``index_key``."""
        if index_key is None:
            return 0
        with self._lock:
            if self._indexes.unsettled:
                self._indexes.settle()
            if self._staged is not None:
                return len(self._keys_of(index_key))
            return self._index.entries.count(index_key)

    def __contains__(self, index_key: object) -> bool:
        return index_key is not None and self.count(index_key) > 0  # type: ignore[arg-type]  # in takes any object

    def range(
        self,
        low: T | None,
        high: T | None,
        *,
        reverse: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[tuple[K, V]]:
        """Return the entries with ``low <= index key < high``, by index key (None: open).

        ``reverse`` lists them from the highest; ``offset`` skips that many, then at
        most ``limit`` are returned. TypeError on an index that is not ordered.
        """
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be an int >= 0, not {offset!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
        with self._lock:
            if self._indexes.unsettled:
                self._indexes.settle()
            keys = first(self._keys_between(low, high, reverse, "range()"), offset, limit)
            return self._read_all(keys)

    def __iter__(self) -> Iterator[tuple[K, V]]:
        """Iterate over a snapshot of the entries, by index key; ordered indexes only."""
        with self._lock:
            if self._indexes.unsettled:
                self._indexes.settle()
            return iter(self._read_all(list(self._keys_between(None, None, False, "iteration"))))

    def __repr__(self) -> str:
        return f"<IndexView {self.name}>"

    def _keys_of(self, index_key: object) -> list[K]:
        if self._staged is None:
            return self._index.entries.keys_of(index_key)
        return _index_overlay.keys_of(self._indexes, self._index, self._staged, index_key)

    def _keys_between(self, low: object, high: object, reverse: bool, what: str) -> Iterator[K]:
        entries = self._index.entries
        if not isinstance(entries, SortedEntries):
            raise TypeError(f"index {self.name!r} is not ordered: {what} needs ordered=True")
        if low is not None and low != low:  # NaN: no index key is at or above it
            return iter(())
        if self._staged is None:
            return entries.keys_between(low, high, reverse=reverse)
        return _index_overlay.keys_between(
            self._indexes, entries, self._index, self._staged, (low, high), reverse
        )

    def _read_all(self, keys: list[K]) -> list[tuple[K, V]]:
        read = self._read
        return [(key, read(key)) for key in keys]


def has_indexes(owner: type[object]) -> bool:
    """Return whether ``owner`` or one of its bases declares an index."""
    return any(
        isinstance(found, Index) for klass in owner.__mro__ for found in vars(klass).values()
    )


def declared_indexes(
    owner: type[object], read: Callable[[K], V], lock: AbstractContextManager[object]
) -> IndexSet[K, V]:
    """Return the indexes declared on ``owner`` and its bases, empty, for an instance.

    ``read`` returns a copy of a present key's value; ``lock`` is the host's, taken by
    every lookup so that its result is one snapshot.
    """
    return IndexSet(list(_specs(owner)), read, lock)


def index_functions(owner: type[object]) -> Callable[[Any], object]:
    """Return a function giving what the indexes ``owner`` declares return for a value:
    the lone index's result as it is, or a tuple of them all, in the order of
    :func:`declared_indexes`. What an open keeps of each value replay reads
    (``IndexSet.rebuild_found``). ``Any``: the class says nothing of V."""
    functions = tuple(spec.fn for spec in _specs(owner))
    names = [_attribute_read(function) for function in functions]
    # Called once per value at open. Functions that only read an attribute, the commonest
    # (``lambda user: user.email``): that very read, from C, five times cheaper.
    if functions and None not in names:
        return operator.attrgetter(*cast(list[str], names))  # one: the attribute; more: a tuple
    # Else the lone function itself, no tuple; or each function called from the Python
    # frame of one lambda, cheaper than from C.
    if len(functions) == 1:
        return functions[0]
    if len(functions) == 2:
        first, second = functions
        return lambda value: (first(value), second(value))
    if len(functions) == 3:
        first, second, third = functions
        return lambda value: (first(value), second(value), third(value))
    return lambda value: tuple([function(value) for function in functions])


def _attribute_read(function: Callable[[Any], object]) -> str | None:
    """Return ``name`` if ``function`` is a plain function whose whole body returns an
    attribute ``name`` of its one argument (``lambda user: user.email``), else None:
    ``operator.attrgetter(name)`` then does exactly what it does (the same lookup, the
    same exceptions), without a Python frame."""
    if type(function) is not types.FunctionType:
        return None
    code = function.__code__
    if code.co_argcount != 1 or code.co_kwonlyargcount or code.co_flags & _NOT_PLAIN:
        return None
    steps = [(step.opname, step.argval) for step in dis.get_instructions(code)]
    steps = [step for step in steps if step[0] not in _NO_OPS]
    if (
        len(steps) == 3
        and steps[0] in {(load, code.co_varnames[0]) for load in _LOAD_ARGUMENT}
        and steps[1][0] == "LOAD_ATTR"
        and isinstance(steps[1][1], str)
        and steps[2] == ("RETURN_VALUE", None)
    ):
        return steps[1][1]
    return None


_NOT_PLAIN = (
    inspect.CO_VARARGS
    | inspect.CO_VARKEYWORDS
    | inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)
"""Code flags of a function that does more, or otherwise, than return what it computes."""

_NO_OPS = frozenset({"RESUME", "NOP", "CACHE"})
"""Instructions that do nothing a function's caller sees."""

_LOAD_ARGUMENT = ("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW")
"""The instructions loading a local variable alone, across Python versions."""


def _specs(owner: type[object]) -> list[IndexSpec[Any]]:
    """Return the specs of the indexes declared on ``owner`` and its bases, in order;
    found once per class (a database opens many collections of one class). Callers copy
    the list before changing it."""
    specs = _SPECS.get(owner)
    if specs is None:
        specs = []
        for name in dict.fromkeys(name for klass in owner.__mro__ for name in vars(klass)):
            found = inspect.getattr_static(owner, name)
            if isinstance(found, Index):
                specs.append(found.spec)
        _SPECS[owner] = specs
    return specs


_SPECS: weakref.WeakKeyDictionary[type[object], list[IndexSpec[Any]]] = weakref.WeakKeyDictionary()
"""The index specs each class declares (Any: a class says nothing of V to the checker)."""
