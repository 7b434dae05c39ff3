"""Hypothesis state machines drive a TypedStore and a plain dict, or a database of two
collections and two dicts, with the same operations."""

from __future__ import annotations

import copy
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any, Generic, TypeVar

import pydantic
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.models import Point, User
from tests.strategies import Op, int_keys, operations, points, str_keys, users
from typedstore import Collection, Database, StoreConfig, Transaction, TypedStore

K = TypeVar("K")
V = TypeVar("V")

CONFIGS = [
    StoreConfig(),
    # Compaction as soon as the ratio allows, so it runs between most writes.
    StoreConfig(min_compact_bytes=0, compact_ratio=1.5),
    StoreConfig(min_compact_bytes=400),
    StoreConfig(write_through=False, buf_capacity=64, min_compact_bytes=300),
]


class Boom(Exception):
    """Raised by a modify function, to check that a failed modify changes nothing."""


class Users(TypedStore[str, User]):
    """The declarative form of the user store."""


class Points(TypedStore[int, Point]):
    """The declarative form of the point store."""


@dataclass(frozen=True)
class Subject(Generic[K, V]):
    """The store types a machine drives, with value-specific functions for modify."""

    key_type: type[K]
    value_type: type[V]
    keys: st.SearchStrategy[K]
    values: st.SearchStrategy[V]
    declarative: type[TypedStore[K, V]]
    change: Callable[[V], V]
    """A modify function that succeeds; it may change its argument in place."""
    spoil: Callable[[V], V]
    """A modify function that changes its argument in place where it can, then raises Boom."""
    invalid: Callable[[V], V]
    """A modify function returning an instance built without validation, of a wrong field type."""
    mutate: Callable[[V], None] | None
    """Change a value in place; None for an immutable value type."""


def _birthday(user: User) -> User:
    user.age += 1
    user.tags.append("older")
    return user


def _spoil_user(user: User) -> User:
    user.age = 0
    user.tags.clear()
    raise Boom("boom after changing the user")


def _invalid_user(user: User) -> User:
    # A wrong field type on purpose: the store must validate what model_construct skipped.
    return User.model_construct(name=user.name, age="not a number")  # type: ignore[arg-type]


def _mutate_user(user: User) -> None:
    user.name += "!"
    user.tags.append("mutated")


def _move(point: Point) -> Point:
    return Point(x=point.y, y=point.x + 1)


def _spoil_point(point: Point) -> Point:
    raise Boom(f"boom on {point}")


def _invalid_point(point: Point) -> Point:
    # A wrong field type on purpose: the store must validate what model_construct skipped.
    return Point.model_construct(x="far", y=point.y)  # type: ignore[arg-type]


USERS = Subject(
    str, User, str_keys, users, Users, _birthday, _spoil_user, _invalid_user, _mutate_user
)
POINTS = Subject(int, Point, int_keys, points, Points, _move, _spoil_point, _invalid_point, None)


