"""A store on the PostgreSQL engine (SPEC section 12, README "Several machines").

Every test runs against the private server of ``tests/pg.py`` in a schema of its own; they
skip without the server binaries unless ``TYPEDSTORE_REQUIRE_POSTGRES=1``. What the store
does is the store suite's (``open_store``'s ``postgres`` parameter runs it here too); these
tests cover what is new: several handles on one store, opening from the engine, and the
engine's own errors at the store's level.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import BaseModel

from tests.pg import Server
from tests.pg_store_child import BATCH
from typedstore import (
    Collection,
    CorruptLogError,
    Database,
    NotAStoreError,
    PostgresEngine,
    StoreReadOnlyError,
    TypedStore,
    _format,
    _pg_engine,
)
from typedstore._pg_open import PgLog

ROOT = Path(__file__).parents[1]

TraceFunction = Callable[[FrameType, str, Any], Any]
"""What ``sys.settrace`` takes."""


class User(BaseModel):
    name: str
    age: int


class Users(TypedStore[str, User]):
    """A declarative store class."""


class Shop(Database):
    """A declarative database of two collections."""

    users: Collection[str, User]
    stock: Collection[str, int]


@pytest.fixture
def engine(pg_dsn: str) -> PostgresEngine:
    """An engine on store ``users`` of this test's schema."""
    return PostgresEngine(pg_dsn, name="users")


def rows(dsn: str, table: str) -> int:
    """Return how many rows ``table`` of the test's schema holds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # a test's own table name
    assert found is not None
    return int(found[0])


class TestOneHandle:
    """The typed API on one handle: what a file store does, on PostgreSQL."""

    def test_insert_get_modify_remove(self, engine: PostgresEngine) -> None:
        """Writes apply and read back; the store is an ordered mapping."""
        with TypedStore.open(engine, str, User) as users:
            users["ann"] = User(name="Ann", age=30)
            users["bob"] = User(name="Bob", age=40)
            users.modify("ann", lambda user: user.model_copy(update={"age": user.age + 1}))
            del users["bob"]
            assert dict(users) == {"ann": User(name="Ann", age=31)}
            assert users.get("bob") is None

    def test_reopen_replays_what_was_written(self, engine: PostgresEngine) -> None:
        """A store closed and opened again holds what it held."""
        with TypedStore.open(engine, str, int) as store:
            store.update({"a": 1, "b": 2})
            store["a"] = 3
            del store["b"]
        with TypedStore.open(engine, str, int) as store:
            assert dict(store) == {"a": 3}

    def test_a_transaction_commits_as_one(self, engine: PostgresEngine) -> None:
        """A transaction's writes land together; an exception discards them all."""
        with TypedStore.open(engine, str, int) as store:
            with store.transaction() as txn:
                txn["a"] = 1
                txn["b"] = 2
            with pytest.raises(KeyError), store.transaction() as txn:  # noqa: PT012
                txn["c"] = 3
                raise KeyError("abandon")
            assert dict(store) == {"a": 1, "b": 2}
        with TypedStore.open(engine, str, int) as store:
            assert dict(store) == {"a": 1, "b": 2}

    def test_compaction_keeps_the_state_and_a_reopen_reads_it(self, pg_dsn: str) -> None:
        """After compact(), the store and a reopen hold the live entries only."""
        engine = PostgresEngine(pg_dsn, name="users")
        with TypedStore.open(engine, str, int) as store:
            for number in range(50):
                store[f"k{number % 5}"] = number
            store.compact()
            store["after"] = 1
            expected = dict(store)
        assert rows(pg_dsn, "users_snapshot") == 2
        with TypedStore.open(engine, str, int) as store:
            assert dict(store) == expected
            assert list(store) == ["k0", "k1", "k2", "k3", "k4", "after"]

    def test_a_catalog_change_counts_its_whole_record_toward_compaction(self, pg_dsn: str) -> None:
        """The bytes a new collection's schema record adds are its frame's, as a data
        record's are: what the compaction policy weighs."""
        with Shop.open(PostgresEngine(pg_dsn, name="shop")) as shop:
            log = shop._core._log
            assert log is not None
            before, at = log.size, log.end
            shop.collection("notes", str, int)
            reader = PostgresEngine(pg_dsn, name="shop", readonly=True)
            try:
                ((position, body),) = reader.read_frames(at).bodies
            finally:
                reader.close()
            assert log.size - before == len(_format.encode_frame(bytes(body), position))

    def test_a_declarative_store_and_database_open_on_an_engine(self, pg_dsn: str) -> None:
        """Declarative classes take an engine where they take a path."""
        with Users.open(PostgresEngine(pg_dsn, name="users")) as users:
            users["ann"] = User(name="Ann", age=30)
        with Shop.open(PostgresEngine(pg_dsn, name="shop")) as shop:
            shop.users["bob"] = User(name="Bob", age=40)
            shop.stock["apple"] = 3
        with Shop.open(PostgresEngine(pg_dsn, name="shop")) as shop:
            assert dict(shop.stock) == {"apple": 3}
            assert shop.users["bob"].age == 40
        with Users.open(PostgresEngine(pg_dsn, name="users")) as users:
            assert list(users) == ["ann"]


