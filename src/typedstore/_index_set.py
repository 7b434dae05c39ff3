"""IndexSet: the indexes of one collection, kept current by its writes.

The host (a collection, or ``TypedStore``) calls, under its lock:

- :meth:`IndexSet.plan` with a write's changes, before its record is written: it runs
  the index functions and checks every rule (unique, hashable, comparable), raising
  before anything changed;
- :meth:`IndexSet.apply` with that plan once the record is written: it cannot fail;
- :meth:`IndexSet.rebuild` at open, after migrations and replay, and for ``clear``;
- :meth:`IndexSet.follow` with what another process wrote, caught up (shared mode);
- :meth:`IndexSet.begin` and :meth:`IndexSet.check_staged` in a transaction, to check
  each write at its call against the transaction's own view; its commit plans the net
  result like any write.

README.md, "Indexes", says what users see.
"""

from __future__ import annotations

import functools
import operator
import reprlib
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar, cast

from . import _index_rules
from ._errors import StoreClosedError
from ._index_state import (
    HashEntries,
    IndexKeys,
    IndexSpec,
    Maintained,
    Move,
    SortedEntries,
    UniqueEntries,
)
from ._types import MISSING, K, V, _Missing

T = TypeVar("T")

Change: TypeAlias = tuple[K, V | _Missing]
"""One key's write: its new value, or MISSING for a removal."""


IndexPlan: TypeAlias = tuple[Sequence[Move[K, V]], Sequence[K], Sequence[K]]
"""What one write does to the indexes, checked, for :meth:`IndexSet.apply`: its moves;
the keys that end up inserted at the host's end (new, or removed and inserted again), in
the order they got there, which take the next insertion positions; the keys leaving the
host. Plain tuples: built on the path of every write (as ``_records.Write``)."""

_NOTHING: IndexPlan[Any, Any] = ((), (), ())
"""The plan of a write that changes no index."""

HeldLater: TypeAlias = Callable[[], dict[K, object]]
"""What makes an index's held keys (key to its index key, or tuple of them), once its
entries are built: called at once by a rebuild, at the first write after an open."""

Pending: TypeAlias = tuple[Sequence[K], dict[K, int], list[HeldLater[K]]]
"""What ``IndexSet._finish`` takes: the keys in order, their insertion positions to
fill, and what makes each index's held keys."""


