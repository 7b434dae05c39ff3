"""Measure what indexes cost: writes, lookups, ranges, open and memory, side by side.

Run: ``python benchmarks/index_cost.py [RECORDS] [REPETITIONS]``. The same records go to
collections of one type that differ only in their indexes (none, one unique hash index on
the email, one ordered index on the age, or three indexes), and each target compares a
subject with its baseline, measured back to back:

- a write (insert) with one hash index, and with one ordered index, against none;
- a unique lookup (``by_email.get``) against a ``get`` by key;
- a 100-entry ``range`` of the ordered index against 100 ``get`` calls;
- open (replay, then building the indexes) with three indexes against none;
- open then one insert, with three indexes against none: an open leaves what only writes
  read to the first write (no target: the cost an open defers, shown);

then the memory the indexes hold per entry (``tracemalloc``, a collection with the index
against one without, open; and for the three, after one write). README.md, "Indexes",
gives the cost model.

How it measures, and why (docs/BENCHMARKS.md, "Indexes (issue 14)", shows what the
earlier way gave on the same machine). On the shared machine the speed of the whole
process drifts by a quarter within a minute, and a median of whole runs per subject,
divided by the baseline's median, mixes runs made seconds apart: one drift lands in the
ratio whole. So each sample here is short and paired:

- Writes: per repetition, the four subjects' collections are filled side by side, in
  chunks of ``CHUNK`` inserts of the same records; each chunk is timed on every subject
  one after the other (the order turns by one each chunk, so none is always first), and
  gives one ratio per subject, its time over the unindexed one's. The collections grow
  in step, so both sides of a ratio write into a collection of the same size.
- Lookups and ranges: ``CHUNK`` gets against the unique lookups of the same entries, and
  ranges against gets of as many entries, each pair back to back, alternating which
  goes first.
- Open: an open with three indexes against one without, alternating which goes first.

The figure reported is the median of those paired ratios, with their quartiles to show
the spread; beside it, the ratio of the per-subject medians of each repetition's total
(what this script reported before) from the very same samples. Both sides do the same
work under the same rules: the cyclic garbage collector stays on while timing (a
subject pays for the collections its own allocations start) and is run to completion,
untimed, before every sample of every subject, so each starts with empty young
generations; the records are made once, before any timing, and frozen out of the
collector (``gc.freeze``) so that those collections do not walk them. Times are the
process's CPU time (user and system): no subject waits on fsync, and time the process
spends descheduled is left out of every sample alike.
"""

from __future__ import annotations

import functools
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


CHUNK = 1000
"""Operations per sample: each sample is short, so both sides of a pair run within
milliseconds of each other."""


def _time(work: Callable[[], object]) -> float:
    """Return the CPU seconds (user and system) ``work`` takes, from a collected heap."""
    gc.collect()  # untimed, before every sample of every subject alike
    start = time.process_time()
    work()
    return time.process_time() - start


def _inserting(collection: Any, pairs: list[tuple[str, User]]) -> Callable[[], None]:
    """Return what inserts ``pairs`` into ``collection``."""
    insert = collection.insert

    def work() -> None:
        for key, user in pairs:
            insert(key, user)

    return work


def _getting(collection: Any, keys: list[str]) -> Callable[[], None]:
    """Return what gets each of ``keys`` from ``collection``."""
    get = collection.get

    def work() -> None:
        for key in keys:
            get(key)

    return work


def _finding(collection: Any, emails: list[str]) -> Callable[[], None]:
    """Return what looks each of ``emails`` up in ``collection.by_email``, as a user
    writes it (the index's attribute read each time, as ``collection.get`` is)."""

    def work() -> None:
        for email in emails:
            collection.by_email.get(email)

    return work


def _ranging(collection: Any, starts: list[int], width: int) -> Callable[[], None]:
    """Return what reads ``collection.by_age.range(start, start + width)`` per start."""

    def work() -> None:
        for start in starts:
            collection.by_age.range(start, start + width)

    return work


