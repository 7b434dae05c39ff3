"""IndexHook: what keeps a collection's indexes current through the database's write path.

The write path (``_core.Core._write`` and ``_commit``) shows it each record's writes
before anything is written, under the lock (:meth:`IndexHook.before` plans them: a
refused write raises there, nothing written, indexes unchanged), and again once the
log holds the record (:meth:`IndexHook.after` applies the plan, whatever exception
arrived meanwhile). A single write's short path (``Core._write_one_hooked``) calls
:meth:`IndexHook.before_one` and :meth:`IndexHook.after_one` instead, the same steps
for one write, with the plan handed back rather than kept.
README.md, "Indexes", says what users see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic

from ._codec import Codec
from ._index_set import Change, IndexPlan, IndexSet
from ._records import Write
from ._types import MISSING, K, V, _Missing


class IndexHook(Generic[K, V]):
    """The ``WriteHook`` of one collection with indexes: plans each write, then applies it."""

    __slots__ = ("_apply_one", "_codec", "_indexes", "_plan", "_plan_one", "given")

    def __init__(self, indexes: IndexSet[K, V], codec: Codec[K, V]) -> None:
        self._indexes = indexes
        self._codec = codec
        self._plan_one, self._apply_one = indexes.single_write()
        self._plan: IndexPlan[K, V] | None = None
        """The plan of the write under way, between ``before`` and ``after``."""
        self.given: tuple[bytes, V] | None = None
        """Where a writer of one value that takes ``Core._write`` (a shared core's, or
        one the short path passes on) puts its bytes and the validated value they
        hold, for the time of the write: the indexes take the value from there rather
        than decode the bytes again, when the write's bytes are these very ones (one
        attribute, set at once: another thread's write may replace it, and then the
        bytes are decoded). The writer clears it after the write."""

    def before_one(self, write: Write[Any], value: object) -> object:
        """:meth:`before` for the single ``write``, returning its plan for
        :meth:`after_one`; ``value`` is the validated value of an insert, or MISSING
        (then decoded from the write's bytes). Raises (nothing changed) for a write the
        indexes refuse."""
        indexes = self._indexes
        if indexes.unsettled:
            indexes.settle_for_write()
        if indexes.pending is not None:
            indexes.ready()
        key, _, stored, blob = write
        new: V | _Missing
        if blob is None:
            new = MISSING
        elif value is MISSING:
            new = self._codec.thaw(stored)
        else:
            new = value  # type: ignore[assignment]  # an insert's validated V (Collection._put)
        plan = self._plan_one(key, new)
        indexes.unsettled = True  # see before
        return plan

    def after_one(self, plan: object) -> None:
        """:meth:`after` for the plan :meth:`before_one` returned, the write now in the log."""
        try:
            self._apply_one(plan)
            indexes = self._indexes
            indexes.unsettled = indexes.closed is not None  # closed meanwhile: see close
        except BaseException:
            self._indexes.settle_for_write()
            raise

    def before(self, writes: Sequence[Write[Any]]) -> None:
        """Plan ``writes``; raises (nothing changed) for a write the indexes refuse.

        From here until :meth:`after` has applied the plan, the indexes are
        ``unsettled``: should the record land and ``after`` not run to its end, the
        next lookup or write rebuilds them from memory.
        """
        indexes = self._indexes
        if indexes.unsettled:
            indexes.settle_for_write()
        if indexes.pending is not None:
            indexes.ready()
        self._plan = None
        if len(writes) == 1:  # every single write: kept short
            key, _, stored, blob = writes[0]
            new: V | _Missing = MISSING
            if blob is not None:
                given = self.given
                if given is not None and given[0] is blob:
                    new = given[1]
                else:
                    new = self._codec.thaw(stored)
            self._plan = indexes.plan_one(key, new)
        else:
            found: list[Change[K, V]] = changes(self._codec, writes)
            self._plan = indexes.plan(found)
        indexes.unsettled = True

    def after(self, writes: Sequence[Write[Any]]) -> None:
        """Apply the plan of ``writes``, now in the log.

        An exception arriving while it applies (a KeyboardInterrupt) may leave the
        indexes half changed: they are then rebuilt from memory before it propagates
        (and if it lands before this runs, at their next use: see :meth:`before`).
        """
        try:
            plan = self._plan
            if plan is not None:
                self._indexes.apply(plan)
            self._plan = None
            indexes = self._indexes
            indexes.unsettled = indexes.closed is not None  # closed meanwhile: see close
        except BaseException:
            self._indexes.settle_for_write()
            raise


def changes(codec: Codec[K, V], writes: Iterable[Write[Any]]) -> list[Change[K, V]]:
    """Return ``writes`` as the index layer's changes: each key's new value, or MISSING."""
    thaw = codec.thaw
    return [(key, MISSING if blob is None else thaw(stored)) for key, _, stored, blob in writes]
