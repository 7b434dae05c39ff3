"""Hostile checks of the shared catch-up, the exclusive write paths and the indexed
single writes: Ctrl-C at every point, killed writers, re-entrant writes, threads.

Each test here is one way these paths could break that the tests beside them did not
try, and what must hold afterwards: memory equal to what a fresh open reads, the next
operation working, and the process left as it was (its garbage collector on).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel

from tests.models import User
from tests.test_index_write_path import (
    CTRL_C_WRITES,
    DATABASES,
    Person,
    _agrees,
    _index_state,
    _write_interrupted_at,
)
from tests.test_interrupts import (
    LANDED,
    _every_step,
    _Injected,
    _interrupt_at,
)
from typedstore import (
    Collection,
    Database,
    Index,
    PostgresEngine,
    TypedStore,
    UniqueViolationError,
)


def _state(store: TypedStore[str, int]) -> tuple[list[tuple[str, int]], int, int]:
    """What a handle holds: its entries in order, and where it has read the log to."""
    core = store._core
    return list(store.items()), core._known, core._total


class TestCtrlCInACatchUp:
    def test_the_collector_stays_on_and_memory_equals_a_fresh_open(self, log_path: Path) -> None:
        """A KeyboardInterrupt at any point of a shared catch-up (the short way of bare
        records, and the general way behind it) leaves Python's cyclic garbage collector
        enabled as it was: a catch-up pauses it while it builds entries, and a Ctrl-C
        landing right after the pause, before the block that restores it, once left it
        off for the rest of the process. Memory then equals a fresh open's, and the next
        write works."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as reader,
            TypedStore.open(log_path, str, int, shared=True) as writer,
        ):

            def attempt(step: int, hits: list[int]) -> None:
                for index in range(4):
                    writer[f"k{(step * 3 + index) % 7}"] = step
                writer.pop(f"k{step % 7}", None)
                with writer.transaction() as txn:  # a batch: the general way after it
                    txn[f"t{step % 3}"] = step
                writer[f"k{step % 7}"] = -step
                assert gc.isenabled()
                try:
                    with _interrupt_at(step, hits):
                        len(reader)  # catches up
                except _Injected:
                    pass
                enabled = gc.isenabled()
                gc.enable()
                assert enabled, f"the collector was left off after {LANDED}"
                with TypedStore.open(log_path, str, int, readonly=True) as fresh:
                    assert _state(reader) == _state(fresh), f"after {LANDED}"
                reader["r"] = step
                assert writer["r"] == step

            assert _every_step(attempt) >= 50  # the trace saw the catch-up's code


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_anywhere_in_an_open_leaves_the_collector_on(log_path: Path) -> None:
    """An open pauses the cyclic garbage collector while it replays
    (``_replay.collector_paused``): a Ctrl-C at any point of it, including right as the
    pause returns, leaves the collector as it was, and the log opens afterwards.

    (A Ctrl-C landing once the handle exists but before ``open`` hands it back leaves it
    unreachable and open until the collector finalizes it, with a ResourceWarning:
    hence the collection before the last open, and the warnings ignored here.)"""
    with TypedStore.open(log_path, str, int) as store:
        store.update({f"k{index}": index for index in range(5)})

    def attempt(step: int, hits: list[int]) -> None:
        try:
            with _interrupt_at(step, hits):
                opened = TypedStore.open(log_path, str, int, shared=True)
            opened.close()
        except _Injected:
            pass
        enabled = gc.isenabled()
        gc.enable()
        assert enabled, f"the collector was left off after {LANDED}"

    assert _every_step(attempt) >= 100  # the trace saw the open's code
    gc.collect()  # handles the interrupts left unreachable let go of the log
    with TypedStore.open(log_path, str, int) as store:
        assert dict(store.items()) == {f"k{index}": index for index in range(5)}