Samples = dict[str, list[float]]
"""Each subject's sample times, in order; samples at one position form a pair."""


def _writes(folder: Path, users: list[tuple[str, User]], samples: Samples) -> None:
    """Fill one collection of each subject side by side, chunk by chunk; add each
    chunk's time per subject to ``samples`` (see the module docstring)."""
    names = list(SUBJECTS)
    databases = []
    try:
        for name in names:
            path = folder / f"write-{name}.log"
            path.unlink(missing_ok=True)
            databases.append(SUBJECTS[name].open(path))
        collections: list[Any] = [database.users for database in databases]  # type: ignore[attr-defined]  # every subject has one
        for turn, start in enumerate(range(0, len(users), CHUNK)):
            chunk = users[start : start + CHUNK]
            for step in range(len(names)):
                at = (turn + step) % len(names)
                took = _time(_inserting(collections[at], chunk))
                samples.setdefault(f"write {names[at]}", []).append(took)
    finally:
        for database in databases:
            database.close()


def _pair(
    samples: Samples,
    first: tuple[str, Callable[[], object]],
    second: tuple[str, Callable[[], object]],
    turn: int,
) -> None:
    """Time ``first`` and ``second`` back to back, in an order alternating with ``turn``."""
    pair = (first, second) if turn % 2 == 0 else (second, first)
    for name, work in pair:
        samples.setdefault(name, []).append(_time(work))


