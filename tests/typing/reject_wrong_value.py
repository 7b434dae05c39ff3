"""Misuses that mypy must reject; tests/test_static.py expects exactly the errors marked ``# E:``.

This file is excluded from the project's mypy run (mypy.ini) because it is meant to fail.
"""

from __future__ import annotations

from pathlib import Path

from tests.models import Point, User

from typedstore import Collection, Database, TypedStore


class Users(TypedStore[str, User]):
    """The declarative form of a store of users."""


class Shop(Database):
    """A database of users and points."""

    users: Collection[str, User]
    points: Collection[int, Point]


def misuse_database(path: Path) -> None:
    """Hand a database's collections, and their transaction views, the wrong types."""
    shop = Shop.open(path)
    shop.users["k"] = Point(x=1, y=2)  # E: assignment
    with shop.transaction() as tx:
        tx.points[1] = User(name="a", age=1)  # E: assignment
        tx.users.insert(1, User(name="a", age=1))  # E: arg-type
    points = Database.open(path).collection("points", int, Point)
    points.insert(1, User(name="a", age=1))  # E: arg-type


def misuse(path: Path) -> None:
    """Hand the store values and keys of the wrong types."""
    store = TypedStore.open(path, str, User)
    store.insert("k", 42)  # E: arg-type
    store["k"] = Point(x=1, y=2)  # E: assignment
    store.insert(1, User(name="a", age=1))  # E: arg-type
    store.modify("k", lambda user: user.age)  # E: arg-type, return-value
    store.modify("k", lambda user: user, default=42)  # E: call-overload
    age: str = store["k"].age  # E: assignment
    users = Users.open(path)
    users.insert("k", "not a user")  # E: arg-type
    with users.transaction() as txn:
        txn["k"] = 42  # E: assignment
    print(age)
