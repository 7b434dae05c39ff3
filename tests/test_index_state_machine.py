"""Indexes agree with brute-force queries over a plain dict, whatever the writes.

A Hypothesis state machine drives a host with a unique, an ordered, a multi and a hash
index (``tests/index_host.py``) and a ``dict`` with the same writes, transactions,
several-key writes, rebuilds and clears; every lookup is compared with a scan of the
dict, which is in the host's insertion order.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.index_host import Member, Members
from typedstore._errors import UniqueViolationError
from typedstore._index import Index, IndexView
from typedstore._index_set import Change
from typedstore._types import MISSING, _Missing

T = TypeVar("T")

KEYS = ["a", "b", "c", "d", "e"]
EMAILS = ["p@x", "q@x", "r@x"]
TAGS = ["red", "blue"]

keys = st.sampled_from(KEYS)
members = st.builds(
    Member,
    name=st.sampled_from(["ann", "bo"]),
    email=st.none() | st.sampled_from(EMAILS),
    age=st.integers(0, 4),
    tags=st.lists(st.sampled_from(TAGS), max_size=3),
)
changes = st.lists(st.tuples(keys, st.none() | members), max_size=4)
"""Writes in order: a value, or None for a removal."""
bounds = st.none() | st.integers(-1, 5)


class ViewOf(Protocol):
    """Return the lookups of an index of Members: the host's, or a transaction's."""

    def __call__(self, index: Index[Member, T], /) -> IndexView[str, Member, T]: ...


def applied(model: dict[str, Member], writes: list[Change[str, Member]]) -> dict[str, Member]:
    """Return ``model`` after ``writes``, in the host's order rules (a new key goes last)."""
    after = dict(model)
    for key, value in writes:
        if isinstance(value, _Missing):
            after.pop(key, None)
        else:
            after[key] = value
    return after


def breaks_unique(model: dict[str, Member]) -> bool:
    """Return whether two entries of ``model`` share an email."""
    emails = [value.email for value in model.values() if value.email is not None]
    return len(emails) != len(set(emails))


def as_changes(writes: list[tuple[str, Member | None]]) -> list[Change[str, Member]]:
    """Return ``writes`` with MISSING for removals."""
    return [(key, MISSING if value is None else value) for key, value in writes]


class IndexAgreement(RuleBasedStateMachine):
    """The host's indexes and brute-force scans of a dict answer every lookup alike."""

    def __init__(self) -> None:
        super().__init__()
        self.host = Members()
        self.model: dict[str, Member] = {}

    @rule(key=keys, value=members)
    def write(self, key: str, value: Member) -> None:
        """A single write: refused exactly when another entry holds its email."""
        after = applied(self.model, [(key, value)])
        if breaks_unique(after):
            with pytest.raises(UniqueViolationError, match="by_email"):
                self.host[key] = value
        else:
            self.host[key] = value
            self.model = after

    @rule(key=keys)
    def remove(self, key: str) -> None:
        """A single removal of a present key."""
        if key in self.model:
            del self.host[key]
            del self.model[key]

    @rule(writes=changes)
    def write_several(self, writes: list[tuple[str, Member | None]]) -> None:
        """One write of several changes: refused exactly when its net result breaks a rule."""
        staged = as_changes(writes)
        after = applied(self.model, staged)
        if breaks_unique(after):
            with pytest.raises(UniqueViolationError, match="by_email"):
                self.host.write(staged)
        else:
            self.host.write(staged)
            self.model = after

    @rule(writes=changes)
    def transaction(self, writes: list[tuple[str, Member | None]]) -> None:
        """A transaction: each write checked against its own view; refused ones skipped."""
        view = dict(self.model)
        with self.host.transaction() as txn:
            for key, value in writes:
                if value is None:
                    txn.__delitem__(key)
                    view.pop(key, None)
                elif breaks_unique(applied(view, [(key, value)])):
                    with pytest.raises(UniqueViolationError, match="by_email"):
                        txn[key] = value
                else:
                    txn[key] = value
                    view[key] = value
                assert_lookups_agree(txn.view, view)
        self.model = view

    @rule()
    def reopen(self) -> None:
        """Rebuild the indexes from the entries, as an open does."""
        self.host = self.host.reopen()

    @rule()
    def clear(self) -> None:
        """Remove everything."""
        self.host.clear()
        self.model.clear()

    @rule(low=bounds, high=bounds, reverse=st.booleans(), limit=bounds, offset=st.integers(0, 3))
    def check_range(
        self, low: int | None, high: int | None, reverse: bool, limit: int | None, offset: int
    ) -> None:
        """range agrees with a sorted scan, ties in insertion order."""
        if limit is not None and limit < 0:
            limit = None
        found = [
            (key, value)
            for key, value in by_age(self.model)
            if (low is None or value.age >= low) and (high is None or value.age < high)
        ]
        if reverse:
            found.reverse()
        expected = found[offset:][:limit] if limit is not None else found[offset:]
        result = self.host.by_age.range(low, high, reverse=reverse, limit=limit, offset=offset)
        assert result == expected

    @invariant()
    def lookups_agree(self) -> None:
        """Every lookup of every index agrees with a scan of the dict."""
        assert_lookups_agree(self.host._index_view, self.model)


def by_age(model: dict[str, Member]) -> list[tuple[str, Member]]:
    """Return the model's entries sorted by age, ties in insertion order."""
    return sorted(model.items(), key=lambda item: item[1].age)


def assert_lookups_agree(view_of: ViewOf, model: dict[str, Member]) -> None:
    """Assert that get, find, count, in and iteration of each index agree with ``model``."""
    by_email, by_age_view = view_of(Members.by_email), view_of(Members.by_age)
    for email in EMAILS:
        holders = [(k, v) for k, v in model.items() if v.email == email]
        assert by_email.get(email) == (holders[0] if holders else None)
        assert (by_email.count(email), email in by_email) == (len(holders), bool(holders))
    assert list(by_age_view) == by_age(model)
    assert (
        by_age_view.range(1, 4, reverse=True, limit=3)
        == by_age({k: v for k, v in model.items() if 1 <= v.age < 4})[::-1][:3]
    )
    for age in range(5):
        assert by_age_view.find(age) == [(k, v) for k, v in model.items() if v.age == age]
    by_tag, by_name = view_of(Members.by_tag), view_of(Members.by_name)
    for tag in TAGS:
        expected = [(k, v) for k, v in model.items() if tag in v.tags]
        assert (by_tag.find(tag), by_tag.count(tag)) == (expected, len(expected))
    for name in ["ann", "bo"]:
        assert by_name.find(name) == [(k, v) for k, v in model.items() if v.name == name]


TestIndexAgreement = pytest.mark.slow(IndexAgreement.TestCase)