@dataclass(slots=True)
class StagedIndexes(Generic[K]):
    """A transaction's view of the indexes: the index keys its staged writes give."""

    staged: dict[K, list[IndexKeys]]
    """Key written in the transaction to its index keys, one tuple per index (a removal:
    empty tuples)."""
    claims: list[dict[object, K]]
    """Per index, the index keys staged writes took, and by which key (unique indexes)."""
    appended: dict[K, None] = field(default_factory=dict)
    """Keys the transaction put at the end (new, or removed then inserted), in order."""
    absent: set[K] = field(default_factory=set)
    """Keys the transaction removed (and did not insert again)."""


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
        self.entries: Callable[[], Iterable[tuple[K, V]]] = list
        """Return the host's entries in memory, in order: what :meth:`settle` rebuilds from
        (the host sets it; an empty host's by default)."""
        self.closed: str | None = None
        """The message lookups raise once the host closed (:meth:`close`), which keeps
        :attr:`unsettled` set: whatever clears it sets it to ``closed is not None``."""
        self.unsettled = False
        """Set by the host while a write it planned may reach the log without the plan
        being applied: a KeyboardInterrupt can land on any line of the cleanup applying
        it. :meth:`settle` then rebuilds from memory, the truth, before the next use."""
        self._seqs: dict[K, int] = {}
        """Each present key's insertion position: orders the keys sharing an index key."""
        self.pending: Pending[K] | None = None
        """What an open left to build before the first write (:meth:`ready`): the
        insertion positions and each index's held keys, which only writes read. Data,
        not a bound method: no reference cycle keeps this set alive."""
        self._next_seq = 0
        """The insertion position the next key appended takes."""
        self.indexes = [Maintained(spec, self._seqs) for spec in specs]
        self._keeps_order = any(spec.ordered or not spec.unique for spec in specs)
        """Whether any index lists several keys per index key, so needs insertion positions:
        unique hash indexes alone do not pay for ``_seqs``."""
        self._named = {index.spec.name: index for index in self.indexes}
        self._lone = self.indexes[0] if len(specs) == 1 and not self._keeps_order else None
        """The one index, when it is a unique hash index alone (not multi): the
        commonest case, given the shortest path through :meth:`plan_one` and :meth:`apply`."""
        if self._lone is not None and self._lone.multi:
            self._lone = None
        only = self.indexes[0] if len(specs) == 1 else None
        self._single = only if only is not None and self._keeps_order and not only.multi else None
        """The one index, when it is alone, not multi, and lists several keys per index key
        or orders them (ordered, or not unique): an insert of a new key, the commonest write,
        takes the shorter path of :meth:`_plan_single` and :meth:`_apply_single`."""

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
            return self.plan_one(*changes[0])
        if self.pending is not None:
            self.ready()
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
                _index_rules.check_unique(index, moves[start:])
            if index.spec.ordered and len(moves) > start:
                _index_rules.check_ordered(index, moves[start:])
        removed = [key for key, new in net if new is MISSING and key in seqs]
        return moves, appended, removed

    def plan_one(self, key: K, new: V | _Missing) -> IndexPlan[K, V]:
        """Return ``plan([(key, new)])``: the path of every single write, kept short."""
        if self.pending is not None:
            self.ready()
        lone, single = self._lone, self._single
        if lone is not None:
            planned = self._plan_lone(lone, key, new)
            if planned is None:
                return _NOTHING
            _, old, fresh = planned
            was: IndexKeys = () if old is MISSING else (old,)
            return ((lone, key, was, () if fresh is MISSING else (fresh,)),), (), ()
        if single is not None:
            inserted, rest = self._plan_single(single, key, new)
            if isinstance(inserted, _Missing):
                return cast(IndexPlan[K, V], rest)
            return ((single, inserted, (), (rest,)),), (inserted,), ()
        return self._plan_any(key, new)

    def _plan_any(self, key: K, new: V | _Missing) -> IndexPlan[K, V]:
        """Return ``plan_one(key, new)`` for any indexes."""
        moves: list[Move[K, V]] = []
        for index in self.indexes:
            held = index.held.get(key, MISSING)
            old: IndexKeys = () if held is MISSING else held if index.multi else (held,)  # type: ignore[assignment]  # multi: a tuple
            if new is MISSING:
                fresh: IndexKeys = ()
            elif index.multi:
                fresh = index.index_keys(key, new)
            else:
                index_key = index.fn(new)
                if index_key is None:
                    fresh = ()
                elif index_key is held:
                    continue
                else:
                    fresh = (index_key,)
                    try:
                        hash(index_key)
                    except TypeError:
                        index.check_hashable(key, index_key)  # raises, naming the index
                        raise
            if old == fresh:
                continue
            moves.append((index, key, old, fresh))
            if index.unique:
                holder_of = index.entries.holder
                for index_key in fresh:
                    holder = holder_of(index_key)
                    if holder is not MISSING and holder != key:
                        raise _index_rules.violation(index, index_key, holder, key)
            # An index key the index holds already needs no check: see check_comparable.
            if index.ordered and (len(fresh) != 1 or not index.entries.count(fresh[0])):
                _index_rules.check_ordered(index, moves[-1:])
        present = key in self._seqs
        if new is MISSING:
            return moves, [], [key] if present else []
        return moves, [key] if self._keeps_order and not present else [], []

    def single_write(self) -> tuple[Callable[[K, V | _Missing], object], Callable[[object], None]]:
        """Return how a host plans a single write (as :meth:`plan_one`, raising as it
        does) and how it then applies what that returned (as :meth:`apply`): for an index
        alone, shorter paths whose plans are made for their own apply only. Called after
        :meth:`ready`, under the lock."""
        # The applies take the plans their own planner made: what the host hands back.
        lone, single = self._lone, self._single
        if lone is not None:
            apply_lone: Callable[[Any], None] = functools.partial(self._apply_lone, lone)
            return functools.partial(self._plan_lone, lone), apply_lone
        if single is not None:
            apply_single: Callable[[Any], None] = functools.partial(self._apply_single, single)
            return functools.partial(self._plan_single, single), apply_single
        apply: Callable[[Any], None] = self.apply
        return self.plan_one, apply

    def _plan_single(
        self, single: Maintained[K, V], key: K, new: V | _Missing
    ) -> tuple[K | _Missing, object]:
        """Plan a single write for one index alone, not multi, that keeps insertion
        positions: ``(key, index key)`` for the insert of a new key with an index key,
        the commonest write; else ``(MISSING, plan)``, the :data:`IndexPlan` of
        :meth:`_plan_any`. Raises as :meth:`plan` does."""
        if new is MISSING or key in self._seqs:
            return MISSING, self._plan_any(key, new)
        index_key = single.fn(new)
        if index_key is None:
            return MISSING, ((), (key,), ())
        entries: HashEntries[K] = single.entries  # type: ignore[assignment]  # keeps positions; no cast(), a call
        try:
            bucket = entries._buckets.get(index_key)
        except TypeError:
            single.check_hashable(key, index_key)  # raises, naming the index, if unhashable
            raise
        if bucket is not None:
            # An index key the index holds already needs no order check: see check_comparable.
            if single.unique:
                raise _index_rules.violation(single, index_key, next(iter(bucket)), key)
        elif single.ordered:
            _index_rules.check_fits(single, key, index_key)
        return key, index_key

    def _apply_single(self, single: Maintained[K, V], planned: tuple[K | _Missing, object]) -> None:
        """Apply what :meth:`_plan_single` returned, once the write is in the log."""
        key, rest = planned
        if isinstance(key, _Missing):
            self.apply(cast(IndexPlan[K, V], rest))
            return
        seq = self._next_seq  # the insert of a new key: last in the host, and its bucket
        self._seqs[key] = seq
        self._next_seq = seq + 1
        single.entries.append(key, rest)
        single.held[key] = rest

    def _plan_lone(
        self, lone: Maintained[K, V], key: K, new: V | _Missing
    ) -> tuple[K, object, object] | None:
        """Plan a single write for a unique hash index alone: ``(key, index key it held,
        index key it holds after)``, each MISSING for none; None when nothing changes.
        Raises as :meth:`plan` does."""
        held = lone.held.get(key, MISSING)
        index_key = None if new is MISSING else lone.fn(new)
        if index_key is None:
            return None if held is MISSING else (key, held, MISSING)
        if index_key is held or (held is not MISSING and held == index_key):
            return None
        try:
            holder = lone.entries.holders.get(index_key, MISSING)  # type: ignore[union-attr]  # a unique hash index's
        except TypeError:
            lone.check_hashable(key, index_key)  # raises, naming the index, if unhashable
            raise
        if holder is not MISSING and holder != key:
            raise _index_rules.violation(lone, index_key, holder, key)
        return key, held, index_key

    def _apply_lone(self, lone: Maintained[K, V], planned: tuple[K, object, object] | None) -> None:
        """Apply what :meth:`_plan_lone` returned, once the write is in the log."""
        if planned is None:
            return
        key, old, fresh = planned
        holders = lone.entries.holders  # type: ignore[union-attr]  # a unique hash index's
        if old is not MISSING:
            del holders[old]
        if fresh is MISSING:
            lone.held.pop(key, None)
        else:
            holders[fresh] = key
            lone.held[key] = fresh

    def apply(self, plan: IndexPlan[K, V]) -> None:
        """Carry out ``plan``, once the write's record is written; never raises.

        Every removal before every addition: a unique index key passing from one key
        to another is free before it is taken.
        """
        moves, appended, removed = plan
        lone = self._lone
        if lone is not None:  # one index key or none per key, no insertion positions to keep
            holders, held = lone.entries.holders, lone.held  # type: ignore[union-attr]  # a unique hash index's
            for _, key, old, _ in moves:
                if old:
                    del holders[old[0]]
                    held.pop(key, None)
            for _, key, _, fresh in moves:
                if fresh:
                    holders[fresh[0]] = key
                    held[key] = fresh[0]
            return
        seqs = self._seqs
        if len(moves) == 1 and len(appended) == 1 and not removed:
            index, key, old, fresh = moves[0]
            if key is appended[0] and not old and len(fresh) == 1:  # the insert of a new key
                seq = self._next_seq
                seqs[key] = seq
                self._next_seq = seq + 1
                index.entries.append(key, fresh[0])
                index.held[key] = fresh if index.multi else fresh[0]
                return
        for index, key, old, _ in moves:
            if old:
                index.forget(key, seqs.get(key, 0), old)
        for key in appended:
            seqs[key] = self._next_seq
            self._next_seq += 1
        for index, key, _, fresh in moves:
            index.hold(key, seqs.get(key, 0), fresh)
        for key in removed:
            del seqs[key]

    def follow(self, changes: Sequence[Change[K, V]]) -> None:
        """Apply ``changes`` other processes made (a catch-up's, in shared and read-only
        mode), key by key: :meth:`plan`, then :meth:`apply`. O(changes), not O(entries).

        ``changes`` give each touched key once, in the order :meth:`plan` takes: removals,
        replacements, then keys put at the host's end in its order, a key that moved
        there removed first. Raises as :meth:`plan` does, nothing changed: the caller
        then rebuilds.
        """
        self.apply(self.plan(changes))

    def settle(self) -> None:
        """Rebuild from memory if a write may have left the indexes behind
        (:attr:`unsettled`); every lookup and write calls it first, under the lock.
        StoreClosedError once the host closed (:meth:`close`)."""
        if self.unsettled:
            if self.closed is not None:
                raise StoreClosedError(self.closed)
            self.rebuild(self.entries())

    def settle_for_write(self) -> None:
        """:meth:`settle`, for a write about to be planned: once the host closed, nothing
        (the host refuses the write itself, finding itself closed, with its own message)."""
        if self.unsettled and self.closed is None:
            self.rebuild(self.entries())

    def close(self, message: str) -> None:
        """Refuse every lookup from now on, with StoreClosedError(``message``): the host
        closed. Marked :attr:`unsettled`, which every lookup tests already, so that a
        lookup through a view kept from before the close costs nothing more to refuse."""
        self.closed = message
        self.unsettled = True

    def rebuild(self, entries: Iterable[tuple[K, V]]) -> None:
        """Build every index from ``entries``, in insertion order; on error change nothing.

        Raises UniqueViolationError listing every conflicting key, and TypeError for
        index keys that cannot be hashed or ordered; an exception an index function
        raises propagates with a note naming the key.
        """
        pairs = list(entries)
        self.rebuild_columns([key for key, _ in pairs], [value for _, value in pairs])

    def rebuild_columns(self, keys: Sequence[K], values: Sequence[V]) -> None:
        """:meth:`rebuild` from the keys and, in the same order, their values: the form an
        open has, which builds without a tuple per entry (and the collector they wake)."""
        seqs = self._seqs_of(keys)
        rebuilt = [Maintained(index.spec, seqs) for index in self.indexes]
        # Whole columns at once, several times faster than entry by entry; anything
        # unusual (an error, a conflict, a NaN) takes the careful path, which says why.
        helds: list[HeldLater[K]] = []
        for index in rebuilt:
            try:
                found = list(map(index.fn, values))
            except Exception:
                break
            held_later = _fill_at_once(index, keys, found.__iter__, seqs)
            if held_later is None:
                break
            helds.append(held_later)
        else:
            for index, held_later in zip(rebuilt, helds, strict=True):
                index.held = held_later()
            self._take(rebuilt, seqs, len(keys))
            return
        rebuilt = [Maintained(index.spec, seqs) for index in self.indexes]
        _fill_carefully(rebuilt, list(zip(keys, values, strict=True)), seqs)
        self._take(rebuilt, seqs, len(keys))

    def rebuild_found(self, found: dict[K, object], keys: list[K] | None = None) -> bool:
        """:meth:`rebuild` from what ``_index.index_functions`` found for the host's values
        (the lone index's result, or a tuple of each index's), by key in the host's order,
        at open; False, changing nothing, for anything unusual (an exception, a conflict,
        a NaN), which a :meth:`rebuild` then explains.

        Builds what lookups read (each index's entries) and leaves what only writes read
        (the insertion positions, and the held keys of several indexes, made from their
        entries) to :meth:`ready`. A lone index (not multi) takes ``found`` itself as its
        held keys: no one else may keep it. ``keys``, if given, is ``list(found)``."""
        if keys is None:
            keys = list(found)
        seqs: dict[K, int] = {}  # filled by ready(): the entries share this very dict
        rebuilt = [Maintained(index.spec, seqs) for index in self.indexes]
        columns: list[Callable[[], Iterable[object]]]
        if len(rebuilt) == 1:
            columns = [found.values]
        else:  # a tuple per value, one per index
            rows = cast(dict[K, tuple[object, ...]], found)
            columns = [functools.partial(_column, rows, at) for at in range(len(rebuilt))]
        helds: list[HeldLater[K]] = []
        for index, column in zip(rebuilt, columns, strict=True):
            held_later = _fill_at_once(index, keys, column, seqs, found, len(rebuilt) == 1)
            if held_later is None:
                return False
            helds.append(held_later)
        self._take(rebuilt, seqs, len(keys))
        if self._keeps_order or len(rebuilt) > 1:
            self.pending = (keys, seqs, helds)
        else:  # a unique hash index alone: its held keys are ``found``, nothing to wait for
            self._finish(keys, seqs, helds)
        return True

    def ready(self) -> None:
        """Build what an open left to the first write (:attr:`pending`), if it has not
        been built yet: every write path calls it, under the lock, before it plans.

        Rebuilds it all from what the open kept, which no write has changed yet, so an
        exception here (a KeyboardInterrupt) leaves it to the next call to build again."""
        pending = self.pending
        if pending is not None:
            self._finish(*pending)
            self.pending = None

    def _finish(self, keys: Sequence[K], seqs: dict[K, int], helds: list[HeldLater[K]]) -> None:
        """Give each index its held keys and fill ``seqs``, the insertion positions of
        ``keys`` (the entries already share that dict), as :meth:`rebuild_found` left them."""
        made = [held_later() for held_later in helds]
        if self._keeps_order:
            seqs.update(zip(keys, range(len(keys)), strict=True))
        for index, held in zip(self.indexes, made, strict=True):
            index.held = held

    def _seqs_of(self, keys: Sequence[K]) -> dict[K, int]:
        return dict(zip(keys, range(len(keys)), strict=True)) if self._keeps_order else {}

    def _take(self, rebuilt: list[Maintained[K, V]], seqs: dict[K, int], count: int) -> None:
        """Make ``rebuilt``'s entries the indexes' (views keep their index objects), for
        ``count`` keys in all."""
        self._seqs, self._next_seq = seqs, count
        for index, fresh in zip(self.indexes, rebuilt, strict=True):
            index.entries, index.held = fresh.entries, fresh.held
        self.unsettled = self.closed is not None  # see closed
        self.pending = None

    # -- transactions --------------------------------------------------------------------------

    def begin(self) -> StagedIndexes[K]:
        """Return an empty view for a transaction that starts."""
        return StagedIndexes({}, [{} for _ in self.indexes])

    def check_staged(self, staged: StagedIndexes[K], key: K, new: V | _Missing) -> None:
        """Check a transaction's write of ``key`` against its view, then record it there.

        O(index keys of the write): the view holds only what the transaction wrote.
        Raises as :meth:`plan` does, with the view unchanged.
        """
        self.settle()
        self.ready()
        fresh = [
            () if isinstance(new, _Missing) else index.index_keys(key, new)
            for index in self.indexes
        ]
        for position, index in enumerate(self.indexes):
            added = [ik for ik in fresh[position] if ik not in index.held_keys(key)]
            if index.spec.unique:
                _index_rules.check_staged_unique(
                    staged.staged, staged.claims[position], position, index, key, fresh[position]
                )
            if index.spec.ordered and added:
                _index_rules.check_comparable(index, [(key, ik) for ik in added], {key})
        self._stage_order(staged, key, removed=isinstance(new, _Missing))
        staged.staged[key] = fresh
        for position, index in enumerate(self.indexes):
            if index.spec.unique:
                staged.claims[position].update(dict.fromkeys(fresh[position], key))

    def _stage_order(self, staged: StagedIndexes[K], key: K, *, removed: bool) -> None:
        """Record where a staged write puts ``key`` in the transaction's order."""
        if removed:
            staged.appended.pop(key, None)
            staged.absent.add(key)
            return
        present = key not in staged.absent and (key in staged.staged or key in self._seqs)
        if not present:
            staged.appended[key] = None
        staged.absent.discard(key)

    def staged_order(self, staged: StagedIndexes[K]) -> Callable[[K], int]:
        """Return each key's position in the transaction's view: the sort key of lookups."""
        self.ready()
        seqs, start = self._seqs, self._next_seq
        moved = {key: start + rank for rank, key in enumerate(staged.appended)}
        return lambda key: moved[key] if key in moved else seqs.get(key, 0)


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


