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

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from index_cost import SUBJECTS, ThreeDb, _finding, _getting, _users
from typedstore import Database
from write_calls import counted

N = 200
"""Operations counted per workload."""

FILLED = 1000
"""Entries a collection holds before inserts are counted: ages repeat every 1000
(``index_cost._users``), so the counted inserts to an ordered index find their index
key held, as 19 of 20 inserts of ``index_cost.py`` do."""


def _counted(run: Callable[[], None]) -> tuple[float, float, list[tuple[str, int]]]:
    """Return calls and bytecodes per operation of ``run`` (``N`` operations), and the
    functions running the most bytecodes. ``run`` must do the same work when called twice."""
    return counted(run, lambda: run, N, 6)


def _inserts(folder: Path, cls: type[Database]) -> tuple[float, float, list[tuple[str, int]]]:
    """Count ``N`` inserts of new keys into a collection of ``cls`` holding ``FILLED``."""
    users = _users(FILLED + 2 * N)
    with cls.open(folder / f"{cls.__name__}.log") as database:
        collection: Any = database.users  # type: ignore[attr-defined]  # every subject has one
        for key, user in users[:FILLED]:
            collection.insert(key, user)  # the first writes make the one-time choices
        # Two batches alike: one profiled, one traced.
        batches = iter([users[FILLED : FILLED + N], users[FILLED + N :]])

        def run() -> None:
            for key, user in next(batches):
                collection.insert(key, user)

        return _counted(run)


def _lookups(folder: Path) -> dict[str, tuple[float, float, list[tuple[str, int]]]]:
    """Count ``N`` gets by key and ``N`` unique lookups of the same entries, on a
    read-only open (as ``index_cost.py`` times them) and on a writable one, whose reads
    of an exact ``str`` key take no lock (``Collection.get``)."""
    users = _users(N)
    keys = [key for key, _ in users]
    emails = [user.email for _, user in users]
    path = folder / "lookups.log"
    with ThreeDb.open(path) as database:
        for key, user in users:
            database.users.insert(key, user)
    counted: dict[str, tuple[float, float, list[tuple[str, int]]]] = {}
    for readonly in (True, False):
        with ThreeDb.open(path, readonly=readonly) as database:
            mode = "read-only" if readonly else "writable"
            counted[f"get, {mode}"] = _counted(_getting(database.users, keys))
            counted[f"unique, {mode}"] = _counted(_finding(database.users, emails))
    return counted


def main() -> int:
    """Print calls and bytecodes per operation of each workload."""
    print("per operation: calls (cProfile), bytecodes (opcode trace), where the most run")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        found = {f"insert {name}": _inserts(folder, SUBJECTS[name]) for name in SUBJECTS}
        found.update(_lookups(folder))
    for name, (calls, codes, top) in found.items():
        where = ", ".join(f"{function} {n}" for function, n in top)
        print(f"{name:19} {calls:6.1f} {codes:6.0f}   {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
