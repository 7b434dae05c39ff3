"""Index state: one index's declaration, its entries, and the index keys each key holds.

:class:`Maintained` is one index; its entries live in one of three containers, one per
kind of index (README.md, "Indexes"):

- :class:`UniqueEntries`, a dict from index key to the one key holding it;
- :class:`HashEntries`, a dict from index key to the keys holding it, in the host's
  insertion order;
- :class:`SortedEntries`, those buckets and a ``sortedcontainers.SortedList`` of the
  distinct index keys: O(1) per write that keeps an index key, O(log d) per one that
  adds or drops one (d distinct index keys), O(log d + k) per range.

``seq`` is a key's insertion position in its host, as :class:`~typedstore._index.IndexSet`
numbers them: it orders the keys that share an index key, so that lookups list them in
the host's insertion order. Nothing here runs user code except the index keys' own
``__hash__``, ``__eq__`` and ``__lt__``, which the plan already called on the same keys.
"""

from __future__ import annotations

import itertools
import reprlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeAlias, cast

from sortedcontainers import SortedList

from ._types import MISSING, K, V, _Missing

Triple = tuple[object, ...]
"""An ordered index's entry as a range lists it: ``(index key, seq, key)``."""


class UniqueEntries(Generic[K]):
    """A unique hash index: each index key held by at most one key."""

    __slots__ = ("holders",)

    def __init__(self, holders: dict[object, K] | None = None) -> None:
        self.holders: dict[object, K] = {} if holders is None else holders
        """Index key to the key holding it; read and written directly by the path of a
        unique hash index alone (``IndexSet``), a write's shortest."""

    def holder(self, index_key: object) -> K | _Missing:
        """Return the key holding ``index_key``, or MISSING."""
        return self.holders.get(index_key, MISSING)

    def keys_of(self, index_key: object) -> list[K]:
        """Return the keys holding ``index_key``, in insertion order."""
        holder = self.holders.get(index_key, MISSING)
        return [] if holder is MISSING else [holder]

    def count(self, index_key: object) -> int:
        """Return how many keys hold ``index_key``."""
        return 1 if index_key in self.holders else 0

    def add(self, key: K, seq: int, index_key: object) -> None:
        """Record that ``key`` holds ``index_key``."""
        self.holders[index_key] = key

    def append(self, key: K, index_key: object) -> None:
        """:meth:`add` for a key the host has just put at its end."""
        self.holders[index_key] = key

    def discard(self, key: K, seq: int, index_key: object) -> None:
        """Forget that ``key`` holds ``index_key``."""
        del self.holders[index_key]

    def __len__(self) -> int:
        return len(self.holders)

    def by_key(self) -> dict[K, object]:
        """Return each key holding an index key with that index key: the held keys of an
        index built from its entries."""
        return dict(zip(self.holders.values(), self.holders, strict=True))


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
    def of_buckets(cls, seqs: Mapping[K, int], buckets: dict[object, dict[K, None]]) -> Self:
        """Return the entries of ``buckets``: index key to its holders, in insertion order
        (an ordered index's: index keys in order, which its sorted keys then take at once).
        An open gives them as lists, cheaper to make than dicts: lookups read them alike,
        and :meth:`by_key` makes them the dicts writes need before the first write."""
        entries = cls(seqs)
        entries._buckets = buckets
        entries._took_buckets()
        return entries

    def _took_buckets(self) -> None:
        """Follow ``_buckets``, just replaced by :meth:`of_buckets`."""

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

    def append(self, key: K, index_key: object) -> None:
        """:meth:`add` for a key the host has just put at its end: last in its bucket."""
        bucket = self._buckets.get(index_key)
        if bucket is None:
            self.add(key, 0, index_key)  # ``seq`` is not read for a new bucket
        else:
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

    def by_key(self, *, tuples: bool = False) -> dict[K, object]:
        """Return each key with the index key it holds (in a 1-tuple with ``tuples``, one
        per index key): the held keys of an index built from its entries, whose keys
        each hold one index key (so not a multi index's, unless it gave one each). Makes
        buckets given as lists (see :meth:`of_buckets`) dicts, in place: called again, it
        gives the same."""
        held: dict[K, object] = {}
        buckets = cast(dict[object, Collection[K]], self._buckets)
        for index_key, bucket in buckets.items():
            held.update(dict.fromkeys(bucket, (index_key,) if tuples else index_key))
            if isinstance(bucket, list):
                buckets[index_key] = dict.fromkeys(bucket)
        return held


