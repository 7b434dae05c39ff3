"""Measure a database's collections against a TypedStore on the same records, side by side.

Run: ``python benchmarks/db_cost.py [RECORDS] [REPETITIONS]``. The same records go to one
``TypedStore`` and, spread round-robin, to three collections of one ``Database``; each
operation (insert, get, modify, remove, and open, which replays the log) is timed on both
in alternation on fresh logs in one process. The report gives the median microseconds per
operation and the ratio database/TypedStore, then the open time per record of logs of the
same records spread over 1, 3 and 30 collections: replay per record must not grow with the
number of collections. Times are the process's CPU time (``time.process_time``): on a
machine shared with other jobs, wall-clock time moved by more than the differences
measured here.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from typedstore import Collection, Database, TypedStore


class User(BaseModel):
    """The record every operation writes."""

    name: str
    email: str
    age: int
    tags: list[str]
    created: datetime


class Three(Database):
    """Three collections of the same types."""

    first: Collection[str, User]
    second: Collection[str, User]
    third: Collection[str, User]


def _users(count: int) -> list[tuple[str, User]]:
    now = datetime.now(UTC)
    return [
        (f"user{i}", User(name=f"n{i}", email=f"u{i}@x.org", age=i, tags=["a"], created=now))
        for i in range(count)
    ]


def _older(user: User) -> User:
    return user.model_copy(update={"age": user.age + 1})


Targets = list[tuple[Any, str, User]]
"""Each record with the mapping (store or collection) it goes to."""


def _phases(targets: Targets) -> dict[str, Callable[[], None]]:
    def insert() -> None:
        for mapping, key, user in targets:
            mapping.insert(key, user)

    def get() -> None:
        for mapping, key, _ in targets:
            mapping.get(key)

    def modify() -> None:
        for mapping, key, _ in targets:
            mapping.modify(key, _older)

    def remove() -> None:
        for mapping, key, _ in targets:
            mapping.remove(key)

    return {"insert": insert, "get": get, "modify": modify, "remove": remove}


def _time(work: Callable[[], None]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def _run_store(path: Path, users: list[tuple[str, User]]) -> dict[str, float]:
    times = {}
    with TypedStore.open(path, str, User) as store:
        targets = [(store, key, user) for key, user in users]
        for name, work in _phases(targets).items():
            if name == "remove":  # open is timed on the full log, before the removals
                store.flush()
                times["open"] = _time_open(lambda: TypedStore.open(path, str, User, readonly=True))
            times[name] = _time(work)
    return times


def _run_database(path: Path, users: list[tuple[str, User]]) -> dict[str, float]:
    times = {}
    with Three.open(path) as database:
        collections = [database.first, database.second, database.third]
        targets = [(collections[i % 3], key, user) for i, (key, user) in enumerate(users)]
        for name, work in _phases(targets).items():
            if name == "remove":
                database.flush()
                times["open"] = _time_open(lambda: Three.open(path, readonly=True))
            times[name] = _time(work)
    return times


def _time_open(open_: Callable[[], Any]) -> float:
    start = time.process_time()
    opened = open_()
    elapsed = time.process_time() - start
    opened.close()
    return elapsed


def _replay_per_record(folder: Path, users: list[tuple[str, User]], count: int) -> float:
    """Return the open time per record of a log of ``users`` spread over ``count``
    collections, every one declared by the opening class (whose codecs are built once,
    by a first open, so that only replay is timed)."""
    path = folder / f"spread-{count}.log"
    path.unlink(missing_ok=True)
    names = [f"c{i}" for i in range(count)]
    spread: type[Database] = type(
        f"Spread{count}",
        (Database,),
        {"__annotations__": dict.fromkeys(names, Collection[str, User])},
    )
    with spread.open(path) as database:
        collections = [getattr(database, name) for name in names]
        for i, (key, user) in enumerate(users):
            collections[i % count][key] = user
    return min(_time_open(lambda: spread.open(path, readonly=True)) for _ in range(3)) / len(users)


def main(argv: list[str]) -> None:
    """Alternate the two subjects, then print medians and ratios."""
    records = int(argv[1]) if len(argv) > 1 else 30_000
    repetitions = int(argv[2]) if len(argv) > 2 else 5
    users = _users(records)
    store_runs: list[dict[str, float]] = []
    database_runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for run in range(repetitions):  # the order alternates: neither always runs second
            if run % 2:
                database_runs.append(_run_database(folder / f"db-{run}.log", users))
            store_runs.append(_run_store(folder / f"store-{run}.log", users))
            if not run % 2:
                database_runs.append(_run_database(folder / f"db-{run}.log", users))
        spread = {count: _replay_per_record(folder, users, count) for count in (1, 3, 30)}
    print(f"{records} records, median of {repetitions} runs, microseconds per operation")
    print(f"{'operation':<10}{'TypedStore':>12}{'3 collections':>16}{'ratio':>8}")
    for name in ("insert", "get", "modify", "remove", "open"):
        store = statistics.median(run[name] for run in store_runs) / records * 1e6
        database = statistics.median(run[name] for run in database_runs) / records * 1e6
        print(f"{name:<10}{store:>12.2f}{database:>16.2f}{database / store:>8.3f}")
    print("open (replay) per record, by collections the records are spread over:")
    for count, seconds in spread.items():
        print(f"  {count:>3} collections: {seconds * 1e6:.2f} us")


if __name__ == "__main__":
    main(sys.argv)
