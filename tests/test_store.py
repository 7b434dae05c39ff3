"""TypedStore's public API: the mapping protocol, its own methods, copies, lifecycle and buffering.

Tests taking the ``settle`` fixture run twice: on the store as written ("fresh") and on the
same log closed and opened again ("reopened"), so memory and replay are held to one answer.

One class per promise, in file order:

- ``TestMappingProtocol``: reads, writes, removals and equality behave as a dict's.
- ``TestInsertionOrder``: entries keep insertion order.
- ``TestPop``: pop of a present or missing key.
- ``TestInsertAndRemove``: insert and remove return the previous value.
- ``TestGet``: get, a stored None included.
- ``TestGetIndex``: reads by insertion position.
- ``TestModify``: modify stores what fn returns, or changes nothing.
- ``TestCopies``: values going in and out are copies.
- ``TestLifecycle``: open, flush, close; closed and readonly stores.
- ``TestBuffering``: write_through=False.
- ``TestModifyWithADefault``: modify with a default is an upsert.
- ``TestKeysOfAnotherType``: keys given in another type than they are stored in.
- ``TestSetdefault``: setdefault.
- ``TestDeclarativeForm``: types bound by a subclass, a generic base, or passed to open.
- ``TestWritesFromInsideAWrite``: signal handlers, callbacks and validators that write.
- ``TestNanKeys``: keys not equal to themselves.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, BinaryIO, Generic, TypeVar

import msgpack
import pydantic
import pytest

from tests.conftest import OpenStore, Settle, frames_after
from tests.models import Point, User
from typedstore import (
    EncodingError,
    StoreClosedError,
    StoreConfig,
    StoreReadOnlyError,
    TypedStore,
    _format,
)
from typedstore._format import RecordKind, decode_header, frame_body


class Ints(TypedStore[str, int]):
    """Immutable values: handed out as they are."""


class Users(TypedStore[str, User]):
    """Mutable model values: handed out as copies."""


class Lists(TypedStore[str, list[int]]):
    """Mutable container values."""


class Points(TypedStore[str, Point]):
    """Frozen model values of immutable fields."""


class Optionals(TypedStore[str, int | None]):
    """Values that may be None, which must not read as missing."""


class Tagged(pydantic.BaseModel):
    """A frozen model of immutable fields that also has a private, settable attribute."""

    model_config = pydantic.ConfigDict(frozen=True)

    x: int
    _note: str = pydantic.PrivateAttr(default="")


class FrozenList(pydantic.BaseModel):
    """A frozen model whose field is a mutable list."""

    model_config = pydantic.ConfigDict(frozen=True)

    xs: list[int]


class TaggedStore(TypedStore[str, Tagged]):
    """Values that look immutable but carry private state."""


class FrozenLists(TypedStore[str, FrozenList]):
    """Frozen values with a mutable field."""


def _alice() -> User:
    return User(name="Alice", age=30, tags=["admin"])


class TestMappingProtocol:
    """A store is a MutableMapping: reads, writes, removals and equality behave as a dict's."""

    def test_is_a_mutable_mapping(self, log_path: Path, open_store: OpenStore) -> None:
        """A store is a collections.abc.MutableMapping."""
        with open_store(Ints, log_path) as store:
            assert isinstance(store, MutableMapping)

    def test_setitem_then_getitem(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """store[k] = v stores a value that store[k] reads back."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            with settle(store) as store:
                assert store["a"] == 1

    def test_getitem_missing_raises_keyerror(self, log_path: Path, open_store: OpenStore) -> None:
        """store[k] of a missing key raises KeyError naming the key."""
        with open_store(Ints, log_path) as store, pytest.raises(KeyError, match="nope"):
            store["nope"]

    def test_delitem_removes(self, log_path: Path, open_store: OpenStore, settle: Settle) -> None:
        """del store[k] removes the key."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            store["b"] = 2
            del store["a"]
            with settle(store) as store:
                assert list(store.items()) == [("b", 2)]

    @pytest.mark.file_only  # compares the log's file before and after
    def test_delitem_missing_raises_keyerror_and_writes_nothing(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """del store[k] of a missing key raises KeyError and leaves the file as it was."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            size = log_path.stat().st_size
            with pytest.raises(KeyError, match="nope"):
                del store["nope"]
            assert log_path.stat().st_size == size

    def test_in_and_contains_key(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """`in` and contains_key say whether a key is present."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            with settle(store) as store:
                assert "a" in store
                assert "b" not in store
                assert store.contains_key("a")
                assert not store.contains_key("b")

    def test_len_counts_live_entries(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """len counts live entries: overwrites and removals do not add to it."""
        with open_store(Ints, log_path) as store:
            for key in "abcd":
                store[key] = 1
            store["a"] = 2
            del store["b"]
            with settle(store) as store:
                assert len(store) == 3

    def test_equals_dict_with_same_entries(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """A store equals a dict with the same entries and differs from one with other entries."""
        with open_store(Ints, log_path) as store:
            store.update({"a": 1, "b": 2})
            with settle(store) as store:
                assert store == {"b": 2, "a": 1}
                assert store != {"a": 1, "b": 3}
                assert store != {"a": 1}

    def test_update_from_mapping_and_keywords(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """update takes a mapping and keywords; existing keys keep their position."""
        with open_store(Ints, log_path) as store:
            store["b"] = 0
            store.update({"a": 1, "b": 2}, c=3)
            with settle(store) as store:
                assert list(store.items()) == [("b", 2), ("a", 1), ("c", 3)]

    @pytest.mark.file_only  # compares the log's file before and after
    def test_clear_writes_one_record(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """clear removes every entry with exactly one record appended to the log."""
        with open_store(Ints, log_path) as store:
            for key in "abcde":
                store[key] = 1
            size = log_path.stat().st_size
            store.clear()
            assert len(store) == 0
            assert len(frames_after(log_path, size)) == 1
            with settle(store) as store:
                assert len(store) == 0
                assert list(store) == []

    @pytest.mark.file_only  # compares the log's file before and after
    def test_clear_of_empty_store_writes_nothing(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """clear on an empty store leaves the file as it was."""
        with open_store(Ints, log_path) as store:
            size = log_path.stat().st_size
            store.clear()
            assert log_path.stat().st_size == size


class TestInsertionOrder:
    """Entries keep insertion order through iteration, overwrites, removals and popitem."""

    def test_iteration_follows_insertion_order(
        self, log_path: Path, open_store: OpenStore, settle: Settle, rng: random.Random
    ) -> None:
        """iter, keys, values and items all follow insertion order, not key order."""
        keys = [f"key-{number}" for number in range(50)]
        rng.shuffle(keys)
        with open_store(Ints, log_path) as store:
            for number, key in enumerate(keys):
                store[key] = number
            with settle(store) as store:
                assert list(store) == keys
                assert list(store.keys()) == keys
                assert list(store.values()) == list(range(len(keys)))
                assert list(store.items()) == list(zip(keys, range(len(keys)), strict=True))

    def test_reversed_gives_the_keys_last_first(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """reversed(store) gives the keys in reverse insertion order, like a dict's."""
        with open_store(Ints, log_path) as store:
            for key in "bca":
                store[key] = 1
            del store["c"]
            store["c"] = 2
            store["b"] = 3
            with settle(store) as store:
                assert list(reversed(store)) == ["c", "a", "b"]

    def test_existing_key_keeps_its_position(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """Overwriting an existing key keeps its position in the order."""
        with open_store(Ints, log_path) as store:
            for key in "abc":
                store.insert(key, 0)
            store.insert("a", 9)
            with settle(store) as store:
                assert list(store.items()) == [("a", 9), ("b", 0), ("c", 0)]

    def test_popitem_is_lifo_like_dict(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """popitem removes and returns the last entry, as dict.popitem does."""
        model = {"a": 1, "b": 2, "c": 3}
        with open_store(Ints, log_path) as store:
            store.update(model)
            store["a"] = 10
            model["a"] = 10
            with settle(store) as store:
                assert store.popitem() == model.popitem() == ("c", 3)
                assert store.popitem() == model.popitem() == ("b", 2)
                assert dict(store) == model

    def test_popitem_empty_raises(self, log_path: Path, open_store: OpenStore) -> None:
        """popitem on an empty store raises KeyError."""
        with open_store(Ints, log_path) as store, pytest.raises(KeyError, match="empty"):
            store.popitem()


class TestPop:
    """pop returns and removes a present key, and a missing one gives the default or KeyError."""

    def test_pop_returns_and_removes(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """pop of a present key returns its value and removes it."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            store["b"] = 2
            assert store.pop("a") == 1
            with settle(store) as store:
                assert list(store.items()) == [("b", 2)]

    @pytest.mark.file_only  # compares the log's file before and after
    def test_pop_missing_with_default_returns_default(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """pop of a missing key with a default returns the default and writes nothing."""
        with open_store(Ints, log_path) as store:
            size = log_path.stat().st_size
            assert store.pop("nope", -1) == -1
            assert log_path.stat().st_size == size

    def test_pop_missing_without_default_raises(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """pop of a missing key without a default raises KeyError."""
        with open_store(Ints, log_path) as store, pytest.raises(KeyError, match="nope"):
            store.pop("nope")


class TestInsertAndRemove:
    """insert and remove return the previous value and write nothing when nothing changes."""

    def test_insert_returns_previous_value(self, log_path: Path, open_store: OpenStore) -> None:
        """insert returns None for a new key and the replaced value for an existing one."""
        with open_store(Users, log_path) as store:
            assert store.insert("a", _alice()) is None
            previous = store.insert("a", User(name="Alice", age=31))
            assert previous == _alice()

    def test_remove_returns_value(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """remove returns the removed value and keeps the order of the rest."""
        with open_store(Ints, log_path) as store:
            for number, key in enumerate("abc"):
                store[key] = number
            assert store.remove("b") == 1
            with settle(store) as store:
                assert list(store) == ["a", "c"]

    @pytest.mark.file_only  # compares the log's file before and after
    def test_remove_absent_key_writes_nothing(self, log_path: Path, open_store: OpenStore) -> None:
        """remove of an absent key returns None and leaves the file as it was."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            size = log_path.stat().st_size
            assert store.remove("nope") is None
            assert log_path.stat().st_size == size
            assert dict(store) == {"a": 1}


class TestGet:
    """get returns the stored value, a stored None included, or the default."""

    def test_get_with_default(self, log_path: Path, open_store: OpenStore) -> None:
        """get returns the value, None for a missing key, or the default given."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            assert store.get("a") == 1
            assert store.get("a", 7) == 1
            assert store.get("nope") is None
            assert store.get("nope", 7) == 7

    def test_stored_none_is_not_missing(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """A stored None reads as None, is counted and contained, and is not the default."""
        with open_store(Optionals, log_path) as store:
            store["n"] = None
            with settle(store) as store:
                assert "n" in store
                assert len(store) == 1
                assert store["n"] is None
                assert store.get("n", -1) is None
                assert store.get("missing", -1) == -1
                assert store.pop("n", -1) is None
                assert "n" not in store


class TestGetIndex:
    """get_index reads entries by insertion position, negative ones from the end."""

    def test_get_index_positive_and_negative(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """get_index reads insertion positions, negative ones counting from the end."""
        with open_store(Ints, log_path) as store:
            for number, key in enumerate("abcd"):
                store[key] = number
            with settle(store) as store:
                assert store.get_index(0) == ("a", 0)
                assert store.get_index(3) == ("d", 3)
                assert store.get_index(-1) == ("d", 3)
                assert store.get_index(-4) == ("a", 0)

    def test_get_index_out_of_range_is_none(self, log_path: Path, open_store: OpenStore) -> None:
        """get_index out of range at either end gives None."""
        with open_store(Ints, log_path) as store:
            assert store.get_index(0) is None
            store["a"] = 1
            assert store.get_index(1) is None
            assert store.get_index(-2) is None
            assert store.get_index(10**9) is None

    @pytest.mark.parametrize("index", [True, "0", 0.0, None])
    def test_get_index_rejects_non_int(
        self, log_path: Path, open_store: OpenStore, index: object
    ) -> None:
        """get_index of a bool, str, float or None raises TypeError."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            with pytest.raises(TypeError, match="index must be an int"):
                store.get_index(index)  # type: ignore[arg-type]  # the wrong type is the test

    def test_get_index_sees_later_inserts(self, log_path: Path, open_store: OpenStore) -> None:
        """get_index finds keys inserted after an earlier get_index call."""
        with open_store(Ints, log_path) as store:
            store["a"] = 0
            assert store.get_index(-1) == ("a", 0)
            store["b"] = 1
            store["a"] = 2
            assert store.get_index(-1) == ("b", 1)
            assert store.get_index(0) == ("a", 2)
            assert store.get_index(2) is None

    def test_get_index_after_removals(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """get_index follows the order left by removals and later inserts."""
        with open_store(Ints, log_path) as store:
            for number, key in enumerate("abcde"):
                store[key] = number
            assert store.get_index(2) == ("c", 2)  # builds the position index before the removals
            del store["b"]
            store.remove("d")
            store["f"] = 5
            store["a"] = 10
            with settle(store) as store:
                expected = [("a", 10), ("c", 2), ("e", 4), ("f", 5)]
                assert [store.get_index(i) for i in range(4)] == expected
                assert store.get_index(-1) == ("f", 5)
                assert store.get_index(4) is None


class TestModify:
    """modify stores what fn returns, and changes nothing when fn or its result fails."""

    def test_modify_returns_and_stores_new_value(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """modify stores what fn returns and returns it."""
        with open_store(Users, log_path) as store:
            store["a"] = _alice()
            result = store.modify("a", lambda user: user.model_copy(update={"age": user.age + 1}))
            assert result.age == 31
            with settle(store) as store:
                assert store["a"].age == 31

    @pytest.mark.file_only  # compares the log's file before and after
    def test_modify_fn_raising_changes_nothing(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """If fn raises, the exception propagates and neither memory nor file changes."""
        with open_store(Users, log_path) as store:
            store["a"] = _alice()
            size = log_path.stat().st_size

            def fail(user: User) -> User:
                raise ValueError("refused by fn")

            with pytest.raises(ValueError, match="refused by fn"):
                store.modify("a", fail)
            assert log_path.stat().st_size == size
            with settle(store) as store:
                assert store["a"] == _alice()

    @pytest.mark.file_only  # compares the log's file before and after
    def test_modify_invalid_result_changes_nothing(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """If fn returns an invalid value, ValidationError is raised and nothing changes."""
        with open_store(Users, log_path) as store:
            store["a"] = _alice()
            size = log_path.stat().st_size
            with pytest.raises(pydantic.ValidationError, match="age"):
                store.modify("a", lambda user: user.model_copy(update={"age": "old"}))
            assert log_path.stat().st_size == size
            with settle(store) as store:
                assert store["a"] == _alice()

    @pytest.mark.file_only  # compares the log's file before and after
    def test_modify_fn_gets_private_copy(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """Mutating fn's argument in place and then raising leaves the stored value unchanged."""
        with open_store(Users, log_path) as store:
            store["a"] = _alice()
            size = log_path.stat().st_size

            def mutate_then_fail(user: User) -> User:
                user.age = 99
                user.tags.append("hacked")
                raise RuntimeError("after mutating")

            with pytest.raises(RuntimeError, match="after mutating"):
                store.modify("a", mutate_then_fail)
            assert log_path.stat().st_size == size
            with settle(store) as store:
                assert store["a"] == _alice()

    @pytest.mark.file_only  # compares the log's file before and after
    def test_modify_missing_key_raises_keyerror(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """modify of a missing key raises KeyError without calling fn or writing."""
        calls: list[int] = []

        def record(value: int) -> int:
            calls.append(value)
            return value

        with open_store(Ints, log_path) as store:
            size = log_path.stat().st_size
            with pytest.raises(KeyError, match="nope"):
                store.modify("nope", record)
            assert calls == []
            assert log_path.stat().st_size == size


_READERS: dict[str, Callable[[TypedStore[str, User]], User]] = {
    "getitem": lambda store: store["a"],
    "get": lambda store: store.get("a", _alice()),
    "values": lambda store: next(iter(store.values())),
    "items": lambda store: next(iter(store.items()))[1],
    "get_index": lambda store: (store.get_index(0) or ("", _alice()))[1],
    "setdefault": lambda store: store.setdefault("a", _alice()),
}


class TestCopies:
    """Values going in and out of the store are copies, except immutable ones."""

    @pytest.mark.parametrize("read", _READERS.values(), ids=_READERS.keys())
    def test_mutating_a_returned_value_changes_nothing(
        self,
        log_path: Path,
        open_store: OpenStore,
        settle: Settle,
        read: Callable[[TypedStore[str, User]], User],
    ) -> None:
        """A mutable value read from the store is a copy: mutating it changes nothing stored."""
        with open_store(Users, log_path) as store:
            store["a"] = _alice()
            with settle(store) as store:
                user = read(store)
                user.age = 99
                user.tags.append("hacked")
                assert store["a"] == _alice()
        with open_store(Users, log_path) as reopened:
            assert reopened["a"] == _alice()

    def test_mutating_inserted_object_changes_nothing(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """Mutating an object after inserting it does not change what the store holds."""
        with open_store(Lists, log_path) as store:
            numbers = [1, 2]
            store["xs"] = numbers
            numbers.append(3)
            with settle(store) as store:
                assert store["xs"] == [1, 2]

    def test_mutating_modify_result_changes_nothing(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """The value modify returns is the caller's: mutating it changes nothing stored."""
        with open_store(Lists, log_path) as store:
            store["xs"] = [1]
            result = store.modify("xs", lambda xs: [*xs, 2])
            result.append(99)
            assert store["xs"] == [1, 2]

    def test_mutating_previous_value_changes_nothing(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """The previous values insert and pop return are copies as well."""
        with open_store(Lists, log_path) as store:
            store["xs"] = [1]
            store["ys"] = [2]
            previous = store.insert("xs", [10])
            popped = store.pop("ys")
            assert previous is not None
            previous.append(99)
            popped.append(99)
            assert store["xs"] == [10]
            assert "ys" not in store

    def test_immutable_values_are_returned_as_they_are(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """Frozen values of immutable fields are handed out without copying."""
        with open_store(Points, log_path) as store:
            store["p"] = Point(x=1, y=2)
            with settle(store) as store:
                first = store["p"]
                assert first == Point(x=1, y=2)
                assert store["p"] is first
                assert store.get("p") is first
                assert next(iter(store.values())) is first

    def test_frozen_model_with_mutable_field_is_copied(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """A frozen model holding a list is handed out as a copy: appending to it changes
        nothing."""
        with open_store(FrozenLists, log_path) as store:
            store["a"] = FrozenList(xs=[1])
            with settle(store) as store:
                store["a"].xs.append(99)
                assert store["a"] == FrozenList(xs=[1])

    def test_private_attribute_of_returned_value_changes_nothing(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """Setting a private attribute on a returned frozen model does not change later reads."""
        with open_store(TaggedStore, log_path) as store:
            store["a"] = Tagged(x=1)
            store["a"]._note = "set by the caller"
            assert store["a"]._note == ""
        with open_store(TaggedStore, log_path) as reopened:
            assert reopened["a"]._note == ""


_OPERATIONS: dict[str, Callable[[TypedStore[str, int]], object]] = {
    "getitem": lambda store: store["a"],
    "get": lambda store: store.get("a"),
    "contains": lambda store: "a" in store,
    "len": len,
    "iter": list,
    "items": lambda store: list(store.items()),
    "get_index": lambda store: store.get_index(0),
    "insert": lambda store: store.insert("b", 2),
    "setitem": lambda store: store.__setitem__("b", 2),
    "remove": lambda store: store.remove("a"),
    "modify": lambda store: store.modify("a", lambda value: value),
    "flush": lambda store: store.flush(),
    "compact": lambda store: store.compact(),
    "transaction": lambda store: store.transaction(),
}


class TestLifecycle:
    """A store opens, flushes and closes cleanly; closed or readonly, it refuses what it can't
    do."""

    def test_open_creates_parent_folders(self, tmp_path: Path) -> None:
        """open creates the missing folders above the log."""
        path = tmp_path / "a" / "b" / "store.log"
        with Ints.open(path) as store:
            store["a"] = 1
        assert path.is_file()
        with Ints.open(path) as reopened:
            assert reopened["a"] == 1

    def test_recovery_is_none_on_clean_open(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """A store whose log had no damage reports no recovery."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            with settle(store) as store:
                assert store.recovery is None

    def test_repr_shows_types_and_count(self, log_path: Path, open_store: OpenStore) -> None:
        """repr names the key and value types and the entry count, or that the store is closed."""
        with open_store(Users, log_path) as store:
            store["a"] = _alice()
            store["b"] = _alice()
            text = repr(store)
            assert "str" in text
            assert "tests.models.User" in text
            assert "2 entries" in text
            store.close()
            assert "closed" in repr(store)

    def test_flush_makes_records_visible_to_readers(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """After flush a readonly open sees every write."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            store.flush()
            with open_store(Ints, log_path, readonly=True) as reader:
                assert dict(reader) == {"a": 1}

    def test_close_twice_is_harmless(self, log_path: Path, open_store: OpenStore) -> None:
        """Closing a closed store does nothing and raises nothing."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            store.close()
            store.close()
            assert store.is_closed
            with open_store(Ints, log_path) as reopened:
                assert reopened["a"] == 1

    def test_close_lets_go_of_the_entries(self, log_path: Path, open_store: OpenStore) -> None:
        """Closing frees the entries held in memory, even while the store object lives on."""
        tracemalloc.start()  # it sees only what is allocated after it starts
        try:
            store = open_store(TypedStore, log_path, str, User)
            for index in range(2_000):
                store[f"k{index}"] = User(name=f"{index:0200d}", age=index)
            before = tracemalloc.get_traced_memory()[0]
            store.close()
            freed = before - tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert freed > 2_000 * 200

    def test_context_manager_closes_and_releases_lock(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """Leaving the with block closes the store, even on an exception, so it can be reopened."""
        with open_store(Ints, log_path) as store:

            def fail_inside() -> None:
                with store:
                    store["a"] = 1
                    raise LookupError("inside the block")

            with pytest.raises(LookupError, match="inside the block"):
                fail_inside()
            assert store.is_closed
            with open_store(Ints, log_path) as reopened:
                assert reopened["a"] == 1

    @pytest.mark.parametrize("operation", _OPERATIONS.values(), ids=_OPERATIONS.keys())
    @pytest.mark.file_only  # compares the log's file before and after
    def test_closed_store_raises(
        self,
        log_path: Path,
        open_store: OpenStore,
        operation: Callable[[TypedStore[str, int]], object],
    ) -> None:
        """Every read and write on a closed store raises StoreClosedError and writes nothing."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            store.close()
            size = log_path.stat().st_size
            with pytest.raises(StoreClosedError, match="closed"):
                operation(store)
            assert log_path.stat().st_size == size

    @pytest.mark.file_only  # compares the log's file before and after
    def test_readonly_store_refuses_writes(self, log_path: Path, open_store: OpenStore) -> None:
        """A readonly store raises StoreReadOnlyError on a write and leaves the file untouched."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
        before = log_path.read_bytes()
        with open_store(Ints, log_path, readonly=True) as reader:
            with pytest.raises(StoreReadOnlyError, match="readonly"):
                reader["b"] = 2
            assert dict(reader) == {"a": 1}
        assert log_path.read_bytes() == before


class TestBuffering:
    """With write_through=False, records reach the file at flush, close or a full buffer."""

    @pytest.mark.file_only  # compares the log's file before and after
    def test_write_through_false_buffers_until_flush(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """With write_through=False, records stay out of the file until flush."""
        config = StoreConfig(write_through=False)
        with open_store(Ints, log_path, config=config) as store:
            size = log_path.stat().st_size
            store["a"] = 1
            store["b"] = 2
            assert dict(store) == {"a": 1, "b": 2}
            assert log_path.stat().st_size == size
            with open_store(Ints, log_path, readonly=True) as reader:
                assert len(reader) == 0
            store.flush()
            assert log_path.stat().st_size > size
            with open_store(Ints, log_path, readonly=True) as reader:
                assert dict(reader) == {"a": 1, "b": 2}

    def test_write_through_false_close_flushes(self, log_path: Path, open_store: OpenStore) -> None:
        """With write_through=False, close writes the buffered records."""
        with open_store(Ints, log_path, config=StoreConfig(write_through=False)) as store:
            store["a"] = 1
        with open_store(Ints, log_path, readonly=True) as reader:
            assert dict(reader) == {"a": 1}

    def test_write_through_false_drains_full_buffer(self, log_path: Path) -> None:
        """With write_through=False, a full buffer is written to the file before flush."""
        config = StoreConfig(write_through=False, buf_capacity=64)
        with Ints.open(log_path, config=config) as store:
            header_end = decode_header(log_path.read_bytes())[1]
            for number in range(20):
                store[f"key-{number}"] = number
            assert log_path.stat().st_size > header_end
            frames = frames_after(log_path, header_end)
            assert all(
                frame_body(log_path.read_bytes(), start, end)[0] == RecordKind.INSERT
                for start, end in frames
            )


class TestModifyWithADefault:
    """modify(key, fn, default=d) is an upsert: fn starts from d when the key is absent."""

    def test_absent_key_starts_from_the_default(self, log_path: Path, settle: Settle) -> None:
        """Each modify with a default writes one insert record, the first from the default."""
        with Ints.open(log_path) as store:
            size = log_path.stat().st_size
            assert store.modify("hits", lambda hits: hits + 1, default=0) == 1
            assert store.modify("hits", lambda hits: hits + 1, default=0) == 2
            frames = frames_after(log_path, size)
            body = log_path.read_bytes()
            assert [frame_body(body, *frame)[0] for frame in frames] == [RecordKind.INSERT] * 2
            with settle(store) as store:
                assert dict(store) == {"hits": 2}

    @pytest.mark.file_only  # compares the log's file before and after
    def test_an_invalid_default_writes_nothing(self, log_path: Path, open_store: OpenStore) -> None:
        """An invalid default for an absent key raises ValidationError and writes nothing."""
        with open_store(Ints, log_path) as store:
            size = log_path.stat().st_size
            with pytest.raises(pydantic.ValidationError, match="valid integer"):
                store.modify("hits", lambda hits: hits + 1, default="many")  # type: ignore[call-overload]
            assert log_path.stat().st_size == size
            assert len(store) == 0

    def test_fn_gets_a_private_copy_of_the_default(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """fn mutating the default it receives leaves the caller's default object unchanged."""
        default = User(name="New", age=0)

        def tag(user: User) -> User:
            user.tags.append("seen")
            return user

        with open_store(Users, log_path) as store:
            assert store.modify("n", tag, default=default).tags == ["seen"]
            assert default.tags == []
            with settle(store) as store:
                assert store["n"] == User(name="New", age=0, tags=["seen"])


class StrictInts(TypedStore[pydantic.StrictInt, str]):
    """Keys validated in strict mode: True equals 1 for a dict, but is not a valid key."""


class TestKeysOfAnotherType:
    """A key given in another type than it is stored in finds, writes and replays the stored key."""

    def test_remove_with_an_equal_key_of_another_type_keeps_the_log_openable(
        self, log_path: Path
    ) -> None:
        """remove(True) on a strict int store removes nothing and writes no record it cannot
        read."""
        with StrictInts.open(log_path) as store:
            store[1] = "one"
            assert store.remove(True) is None
            assert store[1] == "one"
        with StrictInts.open(log_path) as store:
            assert dict(store) == {1: "one"}

    def test_remove_writes_the_stored_keys_bytes(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """remove(1.0) on an int store removes key 1 with a record a reopen replays."""
        with open_store(TypedStore, log_path, int, str) as store:
            store[1] = "one"
            store[2] = "two"
            assert store.remove(1.0) == "one"  # type: ignore[arg-type]  # a float equal to 1
        with open_store(TypedStore, log_path, int, str) as store:
            assert dict(store) == {2: "two"}

    def test_modify_with_an_invalid_equal_key_raises_key_error(self, log_path: Path) -> None:
        """modify(True) on a strict int store is a KeyError and writes nothing."""
        with StrictInts.open(log_path) as store:
            store[1] = "one"
            size = log_path.stat().st_size
            with pytest.raises(KeyError, match="True"):
                store.modify(True, str.upper)
            assert log_path.stat().st_size == size

    @pytest.mark.file_only  # compares the log's file before and after
    def test_unencodable_str_key_raises_encoding_error(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """A str key msgpack cannot encode (a lone surrogate) raises EncodingError, writes
        nothing."""
        with open_store(Ints, log_path) as store:
            size = log_path.stat().st_size
            with pytest.raises(EncodingError, match="cannot encode"):
                store["\ud800"] = 1
            assert log_path.stat().st_size == size


class SlowName(pydantic.BaseModel):
    """A model whose validation takes long enough for threads to interleave."""

    who: str

    @pydantic.field_validator("who")
    @classmethod
    def _slow(cls, value: str) -> str:
        time.sleep(0.02)
        return value


class TestSetdefault:
    """setdefault stores the default only for a missing key and returns the stored value."""

    def test_setdefault_inserts_when_missing(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """setdefault of a missing key stores and returns the default."""
        with open_store(Ints, log_path) as store:
            assert store.setdefault("a", 5) == 5
            with settle(store) as store:
                assert store["a"] == 5

    @pytest.mark.file_only  # compares the log's file before and after
    def test_setdefault_keeps_existing(self, log_path: Path, open_store: OpenStore) -> None:
        """setdefault of a present key returns its value and writes nothing."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            size = log_path.stat().st_size
            assert store.setdefault("a", 5) == 1
            assert log_path.stat().st_size == size
            assert store["a"] == 1

    def test_setdefault_returns_the_stored_value(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """setdefault returns the value as the store holds it, validated, and keeps an existing
        one."""
        with open_store(TypedStore, log_path, str, int) as store:
            assert store.setdefault("a", "7") == 7  # type: ignore[arg-type]  # validated to 7
            assert store.setdefault("a", 8) == 7
        with open_store(TypedStore, log_path, str, int) as store:
            assert dict(store) == {"a": 7}

    def test_setdefault_validates_the_key_and_never_overwrites(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """setdefault("1") on an int store finds key 1 and keeps its value."""
        with open_store(TypedStore, log_path, int, str) as store:
            store[1] = "original"
            assert store.setdefault("1", "default") == "original"  # type: ignore[arg-type]  # "1" is 1
            assert dict(store) == {1: "original"}

    def test_setdefault_is_atomic(self, log_path: Path, open_store: OpenStore) -> None:
        """Threads calling setdefault on one absent key all get the single value stored."""
        with open_store(TypedStore, log_path, str, SlowName) as store:
            got: dict[str, str] = {}

            def race(name: str) -> None:
                got[name] = store.setdefault("k", SlowName(who=name)).who

            threads = [threading.Thread(target=race, args=(f"t{i}",)) for i in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert set(got.values()) == {store["k"].who}


VT = TypeVar("VT")


class ByName(TypedStore[str, VT], Generic[VT]):
    """A generic base that binds the key type only."""


class UsersByName(ByName[User]):
    """Binds the value type through the generic base."""


class TestDeclarativeForm:
    """Stores are opened through open, with types bound by a subclass or passed in."""

    def test_declarative_form_binds_types(self, log_path: Path) -> None:
        """A TypedStore[K, V] subclass opens with just a path and validates with its types."""
        with Users.open(log_path) as store:
            store["a"] = _alice()
            assert isinstance(store, Users)
            with pytest.raises(pydantic.ValidationError, match="age"):
                store["b"] = User.model_validate({"name": "B", "age": 1}).model_copy(
                    update={"age": "x"}
                )
        with Users.open(log_path) as reopened:
            assert reopened["a"] == _alice()

    def test_declarative_class_through_a_generic_base(self, log_path: Path) -> None:
        """A class binding its value type through a generic base opens with both types bound."""
        with UsersByName.open(log_path) as store:
            store["a"] = User(name="A", age=1)
        with UsersByName.open(log_path) as store:
            assert store["a"] == User(name="A", age=1)

    def test_bound_class_rejects_types(self, log_path: Path) -> None:
        """Passing types to a class that binds them already raises TypeError."""
        with pytest.raises(TypeError, match="binds its types already"):
            Users.open(log_path, str, User)
        assert not log_path.exists()

    def test_unbound_class_requires_types(self, log_path: Path) -> None:
        """Opening TypedStore without key and value types raises TypeError."""
        with pytest.raises(TypeError, match="pass the key and value types"):
            TypedStore.open(log_path)
        assert not log_path.exists()

    def test_direct_construction_is_refused(self) -> None:
        """TypedStore() cannot be called directly: stores come from open."""
        with pytest.raises(TypeError, match=re.escape("TypedStore.open")):
            TypedStore[str, int]()


AUDITED: list[TypedStore[str, Any]] = []
"""The store that ``_audit`` writes to while it validates, if any."""


def _audit(value: int) -> int:
    if AUDITED and value != -1:
        AUDITED[0]["audit"] = -1
    return value


Audited = Annotated[int, pydantic.AfterValidator(_audit)]
"""An int whose validator writes ``audit = -1`` to the store in AUDITED."""


class AuditedStore(TypedStore[str, Audited]):
    """A store whose values' validator writes to it."""


def _signal_at(handler: Any, function: str, module: str, event: str = "call") -> None:
    """Arrange for SIGALRM, handled by ``handler``, to arrive as ``module.function`` is
    called (``event="call"``) or returns (``"return"``).

    A trace function sends the signal at that instant: the handler runs at the next
    bytecode boundary, as a real signal arriving there would.
    """
    signal.signal(signal.SIGALRM, handler)

    def tracer(frame: FrameType, traced: str, arg: object) -> Any:
        code = frame.f_code
        if code.co_name == function and code.co_filename.endswith(module):
            if traced == event:
                sys.settrace(None)
                os.kill(os.getpid(), signal.SIGALRM)
            return tracer  # follow the function's lines to see it return
        return None

    sys.settrace(tracer)


@contextlib.contextmanager
def _signal_handler_restored() -> Iterator[None]:
    """Restore SIGALRM's handler and stop tracing on leaving, whatever the test did."""
    previous = signal.getsignal(signal.SIGALRM)
    try:
        yield
    finally:
        sys.settrace(None)
        signal.signal(signal.SIGALRM, previous)


def _reopened_items(store: TypedStore[str, int]) -> list[tuple[str, int]]:
    """Close ``store`` and return the entries a reopen of its log replays, in order."""
    store.close()
    with TypedStore.open(store.path, str, int, readonly=True) as reopened:
        return list(reopened.items())


class TestWritesFromInsideAWrite:
    """A write re-entered from its own thread is refused, and a store closed meanwhile writes
    nowhere: the log never gets a record interleaved with another."""

    def test_signal_handler_writes_are_refused_and_the_log_stays_whole(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """A SIGALRM handler writing while the main loop writes is refused or done, never torn."""
        store = open_store(Ints, log_path)
        done = {"beats": 0, "refused": 0}
        inside = [False]

        def beat(signum: int, frame: object) -> None:
            if inside[0]:
                # A handler run inside this one, between its read and its write, would
                # have its update overwritten: the count, not the store, would be wrong.
                return
            inside[0] = True
            try:
                store["beat"] = store.get("beat", 0) + 1
            except RuntimeError:
                done["refused"] += 1
            else:
                done["beats"] += 1
            finally:
                inside[0] = False

        previous = signal.signal(signal.SIGALRM, beat)
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
        try:
            written = 0
            while written < 40_000 and not (done["refused"] and done["beats"]):
                store[f"k{written}"] = written
                written += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            signal.signal(signal.SIGALRM, previous)
        store.close()
        with open_store(Ints, log_path) as reopened:
            assert reopened.get("beat", 0) == done["beats"]
            assert all(reopened[f"k{i}"] == i for i in range(written))
        assert done["refused"] > 0

    def test_write_refused_in_a_handler_leaves_memory_equal_to_a_reopen(
        self, log_path: Path
    ) -> None:
        """A handler's RuntimeError raised mid-append does not leave a record only on disk."""
        store = TypedStore.open(log_path, str, int)

        def beat(signum: int, frame: FrameType | None) -> None:
            store["beat"] = 1  # refused with RuntimeError, raised into the interrupted write

        with _signal_handler_restored():
            _signal_at(beat, "put", "_table.py")
            with pytest.raises(RuntimeError, match="inside one of its writes"):
                store["a"] = 1
        in_memory = list(store.items())
        assert _reopened_items(store) == in_memory

    def test_keyboard_interrupt_mid_append_leaves_memory_equal_to_a_reopen(
        self, log_path: Path
    ) -> None:
        """A KeyboardInterrupt arriving just after the append does not lose the entry in memory."""
        store = TypedStore.open(log_path, str, int)
        with _signal_handler_restored():
            _signal_at(signal.default_int_handler, "put", "_table.py")
            with pytest.raises(KeyboardInterrupt):
                store["a"] = 1
        in_memory = list(store.items())
        assert _reopened_items(store) == in_memory

    def test_keyboard_interrupt_once_the_bytes_are_written_leaves_memory_equal_to_a_reopen(
        self, log_path: Path
    ) -> None:
        """A KeyboardInterrupt as the record's bytes reach the file leaves memory as a reopen."""
        store = TypedStore.open(log_path, str, int)
        store["a"] = 1
        with _signal_handler_restored():
            _signal_at(signal.default_int_handler, "append", "_fs.py", event="return")
            with pytest.raises(KeyboardInterrupt):
                store["b"] = 2
        in_memory = list(store.items())
        assert _reopened_items(store) == in_memory

    def test_keyboard_interrupt_mid_transaction_apply_leaves_memory_equal_to_a_reopen(
        self, log_path: Path
    ) -> None:
        """A KeyboardInterrupt while memory applies a committed batch leaves it as a reopen."""
        store = TypedStore.open(log_path, str, int)
        store.update({"a": 1, "b": 2})

        def move_a_and_add_c() -> None:
            with store.transaction() as txn:
                del txn["a"]
                txn["a"] = 3  # moves "a" to the end
                txn["c"] = 4
                _signal_at(signal.default_int_handler, "put", "_table.py")

        with _signal_handler_restored(), pytest.raises(KeyboardInterrupt):
            move_a_and_add_c()
        in_memory = list(store.items())
        assert in_memory == [("b", 2), ("a", 3), ("c", 4)]
        assert _reopened_items(store) == in_memory

    @staticmethod
    def _beat_during(store: TypedStore[str, int], function: str) -> list[tuple[str, int]]:
        """Run ``store.flush()`` or ``compact()`` with a handler writing as ``function`` starts."""

        def beat(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(RuntimeError):  # a refusal is a correct outcome
                store["beat"] = 1

        with _signal_handler_restored():
            _signal_at(beat, function, "_fs.py")
            store.flush() if function == "append" else store.compact()
        return list(store.items())

    def test_write_from_a_handler_during_flush_is_not_lost(self, log_path: Path) -> None:
        """A buffered store's flush() does not drop a record a handler wrote meanwhile."""
        store = TypedStore.open(log_path, str, int, config=StoreConfig(write_through=False))
        store["a"] = 1
        in_memory = self._beat_during(store, "append")  # the flush's drain of the buffer
        assert _reopened_items(store) == in_memory

    def test_write_from_a_handler_during_compact_is_not_lost(self, log_path: Path) -> None:
        """compact() does not swap in a log lacking a record a handler wrote meanwhile."""
        store = TypedStore.open(log_path, str, int)
        store["a"] = 1
        in_memory = self._beat_during(store, "sync")  # the fsync of the new log
        assert _reopened_items(store) == in_memory

    @pytest.mark.file_only  # compares the log's file before and after
    def test_write_from_a_handler_during_close_is_refused(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """A handler's write while close() drains the buffer raises RuntimeError, not lost."""
        store = open_store(TypedStore, log_path, str, int, config=StoreConfig(write_through=False))
        store["a"] = 1
        refused: list[RuntimeError] = []

        def beat(signum: int, frame: FrameType | None) -> None:
            try:
                store["beat"] = 1
            except RuntimeError as exc:
                refused.append(exc)

        with _signal_handler_restored():
            _signal_at(beat, "append", "_fs.py")  # the close's drain of the buffer
            store.close()
        assert refused
        with open_store(TypedStore, log_path, str, int, readonly=True) as reopened:
            assert dict(reopened.items()) == {"a": 1}

    @pytest.mark.file_only  # compares the log's file before and after
    def test_modify_fn_that_writes_is_refused(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """A modify fn writing to its own store raises RuntimeError, and nothing is written."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            size = log_path.stat().st_size

            def sneak(value: int) -> int:
                store["b"] = 2
                return value + 1

            with pytest.raises(RuntimeError, match="inside one of its writes"):
                store.modify("a", sneak)
            assert log_path.stat().st_size == size
            with settle(store) as store:
                assert dict(store) == {"a": 1}

    def test_validator_that_writes_during_modify_is_refused(
        self, log_path: Path, settle: Settle
    ) -> None:
        """A validator writing to the store while modify validates is refused; nothing written."""
        with AuditedStore.open(log_path) as store:
            AUDITED.append(store)
            try:
                store["a"] = 1  # validated before the write begins: the audit write is done
                size = log_path.stat().st_size
                with pytest.raises(RuntimeError, match="inside one of its writes"):
                    store.modify("a", lambda value: value + 1)
                assert log_path.stat().st_size == size
            finally:
                AUDITED.clear()
            with settle(store) as store:
                assert dict(store) == {"audit": -1, "a": 1}

    @pytest.mark.parametrize("call", ["flush", "compact", "transaction"])
    @pytest.mark.file_only  # compares the log's file before and after
    def test_modify_fn_may_not_flush_compact_or_start_a_transaction(
        self, log_path: Path, open_store: OpenStore, call: str
    ) -> None:
        """flush(), compact() or a transaction from a modify fn raises RuntimeError."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            size = log_path.stat().st_size

            def sneak(value: int) -> int:
                if call == "transaction":
                    with store.transaction() as tx:
                        tx["b"] = 2
                else:
                    getattr(store, call)()
                return value + 1

            with pytest.raises(RuntimeError, match=r"inside .*write"):
                store.modify("a", sneak)
            assert log_path.stat().st_size == size
            assert dict(store) == {"a": 1}

    def test_modify_fn_may_read_the_store(
        self, log_path: Path, open_store: OpenStore, settle: Settle
    ) -> None:
        """A modify fn may read the store it modifies."""
        with open_store(Ints, log_path) as store:
            store["a"] = 1
            store["b"] = 10
            assert store.modify("a", lambda value: value + store["b"]) == 11
            with settle(store) as store:
                assert dict(store) == {"a": 11, "b": 10}

    @pytest.mark.file_only  # compares the log's file before and after
    def test_modify_fn_that_closes_the_store_writes_nowhere(
        self, log_path: Path, open_store: OpenStore, tmp_path: Path
    ) -> None:
        """A modify fn that closes the store and opens a file raises StoreClosedError."""
        store = open_store(TypedStore, log_path, str, str)
        store["a"] = "x"
        size = log_path.stat().st_size
        other = tmp_path / "other"
        opened: list[BinaryIO] = []

        def close_and_open(value: str) -> str:
            store.close()
            opened.append(open(other, "w+b"))  # noqa: SIM115 - closed below
            return value + "y"

        with pytest.raises(StoreClosedError, match="closed during a write"):
            store.modify("a", close_and_open)
        opened[0].close()
        assert other.read_bytes() == b""
        assert log_path.stat().st_size == size
        with open_store(TypedStore, log_path, str, str) as reopened:
            assert dict(reopened) == {"a": "x"}


class FloatKeys(TypedStore[float, int]):
    """Float keys: a NaN would equal no key, not even itself."""


def _log_with_a_nan_key(path: Path) -> None:
    """Write 1.0 = 1 through the API, then a NaN key = 2 as an older version could."""
    with FloatKeys.open(path) as store:
        store[1.0] = 1
    size = path.stat().st_size
    body = _format.insert_body(msgpack.packb(float("nan")), msgpack.packb(2))
    with path.open("ab") as log:
        log.write(_format.encode_frame(body, size))


def _nan_key(store: FloatKeys) -> float:
    return next(key for key in store if key != key)


class TestNanKeys:
    """A NaN key is refused at the write; one an older version stored is removable by itself."""

    @pytest.mark.parametrize("key", [float("nan"), (float("nan"), 1)], ids=["nan", "tuple"])
    @pytest.mark.file_only  # compares the log's file before and after
    def test_nan_key_is_refused_and_nothing_written(
        self, log_path: Path, open_store: OpenStore, key: float | tuple[float, int]
    ) -> None:
        """Writing a key containing a NaN raises EncodingError and writes nothing."""
        with open_store(TypedStore, log_path, float | tuple[float, int], int) as store:
            size = log_path.stat().st_size
            with pytest.raises(EncodingError, match="not equal to itself"):
                store[key] = 1
            with pytest.raises(EncodingError, match="not equal to itself"):
                store.setdefault(key, 1)
            assert log_path.stat().st_size == size
            assert len(store) == 0

    @pytest.mark.parametrize("how", ["remove", "del", "pop", "popitem"])
    def test_stored_nan_key_is_removable_by_itself(self, log_path: Path, how: str) -> None:
        """A NaN key from an older log is removed by the key object the store gives back."""
        _log_with_a_nan_key(log_path)
        with FloatKeys.open(log_path) as store:
            key = _nan_key(store)
            if how == "remove":
                assert store.remove(key) == 2
            elif how == "del":
                del store[key]
            elif how == "pop":
                assert store.pop(key) == 2
            else:
                popped = store.popitem()
                assert popped[0] is key
                assert popped[1] == 2
            assert dict(store) == {1.0: 1}
        with FloatKeys.open(log_path) as store:
            assert dict(store) == {1.0: 1}

    def test_stored_nan_key_is_modified_by_itself(self, log_path: Path) -> None:
        """modify of a NaN key from an older log replaces its value, once, after a reopen too."""
        _log_with_a_nan_key(log_path)
        with FloatKeys.open(log_path) as store:
            assert store.modify(_nan_key(store), lambda value: value + 1) == 3
        with FloatKeys.open(log_path) as store:
            assert sorted(store.values()) == [1, 3]

    def test_stored_nan_key_is_removable_in_a_transaction(self, log_path: Path) -> None:
        """A transaction removes a NaN key from an older log by itself, after a reopen too."""
        _log_with_a_nan_key(log_path)
        with FloatKeys.open(log_path) as store:
            with store.transaction() as tx:
                assert tx.remove(_nan_key(store)) == 2
            assert dict(store) == {1.0: 1}
        with FloatKeys.open(log_path) as store:
            assert dict(store) == {1.0: 1}
