"""Shared mode's locks across processes: README's "Several processes", through the file engine.

The children are ``tests/engine_child.py``. One class per promise:

- ``TestOpenLock``: shared opens coexist; shared and exclusive opens refuse each other.
- ``TestWriterLock``: the writer lock serialises read-check-write across processes, and
  outlives compaction.
- ``TestKilledProcess``: SIGKILL releases the locks, and the partial record a killed writer
  leaves is not damage to a reader and is cut by the next writer.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from tests.engine_child import HEADER, append_body, body, catch_up, name_of, open_shared
from typedstore import StoreLockedError, TypedStore, _format
from typedstore._engine import walk_frames
from typedstore._file_engine import FileEngine

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def child(*args: str | Path | int) -> subprocess.Popen[str]:
    """Start ``tests.engine_child`` with ``args``; its stdin stays open until it is closed."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine_child", *map(str, args)],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> int:
    """Close the child's stdin, read its output to the end, and return its exit status."""
    if process.returncode is None:  # not waited for already
        process.communicate(timeout=120)
    for stream in (process.stdin, process.stdout):
        if stream is not None and not stream.closed:
            stream.close()
    return process.returncode


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    """Children started by a test, ended (stdin closed) and reaped when it ends."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        finish(process)


def hold(holders: list[subprocess.Popen[str]], path: Path, mode: str) -> str:
    """Open ``path`` in ``mode`` in a child that keeps it open; return what it reported."""
    process = child("hold", path, mode) if mode != "hold-writer" else child("hold-writer", path)
    holders.append(process)
    assert process.stdout is not None
    return process.stdout.readline().strip()


def records(path: Path) -> list[str]:
    """Return the names of the records in the log at ``path``, failing on anything torn."""
    buf = path.read_bytes()
    frames = walk_frames(buf[len(HEADER) :], len(HEADER))
    assert frames.stop == "end", frames
    return [name_of(item) for _, item in frames.bodies]


def _frames(names: list[str]) -> list[bytes]:
    """Return the frames of records ``names`` written after the header."""
    frames: list[bytes] = []
    position = len(HEADER)
    for name in names:
        frames.append(_format.encode_frame(body(name), position))
        position += len(frames[-1])
    return frames


class TestOpenLock:
    """Shared opens coexist; an exclusive open and a shared one refuse each other at once."""

    def test_two_shared_opens_in_other_processes_coexist(
        self, log_path: Path, holders: list[subprocess.Popen[str]]
    ) -> None:
        """Two processes hold shared opens of one log at once."""
        assert hold(holders, log_path, "shared") == "opened"
        assert hold(holders, log_path, "shared") == "opened"

    def test_shared_open_beside_a_shared_one_in_this_process(
        self, log_path: Path, holders: list[subprocess.Popen[str]]
    ) -> None:
        """A shared open succeeds while another process holds one."""
        assert hold(holders, log_path, "shared") == "opened"
        engine = FileEngine.open(log_path, "shared")
        engine.close()

    def test_shared_open_beside_an_exclusive_store_is_refused(
        self, log_path: Path, holders: list[subprocess.Popen[str]]
    ) -> None:
        """A shared open of a log another process opened exclusively raises StoreLockedError."""
        assert hold(holders, log_path, "exclusive") == "opened"
        with pytest.raises(StoreLockedError, match="holds this log exclusively"):
            FileEngine.open(log_path, "shared")

    def test_exclusive_store_beside_a_shared_open_is_refused(
        self, log_path: Path, holders: list[subprocess.Popen[str]]
    ) -> None:
        """A default TypedStore.open beside another process's shared open is refused."""
        assert hold(holders, log_path, "shared") == "opened"
        with pytest.raises(StoreLockedError, match="stores in shared mode hold this log"):
            TypedStore.open(log_path, str, int)

    def test_exclusive_store_in_a_child_is_refused_beside_a_shared_open(
        self, log_path: Path, holders: list[subprocess.Popen[str]]
    ) -> None:
        """An exclusive open in another process beside a shared open here is refused."""
        engine = FileEngine.open(log_path, "shared")
        try:
            assert hold(holders, log_path, "exclusive").startswith("locked")
        finally:
            engine.close()

    def test_closing_the_shared_opens_lets_an_exclusive_store_in(self, log_path: Path) -> None:
        """Once every shared open is closed, a default TypedStore.open succeeds."""
        first, second = FileEngine.open(log_path, "shared"), FileEngine.open(log_path, "shared")
        first.close()
        second.close()
        with TypedStore.open(log_path, str, int) as store:
            store["a"] = 1
        with TypedStore.open(log_path, str, int, readonly=True) as reader:
            assert reader["a"] == 1