@pytest.mark.parametrize(
    "shared",
    [pytest.param(False, id="exclusive"), pytest.param(True, id="shared", marks=pytest.mark.slow)],
)
@pytest.mark.parametrize("operation", list(CTRL_C_WRITES))
@pytest.mark.parametrize("shape", ["hash alone", "several"])
def test_ctrl_c_anywhere_in_an_indexed_single_write_keeps_indexes_true(
    tmp_path: Path, shape: str, operation: str, shared: bool
) -> None:
    """tests/test_index_write_path.py's Ctrl-C test for the shapes it leaves out (a hash
    index alone that is not unique: ``_plan_single``; several indexes), and for a
    shared handle, whose single writes go the general way with the validated value
    handed to the indexes (``IndexHook.given``): the lock ends up free, the indexes
    equal memory, memory equals a reopen's, and a lookup from another handle agrees."""
    database = DATABASES[shape]
    path = tmp_path / "db.log"
    opened = database.open(path, shared=shared)
    people: Collection[str, Person] = opened.people  # type: ignore[attr-defined]  # every database here has one
    write = CTRL_C_WRITES[operation]

    def attempt(step: int, hits: list[int]) -> None:
        _write_interrupted_at(people, write, step, hits)
        assert people._index_hook is None or people._index_hook.given is None, LANDED
        _agrees(people)

    steps = _every_step(attempt)
    assert steps >= 20  # the trace saw the write's code
    items, state = list(people.items()), _index_state(people)
    opened.close()
    with database.open(path) as reopened:
        assert list(reopened.people.items()) == items  # type: ignore[attr-defined]  # as above
        assert _index_state(reopened.people) == state  # type: ignore[attr-defined]  # as above


@pytest.mark.parametrize("shape", ["lone unique", "several"])
def test_indexed_single_writes_on_postgres_follow_across_handles(pg_dsn: str, shape: str) -> None:
    """On the PostgreSQL engine (whose log takes a single write's parts as
    ``PgLog.append``), two handles of a database with indexes write in turn, with
    refusals and a compaction between: each handle's indexes list exactly its entries,
    both agree, and a fresh open reads the same."""
    database = DATABASES[shape]
    rng = random.Random(5)
    with (
        database.open(PostgresEngine(pg_dsn, name="people")) as first,
        database.open(PostgresEngine(pg_dsn, name="people")) as second,
    ):
        handles = (first.people, second.people)  # type: ignore[attr-defined]  # every database here has one
        for step in range(120):
            people = handles[step % 2]
            key = f"k{rng.randrange(12)}"
            if rng.random() < 0.25:
                people.pop(key, None)
            else:
                person = Person(name=key, email=f"e{rng.randrange(15)}", age=rng.randrange(4))
                with contextlib.suppress(UniqueViolationError):
                    people[key] = person
            if step % 40 == 39:
                (first, second)[step % 2].compact()
            if step % 5 == 0:
                for each in handles:
                    _agrees(each)
                assert list(handles[0].items()) == list(handles[1].items())
        items, state = list(first.people.items()), _index_state(first.people)  # type: ignore[attr-defined]  # as above
        assert _index_state(second.people) == state  # type: ignore[attr-defined]  # as above
    with database.open(PostgresEngine(pg_dsn, name="people")) as fresh:
        assert list(fresh.people.items()) == items  # type: ignore[attr-defined]  # as above
        assert _index_state(fresh.people) == state  # type: ignore[attr-defined]  # as above


@pytest.mark.slow
@pytest.mark.parametrize("operation", list(CTRL_C_WRITES))
def test_ctrl_c_anywhere_in_an_indexed_write_on_postgres_keeps_indexes_true(
    pg_dsn: str, operation: str
) -> None:
    """Ctrl-C at every point of a single write to a collection with a unique index on
    the PostgreSQL engine: the lock ends up free, the indexes equal memory, and memory
    equals a fresh open's."""
    database = DATABASES["lone unique"]
    opened = database.open(PostgresEngine(pg_dsn, name="people"))
    people: Collection[str, Person] = opened.people  # type: ignore[attr-defined]  # every database here has one
    write = CTRL_C_WRITES[operation]

    def attempt(step: int, hits: list[int]) -> None:
        _write_interrupted_at(people, write, step, hits)
        _agrees(people)

    assert _every_step(attempt) >= 20  # the trace saw the write's code
    items, state = list(people.items()), _index_state(people)
    opened.close()
    with database.open(PostgresEngine(pg_dsn, name="people")) as reopened:
        assert list(reopened.people.items()) == items  # type: ignore[attr-defined]  # as above
        assert _index_state(reopened.people) == state  # type: ignore[attr-defined]  # as above


