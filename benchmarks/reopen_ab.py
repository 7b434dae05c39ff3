"""Time reopen of typedstore against the floor's, alternating, on logs written once.

Run from ``benchmarks/``: ``python reopen_ab.py [--reps 21] [--n 20000]``. ``floor_ab.py``
reopens each log once per repetition, after writing it, so on a loaded machine a single
reopen's CPU time swings with whatever else runs. This script writes each subject's two
logs once (the ``User`` workload of ``floor_ab.py``: ``n`` inserts, then a tenth of them
modified and removed; and the ``int`` one of ``reopen_10k``: 10,000 inserts, each then
modified), then opens them ``--reps`` times, alternating the subjects, and prints the
least and the median CPU time of each (``time.process_time``) and their ratios. The least
is what the work costs when nothing else interfered.
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
LOGS: dict[str, tuple[type[Any], type[Any]]] = {"User": (str, User), "int": (int, int)}


def _birthday(user: User) -> User:
    user.age += 1
    return user


def _plus_one(value: int) -> int:
    return value + 1


def write_logs(open_store: Opener, directory: Path, n: int) -> None:
    """Write the ``User`` and ``int`` logs of one subject into ``directory``."""
    pairs = records(n)
    keys = [key for key, _ in pairs]
    random.Random(7).shuffle(keys)
    sample = keys[: n // 10]
    store = open_store(directory / "User.log", str, User)
    for key, user in pairs:
        store[key] = user
    for key in sample:
        store.modify(key, _birthday)
    for key in sample:
        del store[key]
    store.close()
    ints = open_store(directory / "int.log", int, int)
    for index in range(10_000):
        ints[index] = 7 * index
    for index in range(10_000):
        ints.modify(index, _plus_one)
    ints.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args(argv)
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folders = {name: Path(scratch) / name for name in OPENERS}
        for name, folder in folders.items():
            folder.mkdir()
            write_logs(OPENERS[name], folder, args.n)
        for rep in range(args.reps):
            order = list(OPENERS) if rep % 2 == 0 else list(OPENERS)[::-1]
            for name in order:
                for log, (key_type, value_type) in LOGS.items():
                    path = folders[name] / f"{log}.log"
                    began = time.process_time()
                    store = OPENERS[name](path, key_type, value_type)
                    times.setdefault((name, log), []).append(time.process_time() - began)
                    store.close()
    print(f"reopen CPU ms, {args.reps} alternating opens, n={args.n:,}: least, median")
    for log in LOGS:
        mine, floor = times[("typedstore", log)], times[("floor", log)]
        print(
            f"{log:5} typedstore {min(mine) * 1e3:7.1f} {statistics.median(mine) * 1e3:7.1f}"
            f"   floor {min(floor) * 1e3:7.1f} {statistics.median(floor) * 1e3:7.1f}"
            f"   typedstore / floor {min(mine) / min(floor):5.2f}"
            f" {statistics.median(mine) / statistics.median(floor):5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