class SortedEntries(HashEntries[K]):
    """An ordered index: the buckets of a hash index, and its distinct index keys sorted.

    A write touches its bucket (O(1)) and, only when an index key comes or goes, the
    sorted keys (O(log d), d distinct index keys); a range bisects the sorted keys and
    lists their buckets. Rejected: one sorted list of ``(index key, seq, key)`` triples,
    an O(log n) insert and a tuple on every write, and more memory per entry.
    """

    __slots__ = ("_kind", "_order")

    def __init__(self, seqs: Mapping[K, int], held: Mapping[K, object] | None = None) -> None:
        super().__init__(seqs, held)
        # Rejected: bisect.insort on a plain list, O(d) per new index key. ``Any``: an
        # ordered index's keys compare with each other (the plan checks), which the
        # checker cannot know of ``object``; TypeError here if they do not.
        self._order: SortedList[Any] = SortedList(self._buckets)
        self._kind: type | _Missing | None = MISSING
        """See :meth:`kind`; MISSING until first asked (so for every way of building)."""

    def _took_buckets(self) -> None:
        self._order = SortedList(self._buckets)

    def kind(self) -> type | None:
        """Return the type every index key held has, when it is one of ``TOTAL_ORDERS``
        and the same for all (not a subclass), else None (also when it is not known).

        A new index key of that very type compares with every one held, so needs no
        search to show it: what a write adding one checks first. Found once, from the
        index keys, then kept by :meth:`add`; never wrong, at worst None.
        """
        kind = self._kind
        if isinstance(kind, _Missing):
            kinds = set(map(type, self._buckets))
            kind = self._kind = kinds.pop() if len(kinds) == 1 else None
            if kind not in TOTAL_ORDERS:
                kind = self._kind = None
        return kind

    def distinct(self) -> Iterator[object]:
        """Iterate over the distinct index keys, lowest first."""
        return iter(self._order)

    def bisect(self, index_key: object) -> int:
        """Return where ``index_key`` goes; TypeError if it cannot be compared with it all."""
        return self._order.bisect_left(index_key)

    def add(self, key: K, seq: int, index_key: object) -> None:
        """Record that ``key`` (at insertion position ``seq``) holds ``index_key``."""
        # HashEntries.add, inlined: on the path of every write to an ordered index.
        bucket = self._buckets.get(index_key)
        if bucket is None:
            kind = type(index_key)
            if kind is not self._kind and not isinstance(self._kind, _Missing):
                # The first index key sets the kind, one of another type clears it.
                self._kind = None if self._buckets or kind not in TOTAL_ORDERS else kind
            self._order.add(index_key)
            self._buckets[index_key] = {key: None}
            return
        if self._seqs[next(reversed(bucket))] > seq:
            self._unsorted.add(index_key)
        bucket[key] = None

    def discard(self, key: K, seq: int, index_key: object) -> None:
        """Forget that ``key`` holds ``index_key``."""
        super().discard(key, seq, index_key)
        if index_key not in self._buckets:
            self._order.remove(index_key)

    def _index_keys_between(self, low: object, high: object, reverse: bool) -> Iterator[object]:
        order = self._order
        start = 0 if low is None else order.bisect_left(low)
        stop = len(order) if high is None else order.bisect_left(high)
        return order.islice(start, max(start, stop), reverse=reverse)

    def keys_between(self, low: object, high: object, *, reverse: bool) -> Iterator[K]:
        """Yield the keys of the entries with ``low <= index key < high``; None is open."""
        for index_key in self._index_keys_between(low, high, reverse):
            keys = self.keys_of(index_key)
            yield from reversed(keys) if reverse else keys

    def triples_between(self, low: object, high: object, *, reverse: bool) -> Iterator[Triple]:
        """Yield the ``(index key, seq, key)`` entries with ``low <= index key < high``."""
        seqs = self._seqs
        for index_key in self._index_keys_between(low, high, reverse):
            keys = self.keys_of(index_key)
            for key in reversed(keys) if reverse else keys:
                yield (index_key, seqs[key], key)

    def index_keys_except(self, keys: Set[K]) -> list[object]:
        """Return, in order, the index keys held by a key not in ``keys``."""
        buckets = self._buckets
        return [ik for ik in self._order if any(key not in keys for key in buckets[ik])]

    @staticmethod
    def key_of(triple: Triple) -> K:
        """Return the key of an ``(index key, seq, key)`` entry."""
        return cast(K, triple[2])  # the entries hold this index's K


def first(keys: Iterator[K], offset: int, limit: int | None) -> list[K]:
    """Return ``keys`` from ``offset``, at most ``limit`` of them (None: all)."""
    return list(itertools.islice(keys, offset, None if limit is None else offset + limit))


TOTAL_ORDERS = frozenset({int, float, str, bytes})
"""Builtin types whose values all compare with each other (NaN aside, refused apart);
not datetime, whose naive and aware values do not."""


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
            SortedEntries(seqs)
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
            self.check_hashable(key, result)
            return (result,)
        if isinstance(result, str | bytes) or not isinstance(result, Iterable):
            raise TypeError(
                f"index {self.spec.name!r} is multi: its function must return an iterable of"
                f" index keys (not a str or bytes), got {reprlib.repr(result)} for key"
                f" {reprlib.repr(key)}"
            )
        elements = [element for element in result if element is not None]
        for element in elements:
            self.check_hashable(key, element)
        return tuple(dict.fromkeys(elements))  # duplicates within one value collapse

    def check_hashable(self, key: K, index_key: object) -> None:
        """Raise TypeError, naming the index and ``key``, unless ``index_key`` is hashable."""
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
        if not index_keys:
            return
        if len(index_keys) == 1:  # every index but a multi one: kept short
            self.entries.discard(key, seq, index_keys[0])
        else:
            discard = self.entries.discard
            for index_key in index_keys:
                discard(key, seq, index_key)
        self.held.pop(key, None)

    def hold(self, key: K, seq: int, index_keys: IndexKeys) -> None:
        """Add ``key``'s entries for ``index_keys``."""
        if not index_keys:
            return
        if self.multi:
            add = self.entries.add
            for index_key in index_keys:
                add(key, seq, index_key)
            self.held[key] = index_keys
        else:
            self.entries.add(key, seq, index_keys[0])
            self.held[key] = index_keys[0]


Move: TypeAlias = tuple[Maintained[K, V], K, IndexKeys, IndexKeys]
"""One index's change for one key: ``(index, key, index keys before, index keys after)``."""