class Plain(Collection[str, int]):
    """No index: collection 0, whose bare records take the catch-up's short way."""


class Members(Collection[str, User]):
    """Indexed: its records take the general way, and its indexes follow them."""

    by_name: Index[User, str] = Index(lambda user: user.name, unique=True)
    by_age: Index[User, int] = Index(lambda user: user.age, ordered=True)


class Mixed(Database):
    plain: Plain
    members: Members


def _mixed_state(db: Mixed) -> tuple[object, ...]:
    """What a handle of :class:`Mixed` holds: entries, index lookups, log position."""
    members = list(db.members.items())
    core = db._core
    return (
        list(db.plain.items()),
        members,
        [db.members.by_name.get(user.name) for _, user in members],
        [key for key, _ in db.members.by_age.range(None, None)],
        (core._known, core._total),
    )


@pytest.mark.slow
@pytest.mark.parametrize("readonly", [False, True], ids=["shared", "readonly"])
@pytest.mark.parametrize("compacting", [False, True], ids=["appends", "compactions"])
def test_ctrl_c_anywhere_in_a_database_catch_up_leaves_a_fresh_opens_state(
    log_path: Path, readonly: bool, compacting: bool
) -> None:
    """A shared or read-only handle of a database with an indexed collection, catching
    up on bare records, collection records, transactions and (``compactions``) another
    handle's compactions, interrupted at any point: afterwards the collector is on, its
    entries, index lookups and log position equal a fresh open's, and it writes on."""
    writer = Mixed.open(log_path, shared=True)
    reader = Mixed.open(log_path, readonly=True) if readonly else Mixed.open(log_path, shared=True)

    def attempt(step: int, hits: list[int]) -> None:
        for index in range(3):
            writer.plain[f"k{(step * 3 + index) % 7}"] = step
        writer.members[f"m{step % 5}"] = User(name=f"n{step}", age=step % 4)
        with writer.transaction() as txn:
            txn.plain[f"t{step % 3}"] = step
            txn.members.pop(f"m{(step + 2) % 5}", None)
        writer.plain.pop(f"k{step % 7}", None)
        if compacting and step % 2 == 0:
            writer.compact()
            writer.plain[f"after{step % 3}"] = step
        try:
            with _interrupt_at(step, hits):
                len(reader.plain)  # catches up
        except _Injected:
            pass
        enabled = gc.isenabled()
        gc.enable()
        assert enabled, f"the collector was left off after {LANDED}"
        with Mixed.open(log_path, readonly=True) as fresh:
            assert _mixed_state(reader) == _mixed_state(fresh), f"after {LANDED}"
        if not readonly:
            reader.plain["r"] = step
            reader.members["r"] = User(name=f"r{step}", age=1)
            assert writer.members["r"].name == f"r{step}"

    try:
        assert _every_step(attempt) >= 100  # the trace saw the catch-up's code
    finally:
        reader.close()
        writer.close()


