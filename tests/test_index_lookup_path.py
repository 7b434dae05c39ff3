"""A lookup's short path: a collection keeps each index's view as an attribute of its own
(``Collection._index_view``), so ``collection.by_email`` skips the descriptor after the
first time. What that must not change: a closed collection's lookups raise, through a
view kept from before the close too; a transaction's lookups see its own writes; and
every lookup answers what the general path (the descriptor, a fresh view) answers.
"""

from __future__ import annotations

import linecache
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from pydantic import BaseModel

from typedstore import Collection, Database, Index, StoreClosedError, TypedStore
from typedstore._index import IndexView


class User(BaseModel):
    email: str
    age: int


class Users(Collection[str, User]):
    by_email: Index[User, str] = Index(lambda user: user.email, unique=True)
    by_age: Index[User, int] = Index(lambda user: user.age, ordered=True)


class Site(Database):
    users: Users


class UserStore(TypedStore[str, User]):
    by_email: Index[User, str] = Index(lambda user: user.email, unique=True)


def _filled(path: Path) -> Site:
    site = Site.open(path)
    for index in range(5):
        site.users[f"u{index}"] = User(email=f"e{index}@x", age=index % 3)
    return site


def test_the_view_is_kept_and_answers_as_a_fresh_view(log_path: Path) -> None:
    """The second attribute read finds the first's view, which answers every lookup as
    a view made afresh does."""
    with _filled(log_path) as site:
        users = site.users
        first = users.by_email
        assert users.__dict__["by_email"] is first  # kept
        assert users.by_email is first
        fresh = IndexView(users._indexes, Users.by_email)
        for index in range(6):
            assert users.by_email.get(f"e{index}@x") == fresh.get(f"e{index}@x")
        assert list(users.by_age) == list(IndexView(users._indexes, Users.by_age))
        users["u9"] = User(email="e9@x", age=1)  # the kept view follows writes
        assert users.by_email.get("e9@x") == ("u9", User(email="e9@x", age=1))
        assert [key for key, _ in users.by_age.range(1, 2)] == ["u1", "u4", "u9"]


@pytest.mark.parametrize("kept", [True, False], ids=["view kept", "attribute read"])
def test_a_closed_collections_lookups_raise_through_a_kept_view_too(
    log_path: Path, kept: bool
) -> None:
    """After close, every lookup raises StoreClosedError, whether through the attribute
    or through a view taken before the close (it returned the closed store's data, or
    raised KeyError, before)."""
    site = _filled(log_path)
    view = site.users.by_email
    ordered = site.users.by_age
    assert view.get("e1@x") is not None
    site.close()
    with pytest.raises(StoreClosedError, match="closed"):
        (view if kept else site.users.by_email).get("e1@x")
    with pytest.raises(StoreClosedError, match="closed"):
        (ordered if kept else site.users.by_age).range(0, 2)
    with pytest.raises(StoreClosedError, match="closed"):
        "e1@x" in view  # noqa: B015 - the lookup is the test
    with pytest.raises(StoreClosedError, match="closed"):
        site.users["u7"] = User(email="e7@x", age=0)


def test_a_declarative_stores_kept_view_is_refused_after_close(log_path: Path) -> None:
    """The same for a declarative ``TypedStore`` with an index."""
    store = UserStore.open(log_path)
    store["a"] = User(email="a@x", age=1)
    view = store.by_email
    assert view.get("a@x") == ("a", User(email="a@x", age=1))
    store.close()
    with pytest.raises(StoreClosedError):
        view.get("a@x")
    with pytest.raises(StoreClosedError):
        store.by_email.get("a@x")
    with UserStore.open(log_path) as reopened:  # a new store: its own views
        assert reopened.by_email.get("a@x") == ("a", User(email="a@x", age=1))


def test_a_transaction_sees_its_own_writes_after_the_view_was_kept(log_path: Path) -> None:
    """A transaction's view of a collection copies the collection's attributes: it must
    not take the kept view, which does not see the transaction's writes."""
    with _filled(log_path) as site:
        assert site.users.by_email.get("new@x") is None  # the view is kept now
        with site.transaction() as tx:
            tx.users["n"] = User(email="new@x", age=2)
            del tx.users["u1"]
            assert tx.users.by_email.get("new@x") == ("n", User(email="new@x", age=2))
            assert tx.users.by_email.get("e1@x") is None
            assert "n" in [key for key, _ in tx.users.by_age.range(2, None)]
            assert site.users.by_email.get("new@x") is None  # not committed yet
        assert site.users.by_email.get("new@x") == ("n", User(email="new@x", age=2))
        assert site.users.by_email.get("e1@x") is None


def test_a_view_made_by_another_thread_while_a_close_drops_them_does_not_break_it(
    log_path: Path,
) -> None:
    """Another thread's first lookup through an index adds its view while the close goes
    through the kept ones: the close completes, and lookups through either view raise."""
    site = _filled(log_path)
    users = site.users
    first = users.by_email
    made: list[object] = []

    def another_thread_looks_up(frame: FrameType, event: str, arg: object) -> Any:
        # Lands in Collection._drop_index_views's loop, as a thread switch would there.
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        if event == "line" and ".pop(" in line and not made:
            made.append(users.by_age)
        return another_thread_looks_up

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if event == "call" and frame.f_code.co_name == "_drop_index_views":
            return another_thread_looks_up
        return None

    sys.settrace(tracer)
    try:
        site.close()
    finally:
        sys.settrace(None)
    assert made, "the lookup landed inside the close"
    with pytest.raises(StoreClosedError):
        first.get("e1@x")
    with pytest.raises(StoreClosedError):
        users.by_age.range(0, 1)
