"""Measure a database's collections against a TypedStore on the same records, side by side.

Run: ``python benchmarks/db_cost.py [RECORDS] [REPETITIONS]``. The same records go to one
``TypedStore`` and, spread round-robin, to three collections of one ``Database``; each
operation (insert, get, modify, remove, and open, which replays the log) is timed on both
in one process, the two taking turns of 500 operations (opens: one each), so that a change
in the machine's load falls on both alike. The report gives the median over the runs of
the microseconds per operation and the ratio database/TypedStore, then the median open
time per record of logs of the same records spread over 1, 3 and 30 collections, opened
in turns: replay per record must not grow with the number of collections. Times are the
process's CPU time (``time.process_time``): on a machine shared with other jobs,
wall-clock time moved by more than the differences measured here.
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


TURN = 500
"""Operations per turn: the two subjects take turns of this many operations each, so
that a change in the machine's load falls on both alike."""


def _run_both(
    folder: Path, run: int, users: list[tuple[str, User]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Time each operation on a TypedStore and on three collections, in turns of ``TURN``
    operations (the first turn alternating from run to run); return both times."""
    store_path, database_path = folder / f"store-{run}.log", folder / f"db-{run}.log"
    store_times: dict[str, float] = dict.fromkeys(
        ("insert", "get", "modify", "remove", "open"), 0.0
    )
    database_times = dict(store_times)
    with TypedStore.open(store_path, str, User) as store, Three.open(database_path) as database:
        collections = [database.first, database.second, database.third]
        store_targets = [(store, key, user) for key, user in users]
        database_targets = [(collections[i % 3], key, user) for i, (key, user) in enumerate(users)]
        for name in ("insert", "get", "modify", "remove"):
            if name == "remove":  # open is timed on the full log, before the removals
                store.flush()
                database.flush()
                for turn in range(6):
                    if (turn + run) % 2:
                        store_times["open"] += _time_open(
                            lambda: TypedStore.open(store_path, str, User, readonly=True)
                        )
                    else:
                        database_times["open"] += _time_open(
                            lambda: Three.open(database_path, readonly=True)
                        )
            for start in range(0, len(users), TURN):
                store_work = _phases(store_targets[start : start + TURN])[name]
                database_work = _phases(database_targets[start : start + TURN])[name]
                if (start // TURN + run) % 2:
                    store_times[name] += _time(store_work)
                    database_times[name] += _time(database_work)
                else:
                    database_times[name] += _time(database_work)
                    store_times[name] += _time(store_work)
    store_times["open"] /= 3
    database_times["open"] /= 3
    return store_times, database_times


def _time_open(open_: Callable[[], Any]) -> float:
    start = time.process_time()
    opened = open_()
    elapsed = time.process_time() - start
    opened.close()
    return elapsed


def _spread(folder: Path, users: list[tuple[str, User]], count: int) -> Callable[[], Any]:
    """Write a log of ``users`` spread over ``count`` collections; return its opening, by a
    class declaring every one (its codecs built by a first open, so that only replay is
    timed)."""
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
    return lambda: spread.open(path, readonly=True)


def _replay_per_record(
    folder: Path, users: list[tuple[str, User]], counts: tuple[int, ...], rounds: int
) -> dict[int, float]:
    """Return the median open time per record of logs of ``users`` spread over each of
    ``counts`` collections, the opens taking turns round by round."""
    opens = {count: _spread(folder, users, count) for count in counts}
    times: dict[int, list[float]] = {count: [] for count in counts}
    for round_ in range(rounds):
        order = counts if round_ % 2 else counts[::-1]
        for count in order:
            times[count].append(_time_open(opens[count]))
    return {count: statistics.median(times[count]) / len(users) for count in counts}


def main(argv: list[str]) -> None:
    """Alternate the two subjects, then print medians and ratios."""
    records = int(argv[1]) if len(argv) > 1 else 30_000
    repetitions = int(argv[2]) if len(argv) > 2 else 5
    users = _users(records)
    store_runs: list[dict[str, float]] = []
    database_runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for run in range(repetitions):  # turns alternate: neither always goes first
            store_times, database_times = _run_both(folder, run, users)
            store_runs.append(store_times)
            database_runs.append(database_times)
        spread = _replay_per_record(folder, users, (1, 3, 30), max(repetitions, 5))
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