def _value_of(key: str, large: bool) -> str:
    """The value written under ``key``: a function of it, so that bytes from another
    write show; ``large`` ones (over 64 KiB) make the shared packer be replaced."""
    return key * (70_000 // len(key) + 1) if large else key[::-1] * 3


class _Writes:
    """Garbage only the cycle collector frees, whose finalizer writes to a store: the
    collector runs it wherever an allocation falls, in any thread, inside another write."""

    store: ClassVar[TypedStore[str, str] | None] = None
    counter: ClassVar[Iterator[int]] = itertools.count()
    refused: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        store = _Writes.store
        if store is None:
            return
        number = next(self.counter)
        key = f"fin{number}"
        try:
            store[key] = _value_of(key, number % 40 == 0)
        except RuntimeError as exc:  # a finalizer inside this store's own write: refused
            self.refused.append(str(exc))


@pytest.mark.slow
def test_the_shared_plain_packer_under_threads_finalizers_and_signals(tmp_path: Path) -> None:
    """Every thread shares one packer of plain data. Threads switching every
    microsecond write to two stores; the collector runs after every allocation and
    its finalizers write to a third store, inside whatever write is packing; a timer's
    signal handler writes too; some values are over 64 KiB, so the packer is replaced
    while others use it. Every stored value is its key's, and each log replays to what
    memory holds."""
    first = TypedStore.open(tmp_path / "first.log", str, str)
    second = TypedStore.open(tmp_path / "second.log", str, str)
    third = TypedStore.open(tmp_path / "third.log", str, str)
    stores = {"first": first, "second": second, "third": third}
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker(store: TypedStore[str, str], prefix: str) -> None:
        try:
            for number in range(100_000):
                if stop.is_set():
                    return
                key = f"{prefix}{number}"
                store[key] = _value_of(key, number % 50 == 0)
                _Writes()
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    signalled = itertools.count()

    def handler(signum: int, frame: object) -> None:
        number = next(signalled)
        key = f"sig{number}"
        with contextlib.suppress(RuntimeError):  # inside second's own write here: refused
            second[key] = _value_of(key, number % 30 == 0)

    threads = [
        threading.Thread(target=worker, args=(store, prefix))
        for store, prefix in ((first, "a"), (second, "b"), (first, "c"))
    ]
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    previous = signal.signal(signal.SIGALRM, handler)
    _Writes.store = third
    try:
        sys.setswitchinterval(1e-6)
        gc.set_threshold(1, 1, 1)
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        for thread in threads:
            thread.start()
        for number in range(5000):
            key = f"m{number}"
            first[key] = _value_of(key, number % 100 == 0)
            _Writes()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)
        gc.collect()
        _Writes.store = None
    assert not errors
    assert len(third) > 100  # finalizers wrote, inside other writes
    for name, store in stores.items():
        items = dict(store.items())
        for key, value in items.items():
            assert value in (_value_of(key, False), _value_of(key, True)), (name, key)
        store.close()
        with TypedStore.open(tmp_path / f"{name}.log", str, str) as again:
            assert dict(again.items()) == items


_KILLED_WRITER = """
import random, sys
from typedstore import TypedStore
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
store = TypedStore.open(path, str, bytes, shared=True)
print("ready", flush=True)
for number in range(1_000_000):  # killed long before the end
    key = f"k{rng.randrange(30)}"
    roll = rng.random()
    if roll < 0.2:
        store.pop(key, None)
    elif roll < 0.3:
        with store.transaction() as txn:
            txn[key] = b"t" * rng.randrange(10)
            txn["x" + key] = b"u"
    elif roll < 0.33:
        store.compact()
    else:  # large values: a write long enough for the kill to land inside it
        store[key] = bytes([number % 256]) * rng.choice([1, 100, 70_000, 3_000_000])
"""