class TestSeveralHandles:
    """Handles on one store, each its own connection: every operation sees what the others
    acknowledged before it began."""

    def test_two_handles_see_each_others_writes(self, engine: PostgresEngine) -> None:
        """A write through one handle is read through the other at its next operation."""
        with (
            TypedStore.open(engine, str, int) as first,
            TypedStore.open(engine, str, int) as second,
        ):
            first["a"] = 1
            assert second["a"] == 1
            second["b"] = 2
            del second["a"]
            assert dict(first) == {"b": 2}

    def test_modify_sees_the_value_another_handle_wrote(self, engine: PostgresEngine) -> None:
        """modify's fn gets the newest value, whoever wrote it: no lost increment."""
        with (
            TypedStore.open(engine, str, int) as first,
            TypedStore.open(engine, str, int) as second,
        ):
            first["n"] = 0
            for _ in range(10):
                first.modify("n", lambda n: n + 1)
                second.modify("n", lambda n: n + 1)
            assert first["n"] == second["n"] == 20

    def test_a_transaction_sees_and_keeps_out_the_other_handles_writes(
        self, engine: PostgresEngine
    ) -> None:
        """A transaction begins caught up; its batch lands whole, after earlier writes."""
        with (
            TypedStore.open(engine, str, int) as first,
            TypedStore.open(engine, str, int) as second,
        ):
            first["a"] = 1
            with second.transaction() as txn:
                assert txn["a"] == 1
                txn["a"] = txn["a"] + 1
                txn["b"] = 2
            assert dict(first) == {"a": 2, "b": 2}

    def test_a_handle_follows_another_handles_compaction(self, engine: PostgresEngine) -> None:
        """A compaction by one handle is followed by the other, which writes on after it."""
        with (
            TypedStore.open(engine, str, int) as first,
            TypedStore.open(engine, str, int) as second,
        ):
            for number in range(20):
                first[f"k{number % 3}"] = number
            assert second["k0"] == 18
            first.compact()
            second["after"] = 1
            first["later"] = 2
            assert dict(first) == dict(second)
            assert dict(second) == {"k0": 18, "k1": 19, "k2": 17, "after": 1, "later": 2}

    def test_a_lagging_handle_follows_a_compaction(self, engine: PostgresEngine) -> None:
        """A handle that missed writes and a compaction reads the state after them."""
        with (
            TypedStore.open(engine, str, int) as first,
            TypedStore.open(engine, str, int) as second,
        ):
            assert len(second) == 0
            first.update({"a": 1, "b": 2})
            del first["a"]
            first.compact()
            first["c"] = 3
            assert dict(second) == {"b": 2, "c": 3}

    def test_a_reader_follows_the_writers(self, engine: PostgresEngine) -> None:
        """A read-only handle reads every acknowledged write and refuses to write."""
        with TypedStore.open(engine, str, int) as writer:
            writer["a"] = 1
            with TypedStore.open(engine, str, int, readonly=True) as reader:
                assert dict(reader) == {"a": 1}
                writer["b"] = 2
                assert dict(reader) == {"a": 1, "b": 2}
                with pytest.raises(StoreReadOnlyError):
                    reader["c"] = 3
                writer.compact()
                writer["c"] = 3
                assert dict(reader) == {"a": 1, "b": 2, "c": 3}

    def test_a_database_catalog_change_reaches_the_other_handle(self, pg_dsn: str) -> None:
        """A collection one handle adds is written at once and seen by the other's reopen."""
        engine = PostgresEngine(pg_dsn, name="shop")
        with Database.open(engine) as first, Database.open(engine) as second:
            first.collection("stock", str, int)["apple"] = 1
            stock = second.collection("stock", str, int)
            assert dict(stock) == {"apple": 1}
            stock["pear"] = 2
            assert dict(first.collection("stock", str, int)) == {"apple": 1, "pear": 2}


