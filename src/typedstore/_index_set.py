"""IndexSet: the indexes of one collection, kept current by its writes.

The host (a collection, or ``TypedStore``) calls, under its lock:

- :meth:`IndexSet.plan` with a write's changes, before its record is written: it runs
  the index functions and checks every rule (unique, hashable, comparable), raising
  before anything changed;
- :meth:`IndexSet.apply` with that plan once the record is written: it cannot fail;
- :meth:`IndexSet.rebuild` at open, after migrations and replay, and for ``clear``;
- :meth:`IndexSet.begin` and :meth:`IndexSet.check_staged` in a transaction, to check
  each write at its call against the transaction's own view; its commit plans the net
  result like any write.

README.md, "Indexes", says what users see.
"""

from __future__ import annotations

import itertools
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Generic, TypeAlias

from ._errors import UniqueViolationError
from ._index_state import HashEntries, SortedEntries, UniqueEntries
from ._types import MISSING, K, V, _Missing

IndexKeys: TypeAlias = tuple[object, ...]
"""The index keys one value gives one index: none (None), one, or a multi index's elements."""

Change: TypeAlias = tuple[K, V | _Missing]
"""One key's write: its new value, or MISSING for a removal."""


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


@dataclass(slots=True)
class IndexPlan(Generic[K, V]):
    """What one write does to the indexes, checked: :meth:`IndexSet.apply` carries it out."""

    moves: list[Move[K, V]]
    appended: list[K]
    """Keys that end up inserted at the host's end (new, or removed and inserted again),
    in the order they got there: they take the next insertion positions."""
    removed: list[K]
    """Keys leaving the host."""


@dataclass(slots=True)
class StagedIndexes(Generic[K]):
    """A transaction's view of the indexes: the index keys its staged writes give."""

    staged: dict[K, list[IndexKeys]]
    """Key written in the transaction to its index keys, one tuple per index."""
    claims: list[dict[object, K]]
    """Per index, the index keys staged writes took, and by which key (unique indexes)."""


