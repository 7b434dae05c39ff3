"""A dict-backed host for the index layer, writing through it the way a collection will.

Every write plans its index changes first (so a refused write changes nothing), then
"writes the record" (changes the dict), then applies the plan. A transaction checks
each write against its own view and plans the net result at commit.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, Self, TypeVar

from pydantic import BaseModel

from typedstore._index import Index, IndexView, declared_indexes
from typedstore._index_set import Change, StagedIndexes
from typedstore._types import MISSING, K, V, _Missing

T = TypeVar("T")


class Member(BaseModel):
    """A record with the fields the tests index: unique email, ordered age, tags."""

    name: str
    email: str | None = None
    age: int = 0
    tags: list[str] = []


class Host(Generic[K, V]):
    """A dict-backed collection whose writes keep its class's indexes current."""

    def __init__(self, entries: Iterable[tuple[K, V]] = ()) -> None:
        self.data: dict[K, V] = {}
        self.lock = threading.RLock()
        self._indexes = declared_indexes(type(self), self._read, self.lock)
        loaded = dict(entries)
        self._indexes.rebuild(loaded.items())  # as an open does, after replay
        self.data = loaded

    def _read(self, key: K) -> V:
        return copy.deepcopy(self.data[key])

    def _index_view(self, index: Index[V, T]) -> IndexView[K, V, T]:
        return IndexView(self._indexes, index)

    def reopen(self) -> Self:
        """Return a new host of the same class holding the same entries, indexes rebuilt."""
        return type(self)(self.data.items())

    def __setitem__(self, key: K, value: V) -> None:
        self.write([(key, value)])

    def __delitem__(self, key: K) -> None:
        if key not in self.data:
            raise KeyError(key)
        self.write([(key, MISSING)])

    def write(self, changes: list[Change[K, V]]) -> None:
        """Write ``changes`` as one record: plan, write, apply."""
        with self.lock:
            plan = self._indexes.plan(changes)
            for key, new in changes:  # the record is written: memory follows
                if isinstance(new, _Missing):
                    self.data.pop(key, None)
                else:
                    self.data[key] = new
            self._indexes.apply(plan)

    def clear(self) -> None:
        """Remove every entry, rebuilding the (now empty) indexes."""
        with self.lock:
            self._indexes.rebuild(())
            self.data.clear()

    def transaction(self) -> HostTransaction[K, V]:
        """Return a transaction over this host."""
        return HostTransaction(self)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self.data))


class HostTransaction(Generic[K, V]):
    """Writes staged against the transaction's own view, committed as one net change."""

    def __init__(self, host: Host[K, V]) -> None:
        self._host = host
        self._writes: list[Change[K, V]] = []
        self._staged: StagedIndexes[K] = host._indexes.begin()

    def __enter__(self) -> Self:
        self._host.lock.acquire()
        return self

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        try:
            if exc_type is None and self._writes:
                self._host.write(self._writes)  # in order: the plan nets them
        finally:
            self._host.lock.release()

    def __setitem__(self, key: K, value: V) -> None:
        self._host._indexes.check_staged(self._staged, key, value)
        self._writes.append((key, value))

    def view(self, index: Index[V, T]) -> IndexView[K, V, T]:
        """Return the lookups of ``index`` as this transaction sees them."""
        return IndexView(self._host._indexes, index, staged=self._staged, read=self.read)

    def read(self, key: K) -> V:
        """Return a copy of the value of ``key`` as this transaction sees it."""
        for written, new in reversed(self._writes):
            if written == key:
                assert not isinstance(new, _Missing)
                return copy.deepcopy(new)
        return self._host._read(key)

    def __contains__(self, key: K) -> bool:
        for written, new in reversed(self._writes):
            if written == key:
                return not isinstance(new, _Missing)
        return key in self._host.data

    def __delitem__(self, key: K) -> None:
        if key not in self:
            return  # removing an absent key writes nothing, as in a store
        self._host._indexes.check_staged(self._staged, key, MISSING)
        self._writes.append((key, MISSING))


class Members(Host[str, Member]):
    """Members with every kind of index."""

    by_email: Index[Member, str] = Index(lambda m: m.email, unique=True)
    by_age: Index[Member, int] = Index(lambda m: m.age, ordered=True)
    by_tag: Index[Member, str] = Index(lambda m: m.tags, multi=True)
    by_name: Index[Member, str] = Index(lambda m: m.name)
