"""The rules a write must keep, checked before anything changes: unique index keys,
and ordered index keys that compare with each other (README.md, "Indexes")."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence

from ._errors import UniqueViolationError
from ._index_state import IndexKeys, Maintained, Move, SortedEntries
from ._types import MISSING, K, V, _Missing


def check_unique(index: Maintained[K, V], moves: Sequence[Move[K, V]]) -> None:
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
                raise violation(index, index_key, holder, key)
            other = claimed.setdefault(index_key, key)
            if other != key:
                raise violation(index, index_key, other, key)


def check_staged_unique(
    written: Mapping[K, Sequence[IndexKeys]],
    claims: Mapping[object, K],
    position: int,
    index: Maintained[K, V],
    key: K,
    fresh: IndexKeys,
) -> None:
    """Raise UniqueViolationError if a staged write of ``key`` takes a held index key."""
    for index_key in fresh:
        holder = index.entries.holder(index_key)
        # A holder the transaction wrote is judged by its staged index keys, below.
        if not isinstance(holder, _Missing) and holder != key and holder not in written:
            raise violation(index, index_key, holder, key)
        claimer = claims.get(index_key, MISSING)
        if (
            not isinstance(claimer, _Missing)
            and claimer != key
            and index_key in written[claimer][position]
        ):
            raise violation(index, index_key, claimer, key)


def violation(
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


def check_ordered(index: Maintained[K, V], moves: Sequence[Move[K, V]]) -> None:
    """Raise TypeError if an index key ``moves`` add cannot be ordered with the others."""
    added = [(key, ik) for _, key, old, fresh in moves for ik in fresh if ik not in old]
    if added:
        check_comparable(index, added, {key for _, key, _, _ in moves})


def check_fits(index: Maintained[K, V], key: K, index_key: object) -> None:
    """Raise TypeError unless ``index_key``, which the ordered ``index`` does not hold yet,
    orders with the index's keys: :func:`check_comparable` for a write adding one,
    shortened when it is of the builtin type every index key held has."""
    entries = index.entries
    assert isinstance(entries, SortedEntries)
    if type(index_key) is entries.kind() and index_key == index_key:  # NaN aside
        return
    check_comparable(index, [(key, index_key)], {key})


def check_comparable(
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
            raise incomparable(index, key, index_key)
    # The common cases, without a search: an index key the index already holds is
    # never compared again (its bucket keeps the first one); and one of the very
    # builtin type every index key held has compares with them all (SortedEntries.kind).
    kind = entries.kind()
    if all(type(ik) is kind or entries.count(ik) for _, ik in added):
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
    raise incomparable(index, key, index_key)


def _sorts(index_keys: list[object]) -> bool:
    """Return whether ``index_keys`` can be sorted."""
    try:
        sorted(index_keys)  # type: ignore[type-var]  # finding out is the point
    except TypeError:
        return False
    return True


def incomparable(index: Maintained[K, V], key: K, index_key: object) -> TypeError:
    return TypeError(
        f"ordered index {index.spec.name!r}: index key {reprlib.repr(index_key)} of key"
        f" {reprlib.repr(key)} cannot be ordered with the index's other keys; nothing was"
        " written"
    )


def check_unique_at_open(
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
