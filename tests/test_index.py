"""The index layer's promises (README.md, "Indexes"), through a dict-backed host.

``tests/index_host.py`` writes through the layer the way a collection does: plan, write,
apply; transactions check each write against their own view and plan the net result.
"""

from __future__ import annotations

import math
import re
import sys
import threading
from collections.abc import Sequence

import pytest

from tests.index_host import Host, Member, Members
from typedstore._errors import StoreError, UniqueViolationError
from typedstore._index import Index, IndexView
from typedstore._types import MISSING


def member(name: str, email: str | None = None, age: int = 0, *tags: str) -> Member:
    """Return a member; the email defaults to ``<name>@x``."""
    return Member(name=name, email=email or f"{name}@x", age=age, tags=list(tags))


@pytest.fixture
def members() -> Members:
    """A host holding ada (36, admin), bob (25), cy (36, admin, ops), in that order."""
    host = Members()
    host["ada"] = member("ada", None, 36, "admin")
    host["bob"] = member("bob", None, 25)
    host["cy"] = member("cy", None, 36, "admin", "ops")
    return host


def snapshot(host: Members) -> tuple[object, ...]:
    """Return everything the host's indexes answer, to compare before and after."""
    emails = ["ada@x", "bob@x", "cy@x", "dee@x"]
    return (
        dict(host.data),
        [host.by_email.get(email) for email in emails],
        list(host.by_age),
        [host.by_tag.find(tag) for tag in ("admin", "ops", "new")],
        [host.by_name.find(name) for name in ("ada", "bob", "cy", "dee")],
    )


# -- declaration ---------------------------------------------------------------------------


def test_index_on_the_class_is_the_declaration() -> None:
    """Reading an index from the class gives the Index itself, named after its attribute."""
    assert isinstance(Members.by_email, Index)
    assert repr(Members.by_email) == "<Index by_email unique>"


def test_index_on_an_instance_is_its_lookups(members: Members) -> None:
    """Reading an index from an instance gives the lookups of that instance's entries."""
    assert isinstance(members.by_email, IndexView)
    assert members.by_email.get("bob@x") == ("bob", member("bob", None, 25))


def test_index_needs_a_function() -> None:
    """An Index of something not callable is refused at the declaration."""
    with pytest.raises(TypeError, match="needs a function of the value"):
        Index("email")  # type: ignore[call-overload]  # the misuse under test


def test_index_flags_must_be_booleans() -> None:
    """An Index flag given as anything but True or False is refused."""
    with pytest.raises(TypeError, match="unique must be True or False"):
        Index(lambda value: value, unique=1)  # type: ignore[call-overload]  # under test


def test_index_outside_a_class_cannot_be_used() -> None:
    """An Index never assigned in a class body has no name, and no host can serve it."""
    loose: Index[Member, str] = Index(lambda m: m.name)
    with pytest.raises(TypeError, match="declared as one class attribute to be used, not none"):
        IndexView(Members()._indexes, loose)


def test_index_declared_under_two_names_cannot_be_used() -> None:
    """One Index assigned to two attributes is refused when its host is made."""

    class Twice(Host[str, Member]):
        by_email: Index[Member, str | None] = Index(lambda m: m.email)
        also = by_email

    with pytest.raises(TypeError, match=r"not \['by_email', 'also'\]: declare one Index per"):
        Twice()


def test_subclass_inherits_and_adds_indexes() -> None:
    """A subclass of a host serves its bases' indexes and its own."""

    class Seniors(Members):
        by_first: Index[Member, str] = Index(lambda m: m.name[:1])

    host = Seniors()
    host["ada"] = member("ada", None, 70)
    assert host.by_first.find("a") == [("ada", member("ada", None, 70))]
    assert host.by_email.get("ada@x") == ("ada", member("ada", None, 70))


def test_index_of_another_class_is_refused(members: Members) -> None:
    """A host refuses to serve an index declared on a class it does not derive from."""

    class Other(Host[str, Member]):
        by_other: Index[Member, str] = Index(lambda m: m.name)

    with pytest.raises(LookupError, match="no index named 'by_other'"):
        members._index_view(Other.by_other)


# -- lookups -------------------------------------------------------------------------------


