"""Index state: one index's declaration, its entries, and the index keys each key holds.

:class:`Maintained` is one index; its entries live in one of three containers, one per
kind of index (README.md, "Indexes"):

- :class:`UniqueEntries`, a dict from index key to the one key holding it;
- :class:`HashEntries`, a dict from index key to the keys holding it, in the host's
  insertion order;
- :class:`SortedEntries`, a ``sortedcontainers.SortedList`` of ``(index key, seq, key)``
  triples: O(log n) per write and O(log n + k) per range.

``seq`` is a key's insertion position in its host, as :class:`~typedstore._index.IndexSet`
numbers them: it orders the keys that share an index key, so that lookups list them in
the host's insertion order. Nothing here runs user code except the index keys' own
``__hash__``, ``__eq__`` and ``__lt__``, which the plan already called on the same keys.
"""

from __future__ import annotations

import itertools
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Generic, TypeAlias, cast

from sortedcontainers import SortedList

from ._types import MISSING, K, V, _Missing

Triple = tuple[object, ...]
"""A sorted entry ``(index key, seq, key)``, or a bound ``(index key,)`` to search with."""


class UniqueEntries(Generic[K]):
    """A unique hash index: each index key held by at most one key."""

    __slots__ = ("_holders",)

    def __init__(self, holders: dict[object, K] | None = None) -> None:
        self._holders: dict[object, K] = {} if holders is None else holders

    def holder(self, index_key: object) -> K | _Missing:
        """Return the key holding ``index_key``, or MISSING."""
        return self._holders.get(index_key, MISSING)

    def keys_of(self, index_key: object) -> list[K]:
        """Return the keys holding ``index_key``, in insertion order."""
        holder = self._holders.get(index_key, MISSING)
        return [] if holder is MISSING else [holder]

    def count(self, index_key: object) -> int:
        """Return how many keys hold ``index_key``."""
        return 1 if index_key in self._holders else 0

    def add(self, key: K, seq: int, index_key: object) -> None:
        """Record that ``key`` holds ``index_key``."""
        self._holders[index_key] = key

    def discard(self, key: K, seq: int, index_key: object) -> None:
        """Forget that ``key`` holds ``index_key``."""
        del self._holders[index_key]

    def __len__(self) -> int:
        return len(self._holders)


class HashEntries(Generic[K]):
    """A hash index whose index keys may be held by many keys, listed in insertion order.

    A key that moves to an index key keeps its insertion position, so it may belong
    before keys already listed there: rather than inserting it in the middle (O(k)),
    the bucket is marked and sorted by ``seq`` at its next lookup.
    """

    __slots__ = ("_buckets", "_seqs", "_unsorted")

    def __init__(self, seqs: Mapping[K, int], held: Mapping[K, object] | None = None) -> None:
        self._buckets: dict[object, dict[K, None]] = {}
        self._seqs = seqs
        self._unsorted: set[object] = set()
        for key, index_key in (held or {}).items():  # in insertion order: buckets stay sorted
            bucket = self._buckets.get(index_key)
            if bucket is None:
                self._buckets[index_key] = {key: None}
            else:
                bucket[key] = None

    @classmethod
    def of_buckets(
        cls, seqs: Mapping[K, int], buckets: dict[object, dict[K, None]]
    ) -> HashEntries[K]:
        """Return the entries of ``buckets``: index key to its holders, in insertion order."""
        entries = cls(seqs)
        entries._buckets = buckets
        return entries

    def holder(self, index_key: object) -> K | _Missing:
        """Return the first key holding ``index_key``, or MISSING."""
        keys = self.keys_of(index_key)
        return keys[0] if keys else MISSING

    def keys_of(self, index_key: object) -> list[K]:
        """Return the keys holding ``index_key``, in insertion order."""
        bucket = self._buckets.get(index_key)
        if bucket is None:
            return []
        if index_key in self._unsorted:
            bucket = dict.fromkeys(sorted(bucket, key=self._seqs.__getitem__))
            self._buckets[index_key] = bucket
            self._unsorted.discard(index_key)
        return list(bucket)

    def count(self, index_key: object) -> int:
        """Return how many keys hold ``index_key``."""
        bucket = self._buckets.get(index_key)
        return 0 if bucket is None else len(bucket)

    def add(self, key: K, seq: int, index_key: object) -> None:
        """Record that ``key`` (at insertion position ``seq``) holds ``index_key``."""
        bucket = self._buckets.get(index_key)
        if bucket is None:
            self._buckets[index_key] = {key: None}
            return
        if self._seqs[next(reversed(bucket))] > seq:
            self._unsorted.add(index_key)
        bucket[key] = None

    def discard(self, key: K, seq: int, index_key: object) -> None:
        """Forget that ``key`` holds ``index_key``."""
        bucket = self._buckets[index_key]
        del bucket[key]
        if not bucket:
            del self._buckets[index_key]
            self._unsorted.discard(index_key)

    def __len__(self) -> int:
        return sum(map(len, self._buckets.values()))