class TestErrors:
    """Clear errors, nothing created or changed."""

    def test_an_unreachable_server_raises_connection_error_naming_the_host(self) -> None:
        """A host that does not resolve: ConnectionError naming it."""
        engine = PostgresEngine("host=nohost.invalid dbname=app connect_timeout=2", name="users")
        with pytest.raises(ConnectionError, match=r"nohost\.invalid"):
            TypedStore.open(engine, str, int)

    def test_wrong_credentials_raise_connection_error_naming_the_server(self, pg_dsn: str) -> None:
        """A role that does not exist: ConnectionError naming the server and the store,
        with the server's reason; nothing is created."""
        engine = PostgresEngine(make_conninfo(pg_dsn, user="nobody"), name="users")
        with pytest.raises(ConnectionError, match=r"store 'users'.*nobody") as raised:
            TypedStore.open(engine, str, int)
        assert "PostgreSQL at " in str(raised.value)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('users_log')").fetchone() == (None,)

    def test_a_port_nothing_listens_on_raises_connection_error(self) -> None:
        """A refused connection (no server on that port): ConnectionError naming it."""
        from tests.pg import free_port

        port = free_port()
        engine = PostgresEngine(f"host=127.0.0.1 port={port} dbname=app", name="users")
        with pytest.raises(ConnectionError, match=rf"127\.0\.0\.1:{port}/app"):
            TypedStore.open(engine, str, int)

    def test_a_table_of_our_name_that_is_not_ours_is_refused(self, pg_dsn: str) -> None:
        """A table named like the store's log but with other columns: NotAStoreError, and
        none of the store's tables is created."""
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE users_log (id integer, payload text)")
        with pytest.raises(NotAStoreError, match=r'"users_log".*\(id integer, payload text\)'):
            TypedStore.open(PostgresEngine(pg_dsn, name="users"), str, int)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass('users_snapshot')").fetchone()
        assert found == (None,)

    def test_a_missing_store_opened_read_only_raises_file_not_found(
        self, engine: PostgresEngine
    ) -> None:
        """readonly=True on a store never written: FileNotFoundError, nothing created."""
        with pytest.raises(FileNotFoundError, match="no such store"):
            TypedStore.open(engine, str, int, readonly=True)

    def test_a_store_of_other_types_is_refused(self, engine: PostgresEngine) -> None:
        """Opening with types its records do not validate under fails as for a file."""
        with TypedStore.open(engine, str, str) as store:
            store["a"] = "not a number"
        with pytest.raises(ValueError, match="a"):
            TypedStore.open(engine, str, int)

    def test_the_store_is_named_by_its_server_and_name(self, engine: PostgresEngine) -> None:
        """repr and path name the server and store where a file store names its path."""
        with TypedStore.open(engine, str, int) as store:
            assert "store 'users'" in repr(store)
            assert "store 'users'" in str(store.path)


