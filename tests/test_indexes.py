"""Indexes on collections, kept by every write path (README.md, "Indexes")."""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, cast

import pytest
from pydantic import BaseModel

from typedstore import (
    Collection,
    Database,
    Index,
    StoreClosedError,
    TypedStore,
    UniqueViolationError,
    _index,
    _index_set,
)
from typedstore._codec import Codec
from typedstore._follow import Following
from typedstore._index_state import Maintained
from typedstore._log import Log


class Member(BaseModel):
    """A user with a unique email, an ordered age and tags."""

    email: str
    age: int = 0
    tags: list[str] = []


def age_of(member: Member) -> int:
    return member.age


class Members(Collection[str, Member]):
    """Members with a unique email index, an ordered age index and a multi tag index."""

    by_email: Index[Member, str] = Index(lambda m: m.email, unique=True)
    by_age = Index(age_of, ordered=True)
    by_tag: Index[Member, str] = Index(lambda m: m.tags, multi=True)


class Club(Database):
    """A database of one indexed collection."""

    members: Members


class PlainMembers(Collection[str, Member]):
    """The same collection without indexes: it writes what the indexed one refuses."""


class PlainClub(Database):
    """The same database without indexes."""

    members: PlainMembers


class MemberStore(TypedStore[str, Member]):
    """A declarative store with a unique email index."""

    by_email: Index[Member, str] = Index(lambda m: m.email, unique=True)


def member(email: str, age: int = 0, tags: list[str] | None = None) -> Member:
    return Member(email=email, age=age, tags=tags or [])


def snapshot(members: Collection[str, Member]) -> dict[str, Any]:
    """Return every index's content as its lookups give it: what reopen must equal."""
    assert isinstance(members, Members)
    emails = {m.email for m in members.values()}
    tags = {t for m in members.values() for t in m.tags}
    return {
        "email": {e: members.by_email.get(e) for e in sorted(emails)},
        "age": list(members.by_age),
        "tag": {t: members.by_tag.find(t) for t in sorted(tags)},
    }


def brute_force(members: Collection[str, Member]) -> dict[str, Any]:
    """Return what :func:`snapshot` must give, computed from the entries alone."""
    entries = list(members.items())
    return {
        "email": {m.email: (k, m) for k, m in sorted(entries, key=lambda e: e[1].email)},
        "age": sorted(entries, key=lambda e: e[1].age),
        "tag": {
            t: [(k, m) for k, m in entries if t in m.tags]
            for t in sorted({t for _, m in entries for t in m.tags})
        },
    }


@pytest.fixture
def club(log_path: Path) -> Iterator[Club]:
    with Club.open(log_path) as club:
        club.members["ada"] = member("ada@x", 36, ["admin"])
        club.members["bob"] = member("bob@x", 25, ["admin", "dev"])
        club.members["cy"] = member("cy@x", 30)
        yield club


WRITES: dict[str, Callable[[Members], object]] = {
    "setitem new": lambda m: m.__setitem__("dan", member("dan@x", 20, ["dev"])),
    "setitem replace": lambda m: m.__setitem__("ada", member("ada@y", 40)),
    "insert": lambda m: m.insert("bob", member("bob@y", 26, ["ops"])),
    "update": lambda m: m.update({"dan": member("dan@x", 1), "cy": member("cy@y", 2)}),
    "setdefault": lambda m: m.setdefault("dan", member("dan@x", 20)),
    "modify": lambda m: m.modify("cy", lambda v: v.model_copy(update={"age": 99})),
    "modify default": lambda m: m.modify("dan", lambda v: v, default=member("dan@x")),
    "remove": lambda m: m.remove("bob"),
    "pop": lambda m: m.pop("ada"),
    "popitem": lambda m: m.popitem(),
    "del": lambda m: m.__delitem__("bob"),
    "clear": lambda m: m.clear(),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=list(WRITES))
def test_every_write_path_keeps_the_indexes(club: Club, write: Callable[[Members], object]) -> None:
    """Each single write, modify and clear leaves the lookups equal to a scan of the entries."""
    write(club.members)
    assert snapshot(club.members) == brute_force(club.members)


@pytest.mark.parametrize("write", WRITES.values(), ids=list(WRITES))
def test_reopen_equals_the_indexes_kept_by_writes(
    club: Club, log_path: Path, write: Callable[[Members], object]
) -> None:
    """After any write path, the indexes rebuilt at open equal those the writes kept."""
    write(club.members)
    kept = snapshot(club.members)
    club.close()
    with Club.open(log_path) as reopened:
        assert snapshot(reopened.members) == kept


def test_unique_lookup_returns_key_and_value(club: Club) -> None:
    """A unique index finds the entry holding an index key, and None for an absent one."""
    assert club.members.by_email.get("bob@x") == ("bob", member("bob@x", 25, ["admin", "dev"]))
    assert club.members.by_email.get("nobody@x") is None


def test_range_lists_newest_first_with_limit(club: Club) -> None:
    """An ordered index's reverse range with a limit gives the highest index keys first."""
    assert [k for k, _ in club.members.by_age.range(None, None, reverse=True, limit=2)] == [
        "ada",
        "cy",
    ]


def test_lookup_results_are_copies(club: Club) -> None:
    """Changing a value a lookup returned changes neither the collection nor its index."""
    found = club.members.by_email.get("ada@x")
    assert found is not None
    found[1].tags.append("changed")
    assert club.members["ada"].tags == ["admin"]
    assert club.members.by_tag.count("changed") == 0


def test_unique_violation_writes_nothing(club: Club, log_path: Path) -> None:
    """A write taking a held unique index key raises; log, memory and indexes are unchanged."""
    before, kept = log_path.read_bytes(), snapshot(club.members)
    with pytest.raises(UniqueViolationError, match="'ada@x' is already held by key 'ada'"):
        club.members["dan"] = member("ada@x")
    assert log_path.read_bytes() == before
    assert "dan" not in club.members
    assert snapshot(club.members) == kept


def test_rewriting_an_entry_with_its_own_unique_key_is_no_conflict(club: Club) -> None:
    """An entry written again with its own email is accepted."""
    club.members["ada"] = member("ada@x", 37)
    assert club.members.by_email.get("ada@x") == ("ada", member("ada@x", 37))


def test_index_function_error_writes_nothing(log_path: Path) -> None:
    """An index function that raises refuses the write: the error propagates, nothing changes."""

    def checked(value: Member) -> int:
        if value.age < 0:
            raise ValueError("negative age")
        return value.age

    class Checked(Collection[str, Member]):
        by_age = Index(checked, ordered=True)

    class Db(Database):
        members: Checked

    with Db.open(log_path) as db:
        db.members["ada"] = member("ada@x", 1)
        before = log_path.read_bytes()
        with pytest.raises(ValueError, match="negative age"):
            db.members.modify("ada", lambda v: v.model_copy(update={"age": -1}))
        assert log_path.read_bytes() == before
        assert db.members["ada"].age == 1
        assert list(db.members.by_age) == [("ada", member("ada@x", 1))]