class TestWriterLock:
    """The writer lock lets one process at a time through a read-check-write."""

    @pytest.mark.slow
    def test_four_processes_increment_a_counter_exactly(self, log_path: Path) -> None:
        """4 processes x 1,000 read-increment-writes of a counter in a plain file give 4,000."""
        counter = log_path.with_name("counter")
        counter.write_text("0")
        processes = [child("count", log_path, counter, 1000) for _ in range(4)]
        assert [finish(process) for process in processes] == [0] * 4
        assert counter.read_text() == "4000"

    @pytest.mark.slow
    def test_four_processes_append_every_record_once(self, log_path: Path) -> None:
        """4 processes appending 200 records each leave all 800, each once, none torn."""
        processes = [child("append", log_path, f"p{n}", 200) for n in range(4)]
        assert [finish(process) for process in processes] == [0] * 4
        names = records(log_path)
        assert sorted(names) == sorted(f"p{n}:{i}" for n in range(4) for i in range(200))
        for n in range(4):  # each process's records in the order it appended them
            assert [x for x in names if x.startswith(f"p{n}:")] == [f"p{n}:{i}" for i in range(200)]

    @pytest.mark.slow
    def test_appends_beside_a_compacting_process_keep_every_record(self, log_path: Path) -> None:
        """Records appended by 3 processes while a 4th compacts again and again all survive."""
        engine, _, _ = open_shared(log_path)
        engine.close()
        processes = [child("append", log_path, f"p{n}", 150) for n in range(3)]
        processes.append(child("compact", log_path, 30))
        assert [finish(process) for process in processes] == [0] * 4
        expected = [f"p{n}:{i}" for n in range(3) for i in range(150)]
        assert sorted(records(log_path)) == sorted(expected)

    def test_writer_waits_for_the_lock_held_by_another_process(
        self, log_path: Path, holders: list[subprocess.Popen[str]]
    ) -> None:
        """A writer's append waits while another process holds the writer lock."""
        engine, _, _ = open_shared(log_path)
        assert hold(holders, log_path, "hold-writer") == "opened"
        waiting = child("append", log_path, "late", 1)
        holders.append(waiting)
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=1)
        assert records(log_path) == []
        assert finish(holders.pop(0)) == 0  # the holder lets go of the writer lock
        assert finish(waiting) == 0
        assert records(log_path) == ["late:0"]
        engine.close()

    def test_append_after_another_process_compacted_goes_to_the_new_log(
        self, log_path: Path
    ) -> None:
        """A process appending after another compacted writes to the new log, not the old one."""
        first, seen_first, known_first = open_shared(log_path)
        second, seen_second, known_second = open_shared(log_path)
        known_first = append_body(first, seen_first, known_first, "a")
        with first.writing():
            first.replace([HEADER, *_frames(["a"])], known_first)
        append_body(second, seen_second, known_second, "b")
        assert records(log_path) == ["a", "b"]
        first.close()
        second.close()

    def test_damage_seen_beside_a_writer_is_read_again_once_it_is_done(
        self, log_path: Path, holders: list[subprocess.Popen[str]]
    ) -> None:
        """A shared reader finding an invalid frame waits for the writer lock and reads again."""
        engine, _, known = open_shared(log_path)
        frame = _frames(["a"])[0]
        with log_path.open("ab") as out:  # what a read racing a cut-and-rewrite may see
            out.write(frame[:-1] + bytes([frame[-1] ^ 1]))
        assert hold(holders, log_path, "hold-writer") == "opened"
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(engine.read_frames, known)
            with pytest.raises(FutureTimeout):
                reading.result(timeout=0.5)
            with log_path.open("r+b") as out:  # the writer's rewrite, done under its lock
                out.seek(known)
                out.write(frame)
            finish(holders.pop())
            frames = reading.result(timeout=60)
        assert ([name_of(item) for _, item in frames.bodies], frames.stop) == (["a"], "end")
        engine.close()