class TestRoundTrips:
    """What an operation costs, counted in the statements the server runs: its log, with
    ``log_statement=all`` for the store's session alone (README "Several machines")."""

    def test_an_insert_a_read_and_a_modify_each_take_one_statement(
        self, pg_dsn: str, postgres_server: Server
    ) -> None:
        """Once the connection is made, an insert, a read and a modify are one statement
        each: a single round trip, and a second instance's write costs a reader one
        statement more to catch up."""
        options = f"{conninfo_to_dict(pg_dsn)['options']} -clog_statement=all"
        dsn = make_conninfo(pg_dsn, options=options, application_name="counted")
        log = postgres_server.data.parent / "server.log"
        with (
            TypedStore.open(PostgresEngine(dsn, name="users"), str, int) as store,
            TypedStore.open(PostgresEngine(pg_dsn, name="users"), str, int) as other,
        ):
            store["warm"] = 0  # prepares what the fast path sends
            assert store["warm"] == 0
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                found = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'counted'"
                ).fetchall()
            assert len(found) == 1, "one connection per instance"
            session = f"[{found[0][0]}]"

            def statements(action: Callable[[], object]) -> list[str]:
                size = log.stat().st_size
                action()  # the server logs a statement before it answers
                with log.open("rb") as text:
                    text.seek(size)
                    lines = text.read().decode(errors="replace").splitlines()
                return [
                    line
                    for line in lines
                    if session in line and ("LOG:  statement:" in line or "LOG:  execute" in line)
                ]

            assert len(statements(lambda: store.__setitem__("a", 1))) == 1
            assert len(statements(lambda: store["a"])) == 1
            assert len(statements(lambda: store.modify("a", lambda value: value + 1))) == 1
            other["b"] = 2
            assert len(statements(lambda: store["b"])) == 2  # the check, then the catch-up
            assert dict(store) == {"warm": 0, "a": 2, "b": 2}

    def test_a_reading_block_looks_at_the_log_once_whatever_it_reads(
        self, pg_dsn: str, postgres_server: Server
    ) -> None:
        """A ``reading()`` block costs one statement as it begins (two when another
        instance wrote: the check, then the catch-up), and none for the reads inside it,
        of one collection or of several; a write inside it is its one statement."""
        options = f"{conninfo_to_dict(pg_dsn)['options']} -clog_statement=all"
        dsn = make_conninfo(pg_dsn, options=options, application_name="counted_block")
        log = postgres_server.data.parent / "server.log"
        with (
            Shop.open(PostgresEngine(dsn, name="shop")) as shop,
            Shop.open(PostgresEngine(pg_dsn, name="shop")) as other,
        ):
            shop.stock["warm"] = 0  # prepares what the fast path sends
            assert shop.stock["warm"] == 0
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                found = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'counted_block'"
                ).fetchall()
            session = f"[{found[0][0]}]"

            def statements(action: Callable[[], object]) -> int:
                size = log.stat().st_size
                action()  # the server logs a statement before it answers
                with log.open("rb") as text:
                    text.seek(size)
                    lines = text.read().decode(errors="replace").splitlines()
                return sum(
                    session in line and ("LOG:  statement:" in line or "LOG:  execute" in line)
                    for line in lines
                )

            seen: list[object] = []

            def many_reads() -> None:
                with shop.reading():
                    seen[:] = [shop.stock.get("warm") for _ in range(100)]
                    seen.extend(("warm" in shop.stock, len(shop.users), dict(shop.stock)))
                    seen.append(list(shop.users))

            assert statements(many_reads) == 1
            assert seen[-2:] == [{"warm": 0}, []]
            other.stock["more"] = 1
            other.users["ada"] = User(name="Ada", age=36)
            assert statements(many_reads) == 2
            assert seen[-2:] == [{"warm": 0, "more": 1}, ["ada"]]

            def write_inside() -> None:
                with shop.reading():
                    shop.stock["mine"] = 2
                    assert shop.stock["mine"] == 2

            assert statements(write_inside) == 2  # the look, then the write
            assert statements(lambda: shop.stock["warm"]) == 1  # outside: looks again

    def test_the_libpq_numbers_the_fast_path_compares_are_psycopgs(self) -> None:
        """The status numbers ``_run_prepared`` compares without importing psycopg.pq."""
        from psycopg import pq

        from typedstore import _pg_engine

        assert _pg_engine._COMMAND_OK == pq.ExecStatus.COMMAND_OK
        assert _pg_engine._TUPLES_OK == pq.ExecStatus.TUPLES_OK
        assert _pg_engine._CONNECTION_OK == pq.ConnStatus.OK

    def test_a_write_whose_prepared_statement_is_gone_lands_once(
        self, engine: PostgresEngine
    ) -> None:
        """The fast path's prepared statements dropped behind its back (``DEALLOCATE``):
        the write falls back to the plain statement and lands exactly once, and the next
        ones prepare again."""
        with TypedStore.open(engine, str, int) as store:
            store["a"] = 1
            assert store["a"] == 1
            connection = store._core._engine._conn  # type: ignore[union-attr]  # open: set
            assert connection is not None
            connection.execute("DEALLOCATE ALL")
            store["b"] = 2
            assert store["b"] == 2
            store["c"] = 3
        with TypedStore.open(engine, str, int) as store:
            assert dict(store) == {"a": 1, "b": 2, "c": 3}
        assert rows(engine.dsn, "users_log") == 4  # the header and three records

    @pytest.mark.parametrize("operation", ["write", "read"])
    def test_a_psycopg_error_from_the_prepared_call_drops_the_connection(
        self, engine: PostgresEngine, operation: str
    ) -> None:
        """psycopg's own error from the fast path's libpq call (its connection closed under
        it) drops the connection: a write raises ``ConnectionError`` naming the server,
        having written nothing; a read, which changes nothing, asks again on a new
        connection. Later calls use the new one."""

        class Refusing:
            def __init__(self, pgconn: Any) -> None:
                self.pgconn = pgconn

            def __getattr__(self, name: str) -> Any:
                return getattr(self.pgconn, name)

            def exec_prepared(self, *args: Any) -> Any:
                raise psycopg.OperationalError("the connection is closed")

        with TypedStore.open(engine, str, int) as store:
            store["a"] = 1
            own = store._core._engine
            assert isinstance(own, PostgresEngine)
            connection = own._conn
            assert connection is not None
            connection.pgconn = Refusing(connection.pgconn)  # type: ignore[assignment]  # a stand-in
            if operation == "write":
                with pytest.raises(ConnectionError, match=r"PostgreSQL at .*store 'users'"):
                    store["b"] = 2
            else:
                assert store.get("a") == 1
            assert connection.closed
            assert own._conn is not connection
            store["c"] = 3
            assert dict(store) == {"a": 1, "c": 3}
        with TypedStore.open(engine, str, int) as store:
            assert dict(store) == {"a": 1, "c": 3}


