"""The five scenarios of the Rust crate ``indexmap_store``'s benchmark, for any subject.

Each scenario builds a fresh store, times its workload, then reads every entry back and
compares it with a plain dict; a wrong answer exits with status 2, as the worker's phases
do. The sizes are the crate's, whatever ``--n`` says.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Protocol

#: How often each scenario runs in one worker; the worker reports the median.
REPEATS = 3


class KV(Protocol):
    """The part of a mapping the scenarios use: typedstore, the floor and peer adapters."""

    def __setitem__(self, key: Any, value: Any) -> None: ...

    def get(self, key: Any) -> Any: ...

    def modify(self, key: Any, fn: Callable[[Any], Any]) -> Any: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


#: Opens (or creates) a store at a path for a key type and a value type.
Opener = Callable[[Path, type[Any], type[Any]], KV]


def _fail(subject: str, scenario: str, message: str) -> NoReturn:
    print(
        f"bench_worker: read-back mismatch: subject={subject} phase={scenario} {message}",
        file=sys.stderr,
    )
    sys.exit(2)


def _verify(store: KV, expected: dict[Any, Any], absent: Any, where: tuple[str, str]) -> None:
    """Read every expected key back, and one key that must be absent."""
    for key, want in expected.items():
        got = store.get(key)
        if got != want:
            _fail(*where, f"key={key!r} expected={want!r} got={got!r}")
    if store.get(absent) is not None:
        _fail(*where, f"key={absent!r} expected absent, got a value")


def _filled(opener: Opener, path: Path, pairs: dict[Any, Any]) -> KV:
    store = opener(path, int, int)
    for key, value in pairs.items():
        store[key] = value
    store.flush()
    return store


def insert_10k_ints(opener: Opener, path: Path, subject: str) -> float:
    """10,000 inserts of ``i -> 7 i`` into a new int -> int store, then flush."""
    expected = {i: i * 7 for i in range(10_000)}
    store = opener(path, int, int)
    start = time.perf_counter()
    for key, value in expected.items():
        store[key] = value
    store.flush()
    seconds = time.perf_counter() - start
    _verify(store, expected, 10_000, (subject, "insert_10k_ints"))
    store.close()
    return seconds


def insert_2k_strings(opener: Opener, path: Path, subject: str) -> float:
    """2,000 inserts of ``key:000042 -> value-42-000...042`` into a str -> str store."""
    expected = {f"key:{i:06d}": f"value-{i}-{i:032d}" for i in range(2_000)}
    store = opener(path, str, str)
    start = time.perf_counter()
    for key, value in expected.items():
        store[key] = value
    store.flush()
    seconds = time.perf_counter() - start
    _verify(store, expected, "key:002000", (subject, "insert_2k_strings"))
    store.close()
    return seconds


def _plus_one(value: int) -> int:
    return value + 1


def modify_10k(opener: Opener, path: Path, subject: str) -> float:
    """10,000 modifies adding one to each value of a 10,000-entry int -> int store."""
    store = _filled(opener, path, dict.fromkeys(range(10_000), 0))
    start = time.perf_counter()
    for key in range(10_000):
        store.modify(key, _plus_one)
    store.flush()
    seconds = time.perf_counter() - start
    _verify(store, dict.fromkeys(range(10_000), 1), 10_000, (subject, "modify_10k"))
    store.close()
    return seconds


def lookup_100k(opener: Opener, path: Path, subject: str) -> float:
    """100,000 gets, ``i % 10,000``, from a 10,000-entry int -> int store."""
    expected = {i: i for i in range(10_000)}
    store = _filled(opener, path, expected)
    get = store.get
    start = time.perf_counter()
    total = 0
    for i in range(100_000):
        total += get(i % 10_000)
    seconds = time.perf_counter() - start
    if total != 10 * sum(expected.values()):
        _fail(subject, "lookup_100k", f"sum of the values read {total}")
    _verify(store, expected, 10_000, (subject, "lookup_100k"))
    store.close()
    return seconds


def reopen_10k(opener: Opener, path: Path, subject: str) -> float:
    """Opening (replaying) a log of 10,000 inserts into an int -> int store."""
    expected = {i: i * 7 for i in range(10_000)}
    _filled(opener, path, expected).close()
    start = time.perf_counter()
    store = opener(path, int, int)
    seconds = time.perf_counter() - start
    _verify(store, expected, 10_000, (subject, "reopen_10k"))
    store.close()
    return seconds


SCENARIOS: dict[str, Callable[[Opener, Path, str], float]] = {
    "insert_10k_ints": insert_10k_ints,
    "insert_2k_strings": insert_2k_strings,
    "modify_10k": modify_10k,
    "lookup_100k": lookup_100k,
    "reopen_10k": reopen_10k,
}


def run_scenarios(opener: Opener, directory: Path, subject: str) -> dict[str, float]:
    """Run every scenario ``REPEATS`` times, each in a fresh directory; median seconds."""
    directory.mkdir(parents=True, exist_ok=True)
    medians = {}
    for name, scenario in SCENARIOS.items():
        times = []
        for _ in range(REPEATS):
            where = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=directory))
            times.append(scenario(opener, where / "store", subject))
        medians[name] = statistics.median(times)
    return medians