def machine_for(subject: Subject[K, V]) -> type[RuleBasedStateMachine]:
    """Return a state machine class comparing a store of ``subject``'s types with a dict."""

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.folder = Path(tempfile.mkdtemp(prefix="typedstore-machine-"))
            self.path = self.folder / "store.log"
            self.model: dict[K, V] = {}
            self.config = StoreConfig()
            self._store: TypedStore[K, V] | None = None

        @property
        def store(self) -> TypedStore[K, V]:
            assert self._store is not None
            return self._store

        def teardown(self) -> None:
            if self._store is not None:
                self._store.close()
            shutil.rmtree(self.folder)

        def present_key(self, data: st.DataObject) -> K:
            return data.draw(st.sampled_from(list(self.model)), label="present key")

        def assert_file_unchanged(self, size: int) -> None:
            self.store.flush()
            assert self.path.stat().st_size == size

        @initialize(config=st.sampled_from(CONFIGS))
        def open_store(self, config: StoreConfig) -> None:
            self.config = config
            self._store = TypedStore.open(
                self.path, subject.key_type, subject.value_type, config=config
            )

        # -- writes ------------------------------------------------------------------------

        @rule(key=subject.keys, value=subject.values, how=st.sampled_from(["insert", "[]="]))
        def insert(self, key: K, value: V, how: str) -> None:
            if how == "insert":
                assert self.store.insert(key, value) == self.model.get(key)
            else:
                self.store[key] = value
            self.model[key] = copy.deepcopy(value)

        @rule(entries=st.lists(st.tuples(subject.keys, subject.values), max_size=12))
        def insert_many(self, entries: list[tuple[K, V]]) -> None:
            for key, value in entries:
                self.store[key] = value
                self.model[key] = copy.deepcopy(value)

        @rule(key=subject.keys, how=st.sampled_from(["remove", "del", "pop", "pop default"]))
        def remove(self, key: K, how: str) -> None:
            if how == "remove":
                assert self.store.remove(key) == self.model.pop(key, None)
            elif how == "pop default":
                assert self.store.pop(key, None) == self.model.pop(key, None)
            elif key not in self.model:
                with pytest.raises(KeyError, match=re.escape(repr(key))):
                    self.remove_present(key, how)
            else:
                self.remove_present(key, how)
                del self.model[key]

        def remove_present(self, key: K, how: str) -> None:
            if how == "del":
                del self.store[key]
            else:
                assert self.store.pop(key) == self.model[key]

        @rule()
        def popitem(self) -> None:
            if self.model:
                assert self.store.popitem() == self.model.popitem()
            else:
                with pytest.raises(KeyError, match="empty"):
                    self.store.popitem()

        @precondition(lambda self: len(self.model) >= 8)
        @rule()
        def clear(self) -> None:
            self.store.clear()
            self.model.clear()

        @rule(key=subject.keys)
        def modify(self, key: K) -> None:
            if key in self.model:
                expected = subject.change(copy.deepcopy(self.model[key]))
                assert self.store.modify(key, subject.change) == expected
                self.model[key] = expected
            else:
                size = self.path.stat().st_size
                with pytest.raises(KeyError, match=re.escape(repr(key))):
                    self.store.modify(key, subject.change)
                assert self.path.stat().st_size == size

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def modify_raising(self, data: st.DataObject) -> None:
            key = self.present_key(data)
            self.store.flush()
            size = self.path.stat().st_size
            with pytest.raises(Boom, match="boom"):
                self.store.modify(key, subject.spoil)
            self.assert_file_unchanged(size)

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def modify_invalid(self, data: st.DataObject) -> None:
            key = self.present_key(data)
            self.store.flush()
            size = self.path.stat().st_size
            with pytest.raises(pydantic.ValidationError, match="validation error"):
                self.store.modify(key, subject.invalid)
            self.assert_file_unchanged(size)

        # -- reads -------------------------------------------------------------------------

        @rule(key=subject.keys)
        def get(self, key: K) -> None:
            assert self.store.get(key) == self.model.get(key)
            assert (key in self.store) == (key in self.model)
            assert self.store.contains_key(key) == (key in self.model)

        @rule(key=subject.keys)
        def getitem(self, key: K) -> None:
            if key in self.model:
                assert self.store[key] == self.model[key]
            else:
                with pytest.raises(KeyError, match=re.escape(repr(key))):
                    self.store[key]

        @rule(index=st.integers(-12, 12))
        def get_index(self, index: int) -> None:
            entries = list(self.model.items())
            expected = entries[index] if -len(entries) <= index < len(entries) else None
            assert self.store.get_index(index) == expected

        @precondition(lambda self: subject.mutate is not None and self.model)
        @rule(data=st.data(), source=st.sampled_from(["get", "[]", "values", "items", "index"]))
        def mutate_returned(self, data: st.DataObject, source: str) -> None:
            assert subject.mutate is not None
            key = self.present_key(data)
            for value in self.returned_values(key, source):
                subject.mutate(value)

        @precondition(lambda self: subject.mutate is None and self.model)
        @rule(data=st.data(), source=st.sampled_from(["[]", "values", "items", "index"]))
        def immutable_returned_as_is(self, data: st.DataObject, source: str) -> None:
            key = self.present_key(data)
            held = self.store.get(key)
            assert all(value is held for value in self.returned_values(key, source))

        def returned_values(self, key: K, source: str) -> list[V]:
            store = self.store
            if source == "get":
                value = store.get(key)
                assert value is not None
                return [value]
            if source == "[]":
                return [store[key]]
            if source == "values":
                return [v for k, v in zip(store.keys(), store.values(), strict=True) if k == key]
            position = list(self.model).index(key)
            if source == "items":
                return [list(store.items())[position][1]]
            entry = store.get_index(position)
            assert entry is not None
            return [entry[1]]

        # -- whole store -------------------------------------------------------------------

        @rule()
        def compact(self) -> None:
            self.store.compact()

        @rule(declarative=st.booleans())
        def reopen(self, declarative: bool) -> None:
            self.store.close()
            if declarative:
                self._store = subject.declarative.open(self.path, config=self.config)
            else:
                self._store = TypedStore.open(
                    self.path, subject.key_type, subject.value_type, config=self.config
                )
            assert self.store.recovery is None

        @rule(steps=st.lists(operations(subject.keys, subject.values), min_size=1, max_size=8))
        def commit(self, steps: list[Op[K, V]]) -> None:
            staged = dict(self.model)
            with self.store.transaction() as txn:
                for step in steps:
                    self.apply_step(txn, staged, step)
                assert list(self.store.items()) == list(self.model.items())
            self.model = staged

        @rule(steps=st.lists(operations(subject.keys, subject.values), min_size=1, max_size=8))
        def abort(self, steps: list[Op[K, V]]) -> None:
            staged = dict(self.model)
            self.store.flush()
            size = self.path.stat().st_size
            with pytest.raises(Boom, match="abort"):
                self.run_aborted(staged, steps)
            self.assert_file_unchanged(size)

        def run_aborted(self, staged: dict[K, V], steps: list[Op[K, V]]) -> None:
            with self.store.transaction() as txn:
                for step in steps:
                    self.apply_step(txn, staged, step)
                raise Boom("abort the transaction")

        def apply_step(self, txn: Transaction[K, V], staged: dict[K, V], step: Op[K, V]) -> None:
            """Apply ``step`` to the transaction and to the staged model, checking results."""
            key, present = step.key, step.key in staged
            if step.name == "insert":
                assert txn.insert(key, step.value) == staged.get(key)
                staged[key] = copy.deepcopy(step.value)
            elif step.name == "setitem":
                txn[key] = step.value
                staged[key] = copy.deepcopy(step.value)
            elif step.name == "remove":
                assert txn.remove(key) == staged.pop(key, None)
            elif step.name in ("delitem", "modify", "spoil") and not present:
                with pytest.raises(KeyError, match=re.escape(repr(key))):
                    self.apply_present(txn, staged, step)
            elif step.name in ("delitem", "modify", "spoil"):
                self.apply_present(txn, staged, step)
            else:
                assert txn.get(key) == staged.get(key)
                assert (key in txn) == present
                assert len(txn) == len(staged)

        def apply_present(self, txn: Transaction[K, V], staged: dict[K, V], step: Op[K, V]) -> None:
            key = step.key
            if step.name == "delitem":
                del txn[key]
                del staged[key]
            elif step.name == "modify":
                expected = subject.change(copy.deepcopy(staged[key]))
                assert txn.modify(key, subject.change) == expected
                staged[key] = expected
            else:
                with pytest.raises(Boom, match="boom"):
                    txn.modify(key, subject.spoil)
                assert txn[key] == staged[key]

        # -- invariants --------------------------------------------------------------------

        @invariant()
        def agrees_with_model(self) -> None:
            if self._store is None:
                return
            assert list(self._store) == list(self.model)
            assert list(self._store.values()) == list(self.model.values())
            assert len(self._store) == len(self.model)

    StoreMachine.__name__ = StoreMachine.__qualname__ = f"{subject.value_type.__name__}Machine"
    return StoreMachine


