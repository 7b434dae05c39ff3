"""The indexes an open builds equal those rebuilt from scratch: contents and order.

An open with several indexes builds an ordered index's and a one-element-each multi
index's buckets as lists, at C speed (``_index_set._lists``); a rebuild (``clear``,
migrations, the careful path) builds them as dicts, key by key. Both must give the same
buckets, in the same order, the same sorted index keys and, once the first write made
what only writes read (``IndexSet.ready``), the same held keys and insertion positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from typedstore import Collection, Database, Index
from typedstore._index_set import IndexSet, _lists
from typedstore._index_state import SortedEntries, UniqueEntries


class Row(BaseModel):
    """A value with an email (unique), an age that may be None, and a tag that may be None."""

    email: str
    age: int | None = None
    tag: str | None = None


class Attributes(Collection[str, Row]):
    """Functions that only read an attribute (what replay reads from C), the multi index
    giving one element each."""

    by_email: Index[Row, str] = Index(lambda row: row.email, unique=True)
    by_age: Index[Row, int | None] = Index(lambda row: row.age, ordered=True)
    by_tag: Index[Row, object] = Index(lambda row: [row.tag], multi=True)


class Emptying(Collection[str, Row]):
    """The multi index gives no element for a row without a tag (not one each)."""

    by_email: Index[Row, str] = Index(lambda row: row.email, unique=True)
    by_age: Index[Row, int | None] = Index(lambda row: row.age, ordered=True)
    by_tag: Index[Row, object] = Index(lambda row: [row.tag] if row.tag else [], multi=True)


class Hashed(Collection[str, Row]):
    """A non-unique hash index, and an ordered one."""

    by_age: Index[Row, int | None] = Index(lambda row: row.age)
    by_rank: Index[Row, int | None] = Index(lambda row: row.age, ordered=True)


def database(cls: type[Collection[str, Row]], path: Path) -> Any:
    """Open a database of one collection ``rows`` of class ``cls`` (Any: made at run time)."""
    kind: type[Database] = type("Db", (Database,), {"__annotations__": {"rows": cls}})
    return kind.open(path)


def state(indexes: IndexSet[str, Row], *, written: bool) -> list[object]:
    """Return what each index holds, in order: buckets (as lists), sorted index keys,
    holders; with ``written``, also the held keys and the insertion positions."""
    found: list[object] = []
    for index in indexes.indexes:
        entries = index.entries
        if isinstance(entries, UniqueEntries):
            found.append(list(entries.holders.items()))
        else:
            found.append([(ik, list(bucket)) for ik, bucket in entries._buckets.items()])
            if isinstance(entries, SortedEntries):
                found.append(list(entries.distinct()))
        if written:
            found.append(dict(index.held))
    if written:
        found.append(list(indexes._seqs.items()))
        found.append(indexes._next_seq)
    return found


def rows(count: int, *, nones: bool) -> list[tuple[str, Row]]:
    """Rows whose ages and tags repeat out of order, some None with ``nones``."""
    made = []
    for i in range(count):
        age = None if nones and i % 7 == 3 else (i * 37) % 11
        tag = None if nones and i % 5 == 2 else f"t{(i * 13) % 4}"
        made.append((f"k{(i * 29) % count}", Row(email=f"e{i}", age=age, tag=tag)))
    return made


@pytest.mark.parametrize("cls", [Attributes, Emptying, Hashed])
@pytest.mark.parametrize("nones", [False, True])
def test_open_builds_what_a_rebuild_from_scratch_builds(
    log_path: Path, cls: type[Collection[str, Row]], nones: bool
) -> None:
    """After writes, replaced and removed keys, and keys moved to the end, the indexes an
    open builds equal those rebuilt from the entries, buckets and sorted keys in order,
    before and after the first write makes the rest."""
    with database(cls, log_path) as db:
        for key, row in rows(60, nones=nones and cls is not Attributes):
            db.rows[key] = row
        for key in ("k3", "k10", "k17"):
            del db.rows[key]
        db.rows["k10"] = Row(email="moved", age=5, tag="t1")  # removed, then at the end
    with database(cls, log_path) as db:
        opened: IndexSet[str, Row] = db.rows._indexes
        assert opened.pending is not None  # built at open, not by a rebuild
        scratch: IndexSet[str, Row] = IndexSet([i.spec for i in opened.indexes], None, None)  # type: ignore[arg-type]
        scratch.rebuild(db.rows.items())
        assert state(opened, written=False) == state(scratch, written=False)
        opened.ready()
        assert state(opened, written=True) == state(scratch, written=True)
        ordered = next(index.entries for index in opened.indexes if index.ordered)
        assert isinstance(ordered, SortedEntries)
        assert max(map(len, ordered._buckets.values())) > 1  # ties to keep in order


def test_open_builds_multi_index_with_a_none_element_as_a_rebuild(log_path: Path) -> None:
    """A one-element-each multi index given None for some values (left out) builds, at
    open, what a rebuild does."""
    with database(Attributes, log_path) as db:
        for key, row in rows(30, nones=True):
            db.rows[key] = row
    with database(Attributes, log_path) as db:
        opened: IndexSet[str, Row] = db.rows._indexes
        scratch: IndexSet[str, Row] = IndexSet([i.spec for i in opened.indexes], None, None)  # type: ignore[arg-type]
        scratch.rebuild(db.rows.items())
        opened.ready()
        assert state(opened, written=True) == state(scratch, written=True)
        assert db.rows.by_tag.count(None) == 0


def test_lists_keeps_insertion_order_per_index_key() -> None:
    """Each index key's list holds its keys in the order given; index keys first met first."""
    made: dict[object, Any] = _lists(["a", "b", "c", "d", "e"], [2, 1, 2, 3, 1])
    assert list(made.items()) == [(2, ["a", "c"]), (1, ["b", "e"]), (3, ["d"])]
    assert type(made) is dict  # not a defaultdict: reading an absent index key adds nothing


@pytest.mark.parametrize("column", [[1, 2], [1, 2, 3, 4], [1, 2, 3, 4, 5]])
def test_lists_refuses_a_column_of_another_length(column: list[int]) -> None:
    """Index keys fewer or more than keys raise ValueError (an open then takes the careful
    path), as ``zip(strict=True)`` did."""
    with pytest.raises(ValueError, match="differ in length"):
        _lists(["a", "b", "c"], column)


def test_lists_passes_on_an_unhashable_index_key() -> None:
    """An unhashable index key raises TypeError (an open then takes the careful path,
    which names the key)."""
    with pytest.raises(TypeError):
        _lists(["a", "b"], [1, [2]])
