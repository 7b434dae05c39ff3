"""Ctrl-C at every step of taking a store for a transaction: the lock is never left held.

A KeyboardInterrupt arrives between two bytecodes of whatever Python code runs when
the user presses Ctrl-C. These tests raise one at each bytecode of entering (and
leaving) a transaction block in turn, from a trace function with opcode events on:
every point a real signal could reach, and more. After each, another thread must find
the store's lock free and write, and this thread must be able to start a transaction
again, with memory equal to what a reopen replays.
"""

from __future__ import annotations

import _thread
import contextlib
import dis
import functools
import gc
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, ClassVar

import pytest

from typedstore import Collection, Database, TypedStore, _fs, _log
from typedstore._core import Core

LIMIT = 20_000
"""More bytecodes than entering and leaving a transaction runs: a loop that never
finishes fails rather than hangs."""


class Ints(TypedStore[str, int]):
    """Immutable values."""


class Pair(Database):
    """Two collections, for database transactions."""

    left: Collection[str, int]
    right: Collection[str, int]


LANDED: list[str] = []
"""Where the last injected KeyboardInterrupt landed, for failure messages."""


class _Injected(KeyboardInterrupt):
    """The KeyboardInterrupt a test raised, told apart from a real Ctrl-C."""


def _handler(entries: list[Any], offset: int) -> tuple[int, int] | None:
    """Return the exception handler (target, depth) covering ``offset``, if any."""
    for entry in entries:
        if entry.start <= offset < entry.end:
            return entry.target, entry.depth
    return None


@functools.cache
def _signal_points(code: CodeType) -> frozenset[int]:
    """Return the offsets in ``code`` where CPython can run a signal handler.

    The interpreter runs pending handlers only where it checks its "eval breaker": at
    a function's (or resumed generator's) RESUME, at a backward jump, and as a call
    returns. Raising before the instruction after a call stands for the last one when
    both are under the same exception handler; where they are not (a call just
    before a ``try``), the call's own handler applies, which this cannot reproduce,
    so that point counts as the call's: the instruction after is left out and the
    injection lands at the call's end through the next RESUME or call instead.
    """
    bytecode = dis.Bytecode(code)
    entries = list(bytecode.exception_entries)  # type: ignore[attr-defined]  # not in typeshed
    points = set()
    previous = None
    for instruction in bytecode:
        if instruction.opname in ("RESUME", "JUMP_BACKWARD") or (
            previous is not None
            and previous.opname.startswith("CALL")  # not PRECALL, which only prepares one
            and _handler(entries, previous.offset) == _handler(entries, instruction.offset)
        ):
            points.add(instruction.offset)
        previous = instruction
    return frozenset(points)


@contextmanager
def _interrupt_at(step: int, hits: list[int]) -> Iterator[None]:
    """Raise ``_Injected`` at the ``step``-th point (0-based) where a signal handler can
    run in this thread's Python code inside the block; ``hits[0]`` counts the points.

    Code the cycle collector runs (finalizers of garbage, and the gc callbacks others
    registered, as Hypothesis does) is left out: a collection falls wherever allocations
    put it, and a signal handled there is lost, not the operation's.
    """
    collecting = [False]

    def begin(phase: str, info: dict[str, int]) -> None:  # the first callback
        if phase == "start":
            collecting[0] = True

    def end(phase: str, info: dict[str, int]) -> None:  # the last callback
        if phase == "stop":
            collecting[0] = False

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if collecting[0] or frame.f_code in (begin.__code__, end.__code__):
            return None
        frame.f_trace_opcodes = True
        if event == "opcode" and frame.f_lasti in _signal_points(frame.f_code):
            hits[0] += 1
            if hits[0] - 1 == step:
                code = frame.f_code
                LANDED[:] = [f"{code.co_filename}:{frame.f_lineno} {code.co_name} @{frame.f_lasti}"]
                raise _Injected  # a trace function's exception also unsets it
        return tracer

    hits[0] = 0
    gc.callbacks.insert(0, begin)
    gc.callbacks.append(end)
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(None)
        gc.callbacks.remove(begin)
        gc.callbacks.remove(end)