class IndexSet(Generic[K, V]):
    """The indexes of one host, and what lookups need: how to read a value, and the lock."""

    def __init__(
        self,
        specs: Sequence[IndexSpec[V]],
        read: Callable[[K], V],
        lock: AbstractContextManager[object],
    ) -> None:
        self.read = read
        """Return a copy of the value of a present key (called under ``lock``)."""
        self.lock = lock
        self._seqs: dict[K, int] = {}
        """Each present key's insertion position: orders the keys sharing an index key."""
        self._next_seq = itertools.count()
        self.indexes = [Maintained(spec, self._seqs) for spec in specs]
        self._keeps_order = any(spec.ordered or not spec.unique for spec in specs)
        """Whether any index lists several keys per index key, so needs insertion positions:
        unique hash indexes alone do not pay for ``_seqs``."""
        self._named = {index.spec.name: index for index in self.indexes}

    def __len__(self) -> int:
        return len(self.indexes)

    def named(self, name: str) -> Maintained[K, V]:
        """Return the index called ``name``."""
        index = self._named.get(name)
        if index is None:
            raise LookupError(f"no index named {name!r} is declared here")
        return index

    # -- writes ------------------------------------------------------------------------------

    def plan(self, changes: Sequence[Change[K, V]]) -> IndexPlan[K, V]:
        """Return what ``changes``, one write's or one transaction's, do to the indexes.

        ``changes`` are in the order the host applies them; a key may come more than
        once (a removal then an insert moves it to the end, as in the host). Runs the
        index functions (their exceptions propagate unchanged) and raises
        UniqueViolationError, or TypeError for an index key that is not hashable or,
        in an ordered index, not comparable with the others, before anything changed.
        Only the net result is checked: two entries may swap a unique index key.
        """
        if len(changes) == 1:
            return self._plan_one(*changes[0])
        seqs = self._seqs
        net, appended = _net(changes, seqs)
        if not self._keeps_order:
            appended = []
        moved = {key for key in appended if key in seqs}
        moves: list[Move[K, V]] = []
        for index in self.indexes:
            start = len(moves)
            for key, new in net:
                old = index.held_keys(key)
                fresh = () if isinstance(new, _Missing) else index.index_keys(key, new)
                if old != fresh or key in moved:
                    moves.append((index, key, old, fresh))
            if index.spec.unique and len(moves) > start:
                _check_unique(index, moves[start:])
            if index.spec.ordered and len(moves) > start:
                _check_ordered(index, moves[start:])
        removed = [key for key, new in net if new is MISSING and key in seqs]
        return IndexPlan(moves, appended, removed)

    def _plan_one(self, key: K, new: V | _Missing) -> IndexPlan[K, V]:
        """Return :meth:`plan` of one change: the path of every single write, kept short."""
        moves: list[Move[K, V]] = []
        for index in self.indexes:
            old = index.held_keys(key)
            fresh = () if isinstance(new, _Missing) else index.index_keys(key, new)
            if old == fresh:
                continue
            moves.append((index, key, old, fresh))
            if index.unique:
                holder_of = index.entries.holder
                for index_key in fresh:
                    holder = holder_of(index_key)
                    if not isinstance(holder, _Missing) and holder != key:
                        raise _violation(index, index_key, holder, key)
            if index.ordered:
                _check_ordered(index, moves[-1:])
        present = key in self._seqs
        if isinstance(new, _Missing):
            return IndexPlan(moves, [], [key] if present else [])
        return IndexPlan(moves, [key] if self._keeps_order and not present else [], [])

    def apply(self, plan: IndexPlan[K, V]) -> None:
        """Carry out ``plan``, once the write's record is written; never raises.

        Every removal before every addition: a unique index key passing from one key
        to another is free before it is taken.
        """
        seqs = self._seqs
        for index, key, old, _ in plan.moves:
            if old:
                index.forget(key, seqs.get(key, 0), old)
        for key in plan.appended:
            seqs[key] = next(self._next_seq)
        for index, key, _, fresh in plan.moves:
            index.hold(key, seqs.get(key, 0), fresh)
        for key in plan.removed:
            del seqs[key]

    def rebuild(self, entries: Iterable[tuple[K, V]]) -> None:
        """Build every index from ``entries``, in insertion order; on error change nothing.

        Raises UniqueViolationError listing every conflicting key, and TypeError for
        index keys that cannot be hashed or ordered; an exception an index function
        raises propagates with a note naming the key.
        """
        seqs: dict[K, int] = {}
        rebuilt = [Maintained(index.spec, seqs) for index in self.indexes]
        rows: list[list[tuple[K, int, IndexKeys]]] = [[] for _ in rebuilt]
        for seq, (key, value) in enumerate(entries):
            if self._keeps_order:
                seqs[key] = seq
            for index, found in zip(rebuilt, rows, strict=True):
                index_keys = _index_keys_at_open(index, key, value)
                if index_keys:
                    found.append((key, seq, index_keys))
        _check_unique_at_open(rebuilt, rows)
        for index, found in zip(rebuilt, rows, strict=True):
            _fill(index, found)
        self._seqs, self._next_seq = seqs, itertools.count(len(seqs))
        for index, fresh in zip(self.indexes, rebuilt, strict=True):
            index.entries, index.held = fresh.entries, fresh.held  # views keep their index

    # -- transactions --------------------------------------------------------------------------

    def begin(self) -> StagedIndexes[K]:
        """Return an empty view for a transaction that starts."""
        return StagedIndexes({}, [{} for _ in self.indexes])

    def check_staged(self, staged: StagedIndexes[K], key: K, new: V | _Missing) -> None:
        """Check a transaction's write of ``key`` against its view, then record it there.

        O(index keys of the write): the view holds only what the transaction wrote.
        Raises as :meth:`plan` does, with the view unchanged.
        """
        fresh = [
            () if isinstance(new, _Missing) else index.index_keys(key, new)
            for index in self.indexes
        ]
        for position, index in enumerate(self.indexes):
            added = [ik for ik in fresh[position] if ik not in index.held_keys(key)]
            if index.spec.unique:
                _check_staged_unique(staged, position, index, key, fresh[position])
            if index.spec.ordered and added:
                _check_comparable(index, [(key, ik) for ik in added], {key})
        staged.staged[key] = fresh
        for position, index in enumerate(self.indexes):
            if index.spec.unique:
                staged.claims[position].update(dict.fromkeys(fresh[position], key))