class SortedEntries(Generic[K]):
    """An ordered index: entries sorted by index key, then by insertion position."""

    __slots__ = ("_sorted",)

    def __init__(self, triples: list[Triple] | None = None) -> None:
        # Rejected: bisect.insort on a plain list, O(n) per write (about 50 us at 100k
        # entries and 0.9 ms at 1M, against 3 us for SortedList's add and remove).
        self._sorted: SortedList[Triple] = SortedList()
        if triples:
            self._sorted.update(triples)

    def holder(self, index_key: object) -> K | _Missing:
        """Return the first key holding ``index_key``, or MISSING."""
        for key in self._keys_at(index_key):
            return key
        return MISSING

    def keys_of(self, index_key: object) -> list[K]:
        """Return the keys holding ``index_key``, in insertion order."""
        return list(self._keys_at(index_key))

    def count(self, index_key: object) -> int:
        """Return how many keys hold ``index_key``."""
        return sum(1 for _ in self._keys_at(index_key))

    def _keys_at(self, index_key: object) -> Iterator[K]:
        start = self._sorted.bisect_left((index_key,))
        for triple in self._sorted.islice(start):
            if triple[0] != index_key:
                return
            yield self.key_of(triple)

    def first_index_key(self) -> object:
        """Return the lowest index key, or MISSING if the index is empty."""
        return self._sorted[0][0] if self._sorted else MISSING

    def bisect(self, index_key: object) -> int:
        """Return where ``index_key`` goes; TypeError if it cannot be compared with it all."""
        return self._sorted.bisect_left((index_key,))

    def add(self, key: K, seq: int, index_key: object) -> None:
        """Record that ``key`` (at insertion position ``seq``) holds ``index_key``."""
        self._sorted.add((index_key, seq, key))

    def discard(self, key: K, seq: int, index_key: object) -> None:
        """Forget that ``key`` (at insertion position ``seq``) holds ``index_key``."""
        self._sorted.remove((index_key, seq, key))

    def keys_between(self, low: object, high: object, *, reverse: bool) -> Iterator[K]:
        """Yield the keys of the entries with ``low <= index key < high``; None is open."""
        return map(self.key_of, self.triples_between(low, high, reverse=reverse))

    def triples_between(self, low: object, high: object, *, reverse: bool) -> Iterator[Triple]:
        """Yield the ``(index key, seq, key)`` entries with ``low <= index key < high``."""
        sorted_list = self._sorted
        start = 0 if low is None else sorted_list.bisect_left((low,))
        stop = len(sorted_list) if high is None else sorted_list.bisect_left((high,))
        return sorted_list.islice(start, max(start, stop), reverse=reverse)

    def index_keys_except(self, keys: Set[K]) -> list[object]:
        """Return the index keys of every entry whose key is not in ``keys``, in order."""
        return [triple[0] for triple in self._sorted if triple[2] not in keys]

    def __len__(self) -> int:
        return len(self._sorted)

    @staticmethod
    def key_of(triple: Triple) -> K:
        """Return the key of an ``(index key, seq, key)`` entry."""
        # The list holds triples of this index's K; only the bounds searched with are
        # 1-tuples, and they are never stored.
        return cast(K, triple[2])