class TestKilledProcess:
    """A process killed with SIGKILL leaves no lock held and no damage behind."""

    def test_killed_holder_releases_the_open_and_writer_locks(
        self, log_path: Path, holders: list[subprocess.Popen[str]]
    ) -> None:
        """After a child holding the shared and writer locks is SIGKILLed, both are free."""
        assert hold(holders, log_path, "hold-writer") == "opened"
        holders[0].kill()
        assert finish(holders[0]) == -9
        engine = FileEngine.open(log_path, "exclusive")  # the shared open lock is free
        engine.close()
        engine, seen, known = open_shared(log_path)
        assert append_body(engine, seen, known, "after") > known  # the writer lock is free
        engine.close()

    @pytest.mark.slow
    def test_writers_killed_at_random_lose_no_acknowledged_record(
        self, log_path: Path, rng: random.Random
    ) -> None:
        """Appenders SIGKILLed at random leave every acknowledged record once, and no damage."""
        engine, seen, known = open_shared(log_path)
        doomed = [child("append", log_path, f"k{n}", 10**6) for n in range(2)]
        survivors = [child("append", log_path, f"s{n}", 300) for n in range(2)]
        acked: dict[str, int] = {}
        for n, process in enumerate(doomed):  # killed at a random moment of its stream
            assert process.stdout is not None
            for _ in range(rng.randrange(1, 300)):
                acked[f"k{n}"] = int(process.stdout.readline().split(":")[1]) + 1
            process.kill()
        assert [finish(process) for process in doomed + survivors] == [-9, -9, 0, 0]
        append_body(engine, seen, known, "final")  # cuts whatever a killed one left torn
        names = records(log_path)  # complete frames only, up to the end
        assert len(names) == len(set(names))
        for writer, least in {**acked, "s0": 300, "s1": 300}.items():
            mine = [name for name in names if name.split(":")[0] == writer]
            assert mine == [f"{writer}:{i}" for i in range(len(mine))]  # in order, no gap
            assert len(mine) >= least  # every acknowledged one
        engine.close()

    def test_partial_record_of_a_killed_writer_is_not_damage_to_a_reader(
        self, log_path: Path
    ) -> None:
        """A reader from an earlier position stops at the killed writer's partial record."""
        engine, _, known = open_shared(log_path)
        torn = child("tear", log_path)
        assert torn.stdout is not None
        assert torn.stdout.readline().strip() == "torn"
        assert finish(torn) == -9
        frames = engine.read_frames(known)
        assert ([name_of(item) for _, item in frames.bodies], frames.stop) == (
            ["whole"],
            "incomplete",
        )
        assert frames.end < log_path.stat().st_size
        engine.close()

    def test_next_writer_cuts_the_partial_record_of_a_killed_writer(self, log_path: Path) -> None:
        """The next writer cuts the partial record under the lock and appends in its place."""
        engine, seen, known = open_shared(log_path)
        torn = child("tear", log_path)
        assert torn.stdout is not None
        assert torn.stdout.readline().strip() == "torn"
        assert finish(torn) == -9
        append_body(engine, seen, known, "next")
        assert records(log_path) == ["whole", "next"]
        assert catch_up(engine, [], known) == log_path.stat().st_size
        engine.close()