UserMachine = machine_for(USERS)
PointMachine = machine_for(POINTS)


SMOKE = settings(max_examples=8)
"""A quick run's few sequences per machine; the full suite adds the tests marked slow."""


def test_user_store_agrees_with_dict_smoke() -> None:
    """A store of mutable models and a dict agree after a few sequences of operations."""
    run_state_machine_as_test(UserMachine, settings=settings(SMOKE, stateful_step_count=50))


def test_point_store_agrees_with_dict_smoke() -> None:
    """A store of frozen models and a dict agree after a few sequences of operations."""
    run_state_machine_as_test(PointMachine, settings=settings(SMOKE, stateful_step_count=50))


@pytest.mark.slow
def test_user_store_agrees_with_dict() -> None:
    """A store of mutable models and a dict agree after any sequence of operations."""
    run_state_machine_as_test(UserMachine, settings=settings(stateful_step_count=50))


@pytest.mark.slow
def test_point_store_agrees_with_dict() -> None:
    """A store of frozen models and a dict agree after any sequence of operations."""
    run_state_machine_as_test(PointMachine, settings=settings(stateful_step_count=50))


@pytest.mark.slow
def test_user_store_agrees_with_dict_long_runs() -> None:
    """A store of mutable models and a dict agree over many long operation sequences."""
    run_state_machine_as_test(
        UserMachine, settings=settings(max_examples=200, stateful_step_count=100)
    )