@pytest.mark.slow
def test_handles_following_a_writer_killed_anywhere_read_what_a_fresh_open_reads(
    tmp_path: Path,
) -> None:
    """Another process writes (bare records, transactions, compactions, values of
    megabytes) and is killed with SIGKILL at a random point, maybe inside a write or a
    compaction, while a shared and a read-only handle follow it. Afterwards both hold
    what a fresh open reads, and a write through the shared one lands where all see it."""
    path = tmp_path / "log"
    TypedStore.open(path, str, bytes, shared=True).close()
    follower = TypedStore.open(path, str, bytes, shared=True)
    reader = TypedStore.open(path, str, bytes, readonly=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = random.Random(11)
    try:
        for round_ in range(20):
            child = subprocess.Popen(
                [sys.executable, "-c", _KILLED_WRITER, str(path), str(round_)],
                env=env,
                stdout=subprocess.PIPE,
            )
            try:
                assert child.stdout is not None
                assert child.stdout.readline() == b"ready\n"
                deadline = time.monotonic() + rng.uniform(0.05, 0.5)
                while time.monotonic() < deadline:  # following as it writes
                    len(follower)
                    len(reader)
            finally:
                child.kill()
                child.wait()
                assert child.stdout is not None
                child.stdout.close()
            with TypedStore.open(path, str, bytes, readonly=True) as fresh:
                expected = list(fresh.items())
            assert list(follower.items()) == expected, round_
            assert list(reader.items()) == expected, round_
            follower["after"] = bytes([round_])
            with TypedStore.open(path, str, bytes, readonly=True) as fresh:
                expected = list(fresh.items())
            assert list(follower.items()) == list(reader.items()) == expected, round_
    finally:
        follower.close()
        reader.close()


class Widened(Database):
    """:class:`Mixed` with one collection more: opening it changes the catalog."""

    plain: Plain
    members: Members
    notes: Collection[str, str]


@pytest.mark.parametrize("readonly", [False, True], ids=["shared", "readonly"])
def test_a_catch_up_across_two_compactions_and_a_catalog_change_reads_a_fresh_opens_state(
    log_path: Path, readonly: bool
) -> None:
    """Between two catch-ups of a handle, another process appends bare records, compacts,
    appends, compacts again, adds a collection and appends to collection 0 (the short
    way's) and the others: the handle then holds what a fresh open reads, at the same
    position, and (shared) writes on where the other process sees it."""
    with Mixed.open(log_path, shared=True) as first:
        first.plain["a"] = 1
        first.members["m"] = User(name="m", age=1)
    follower = (
        Mixed.open(log_path, readonly=True) if readonly else Mixed.open(log_path, shared=True)
    )
    try:
        assert list(follower.plain.items()) == [("a", 1)]
        with Widened.open(log_path, shared=True) as other:
            other.plain["b"] = 2
            other.compact()
            other.plain["c"] = 3
            del other.plain["a"]
            other.members["n"] = User(name="n", age=2)
            other.compact()
            other.plain["d"] = 4
            other.notes["x"] = "y"
            other.plain["a"] = 5
            with other.transaction() as txn:
                txn.plain["e"] = 6
                txn.members.pop("m")
            other.plain["f"] = 7
            with Mixed.open(log_path, readonly=True) as fresh:
                expected = _mixed_state(fresh)
            assert _mixed_state(follower) == expected
            assert list(follower.plain) == ["b", "c", "d", "a", "e", "f"]
            if not readonly:
                follower.plain["g"] = 8
                follower.members["o"] = User(name="o", age=3)
                assert other.plain["g"] == 8
                assert other.members.by_name.get("o") == ("o", User(name="o", age=3))
                assert other.notes["x"] == "y"
    finally:
        follower.close()


class Numbers(BaseModel):
    items: list[int]


def _first_item(numbers: Numbers) -> object:
    return numbers.items[0] if isinstance(numbers.items, list) else numbers.items


class ByFirst(Collection[str, Numbers]):
    by_first: Index[Numbers, object] = Index(_first_item)


class FirstDb(Database):
    numbers: ByFirst


@pytest.mark.parametrize("shared", [False, True], ids=["exclusive", "shared"])
def test_an_insert_indexes_the_value_memory_keeps_not_the_one_given(
    log_path: Path, shared: bool
) -> None:
    """A model instance built without validation (``model_construct``) may hold a tuple
    where its type says list: memory keeps, and reads and a reopen give, the list its
    bytes read back as. The indexes must see that value too, not the instance given
    (``Codec.encode_insert``): else the index lists the key under an index key its
    value does not have, until a reopen rebuilds it."""
    with FirstDb.open(log_path, shared=shared) as db:
        db.numbers["warm"] = Numbers(items=[1])
        db.numbers["t"] = Numbers.model_construct(items=(1, 2))  # type: ignore[arg-type]  # the point: not validated
        assert db.numbers["t"] == Numbers(items=[1, 2])
        live = (db.numbers.by_first.find(1), db.numbers.by_first.find((1, 2)))
    with FirstDb.open(log_path) as reopened:
        assert live == (reopened.numbers.by_first.find(1), reopened.numbers.by_first.find((1, 2)))
        assert [key for key, _ in reopened.numbers.by_first.find(1)] == ["warm", "t"]
