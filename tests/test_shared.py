"""Shared mode: several processes read and write one log (README, "Several processes").

The other processes are ``tests/shared_child.py``; they report acknowledged writes on
their stdout.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.shared_child import COUNTER, Twins, apply, operations
from typedstore import Collection, Database, StoreConfig, StoreLockedError, TypedStore
from typedstore._codec import Codec
from typedstore._follow import Following

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class Child:
    """A ``tests.shared_child`` process, its output lines gathered by a thread."""

    def __init__(self, path: Path, *args: str | int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.shared_child", str(args[0]), str(path)]
            + [str(arg) for arg in args[1:]],
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 60) -> list[str]:
        """Wait until the child printed ``count`` lines (or ended); return its lines."""
        with self._changed:
            self._changed.wait_for(
                lambda: len(self.lines) >= count or "<eof>" in self.lines, timeout
            )
            return list(self.lines)

    def ask(self, line: str = "") -> str:
        """Send ``line`` and return the next line the child prints."""
        seen = len(self.lines)
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.wait_for(seen + 1)[seen]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.end()

    def end(self) -> int:
        """Close stdin, wait for the exit and return its status."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        status = self.process.wait(timeout=120)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return status


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Children a test starts, killed if still running when it ends."""
    started: list[Child] = []
    yield started
    for child in started:
        if child.process.poll() is None:
            child.kill()


def start(children: list[Child], path: Path, *args: str | int) -> Child:
    child = Child(path, *args)
    children.append(child)
    return child


def fresh(path: Path) -> dict[str, int]:
    """Return the log's entries as a new shared open reads them."""
    with TypedStore.open(path, str, int, shared=True) as store:
        return dict(store.items())


