"""Reading blocks, ``with store.reading():`` (README "Reading many keys at once").

A block looks at the log once, as it begins: every read inside sees every write any
instance acknowledged before then, and this process's own writes, without looking again.
Each test runs on an exclusive log file, a shared one and a store in PostgreSQL (in the
test's own schema; skipped without the server binaries), with a second instance writing
where there can be one.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from typedstore import Index, PostgresEngine, StoreClosedError, TypedStore, _reading

Where = Path | PostgresEngine


class Ints(TypedStore[str, int]):
    """Immutable values, and indexes on them."""

    by_parity: Index[int, int] = Index(lambda value: value % 2, ordered=True)
    by_value: Index[int, int] = Index(lambda value: value, unique=True)


@pytest.fixture(params=["exclusive", "shared", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    """How the store is opened: exclusively, shared on a file, or in PostgreSQL."""
    return str(request.param)


@pytest.fixture
def where(kind: str, request: pytest.FixtureRequest, log_path: Path) -> Where:
    """The store's log: a file, or store ``ints`` in PostgreSQL."""
    if kind == "postgres":
        return PostgresEngine(request.getfixturevalue("pg_dsn"), name="ints")
    return log_path


@pytest.fixture
def store(where: Where, kind: str) -> Iterator[Ints]:
    """The store under test."""
    with Ints.open(where, shared=kind == "shared") as opened:
        yield opened


@pytest.fixture
def other(where: Where, kind: str, store: Ints) -> Iterator[Ints]:
    """A second instance writing the same log (not possible beside an exclusive one)."""
    if kind == "exclusive":
        pytest.skip("an exclusive store has no other writer")
    with Ints.open(where, shared=True) as opened:
        yield opened


def reads(store: Ints) -> dict[str, object]:
    """Return what every kind of read says about the store (which holds ``a``)."""
    view = store.by_parity
    return {
        "get": store.get("a"),
        "[]": store["a"],
        "in": "b" in store,
        "len": len(store),
        "iter": list(store),
        "keys": list(store.keys()),
        "values": list(store.values()),
        "items": dict(store.items()),
        "find": view.find(1),
        "count": view.count(1),
        "range": view.range(0, 2),
        "unique get": store.by_value.get(2),
    }


def test_a_block_sees_every_write_acknowledged_before_it_began(store: Ints, other: Ints) -> None:
    """Another instance's writes, acknowledged before the block, are seen by every kind of
    read inside it, the first one included."""
    store["a"] = 1
    before = reads(store)
    other["a"] = 3
    other["b"] = 2
    with store.reading():
        inside = reads(store)
    assert inside != before
    assert inside == reads(store)  # what a read outside a block sees
    assert inside["items"] == {"a": 3, "b": 2}
    assert inside["find"] == [("a", 3)]


def test_reads_inside_a_block_look_at_the_log_only_as_it_begins(store: Ints, other: Ints) -> None:
    """A write another instance acknowledges during the block is not looked for by the
    block's reads; the first read after the block sees it."""
    store["a"] = 1
    with store.reading():
        assert store["a"] == 1
        other["a"] = 3
        other["b"] = 2
        assert reads(store)["items"] == {"a": 1}
        assert store.by_parity.find(1) == [("a", 1)]
    assert store.get("a") == 3
    assert dict(store.items()) == {"a": 3, "b": 2}


def test_writes_inside_a_block_are_seen_and_catch_up_as_usual(
    store: Ints, other: Ints, where: Where
) -> None:
    """A write inside the block decides on the newest state (``modify`` sees another
    instance's value, written during the block) and the block's reads then see it."""
    store["n"] = 1
    with store.reading():
        other["n"] = 10
        assert store["n"] == 1
        assert store.modify("n", lambda value: value + 1) == 11
        assert store["n"] == 11
        store["mine"] = 5
        assert store.get("mine") == 5
    assert other["n"] == 11
    with Ints.open(where, shared=True) as reopened:
        assert dict(reopened.items()) == {"n": 11, "mine": 5}


def test_a_block_on_any_store_reads_its_own_writes(store: Ints) -> None:
    """On every kind of store, exclusive included, the block's reads see this instance's
    writes, made before and inside it, and a transaction inside it commits."""
    store["a"] = 1
    with store.reading():
        assert store["a"] == 1
        store["b"] = 2
        with store.transaction() as txn:
            txn["c"] = txn["b"] + 1
        assert dict(store.items()) == {"a": 1, "b": 2, "c": 3}
    assert store._core.readers == {}


def test_a_nested_block_looks_again_as_it_begins(store: Ints, other: Ints) -> None:
    """An inner block sees what was acknowledged before it began; leaving it, the outer
    block's reads still do not look; leaving that, reads look again."""
    store["a"] = 1
    with store.reading():
        other["a"] = 2
        assert store["a"] == 1
        with store.reading():
            assert store["a"] == 2
            other["a"] = 3
            assert store["a"] == 2
        other["a"] = 4
        assert store["a"] == 2
    assert store["a"] == 4


