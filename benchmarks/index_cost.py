"""Measure what indexes cost: writes, lookups, ranges, open and memory, side by side.

Run: ``python benchmarks/index_cost.py [RECORDS] [REPETITIONS]``. The same records go to
collections of one type that differ only in their indexes (none, one unique hash index on
the email, one ordered index on the age, or three indexes); each workload is timed on the
subjects in alternation on fresh logs in one process, and the report gives the median
CPU microseconds per operation and the ratio against the issue's target:

- a write (insert) with one hash index, and with one ordered index, against none;
- a unique lookup (``by_email.get``) against a ``get`` by key;
- a 100-entry ``range`` of the ordered index against 100 ``get`` calls;
- open (replay, then building the indexes) with three indexes against none;
- open then one insert, with three indexes against none: an open leaves what only writes
  read to the first write (no target: the cost an open defers, shown);

then the memory the indexes hold per entry (``tracemalloc``, a collection with the index
against one without, open; and for the three, after one write). README.md, "Indexes",
gives the cost model.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from typedstore import Collection, Database, Index


class User(BaseModel):
    """The record every operation writes."""

    name: str
    email: str
    age: int
    tags: list[str]
    created: datetime


def _email(user: User) -> str:
    return user.email


def _age(user: User) -> int:
    return user.age


def _tags(user: User) -> list[str]:
    return user.tags


class Plain(Collection[str, User]):
    """No index."""


class Hashed(Collection[str, User]):
    """One unique hash index."""

    by_email = Index(_email, unique=True)


class Ordered(Collection[str, User]):
    """One ordered index (ages repeat: not unique)."""

    by_age = Index(_age, ordered=True)


class Three(Collection[str, User]):
    """Three indexes: unique hash, ordered, multi."""

    by_email = Index(_email, unique=True)
    by_age = Index(_age, ordered=True)
    by_tag = Index(_tags, multi=True)


class PlainDb(Database):
    users: Plain


class HashedDb(Database):
    users: Hashed


class OrderedDb(Database):
    users: Ordered


class ThreeDb(Database):
    users: Three


SUBJECTS: dict[str, type[Database]] = {
    "none": PlainDb,
    "hash": HashedDb,
    "ordered": OrderedDb,
    "three": ThreeDb,
}


def _users(count: int) -> list[tuple[str, User]]:
    now = datetime.now(UTC)
    return [
        (
            f"user{i}",
            User(name=f"n{i}", email=f"u{i}@x.org", age=i % 1000, tags=[f"t{i % 50}"], created=now),
        )
        for i in range(count)
    ]


def _new_user() -> User:
    """Return a user none of :func:`_users` conflicts with."""
    return User(name="new", email="new@x.org", age=7, tags=["t7"], created=datetime.now(UTC))


def _time(work: Callable[[], object]) -> float:
    """Return the CPU seconds (user and system) ``work`` takes: steadier than wall clock on
    a shared machine, and the same for every subject (none of them waits on fsync)."""
    start = time.process_time()
    work()
    return time.process_time() - start


def _write(path: Path, cls: type[Database], users: list[tuple[str, User]]) -> float:
    """Return the seconds to insert ``users`` into a new collection of ``cls``."""
    path.unlink(missing_ok=True)
    with cls.open(path) as database:
        users_of: Any = database.users  # type: ignore[attr-defined]  # every subject has one
        return _time(lambda: [users_of.insert(key, user) for key, user in users])


def _open(path: Path, cls: type[Database]) -> float:
    start = time.process_time()
    database = cls.open(path, readonly=True)
    elapsed = time.process_time() - start
    database.close()
    return elapsed


def _open_and_write(path: Path, cls: type[Database], scratch: Path) -> float:
    """Return the seconds to open a copy of ``path`` and insert one new entry."""
    shutil.copyfile(path, scratch)
    user = _new_user()
    start = time.process_time()
    database = cls.open(scratch)
    database.users.insert("new", user)  # type: ignore[attr-defined]  # every subject has one
    elapsed = time.process_time() - start
    database.close()
    return elapsed


def _lookups(path: Path, users: list[tuple[str, User]]) -> dict[str, float]:
    """Time a unique lookup against a get, and 100-entry ranges against 100 gets."""
    times: dict[str, float] = {}
    with ThreeDb.open(path, readonly=True) as database:
        collection = database.users
        keys = [key for key, _ in users]
        emails = [user.email for _, user in users]
        times["get"] = _time(lambda: [collection.get(key) for key in keys])
        times["unique get"] = _time(lambda: [collection.by_email.get(e) for e in emails])
        # Ages repeat every 1000 entries: a range of one age holds len(users) / 1000 entries.
        per_age = len(users) // 1000
        width = max(1, 100 // per_age)
        starts = list(range(0, 1000 - width, width))
        got = collection.by_age.range(starts[0], starts[0] + width)
        assert len(got) == 100, len(got)
        chunks = [keys[i : i + 100] for i in range(0, len(keys) - 100, 100)][: len(starts)]
        times["range 100"] = _time(
            lambda: [collection.by_age.range(s, s + width) for s in starts]
        ) / len(starts)
        times["100 gets"] = _time(
            lambda: [[collection.get(key) for key in chunk] for chunk in chunks]
        ) / len(chunks)
    return times


def _memory_per_entry(path: Path, cls: type[Database], records: int) -> float:
    """Return the bytes per entry an open collection of ``cls`` holds more than ``PlainDb``."""

    def held(opened: type[Database]) -> int:
        gc.collect()
        tracemalloc.start()
        database = opened.open(path, readonly=True)
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        database.close()
        return size

    return (held(cls) - held(PlainDb)) / records


def _memory_after_a_write(path: Path, cls: type[Database], records: int) -> float:
    """Return :func:`_memory_per_entry` of a copy of ``path`` open, one entry written."""

    def held(opened: type[Database]) -> int:
        scratch = path.with_name("memory.log")
        shutil.copyfile(path, scratch)
        gc.collect()
        tracemalloc.start()
        database = opened.open(scratch)
        database.users.insert("new", _new_user())  # type: ignore[attr-defined]  # as above
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        database.close()
        return size

    return (held(cls) - held(PlainDb)) / records


def main(argv: list[str]) -> None:
    """Alternate the subjects, then print medians and ratios against the targets."""
    records = int(argv[1]) if len(argv) > 1 else 20_000
    repetitions = int(argv[2]) if len(argv) > 2 else 5
    users = _users(records)
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        log = folder / "full.log"
        for _ in range(repetitions):
            for name, cls in SUBJECTS.items():
                runs.setdefault(f"write {name}", []).append(_write(log, cls, users))
            for name in ("none", "three"):
                runs.setdefault(f"open {name}", []).append(_open(log, SUBJECTS[name]))
            for name in ("none", "three"):
                took = _open_and_write(log, SUBJECTS[name], folder / "scratch.log")
                runs.setdefault(f"open+write {name}", []).append(took)
            for name, seconds in _lookups(log, users).items():
                runs.setdefault(name, []).append(seconds)
        memory = {name: _memory_per_entry(log, SUBJECTS[name], records) for name in SUBJECTS}
        memory["three, written"] = _memory_after_a_write(log, ThreeDb, records)
    median = {name: statistics.median(times) for name, times in runs.items()}
    per_op = {name: seconds / records * 1e6 for name, seconds in median.items()}
    print(f"{records} records, median of {repetitions} runs")
    print(f"{'workload':<34}{'us':>10}{'baseline us':>13}{'ratio':>8}{'target':>8}")
    rows = [
        ("write, one hash index", "write hash", "write none", 1.3),
        ("write, one ordered index", "write ordered", "write none", 1.6),
        ("unique lookup vs get", "unique get", "get", 1.3),
        ("open, three indexes", "open three", "open none", 1.3),
        ("open + one write, three indexes", "open+write three", "open+write none", 0.0),
    ]
    for label, subject, baseline, target in rows:
        ratio = median[subject] / median[baseline]
        shown = f"{target:>8.1f}" if target else f"{'-':>8}"
        print(f"{label:<34}{per_op[subject]:>10.2f}{per_op[baseline]:>13.2f}{ratio:>8.2f}{shown}")
    ranged, gets = median["range 100"] * 1e6, median["100 gets"] * 1e6
    print(
        f"{'100-entry range vs 100 gets':<34}{ranged:>10.2f}{gets:>13.2f}{ranged / gets:>8.2f}"
        f"{2.0:>8.1f}"
    )
    print("memory the indexes hold, bytes per entry:")
    for name in ("hash", "ordered", "three", "three, written"):
        print(f"  {name:<16}{memory[name]:>8.0f}")


if __name__ == "__main__":
    main(sys.argv)