def _keyed(shape: dict[K, object], keys: Sequence[K], column: Iterable[T]) -> dict[K, T]:
    """Return ``dict(zip(keys, column, strict=True))`` for ``keys`` those of ``shape``, in
    its order: a copy of ``shape``, updated, made at its full size at once where the
    other grows step by step (a quarter cheaper)."""
    keyed = cast(dict[K, T], shape.copy())
    keyed.update(zip(keys, column, strict=True))
    return keyed


def _column(rows: dict[K, tuple[object, ...]], position: int) -> Iterable[object]:
    """Return the index keys of index ``position`` in ``rows``, each a tuple per index."""
    return map(operator.itemgetter(position), rows.values())


def _fill_at_once(
    index: Maintained[K, V],
    keys: Sequence[K],
    column: Callable[[], Iterable[object]],
    seqs: dict[K, int],
    shape: dict[K, object] | None = None,
    whole: bool = False,
) -> HeldLater[K] | None:
    """Fill a fresh ``index``'s entries from ``keys`` and what its function returns for
    their values (each call of ``column`` iterates over it again, from C); return what
    makes its held keys, or None, leaving it unfinished, for anything unusual: an
    exception, a unique conflict, a NaN, a partial order. ``shape``, if given (at open),
    has exactly ``keys``, in order (see :func:`_keyed`); ``whole``: its values are the
    column itself, which are then the held keys, no copy; else the held keys are made
    from the entries, when asked.

    One pass over the entries: a unique hash index's holders are made at C speed (a
    conflict leaves fewer holders than entries); any other index's buckets in one loop,
    in insertion order, and an ordered index's distinct index keys then sorted once."""
    if index.multi:
        return _fill_multi_at_once(index, keys, column, seqs, shape)
    try:
        count = len(keys)
        if index.unique and not index.ordered:
            holders = dict(zip(column(), keys, strict=True))
            if holders.pop(None, MISSING) is not MISSING:  # entries left out
                count -= _nones(column())
            if len(holders) != count:  # a conflict (or an index key equal to None)
                return None
            index.entries = UniqueEntries(holders)
        else:
            # At open (``shape``, several indexes), buckets as lists, made dicts by ready().
            lists = shape is not None and not whole
            buckets = (
                _lists(keys, column()) if lists else _buckets(zip(keys, column(), strict=True))
            )
            left_out = buckets.pop(None, None)
            if left_out is not None:  # entries left out
                count -= len(left_out)
                if _nones(column()) != len(left_out):  # an index key equal to None
                    return None
            if not index.ordered:
                index.entries = HashEntries.of_buckets(seqs, buckets)
            else:
                entries = _sorted_at_once(seqs, buckets, unique=index.unique, count=count)
                if entries is None:
                    return None
                index.entries = entries
    except Exception:
        return None
    if shape is not None and not whole:  # several indexes at open: built by ready()
        return index.entries.by_key
    return functools.partial(_held, keys, column, shape, count != len(keys))


