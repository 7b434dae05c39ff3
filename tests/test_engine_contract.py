"""The engine contract: the same cases against the file engine and the PostgreSQL engine.

Everything the layers above ``_engine.Engine`` rely on, driven through the interface alone
(``tests/contract_child.py``): appends read back at chained positions, a compare-and-append
at a stale end writes nothing, writers serialise on the writer lock, a compaction is read
from its image and followed by readers, and a writer killed mid-append leaves no partial
record. Then what only the PostgreSQL engine has: its name check, its errors, its imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests import contract_child
from tests.contract_child import append, catch_up, compact, framed, open_engine, open_log
from tests.engine_child import HEADER, name_of
from tests.pg import Server, missing_binaries
from tests.test_postgres_store import backends_waiting_on_a_lock
from typedstore._engine import Engine, StaleLogError
from typedstore._pg_engine import PostgresEngine

ROOT = Path(__file__).parents[1]


@dataclass
class Backend:
    """Where one test's log lives, and how to open engines on it."""

    kind: str
    where: str

    def open(self, *, readonly: bool = False) -> Engine:
        """Open a new engine on this test's log."""
        return open_engine(self.kind, self.where, readonly=readonly)

    def child(self, *args: str) -> subprocess.Popen[str]:
        """Start ``tests.contract_child`` on this log with ``args``."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "tests.contract_child", self.kind, self.where, *args]
        return subprocess.Popen(command, cwd=ROOT, env=env, text=True, stderr=subprocess.PIPE)


@pytest.fixture(params=["file", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A new log for one test: a file, or a store in a schema of its own in PostgreSQL."""
    if request.param == "file":
        return Backend("file", str(tmp_path / "store.log"))
    dsn: str = request.getfixturevalue("pg_dsn")
    return Backend("postgres", f"{dsn}|store")


@pytest.fixture
def engines(backend: Backend) -> Iterator[list[Engine]]:
    """Engines the test opens, closed after it."""
    opened: list[Engine] = []
    yield opened
    for engine in opened:
        engine.close()


def opened(backend: Backend, engines: list[Engine]) -> tuple[Engine, list[str], int]:
    """Open an engine on the log (creating it); return it, its records and its end."""
    engine = backend.open()
    engines.append(engine)
    seen, known = open_log(engine)
    return engine, seen, known


def read_all(backend: Backend, engines: list[Engine]) -> list[str]:
    """Return the records a fresh open of the log replays."""
    return opened(backend, engines)[1]