class TestOpening:
    def test_exclusive_open_beside_a_shared_one_is_refused(self, log_path: Path) -> None:
        """A default open of a log a shared store holds raises StoreLockedError."""
        with (
            TypedStore.open(log_path, str, int, shared=True),
            pytest.raises(StoreLockedError, match="shared mode"),
        ):
            TypedStore.open(log_path, str, int)

    def test_shared_open_beside_an_exclusive_one_is_refused(self, log_path: Path) -> None:
        """A shared open of a log an exclusive store holds raises StoreLockedError."""
        with (
            TypedStore.open(log_path, str, int),
            pytest.raises(StoreLockedError, match="exclusively"),
        ):
            TypedStore.open(log_path, str, int, shared=True)

    def test_shared_open_refuses_buffered_writes(self, log_path: Path) -> None:
        """shared=True with write_through=False raises ValueError, creating nothing."""
        config = StoreConfig(write_through=False)
        with pytest.raises(ValueError, match="write_through"):
            TypedStore.open(log_path, str, int, shared=True, config=config)
        assert not log_path.exists()

    def test_two_shared_handles_see_each_others_writes(self, log_path: Path) -> None:
        """A write through one shared handle is read through another at once."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as first,
            TypedStore.open(log_path, str, int, shared=True) as second,
        ):
            first["a"] = 1
            assert second.get("a") == 1

    def test_readonly_store_follows_shared_writers(self, log_path: Path) -> None:
        """A readonly=True store sees writes made after it opened, compactions included."""
        with TypedStore.open(log_path, str, int, shared=True) as writer:
            writer["a"] = 1
            with TypedStore.open(log_path, str, int, readonly=True) as reader:
                writer["b"] = 2
                writer.compact()
                writer["c"] = 3
                assert dict(reader.items()) == {"a": 1, "b": 2, "c": 3}


class TestCatchingUp:
    def test_handle_follows_a_compaction_without_replaying(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After another handle compacts, a handle moves to the new log and reads on."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as first,
            TypedStore.open(log_path, str, int, shared=True) as second,
        ):
            first["a"] = 1
            assert second.get("a") == 1
            first.compact()
            first["b"] = 2
            replays: list[Path] = []
            monkeypatch.setattr("typedstore._core.replay", lambda path, *args: replays.append(path))
            assert dict(second.items()) == {"a": 1, "b": 2}
            assert replays == []

    def test_partial_record_of_a_killed_writer_is_not_damage(self, log_path: Path) -> None:
        """Half a record at the log's end is not read, then cut by the next writer."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as first,
            TypedStore.open(log_path, str, int, shared=True) as second,
        ):
            first["a"] = 1
            size = log_path.stat().st_size
            first["torn"] = 2
            whole = log_path.read_bytes()
            with open(log_path, "r+b") as file:  # what a writer killed mid-append leaves
                file.truncate(size + (len(whole) - size) // 2)
            assert dict(second.items()) == {"a": 1}
            second["b"] = 3
        assert fresh(log_path) == {"a": 1, "b": 3}

    def test_catalog_change_by_another_handle_is_followed(self, log_path: Path) -> None:
        """A collection another handle adds to a database does not stop the first reading on."""
        with Twins.open(log_path, shared=True) as first:
            first.left["a"] = 1
            with Triplets.open(log_path, shared=True) as second:
                second.right["b"] = 2
                assert first.right.get("b") == 2
                first.left["c"] = 3
                assert dict(second.left.items()) == {"a": 1, "c": 3}

    def test_new_collections_of_two_handles_both_stay(self, log_path: Path) -> None:
        """Two handles each declaring a new collection before writing keep both."""
        with (
            Database.open(log_path, shared=True) as first,
            Database.open(log_path, shared=True) as second,
        ):
            left = first.collection("left", str, int)
            right = second.collection("right", str, int)
            left["a"] = 1
            right["b"] = 2
            assert first.collection_names() == second.collection_names() == ["left", "right"]
        with Database.open(log_path, shared=True) as again:
            assert dict(again.collection("left", str, int).items()) == {"a": 1}
            assert dict(again.collection("right", str, int).items()) == {"b": 2}

    def test_new_collection_declared_in_a_transaction(self, log_path: Path) -> None:
        """A collection a transaction declares (its writer lock held) enters the catalog at
        once, and the transaction writes to it."""
        with (
            Database.open(log_path, shared=True) as first,
            Database.open(log_path, shared=True) as second,
        ):
            with first.transaction() as tx:
                tx.collection("new", str, int)["a"] = 1
            assert second.collection_names() == ["new"]
            assert dict(second.collection("new", str, int).items()) == {"a": 1}


class Triplets(Twins):
    """Twins with one more collection."""

    extra: Collection[str, int]


class TestProcesses:
    @pytest.mark.slow
    def test_four_processes_modify_one_counter_exactly(
        self, log_path: Path, children: list[Child]
    ) -> None:
        """4 processes each modify one counter 1,000 times: it ends at exactly 4,000."""
        started = [start(children, log_path, "count", 1000) for _ in range(4)]
        assert [child.end() for child in started] == [0, 0, 0, 0]
        assert fresh(log_path) == {COUNTER: 4000}

    def test_collection_declared_in_another_process_enters_the_catalog_at_once(
        self, log_path: Path, children: list[Child]
    ) -> None:
        """A collection a process declares is in the catalog before it writes: a catalog
        change another process makes meanwhile keeps it."""
        with Database.open(log_path, shared=True) as database:
            declarer = start(children, log_path, "declare", "theirs")
            assert declarer.wait_for(1)[0] == "declared"
            mine = database.collection("mine", str, int)
            mine["k"] = 1
            assert declarer.ask() == "written"
            assert declarer.end() == 0
            assert database.collection_names() == ["theirs", "mine"]
        with Database.open(log_path, shared=True) as again:
            assert dict(again.collection("theirs", str, int).items()) == {"k": 2}
            assert dict(again.collection("mine", str, int).items()) == {"k": 1}

    def test_reader_sees_a_write_acknowledged_before(
        self, log_path: Path, children: list[Child]
    ) -> None:
        """A shared reader in another process reads each write made before it is asked."""
        with TypedStore.open(log_path, str, int, shared=True) as store:
            reader = start(children, log_path, "read", "k")
            assert reader.wait_for(1)[0] == "ready"
            for value in range(20):
                store["k"] = value
                assert reader.ask() == str(value)

    def test_readonly_reader_sees_a_write_acknowledged_before(
        self, log_path: Path, children: list[Child]
    ) -> None:
        """A readonly=True reader in another process reads each write made before it is asked."""
        with TypedStore.open(log_path, str, int, shared=True) as store:
            store["k"] = -1
            reader = start(children, log_path, "read-only", "k")
            assert reader.wait_for(1)[0] == "ready"
            for value in range(20):
                store["k"] = value
                if value % 5 == 0:
                    store.compact()
                assert reader.ask() == str(value)

    @pytest.mark.slow
    def test_transaction_across_collections_is_seen_whole(
        self, log_path: Path, children: list[Child]
    ) -> None:
        """Another process never sees one collection of a transaction's writes without the other."""
        with Twins.open(log_path, shared=True) as twins:
            watcher = start(children, log_path, "pairs", 300)
            assert watcher.wait_for(1)[0] == "ready"
            for value in range(301):
                with twins.transaction() as tx:
                    tx.left["k"] = value
                    tx.right["k"] = value
            assert watcher.wait_for(2)[1] == "ok"

    @pytest.mark.slow
    def test_compacting_process_beside_writers_keeps_every_write(
        self, log_path: Path, children: list[Child]
    ) -> None:
        """One process compacts again and again while others insert: every insert stays."""
        writers = [start(children, log_path, "insert", f"w{i}", 300) for i in range(3)]
        compactor = start(children, log_path, "compact", 100)
        with TypedStore.open(log_path, str, int, shared=True) as reader:
            while any(child.process.poll() is None for child in writers):
                assert all(value == int(key.split(":")[1]) for key, value in reader.items())
            assert [child.end() for child in [*writers, compactor]] == [0, 0, 0, 0]
            expected = {f"w{i}:{n}": n for i in range(3) for n in range(300)}
            assert dict(reader.items()) == expected
        assert fresh(log_path) == expected


@pytest.mark.slow
def test_compactors_killed_at_random_lose_no_write(log_path: Path, children: list[Child]) -> None:
    """Compacting processes SIGKILLed at random moments, beside writers, leave every
    acknowledged write in the log, and the writers go on to the end."""
    rng = random.Random(11)
    writers = [start(children, log_path, "insert", f"w{i}", 300) for i in range(2)]
    for _ in range(4):
        compactor = start(children, log_path, "compact", 10_000)
        writers[0].wait_for(len(writers[0].lines) + rng.randrange(5, 40))
        compactor.kill()
    assert [child.end() for child in writers] == [0, 0]
    assert fresh(log_path) == {f"w{i}:{n}": n for i in range(2) for n in range(300)}


KILLS = 8
"""SIGKILLs the chaos test deals."""
OPERATIONS = 150


@pytest.mark.slow
def test_processes_killed_at_random_lose_no_acknowledged_write(
    log_path: Path, children: list[Child]
) -> None:
    """With processes SIGKILLed at random among 4, no acknowledged write is lost or doubled,
    and every survivor's view equals a fresh open's."""
    rng = random.Random(13)
    running: dict[str, Child] = {}
    finished: dict[str, Child] = {}
    names = (f"c{i}" for i in range(100))
    killed: list[tuple[str, Child]] = []
    while len(killed) < KILLS or len(running) < 4:
        while len(running) < 4:
            name = next(names)
            running[name] = start(children, log_path, "chaos", name, 1, OPERATIONS)
        name = rng.choice(sorted(running))
        victim = running.pop(name)
        victim.wait_for(rng.randrange(2, 2 * OPERATIONS))
        if len(killed) < KILLS and "done" not in victim.lines:
            victim.kill()
            killed.append((name, victim))
        else:
            finished[name] = victim
            if len(killed) >= KILLS:
                break
    finished.update(running)
    for child in finished.values():
        assert child.wait_for(OPERATIONS * 2 + 1, timeout=120)[-1] == "done"
    state = fresh(log_path)
    increments = in_flight_increments = 0
    for name, child in [*finished.items(), *killed]:
        ops = operations(name, 1, OPERATIONS)
        acked = sum(line.startswith("ack") for line in child.lines)
        model: dict[str, int] = {}
        for index in range(acked):
            apply(model, index, ops[index])
        increments += model.pop(COUNTER, 0)
        mine = {key: value for key, value in state.items() if key.startswith(f"{name}:")}
        if f"try {acked}" in child.lines:  # killed in the middle: either state will do
            in_flight_increments += ops[acked][0] == "increment"
            if mine != model:
                apply(model, acked, ops[acked])
                model.pop(COUNTER, None)
        assert mine == model, name
    assert increments <= state.get(COUNTER, 0) <= increments + in_flight_increments
    for child in finished.values():
        assert json.loads(child.ask()) == state
        assert child.end() == 0
    print(f"survived {len(killed)} SIGKILLs")


class TwoHandles(RuleBasedStateMachine):
    """Two shared handles on one log in this process (the locks allow it: each open has
    its own lock descriptors), interleaving writes, against a plain dict."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.folder = tempfile.TemporaryDirectory()
        path = Path(self.folder.name) / "s.log"
        self.handles = [TypedStore.open(path, str, int, shared=True) for _ in range(2)]
        self.model: dict[str, int] = {}

    keys = st.sampled_from(["a", "b", "c", "d"])
    which = st.integers(0, 1)

    @rule(which=which, key=keys, value=st.integers(-5, 5))
    def insert(self, which: int, key: str, value: int) -> None:
        self.handles[which][key] = value
        self.model[key] = value

    @rule(which=which, key=keys)
    def remove(self, which: int, key: str) -> None:
        assert self.handles[which].remove(key) == self.model.pop(key, None)

    @rule(which=which, key=keys)
    def modify(self, which: int, key: str) -> None:
        self.handles[which].modify(key, lambda value: value * 2 + 1, default=0)
        self.model[key] = self.model.get(key, 0) * 2 + 1

    @rule(which=which, first=keys, second=keys)
    def transaction(self, which: int, first: str, second: str) -> None:
        with self.handles[which].transaction() as txn:
            txn[first] = txn.get(second, 7)
            txn.remove(second)
        self.model[first] = self.model.get(second, 7)
        self.model.pop(second, None)

    @rule(which=which)
    def compact(self, which: int) -> None:
        self.handles[which].compact()

    @invariant()
    def both_handles_match_the_model(self) -> None:
        for handle in self.handles:
            assert dict(handle.items()) == self.model

    def teardown(self) -> None:
        for handle in self.handles:
            handle.close()
        self.folder.cleanup()


TwoHandles.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
TestTwoHandles = TwoHandles.TestCase


class TestAttacks:
    """What could break catching up: a compaction in the middle of one, a compactor
    stopped half-way, a catch-up that raises, a writer that waits for the lock."""

    def test_compaction_in_the_middle_of_a_catch_up_is_followed(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A handle whose catch-up (without the writer lock) races a compaction and a write
        by another reads every write, then follows the new log without replaying it."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as first,
            TypedStore.open(log_path, str, int, shared=True) as second,
        ):
            first["a"] = 1
            assert second.get("a") == 1
            first["b"] = 2
            real = Following.begin

            def racing(state: Following[Any, Any], *, keeps_values: bool) -> None:
                monkeypatch.setattr(Following, "begin", real)
                first.compact()
                first["c"] = 3
                real(state, keeps_values=keeps_values)

            monkeypatch.setattr(Following, "begin", racing)
            assert second.get("b") == 2
            replays: list[Path] = []
            monkeypatch.setattr("typedstore._core.replay", lambda path, *args: replays.append(path))
            assert dict(second.items()) == {"a": 1, "b": 2, "c": 3}
            second["d"] = 4
            assert replays == []
            assert dict(first.items()) == {"a": 1, "b": 2, "c": 3, "d": 4}
        assert fresh(log_path) == {"a": 1, "b": 2, "c": 3, "d": 4}

    def test_compactor_stopped_before_its_rename_leaves_a_log_others_go_on_with(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A compaction that stops after recording its move and growing the old log by a
        byte, before the rename (as when its process is killed), leaves the old log in
        place: the other handles read it, and the next writer cuts the byte."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as first,
            TypedStore.open(log_path, str, int, shared=True) as second,
        ):
            first["a"] = 1
            assert second.get("a") == 1
            size = log_path.stat().st_size

            def killed(*args: object) -> None:
                raise OSError("killed before the rename")

            with monkeypatch.context() as patch:
                patch.setattr("typedstore._fs.os.replace", killed)
                with pytest.raises(OSError, match="killed"):
                    first.compact()
            assert log_path.stat().st_size == size + 1
            assert dict(second.items()) == {"a": 1}
            second["b"] = 2
            first["c"] = 3
            assert dict(second.items()) == dict(first.items()) == {"a": 1, "b": 2, "c": 3}
        assert fresh(log_path) == {"a": 1, "b": 2, "c": 3}

    def test_writer_waiting_for_the_lock_catches_up_under_it_too(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A write that finds the writer lock taken catches up while it waits, then again
        under the lock: a modify sees a write made between the two."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as first,
            TypedStore.open(log_path, str, int, shared=True) as second,
        ):
            first["n"] = 1
            assert second.get("n") == 1
            engine = second._core._engine
            assert engine is not None
            start_writing = engine.start_writing

            def taken() -> bool:  # another writer holds the lock, and writes
                first["n"] = 10
                return False

            def wait_then_take() -> None:  # it writes again before letting go
                first["n"] = 20
                start_writing()

            monkeypatch.setattr(engine, "try_start_writing", taken)
            monkeypatch.setattr(engine, "start_writing", wait_then_take)
            second.modify("n", lambda value: value + 1)
            monkeypatch.undo()
            assert first.get("n") == second.get("n") == 21
        assert fresh(log_path) == {"n": 21}

    def test_catch_up_that_raises_midway_is_finished_by_the_next(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A catch-up interrupted after applying part of the records (an exception, a
        Ctrl-C) leaves a view the next operation completes, then writes on."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as first,
            TypedStore.open(log_path, str, int, shared=True) as second,
        ):
            first["a"] = 1
            assert second.get("a") == 1
            del first["a"]
            first["b"] = 2
            first["a"] = 3
            real = Following._put

            def interrupted(state: Following[Any, Any], key: Any, *args: Any) -> None:
                monkeypatch.setattr(Following, "_put", real)
                raise KeyboardInterrupt

            monkeypatch.setattr(Following, "_put", interrupted)
            with pytest.raises(KeyboardInterrupt):
                second.get("b")
            assert list(second.items()) == [("b", 2), ("a", 3)]
            second["c"] = 4
            assert list(first.items()) == [("b", 2), ("a", 3), ("c", 4)]
        assert fresh(log_path) == {"b": 2, "a": 3, "c": 4}

    def test_value_deferred_in_a_catch_up_is_settled(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A value a catch-up could not validate as it read it (left for the end, as replay
        does) is validated then, in place, the entries' order kept."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as first,
            TypedStore.open(log_path, str, int, shared=True) as second,
        ):
            first["a"] = 1
            assert second.get("a") == 1
            first["b"] = 2
            first["a"] = 3
            real = Codec.validate_value

            def once(codec: Codec[Any, Any], data: object) -> object:
                monkeypatch.setattr(Codec, "validate_value", real)
                raise ValueError("not now")

            monkeypatch.setattr(Codec, "validate_value", once)
            assert list(second.items()) == [("a", 3), ("b", 2)]