def _nones(column: Iterable[object]) -> int:
    """Return how many index keys of ``column`` are None (not merely equal to it)."""
    return sum(1 for index_key in column if index_key is None)


def _held(
    keys: Sequence[K],
    column: Callable[[], Iterable[object]],
    shape: dict[K, object] | None,
    left_out: bool,
) -> dict[K, object]:
    """Return each of ``keys`` with its index key in ``column``, those whose index key is
    None left out (``left_out``: there are some): ``shape`` itself if given, whose values
    are the column (see :func:`_fill_at_once`)."""
    held = dict(zip(keys, column(), strict=True)) if shape is None else shape
    if left_out:
        held = {key: index_key for key, index_key in held.items() if index_key is not None}
    return held


def _buckets(held: Iterable[tuple[K, object]]) -> dict[object, dict[K, None]]:
    """Return each index key of ``held``'s ``(key, index key)`` pairs, in the order met,
    with the keys holding it, in insertion order; the fastest way found (a defaultdict, a
    sort and slices, ``setdefault`` from C all cost more)."""
    buckets: dict[object, dict[K, None]] = {}
    get = buckets.get
    for key, index_key in held:
        bucket = get(index_key)
        if bucket is None:
            buckets[index_key] = {key: None}
        else:
            bucket[key] = None
    return buckets