def _net(
    changes: Sequence[Change[K, V]], seqs: Mapping[K, int]
) -> tuple[list[Change[K, V]], list[K]]:
    """Return the net change of each key in ``changes``, and the keys appended, in order.

    A key absent at its insert (new, or removed earlier in ``changes``) goes to the
    end, as in the host; a present key keeps its place.
    """
    net: dict[K, V | _Missing] = {}
    appended: dict[K, None] = {}
    for key, new in changes:
        present = net[key] is not MISSING if key in net else key in seqs
        if isinstance(new, _Missing):
            appended.pop(key, None)
        elif not present:
            appended[key] = None
        net[key] = new
    return list(net.items()), list(appended)


def _check_unique(index: Maintained[K, V], moves: Sequence[Move[K, V]]) -> None:
    """Raise UniqueViolationError if ``moves`` would give an index key two holders."""
    after = {key: fresh for _, key, _, fresh in moves}
    claimed: dict[object, K] = {}
    holder_of = index.entries.holder
    for _, key, _, fresh in moves:
        for index_key in fresh:
            holder = holder_of(index_key)
            if (
                not isinstance(holder, _Missing)
                and holder != key
                and (holder not in after or index_key in after[holder])
            ):
                raise _violation(index, index_key, holder, key)
            other = claimed.setdefault(index_key, key)
            if other != key:
                raise _violation(index, index_key, other, key)


def _check_staged_unique(
    staged: StagedIndexes[K], position: int, index: Maintained[K, V], key: K, fresh: IndexKeys
) -> None:
    """Raise UniqueViolationError if a staged write of ``key`` takes a held index key."""
    for index_key in fresh:
        holder = index.entries.holder(index_key)
        # A holder the transaction wrote is judged by its staged index keys, below.
        if not isinstance(holder, _Missing) and holder != key and holder not in staged.staged:
            raise _violation(index, index_key, holder, key)
        claimer = staged.claims[position].get(index_key, MISSING)
        if (
            not isinstance(claimer, _Missing)
            and claimer != key
            and index_key in staged.staged[claimer][position]
        ):
            raise _violation(index, index_key, claimer, key)


def _violation(
    index: Maintained[K, V], index_key: object, holder: K, key: K
) -> UniqueViolationError:
    name = index.spec.name
    return UniqueViolationError(
        f"unique index {name!r}: index key {reprlib.repr(index_key)} is already held by key"
        f" {reprlib.repr(holder)}, so key {reprlib.repr(key)} cannot take it; nothing was"
        " written",
        index=name,
        index_key=index_key,
        key=holder,
        conflicts=((name, index_key, (holder, key)),),
    )


def _check_ordered(index: Maintained[K, V], moves: Sequence[Move[K, V]]) -> None:
    """Raise TypeError if an index key ``moves`` add cannot be ordered with the others."""
    added = [(key, ik) for _, key, old, fresh in moves for ik in fresh if ik not in old]
    if added:
        _check_comparable(index, added, {key for _, key, _, _ in moves})