class _Cyclic:
    """Garbage only the cycle collector frees, whose finalizer makes a call: a point where
    a signal could land."""

    finished: ClassVar[list[int]] = []

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        self.finished.append(len(self.finished))


def test_an_injection_never_lands_in_what_the_collector_runs() -> None:
    """A collection falls wherever allocations put it: were its finalizers or the gc
    callbacks others registered (Hypothesis has one) counted, an injection landing in one
    (a Ctrl-C lost there, not the operation's) would fail a test at random, as the tests
    run before in the process left garbage or a callback or not."""
    phases: list[str] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        phases.append(str(phase))  # a call: a point where a signal could land

    _Cyclic.finished.clear()
    hits = [0]
    gc.callbacks.append(callback)
    try:
        for step in range(6):
            _Cyclic()
            with contextlib.suppress(_Injected), _interrupt_at(step, hits):
                gc.collect()
    finally:
        gc.callbacks.remove(callback)
    assert _Cyclic.finished == list(range(6))
    assert phases == ["start", "stop"] * 6
    assert hits == [0]


def _lock_is_free_for_other_threads(core: Core) -> bool:
    """Whether a thread other than this one can take ``core``'s lock at once."""
    took: list[bool] = []

    def take() -> None:
        lock = core.lock
        got = _thread.RLock.acquire(lock, False)  # the plain acquire: no catching up
        if got:
            lock.release()
        took.append(got)

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return took == [True]