def _lists(keys: Sequence[K], column: Iterable[object]) -> dict[object, dict[K, None]]:
    """:func:`_buckets` of ``keys`` and, in the same order, their index keys in
    ``column``, with each bucket a list (see ``HashEntries.of_buckets``), typed as dicts
    for the same path to take them; about a third cheaper to make. ValueError if the two
    differ in length.

    At C speed, no bytecode per entry: a ``defaultdict(list)`` gives each index key's
    list (made at its first key), ``list.append`` adds the key, and a ``deque`` of no
    length drives the two maps; a plain dict copy of it then (O(distinct index keys)),
    which nothing can grow by reading. A fifth cheaper than a loop of ``get`` and
    ``append`` (``dict.__setitem__`` so mapped, for dict buckets, is slower than
    :func:`_buckets`'s loop)."""
    lists: defaultdict[object, list[K]] = defaultdict(list)
    deque(map(list.append, map(lists.__getitem__, column), keys), maxlen=0)
    made = dict(lists)
    # A column longer than keys leaves its first extra index key an empty list.
    if sum(map(len, made.values())) != len(keys) or not all(made.values()):
        raise ValueError("index keys and keys differ in length")
    return cast(dict[object, dict[K, None]], made)


def _buckets_of_many(
    keys: Sequence[K], columns: Iterable[tuple[object, ...]]
) -> dict[object, dict[K, None]]:
    """Return :func:`_buckets` of each key and each of its elements in ``columns``."""
    buckets: dict[object, dict[K, None]] = {}
    get = buckets.get
    for key, elements in zip(keys, columns, strict=True):
        for element in elements:
            bucket = get(element)
            if bucket is None:
                buckets[element] = {key: None}
            else:
                bucket[key] = None
    return buckets