class TestSeveralProcesses:
    """Instances in processes of their own, each its own connection, writing at once."""

    @pytest.mark.slow
    def test_four_processes_modify_and_insert_without_losing_a_write(self, pg_dsn: str) -> None:
        """4 x 250 rounds of modify (or a transaction) and insert: the counter is exact,
        every key is there, and the log's positions are consecutive."""
        engine = PostgresEngine(pg_dsn, name="users")
        with TypedStore.open(engine, str, int) as store:
            store["n"] = 0
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.pg_store_child", pg_dsn, "users", f"p{who}", "250"],
                cwd=ROOT,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for who in range(4)
        ]
        for child in children:
            _, errors = child.communicate(timeout=600)
            assert child.returncode == 0, errors
        with TypedStore.open(engine, str, int) as store:
            assert store["n"] == 1000
            assert len(store) == 1 + 4 * 250
            assert all(
                store[f"p{who}-{number}"] == number for who in range(4) for number in range(250)
            )
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            positions = [
                row[0] for row in conn.execute("SELECT position FROM users_log ORDER BY 1")
            ]
        assert positions == list(range(len(positions)))

    @pytest.mark.slow
    def test_a_client_killed_mid_append_leaves_whole_batches_and_no_gap(
        self, pg_dsn: str, rng: random.Random
    ) -> None:
        """Three times, a process writing 20-key transactions is killed with SIGKILL at a
        moment of its own (most often inside an append): the other instance, catching up,
        and a reopen see each batch whole or not at all, every acknowledged batch there,
        and the log's positions consecutive."""
        engine = PostgresEngine(pg_dsn, name="users")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        acknowledged: list[tuple[str, int]] = []
        with TypedStore.open(engine, str, int) as watcher:
            for round_ in range(3):
                who = f"r{round_}"
                dsn = make_conninfo(pg_dsn, application_name=f"killed-{who}")
                child = subprocess.Popen(
                    [sys.executable, "-m", "tests.pg_store_child", dsn, "users", who, "forever"],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                try:
                    assert child.stdout is not None
                    for _ in range(5 + 3 * round_):  # a few batches committed, then the kill
                        number = int(child.stdout.readline())
                        acknowledged.append((who, number))
                    time.sleep(rng.uniform(0, 0.005))
                finally:
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                    assert child.stdout is not None
                    child.stdout.close()
                assert child.returncode == -signal.SIGKILL
                # Its session may still be running its last statement: until it ends,
                # that batch may yet commit, after the checks below.
                while sessions_named(pg_dsn, f"killed-{who}"):
                    time.sleep(0.01)
                batches: dict[tuple[str, int], list[int]] = {}
                for key, value in watcher.items():
                    owner, batch, _ = key.split("-")
                    assert int(batch) == value
                    batches.setdefault((owner, value), []).append(value)
                assert all(len(values) == BATCH for values in batches.values())
                assert set(acknowledged) <= set(batches)
            seen = dict(watcher)
        with TypedStore.open(engine, str, int) as store:
            assert dict(store) == seen
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            positions = [
                row[0] for row in conn.execute("SELECT position FROM users_log ORDER BY 1")
            ]
        assert positions == list(range(len(positions)))
        assert len(positions) == 1 + len(batches)  # the header, then one record a batch


def sessions_named(dsn: str, application_name: str) -> int:
    """Return how many sessions of the server have ``application_name``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert found is not None
    return int(found[0])


def backends_waiting_on_a_lock(dsn: str) -> list[int]:
    """Return the pids of the sessions waiting on a lock (an advisory lock, here)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]


