"""Index lookups in a transaction: the host's entries overlaid by what it staged.

A transaction's reads through an index see its own writes, as its other reads do. The
host's index answers first; the keys the transaction wrote are then left out of that
answer and put back where their staged index keys and their position in the
transaction's order place them: O(changes) on top of the plain lookup.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from ._index_set import IndexSet, StagedIndexes
from ._index_state import Maintained, SortedEntries, Triple
from ._types import K, V


def keys_of(
    indexes: IndexSet[K, V], index: Maintained[K, V], staged: StagedIndexes[K], index_key: object
) -> list[K]:
    """Return the keys holding ``index_key`` in the transaction's view, in its order."""
    position = indexes.indexes.index(index)
    written = staged.staged
    kept = [key for key in index.entries.keys_of(index_key) if key not in written]
    mine = [key for key, fresh in written.items() if index_key in fresh[position]]
    if not mine:
        return kept
    return sorted(kept + mine, key=indexes.staged_order(staged))


def keys_between(
    indexes: IndexSet[K, V],
    entries: SortedEntries[K],
    index: Maintained[K, V],
    staged: StagedIndexes[K],
    bounds: tuple[object, object],
    reverse: bool,
) -> Iterator[K]:
    """Yield the keys with ``low <= index key < high`` in the transaction's view, in order."""
    position = indexes.indexes.index(index)
    written = staged.staged
    low, high = bounds
    kept = (t for t in entries.triples_between(low, high, reverse=reverse) if t[2] not in written)
    order = indexes.staged_order(staged)
    mine: list[Triple] = sorted(
        (
            (index_key, order(key), key)
            for key, fresh in written.items()
            for index_key in fresh[position]
            if _within(index_key, low, high)
        ),
        reverse=reverse,
    )
    return map(entries.key_of, heapq.merge(kept, mine, reverse=reverse))


def _within(index_key: Any, low: Any, high: Any) -> bool:
    """Return whether ``low <= index_key < high`` (None: open). ``Any``: an ordered index's
    keys compare with each other, which the checker cannot know of ``object``."""
    return (low is None or not index_key < low) and (high is None or index_key < high)