def test_incomparable_ordered_key_writes_nothing(log_path: Path) -> None:
    """An ordered index key not comparable with the others raises TypeError, writing nothing."""

    class Ranked(BaseModel):
        rank: int | str

    class Ranks(Collection[str, Ranked]):
        by_rank: Index[Ranked, int | str] = Index(lambda r: r.rank, ordered=True)

    class Db(Database):
        ranks: Ranks

    with Db.open(log_path) as db:
        db.ranks["a"] = Ranked(rank=1)
        before = log_path.read_bytes()
        with pytest.raises(TypeError, match="by_rank"):
            db.ranks["b"] = Ranked(rank="first")
        assert log_path.read_bytes() == before
        assert "b" not in db.ranks
        assert list(db.ranks.by_rank) == [("a", Ranked(rank=1))]


def test_transaction_lookups_see_its_own_writes(club: Club) -> None:
    """Inside a transaction, its index lookups see its writes; the collection does not yet."""
    with club.transaction() as tx:
        tx.members["dan"] = member("dan@x", 50)
        del tx.members["ada"]
        assert tx.members.by_email.get("dan@x") == ("dan", member("dan@x", 50))
        assert tx.members.by_email.get("ada@x") is None
        assert [k for k, _ in tx.members.by_age.range(30, None)] == ["cy", "dan"]
        assert club.members.by_email.get("dan@x") is None
    assert club.members.by_email.get("dan@x") == ("dan", member("dan@x", 50))


def test_transaction_write_breaking_a_rule_raises_at_its_call(club: Club) -> None:
    """A transaction's write taking a held email raises in the block; its other writes commit."""
    with club.transaction() as tx:
        tx.members["dan"] = member("dan@x")
        with pytest.raises(UniqueViolationError, match="'bob@x' is already held by key 'bob'"):
            tx.members["eve"] = member("bob@x")
    assert "eve" not in club.members
    assert snapshot(club.members) == brute_force(club.members)
    assert club.members.by_email.get("dan@x") is not None


def test_transaction_swaps_two_emails(club: Club) -> None:
    """Two entries swap emails in one transaction once one lets go of its email first."""
    with club.transaction() as tx:
        tx.members["ada"] = member("tmp@x", 36)
        tx.members["bob"] = member("ada@x", 25)
        tx.members["ada"] = member("bob@x", 36)
    assert club.members.by_email.get("ada@x") == ("bob", member("ada@x", 25))
    assert club.members.by_email.get("bob@x") == ("ada", member("bob@x", 36))
    assert snapshot(club.members) == brute_force(club.members)


def test_rolled_back_transaction_leaves_indexes_unchanged(club: Club) -> None:
    """A transaction whose block raises changes no index."""
    kept = snapshot(club.members)

    def abandoned() -> None:
        with club.transaction() as tx:
            tx.members["dan"] = member("dan@x")
            del tx.members["ada"]
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError, match="abandon"):
        abandoned()
    assert snapshot(club.members) == kept


def test_open_with_conflicting_data_lists_the_keys_and_changes_nothing(log_path: Path) -> None:
    """Data breaking a unique index declared now refuses the open, naming every holder."""
    with PlainClub.open(log_path) as plain:
        plain.members["ada"] = member("same@x")
        plain.members["bob"] = member("same@x")
        plain.members["cy"] = member("cy@x")
    before = log_path.read_bytes()
    with pytest.raises(UniqueViolationError, match=r"'ada'.*'bob'"):
        Club.open(log_path)
    assert log_path.read_bytes() == before
    with PlainClub.open(log_path) as plain:  # the lock was released, the data is intact
        assert len(plain.members) == 3


def test_indexes_follow_migrations_on_open(log_path: Path) -> None:
    """Indexes at open are built from the migrated values."""
    with PlainClub.open(log_path) as plain:
        plain.members["ada"] = member("ADA@X", 36)

    def lower(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "email": data["email"].lower()}

    class MigratedMembers(Members, version=2, migrations={1: lower}):
        pass

    class Migrated(Database):
        members: MigratedMembers

    with Migrated.open(log_path) as db:
        assert db.members.by_email.get("ada@x") == ("ada", member("ada@x", 36))
        assert db.members.by_email.get("ADA@X") is None


def test_compaction_keeps_the_indexes(club: Club, log_path: Path) -> None:
    """Compacting changes no index, before or after reopening."""
    club.members["ada"] = member("ada@y", 1)
    kept = snapshot(club.members)
    club.compact()
    assert snapshot(club.members) == kept
    club.close()
    with Club.open(log_path) as reopened:
        assert snapshot(reopened.members) == kept


def test_declarative_store_has_its_indexes(log_path: Path) -> None:
    """A TypedStore subclass declaring an index keeps and refuses by it, and rebuilds it at open."""
    with MemberStore.open(log_path) as store:
        store["ada"] = member("ada@x")
        with pytest.raises(UniqueViolationError, match="ada@x"):
            store["bob"] = member("ada@x")
    with MemberStore.open(log_path) as store:
        assert store.by_email.get("ada@x") == ("ada", member("ada@x"))


def test_store_transaction_checks_each_write(log_path: Path) -> None:
    """A TypedStore transaction refuses a write taking a held unique index key at its call."""
    with MemberStore.open(log_path) as store:
        store["ada"] = member("ada@x")
        with store.transaction() as txn:
            with pytest.raises(UniqueViolationError, match="ada@x"):
                txn["bob"] = member("ada@x")
            txn["cy"] = member("cy@x")
        assert list(store) == ["ada", "cy"]


def test_lookup_on_a_closed_collection_raises(club: Club) -> None:
    """An index of a closed database refuses lookups."""
    club.close()
    with pytest.raises(Exception, match="closed"):
        club.members.by_email.get("ada@x")