class TestFaults:
    """A session ended or a server restarted in the middle of writes: no partial record,
    no acknowledged write lost, and the instance carries on or fails clearly."""

    def test_a_write_whose_session_is_ended_mid_statement_leaves_nothing(self, pg_dsn: str) -> None:
        """A write waiting inside its statement (another session holds the writer lock) is
        ended by pg_terminate_backend: ConnectionError, nothing written; the store then
        writes on a new connection, and a reopen holds exactly the acknowledged writes."""
        engine = PostgresEngine(pg_dsn, name="users")
        with TypedStore.open(engine, str, int) as store:
            store["a"] = 1
            errors: list[BaseException] = []
            with psycopg.connect(pg_dsn, autocommit=True) as holder:
                oid = holder.execute("SELECT 'users_log'::regclass::oid::bigint").fetchone()
                assert oid is not None
                holder.execute("SELECT pg_advisory_lock(%s)", (oid[0],))

                def write() -> None:
                    try:
                        store["b"] = 2
                    except BaseException as exc:  # the test looks at it
                        errors.append(exc)

                writer = threading.Thread(target=write)
                writer.start()
                waiting: list[int] = []
                while not waiting and writer.is_alive():
                    waiting = backends_waiting_on_a_lock(pg_dsn)
                assert len(waiting) == 1, "the write waits inside its statement"
                holder.execute("SELECT pg_terminate_backend(%s)", (waiting[0],))
                writer.join()
            assert len(errors) == 1
            assert isinstance(errors[0], ConnectionError)
            assert "store 'users'" in str(errors[0])
            assert dict(store) == {"a": 1}
            store["c"] = 3
        with TypedStore.open(engine, str, int) as store:
            assert dict(store) == {"a": 1, "c": 3}
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            positions = [row[0] for row in conn.execute("SELECT position FROM users_log")]
        assert sorted(positions) == [0, 1, 2]

    def test_a_ctrl_c_while_a_write_waits_for_the_writer_lock_writes_nothing(
        self, pg_dsn: str
    ) -> None:
        """A Ctrl-C (SIGINT) while a write waits for the writer lock another session holds:
        KeyboardInterrupt, the wait cancelled on the server and nothing written; the store
        then writes on, and a reopen holds exactly the acknowledged writes."""
        engine = PostgresEngine(pg_dsn, name="users")
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with TypedStore.open(engine, str, int) as store:
                store["a"] = 1
                with psycopg.connect(pg_dsn, autocommit=True) as holder:
                    oid = holder.execute("SELECT 'users_log'::regclass::oid::bigint").fetchone()
                    assert oid is not None
                    holder.execute("SELECT pg_advisory_lock(%s)", (oid[0],))
                    main, holder_pid = threading.get_ident(), holder.info.backend_pid

                    def interrupt() -> None:
                        deadline = time.monotonic() + 30
                        while not backends_waiting_on_a_lock(pg_dsn):
                            if time.monotonic() > deadline:
                                return  # the write never waited: it raises no KeyboardInterrupt
                            time.sleep(0.01)
                        signal.pthread_kill(main, signal.SIGINT)
                        deadline = time.monotonic() + 10
                        while backends_waiting_on_a_lock(pg_dsn) and time.monotonic() < deadline:
                            time.sleep(0.01)
                        if backends_waiting_on_a_lock(pg_dsn):  # deaf to the Ctrl-C: the lock
                            with psycopg.connect(pg_dsn, autocommit=True) as conn:  # goes, the
                                conn.execute("SELECT pg_terminate_backend(%s)", (holder_pid,))
                            # write lands, and the test fails rather than hangs

                    interrupter = threading.Thread(target=interrupt)
                    interrupter.start()
                    with pytest.raises(KeyboardInterrupt):
                        store["b"] = 2
                    interrupter.join()
                assert dict(store) == {"a": 1}
                store["c"] = 3
        finally:
            signal.signal(signal.SIGINT, previous)
        with TypedStore.open(engine, str, int) as store:
            assert dict(store) == {"a": 1, "c": 3}
        assert rows(pg_dsn, "users_log") == 3  # the header and two records

    def test_a_server_restart_under_writes_loses_no_acknowledged_write(
        self, pg_dsn: str, postgres_server: Server
    ) -> None:
        """Two instances write in threads while the server stops and starts again: each
        write is acknowledged or raises ConnectionError; every acknowledged one is there
        after the restart, and both instances carry on."""
        engine = PostgresEngine(pg_dsn, name="users")
        acknowledged: list[list[str]] = [[], []]
        failures: list[list[BaseException]] = [[], []]
        restarted = threading.Event()
        stores = [TypedStore.open(engine, str, int) for _ in range(2)]

        def write(which: int) -> None:
            number = 0
            after = 0
            while after < 20:  # until 20 writes landed after the restart
                key = f"w{which}-{number}"
                try:
                    stores[which][key] = number
                except ConnectionError as exc:
                    failures[which].append(exc)
                    continue  # the same key again: it may have landed already
                acknowledged[which].append(key)
                number += 1
                if restarted.is_set():
                    after += 1

        writers = [threading.Thread(target=write, args=(which,)) for which in range(2)]
        for writer in writers:
            writer.start()
        while min(len(keys) for keys in acknowledged) < 20:
            pass  # some writes before the stop
        postgres_server.stop()
        postgres_server.start()
        restarted.set()
        for writer in writers:
            writer.join()
        assert any(failures), "the restart interrupted writes"
        for store in stores:
            store.close()
        with TypedStore.open(engine, str, int) as store:
            for keys in acknowledged:
                assert all(key in store for key in keys)
            assert len(store) == sum(len(keys) for keys in acknowledged)


