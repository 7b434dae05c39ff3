"""Measure a store in PostgreSQL against the peers a user would otherwise pick.

Run from the project's root: ``python benchmarks/pg_cost.py [--n 10000]``. It starts a
private PostgreSQL server with ``tests/pg.py``'s helper (``initdb`` and ``pg_ctl`` on the
PATH; unix socket, ``fsync=off`` for all three alike) and removes it afterwards.

On the same server, one row per key for the peers:

- typedstore: ``TypedStore.open(PostgresEngine(dsn, name=...), str, User)``; a write is
  one compare-and-append round trip, a read one round trip (did the log grow?) and a
  dict lookup.
- typedstore, ``reading()`` per N gets (N = 100 and 1,000): the same store's gets in
  ``with store.reading():`` blocks of N, which look at the log once each (README,
  "Reading many keys at once"); no insert of their own.
- raw psycopg: a table ``(key text primary key, value jsonb)``, autocommit, one
  ``INSERT ... ON CONFLICT DO UPDATE`` per insert and one ``SELECT`` per get.
- SQLModel (the ``bench`` extra), if installed: the same table as a model, one session
  commit per insert, ``session.get`` per get in a fresh session.

Each insert builds its ``User`` and each peer serialises it as it goes. typedstore and raw
psycopg take turns (``ROUNDS``), so that a busy machine weighs on both alike; their rows
are the median round's time per operation.

Where Linux's ``/proc/PID/schedstat`` is readable, the insert rounds also count, for
typedstore and raw psycopg, the CPU time per insert of the client (this process) and of
its server process (its connection's backend), and the time both spent runnable but
waiting for a CPU: both make one round trip per insert, so on a busy machine their
times differ by what they compute, while the waits for a CPU, which one round trip
each costs alike, stretch both (and move from round to round).

Then: catch-up (an instance that has read nothing yet reads ``n`` records another
instance wrote, in its first operation), and 4 processes inserting ``n // 4`` keys each
at once: no position lost or duplicated, every key there.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import psycopg
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.pg import make_server

from typedstore import PostgresEngine, TypedStore


class User(BaseModel):
    name: str
    age: int
    email: str


def user(number: int) -> User:
    return User(name=f"user {number}", age=number % 90, email=f"u{number}@example.com")


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


ROUNDS = 10
"""typedstore and raw psycopg take turns, a tenth of the keys each time: on a busy machine
both meet the same load, and each row reports its median round."""


PER_BLOCK = (100, 1_000)
"""How many gets share one ``reading()`` block, in the block rows."""


class Workload(Protocol):
    """One contender's insert and get, on a slice of the keys at a time."""

    inserts: bool
    """Whether :meth:`insert` writes (else another workload's inserts are its keys)."""
    backend: int | None
    """The process id of the server process its inserts run on, if known."""

    def insert(self, keys: list[str], numbers: range) -> None: ...
    def get(self, keys: list[str]) -> None: ...


class StoreWorkload:
    """typedstore: ``store[key] = value`` and ``store[key]``."""

    inserts = True
    backend: int | None = None

    def __init__(self, store: TypedStore[str, User]) -> None:
        self.store = store

    def insert(self, keys: list[str], numbers: range) -> None:
        store = self.store
        for key, number in zip(keys, numbers, strict=True):
            store[key] = user(number)

    def get(self, keys: list[str]) -> None:
        store = self.store
        for key in keys:
            store[key]


class ReadingWorkload:
    """typedstore's ``store[key]`` in ``with store.reading():`` blocks of ``per`` gets, on
    the keys a :class:`StoreWorkload` of the same store inserted."""

    inserts = False
    backend: int | None = None

    def __init__(self, store: TypedStore[str, User], per: int) -> None:
        self.store = store
        self.per = per

    def insert(self, keys: list[str], numbers: range) -> None:
        pass

    def get(self, keys: list[str]) -> None:
        store, per = self.store, self.per
        for first in range(0, len(keys), per):
            with store.reading():
                for key in keys[first : first + per]:
                    store[key]


