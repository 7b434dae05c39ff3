"""Time typedstore against the floor in CPU time, alternating in one process.

Run from the project's root: ``python benchmarks/floor_ab.py [--reps 7] [--n 20000]``.
``bench.py`` times each subject in its own process with a wall clock, which a machine
shared with other work skews by whatever else runs meanwhile. This script times the
same workloads as ``bench.py`` (the benchmark's ``User`` records, and the Rust crate's
scenarios on ``int`` and ``str`` stores) for typedstore and the floor only, alternating
them repetition by repetition, in this process's CPU time (``time.process_time``, user
and system), and prints each median and their ratio. Typedstore, the floor and pydantic
only: no extra needed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_floor import FloorStore
from bench_model import User, records
from typedstore import TypedStore

Opener = Callable[[Path, type[Any], type[Any]], Any]
OPENERS: dict[str, Opener] = {
    "typedstore": lambda path, key, value: TypedStore.open(path, key, value),
    "floor": lambda path, key, value: FloorStore(path, key, value),
}


def _cpu(action: Callable[[], object]) -> float:
    began = time.process_time()
    action()
    return time.process_time() - began


def _each(call: Callable[[Any, Any], object], keys: list[Any], fn: Any) -> None:
    """Call ``call(key, fn)`` for each key, keeping nothing it returns: a list of the
    results would time the collector walking them, alike on both sides, which hides
    the difference between the two."""
    for key in keys:
        call(key, fn)


def _birthday(user: User) -> User:
    user.age += 1
    return user


def _plus_one(value: int) -> int:
    return value + 1


def user_workloads(open_store: Opener, directory: Path, n: int) -> dict[str, float]:
    """Return µs per operation of insert, get, modify, remove; ms of reopen and compact."""
    pairs = records(n)
    keys = [key for key, _ in pairs]
    random.Random(7).shuffle(keys)
    sample = keys[: n // 10]
    path = directory / "users.log"
    store = open_store(path, str, User)
    out: dict[str, float] = {}

    def insert_all() -> None:
        for key, user in pairs:
            store[key] = user
        store.flush()

    out["insert µs"] = _cpu(insert_all) / n * 1e6

    def get_all() -> None:
        for key in keys:  # nothing kept: a list of copies would time the collector
            store.get(key)

    out["get µs"] = _cpu(get_all) / n * 1e6
    out["modify µs"] = _cpu(lambda: _each(store.modify, sample, _birthday)) / len(sample) * 1e6

    def remove_sample() -> None:
        for key in sample:
            del store[key]

    out["remove µs"] = _cpu(remove_sample) / len(sample) * 1e6
    store.close()
    reopened: list[Any] = []
    out["reopen ms"] = _cpu(lambda: reopened.append(open_store(path, str, User))) * 1e3
    out["compact ms"] = _cpu(reopened[0].compact) * 1e3
    reopened[0].close()
    return out


def scenarios(open_store: Opener, directory: Path) -> dict[str, float]:
    """Return ms of each of the Rust crate's five scenarios, at its sizes."""
    out: dict[str, float] = {}
    ints = open_store(directory / "ints.log", int, int)

    def insert_ints() -> None:
        for index in range(10_000):
            ints[index] = 7 * index
        ints.flush()

    out["insert_10k_ints ms"] = _cpu(insert_ints) * 1e3

    def modify_ints() -> None:
        for index in range(10_000):
            ints.modify(index, _plus_one)
        ints.flush()

    out["modify_10k ms"] = _cpu(modify_ints) * 1e3

    def lookup() -> None:
        for index in range(100_000):
            ints.get(index % 10_000)

    out["lookup_100k ms"] = _cpu(lookup) * 1e3
    ints.close()
    reopened: list[Any] = []
    reopen = _cpu(lambda: reopened.append(open_store(directory / "ints.log", int, int)))
    out["reopen_10k ms"] = reopen * 1e3
    reopened[0].close()
    strings = open_store(directory / "strings.log", str, str)

    def insert_strings() -> None:
        for index in range(2_000):
            strings[f"key:{index:06d}"] = f"value-{index}-{index:06d}"
        strings.flush()

    out["insert_2k_strings ms"] = _cpu(insert_strings) * 1e3
    strings.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in OPENERS}
    for rep in range(args.reps):
        order = list(OPENERS) if rep % 2 == 0 else list(OPENERS)[::-1]
        for name in order:
            with tempfile.TemporaryDirectory() as scratch:
                directory = Path(scratch)
                result = user_workloads(OPENERS[name], directory, args.n)
                result |= scenarios(OPENERS[name], directory)
            runs[name].append(result)
    print(f"CPU time, median of {args.reps}, n={args.n:,}: typedstore against the floor")
    for workload in runs["typedstore"][0]:
        mine = statistics.median(run[workload] for run in runs["typedstore"])
        floor = statistics.median(run[workload] for run in runs["floor"])
        print(f"{workload:22} {mine:9.2f} {floor:9.2f}   typedstore / floor {mine / floor:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