def test_get_returns_the_holder_of_a_unique_key(members: Members) -> None:
    """get on a unique index returns the one entry holding the index key."""
    assert members.by_email.get("cy@x") == ("cy", member("cy", None, 36, "admin", "ops"))


def test_get_of_an_absent_index_key_is_none(members: Members) -> None:
    """get returns None when no entry holds the index key."""
    assert members.by_email.get("nobody@x") is None


def test_get_is_refused_on_an_index_that_is_not_unique(members: Members) -> None:
    """get on a non-unique index raises TypeError pointing at find."""
    with pytest.raises(TypeError, match="'by_name' is not unique: use find"):
        members.by_name.get("ada")


def test_find_lists_the_holders_in_insertion_order(members: Members) -> None:
    """find returns every entry holding the index key, in the host's insertion order."""
    assert [key for key, _ in members.by_tag.find("admin")] == ["ada", "cy"]
    assert [key for key, _ in members.by_age.find(36)] == ["ada", "cy"]


def test_find_keeps_insertion_order_when_a_key_moves_into_a_bucket(members: Members) -> None:
    """An entry whose index key changes to a shared one is listed at its insertion position."""
    members["bob"] = member("bob", None, 25, "admin")
    members["dee"] = member("dee", None, 1, "admin")
    members["ada"] = member("ada", None, 36)
    members["ada"] = member("ada", None, 36, "admin")
    assert [key for key, _ in members.by_tag.find("admin")] == ["ada", "bob", "cy", "dee"]


def test_count_and_contains(members: Members) -> None:
    """count gives how many entries hold the index key; in says whether any does."""
    assert [members.by_tag.count(tag) for tag in ("admin", "ops", "new")] == [2, 1, 0]
    assert ("ops" in members.by_tag, "new" in members.by_tag) == (True, False)


def test_results_are_copies(members: Members) -> None:
    """Mutating a looked-up value changes nothing the host or its indexes hold."""
    found = members.by_email.get("ada@x")
    assert found is not None
    found[1].tags.append("hacked")
    assert members.data["ada"].tags == ["admin"]
    assert members.by_tag.find("hacked") == []


def test_results_are_snapshots(members: Members) -> None:
    """A result list is not changed by later writes."""
    found = members.by_tag.find("admin")
    del members["ada"]
    assert [key for key, _ in found] == ["ada", "cy"]


def test_none_leaves_the_entry_out() -> None:
    """An index function returning None leaves that entry out of the index."""
    host = Members()
    host["ghost"] = Member(name="ghost", email=None)
    assert (host.by_email.count("ghost@x"), len(host._indexes.named("by_email").entries)) == (
        0,
        0,
    )
    assert host.by_email.get(None) is None  # type: ignore[arg-type]  # asking for None


def test_multi_indexes_each_element_once(members: Members) -> None:
    """A multi index holds one entry per element; duplicates within one value collapse."""
    members["dee"] = member("dee", None, 5, "ops", "ops", "new")
    assert [key for key, _ in members.by_tag.find("ops")] == ["cy", "dee"]
    assert members.by_tag.count("new") == 1


def test_multi_index_forgets_repeated_elements_once(members: Members) -> None:
    """Removing an entry whose elements repeat drops its one entry per element."""
    members["dee"] = member("dee", None, 5, "ops", "ops")
    del members["dee"]
    assert keys_of(members.by_tag.find("ops")) == ["cy"]


def test_multi_index_refuses_a_string() -> None:
    """A multi index whose function returns a str (not a collection of them) is refused."""

    class Letters(Host[str, Member]):
        by_letters: Index[Member, str] = Index(lambda m: m.name, multi=True)

    host = Letters()
    with pytest.raises(TypeError, match=r"'by_letters' is multi.*not a str"):
        host["ada"] = member("ada")
    assert host.data == {}


# -- ordered lookups -------------------------------------------------------------------------