def _sorted_at_once(
    seqs: dict[K, int], buckets: dict[object, dict[K, None]], *, unique: bool, count: int
) -> SortedEntries[K] | None:
    """Return the entries of an ordered index from its ``buckets`` (``count`` keys in
    all), its distinct index keys sorted once; None for a unique conflict, a NaN, or
    index keys whose order is not a total one (which the careful path builds as writes
    would). TypeError for index keys that do not compare."""
    if unique and len(buckets) != count:
        return None
    if any(map(operator.ne, buckets, buckets)):  # a NaN, which equals nothing
        return None
    entries = SortedEntries.of_buckets(seqs, buckets)
    following = entries.distinct()
    next(following, None)
    if not all(map(_less, entries.distinct(), following)):  # a partial order
        return None
    return entries


_less = cast(Callable[[object, object], bool], operator.lt)
"""``<``, for index keys the checker cannot know compare (those of an ordered index do)."""

_PLAIN_ITERABLES = frozenset({list, tuple, set, frozenset})
"""What a multi index's function usually returns: iterables, found so without the slower
``isinstance`` checks against ``str``, ``bytes`` and ``Iterable``."""

_SEQUENCES = frozenset({list, tuple})
"""Those of :data:`_PLAIN_ITERABLES` whose elements are read by position."""