class PsycopgWorkload:
    """Raw psycopg: an autocommit upsert per insert, a ``SELECT`` per get."""

    inserts = True

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self.conn = conn
        self.backend: int | None = conn.info.backend_pid
        conn.execute("CREATE TABLE raw_users (key text PRIMARY KEY, value jsonb NOT NULL)")

    def insert(self, keys: list[str], numbers: range) -> None:
        for key, number in zip(keys, numbers, strict=True):
            self.conn.execute(
                "INSERT INTO raw_users VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, user(number).model_dump_json()),
            )

    def get(self, keys: list[str]) -> None:
        for key in keys:
            row = self.conn.execute("SELECT value FROM raw_users WHERE key = %s", (key,)).fetchone()
            assert row is not None
            User.model_validate(row[0])


def schedstat(backend: int) -> tuple[int, int, int] | None:
    """Return the nanoseconds this process ran on a CPU, the nanoseconds server process
    ``backend`` did, and those both waited, runnable, for a CPU, so far (Linux's
    ``/proc/PID/schedstat``); None where they cannot be read."""
    try:
        counts = []
        for pid in ("self", backend):
            with open(f"/proc/{pid}/schedstat") as file:
                ran, waited, _ = file.read().split()
            counts.append((int(ran), int(waited)))
    except (OSError, ValueError):
        return None
    (client_ran, client_waited), (server_ran, server_waited) = counts
    return client_ran, server_ran, client_waited + server_waited


CPU_KINDS = ("client CPU", "server CPU", "waiting for a CPU")