@pytest.fixture
def ages() -> Members:
    """A host whose members are aged 10, 20, ... 90, then a second 50 (``e2``)."""
    host = Members()
    for age in range(10, 100, 10):
        name = chr(ord("a") + age // 10 - 1)
        host[name] = member(name, None, age)
    host["e2"] = member("e2", None, 50)
    return host


def keys_of(found: list[tuple[str, Member]]) -> list[str]:
    """Return the keys of ``found``."""
    return [key for key, _ in found]


def test_range_is_half_open_and_ascending(ages: Members) -> None:
    """range(lo, hi) lists the entries with lo <= index key < hi, ascending."""
    assert keys_of(ages.by_age.range(30, 60)) == ["c", "d", "e", "e2"]


def test_range_with_open_bounds(ages: Members) -> None:
    """None as a bound leaves that side open."""
    assert keys_of(ages.by_age.range(None, 30)) == ["a", "b"]
    assert keys_of(ages.by_age.range(80, None)) == ["h", "i"]


def test_range_reverse_limit_offset(ages: Members) -> None:
    """reverse lists from the highest; offset skips, then limit caps the result."""
    assert keys_of(ages.by_age.range(None, None, reverse=True, limit=3, offset=1)) == [
        "h",
        "g",
        "f",
    ]
    assert keys_of(ages.by_age.range(50, 51, reverse=True)) == ["e2", "e"]


def test_range_with_crossed_bounds_is_empty(ages: Members) -> None:
    """A range whose low bound is above its high bound is empty."""
    assert ages.by_age.range(60, 30) == []


def test_range_refuses_a_negative_offset(ages: Members) -> None:
    """A negative offset or limit is refused with ValueError."""
    with pytest.raises(ValueError, match="offset must be an int >= 0"):
        ages.by_age.range(None, None, offset=-1)
    with pytest.raises(ValueError, match="limit must be None or an int >= 0"):
        ages.by_age.range(None, None, limit=-1)


def test_range_is_refused_on_an_index_that_is_not_ordered(members: Members) -> None:
    """range on a hash index raises TypeError naming the index."""
    with pytest.raises(TypeError, match="'by_name' is not ordered: range"):
        members.by_name.range("a", "z")


def test_iteration_follows_the_index_order(ages: Members) -> None:
    """Iterating an ordered index yields its entries by index key, ties in insertion order."""
    assert [key for key, _ in ages.by_age] == ["a", "b", "c", "d", "e", "e2", "f", "g", "h", "i"]


def test_iteration_is_refused_on_an_index_that_is_not_ordered(members: Members) -> None:
    """Iterating a hash index raises TypeError naming the index."""
    with pytest.raises(TypeError, match="'by_email' is not ordered: iteration"):
        list(members.by_email)


# -- writes ----------------------------------------------------------------------------------


def test_replacing_a_value_moves_its_index_keys(members: Members) -> None:
    """After a write, the old index key no longer finds the entry and the new one does."""
    members["ada"] = member("ada", "ada@new", 40)
    assert members.by_email.get("ada@x") is None
    assert members.by_email.get("ada@new") == ("ada", member("ada", "ada@new", 40))
    assert keys_of(members.by_age.range(37, None)) == ["ada"]


def test_removing_an_entry_drops_its_index_keys(members: Members) -> None:
    """After a removal, no index finds the entry."""
    del members["cy"]
    assert (members.by_email.get("cy@x"), members.by_tag.count("ops")) == (None, 0)
    assert keys_of(list(members.by_age)) == ["bob", "ada"]


def test_reinserting_a_removed_key_puts_it_last(members: Members) -> None:
    """A key removed and inserted again is listed after the others holding its index key."""
    del members["ada"]
    members["ada"] = member("ada", None, 36, "admin")
    assert keys_of(members.by_tag.find("admin")) == ["cy", "ada"]


def test_unique_violation_names_index_index_key_and_holder(members: Members) -> None:
    """A write taking a held unique index key raises UniqueViolationError naming all three."""
    with pytest.raises(UniqueViolationError, match=r"'by_email'.*'bob@x'.*held by key 'bob'") as e:
        members["dee"] = member("dee", "bob@x")
    assert (e.value.index, e.value.index_key, e.value.key) == ("by_email", "bob@x", "bob")
    assert e.value.conflicts == (("by_email", "bob@x", ("bob", "dee")),)


def test_unique_violation_is_a_store_error_and_a_value_error() -> None:
    """UniqueViolationError can be caught as StoreError and as ValueError."""
    assert issubclass(UniqueViolationError, StoreError)
    assert issubclass(UniqueViolationError, ValueError)


def test_unique_violation_changes_nothing(members: Members) -> None:
    """A write refused by a unique index leaves the host and every index as they were."""
    before = snapshot(members)
    with pytest.raises(UniqueViolationError, match="by_email"):
        members["ada"] = member("ada", "cy@x", 99, "new")
    assert snapshot(members) == before


def test_unique_hash_index_alone_frees_a_removed_entry_s_key() -> None:
    """With only a unique hash index, a removed entry's index key can be taken by another."""

    class Emails(Host[str, Member]):
        by_email: Index[Member, str] = Index(lambda m: m.email, unique=True)

    host = Emails()
    host["ada"] = member("ada")
    del host["ada"]
    host["bob"] = member("bob", "ada@x")
    assert host.by_email.get("ada@x") == ("bob", member("bob", "ada@x"))


def test_an_entry_may_keep_its_own_unique_key(members: Members) -> None:
    """Rewriting an entry with its own unique index key is no violation."""
    members["ada"] = member("ada", None, 37)
    assert members.by_email.get("ada@x") == ("ada", member("ada", None, 37))


def test_a_freed_unique_key_can_be_taken(members: Members) -> None:
    """Once its holder is removed, a unique index key can be taken by another key."""
    del members["bob"]
    members["dee"] = member("dee", "bob@x")
    assert members.by_email.get("bob@x") == ("dee", member("dee", "bob@x"))


def test_index_function_errors_propagate_and_change_nothing(members: Members) -> None:
    """An exception an index function raises aborts the write unchanged, nothing changed."""

    class Fragile(Host[str, Member]):
        by_initial: Index[Member, str] = Index(lambda m: m.name[0])

    host = Fragile()
    host["ada"] = member("ada")
    with pytest.raises(IndexError, match="string index out of range"):
        host["nameless"] = member("")
    assert (host.data, host.by_initial.find("a")) == (
        {"ada": member("ada")},
        [("ada", member("ada"))],
    )


def test_unhashable_index_keys_are_refused() -> None:
    """An index key that is not hashable is refused with TypeError naming the index."""

    class Tagged(Host[str, Member]):
        by_tags: Index[Member, list[str]] = Index(lambda m: m.tags)

    host = Tagged()
    with pytest.raises(TypeError, match=r"index 'by_tags'.*of key 'ada' is not hashable"):
        host["ada"] = member("ada", None, 0, "x")
    assert host.data == {}


def test_ordered_index_refuses_incomparable_keys() -> None:
    """An ordered index key that cannot be compared with the others is refused, naming it."""

    class Mixed(Host[str, int | str]):
        by_self: Index[int | str, int | str] = Index(lambda v: v, ordered=True)

    host = Mixed()
    host["one"] = 1
    with pytest.raises(TypeError, match=r"ordered index 'by_self'.*'a' of key 'x' cannot be"):
        host["x"] = "a"
    assert (host.data, keys_of_any(list(host.by_self))) == ({"one": 1}, ["one"])


def keys_of_any(found: Sequence[tuple[str, object]]) -> list[str]:
    """Return the keys of ``found``."""
    return [key for key, _ in found]


def test_ordered_index_refuses_nan() -> None:
    """NaN, which orders with nothing, is refused by an ordered index."""

    class Floats(Host[str, float]):
        by_self: Index[float, float] = Index(lambda v: v, ordered=True)

    host = Floats()
    with pytest.raises(TypeError, match="'by_self': index key nan of key 'x' cannot be"):
        host["x"] = math.nan
    assert host.data == {}


def test_ordered_index_refuses_incomparable_keys_within_one_write() -> None:
    """The index keys one write adds must also compare with each other."""

    class Mixed(Host[str, list[int | str]]):
        by_each: Index[list[int | str], int | str] = Index(lambda v: v, ordered=True, multi=True)

    host = Mixed()
    with pytest.raises(TypeError, match="ordered index 'by_each'"):
        host["x"] = [1, "a"]
    assert host.data == {}


def test_ordered_index_takes_a_new_key_type_when_every_old_key_goes() -> None:
    """One write replacing every entry's index key by another type is accepted."""

    class Mixed(Host[str, int | str]):
        by_self: Index[int | str, int | str] = Index(lambda v: v, ordered=True)

    host = Mixed()
    host["x"] = 1
    host.write([("x", "a")])
    assert keys_of_any(host.by_self.range("a", "b")) == ["x"]


class AnyKind(Host[str, object]):
    """One ordered index alone, on the value itself: any type may be tried."""

    by_self: Index[object, object] = Index(lambda v: v, ordered=True)


def test_ordered_index_of_one_type_refuses_another_after_being_emptied() -> None:
    """An index emptied of its ints takes strs, then refuses an int, nothing written.

    The index keeps the one builtin type all its keys have, to let a new key of that type
    in without a search: this proves it follows the keys when they all go.
    """
    host = AnyKind()
    host["one"], host["two"] = 1, 2
    del host["one"]
    del host["two"]
    host["a"], host["b"] = "a", "b"
    with pytest.raises(TypeError, match="'by_self': index key 3 of key 'x' cannot be ordered"):
        host["x"] = 3
    assert (host.data, keys_of_any(list(host.by_self))) == ({"a": "a", "b": "b"}, ["a", "b"])


@pytest.mark.parametrize("reopened", [False, True], ids=["written", "rebuilt"])
def test_ordered_index_of_mixed_numbers_refuses_a_str(reopened: bool) -> None:
    """Ints and floats order together; a str then added is refused, also after a rebuild."""
    host = AnyKind()
    host["one"], host["half"] = 1, 0.5
    if reopened:
        host = host.reopen()
    host["two"] = 2
    with pytest.raises(TypeError, match="'by_self': index key 'a' of key 'x' cannot be ordered"):
        host["x"] = "a"
    assert keys_of_any(list(host.by_self)) == ["half", "one", "two"]
    assert "x" not in host.data


class Picky:
    """An index key that orders above the ints under 100 and compares with nothing else."""

    def __lt__(self, other: object) -> bool:
        if isinstance(other, int) and other < 100:
            return False
        raise TypeError(f"a Picky does not compare with {other!r}")

    def __gt__(self, other: object) -> bool:
        return not self < other


def test_ordered_index_refuses_an_int_that_a_held_key_does_not_compare_with() -> None:
    """An int is checked against every held index key, not only against the other ints:
    an index holding an object that orders with small ints only refuses a big one."""
    host = AnyKind()
    host["picky"], host["five"] = Picky(), 5
    with pytest.raises(TypeError, match="'by_self': index key 200 of key 'x' cannot be ordered"):
        host["x"] = 200
    assert keys_of_any(list(host.by_self)) == ["five", "picky"]
    host["six"] = 6
    assert keys_of_any(host.by_self.range(5, None)) == ["five", "six", "picky"]


def test_ordered_index_after_a_rebuild_refuses_another_type() -> None:
    """An index rebuilt from ints (its keys' type not known yet) refuses a str."""
    host = AnyKind([("one", 1), ("two", 2)])
    with pytest.raises(TypeError, match="'by_self': index key 'a' of key 'x' cannot be ordered"):
        host["x"] = "a"
    host["three"] = 3
    assert keys_of_any(list(host.by_self)) == ["one", "two", "three"]


def test_lone_unique_ordered_index_refuses_a_new_key_taking_a_held_index_key() -> None:
    """A unique ordered index alone: a new key taking a held index key is refused."""

    class Unique(Host[str, int]):
        by_self: Index[int, int] = Index(lambda v: v, ordered=True, unique=True)

    host = Unique()
    host["one"] = 1
    with pytest.raises(UniqueViolationError, match="index key 1 is already held by key 'one'"):
        host["uno"] = 1
    assert (host.data, keys_of_any(list(host.by_self))) == ({"one": 1}, ["one"])


def test_lone_hash_index_lists_keys_in_insertion_order() -> None:
    """A hash index alone (not unique) lists a key's holders in insertion order: a key
    removed and inserted again comes last, a key changed in place keeps its place."""

    class Parity(Host[str, int]):
        by_parity: Index[int, int] = Index(lambda v: v % 2)

    host = Parity()
    host["a"], host["b"], host["c"], host["d"] = 2, 4, 6, 1
    del host["a"]
    host["a"] = 8
    host["d"] = 10  # moves to the even bucket, at its own place (before "a")
    assert keys_of_any(host.by_parity.find(0)) == ["b", "c", "d", "a"]
    assert keys_of_any(host.by_parity.find(1)) == []


# -- one write of several keys (a transaction's net result) ---------------------------------


def test_two_entries_may_swap_unique_keys_in_one_write(members: Members) -> None:
    """One write giving two entries each other's unique index key is accepted."""
    members.write([("ada", member("ada", "bob@x")), ("bob", member("bob", "ada@x"))])
    assert [members.by_email.get(email) for email in ("ada@x", "bob@x")] == [
        ("bob", member("bob", "ada@x")),
        ("ada", member("ada", "bob@x")),
    ]


def test_two_new_entries_may_not_share_a_unique_key(members: Members) -> None:
    """One write giving two entries the same unique index key is refused, changing nothing."""
    before = snapshot(members)
    with pytest.raises(UniqueViolationError, match="'new@x' is already held by key 'dee'"):
        members.write([("dee", member("dee", "new@x")), ("eve", member("eve", "new@x"))])
    assert snapshot(members) == before


def test_a_kept_unique_key_blocks_a_write_of_several_keys(members: Members) -> None:
    """An entry changed in the same write but keeping its unique index key still holds it."""
    with pytest.raises(UniqueViolationError, match="'ada@x' is already held by key 'ada'"):
        members.write([("dee", member("dee", "ada@x")), ("ada", member("ada", None, 1))])


def test_a_multi_entry_keeping_one_unique_element_still_holds_it() -> None:
    """In a unique multi index, an entry changed in the same write keeps the elements it keeps."""

    class Aliases(Host[str, Member]):
        by_alias: Index[Member, str] = Index(lambda m: m.tags, unique=True, multi=True)

    host = Aliases()
    host["ada"] = member("ada", None, 0, "x", "y")
    with pytest.raises(UniqueViolationError, match="'x' is already held by key 'ada'"):
        host.write([("bob", member("bob", None, 0, "x")), ("ada", member("ada", None, 0, "x"))])
    assert host.by_alias.get("y") == ("ada", member("ada", None, 0, "x", "y"))


def test_remove_then_insert_in_one_write_moves_the_key_last(members: Members) -> None:
    """A key removed and inserted again within one write is listed last, as the host does."""
    members.write([("ada", MISSING), ("ada", member("ada", None, 36, "admin"))])
    assert keys_of(members.by_tag.find("admin")) == ["cy", "ada"]
    assert keys_of(members.by_age.find(36)) == ["cy", "ada"]


def test_insert_then_remove_in_one_write_leaves_no_entry(members: Members) -> None:
    """A key inserted and removed within one write is in no index afterwards."""
    members.write([("dee", member("dee")), ("dee", MISSING)])
    assert (members.by_email.get("dee@x"), members._indexes._seqs.get("dee")) == (None, None)


# -- transactions ----------------------------------------------------------------------------


def test_transaction_write_is_checked_at_its_call(members: Members) -> None:
    """A transaction's write taking a held unique index key raises at that call."""
    with members.transaction() as txn:
        with pytest.raises(UniqueViolationError, match="held by key 'bob'"):
            txn["dee"] = member("dee", "bob@x")
        txn["eve"] = member("eve")
    assert members.by_email.get("eve@x") == ("eve", member("eve"))
    assert members.by_email.get("bob@x") == ("bob", member("bob", None, 25))


def test_transaction_holder_rewritten_with_its_key_still_holds_it(members: Members) -> None:
    """An entry the transaction rewrote with the same unique index key still holds it."""
    with members.transaction() as txn:
        txn["bob"] = member("bob", None, 26)
        with pytest.raises(UniqueViolationError, match="'bob@x' is already held by key 'bob'"):
            txn["dee"] = member("dee", "bob@x")


def test_transaction_sees_its_own_removals(members: Members) -> None:
    """A unique index key freed earlier in the transaction can be taken later in it."""
    with members.transaction() as txn:
        del txn["bob"]
        txn["dee"] = member("dee", "bob@x")
    assert members.by_email.get("bob@x") == ("dee", member("dee", "bob@x"))


def test_transaction_swaps_unique_keys_through_its_own_view(members: Members) -> None:
    """Two entries swap unique index keys in a transaction once one of them lets go first."""
    with members.transaction() as txn:
        txn["ada"] = member("ada", "tmp@x")
        txn["bob"] = member("bob", "ada@x")
        txn["ada"] = member("ada", "bob@x")
    assert keys_of([e for e in map(members.by_email.get, ["ada@x", "bob@x"]) if e]) == [
        "bob",
        "ada",
    ]


def test_transaction_refuses_two_staged_writes_of_one_unique_key(members: Members) -> None:
    """A second staged write taking a unique index key the first staged write took is refused."""
    with members.transaction() as txn:
        txn["dee"] = member("dee", "new@x")
        with pytest.raises(UniqueViolationError, match="'new@x' is already held by key 'dee'"):
            txn["eve"] = member("eve", "new@x")


def test_transaction_frees_a_key_its_staged_write_gave_up(members: Members) -> None:
    """A unique index key taken and then given up in the transaction can be taken again."""
    with members.transaction() as txn:
        txn["dee"] = member("dee", "new@x")
        txn["dee"] = member("dee", "dee@x")
        txn["eve"] = member("eve", "new@x")
    assert members.by_email.get("new@x") == ("eve", member("eve", "new@x"))


def test_transaction_refuses_incomparable_ordered_keys_at_the_call(ages: Members) -> None:
    """A transaction's write whose ordered index key cannot be compared is refused there."""

    class Mixed(Host[str, int | str]):
        by_self: Index[int | str, int | str] = Index(lambda v: v, ordered=True)

    host = Mixed()
    host["one"] = 1
    with host.transaction() as txn, pytest.raises(TypeError, match="'by_self'"):
        txn["x"] = "a"


# -- rebuild (open, replay, migrations, clear) ----------------------------------------------


def test_rebuild_equals_the_indexes_built_by_writes(members: Members) -> None:
    """Indexes rebuilt from the entries answer every lookup as the written ones do."""
    members["ada"] = member("ada", "ada@new", 12, "ops")
    del members["bob"]
    members["bob"] = member("bob", None, 36, "admin")
    assert snapshot(members.reopen()) == snapshot(members)


class Plain(Host[str, Member]):
    """Unique, ordered and hash indexes, no multi one: a rebuild takes whole columns."""

    by_email: Index[Member, str] = Index(lambda m: m.email, unique=True)
    by_age: Index[Member, int] = Index(lambda m: m.age, ordered=True)
    by_name: Index[Member, str] = Index(lambda m: m.name[:1])


def test_rebuild_by_columns_equals_the_indexes_built_by_writes() -> None:
    """Indexes without a multi one, rebuilt from the entries, answer as the written ones."""
    host = Plain()
    for name, age in [("ada", 3), ("bob", 1), ("zed", 2), ("al", 3), ("cy", 2), ("bea", 1)]:
        host[name] = member(name, None, age)
    del host["bob"]
    host["bob"] = member("bob", None, 3)
    host["ada"] = member("ada", "new@x", 0)

    def answers(plain: Plain) -> tuple[object, ...]:
        return (
            [plain.by_email.get(f"{name}@x") for name in ("ada", "bob", "al", "new")],
            list(plain.by_age),
            [plain.by_name.find(initial) for initial in "abc"],
        )

    assert answers(host.reopen()) == answers(host)


def test_rebuild_lists_every_conflicting_key() -> None:
    """Data breaking a unique index raises UniqueViolationError listing every conflict."""
    entries = [
        ("a", member("a", "one@x")),
        ("b", member("b", "one@x")),
        ("c", member("c", "two@x")),
        ("d", member("d", "two@x")),
        ("e", member("e", "one@x")),
    ]
    with pytest.raises(
        UniqueViolationError, match=re.escape("'one@x' held by keys ['a', 'b', 'e']")
    ) as e:
        Members(entries)
    assert e.value.conflicts == (
        ("by_email", "one@x", ("a", "b", "e")),
        ("by_email", "two@x", ("c", "d")),
    )
    assert (e.value.index, e.value.index_key, e.value.key) == ("by_email", "one@x", "a")


def test_failed_rebuild_changes_nothing(members: Members) -> None:
    """A rebuild that raises leaves the indexes as they were."""
    before = snapshot(members)
    with pytest.raises(UniqueViolationError, match="by_email"):
        members._indexes.rebuild([("x", member("x", "q@x")), ("y", member("y", "q@x"))])
    assert snapshot(members) == before


def test_rebuild_names_the_key_whose_index_function_raised() -> None:
    """An index function raising during a rebuild propagates with a note naming the key."""

    class Fragile(Host[str, Member]):
        by_initial: Index[Member, str] = Index(lambda m: m.name[0])

    with pytest.raises(IndexError, match="string index out of range") as e:
        Fragile([("ok", member("ok")), ("nameless", member(""))])
    assert e.value.__notes__ == ["raised by index 'by_initial' for key 'nameless'"]


def test_rebuild_refuses_incomparable_ordered_keys() -> None:
    """Data giving an ordered index keys that cannot be compared raises TypeError."""

    class Mixed(Host[str, int | str]):
        by_self: Index[int | str, int | str] = Index(lambda v: v, ordered=True)

    with pytest.raises(TypeError, match="ordered index 'by_self': the data gives index keys"):
        Mixed([("one", 1), ("a", "a")])


def test_clear_empties_every_index(members: Members) -> None:
    """After clear, no index finds anything and every index key is free again."""
    members.clear()
    members["dee"] = member("dee", "ada@x", 36, "admin")
    assert (keys_of(members.by_tag.find("admin")), keys_of(list(members.by_age))) == (
        ["dee"],
        ["dee"],
    )


# -- threads -----------------------------------------------------------------------------------


def test_lookups_are_snapshots_while_another_thread_writes() -> None:
    """A lookup racing writes returns an entry whose value holds the index key looked up."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that races happen
    host = Members()
    host["ada"], host["bob"] = member("ada", "one@x"), member("bob", "two@x")
    done = threading.Event()
    wrong: list[tuple[str, Member]] = []

    def swap() -> None:
        for round_ in range(3000):
            first, second = ("one@x", "two@x") if round_ % 2 else ("two@x", "one@x")
            host.write([("ada", member("ada", first)), ("bob", member("bob", second))])
        done.set()

    writer = threading.Thread(target=swap)
    try:
        writer.start()
        while not done.is_set():
            found = host.by_email.get("one@x")
            if found is None or found[1].email != "one@x":
                wrong.append(found or ("", member("none")))
    finally:
        writer.join()
        sys.setswitchinterval(previous)
    assert wrong == []


# -- lookups in a transaction ----------------------------------------------------------------


def test_transaction_lookups_see_a_staged_insert_last(members: Members) -> None:
    """A key inserted in the transaction is found through its view, after the others."""
    with members.transaction() as txn:
        txn["dee"] = member("dee", None, 36, "admin")
        assert keys_of(txn.view(Members.by_tag).find("admin")) == ["ada", "cy", "dee"]
        assert txn.view(Members.by_email).get("dee@x") == ("dee", member("dee", None, 36, "admin"))


def test_transaction_lookups_see_a_staged_change(members: Members) -> None:
    """A value changed in the transaction is found by its new index key, not its old one."""
    with members.transaction() as txn:
        txn["ada"] = member("ada", "ada@new", 36)
        by_email = txn.view(Members.by_email)
        assert (by_email.get("ada@x"), by_email.get("ada@new")) == (
            None,
            ("ada", member("ada", "ada@new", 36)),
        )
        assert keys_of(txn.view(Members.by_age).find(36)) == ["ada", "cy"]


def test_transaction_lookups_miss_a_staged_removal(members: Members) -> None:
    """A key removed in the transaction is in none of its view's lookups."""
    with members.transaction() as txn:
        del txn["cy"]
        tags = txn.view(Members.by_tag)
        assert (keys_of(tags.find("admin")), tags.count("ops"), "ops" in tags) == (
            ["ada"],
            0,
            False,
        )


def test_transaction_range_merges_staged_entries_in_order(ages: Members) -> None:
    """range through a transaction's view orders staged and stored entries together."""
    with ages.transaction() as txn:
        txn["z"] = member("z", None, 35)
        txn["c"] = member("c", None, 55)
        del txn["d"]
        by_age = txn.view(Members.by_age)
        assert keys_of(by_age.range(20, 60)) == ["b", "z", "e", "e2", "c"]
        assert keys_of(by_age.range(20, 60, reverse=True, limit=2, offset=1)) == ["e2", "e"]


def test_transaction_lookups_leave_the_store_s_lookups_alone(members: Members) -> None:
    """While a transaction is open, the store's own lookups show the state before it."""
    with members.transaction() as txn:
        txn["dee"] = member("dee")
        assert members.by_email.get("dee@x") is None