def test_an_exception_inside_a_block_propagates_and_leaves_nothing_behind(
    store: Ints, other: Ints
) -> None:
    """The exception comes out of the block as it was, and the next read looks again."""
    store["a"] = 1
    with pytest.raises(LookupError, match="boom"), store.reading():
        raise LookupError("boom")
    other["a"] = 2
    assert store["a"] == 2
    assert store._core.readers == {}


def test_a_block_is_per_thread(store: Ints, other: Ints) -> None:
    """While this thread is in a block, another thread's reads outside one still look."""
    store["a"] = 1
    seen: list[int] = []
    with store.reading():
        other["a"] = 2
        thread = threading.Thread(target=lambda: seen.append(store["a"]))
        thread.start()
        thread.join()
        assert store._core.readers == {_reading.mark(): 1}
    assert seen == [2]


def test_another_threads_block_does_not_stop_this_threads_reads_looking(
    store: Ints, other: Ints
) -> None:
    """A block open in another thread leaves this thread's reads looking at the log."""
    store["a"] = 1
    entered, leave = threading.Event(), threading.Event()

    def hold_a_block() -> None:
        with store.reading():
            entered.set()
            leave.wait(30)

    thread = threading.Thread(target=hold_a_block)
    thread.start()
    try:
        assert entered.wait(30)
        other["a"] = 2
        assert store["a"] == 2
        assert store.get("a") == 2
    finally:
        leave.set()
        thread.join()
    assert store._core.readers == {}


def test_a_closed_store_refuses_a_block(store: Ints) -> None:
    """Entering a block on a closed store raises StoreClosedError, marking nothing."""
    store.close()
    with pytest.raises(StoreClosedError, match="the store is closed"), store.reading():
        pass
    assert store._core.readers == {}


def test_a_store_closed_inside_a_block_refuses_the_reads_after(store: Ints) -> None:
    """Closing the store inside a block: the reads after raise, and the block ends cleanly."""
    store["a"] = 1
    with store.reading():
        store.close()
        with pytest.raises(StoreClosedError, match="the store is closed"):
            store.get("a")
        with pytest.raises(StoreClosedError, match="the store is closed"):
            len(store)
    assert store._core.readers == {}


def test_a_block_object_is_entered_once(store: Ints) -> None:
    """Entering one ``reading()`` object twice raises RuntimeError: call it again instead."""
    block = store.reading()
    with block:
        pass
    with pytest.raises(RuntimeError, match="one with block"), block:
        pass
    assert store._core.readers == {}


def test_a_block_left_in_another_thread_unmarks_the_thread_that_entered_it(store: Ints) -> None:
    """A block suspended in a generator and ended from another thread lets go of the
    entering thread's mark, not of the other thread's."""

    def inside() -> Generator[None, None, None]:
        with store.reading():
            yield

    block = inside()
    next(block)
    assert store._core.readers == {_reading.mark(): 1}
    closer = threading.Thread(target=block.close)
    closer.start()
    closer.join()
    assert store._core.readers == {}


def test_a_reading_block_inside_a_transaction_reads_the_store(store: Ints) -> None:
    """Inside a transaction, a block's reads see the store (not the staged writes)."""
    store["a"] = 1
    with store.transaction() as txn:
        txn["a"] = 2
        with store.reading():
            assert store["a"] == 1
    assert store["a"] == 2


def test_a_read_only_follower_looks_once_per_block(log_path: Path) -> None:
    """A read-only store's block sees the shared writers' writes made before it, and
    after it what they wrote during it."""
    with Ints.open(log_path, shared=True) as writer:
        writer["a"] = 1
        with Ints.open(log_path, readonly=True) as follower:
            writer["a"] = 2
            with follower.reading():
                assert follower["a"] == 2
                writer["a"] = 3
                assert follower["a"] == 2
                assert dict(follower.items()) == {"a": 2}
            assert follower["a"] == 3


def test_writes_that_read_the_store_decide_on_the_newest_state(store: Ints, other: Ints) -> None:
    """Inside a block, ``setdefault`` returns the value another instance wrote during it,
    and ``popitem`` removes the entry that is last now."""
    store["a"] = 1
    with store.reading():
        other["b"] = 2
        other["c"] = 3
        assert store.popitem() == ("c", 3)
    with store.reading():
        other["d"] = 4
        assert store.setdefault("d", 40) == 4
    assert dict(other.items()) == {"a": 1, "b": 2, "d": 4}