def _fill_multi_at_once(
    index: Maintained[K, V],
    keys: Sequence[K],
    column: Callable[[], Iterable[object]],
    seqs: dict[K, int],
    shape: dict[K, object] | None,
) -> HeldLater[K] | None:
    """Fill a fresh multi hash index from ``keys`` and what its function returned for
    their values; None for anything unusual (as :func:`_fill_at_once`), or a multi
    index that is also unique or ordered."""
    if index.unique or index.ordered:
        return None
    try:
        results = list(column())
        kinds = set(map(type, results))
        if len(results) != len(keys) or not kinds <= _PLAIN_ITERABLES:
            return _fill_multi_by_entry(index, zip(keys, results, strict=True), seqs)
        # The common case: plain iterables, each element once, none of them None.
        plain = cast(list[Collection[object]], results)
        held: dict[K, object]
        elements = _one_each(plain) if kinds <= _SEQUENCES else None
        if elements is not None:
            # One element each, the commonest: one loop, and one tuple per index key, shared.
            # At open (``shape``), buckets as lists, made dicts by ready().
            buckets = (
                _buckets(zip(keys, elements, strict=True))
                if shape is None
                else _lists(keys, elements)
            )
            if None in buckets:
                return _fill_multi_by_entry(index, zip(keys, results, strict=True), seqs)
            if shape is not None:  # at open: built by ready(), one tuple per index key
                index.entries = HashEntries.of_buckets(seqs, buckets)
                return functools.partial(index.entries.by_key, tuples=True)
            alone = {element: (element,) for element in buckets}
            held = dict(zip(keys, map(alone.__getitem__, elements), strict=True))
        else:
            sizes = list(map(len, plain))
            tuples = list(map(tuple, plain))
            buckets = _buckets_of_many(keys, tuples)
            # A None element, or an element twice in one result (its bucket then holds
            # the key once): entry by entry, which leaves the one out and the other once.
            if None in buckets or sum(map(len, buckets.values())) != sum(sizes):
                return _fill_multi_by_entry(index, zip(keys, results, strict=True), seqs)
            held = (
                dict(zip(keys, tuples, strict=True))
                if shape is None
                else _keyed(shape, keys, tuples)
            )
            if 0 in sizes:  # an empty result leaves its entry out
                held = {key: index_keys for key, index_keys in held.items() if index_keys}
    except Exception:
        return None
    index.entries = HashEntries.of_buckets(seqs, buckets)
    return functools.partial(_same, held)


