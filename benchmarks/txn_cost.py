"""Measure a 100-operation transaction against 100 single inserts, side by side.

Run: ``python benchmarks/txn_cost.py [REPETITIONS]``. For each durability setting the two
workloads alternate on fresh stores in one process; the report gives medians in
milliseconds per 100 operations and the ratio single/transaction.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from typedstore import StoreConfig, TypedStore

OPS = 100


class User(BaseModel):
    """The record every operation writes."""

    name: str
    email: str
    age: int
    tags: list[str]
    created: datetime


def _users() -> list[tuple[str, User]]:
    now = datetime.now(UTC)
    return [
        (f"user{i}", User(name=f"n{i}", email=f"u{i}@x.org", age=i, tags=["a"], created=now))
        for i in range(OPS)
    ]


def _singles(store: TypedStore[str, User], users: list[tuple[str, User]]) -> None:
    for key, user in users:
        store.insert(key, user)


def _transaction(store: TypedStore[str, User], users: list[tuple[str, User]]) -> None:
    with store.transaction() as txn:
        for key, user in users:
            txn.insert(key, user)


def _time(folder: Path, config: StoreConfig, work: Callable[..., None], run: int) -> float:
    users = _users()
    with TypedStore.open(folder / f"{work.__name__}-{run}.log", str, User, config=config) as store:
        start = time.perf_counter()
        work(store, users)
        elapsed = time.perf_counter() - start
    with TypedStore.open(folder / f"{work.__name__}-{run}.log", str, User, readonly=True) as back:
        if back.get("user7") != users[7][1] or len(back) != OPS:
            raise SystemExit(f"{work.__name__}: wrong data after reopen")
    return elapsed * 1000


def main(repetitions: int) -> None:
    settings = {
        "default (write_through)": StoreConfig(),
        "sync_on_write=True": StoreConfig(sync_on_write=True),
    }
    print(f"{OPS} inserts of a 5-field model; median of {repetitions} alternating runs")
    for name, config in settings.items():
        singles: list[float] = []
        batched: list[float] = []
        with tempfile.TemporaryDirectory() as folder:
            for run in range(repetitions):
                singles.append(_time(Path(folder), config, _singles, run))
                batched.append(_time(Path(folder), config, _transaction, run))
        single, batch = statistics.median(singles), statistics.median(batched)
        print(
            f"  {name:24s} 100 single inserts {single:8.2f} ms   one transaction {batch:8.2f} ms"
            f"   ratio {single / batch:5.1f}x"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