def first(keys: Iterator[K], offset: int, limit: int | None) -> list[K]:
    """Return ``keys`` from ``offset``, at most ``limit`` of them (None: all)."""
    return list(itertools.islice(keys, offset, None if limit is None else offset + limit))


IndexKeys: TypeAlias = tuple[object, ...]
"""The index keys one value gives one index: none (None), one, or a multi index's elements."""


@dataclass(frozen=True, slots=True)
class IndexSpec(Generic[V]):
    """What an index declares: its attribute name, its function of the value, its kind."""

    name: str
    fn: Callable[[V], object]
    unique: bool
    ordered: bool
    multi: bool


class Maintained(Generic[K, V]):
    """One index: its declaration, its entries, and the index keys each key holds."""

    __slots__ = ("entries", "fn", "held", "multi", "ordered", "spec", "unique")

    def __init__(self, spec: IndexSpec[V], seqs: dict[K, int]) -> None:
        self.spec = spec
        self.fn, self.unique, self.ordered, self.multi = (
            spec.fn,
            spec.unique,
            spec.ordered,
            spec.multi,
        )
        """The spec's fields, at one attribute lookup each: read on every write."""
        self.entries: UniqueEntries[K] | HashEntries[K] | SortedEntries[K] = (
            SortedEntries()
            if spec.ordered
            else UniqueEntries()
            if spec.unique
            else HashEntries(seqs)
        )
        self.held: dict[K, object] = {}
        """Key to its index key, or to its tuple of them for a multi index."""

    def index_keys(self, key: K, value: V) -> IndexKeys:
        """Return the index keys ``value`` gives; the function's exceptions propagate."""
        result = self.fn(value)
        if result is None:
            return ()
        if not self.multi:
            self._check_hashable(key, result)
            return (result,)
        if isinstance(result, str | bytes) or not isinstance(result, Iterable):
            raise TypeError(
                f"index {self.spec.name!r} is multi: its function must return an iterable of"
                f" index keys (not a str or bytes), got {reprlib.repr(result)} for key"
                f" {reprlib.repr(key)}"
            )
        elements = [element for element in result if element is not None]
        for element in elements:
            self._check_hashable(key, element)
        return tuple(dict.fromkeys(elements))  # duplicates within one value collapse

    def _check_hashable(self, key: K, index_key: object) -> None:
        try:
            hash(index_key)
        except TypeError as exc:
            raise TypeError(
                f"index {self.spec.name!r}: index key {reprlib.repr(index_key)} of key"
                f" {reprlib.repr(key)} is not hashable"
            ) from exc

    def held_keys(self, key: K) -> IndexKeys:
        """Return the index keys ``key`` holds now."""
        held = self.held.get(key, MISSING)
        if held is MISSING:
            return ()
        return held if self.multi else (held,)  # type: ignore[return-value]  # multi: a tuple

    def forget(self, key: K, seq: int, index_keys: IndexKeys) -> None:
        """Remove ``key``'s entries for ``index_keys``."""
        discard = self.entries.discard
        for index_key in index_keys:
            discard(key, seq, index_key)
        self.held.pop(key, None)

    def hold(self, key: K, seq: int, index_keys: IndexKeys) -> None:
        """Add ``key``'s entries for ``index_keys``."""
        add = self.entries.add
        for index_key in index_keys:
            add(key, seq, index_key)
        if index_keys:
            self.held[key] = index_keys if self.multi else index_keys[0]


Move: TypeAlias = tuple[Maintained[K, V], K, IndexKeys, IndexKeys]
"""One index's change for one key: ``(index, key, index keys before, index keys after)``."""