def _check_comparable(
    index: Maintained[K, V], added: list[tuple[K, object]], changing: set[K]
) -> None:
    """Raise TypeError unless each of ``added``'s index keys orders with the index's others.

    Checked by searching the sorted entries (O(log n) comparisons), and sorting the
    added keys together; only when that fails are the entries of ``changing``, which
    the write replaces, left out of a full check.
    """
    entries = index.entries
    assert isinstance(entries, SortedEntries)
    for key, index_key in added:
        if index_key != index_key:  # NaN: compares false with everything, sorts nowhere
            raise _incomparable(index, key, index_key)
    # The common case, without a search: the index's keys all compare with each other,
    # so a key of the very builtin type of one of them compares with them all.
    if (
        len(added) == 1
        and type(added[0][1]) in _TOTAL_ORDERS
        and type(added[0][1]) is type(entries.first_index_key())
    ):
        return
    try:
        for _, index_key in added:
            entries.bisect(index_key)
        fits = len(added) < 2 or _sorts([index_key for _, index_key in added])
    except TypeError:
        fits = False
    if fits:
        return
    remaining = entries.index_keys_except(changing)
    if _sorts(remaining + [index_key for _, index_key in added]):
        return  # only keys this write replaces were in the way
    key, index_key = next(
        ((key, ik) for key, ik in added if not _sorts([*remaining, ik])), added[0]
    )
    raise _incomparable(index, key, index_key)


_TOTAL_ORDERS = frozenset({int, float, str, bytes})
"""Builtin types whose values all compare with each other (NaN aside, refused apart);
not datetime, whose naive and aware values do not."""


def _sorts(index_keys: list[object]) -> bool:
    """Return whether ``index_keys`` can be sorted."""
    try:
        sorted(index_keys)  # type: ignore[type-var]  # finding out is the point
    except TypeError:
        return False
    return True


def _incomparable(index: Maintained[K, V], key: K, index_key: object) -> TypeError:
    return TypeError(
        f"ordered index {index.spec.name!r}: index key {reprlib.repr(index_key)} of key"
        f" {reprlib.repr(key)} cannot be ordered with the index's other keys; nothing was"
        " written"
    )


def _index_keys_at_open(index: Maintained[K, V], key: K, value: V) -> IndexKeys:
    """Return ``value``'s index keys; an exception gets a note naming the index and key."""
    try:
        return index.index_keys(key, value)
    except Exception as exc:
        exc.add_note(f"raised by index {index.spec.name!r} for key {reprlib.repr(key)}")
        raise


def _check_unique_at_open(
    indexes: list[Maintained[K, V]], rows: list[list[tuple[K, int, IndexKeys]]]
) -> None:
    """Raise UniqueViolationError listing every index key the data gives several keys."""
    conflicts: list[tuple[str, object, tuple[object, ...]]] = []
    for index, found in zip(indexes, rows, strict=True):
        if not index.spec.unique:
            continue
        holders: dict[object, list[K]] = {}
        for key, _, index_keys in found:
            for index_key in index_keys:
                holders.setdefault(index_key, []).append(key)
        name = index.spec.name
        conflicts += [(name, ik, tuple(keys)) for ik, keys in holders.items() if len(keys) > 1]
    if conflicts:
        listed = "; ".join(
            f"index {name!r}: {reprlib.repr(ik)} held by keys {reprlib.repr(list(keys))}"
            for name, ik, keys in conflicts
        )
        name, index_key, keys = conflicts[0]
        raise UniqueViolationError(
            f"the data breaks {len(conflicts)} unique index key(s): {listed}; nothing was changed",
            index=name,
            index_key=index_key,
            key=keys[0],
            conflicts=tuple(conflicts),
        )


def _fill(index: Maintained[K, V], found: list[tuple[K, int, IndexKeys]]) -> None:
    """Put ``found`` rows, in insertion order, into a fresh index."""
    if not index.spec.ordered:
        for key, seq, index_keys in found:
            index.hold(key, seq, index_keys)
        return
    triples: list[tuple[object, ...]] = []
    for key, seq, index_keys in found:
        for index_key in index_keys:
            if index_key != index_key:
                raise _incomparable(index, key, index_key)
            triples.append((index_key, seq, key))
        index.held[key] = index_keys if index.spec.multi else index_keys[0]
    try:
        index.entries = SortedEntries(triples)
    except TypeError as exc:
        raise TypeError(
            f"ordered index {index.spec.name!r}: the data gives index keys that cannot be"
            " ordered with each other; nothing was changed"
        ) from exc
