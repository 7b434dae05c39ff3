"""Measure what a read costs for mutable values (a fresh copy) against immutable ones (shared).

Run: ``python benchmarks/read_cost.py [N]``. Prints the median of 7 repetitions, in
microseconds per call, for each way of reading the same N records, measured side by side.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from typedstore import StoreConfig, TypedStore


class User(BaseModel):
    """A mutable model: reads return copies."""

    name: str
    email: str
    age: int
    tags: list[str]
    created: datetime


class FrozenUser(BaseModel):
    """The same fields, frozen and immutable: reads return the stored object."""

    model_config = ConfigDict(frozen=True)

    name: str
    email: str
    age: int
    tags: tuple[str, ...]
    created: datetime


def _median_us(run: Callable[[], object], calls: int) -> float:
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def main(n: int) -> None:
    now = datetime.now(UTC)
    users = {
        f"user{i}": User(
            name=f"n{i}", email=f"u{i}@x.org", age=i % 90, tags=["a", "b"], created=now
        )
        for i in range(n)
    }
    frozen = {k: FrozenUser(**u.model_dump() | {"tags": tuple(u.tags)}) for k, u in users.items()}
    keys = list(users)
    config = StoreConfig(write_through=False)
    with tempfile.TemporaryDirectory() as folder:
        mutable = TypedStore.open(Path(folder) / "m.log", str, User, config=config)
        immutable = TypedStore.open(Path(folder) / "f.log", str, FrozenUser, config=config)
        for key in keys:
            mutable[key] = users[key]
            immutable[key] = frozen[key]
        rows: dict[str, Callable[[], object]] = {
            "dict[key] (plain dict, shared object)": lambda: [users[k] for k in keys],
            "model_copy(deep=True) from a dict": lambda: [
                users[k].model_copy(deep=True) for k in keys
            ],
            "TypedStore[str, FrozenUser].get (shared)": lambda: [immutable.get(k) for k in keys],
            "TypedStore[str, User].get (fresh copy)": lambda: [mutable.get(k) for k in keys],
        }
        print(f"{n} records, median of 7, microseconds per read")
        for name, run in rows.items():
            print(f"  {name:45s} {_median_us(run, n):8.3f}")
        mutable.close()
        immutable.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