def _one_each(results: list[Collection[object]]) -> list[object] | None:
    """Return the one element of each of ``results``, lists and tuples; None if any has
    none or several."""
    try:
        return [element for (element,) in cast(list[Sequence[object]], results)]
    except ValueError:  # not one element
        return None


def _fill_multi_by_entry(
    index: Maintained[K, V], pairs: Iterable[tuple[K, object]], seqs: dict[K, int]
) -> HeldLater[K] | None:
    """:func:`_fill_multi_at_once` entry by entry, for results that are None, hold None,
    or are not plain iterables."""
    held: dict[K, object] = {}
    buckets: dict[object, dict[K, None]] = {}
    try:
        for key, result in pairs:
            if result is None:
                continue
            if type(result) not in _PLAIN_ITERABLES and (
                isinstance(result, str | bytes) or not isinstance(result, Iterable)
            ):
                return None
            elements = tuple(dict.fromkeys(cast(Iterable[object], result)))  # at C speed
            if None in elements:
                elements = tuple(element for element in elements if element is not None)
            if not elements:
                continue
            held[key] = elements
            for element in elements:
                bucket = buckets.get(element)
                if bucket is None:
                    buckets[element] = {key: None}
                else:
                    bucket[key] = None
    except Exception:
        return None
    index.entries = HashEntries.of_buckets(seqs, buckets)
    return functools.partial(_same, held)


def _same(held: dict[K, object]) -> dict[K, object]:
    """Return ``held``, made already: the :data:`HeldLater` of an index built entry by entry."""
    return held


def _fill_carefully(
    indexes: list[Maintained[K, V]], pairs: list[tuple[K, V]], seqs: dict[K, int]
) -> None:
    """Fill fresh ``indexes`` from ``pairs`` entry by entry, raising the precise error."""
    rows: list[list[tuple[K, int, IndexKeys]]] = [[] for _ in indexes]
    for seq, (key, value) in enumerate(pairs):
        for index, found in zip(indexes, rows, strict=True):
            index_keys = _index_keys_at_open(index, key, value)
            if index_keys:
                found.append((key, seqs.get(key, seq), index_keys))
    _index_rules.check_unique_at_open(indexes, rows)
    for index, found in zip(indexes, rows, strict=True):
        _fill(index, found)


def _index_keys_at_open(index: Maintained[K, V], key: K, value: V) -> IndexKeys:
    """Return ``value``'s index keys; an exception gets a note naming the index and key."""
    try:
        return index.index_keys(key, value)
    except Exception as exc:
        exc.add_note(f"raised by index {index.spec.name!r} for key {reprlib.repr(key)}")
        raise


def _fill(index: Maintained[K, V], found: list[tuple[K, int, IndexKeys]]) -> None:
    """Put ``found`` rows, in insertion order, into a fresh index."""
    if index.ordered:
        for key, _, index_keys in found:
            for index_key in index_keys:
                if index_key != index_key:  # NaN: compares false with everything
                    raise _index_rules.incomparable(index, key, index_key)
    try:
        for key, seq, index_keys in found:
            index.hold(key, seq, index_keys)
    except TypeError as exc:  # an ordered index's keys that do not compare
        raise TypeError(
            f"ordered index {index.spec.name!r}: the data gives index keys that cannot be"
            " ordered with each other; nothing was changed"
        ) from exc