class TestAppend:
    """Appended frames read back, at positions that chain."""

    def test_frames_appended_read_back_at_their_positions(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """A batch appended at the end reads back, each frame at its chained position."""
        engine, _, start = opened(backend, engines)
        frames = framed(engine, ["a", "b"], start)
        with engine.writing():
            end = engine.append(frames, start)
        read = engine.read_frames(start)
        second = engine.position_after(start, frames[0])
        assert [(position, name_of(item)) for position, item in read.bodies] == [
            (start, "a"),
            (second, "b"),
        ]
        assert (read.end, read.stop) == (end, "end")
        assert end == engine.position_after(second, frames[1]) == engine.end()

    def test_reading_from_a_later_position_returns_only_what_follows(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """read_frames from the position after an append returns only later frames."""
        engine, seen, known = opened(backend, engines)
        middle = append(engine, seen, known, ["a"])
        append(engine, seen, middle, ["b", "c"])
        assert [name_of(item) for _, item in engine.read_frames(middle).bodies] == ["b", "c"]

    def test_positions_of_successive_appends_are_consecutive(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """Each append starts exactly where the previous one ended: no gap, no overlap."""
        engine, seen, start = opened(backend, engines)
        known, ends = start, []
        for name in ["a", "b", "c", "d"]:
            known = append(engine, seen, known, [name])
            ends.append(known)
        positions = [position for position, _ in engine.read_frames(start).bodies]
        assert positions == [start, *ends[:-1]]

    def test_a_fresh_open_replays_every_append(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """A log appended to by one engine replays in full, in order, in another."""
        engine, seen, known = opened(backend, engines)
        known = append(engine, seen, known, ["a"])
        append(engine, seen, known, ["b", "c"])
        assert read_all(backend, engines) == ["a", "b", "c"]


class TestCompareAndAppend:
    """An append lands only at the end its writer saw."""

    def test_append_at_a_stale_end_raises_and_writes_nothing(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """An append at an end another engine has moved raises StaleLogError, adding nothing."""
        engine, _, known = opened(backend, engines)
        other, other_seen, other_known = opened(backend, engines)
        end = append(other, other_seen, other_known, ["first"])
        with engine.writing(), pytest.raises(StaleLogError, match="the log ends at"):
            engine.append(framed(engine, ["second"], known), known)
        assert engine.end() == end
        assert read_all(backend, engines) == ["first"]

    def test_append_past_the_end_raises(self, backend: Backend, engines: list[Engine]) -> None:
        """An append at a position beyond the log's end raises StaleLogError."""
        engine, seen, known = opened(backend, engines)
        beyond = append(engine, seen, known, ["a"])
        with engine.writing(), pytest.raises(StaleLogError, match="the log ends at"):
            engine.append(framed(engine, ["b"], beyond + 1), beyond + 1)
        assert read_all(backend, engines) == ["a"]

    def test_a_stale_writer_lands_once_caught_up(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """After another engine's append, catching up lets this engine's append land."""
        engine, seen, known = opened(backend, engines)
        other, other_seen, other_known = opened(backend, engines)
        other_known = append(other, other_seen, other_known, ["first"])
        append(engine, seen, known, ["second"])
        catch_up(other, other_seen, other_known)
        assert seen == other_seen == ["first", "second"]

    def test_a_second_create_is_stale(self, backend: Backend, engines: list[Engine]) -> None:
        """Creating a log another engine created meanwhile raises StaleLogError."""
        opened(backend, engines)
        late = backend.open()
        engines.append(late)
        with late.writing(), pytest.raises(StaleLogError, match="created the log first"):
            late.create([HEADER])

    @pytest.mark.slow
    def test_four_processes_incrementing_under_the_writer_lock_end_exact(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """4 processes x 250 increments under the writer lock give 1..1000, in order."""
        opened(backend, engines)
        children = [backend.child("increment", "250") for _ in range(4)]
        for child in children:
            _, errors = child.communicate(timeout=300)
            assert child.returncode == 0, errors
        assert read_all(backend, engines) == [str(number) for number in range(1, 1001)]


class TestOpening:
    """Opening a log: created once however many open it at once, and cut where told."""

    def test_engines_opening_a_new_log_at_once_share_one_log(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """Four engines opening a log no one created yet all open it; their appends all land."""
        for _ in range(4):
            engines.append(backend.open())
        results: list[tuple[list[str], int]] = []
        threads = [
            threading.Thread(target=lambda engine=engine: results.append(open_log(engine)))
            for engine in engines
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert results == [([], results[0][1])] * 4
        for number, engine in enumerate(engines):
            append(engine, [], results[number][1], [f"from {number}"])
        assert sorted(read_all(backend, engines)) == [f"from {n}" for n in range(4)]

    def test_a_log_cut_at_a_position_replays_up_to_it(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """After a cut at a position, a fresh open replays only the records before it."""
        engine, seen, known = opened(backend, engines)
        middle = append(engine, seen, known, ["kept"])
        append(engine, seen, middle, ["cut"])
        with engine.writing():
            engine.cut(middle)
        assert engine.end() == middle
        assert read_all(backend, engines) == ["kept"]


class TestCompaction:
    """A replaced log is read from its image, and followed by the other engines."""

    def test_a_fresh_open_after_a_replace_reads_the_image_and_the_tail(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """Opening after a compaction and an append replays the image, then the append."""
        engine, seen, known = opened(backend, engines)
        known = append(engine, seen, known, ["a", "b"])
        known = compact(engine, seen, known)
        append(engine, seen, known, ["c"])
        assert read_all(backend, engines) == ["a", "b", "c"]

    def test_replace_at_a_stale_end_raises_and_keeps_the_log(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """A replace by an engine that has not seen the latest append raises StaleLogError."""
        engine, _, known = opened(backend, engines)
        other, other_seen, other_known = opened(backend, engines)
        append(other, other_seen, other_known, ["a"])
        first = engine.position_after(0, HEADER)
        with engine.writing(), pytest.raises(StaleLogError, match="the log ends at"):
            engine.replace([HEADER, *framed(engine, ["x"], first)], known)
        assert read_all(backend, engines) == ["a"]

    def test_a_reader_at_an_old_position_is_told_to_follow(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """After another engine compacts, a reader is told so and follows to the same state."""
        engine, seen, known = opened(backend, engines)
        reader = backend.open(readonly=True)
        engines.append(reader)
        known = append(engine, seen, known, ["a"])
        reader_seen, reader_known = contract_child.replay(reader, reader.read_log())
        known = compact(engine, seen, known)
        append(engine, seen, known, ["b"])
        assert reader.is_replaced()
        catch_up(reader, reader_seen, reader_known)
        assert reader_seen == ["a", "b"]

    def test_follow_gives_the_position_after_the_image(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """follow() at the end the compaction saw returns where the image's tail starts."""
        engine, seen, known = opened(backend, engines)
        known = append(engine, seen, known, ["a"])
        other, other_seen, other_known = opened(backend, engines)
        image_end = compact(other, other_seen, other_known)
        assert engine.follow(known) == image_end

    def test_a_reader_two_compactions_behind_replays_the_new_log(
        self, backend: Backend, engines: list[Engine]
    ) -> None:
        """A reader that missed two compactions is asked to replay, and ends up current."""
        engine, seen, known = opened(backend, engines)
        known = append(engine, seen, known, ["a"])
        reader, reader_seen, reader_known = opened(backend, engines)
        known = compact(engine, seen, known)
        known = append(engine, seen, known, ["b"])
        compact(engine, seen, known)
        catch_up(reader, reader_seen, reader_known)
        assert reader_seen == ["a", "b"]

    @pytest.mark.parametrize("count", [1, 2])
    def test_a_writer_two_compactions_behind_appends_nothing(
        self, backend: Backend, engines: list[Engine], count: int
    ) -> None:
        """A writer that missed two compactions, whose end is among the rows the second one
        forgot, appends nothing there (one frame or a batch): StaleLogError, and a fresh
        open reads the state the compactions kept."""
        engine, seen, known = opened(backend, engines)
        known = append(engine, seen, known, ["a"])
        stale, _, stale_known = opened(backend, engines)
        known = append(engine, seen, known, ["b", "b2", "b3"])  # forgotten: room for a batch
        known = compact(engine, seen, known)
        known = append(engine, seen, known, ["c"])
        compact(engine, seen, known)
        names = [f"stale {number}" for number in range(count)]
        with stale.writing(), pytest.raises(StaleLogError):
            stale.append(framed(stale, names, stale_known), stale_known)
        assert read_all(backend, engines) == ["a", "b", "b2", "b3", "c"]


class TestKilledWriter:
    """A writer killed in the middle of an append leaves no partial record."""

    def test_a_writer_killed_mid_append_leaves_no_partial_record(
        self, backend: Backend, engines: list[Engine], request: pytest.FixtureRequest
    ) -> None:
        """After a writer dies mid-append, the next append lands and nothing partial reads."""
        engine, seen, known = opened(backend, engines)
        if backend.kind == "file":
            tear_file(backend.where)  # appends "whole", then half a record
        else:
            known = append(engine, seen, known, ["whole"])
            server: Server = request.getfixturevalue("postgres_server")
            terminate_mid_append(backend, server.dsn(), known)
        append(engine, seen, known, ["after"])
        assert read_all(backend, engines) == ["whole", "after"]


def tear_file(path: str) -> None:
    """Run a process that appends a record and half of another, then SIGKILLs itself."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.engine_child", "tear", path]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == -9, result.stderr


def terminate_mid_append(backend: Backend, admin_dsn: str, at: int) -> None:
    """Kill a PostgreSQL writer's backend while its two-row append waits on its second row.

    Another session inserts, uncommitted, the row the append's second frame needs: the
    append has moved the end and inserted its first row when it blocks, and is killed
    there with ``pg_terminate_backend``.
    """
    dsn, name = backend.where.split("|")
    victim = PostgresEngine(dsn, name=name)
    blocker = psycopg.connect(dsn)
    blocker.execute(f"INSERT INTO {name}_log VALUES (%s, 'x')", [at + 1])
    outcome: list[BaseException] = []

    def write() -> None:
        try:
            victim.append(framed(victim, ["lost", "lost"], at), at)
        except BaseException as exc:
            outcome.append(exc)

    victim.end()  # connect first, so the backend's pid is known
    assert victim._conn is not None
    pid = victim._conn.info.backend_pid
    thread = threading.Thread(target=write)
    thread.start()
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        wait_for_lock_wait(admin, pid)
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    thread.join(timeout=30)
    blocker.rollback()
    blocker.close()
    victim.close()
    assert [type(exc) for exc in outcome] == [ConnectionError]


def wait_for_lock_wait(admin: psycopg.Connection[tuple[object, ...]], pid: int) -> None:
    """Wait until backend ``pid`` waits for a lock (its append blocked on the second row)."""
    query = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s"
    for _ in range(1000):
        row = admin.execute(query, [pid]).fetchone()
        if row is not None and row[0] == "Lock":
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


def terminate(server: Server, engine: Engine) -> None:
    """End ``engine``'s PostgreSQL session from another one, as an administrator would."""
    assert isinstance(engine, PostgresEngine)
    assert engine._conn is not None
    pid = engine._conn.info.backend_pid
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)


class TestPostgresOnly:
    """What only the PostgreSQL engine has: a checked name, clear errors, a lazy import."""

    @pytest.mark.parametrize("name", ["Users", "1st", "a-b", "a b", "x; drop", "", "a" * 41])
    def test_a_name_that_is_not_an_identifier_is_refused(self, name: str) -> None:
        """A store name that is not a lower-case SQL identifier raises ValueError at once."""
        with pytest.raises(ValueError, match="is not a lower-case SQL identifier"):
            PostgresEngine("host=/nonexistent", name=name)

    def test_an_unreachable_server_raises_connection_error_naming_the_host(
        self, tmp_path: Path
    ) -> None:
        """A DSN no server answers raises ConnectionError naming its host and port."""
        engine = PostgresEngine(f"host={tmp_path} port=5999 dbname=shop", name="users")
        with pytest.raises(ConnectionError, match=f"PostgreSQL at {tmp_path}:5999/shop"):
            engine.read_log()

    def test_a_missing_store_read_only_raises_file_not_found(self, pg_dsn: str) -> None:
        """A read-only engine on a store whose tables do not exist raises FileNotFoundError."""
        engine = PostgresEngine(pg_dsn, name="absent", readonly=True)
        with pytest.raises(FileNotFoundError, match="no such store"):
            engine.read_log()
        engine.close()
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT to_regclass('absent_log')").fetchone() == (None,)

    def test_the_tables_are_created_at_first_open(self, pg_dsn: str) -> None:
        """The first open of a store creates its two tables, and they start empty."""
        engine = PostgresEngine(pg_dsn, name="users")
        assert engine.read_log() == b""
        engine.close()
        with psycopg.connect(pg_dsn) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "ORDER BY tablename"
            ).fetchall()
        assert tables == [("users_log",), ("users_snapshot",)]

    def test_stores_of_other_names_do_not_see_each_other(self, pg_dsn: str) -> None:
        """Two stores in one database keep separate logs."""
        engines: list[Engine] = []
        first = Backend("postgres", f"{pg_dsn}|first")
        second = Backend("postgres", f"{pg_dsn}|second")
        engine, seen, known = opened(first, engines)
        append(engine, seen, known, ["only in first"])
        assert read_all(second, engines) == []
        for each in engines:
            each.close()

    def test_a_reader_whose_session_was_ended_reads_on_a_new_one(
        self, pg_dsn: str, postgres_server: Server
    ) -> None:
        """After pg_terminate_backend of an idle engine's session, its next read reconnects."""
        engines: list[Engine] = []
        engine, seen, known = opened(Backend("postgres", f"{pg_dsn}|store"), engines)
        end = append(engine, seen, known, ["a"])
        terminate(postgres_server, engine)
        assert engine.end() == end
        engine.close()

    def test_a_write_on_an_ended_session_raises_connection_error(
        self, pg_dsn: str, postgres_server: Server
    ) -> None:
        """A write on a session the server ended raises ConnectionError naming the server."""
        engines: list[Engine] = []
        engine, _, known = opened(Backend("postgres", f"{pg_dsn}|store"), engines)
        terminate(postgres_server, engine)
        with pytest.raises(ConnectionError, match=r"PostgreSQL at .*, store 'store'"):
            engine.append(framed(engine, ["a"], known), known)
        assert engine.end() == known
        engine.close()

    @pytest.mark.slow
    def test_an_engine_carries_on_after_the_server_restarts(
        self, pg_dsn: str, postgres_server: Server
    ) -> None:
        """After the server stops and starts again, an engine reads and writes as before."""
        engines: list[Engine] = []
        backend = Backend("postgres", f"{pg_dsn}|store")
        engine, seen, known = opened(backend, engines)
        known = append(engine, seen, known, ["before"])
        postgres_server.stop()
        postgres_server.start()
        append(engine, seen, known, ["after"])
        assert read_all(backend, engines) == ["before", "after"]
        for each in engines:
            each.close()

    def test_compaction_forgets_rows_two_images_old(self, pg_dsn: str) -> None:
        """After a second compaction, only rows from the previous image on remain."""
        engines: list[Engine] = []
        engine, seen, known = opened(Backend("postgres", f"{pg_dsn}|store"), engines)
        known = append(engine, seen, known, ["a", "b"])
        previous = known
        known = compact(engine, seen, known)
        known = append(engine, seen, known, ["c"])
        compact(engine, seen, known)
        with psycopg.connect(pg_dsn) as conn:
            oldest = conn.execute("SELECT min(position) FROM store_log").fetchone()
            images = conn.execute("SELECT position FROM store_snapshot").fetchall()
        assert oldest == (previous,)
        assert images == [(previous,), (known,)]
        engine.close()

    def test_forgetting_rows_waits_for_a_write_under_way(self, pg_dsn: str) -> None:
        """A compaction forgets old rows only once the writes under way committed (it
        locks the log against writes while it deletes): a session holding an insert open
        holds it up, and its end follows."""
        engines: list[Engine] = []
        engine, seen, known = opened(Backend("postgres", f"{pg_dsn}|store"), engines)
        known = append(engine, seen, known, ["a"])
        known = compact(engine, seen, known)
        known = append(engine, seen, known, ["b"])
        done: list[int] = []
        with psycopg.connect(pg_dsn) as holder:  # a transaction: the insert stays open
            holder.execute("INSERT INTO store_log VALUES (1000000, 'not a frame')")
            compaction = threading.Thread(target=lambda: done.append(compact(engine, seen, known)))
            compaction.start()
            deadline = time.monotonic() + 30
            while not backends_waiting_on_a_lock(pg_dsn) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert backends_waiting_on_a_lock(pg_dsn), "forgetting waits for the open insert"
            assert compaction.is_alive()
            assert not done
            holder.rollback()
        compaction.join(timeout=30)
        assert done
        assert not compaction.is_alive()
        with psycopg.connect(pg_dsn) as conn:
            oldest = conn.execute("SELECT min(position) FROM store_log").fetchone()
        assert oldest is not None
        assert oldest[0] > 0  # the first log's rows were forgotten
        assert read_all(Backend("postgres", f"{pg_dsn}|store"), engines) == ["a", "b"]
        for each in engines:
            each.close()

    def test_a_write_held_up_by_forgetting_sees_the_rows_gone(self, pg_dsn: str) -> None:
        """A write whose statement waits while rows are being forgotten (the log locked as a
        compaction locks it) runs on what the forgetting left: with the row before its
        position gone, it appends nothing, where a statement that had seen that row
        would have appended after a gap."""
        engines: list[Engine] = []
        engine, seen, known = opened(Backend("postgres", f"{pg_dsn}|store"), engines)
        known = append(engine, seen, known, ["a"])
        outcome: list[BaseException | int] = []

        def write() -> None:
            try:
                outcome.append(engine.append(framed(engine, ["late"], known), known))
            except BaseException as exc:  # the test looks at it
                outcome.append(exc)

        with psycopg.connect(pg_dsn) as forgetter:
            forgetter.execute("LOCK TABLE store_log IN SHARE MODE")
            forgetter.execute("DELETE FROM store_log")
            writer = threading.Thread(target=write)
            writer.start()
            deadline = time.monotonic() + 30
            while not backends_waiting_on_a_lock(pg_dsn) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert backends_waiting_on_a_lock(pg_dsn), "the write waits for the forgetting"
            forgetter.commit()
        writer.join(timeout=30)
        assert len(outcome) == 1
        assert isinstance(outcome[0], StaleLogError)
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM store_log").fetchone() == (0,)
        for each in engines:
            each.close()

    def test_a_write_that_lost_the_race_keeps_its_prepared_statement(self, pg_dsn: str) -> None:
        """A one-frame append at a position another engine took fails on the server (a
        unique violation): StaleLogError, and the fast path's statement stays prepared."""
        from typedstore import _pg_engine

        engines: list[Engine] = []
        backend = Backend("postgres", f"{pg_dsn}|store")
        engine, seen, known = opened(backend, engines)
        other, other_seen, other_known = opened(backend, engines)
        known = append(engine, seen, known, ["warm"])  # prepares the fast path's statement
        assert isinstance(engine, PostgresEngine)
        prepared = dict(engine._prepared)
        assert _pg_engine._APPEND_ONE_PREPARED in prepared
        append(other, other_seen, other_known, ["first"])
        with pytest.raises(StaleLogError):
            engine.append(framed(engine, ["second"], known), known)
        assert engine._prepared == prepared
        assert read_all(backend, engines) == ["warm", "first"]
        for each in engines:
            each.close()

    def test_the_libpq_numbers_the_conflict_check_compares_are_psycopgs(self) -> None:
        """The error status and field numbers ``_run_prepared`` compares without psycopg.pq."""
        from psycopg import pq

        from typedstore import _pg_engine

        assert _pg_engine._FATAL_ERROR == pq.ExecStatus.FATAL_ERROR
        assert _pg_engine._SQLSTATE == pq.DiagnosticField.SQLSTATE
        assert _pg_engine._UNIQUE_VIOLATION.decode() == psycopg.errors.UniqueViolation.sqlstate

    def test_importing_typedstore_does_not_import_psycopg(self) -> None:
        """``import typedstore`` and making a PostgresEngine leave psycopg unimported."""
        code = (
            "import sys, typedstore\n"
            "from typedstore._pg_engine import PostgresEngine\n"
            "PostgresEngine('host=/nowhere', name='users')\n"
            "print('psycopg' in sys.modules)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        assert result.stdout.strip() == "False"


class TestServerFixture:
    """The tests' PostgreSQL server: skipped with a reason when it cannot be made."""

    def test_missing_server_binaries_are_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without initdb and pg_ctl on the PATH, the reason to skip names both."""
        monkeypatch.setenv("PATH", f"/nonexistent-{uuid.uuid4().hex}")
        assert missing_binaries() == "PostgreSQL server binaries not on the PATH: initdb, pg_ctl"
