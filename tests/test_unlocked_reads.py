"""Single-key reads without the lock (``_collection.UNLOCKED_KEYS``) see writes whole.

``get`` and ``[]`` of an exact ``str``/``bytes``/``int``/``bool`` key on an exclusive
store skip the lock unless a transaction or a batch is under way (``Core.busy``). These
tests race readers against transactions and batches with the interpreter switching
threads as often as it can, and check what a locked read guarantees: once a reader saw
one write of a batch, every read it makes afterwards sees the whole batch.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.models import User
from typedstore import StoreClosedError, TypedStore
from typedstore._core import Core

KEYS = ["a", "b", "c", "d"]


class Ints(TypedStore[str, int]):
    """Immutable values: reads return what memory keeps."""


class Users(TypedStore[str, User]):
    """Mutable values: reads decode a copy."""


@contextmanager
def switching_often() -> Iterator[None]:
    """Make the interpreter switch threads as often as it can, for the races to happen."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _write_batches(store: Ints, batches: list[tuple[bool, list[str]]]) -> None:
    """Write batch ``j`` (1-based) as value ``j`` of each of its keys, in a transaction
    (one batch record); with ``True``, each key is removed first in the same transaction,
    so that memory applies a removal and an insert of it."""
    for number, (removing, keys) in enumerate(batches, start=1):
        with store.transaction() as txn:
            for key in keys:
                if removing:
                    del txn[key]
                txn[key] = number


def _read_while(store: Ints, running: Callable[[], bool], seed: int) -> list[tuple[str, int]]:
    """Read random keys until ``running()`` is false; return each (key, value) read."""
    rng = random.Random(seed)
    seen: list[tuple[str, int]] = []
    while running():
        key = rng.choice(KEYS)
        try:
            seen.append((key, store[key] if rng.random() < 0.5 else store.get(key, -1)))
        except KeyError:  # absent: never so outside a batch, checked as -1
            seen.append((key, -1))
    return seen


def _check_whole(seen: list[tuple[str, int]], batches: list[tuple[bool, list[str]]]) -> None:
    """Assert that after reading a batch's value, every later read of one of its keys
    sees that batch (or a later one: values only grow)."""
    floor: dict[str, int] = dict.fromkeys(KEYS, 0)  # the least each key may show from now on
    for key, value in seen:
        assert value >= floor[key], f"{key} = {value} read after batch {floor[key]} was seen"
        if value > 0:
            for other in batches[value - 1][1]:
                floor[other] = max(floor[other], value)


def _race(store: Ints, batches: list[tuple[bool, list[str]]], seed: int) -> None:
    """Write ``batches`` in one thread while two others read; check every read."""
    store.update(dict.fromkeys(KEYS, 0))
    writer = threading.Thread(target=_write_batches, args=(store, batches))
    results: list[list[tuple[str, int]]] = [[], []]

    def read(slot: int) -> None:
        results[slot] = _read_while(store, writer.is_alive, seed + slot)

    readers = [threading.Thread(target=read, args=(slot,)) for slot in range(2)]
    with switching_often():
        writer.start()
        for reader in readers:
            reader.start()
        writer.join()
        for reader in readers:
            reader.join()
    for seen in results:
        _check_whole(seen, batches)


def test_readers_racing_transactions_see_each_whole(log_path: Path) -> None:
    """Reads without the lock, racing 3000 batches of every key, see each batch whole."""
    batches = [(number % 2 == 0, list(KEYS)) for number in range(3000)]
    with Ints.open(log_path) as store:
        assert str in store._unlocked_keys  # the reads under test skip the lock
        _race(store, batches, seed=1)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    batches=st.lists(
        st.tuples(st.booleans(), st.lists(st.sampled_from(KEYS), min_size=2, unique=True)),
        min_size=1,
        max_size=60,
    ),
    seed=st.integers(0, 2**16),
)
def test_readers_racing_any_batches_see_each_whole(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[tuple[bool, list[str]]],
    seed: int,
) -> None:
    """Whatever batches race the readers, a read never shows part of one."""
    path = tmp_path_factory.mktemp("race") / "store.log"
    with Ints.open(path) as store:
        _race(store, batches, seed)