def bench_interleaved(
    workloads: dict[str, Workload], n: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Run each workload's inserts, then its gets, in ``ROUNDS`` turns; return the median
    seconds per operation of each, and for each inserting workload whose server process
    is known the median seconds per insert of each of :data:`CPU_KINDS`."""
    keys = [f"k{number}" for number in range(n)]
    step = max(1, n // ROUNDS)
    times: dict[str, dict[str, list[float]]] = {
        name: {"insert": [], "get": []} for name in workloads
    }
    cpu: dict[str, dict[str, list[float]]] = {
        name: {kind: [] for kind in CPU_KINDS}
        for name, workload in workloads.items()
        if workload.inserts and workload.backend is not None
    }
    for operation in ("insert", "get"):
        for first in range(0, n, step):
            part = keys[first : first + step]
            numbers = range(first, first + len(part))
            for name, workload in workloads.items():
                backend = workload.backend
                before = None
                if operation == "insert" and name in cpu and backend is not None:
                    before = schedstat(backend)
                if operation == "insert":
                    seconds = timed(lambda: workload.insert(part, numbers))  # noqa: B023  # called at once
                else:
                    seconds = timed(lambda: workload.get(part))  # noqa: B023  # called at once
                times[name][operation].append(seconds / len(part))
                if name in cpu and operation == "insert":
                    after = schedstat(backend) if backend is not None else None
                    if before is None or after is None:
                        del cpu[name]  # not readable here
                        continue
                    for kind, start, end in zip(CPU_KINDS, before, after, strict=True):
                        cpu[name][kind].append((end - start) / 1e9 / len(part))
    medians = {
        name: {operation: statistics.median(values) for operation, values in rows.items()}
        for name, rows in times.items()
    }
    cpu_medians = {
        name: {kind: statistics.median(values) for kind, values in rows.items()}
        for name, rows in cpu.items()
    }
    return medians, cpu_medians


def bench_sqlmodel(dsn: str, n: int) -> dict[str, float] | None:
    try:
        from sqlalchemy import JSON, Column
        from sqlmodel import Field, Session, SQLModel, create_engine
    except ImportError:
        return None

    class Row(SQLModel, table=True):  # type: ignore[misc, call-arg, unused-ignore]  # Any without the bench extra
        __tablename__ = "sqlmodel_users"
        key: str = Field(primary_key=True)
        value: dict[str, object] = Field(sa_column=Column(JSON))

    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn, autocommit=False)
    )
    SQLModel.metadata.create_all(engine)
    keys = [f"k{number}" for number in range(n)]

    def insert() -> None:
        for number, key in enumerate(keys):
            with Session(engine) as session:
                session.merge(Row(key=key, value=user(number).model_dump()))
                session.commit()

    def get() -> None:
        for key in keys:
            with Session(engine) as session:
                row = session.get(Row, key)
                assert row is not None
                User.model_validate(row.value)

    result = {"insert": timed(insert) / n, "get": timed(get) / n}
    engine.dispose()
    return result


def bench_catch_up(dsn: str, n: int) -> float:
    engine = PostgresEngine(dsn, name="bench_catch_up")
    with TypedStore.open(engine, str, User) as writer, TypedStore.open(engine, str, User) as reader:
        for number in range(n):
            writer[f"k{number}"] = user(number)
        seconds = timed(lambda: len(reader))
        assert len(reader) == n
        return seconds


def _insert_many(dsn: str, who: int, count: int) -> None:
    with TypedStore.open(PostgresEngine(dsn, name="bench_many"), str, User) as store:
        for number in range(count):
            store[f"p{who}-{number}"] = user(number)


def bench_processes(dsn: str, n: int) -> tuple[float, str]:
    with TypedStore.open(PostgresEngine(dsn, name="bench_many"), str, User):
        pass  # the log exists before they start
    count = n // 4
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_insert_many, args=(dsn, who, count)) for who in range(4)]
    start = time.perf_counter()
    for child in children:
        child.start()
    for child in children:
        child.join()
    seconds = time.perf_counter() - start
    assert all(child.exitcode == 0 for child in children)
    with TypedStore.open(PostgresEngine(dsn, name="bench_many"), str, User) as store:
        missing = [
            f"p{who}-{number}"
            for who in range(4)
            for number in range(count)
            if f"p{who}-{number}" not in store
        ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        positions = [
            row[0] for row in conn.execute("SELECT position FROM bench_many_log ORDER BY 1")
        ]
    consecutive = positions == list(range(len(positions)))
    verdict = (
        f"{len(positions) - 1} records, positions consecutive: {consecutive}, "
        f"missing keys: {len(missing)}"
    )
    return 4 * count / seconds, verdict


def only_other_backend(conn: psycopg.Connection[tuple[object, ...]]) -> int | None:
    """Return the process id of the one client backend other than ``conn``'s, or None
    if there is not exactly one."""
    found = conn.execute(
        "SELECT pid FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    ).fetchall()
    return int(str(found[0][0])) if len(found) == 1 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="typedstore-pgbench-"))
    root.chmod(0o755)
    server = make_server(root)
    try:
        dsn = server.dsn()
        with (
            TypedStore.open(PostgresEngine(dsn, name="bench_store"), str, User) as users,
            psycopg.connect(dsn, autocommit=True) as conn,
        ):
            store = StoreWorkload(users)
            # The one other client's server process: the store's connection.
            store.backend = only_other_backend(conn)
            workloads: dict[str, Workload] = {
                "typedstore": store,
                "raw psycopg": PsycopgWorkload(conn),
                **{f"reading() / {per}": ReadingWorkload(users, per) for per in PER_BLOCK},
            }
            rows, cpu = bench_interleaved(workloads, args.n)
            inserting = {name for name, workload in workloads.items() if workload.inserts}
        sqlmodel = bench_sqlmodel(dsn, args.n)
        if sqlmodel is not None:
            rows["SQLModel"] = sqlmodel
            inserting.add("SQLModel")
        print(f"n = {args.n}, one row per key, loopback unix socket, fsync=off")
        print(f"{'':18} {'insert µs':>10} {'get µs':>10}")
        for name, row in rows.items():
            insert = f"{row['insert'] * 1e6:10.1f}" if name in inserting else f"{'-':>10}"
            print(f"{name:18} {insert} {row['get'] * 1e6:10.1f}")
        ours = rows["typedstore"]
        peers = {name: row for name, row in rows.items() if name in inserting - {"typedstore"}}
        for name, row in peers.items():
            print(
                f"vs {name}: insert {row['insert'] / ours['insert']:.2f}x as fast, "
                f"get {row['get'] / ours['get']:.1f}x as fast"
            )
        if cpu:
            print("per insert, median round, µs: " + ", ".join(CPU_KINDS))
            for name, kinds in cpu.items():
                print(f"  {name:16} " + " ".join(f"{kinds[kind] * 1e6:8.1f}" for kind in CPU_KINDS))
        for per in PER_BLOCK:
            block = rows[f"reading() / {per}"]["get"]
            ratios = ", ".join(f"{name} {row['get'] / block:.0f}x" for name, row in peers.items())
            print(f"get in reading() blocks of {per}: {ratios} as fast as the peer's get")
        print(f"catch-up of {args.n} records: {bench_catch_up(dsn, args.n):.3f} s")
        rate, verdict = bench_processes(dsn, args.n)
        print(f"4 processes inserting {args.n // 4} each: {rate:,.0f} inserts/s; {verdict}")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