def _write_from_another_thread(write: Callable[[], None]) -> None:
    """Run ``write`` in another thread (the lock was found free, so it cannot block)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            write()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert errors == []


def _every_step(attempt: Callable[[int, list[int]], None]) -> int:
    """Run ``attempt(step, hits)`` for step 0, 1, ... until one runs through uninterrupted;
    return how many steps were interrupted."""
    hits = [0]
    for step in range(LIMIT):
        attempt(step, hits)
        if hits[0] <= step:  # fewer bytecodes than step: nothing was raised
            return step
    raise AssertionError(f"a transaction ran more than {LIMIT} bytecodes")


def _in_a_transaction(store: Ints, step: int) -> None:
    with store.transaction() as txn:
        txn["t"] = step


def _single_write(store: Ints, step: int) -> None:
    store["t"] = step


def _modify(store: Ints, step: int) -> None:
    store.modify("t", lambda value: value + 1, default=step)


def _read(store: Ints, step: int) -> None:
    store.get("t")


OPERATIONS = [_in_a_transaction, _single_write, _modify, _read]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.__name__.strip("_"))
@pytest.mark.parametrize("shared", [False, True], ids=["exclusive", "shared"])
def test_ctrl_c_at_any_point_of_an_operation_leaves_the_store_usable(
    log_path: Path, shared: bool, operation: Callable[[Ints, int], None]
) -> None:
    """Interrupted wherever a signal can land, an operation leaves the lock (and in shared
    mode the writer lock) free, and memory equal to what a reopen replays."""
    store = Ints.open(log_path, shared=shared)
    core = store._core

    def attempt(step: int, hits: list[int]) -> None:
        try:
            with _interrupt_at(step, hits):
                operation(store, step)
        except _Injected:
            pass
        assert core._txn_thread is None
        assert core._engine is None or not core._engine.is_writing, f"writer held after {LANDED}"
        assert _lock_is_free_for_other_threads(core), f"lock held after {LANDED}"
        _write_from_another_thread(lambda: store.__setitem__("other", step))
        with store.transaction() as txn:  # this thread too can begin again
            txn["again"] = step

    steps = _every_step(attempt)
    assert steps >= 3  # the trace saw the operation's code
    items = dict(store.items())
    store.close()
    with Ints.open(log_path) as reopened:
        assert dict(reopened.items()) == items


@pytest.mark.parametrize("shared", [False, True], ids=["exclusive", "shared"])
def test_ctrl_c_at_any_point_of_a_database_transaction_leaves_it_usable(
    log_path: Path, shared: bool
) -> None:
    """Interrupted wherever a signal can land in a database transaction, the lock ends up free."""
    db = Pair.open(log_path, shared=shared)
    core = db._core

    def attempt(step: int, hits: list[int]) -> None:
        try:
            with _interrupt_at(step, hits), db.transaction() as tx:
                tx.left["a"] = step
                tx.right["b"] = step
        except _Injected:
            pass
        assert core._txn_thread is None
        assert core._engine is None or not core._engine.is_writing, f"writer held after {LANDED}"
        assert _lock_is_free_for_other_threads(core), f"lock held after {LANDED}"
        _write_from_another_thread(lambda: db.left.__setitem__("other", step))
        with db.transaction() as tx:
            tx.right["again"] = step
        assert db.left.get("a") == db.right.get("b")  # all or nothing

    steps = _every_step(attempt)
    assert steps > 20
    left, right = dict(db.left.items()), dict(db.right.items())
    db.close()
    with Pair.open(log_path) as reopened:
        assert (dict(reopened.left.items()), dict(reopened.right.items())) == (left, right)


@pytest.mark.parametrize("shared", [False, True], ids=["exclusive", "shared"])
def test_ctrl_c_with_the_traceback_kept_still_leaves_the_lock_free(
    log_path: Path, shared: bool
) -> None:
    """A kept traceback (the REPL keeps the last one) does not keep the lock held."""
    store = Ints.open(log_path, shared=shared)
    kept: list[BaseException] = []

    def attempt(step: int, hits: list[int]) -> None:
        try:
            with _interrupt_at(step, hits), store.transaction() as txn:
                txn["t"] = step
        except _Injected as exc:
            kept.append(exc)  # its traceback keeps every interrupted frame alive
        assert _lock_is_free_for_other_threads(store._core), f"lock held after {LANDED}"

    assert _every_step(attempt) > 20
    assert kept
    store.close()


def _interrupt_as_it_returns(code: CodeType, caller: CodeType) -> Callable[..., Any]:
    """Return a ``sys.settrace`` function raising ``_Injected`` once, as a call of ``code``
    made from ``caller`` returns: a signal handled as that call returns."""
    fired: list[bool] = []

    def local(frame: FrameType, event: str, arg: object) -> Any:
        back = frame.f_back
        if event == "return" and not fired and back is not None and back.f_code is caller:
            fired.append(True)
            raise _Injected
        return local

    return lambda frame, event, arg: local if frame.f_code is code and not fired else None


@pytest.mark.parametrize(
    ("returning", "caller"),
    [
        (_fs.LogFile.append, _log.Log.append_schema),
        (_log.Log._sync, _log.Log.append_schema),
        (Core._write_catalog, Core._declare_collection),
    ],
    ids=["in-the-file", "synced", "written"],
)
@pytest.mark.parametrize("shared", [False, True], ids=["exclusive", "shared"])
def test_ctrl_c_once_a_declarations_schema_record_is_in_the_log(
    log_path: Path, shared: bool, returning: Callable[..., Any], caller: Callable[..., Any]
) -> None:
    """A Ctrl-C once ``collection()`` put the new collection's schema record in the log
    leaves the collection declared, as the log lists it, and later declarations and
    writes reopen. The log used to keep the record uncounted: the collection was taken
    back, and the next schema record repeated its generation, which replay refuses as
    damage (CorruptLogError)."""
    db = Pair.open(log_path, shared=shared)
    db.left["a"] = 1
    sys.settrace(_interrupt_as_it_returns(returning.__code__, caller.__code__))
    try:
        with pytest.raises(_Injected):
            db.collection("new", str, int)
    finally:
        sys.settrace(None)
    assert _lock_is_free_for_other_threads(db._core)
    with Pair.open(log_path, readonly=True) as reader:
        assert reader.collection_names() == db.collection_names() == ["left", "right", "new"]
    db.collection("new", str, int)["k"] = 2
    db.collection("later", str, int)["k"] = 3
    db.left["b"] = 4
    db.close()
    with Pair.open(log_path) as reopened:
        assert reopened.collection_names() == ["left", "right", "new", "later"]
        assert dict(reopened.left.items()) == {"a": 1, "b": 4}
        assert dict(reopened.collection("new", str, int).items()) == {"k": 2}
