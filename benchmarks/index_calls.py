"""Count the Python-level work of what indexes cost, per operation: no clock.

Run from the repository: ``python benchmarks/index_calls.py``. For each workload of
``index_cost.py`` that runs per operation (an insert with no index, one unique hash
index, one ordered index; a ``get`` by key against a unique lookup), it prints the calls
``cProfile`` counts (Python functions and builtins) and the bytecodes a trace function
with opcode events sees, with the functions that run the most of them, as
``write_calls.py`` does for writes. Both are deterministic, so unlike times they compare
across runs on a loaded machine.
"""

from __future__ import annotations

import collections
import cProfile
import pstats
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from index_cost import SUBJECTS, ThreeDb, _users
from typedstore import Database

N = 200
"""Operations counted per workload, after as many of the same kind not counted."""


def _counted(run: Callable[[], None]) -> tuple[float, float, list[tuple[str, int]]]:
    """Return calls and bytecodes per operation of ``run`` (``N`` operations), and the
    functions running the most bytecodes. ``run`` must do the same work when called twice."""
    profile = cProfile.Profile()
    profile.runcall(run)
    calls = pstats.Stats(profile).total_calls / N  # type: ignore[attr-defined]  # not in typeshed
    bytecodes: collections.Counter[str] = collections.Counter()

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code is run.__code__:  # the loop, not the store's work
            return None
        frame.f_trace_opcodes = True
        if event == "opcode":
            bytecodes[frame.f_code.co_qualname] += 1
        return tracer

    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    top = [(name, round(n / N)) for name, n in bytecodes.most_common(6)]
    return calls, sum(bytecodes.values()) / N, top


def _inserts(folder: Path, cls: type[Database]) -> tuple[float, float, list[tuple[str, int]]]:
    """Count ``N`` inserts of new keys into a collection of ``cls`` holding ``N`` already."""
    users = _users(3 * N)
    with cls.open(folder / f"{cls.__name__}.log") as database:
        collection: Any = database.users  # type: ignore[attr-defined]  # every subject has one
        for key, user in users[:N]:
            collection.insert(key, user)  # the first writes make the one-time choices
        batches = iter([users[N : 2 * N], users[2 * N :]])

        def run() -> None:
            for key, user in next(batches):
                collection.insert(key, user)

        return _counted(run)


def _lookups(folder: Path) -> dict[str, tuple[float, float, list[tuple[str, int]]]]:
    """Count ``N`` gets by key and ``N`` unique lookups of the same entries."""
    users = _users(N)
    path = folder / "lookups.log"
    with ThreeDb.open(path) as database:
        for key, user in users:
            database.users.insert(key, user)
    with ThreeDb.open(path, readonly=True) as database:
        collection = database.users
        keys = [key for key, _ in users]
        emails = [user.email for _, user in users]

        def gets() -> None:
            for key in keys:
                collection.get(key)

        def unique_gets() -> None:
            for email in emails:
                collection.by_email.get(email)

        return {"get": _counted(gets), "unique get": _counted(unique_gets)}


def main() -> int:
    """Print calls and bytecodes per operation of each workload."""
    print("per operation: calls (cProfile), bytecodes (opcode trace), where the most run")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        found = {f"insert {name}": _inserts(folder, SUBJECTS[name]) for name in SUBJECTS}
        found.update(_lookups(folder))
    for name, (calls, codes, top) in found.items():
        where = ", ".join(f"{function} {n}" for function, n in top)
        print(f"{name:16} {calls:6.1f} {codes:6.0f}   {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