class TestSharedMode:
    """A handle catching up with another's writes brings its indexes up to date."""

    def test_lookups_see_another_handles_writes(self, log_path: Path) -> None:
        """An entry another shared handle wrote is found by index, and its old keys are gone."""
        with Club.open(log_path, shared=True) as first, Club.open(log_path, shared=True) as second:
            first.members["ada"] = member("ada@x", 36, ["admin"])
            assert second.members.by_email.get("ada@x") == ("ada", member("ada@x", 36, ["admin"]))
            first.members["ada"] = member("ada@y", 37)
            assert second.members.by_email.get("ada@x") is None
            assert second.members.by_age.range(37, None) == [("ada", member("ada@y", 37))]
            assert second.members.by_tag.count("admin") == 0

    def test_unique_check_sees_another_handles_writes(self, log_path: Path) -> None:
        """A write that would repeat an email another handle wrote is refused, nothing written."""
        with Club.open(log_path, shared=True) as first, Club.open(log_path, shared=True) as second:
            first.members["ada"] = member("ada@x")
            size = log_path.stat().st_size
            with pytest.raises(UniqueViolationError, match="ada@x"):
                second.members["bob"] = member("ada@x")
            assert log_path.stat().st_size == size
            assert "bob" not in first.members

    @pytest.mark.parametrize("write", WRITES.values(), ids=list(WRITES))
    def test_catch_up_keeps_the_indexes_of_every_write_path(
        self, log_path: Path, write: Callable[[Members], object]
    ) -> None:
        """After any write path in one handle, the other's lookups, caught up key by key,
        equal a scan of its entries and the writer's own."""
        with Club.open(log_path, shared=True) as first, Club.open(log_path, shared=True) as second:
            first.members["ada"] = member("ada@x", 36, ["admin"])
            first.members["bob"] = member("bob@x", 25, ["admin", "dev"])
            first.members["cy"] = member("cy@x", 30)
            assert len(second.members) == 3
            write(first.members)
            assert snapshot(second.members) == brute_force(second.members)
            assert snapshot(second.members) == snapshot(first.members)

    def test_replaced_unique_key_is_free_after_a_catch_up(self, log_path: Path) -> None:
        """An email another handle replaced is not left held: this handle can take it."""
        with Club.open(log_path, shared=True) as first, Club.open(log_path, shared=True) as second:
            first.members["ada"] = member("ada@x")
            assert second.members.by_email.get("ada@x") is not None
            first.members["ada"] = member("ada@y")
            first.members["cy"] = member("cy@x")
            del first.members["cy"]
            second.members["bob"] = member("ada@x")
            assert second.members.by_email.get("ada@x") == ("bob", member("ada@x"))
            assert first.members.by_email.get("ada@x") == ("bob", member("ada@x"))

    def test_batch_of_another_handle_is_followed_key_by_key(self, log_path: Path) -> None:
        """A transaction that swaps two unique keys, removes a key and puts it back (it moves
        to the end) and adds one is followed in one catch-up, ties in the writer's order."""
        with Club.open(log_path, shared=True) as first, Club.open(log_path, shared=True) as second:
            for name in ["a", "b", "c"]:
                first.members[name] = member(f"{name}@x", 1, ["t"])
            assert len(second.members) == 3
            with first.transaction() as tx:
                tx.members["a"] = member("tmp@x", 1, ["t"])
                tx.members["b"] = member("a@x", 1, ["t"])
                tx.members["a"] = member("b@x", 1, ["t"])
                del tx.members["c"]
                tx.members["d"] = member("d@x", 1, ["t"])
                tx.members["c"] = member("c@y", 1, ["t"])
            assert [k for k, _ in second.members.by_age.range(1, 2)] == ["a", "b", "d", "c"]
            assert [k for k, _ in second.members.by_tag.find("t")] == ["a", "b", "d", "c"]
            assert second.members.by_email.get("b@x") == ("a", member("b@x", 1, ["t"]))
            assert second.members.by_email.get("c@x") is None
            assert snapshot(second.members) == snapshot(first.members)

    def test_catch_up_of_one_record_runs_the_index_functions_once(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Catching up one record into 10,000 entries calls each index function and encodes
        keys for the touched key only, not for every entry: O(new records)."""
        with (
            Counted.open(log_path, shared=True) as first,
            Counted.open(log_path, shared=True) as second,
        ):
            with first.transaction() as tx:
                for n in range(10_000):
                    tx.items[(str(n), n)] = n
            assert len(second.items) == 10_000
            encodes: list[object] = []
            real = Codec.key_bytes

            def key_bytes(codec: Codec[Any, Any], key: object) -> bytes:
                encodes.append(key)
                return real(codec, key)

            monkeypatch.setattr(Codec, "key_bytes", key_bytes)
            first.items[("new", 0)] = -1
            del first.items[("0", 0)]
            CALLS.clear()
            encodes.clear()
            assert second.items.by_value.get(-1) == (("new", 0), -1)
            assert CALLS == [-1]
            assert encodes == [("new", 0)]
            assert second.items.by_value.get(0) is None

    def test_catch_up_that_raises_midway_leaves_no_stale_index_key(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A catch-up interrupted after applying part of the records (an exception, a
        Ctrl-C) is finished by the next one, which then rebuilds the indexes."""
        with Club.open(log_path, shared=True) as first, Club.open(log_path, shared=True) as second:
            first.members["ada"] = member("ada@x")
            assert second.members.by_email.get("ada@x") is not None
            del first.members["ada"]
            first.members["bob"] = member("bob@x")
            real = Following._put

            def interrupted(state: Following[Any, Any], key: Any, *args: Any) -> None:
                monkeypatch.setattr(Following, "_put", real)
                raise RuntimeError("interrupted")

            monkeypatch.setattr(Following, "_put", interrupted)
            with pytest.raises(RuntimeError, match="interrupted"):
                second.members.get("bob")
            assert second.members.by_email.get("ada@x") is None
            assert second.members.by_email.get("bob@x") == ("bob", member("bob@x"))
            second.members["cy"] = member("ada@x")
            assert snapshot(second.members) == brute_force(second.members)

    def test_catch_up_the_indexes_refuse_key_by_key_rebuilds_them(self, log_path: Path) -> None:
        """When following a catch-up key by key fails (an index function raised), the
        indexes are rebuilt from the entries instead."""
        with (
            Flaky.open(log_path, shared=True) as first,
            Flaky.open(log_path, shared=True) as second,
        ):
            first.members["ada"] = member("ada@x")
            assert len(second.members) == 1
            first.members["bob"] = member("bob@x")
            FLAKY.append("bob@x")
            assert second.members.by_email.get("bob@x") == ("bob", member("bob@x"))
            assert FLAKY == []


CALLS: list[int] = []
"""The values :class:`CountedItems`'s index function was called with."""


def counted(value: int) -> int:
    CALLS.append(value)
    return value


class CountedItems(Collection[tuple[str, int], int]):
    """Items whose key type needs its bytes kept, with an index that counts its calls."""

    by_value: Index[int, int] = Index(counted, unique=True)


class Counted(Database):
    items: CountedItems


FLAKY: list[str] = []
"""Emails :class:`Flaky`'s index function raises for, once each."""


def flaky_email(value: Member) -> str:
    if value.email in FLAKY:
        FLAKY.remove(value.email)
        raise RuntimeError("flaky")
    return value.email


class FlakyMembers(Collection[str, Member]):
    by_email: Index[Member, str] = Index(flaky_email, unique=True)


class Flaky(Database):
    members: FlakyMembers


class TestInterrupts:
    """An exception a signal handler raises into a write (KeyboardInterrupt) leaves the
    indexes equal to the entries in memory, whichever step it lands on."""

    @pytest.mark.parametrize("write", WRITES.values(), ids=list(WRITES))
    def test_interrupt_once_the_record_is_appended_keeps_the_indexes(
        self, club: Club, monkeypatch: pytest.MonkeyPatch, write: Callable[[Members], object]
    ) -> None:
        """A KeyboardInterrupt just after the record reaches the log: indexes follow memory."""
        append = Log.append

        def append_then_interrupt(log: Log, body: bytes | list[bytes], records: int) -> None:
            append(log, body, records)
            raise KeyboardInterrupt

        monkeypatch.setattr(Log, "append", append_then_interrupt)
        with pytest.raises(KeyboardInterrupt, match=r"^$"):
            write(club.members)
        monkeypatch.undo()
        assert snapshot(club.members) == brute_force(club.members)

    @pytest.mark.parametrize("write", WRITES.values(), ids=list(WRITES))
    def test_interrupt_while_the_indexes_apply_the_write_keeps_them_whole(
        self, club: Club, monkeypatch: pytest.MonkeyPatch, write: Callable[[Members], object]
    ) -> None:
        """A KeyboardInterrupt halfway through the indexes' update: they equal memory after."""

        def interrupted(index: Maintained[Any, Any], key: Any, seq: int, keys: Any) -> None:
            monkeypatch.undo()
            raise KeyboardInterrupt

        monkeypatch.setattr(Maintained, "hold", interrupted)
        with contextlib.suppress(KeyboardInterrupt):  # a removal holds nothing: no interrupt
            write(club.members)
        assert snapshot(club.members) == brute_force(club.members)


class Tagged(BaseModel):
    """A value whose index functions below misbehave on purpose for some tags."""

    name: str
    tags: list[str] = []


def misbehaving(tagged: Tagged) -> object:
    """Raise for tag "raise", return an unhashable list for "list", else the name."""
    if "raise" in tagged.tags:
        raise LookupError("index function failed")
    if "list" in tagged.tags:
        return tagged.tags
    return tagged.name


class LoneUnique(Collection[str, Tagged]):
    by_name: Index[Tagged, object] = Index(misbehaving, unique=True)


class Hashed(Collection[str, Tagged]):
    by_name: Index[Tagged, object] = Index(misbehaving)


class Sorted(Collection[str, Tagged]):
    by_name: Index[Tagged, object] = Index(misbehaving, ordered=True)


class Multi(Collection[str, Tagged]):
    by_name: Index[Tagged, object] = Index(lambda t: [misbehaving(t)], multi=True)


KINDS: dict[str, type[Collection[str, Tagged]]] = {
    "lone unique": LoneUnique,
    "hash": Hashed,
    "ordered": Sorted,
    "multi": Multi,
}


def open_kind(cls: type[Collection[str, Tagged]], path: Path) -> Database:
    """Open a database of one collection ``items`` of class ``cls``."""
    database: type[Database] = type("Db", (Database,), {"__annotations__": {"items": cls}})
    return database.open(path)


def items_of(database: object) -> Any:
    """Return the ``items`` collection of a database or transaction: Any, as each test
    declares its class at run time."""
    return getattr(database, "items")  # noqa: B009 - not known to the checker


def index_of(database: Database) -> Any:
    """Return the ``by_name`` index of the database's ``items``."""
    return items_of(database).by_name


@pytest.mark.parametrize("cls", KINDS.values(), ids=list(KINDS))
@pytest.mark.parametrize(
    ("tags", "error", "match"),
    [(["raise"], LookupError, "index function failed"), (["list"], TypeError, "not hashable")],
    ids=["raises", "unhashable"],
)
def test_a_misbehaving_index_function_refuses_the_write(
    log_path: Path,
    cls: type[Collection[str, Tagged]],
    tags: list[str],
    error: type[Exception],
    match: str,
) -> None:
    """An index function that raises or gives an unhashable key refuses each write kind."""
    with open_kind(cls, log_path) as db:
        items: Collection[str, Tagged] = items_of(db)
        items["a"] = Tagged(name="a")
        size = log_path.stat().st_size
        bad = Tagged(name="b", tags=tags)
        writes: list[Callable[[], object]] = [
            lambda: items.__setitem__("b", bad),
            lambda: items.__setitem__("a", bad),
            lambda: items.modify("a", lambda v: bad),
            lambda: items.setdefault("b", bad),
            lambda: items.modify("b", lambda v: v, default=bad),
        ]
        for write in writes:
            with pytest.raises(error, match=match):
                write()
        assert log_path.stat().st_size == size
        assert dict(items) == {"a": Tagged(name="a")}
        assert index_of(db).find("a") == [("a", Tagged(name="a"))]
        assert index_of(db).count("b") == 0


@pytest.mark.parametrize("cls", KINDS.values(), ids=list(KINDS))
def test_a_misbehaving_index_function_refuses_a_transaction_write(
    log_path: Path, cls: type[Collection[str, Tagged]]
) -> None:
    """In a transaction the write raises at its call; the transaction's other writes commit."""
    with open_kind(cls, log_path) as db:
        with db.transaction() as tx:
            items_of(tx)["a"] = Tagged(name="a")
            with pytest.raises(LookupError, match="index function failed"):
                items_of(tx)["b"] = Tagged(name="b", tags=["raise"])
        assert dict(items_of(db)) == {"a": Tagged(name="a")}
        assert index_of(db).find("a") == [("a", Tagged(name="a"))]


def test_an_index_function_writing_to_the_store_is_refused(log_path: Path) -> None:
    """An index function that writes to its own store raises RuntimeError, nothing written."""
    holder: dict[str, Database] = {}

    def writes_back(tagged: Tagged) -> str:
        items_of(holder["db"])["other"] = Tagged(name="other")
        return tagged.name

    class Writing(Collection[str, Tagged]):
        by_name = Index(writes_back)

    with open_kind(Writing, log_path) as db:
        holder["db"] = db
        with pytest.raises(RuntimeError, match="inside one of its writes"):
            items_of(db)["a"] = Tagged(name="a")
        assert dict(items_of(db)) == {}


def test_an_index_function_closing_the_store_writes_nothing(log_path: Path) -> None:
    """An index function that closes its store makes the write raise, the log untouched."""
    holder: dict[str, Database] = {}

    def closes(tagged: Tagged) -> str:
        if tagged.name == "close":
            holder["db"].close()
        return tagged.name

    class Closing(Collection[str, Tagged]):
        by_name = Index(closes, unique=True)

    with open_kind(Closing, log_path) as db:
        holder["db"] = db
        items_of(db)["a"] = Tagged(name="a")
        size = log_path.stat().st_size
        with pytest.raises(StoreClosedError, match="closed during a write"):
            items_of(db)["b"] = Tagged(name="close")
    assert log_path.stat().st_size == size
    with open_kind(Closing, log_path) as reopened:
        assert dict(items_of(reopened)) == {"a": Tagged(name="a")}


def test_an_index_function_mutating_the_value_changes_nothing_stored(log_path: Path) -> None:
    """What an index function does to the value it is shown is not stored."""

    def mutates(tagged: Tagged) -> str:
        tagged.tags.append("seen")
        return tagged.name

    class Mutating(Collection[str, Tagged]):
        by_name = Index(mutates, unique=True)

    with open_kind(Mutating, log_path) as db:
        items_of(db)["a"] = Tagged(name="a")
        assert items_of(db)["a"] == Tagged(name="a")
    with open_kind(Mutating, log_path) as reopened:
        assert items_of(reopened)["a"] == Tagged(name="a")
        assert index_of(reopened).get("a") == ("a", Tagged(name="a"))


STEPPED_WRITES: dict[str, Callable[[Members], object]] = {
    name: WRITES[name] for name in ("setitem new", "setitem replace", "modify", "del", "clear")
}


def interrupt_at_call(step: int) -> Callable[[FrameType, str, object], Any]:
    """Return a trace function raising KeyboardInterrupt as the ``step``-th call of a
    typedstore function starts: where CPython runs a signal handler (and where the
    exception it raises surfaces), at a function's start or a loop's jump back."""
    seen = [0]

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        code = frame.f_code
        if (
            event == "call"
            and "typedstore" in code.co_filename
            and code.co_name != "__del__"
            and not code.co_flags & inspect.CO_GENERATOR  # resumed, or closed when dropped
        ):
            seen[0] += 1
            if seen[0] == step:
                raise KeyboardInterrupt(f"{code.co_name} in {code.co_filename}")
        return None

    return tracer


@pytest.mark.parametrize("write", STEPPED_WRITES.values(), ids=list(STEPPED_WRITES))
def test_interrupt_at_every_step_of_a_write_keeps_the_indexes(
    tmp_path: Path, write: Callable[[Members], object]
) -> None:
    """A KeyboardInterrupt as any function of a write starts leaves indexes equal to memory."""
    step = 0
    while True:
        step += 1
        with Club.open(tmp_path / f"{step}.log") as club:
            club.members["ada"] = member("ada@x", 36, ["admin"])
            club.members["bob"] = member("bob@x", 25, ["admin", "dev"])
            club.members["cy"] = member("cy@x", 30)
            sys.settrace(interrupt_at_call(step))
            try:
                write(club.members)
            except KeyboardInterrupt as exc:
                where = str(exc)
            else:
                break
            finally:
                sys.settrace(None)
            assert snapshot(club.members) == brute_force(club.members), where
    assert step > 10  # the write made that many calls, each interrupted once


class Strict(Collection[str, Tagged]):
    """Raises in its index function for a value tagged "raise" (see ``misbehaving``)."""

    by_name: Index[Tagged, object] = Index(misbehaving, unique=True)


class PlainItems(Collection[str, Tagged]):
    """The same values, without indexes: it writes what ``Strict`` refuses."""


def test_open_ignores_an_index_function_raising_for_a_replaced_value(log_path: Path) -> None:
    """A value no longer live is not indexed at open, whatever its index function does."""
    with open_kind(PlainItems, log_path) as db:
        items_of(db)["a"] = Tagged(name="a", tags=["raise"])
        items_of(db)["a"] = Tagged(name="a")
    with open_kind(Strict, log_path) as reopened:
        assert index_of(reopened).get("a") == ("a", Tagged(name="a"))


def test_open_names_the_key_whose_index_function_raised(log_path: Path) -> None:
    """An index function raising for a live value fails the open, naming the key."""
    with open_kind(PlainItems, log_path) as db:
        items_of(db)["a"] = Tagged(name="a")
        items_of(db)["b"] = Tagged(name="b", tags=["raise"])
    with pytest.raises(LookupError, match="index function failed") as raised:
        open_kind(Strict, log_path)
    assert "for key 'b'" in "".join(raised.value.__notes__)


def shape_of(tagged: Tagged) -> Any:
    """What a multi index's function may return, by the value's name: None, an empty list,
    a list holding None, a tuple with repeats, a set, an unhashable element; else its tags."""
    shapes: dict[str, object] = {
        "none": None,
        "empty": [],
        "holds none": [None, "x"],
        "repeats": ("x", "x", "y"),
        "set": {"y"},
        "unhashable": [["x"]],
    }
    return shapes.get(tagged.name, tagged.tags)


class Shaped(Collection[str, Tagged]):
    by_name: Index[Tagged, object] = Index(shape_of, multi=True)


@pytest.mark.parametrize("odd", ["none", "empty", "holds none", "repeats", "set", ""])
def test_open_builds_a_multi_index_of_any_shape_as_writes_keep_it(log_path: Path, odd: str) -> None:
    """A multi index built at open, whatever its function returns, equals the one writes kept."""
    with open_kind(Shaped, log_path) as db:
        items_of(db)["a"] = Tagged(name="a", tags=["x", "y"])
        items_of(db)["b"] = Tagged(name=odd, tags=["y"])
        items_of(db)["c"] = Tagged(name="c", tags=["x"])
        kept = {ik: index_of(db).find(ik) for ik in ("x", "y")}
        counts = {ik: index_of(db).count(ik) for ik in ("x", "y")}
    with open_kind(Shaped, log_path) as reopened:
        assert {ik: index_of(reopened).find(ik) for ik in ("x", "y")} == kept
        assert {ik: index_of(reopened).count(ik) for ik in ("x", "y")} == counts


def one_of(tagged: Tagged) -> Any:
    """One element for a multi index, by the value's name: None alone, in a tuple, in a
    set, True (equal to 1), 1; else its first tag, in a list."""
    shapes: dict[str, object] = {
        "none": [None],
        "tuple": ("x",),
        "set": {"y"},
        "true": [True],
        "one": [1],
    }
    return shapes.get(tagged.name, tagged.tags[:1])


class OneEach(Collection[str, Tagged]):
    by_name: Index[Tagged, object] = Index(one_of, multi=True)


@pytest.mark.parametrize("odd", ["none", "tuple", "set", "true", "one", ""])
def test_open_builds_a_multi_index_of_one_element_each_as_writes_keep_it(
    log_path: Path, odd: str
) -> None:
    """A multi index whose function returns one element per value (its shortest build
    at open) equals the one writes kept, whatever that element and its container."""
    with open_kind(OneEach, log_path) as db:
        items_of(db)["a"] = Tagged(name="a", tags=["x"])
        items_of(db)["b"] = Tagged(name=odd, tags=["y"])
        items_of(db)["c"] = Tagged(name="c", tags=["x"])
        items_of(db)["d"] = Tagged(name="one" if odd == "true" else "d", tags=["y"])
        kept = {ik: index_of(db).find(ik) for ik in ("x", "y", None, True, 1)}
    with open_kind(OneEach, log_path) as reopened:
        assert {ik: index_of(reopened).find(ik) for ik in ("x", "y", None, True, 1)} == kept
        items_of(reopened)["b"] = Tagged(name="e", tags=["x"])  # moves b, as writes would
        assert [key for key, _ in index_of(reopened).find("x")] == ["a", "b", "c"]
        assert index_of(reopened).count(1) == (1 if odd == "true" else 0)  # d's, if any


def test_open_names_the_key_of_an_unhashable_multi_index_key(log_path: Path) -> None:
    """An element no index key can be, met at open, fails it naming the key."""
    with open_kind(PlainItems, log_path) as db:
        items_of(db)["a"] = Tagged(name="a", tags=["x"])
        items_of(db)["b"] = Tagged(name="unhashable")
    with pytest.raises(TypeError, match="of key 'b' is not hashable"):
        open_kind(Shaped, log_path)


def pair_of(tagged: Tagged) -> tuple[int, str]:
    return (len(tagged.tags), tagged.name)


class LonePairs(Collection[str, Tagged]):
    """A lone ordered index whose index keys are tuples: what open keeps of each value is
    the function's result as it is, which must not be taken for one per index."""

    by_name: Index[Tagged, tuple[int, str]] = Index(pair_of, ordered=True)


def test_open_builds_a_lone_index_of_tuples(log_path: Path) -> None:
    """Tuple index keys of a lone index are kept whole at open."""
    with open_kind(LonePairs, log_path) as db:
        items_of(db)["b"] = Tagged(name="b", tags=["x"])
        items_of(db)["a"] = Tagged(name="a", tags=["x", "y"])
        items_of(db)["c"] = Tagged(name="c")
        kept = list(index_of(db))
    with open_kind(LonePairs, log_path) as reopened:
        assert (
            list(index_of(reopened))
            == kept
            == [
                ("c", Tagged(name="c")),
                ("b", Tagged(name="b", tags=["x"])),
                ("a", Tagged(name="a", tags=["x", "y"])),
            ]
        )
        assert index_of(reopened).range((1, "a"), (2, "z")) == kept[1:]


def test_open_with_ties_keeps_insertion_order_in_an_ordered_index(log_path: Path) -> None:
    """Entries sharing an index key come in insertion order after open, as after writes,
    also for a key moved to the end (removed, then inserted again)."""
    with Club.open(log_path) as club:
        for name in ("e", "d", "c", "b", "a"):
            club.members[name] = member(f"{name}@x", 30 if name in "eca" else 20)
        del club.members["c"]
        club.members["c"] = member("c@x", 30)
        kept = snapshot(club.members)
    with Club.open(log_path) as reopened:
        assert snapshot(reopened.members) == kept == brute_force(reopened.members)
        assert [key for key, _ in reopened.members.by_age.range(30, None)] == ["e", "a", "c"]


@pytest.mark.parametrize("was_enabled", [True, False])
def test_open_interrupted_while_it_builds_the_indexes_restores_the_collector(
    club: Club, log_path: Path, monkeypatch: pytest.MonkeyPatch, was_enabled: bool
) -> None:
    """A KeyboardInterrupt while an open builds the indexes (the collector paused) leaves
    the collector as it found it, and the log opens afterwards."""
    club.close()

    def interrupted(*args: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(_index_set, "_fill_at_once", interrupted)
    before = gc.isenabled()
    try:
        if not was_enabled:
            gc.disable()
        with pytest.raises(KeyboardInterrupt):
            Club.open(log_path)
        assert gc.isenabled() is was_enabled
    finally:
        if before:
            gc.enable()
    monkeypatch.undo()
    with Club.open(log_path) as reopened:
        assert snapshot(reopened.members) == brute_force(reopened.members)


def test_open_refused_by_an_index_restores_the_collector(log_path: Path) -> None:
    """An open the indexes refuse (a unique conflict) leaves the collector running."""
    with open_kind(PlainItems, log_path) as db:
        items_of(db)["a"] = Tagged(name="same")
        items_of(db)["b"] = Tagged(name="same")
    assert gc.isenabled()
    with pytest.raises(UniqueViolationError):
        open_kind(LoneUnique, log_path)
    assert gc.isenabled()


LONE_WRITES: dict[str, Callable[[MemberStore], object]] = {
    "new": lambda s: s.__setitem__("dan", member("dan@x")),
    "new index key": lambda s: s.__setitem__("ada", member("ada@y")),
    "same index key": lambda s: s.__setitem__("ada", member("ada@x", 40)),
    "del": lambda s: s.__delitem__("bob"),
}


@pytest.mark.parametrize("write", LONE_WRITES.values(), ids=list(LONE_WRITES))
def test_interrupt_at_every_step_of_a_write_keeps_a_lone_unique_index(
    tmp_path: Path, write: Callable[[MemberStore], object]
) -> None:
    """The shortest path, a unique hash index alone, interrupted anywhere, stays whole."""
    step = 0
    while True:
        step += 1
        with MemberStore.open(tmp_path / f"{step}.log") as store:
            store["ada"] = member("ada@x", 36)
            store["bob"] = member("bob@x", 25)
            sys.settrace(interrupt_at_call(step))
            try:
                write(store)
            except KeyboardInterrupt as exc:
                where = str(exc)
            else:
                break
            finally:
                sys.settrace(None)
            emails = {value.email: (key, value) for key, value in store.items()}
            for email in ("ada@x", "ada@y", "bob@x", "dan@x"):
                assert store.by_email.get(email) == emails.get(email), where
    assert step > 5


def ordered_key_of(tagged: Tagged) -> object:
    """An ordered index key by the value's name: an int, a str, a NaN, or a frozenset
    (ordered by inclusion only: a partial order)."""
    odd: dict[str, object] = {"str": "s", "nan": float("nan"), "set1": frozenset({1})}
    odd["set2"] = frozenset({2})
    return odd.get(tagged.name, len(tagged.tags))


class OrderedOdd(Collection[str, Tagged]):
    by_name: Index[Tagged, object] = Index(ordered_key_of, ordered=True)


class UniqueOrdered(Collection[str, Tagged]):
    by_name: Index[Tagged, object] = Index(ordered_key_of, ordered=True, unique=True)


@pytest.mark.parametrize(
    ("odd", "match"),
    [("str", "cannot be ordered"), ("nan", "index key nan of key 'b' cannot be ordered")],
)
def test_open_refuses_ordered_index_keys_that_do_not_order(
    log_path: Path, odd: str, match: str
) -> None:
    """Index keys met at open that do not compare with the others (or a NaN) fail it with
    the TypeError a write gets, the one sort of the build notwithstanding."""
    with open_kind(PlainItems, log_path) as db:
        items_of(db)["a"] = Tagged(name="a", tags=["x"])
        items_of(db)["b"] = Tagged(name=odd)
    with pytest.raises(TypeError, match=match):
        open_kind(OrderedOdd, log_path)


def test_open_with_a_partial_order_builds_as_entry_by_entry(log_path: Path) -> None:
    """Index keys ordered partially (sets, by inclusion) cannot be grouped by one sort:
    the build then takes the careful path, and every key is found under its index key."""
    with open_kind(PlainItems, log_path) as db:
        for key, name in (("a", "set1"), ("b", "set2"), ("c", "set1"), ("d", "set2")):
            items_of(db)[key] = Tagged(name=name)
    with open_kind(OrderedOdd, log_path) as reopened:
        assert [k for k, _ in index_of(reopened).find(frozenset({1}))] == ["a", "c"]
        assert [k for k, _ in index_of(reopened).find(frozenset({2}))] == ["b", "d"]


def test_open_refuses_a_conflict_of_a_unique_ordered_index(log_path: Path) -> None:
    """Two entries holding one index key of a unique ordered index fail the open, listing
    both keys."""
    with open_kind(PlainItems, log_path) as db:
        items_of(db)["a"] = Tagged(name="a", tags=["x"])
        items_of(db)["b"] = Tagged(name="b")
        items_of(db)["c"] = Tagged(name="c", tags=["y"])
    with pytest.raises(UniqueViolationError) as raised:
        open_kind(UniqueOrdered, log_path)
    assert raised.value.conflicts == (("by_name", 1, ("a", "c")),)


def name_of(tagged: Tagged) -> str:
    return tagged.name


def name_with_default(tagged: Tagged, upper: bool = False) -> str:
    return tagged.name


def name_with_keyword(tagged: Tagged, *, upper: bool = False) -> str:
    return tagged.name


def names_of(tagged: Tagged) -> Iterator[str]:
    yield tagged.name


SHOUT = "!"

# Index functions, and the attribute each reads alone (None: it does more, or otherwise).
ATTRIBUTE_READS: dict[str, tuple[Callable[[Any], object], str | None]] = {
    "lambda": (lambda t: t.name, "name"),
    "function": (name_of, "name"),
    "other attribute": (lambda t: t.tags, "tags"),
    "method call on it": (lambda t: t.name.upper(), None),
    "attribute of it": (lambda t: t.name.__class__, None),
    "global": (lambda t: SHOUT, None),
    "default": (name_with_default, None),
    "keyword only": (name_with_keyword, None),
    "varargs": (lambda *t: t[0].name, None),
    "generator": (names_of, None),
    "builtin": (repr, None),
    "partial": (functools.partial(name_of), None),
}


@pytest.mark.parametrize(("function", "name"), ATTRIBUTE_READS.values(), ids=list(ATTRIBUTE_READS))
def test_open_reads_an_attribute_directly_only_for_a_function_doing_just_that(
    function: Callable[[Any], object], name: str | None
) -> None:
    """What open keeps of a value is what the index functions return for it: read from C
    for a function that only returns an attribute of its argument, called otherwise."""
    assert _index._attribute_read(function) == name
    lone = type("Lone", (), {"by_it": Index(function)})
    three = type(
        "Three",
        (),
        {"by_it": Index(function), "by_name": Index(name_of), "by_tags": Index(lambda t: t.tags)},
    )
    value = Tagged(name="ada", tags=["x"])
    assert comparable(_index.index_functions(lone)(value)) == comparable(function(value))
    first, second, third = cast(tuple[object, ...], _index.index_functions(three)(value))
    assert (comparable(first), second, third) == (comparable(function(value)), "ada", ["x"])


def comparable(result: object) -> object:
    """A generator's items (each call makes a new one), else ``result`` itself."""
    return list(result) if isinstance(result, Iterator) else result


def missing_of(tagged: Any) -> object:
    return tagged.missing


class Missing(Collection[str, Tagged]):
    """An index function reading an attribute the values do not have."""

    by_name: Index[Tagged, object] = Index(missing_of, unique=True)


def test_open_names_the_key_whose_attribute_read_raised(log_path: Path) -> None:
    """An index function that only reads an attribute, raising at open, fails it naming
    the key, as any index function does; nothing is changed."""
    with open_kind(PlainItems, log_path) as db:
        items_of(db)["a"] = Tagged(name="a")
    with pytest.raises(AttributeError, match="missing") as raised:
        open_kind(Missing, log_path)
    assert "for key 'a'" in "".join(raised.value.__notes__)
    with open_kind(PlainItems, log_path) as reopened:
        assert dict(items_of(reopened).items()) == {"a": Tagged(name="a")}


def count_or_none(tagged: Tagged) -> int | None:
    return len(tagged.tags) or None


def first_or_none(tagged: Tagged) -> str | None:
    return tagged.tags[0] if tagged.tags else None


def name_or_none(tagged: Tagged) -> str | None:
    return None if tagged.name == "-" else tagged.name


class Sparse(Collection[str, Tagged]):
    """An ordered, a hash and a unique index, each leaving some entries out (None)."""

    by_name: Index[Tagged, int] = Index(count_or_none, ordered=True)
    by_first: Index[Tagged, str] = Index(first_or_none)
    by_unique: Index[Tagged, str] = Index(name_or_none, unique=True)


def test_open_leaves_out_the_entries_an_index_gives_none(log_path: Path) -> None:
    """Entries whose index function returns None are in no index after open, as after
    writes; the others are in order."""

    def answers(db: Database) -> tuple[object, ...]:
        items = items_of(db)
        return (
            list(items.by_name),
            [items.by_first.find(tag) for tag in ("x", "y")],
            [items.by_unique.get(name) for name in ("a", "b", "-", "c")],
            [(items.by_first.count(tag), tag in items.by_unique) for tag in ("x", "y", None)],
        )

    with open_kind(Sparse, log_path) as db:
        items_of(db)["a"] = Tagged(name="-", tags=["x", "y"])
        items_of(db)["b"] = Tagged(name="b")
        items_of(db)["c"] = Tagged(name="c", tags=["y"])
        items_of(db)["d"] = Tagged(name="-")
        kept = answers(db)
    with open_kind(Sparse, log_path) as reopened:
        assert answers(reopened) == kept
        assert [key for key, _ in items_of(reopened).by_name] == ["c", "a"]
        assert items_of(reopened).by_unique.get("-") is None


class ByAge(Collection[str, Member]):
    """One ordered index alone: its inserts take the single-index path."""

    by_age = Index(age_of, ordered=True)


class AgeClub(Database):
    """A database of one collection with one ordered index."""

    members: ByAge


def test_threads_inserting_at_once_index_each_value_under_its_own_key(log_path: Path) -> None:
    """Writers in several threads hand the indexes the value each validated (one slot,
    which another thread may take meanwhile): every key is indexed by its own value."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that writes interleave
    errors: list[BaseException] = []
    try:
        with (
            AgeClub.open(log_path) as club,
            MemberStore.open(log_path.with_name("other.log")) as store,
        ):

            def write(thread: int) -> None:
                try:
                    for i in range(300):
                        key = f"t{thread}-{i}"
                        club.members[key] = member(f"{key}@x", age=thread * 1000 + i)
                        store[key] = member(f"{key}@x")
                except BaseException as exc:  # reported below, not lost in the thread
                    errors.append(exc)

            threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            keys = [f"t{t}-{i}" for t in range(4) for i in range(300)]
            assert all(store.by_email.get(f"{key}@x") == (key, store[key]) for key in keys)
            ages = {key: value.age for key, value in club.members.items()}
            assert [key for key, _ in club.members.by_age] == sorted(keys, key=ages.__getitem__)
            assert all(club.members.by_age.count(age) == 1 for age in ages.values())
    finally:
        sys.setswitchinterval(previous)


# -- the first write after an open ---------------------------------------------------------
# An open builds what lookups read; what only writes read (insertion positions, the index
# keys each key holds) is built by the first write, catch-up or transaction after it.


def tied_club(log_path: Path, *, one_tag_each: bool = False) -> None:
    """Write a log whose entries tie in every index (ada and dan: age 36, tag admin); with
    ``one_tag_each``, every entry has one tag (the multi index's shortest build at open)."""
    with Club.open(log_path) as club:
        club.members["ada"] = member("ada@x", 36, ["admin"])
        club.members["bob"] = member("bob@x", 25, ["admin"] if one_tag_each else ["admin", "dev"])
        club.members["cy"] = member("cy@x", 30, ["ops"] if one_tag_each else [])
        club.members["dan"] = member("dan@x", 36, ["admin"])


def rewrite_everything(members: Members) -> None:
    """Move an entry to other index keys in every index, then one to the end of its ties."""
    members["ada"] = member("ada@z", 30, ["dev"])
    members.pop("bob", None)
    members["bob"] = member("bob@x", 36, ["admin"])


@pytest.mark.parametrize("one_tag_each", [False, True], ids=["tags", "one tag each"])
@pytest.mark.parametrize("write", WRITES.values(), ids=list(WRITES))
def test_the_first_write_after_an_open_keeps_the_indexes(
    log_path: Path, write: Callable[[Members], object], one_tag_each: bool
) -> None:
    """Each write path, the first after an open, leaves the lookups equal to a scan of the
    entries, and so do the writes after it."""
    tied_club(log_path, one_tag_each=one_tag_each)
    with Club.open(log_path) as club:
        write(club.members)
        assert snapshot(club.members) == brute_force(club.members)
        rewrite_everything(club.members)
        assert snapshot(club.members) == brute_force(club.members)


def test_a_transaction_first_after_an_open_sees_and_keeps_the_indexes(log_path: Path) -> None:
    """A transaction, the first use after an open, looks up ties in the collection's order
    and its own writes in theirs, and its commit keeps the indexes."""
    tied_club(log_path)
    with Club.open(log_path) as club:
        with club.transaction() as tx:
            assert [key for key, _ in tx.members.by_age.range(36, None)] == ["ada", "dan"]
            tx.members["eve"] = member("eve@x", 36, ["admin"])
            del tx.members["ada"]
            tx.members["ada"] = member("ada@x", 36, ["admin"])
            assert [key for key, _ in tx.members.by_age.range(36, None)] == ["dan", "eve", "ada"]
            assert [key for key, _ in tx.members.by_tag.find("admin")] == [
                "bob",
                "dan",
                "eve",
                "ada",
            ]
            with pytest.raises(UniqueViolationError, match="held by key 'bob'"):
                tx.members["fay"] = member("bob@x")
        assert snapshot(club.members) == brute_force(club.members)
        assert [key for key, _ in club.members.by_age.range(36, None)] == ["dan", "eve", "ada"]


def test_a_catch_up_first_after_an_open_keeps_the_indexes(log_path: Path) -> None:
    """A shared handle whose first use of its indexes after its open is catching up with
    another handle's writes follows them key by key, as after any write."""
    tied_club(log_path)
    with Club.open(log_path, shared=True) as first, Club.open(log_path, shared=True) as second:
        rewrite_everything(first.members)
        first.members.update({"cy": member("cy@y", 36), "eve": member("eve@x", 1, ["dev"])})
        assert snapshot(second.members) == brute_force(second.members) == snapshot(first.members)
        rewrite_everything(second.members)
        assert snapshot(first.members) == brute_force(first.members) == snapshot(second.members)


@pytest.mark.parametrize("write", STEPPED_WRITES.values(), ids=list(STEPPED_WRITES))
def test_interrupt_at_every_step_of_the_first_write_after_an_open(
    tmp_path: Path, write: Callable[[Members], object]
) -> None:
    """A KeyboardInterrupt as any function of the first write after an open starts (also
    those building what the open left) leaves the indexes equal to memory, and the
    writes after it keep them so."""
    tied_club(tmp_path / "tied.log")
    tied = (tmp_path / "tied.log").read_bytes()
    step = 0
    while True:
        step += 1
        log = tmp_path / f"{step}.log"
        log.write_bytes(tied)
        with Club.open(log) as club:
            sys.settrace(interrupt_at_call(step))
            try:
                write(club.members)
            except KeyboardInterrupt as exc:
                where = str(exc)
            else:
                break
            finally:
                sys.settrace(None)
            assert snapshot(club.members) == brute_force(club.members), where
            rewrite_everything(club.members)
            assert snapshot(club.members) == brute_force(club.members), where
    assert step > 10


@pytest.mark.parametrize("cls", [OneEach, Shaped, LoneUnique, Sorted, Hashed], ids=repr)
def test_the_first_write_after_an_open_keeps_an_index_of_any_shape(
    log_path: Path, cls: type[Collection[str, Tagged]]
) -> None:
    """Whatever an index's kind and the shape of its index keys (None, left out; several
    elements; one each), writes after an open move and drop index keys as writes do."""
    values = {
        "a": Tagged(name="a", tags=["xx"]),
        "b": Tagged(name="none", tags=["yy"]),
        "c": Tagged(name="c", tags=["xx", "yy"]),
        "d": Tagged(name="one", tags=["yy"]),
    }
    with open_kind(cls, log_path) as db:
        items_of(db).update(values)
    with open_kind(cls, log_path) as db, open_kind(cls, log_path.with_name("w.log")) as written:
        items_of(written).update(values)
        for database in (db, written):
            items_of(database)["a"] = Tagged(name="e", tags=["yy"])
            del items_of(database)["c"]
            items_of(database)["b"] = Tagged(name="b", tags=["xx"])
        looked_up = ("a", "b", "c", "e", "none", "one", "xx", "yy", None, 1)
        assert [index_of(db).find(ik) for ik in looked_up] == [
            index_of(written).find(ik) for ik in looked_up
        ]


def test_threads_writing_first_after_an_open_build_what_it_left_once(log_path: Path) -> None:
    """Threads whose writes are the first after an open, all at once, leave the indexes
    equal to a scan of the entries: one of them builds what the open left, under the lock."""
    tied_club(log_path)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that the first writes interleave
    errors: list[BaseException] = []
    try:
        with Club.open(log_path) as club:

            def write(thread: int) -> None:
                try:
                    for i in range(50):
                        club.members[f"t{thread}-{i}"] = member(f"t{thread}-{i}@x", i % 3, ["dev"])
                        club.members["ada"] = member(f"ada{thread}@x", 36 - thread, ["admin"])
                except BaseException as exc:  # reported below, not lost in the thread
                    errors.append(exc)

            threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert snapshot(club.members) == brute_force(club.members)
    finally:
        sys.setswitchinterval(previous)


def test_a_refused_first_write_after_an_open_changes_nothing(log_path: Path) -> None:
    """The first write after an open, refused by a unique index, writes nothing and leaves
    the indexes whole for the writes after it."""
    tied_club(log_path)
    before = log_path.read_bytes()
    with Club.open(log_path) as club:
        kept = snapshot(club.members)
        with pytest.raises(UniqueViolationError, match="'bob@x' is already held by key 'bob'"):
            club.members["ada"] = member("bob@x", 1, ["ops"])
        assert log_path.read_bytes() == before
        assert snapshot(club.members) == kept == brute_force(club.members)
        rewrite_everything(club.members)
        assert snapshot(club.members) == brute_force(club.members)