def test_a_block_entered_inside_a_write_does_not_catch_up_midway(
    store: Ints, other: Ints, kind: str
) -> None:
    """A block that ``modify``'s function enters does not catch up in the middle of the
    write: the write finds the log grew, catches up and runs the function again, on the
    newest value (on a file the writer lock keeps the other writer out meanwhile)."""
    if kind != "postgres":
        pytest.skip("on a file the write holds the writer lock: no other write can land")
    store["n"] = 1
    runs: list[int] = []

    def bump(value: int) -> int:
        if not runs:
            other["n"] = 10
        runs.append(value)
        with store.reading():
            assert store["n"] == value
        return value + 1

    assert store.modify("n", bump) == 11
    assert runs == [1, 10]
    assert other["n"] == 11


# -- attacks: other writers, compaction, transactions, threads ---------------------------------


def test_writes_inside_a_block_catch_up_before_they_decide(store: Ints, other: Ints) -> None:
    """``modify``, ``pop`` and a unique index's check, inside a block, decide on what
    another instance wrote during it, not on the state the block began with."""
    store["n"] = 1
    with store.reading():
        other["n"] = 10
        other["gone"] = 5
        other["x"] = 7
        assert store.modify("n", lambda value: value + 1) == 11
        assert store.pop("gone") == 5
        del other["x"]
        assert store.pop("x", None) is None
        other["y"] = 8
        with pytest.raises(ValueError, match="8"):
            store["z"] = 8  # the unique index holds 8 for "y" now
    assert dict(other.items()) == {"n": 11, "y": 8}


def test_a_block_over_another_instances_compactions_reads_then_catches_up(
    store: Ints, other: Ints
) -> None:
    """Another instance compacts (twice) while a block is open: reads inside keep the
    state the block began with, and the reads after the block follow the new log."""
    store["a"] = 1
    store["b"] = 2
    with store.reading():
        for round_ in range(2):
            other["a"] = 10 + round_
            del other["b"]
            other["b"] = 20 + round_
            other.compact()
        assert store["a"] == 1
        assert dict(store.items()) == {"a": 1, "b": 2}
    assert dict(store.items()) == {"a": 11, "b": 21}
    store["c"] = 3
    assert dict(other.items()) == {"a": 11, "b": 21, "c": 3}


def test_a_transaction_inside_a_block_catches_up_first(store: Ints, other: Ints) -> None:
    """A transaction begun inside a block sees, and keeps, what another instance wrote
    after the block began."""
    store["n"] = 1
    with store.reading():
        other["n"] = 5
        with store.transaction() as txn:
            txn["n"] = txn["n"] + 1
    assert other["n"] == 6


def test_a_block_left_twice_unmarks_once(store: Ints) -> None:
    """``__exit__`` called again (by hand) does not let go of an enclosing block's mark."""
    with store.reading():
        block = store.reading()
        block.__enter__()
        block.__exit__(None, None, None)
        block.__exit__(None, None, None)
        assert store._core.readers == {_reading.mark(): 1}
    assert store._core.readers == {}


def test_a_block_spanning_close_and_reopen_leaves_the_new_store_looking(
    store: Ints, where: Where, kind: str
) -> None:
    """A block open over ``close()`` and a reopen: the new store's reads are not marked."""
    with store.reading():
        store.close()
        with Ints.open(where, shared=kind == "shared") as again:
            assert again._core.readers == {}
    assert store._core.readers == {}


def test_a_generator_suspended_inside_a_block_keeps_its_thread_reading_inside(
    store: Ints, other: Ints
) -> None:
    """README: a ``yield`` inside a block leaves the thread that entered it reading inside
    the block until the generator resumes past it or is closed."""
    store["a"] = 1

    def rows() -> Generator[int, None, None]:
        with store.reading():
            yield store["a"]

    suspended = rows()
    assert next(suspended) == 1
    other["a"] = 2
    assert store["a"] == 1  # inside the suspended block: no look
    suspended.close()
    assert store["a"] == 2


def test_a_dead_threads_mark_does_not_pass_to_a_thread_reusing_its_ident(store: Ints) -> None:
    """A thread that ends inside a block (a generator suspended in it, kept alive): a new
    thread that the system gives the same ident is not inside that block."""

    def rows() -> Generator[None, None, None]:
        with store.reading():
            yield

    kept: list[Generator[None, None, None]] = []
    idents: list[int] = []

    def enter_and_end() -> None:
        kept.append(rows())
        next(kept[0])
        idents.append(threading.get_ident())

    thread = threading.Thread(target=enter_and_end)
    thread.start()
    thread.join()
    marked: list[bool] = []

    def look_if_reused() -> None:
        if threading.get_ident() == idents[0]:
            marked.append(_reading.inside(store._core.readers))

    for _ in range(200):
        reuser = threading.Thread(target=look_if_reused)
        reuser.start()
        reuser.join()
        if marked:
            break
    kept[0].close()
    if not marked:
        pytest.skip("the system gave no new thread the dead thread's ident")
    assert marked == [False]
