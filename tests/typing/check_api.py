"""The types users see, pinned with ``assert_type``: mypy --strict checks them statically.

``tests/test_static.py`` also runs :func:`check_api` so that every call here works at runtime.
"""

from __future__ import annotations

import tempfile
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from pathlib import Path
from typing import assert_type

from tests.models import Point, User

from typedstore import (
    Collection,
    Database,
    DatabaseTransaction,
    Recovery,
    StoreConfig,
    Transaction,
    TypedStore,
)


class Users(TypedStore[str, User]):
    """The declarative form: types bound once by subclassing."""


def birthday(user: User) -> User:
    """Return ``user`` one year older."""
    return user.model_copy(update={"age": user.age + 1})


def check_functional_form(path: Path) -> None:
    """Pin the types of a store opened with its key and value types."""
    store = TypedStore.open(path, str, User, config=StoreConfig(), readonly=False)
    assert_type(store, TypedStore[str, User])
    alice = User(name="Alice", age=30)
    with store:
        assert_type(store.insert("alice", alice), User | None)
        store["bob"] = User(name="Bob", age=25)
        assert_type(store.get("alice"), User | None)
        assert_type(store.get("nobody", alice), User)
        assert_type(store.get("nobody", 0), User | int)
        assert_type(store["alice"], User)
        assert_type(store.modify("alice", birthday), User)
        assert_type(store.modify("alice", lambda user: user), User)
        assert_type(store.modify("carol", birthday, default=alice), User)
        assert_type(reversed(store), Iterator[str])
        assert_type(store.get_index(0), tuple[str, User] | None)
        assert_type(store.get_index(-1), tuple[str, User] | None)
        assert_type(store.keys(), KeysView[str])
        assert_type(store.values(), ValuesView[User])
        assert_type(store.items(), ItemsView[str, User])
        for key, value in store.items():
            assert_type(key, str)
            assert_type(value, User)
        assert_type(list(store), list[str])
        assert_type(len(store), int)
        assert_type("alice" in store, bool)
        assert_type(store.contains_key("alice"), bool)
        assert_type(store.recovery, Recovery | None)
        assert_type(store.path, Path)
        assert_type(store.config, StoreConfig)
        assert_type(store.is_closed, bool)
        assert_type(store.pop("bob"), User)
        assert_type(store.pop("bob", None), User | None)
        assert_type(store.remove("bob"), User | None)
        assert_type(store.popitem(), tuple[str, User])


def check_transaction(path: Path) -> None:
    """Pin the types of a transaction and of its methods."""
    alice = User(name="Alice", age=30)
    with TypedStore.open(path, str, User) as store:
        assert_type(store, TypedStore[str, User])
        transaction = store.transaction()
        assert_type(transaction, Transaction[str, User])
        with transaction as txn:
            assert_type(txn, Transaction[str, User])
            assert_type(txn.insert("alice", alice), User | None)
            txn["bob"] = User(name="Bob", age=25)
            assert_type(txn.get("alice"), User | None)
            assert_type(txn.get("nobody", alice), User)
            assert_type(txn["alice"], User)
            assert_type(txn.modify("alice", birthday), User)
            assert_type(txn.modify("dave", birthday, default=alice), User)
            assert_type(txn.remove("alice"), User | None)
            assert_type("bob" in txn, bool)
            del txn["bob"]


def check_declarative_form(path: Path) -> None:
    """Pin the types of a store whose class binds its types."""
    users = Users.open(path, config=StoreConfig(sync_on_write=True))
    assert_type(users, Users)
    with users as entered:
        assert_type(entered, Users)
        assert_type(users.insert("alice", User(name="Alice", age=30)), User | None)
        assert_type(users.get("alice"), User | None)
        assert_type(users["alice"], User)
        assert_type(users.get_index(0), tuple[str, User] | None)
        assert_type(users.modify("alice", birthday), User)
        with users.transaction() as txn:
            assert_type(txn, Transaction[str, User])
        with users.reading() as nothing:
            assert_type(nothing, None)
            assert_type(users["alice"], User)
    with Users.open(path, readonly=True) as reader:
        assert_type(reader, Users)
        with reader.reading():
            assert_type(reader.get("alice"), User | None)


class Shop(Database):
    """The declarative form of a database: collections as annotated attributes."""

    users: Collection[str, User]
    points: Collection[int, Point]


def check_database(path: Path) -> None:
    """Pin the types of a database's collections, its transactions and the functional form."""
    alice = User(name="Alice", age=30)
    with Shop.open(path) as shop:
        assert_type(shop, Shop)
        assert_type(shop.users, Collection[str, User])
        assert_type(shop.users.insert("alice", alice), User | None)
        assert_type(shop.users.get("alice"), User | None)
        assert_type(shop.users.get("nobody", alice), User)
        assert_type(shop.points.get_index(0), tuple[int, Point] | None)
        with shop.reading():
            assert_type(shop.users.get("alice"), User | None)
        transaction = shop.transaction()
        assert_type(transaction, DatabaseTransaction[Shop])
        with transaction as tx:
            assert_type(tx, Shop)
            assert_type(tx.users, Collection[str, User])
            assert_type(tx.users.modify("alice", birthday), User)
            tx.points[1] = Point(x=1, y=2)
            assert_type(tx.collection("extra", str, int), Collection[str, int])
        assert_type(shop.flush(), None)
        assert_type(shop.collection_names(), list[str])
    database = Database.open(path)
    assert_type(database, Database)
    users = database.collection("users", str, User)
    assert_type(users, Collection[str, User])
    assert_type(users["alice"], User)
    assert_type(database.collection("extra", str, int).get("x"), int | None)
    database.close()


def check_other_type_forms(folder: Path) -> None:
    """Pin the store types inferred for generic aliases, unions and frozen models."""
    with TypedStore.open(folder / "lists.log", int, list[int]) as lists:
        assert_type(lists, TypedStore[int, list[int]])
        assert_type(lists.get(1), list[int] | None)
    with TypedStore.open(folder / "optional.log", str, int | None) as optional:
        assert_type(optional, TypedStore[str, int | None])
        optional["none"] = None
    with TypedStore.open(folder / "keys.log", int | None, Point) as points:
        assert_type(points, TypedStore[int | None, Point])
        points[None] = Point(x=0, y=0)
    with TypedStore.open(folder / "tuples.log", tuple[str, int], Point) as pairs:
        assert_type(pairs, TypedStore[tuple[str, int], Point])
        assert_type(pairs.get_index(0), tuple[tuple[str, int], Point] | None)


def check_api(folder: Path) -> None:
    """Run every check above on stores in ``folder``."""
    check_functional_form(folder / "functional.log")
    check_transaction(folder / "transaction.log")
    check_declarative_form(folder / "declarative.log")
    check_other_type_forms(folder)
    check_database(folder / "shop.log")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as temporary:
        check_api(Path(temporary))