def interrupt_on_return(code: CodeType, caller: CodeType | None = None) -> TraceFunction:
    """Return a ``sys.settrace`` function that raises KeyboardInterrupt once, as a call of
    ``code`` (made from ``caller``, if given) returns normally: a Ctrl-C that lands right
    after the call, as the interpreter checks for signals after each call."""
    fired: list[bool] = []

    def local(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
        back = frame.f_back
        called_from = caller is None or (back is not None and back.f_code is caller)
        if event == "return" and not fired and frame.f_code is code and called_from:
            fired.append(True)
            raise KeyboardInterrupt
        return local

    def trace(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
        return local if frame.f_code is code and not fired else None

    return trace


def interrupt_after_return(code: CodeType, caller: CodeType) -> TraceFunction:
    """Return a ``sys.settrace`` function that raises KeyboardInterrupt once, at the first
    point after a call of ``code`` from ``caller`` returned where a Ctrl-C can land in
    ``caller``: a call it makes next (the first instruction of the callee), or its return."""
    armed: list[bool] = []
    fired: list[bool] = []

    def local(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
        if event == "return" and not fired:
            if frame.f_code is code:
                armed.append(True)
            elif armed:
                fired.append(True)
                raise KeyboardInterrupt
        return local

    def trace(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
        back = frame.f_back
        if fired:
            return None
        if armed and back is not None and back.f_code is caller:
            fired.append(True)
            raise KeyboardInterrupt
        return local if frame.f_code in (code, caller) else None

    return trace


@contextmanager
def tracing(trace: TraceFunction) -> Iterator[None]:
    """Run the block under ``trace``, in this thread."""
    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(None)


class TestInterrupts:
    """A Ctrl-C (KeyboardInterrupt) landing in a write on PostgreSQL: the store stays
    usable and its memory equals what a reopen reads."""

    @pytest.mark.parametrize("operation", ["write", "read"])
    def test_a_ctrl_c_as_a_statement_begins_leaves_the_engine_usable(
        self, pg_dsn: str, operation: str
    ) -> None:
        """Right after the engine checked its connection is not busy, before the
        statement's try: no busy mark may stay, or every later call raises RuntimeError."""
        engine = PostgresEngine(pg_dsn, name="users")
        with TypedStore.open(engine, str, int) as store:
            store["a"] = 0
            trace = interrupt_on_return(
                PostgresEngine._enter.__code__, PostgresEngine._run_prepared.__code__
            )
            run: Callable[[], object] = (
                (lambda: store.__setitem__("a", 1))
                if operation == "write"
                else (lambda: store.get("a"))
            )
            with pytest.raises(KeyboardInterrupt), tracing(trace):
                run()
            assert store.get("a") == 0  # the statement never ran
            store["b"] = 2
            with TypedStore.open(PostgresEngine(pg_dsn, name="users"), str, int) as again:
                assert dict(again) == dict(store) == {"a": 0, "b": 2}

    @pytest.mark.parametrize("point", ["returned", "counting"])
    @pytest.mark.parametrize("write", ["set", "modify", "update", "transaction"])
    def test_a_ctrl_c_once_the_record_landed_leaves_memory_equal_to_the_log(
        self, pg_dsn: str, write: str, point: str
    ) -> None:
        """Right after the append statement committed: memory must apply the record, as
        a file store's does (README, "A write interrupted by a signal may or may not
        have happened"), and not skip it on the next catch-up."""
        engine = PostgresEngine(pg_dsn, name="users")
        with TypedStore.open(engine, str, int) as store:
            store["a"] = 0
            store["b"] = 0

            def run() -> None:
                if write == "set":
                    store["a"] = 2
                elif write == "modify":
                    store.modify("a", lambda value: value + 2)
                elif write == "update":
                    store.update({"a": 2, "b": 1})
                else:
                    with store.transaction() as txn:
                        txn["a"] = 2
                        txn["b"] = 1

            if point == "returned":  # as the statement's call returns
                trace = interrupt_on_return(PostgresEngine.append.__code__)
            else:  # at the next point the log reaches: counting it must not call first
                trace = interrupt_after_return(
                    PostgresEngine.append.__code__, PgLog.append.__code__
                )
            with pytest.raises(KeyboardInterrupt), tracing(trace):
                run()
            assert store["a"] == 2
            store["c"] = 3
            with TypedStore.open(PostgresEngine(pg_dsn, name="users"), str, int) as again:
                assert dict(again) == dict(store)


# -- attacks on the write statement: stale instances and foreign damage -----------------------


def log_positions(dsn: str) -> list[int]:
    """Return the positions the log table of the test's schema holds, in order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [row[0] for row in conn.execute("SELECT position FROM users_log ORDER BY 1")]


def test_a_stale_instance_across_compactions_writes_at_the_end(pg_dsn: str) -> None:
    """An instance that missed three compactions writes at the end, resurrecting nothing."""
    engine = PostgresEngine(pg_dsn, name="users")
    with TypedStore.open(engine, str, int) as first, TypedStore.open(engine, str, int) as second:
        first["a"] = 1
        assert second["a"] == 1
        for round_ in range(3):
            for number in range(5):
                first[f"k{number}"] = round_ * 10 + number
            del first["k0"]
            first.compact()
        second["late"] = 7  # second still knows the log before three compactions
        expected = {"a": 1, "k1": 21, "k2": 22, "k3": 23, "k4": 24, "late": 7}
        assert dict(second) == expected
        assert dict(first) == expected
    with TypedStore.open(engine, str, int) as again:
        assert dict(again) == expected
    found = log_positions(pg_dsn)
    assert found == list(range(found[0], found[0] + len(found)))


def test_a_row_missing_in_the_middle_is_damage_not_a_fork(pg_dsn: str) -> None:
    """A hole in the rows after what an instance read raises; it never writes into it."""
    engine = PostgresEngine(pg_dsn, name="users")
    with TypedStore.open(engine, str, int) as first, TypedStore.open(engine, str, int) as second:
        first["a"] = 0
        assert second["a"] == 0
        for number in range(1, 6):
            first[f"k{number}"] = number
        end = log_positions(pg_dsn)[-1]
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM users_log WHERE position = %s", [end - 2])
        # second read up to "a"; the rows after it have a hole: it must not write into it
        with pytest.raises(CorruptLogError):
            second["b"] = 1
        assert end - 2 not in log_positions(pg_dsn)


def test_a_log_that_lost_its_last_rows_is_damage_not_a_hang(pg_dsn: str) -> None:
    """Rows an instance read, gone from the table: its write raises, it does not retry forever."""
    engine = PostgresEngine(pg_dsn, name="users")
    with TypedStore.open(engine, str, int) as store:
        for number in range(5):
            store[f"k{number}"] = number
        end = log_positions(pg_dsn)[-1]
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM users_log WHERE position >= %s", [end - 1])
        outcome: list[BaseException | None] = []

        def write() -> None:
            try:
                store["x"] = 1
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), "a write on a log that lost rows spins forever"
        raised = outcome.pop()
        assert isinstance(raised, CorruptLogError)
        del raised  # its traceback's frames: no cycle left for a later test's collection


def test_a_compaction_whose_forgetting_fails_leaves_the_store_writable(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection lost after the image landed, while old rows are forgotten (as a
    ``pg_terminate_backend`` then would): the next write lands at the new end, and a
    reopen reads every write."""
    engine = PostgresEngine(pg_dsn, name="users")
    with TypedStore.open(engine, str, int) as store:
        for number in range(5):
            store[f"k{number}"] = number
        real = _pg_engine.PostgresEngine._execute_script

        def failing(self: PostgresEngine, text: str, params: dict[str, Any]) -> int:
            if text is _pg_engine._FORGET_SQL:
                raise ConnectionError("lost")
            return real(self, text, params)

        monkeypatch.setattr(_pg_engine.PostgresEngine, "_execute_script", failing)
        with pytest.raises(ConnectionError):
            store.compact()
        monkeypatch.undo()
        done: list[bool] = []

        def write() -> None:
            store["x"] = 1
            done.append(True)

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        thread.join(10)
        assert done, "the write after the failed forgetting never returned"
        assert store["x"] == 1
    with TypedStore.open(engine, str, int) as again:
        assert dict(again) == {**{f"k{n}": n for n in range(5)}, "x": 1}