def _lookups(path: Path, users: list[tuple[str, User]], samples: Samples, turn: int) -> None:
    """Time unique lookups against gets of the same entries, and ranges against gets of as
    many entries, in pairs of ``CHUNK`` gets."""
    with ThreeDb.open(path, readonly=True) as database:
        collection = database.users
        keys = [key for key, _ in users]
        emails = [user.email for _, user in users]
        for start in range(0, len(keys), CHUNK):
            chunk, addresses = keys[start : start + CHUNK], emails[start : start + CHUNK]
            _pair(
                samples,
                ("get", _getting(collection, chunk)),
                ("unique get", _finding(collection, addresses)),
                turn + start // CHUNK,
            )
        # Ages repeat every 1000 entries: a range of one age holds len(users) / 1000 entries.
        per_age = len(users) // 1000
        width = max(1, 100 // per_age)
        starts = list(range(0, 1000 - width, width))
        got = collection.by_age.range(starts[0], starts[0] + width)
        assert len(got) == 100, len(got)
        per_sample = CHUNK // 100  # ranges per sample: CHUNK entries, as many as the gets
        for first in range(0, len(starts) - per_sample + 1, per_sample):
            ranged = starts[first : first + per_sample]
            chunk = keys[first * 100 : (first + per_sample) * 100]
            _pair(
                samples,
                ("range 100", _ranging(collection, ranged, width)),
                ("100 gets", _getting(collection, chunk)),
                turn + first,
            )


def _open(path: Path, cls: type[Database]) -> None:
    cls.open(path, readonly=True).close()


def _open_and_write(path: Path, cls: type[Database], scratch: Path) -> Callable[[], None]:
    """Return what opens a fresh copy of ``path`` and inserts one new entry, the copy made
    before (untimed)."""
    shutil.copyfile(path, scratch)
    user = _new_user()

    def work() -> None:
        with cls.open(scratch) as database:
            database.users.insert("new", user)  # type: ignore[attr-defined]  # every subject has one

    return work


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


def _opens(folder: Path, log: Path, samples: Samples, turn: int) -> None:
    """Time opens, and opens with one write, with three indexes against none, in pairs."""
    _pair(
        samples,
        ("open none", functools.partial(_open, log, PlainDb)),
        ("open three", functools.partial(_open, log, ThreeDb)),
        turn,
    )
    # Each side writes to its own copy, made before the pair: the copies are not timed.
    none = _open_and_write(log, PlainDb, folder / "scratch-none.log")
    three = _open_and_write(log, ThreeDb, folder / "scratch-three.log")
    _pair(samples, ("open+write none", none), ("open+write three", three), turn)


def _ratios(samples: Samples, subject: str, baseline: str) -> list[float]:
    """Return each pair's ratio, ``subject`` over ``baseline``."""
    pairs = zip(samples[subject], samples[baseline], strict=True)
    return sorted(mine / theirs for mine, theirs in pairs)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    low, middle, high = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return low, middle, high


ROWS = [
    ("write, one hash index", "write hash", "write none", 1.3),
    ("write, one ordered index", "write ordered", "write none", 1.6),
    ("unique lookup vs get", "unique get", "get", 1.3),
    ("100-entry range vs 100 gets", "range 100", "100 gets", 2.0),
    ("open, three indexes", "open three", "open none", 1.3),
    ("open + one write, three indexes", "open+write three", "open+write none", 0.0),
]
"""Each target: its label, the subject, its baseline, the target (0: none)."""

PER = {"write": CHUNK, "get": CHUNK, "unique": CHUNK, "range": CHUNK // 100, "100": CHUNK // 100}
"""Operations per sample, by a sample name's first word; an open's time is given per entry."""


def main(argv: list[str]) -> None:
    """Time every pair, then print the ratios against the targets, and memory."""
    records = int(argv[1]) if len(argv) > 1 else 20_000
    repetitions = int(argv[2]) if len(argv) > 2 else 5
    users = _users(records)
    gc.collect()
    gc.freeze()  # the records live throughout: no collection needs to walk them
    samples: Samples = {}
    totals: Samples = {}  # per repetition, each subject's total: what the old report used
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        log = folder / "full.log"
        with ThreeDb.open(log) as database:
            for key, user in users:
                database.users.insert(key, user)
        for turn in range(repetitions):
            these: Samples = {}
            _writes(folder, users, these)
            _lookups(log, users, these, turn)
            _opens(folder, log, these, turn)
            for name, times in these.items():
                samples.setdefault(name, []).extend(times)
                totals.setdefault(name, []).append(sum(times))
        memory = {name: _memory_per_entry(log, SUBJECTS[name], records) for name in SUBJECTS}
        memory["three, written"] = _memory_after_a_write(log, ThreeDb, records)
    gc.unfreeze()
    pairs = len(samples["write none"]) // repetitions
    print(
        f"{records} records, {repetitions} repetitions; per repetition {pairs} write pairs"
        f" of {CHUNK} inserts, {len(samples['get']) // repetitions} lookup pairs,"
        f" {len(samples['range 100']) // repetitions} range pairs, 1 open pair"
    )
    print(
        f"{'workload':<34}{'us/op':>9}{'base us':>9}{'paired':>8}{'q1':>7}{'q3':>7}"
        f"{'old':>7}{'target':>8}"
    )
    for label, subject, baseline, target in ROWS:
        per = PER.get(subject.split()[0], records)
        median = statistics.median(samples[subject]) / per * 1e6
        base = statistics.median(samples[baseline]) / PER.get(baseline.split()[0], records) * 1e6
        low, middle, high = _quartiles(_ratios(samples, subject, baseline))
        old = statistics.median(totals[subject]) / statistics.median(totals[baseline])
        shown = f"{target:>8.1f}" if target else f"{'-':>8}"
        print(
            f"{label:<34}{median:>9.2f}{base:>9.2f}{middle:>8.2f}{low:>7.2f}{high:>7.2f}"
            f"{old:>7.2f}{shown}"
        )
    print(
        "us/op, base us: median sample per operation (opens: per entry); paired: median of"
        " the pairs' ratios (q1, q3: their quartiles); old: median total per repetition over"
        " the baseline's"
    )
    print("memory the indexes hold, bytes per entry:")
    for name in ("hash", "ordered", "three", "three, written"):
        print(f"  {name:<16}{memory[name]:>8.0f}")


if __name__ == "__main__":
    main(sys.argv)
