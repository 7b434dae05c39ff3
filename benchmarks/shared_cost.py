"""Measure shared mode: its cost per operation, and several processes writing at once.

Run from the project's root: ``python benchmarks/shared_cost.py [--n 3000] [--reps 3]``.

Two tables:

1. One process, a store of ``n`` users: microseconds of CPU time per insert, per get and
   per get inside ``with store.reading():`` blocks of ``PER_BLOCK`` gets (which look at
   the log once per block: README, "Reading many keys at once"), exclusive against
   ``shared=True`` (medians of ``reps`` runs, alternating).
2. 1, 2 and 4 processes at once, each inserting ``n`` users of its own, then reading
   them back: aggregate operations per second (wall clock from a common start to the
   last process's end), for typedstore shared, raw sqlite3 in WAL mode used the same way
   (one connection per process, autocommit, ``synchronous=NORMAL``: like typedstore's
   default, every write reaches the OS and none is fsynced) and lmdb (one environment per
   process, one write transaction per insert, ``sync=False``), if installed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path

from pydantic import BaseModel

from typedstore import TypedStore


class User(BaseModel):
    """The record every operation writes."""

    name: str
    email: str
    age: int


def user(index: int) -> User:
    return User(name=f"user {index}", email=f"u{index}@example.com", age=index % 90)


# -- one process: exclusive against shared ---------------------------------------------


PER_BLOCK = 100
"""How many gets share one ``reading()`` block in the block row."""


def per_operation(path: Path, n: int, shared: bool) -> tuple[float, float, float]:
    """Return CPU µs per insert, per get and per get in ``reading()`` blocks of
    ``PER_BLOCK``, of ``n`` users in a store opened so."""
    users = [user(i) for i in range(n)]
    keys = [f"k{index}" for index in range(n)]
    with TypedStore.open(path, str, User, shared=shared) as store:
        start = time.process_time()
        for key, value in zip(keys, users, strict=True):
            store[key] = value
        inserted = time.process_time()
        for key in keys:
            store.get(key)
        got = time.process_time()
        for first in range(0, n, PER_BLOCK):
            with store.reading():
                for key in keys[first : first + PER_BLOCK]:
                    store.get(key)
        done = time.process_time()
    return (inserted - start) / n * 1e6, (got - inserted) / n * 1e6, (done - got) / n * 1e6


def single_process_table(n: int, reps: int) -> list[str]:
    runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        for rep in range(reps):
            for shared in (False, True):
                path = Path(folder) / f"{rep}-{shared}.log"
                runs[shared].append(per_operation(path, n, shared))
    medians = {
        shared: [statistics.median(r[column] for r in found) for column in range(3)]
        for shared, found in runs.items()
    }
    (ins_x, get_x, block_x), (ins_s, get_s, block_s) = medians[False], medians[True]
    return [
        f"one process, {n} users, CPU µs per operation (median of {reps})",
        "| operation | exclusive | shared | shared / exclusive |",
        "|---|---:|---:|---:|",
        f"| insert | {ins_x:.2f} | {ins_s:.2f} | {ins_s / ins_x:.2f} |",
        f"| get | {get_x:.2f} | {get_s:.2f} | {get_s / get_x:.2f} |",
        f"| get in `reading()`, {PER_BLOCK} a block | {block_x:.2f} | {block_s:.2f} | "
        f"{block_s / block_x:.2f} |",
    ]


# -- several processes at once ------------------------------------------------------------


def typedstore_worker(path: Path, name: str, n: int) -> None:
    with TypedStore.open(path, str, User, shared=True) as store:
        for index in range(n):
            store[f"{name}:{index}"] = user(index)
        for index in range(n):
            store.get(f"{name}:{index}")


def sqlite_prepare(path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB)")
    connection.close()


def sqlite_worker(path: Path, name: str, n: int) -> None:
    connection = sqlite3.connect(path, isolation_level=None, timeout=60)
    connection.execute("PRAGMA synchronous=NORMAL")
    for index in range(n):
        connection.execute(
            "INSERT OR REPLACE INTO kv VALUES (?, ?)",
            (f"{name}:{index}", user(index).model_dump_json().encode()),
        )
    for index in range(n):
        row = connection.execute("SELECT value FROM kv WHERE key = ?", (f"{name}:{index}",))
        User.model_validate_json(row.fetchone()[0])
    connection.close()


def lmdb_worker(path: Path, name: str, n: int) -> None:
    import lmdb

    environment = lmdb.open(str(path), map_size=1 << 30, sync=False, subdir=True)
    for index in range(n):
        with environment.begin(write=True) as txn:
            txn.put(f"{name}:{index}".encode(), user(index).model_dump_json().encode())
    for index in range(n):
        with environment.begin() as txn:
            found = txn.get(f"{name}:{index}".encode())
            assert found is not None
            User.model_validate_json(found)
    environment.close()


Worker = Callable[[Path, str, int], None]


def _run(worker: Worker, path: Path, name: str, n: int, go: Event) -> None:
    go.wait()
    worker(path, name, n)


def aggregate(worker: Callable[[Path, str, int], None], path: Path, procs: int, n: int) -> float:
    """Return operations per second of ``procs`` processes running ``worker`` at once."""
    context = multiprocessing.get_context("fork")
    go = context.Event()
    started = [
        context.Process(target=_run, args=(worker, path, f"p{i}", n, go)) for i in range(procs)
    ]
    for process in started:
        process.start()
    time.sleep(0.5)  # every process forked and waiting
    begin = time.perf_counter()
    go.set()
    for process in started:
        process.join()
        assert process.exitcode == 0, process.exitcode
    return 2 * n * procs / (time.perf_counter() - begin)


def subjects() -> dict[str, tuple[Callable[[Path, str, int], None], Callable[[Path], None]]]:
    found: dict[str, tuple[Callable[[Path, str, int], None], Callable[[Path], None]]] = {
        "typedstore shared": (typedstore_worker, lambda path: None),
        "sqlite3 WAL": (sqlite_worker, sqlite_prepare),
    }
    try:
        import lmdb  # noqa: F401
    except ImportError:
        return found
    found["lmdb"] = (lmdb_worker, lambda path: None)
    return found


def multi_process_table(n: int, reps: int) -> list[str]:
    counts = (1, 2, 4)
    rows = []
    results: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (worker, prepare) in subjects().items():
            results[name] = {}
            for procs in counts:
                rates = []
                for rep in range(reps):
                    path = Path(folder) / f"{name.split()[0]}-{procs}-{rep}"
                    prepare(path)
                    rates.append(aggregate(worker, path, procs, n))
                results[name][procs] = statistics.median(rates)
            row = " | ".join(f"{results[name][procs]:,.0f}" for procs in counts)
            rows.append(f"| {name} | {row} |")
    base = results["sqlite3 WAL"][4]
    ratio = results["typedstore shared"][4] / base
    return [
        f"{n} inserts then {n} gets per process, all at once: aggregate ops/s (median of {reps})",
        "| subject | 1 process | 2 processes | 4 processes |",
        "|---|---:|---:|---:|",
        *rows,
        f"typedstore shared / sqlite3 WAL at 4 processes: {ratio:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"shared_cost, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print("\n".join(single_process_table(args.n, args.reps)))
    print()
    print("\n".join(multi_process_table(args.n, args.reps)))


if __name__ == "__main__":
    main()