@pytest.mark.slow
def test_point_store_agrees_with_dict_long_runs() -> None:
    """A store of frozen models and a dict agree over many long operation sequences."""
    run_state_machine_as_test(
        PointMachine, settings=settings(max_examples=200, stateful_step_count=100)
    )


# -- a database of two collections ---------------------------------------------------------


class Pair(Database):
    """Users and points in one log."""

    users: Collection[str, User]
    points: Collection[int, Point]


class UsersOnly(Database):
    """The same log opened by code that declares only its users: points are kept."""

    users: Collection[str, User]


Name = str
"""Which collection a rule acts on: "users" or "points"."""


class DatabaseMachine(RuleBasedStateMachine):
    """Drive a database of two collections and two dicts with the same operations."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="typedstore-db-machine-"))
        self.path = self.folder / "pair.log"
        self.config = StoreConfig()
        self.models: dict[Name, dict[Any, Any]] = {"users": {}, "points": {}}
        self.database: Pair | None = None

    @initialize(config=st.sampled_from(CONFIGS))
    def open_database(self, config: StoreConfig) -> None:
        self.config = config
        self.database = Pair.open(self.path, config=config)

    def teardown(self) -> None:
        if self.database is not None:
            self.database.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def pair(self) -> Pair:
        assert self.database is not None
        return self.database

    def collection(self, database: Pair, name: Name) -> Collection[Any, Any]:
        return database.users if name == "users" else database.points

    # -- writes ------------------------------------------------------------------------

    @rule(key=str_keys, value=users)
    def insert_user(self, key: str, value: User) -> None:
        assert self.pair.users.insert(key, value) == self.models["users"].get(key)
        self.models["users"][key] = copy.deepcopy(value)

    @rule(key=int_keys, value=points)
    def insert_point(self, key: int, value: Point) -> None:
        self.pair.points[key] = value
        self.models["points"][key] = value

    @rule(key=str_keys)
    def remove_user(self, key: str) -> None:
        assert self.pair.users.remove(key) == self.models["users"].pop(key, None)

    @rule(key=int_keys)
    def remove_point(self, key: int) -> None:
        assert self.pair.points.pop(key, None) == self.models["points"].pop(key, None)

    @rule(key=str_keys)
    def modify_user(self, key: str) -> None:
        if key in self.models["users"]:
            expected = _birthday(copy.deepcopy(self.models["users"][key]))
            assert self.pair.users.modify(key, _birthday) == expected
            self.models["users"][key] = expected

    @rule(
        user_steps=st.lists(operations(str_keys, users), max_size=6),
        point_steps=st.lists(operations(int_keys, points), max_size=6),
        abort=st.booleans(),
    )
    def transaction(
        self, user_steps: list[Op[str, User]], point_steps: list[Op[int, Point]], abort: bool
    ) -> None:
        staged = {name: dict(model) for name, model in self.models.items()}
        self.pair.flush()
        size = self.path.stat().st_size
        try:
            with self.pair.transaction() as tx:
                for user_step, point_step in zip_longest(user_steps, point_steps):
                    if user_step is not None:
                        _apply(tx.users, staged["users"], user_step, _birthday)
                    if point_step is not None:
                        _apply(tx.points, staged["points"], point_step, _move)
                assert list(self.pair.users) == list(self.models["users"])
                if abort:
                    raise Boom("abort the transaction")
        except Boom:
            assert self.path.stat().st_size == size
            return
        self.models = staged

    # -- whole database ----------------------------------------------------------------

    @rule()
    def compact(self) -> None:
        self.pair.compact()

    @rule(how=st.sampled_from(["declared", "functional", "users only"]))
    def reopen(self, how: str) -> None:
        self.pair.close()
        if how == "functional":
            functional = Database.open(self.path, config=self.config)
            assert dict(functional.collection("points", int, Point)) == self.models["points"]
            assert dict(functional.collection("users", str, User)) == self.models["users"]
            functional.close()
        elif how == "users only":  # the points are kept, through a compaction too
            with UsersOnly.open(self.path, config=self.config) as users_only:
                assert dict(users_only.users) == self.models["users"]
                users_only.compact()
        self.database = Pair.open(self.path, config=self.config)

    @invariant()
    def agrees_with_models(self) -> None:
        if self.database is None:
            return
        for name, model in self.models.items():
            collection = self.collection(self.database, name)
            assert list(collection.items()) == list(model.items())


def _apply(
    collection: Collection[K, V], staged: dict[K, V], step: Op[K, V], change: Callable[[V], V]
) -> None:
    """Apply a transaction ``step`` to a view and to the staged model, checking results."""
    key, present = step.key, step.key in staged
    if step.name in ("insert", "setitem"):
        assert collection.insert(key, step.value) == staged.get(key)
        staged[key] = copy.deepcopy(step.value)
    elif step.name in ("remove", "delitem"):
        assert collection.remove(key) == staged.pop(key, None)
    elif step.name in ("modify", "spoil") and present:
        expected = change(copy.deepcopy(staged[key]))
        assert collection.modify(key, change) == expected
        staged[key] = expected
    else:
        assert collection.get(key) == staged.get(key)
        assert (key in collection) == present
        assert len(collection) == len(staged)


def test_database_agrees_with_two_dicts_smoke() -> None:
    """A database of two collections and two dicts agree after a few sequences of
    operations, transactions across both and reopens included."""
    run_state_machine_as_test(DatabaseMachine, settings=settings(SMOKE, stateful_step_count=40))


@pytest.mark.slow
def test_database_agrees_with_two_dicts() -> None:
    """A database of two collections and two dicts agree after any sequence of operations,
    transactions across both and reopens included."""
    run_state_machine_as_test(DatabaseMachine, settings=settings(stateful_step_count=40))


@pytest.mark.slow
def test_database_agrees_with_two_dicts_long_runs() -> None:
    """A database of two collections and two dicts agree over many long operation sequences."""
    run_state_machine_as_test(
        DatabaseMachine, settings=settings(max_examples=150, stateful_step_count=80)
    )