def test_a_read_waits_for_an_open_transaction(log_path: Path) -> None:
    """While a transaction is open in one thread, another thread's read waits (README)."""
    with Ints.open(log_path) as store:
        store["a"] = 1
        entered, read = threading.Event(), threading.Event()
        got: list[int] = []

        def reader() -> None:
            entered.wait()
            got.append(store["a"])
            read.set()

        thread = threading.Thread(target=reader)
        thread.start()
        with store.transaction() as txn:
            txn["a"] = 2
            entered.set()
            # Time for the reader to try: a read that skipped the lock would get 1 now.
            read.wait(0.05)
        thread.join()
        assert got == [2]  # it waited for the block, whenever it tried


def test_mutable_values_read_without_the_lock_are_copies(log_path: Path) -> None:
    """A read without the lock still returns a fresh copy of a mutable value."""
    with Users.open(log_path) as store:
        store["ada"] = User(name="Ada", age=36)
        first = store["ada"]
        first.age = 99
        assert store["ada"].age == 36
        assert store.get("ada") is not store.get("ada")


def test_readonly_stores_always_lock(log_path: Path) -> None:
    """Read-only stores take the lock for every read: it catches them up."""
    with Ints.open(log_path) as store:
        store["a"] = 1
    with Ints.open(log_path, readonly=True) as follower:
        assert follower._unlocked_keys == frozenset()
        assert follower["a"] == 1


def test_shared_stores_skip_the_lock_only_while_the_log_is_unchanged(log_path: Path) -> None:
    """A shared store reads without the lock while the log ends where it last read it;
    once another process (here another instance) wrote, its next read locks and catches up."""
    with Ints.open(log_path, shared=True) as store, Ints.open(log_path, shared=True) as other:
        store["a"] = 1
        assert store["a"] == 1
        assert str in store._unlocked_keys  # unchanged since its own write
        assert float not in store._unlocked_keys
        other["a"] = 2
        assert str not in store._unlocked_keys  # the log grew: the read locks
        assert store["a"] == 2
        assert str in store._unlocked_keys  # caught up
        other.compact()
        assert str not in store._unlocked_keys  # the log was replaced
        assert store.get("a") == 2
        assert str in store._unlocked_keys
    assert str not in store._unlocked_keys  # closed: the read locks, and raises
    with pytest.raises(StoreClosedError):
        store.get("a")


def test_a_closed_store_refuses_reads_that_would_skip_the_lock(log_path: Path) -> None:
    """A read of a closed store raises, as a locked read does, never returns a default."""
    store = Ints.open(log_path)
    store["a"] = 1
    store.close()
    with pytest.raises(StoreClosedError):
        store.get("a")
    with pytest.raises(StoreClosedError):
        store["a"]


class _RacedEntries(dict[str, int]):
    """Entries whose lookup lets a whole batch run in the middle of it, as another
    thread could between a read's check of ``Core.writing`` and its lookup: the lookup
    sees the batch half applied (its key removed), then the batch ends."""

    core: Core
    raced = False

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]  # a test double
        if self.raced:  # once
            return super().get(key, default)
        self.raced = True
        core = self.core
        core.writing = (core.writing + 2) | 1  # as Core does
        super().pop(key)  # the batch removes the key, to insert it again next
        halfway = super().get(key, default)
        self[key] = 2
        core.writing = (core.writing + 1) & ~1
        return halfway


def test_a_read_that_overlapped_a_batch_reads_again_under_the_lock(log_path: Path) -> None:
    """A lookup that a batch ran through is not trusted: the read is made again, locked."""
    with Ints.open(log_path) as store:
        store["a"] = 1
        raced = _RacedEntries(cast(dict[str, int], store._table.entries))
        raced.core = store._core
        store._table.entries = cast(dict[str, object], raced)
        assert store.get("a") == 2  # not None: "a" was never absent outside the batch
        raced.raced = False
        assert store["a"] == 2  # not KeyError
