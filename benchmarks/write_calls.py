"""Count the Python-level work of one write, for typedstore and the floor: no clock.

Run from ``benchmarks/``: ``python write_calls.py``. For each write workload of
``floor_ab.py`` (insert, modify and remove, on an ``int`` store and on the benchmark's
``User``), it prints per operation the calls ``cProfile`` counts (Python functions and
builtins) and the bytecodes a trace function with opcode events sees, with the five
functions that run the most of them. Both are deterministic, so unlike times they compare
across runs on a loaded machine. Typedstore, the floor and pydantic only.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench_floor import FloorStore
from bench_model import User, records
from typedstore import TypedStore

OPENERS: dict[str, Callable[[Path, type[Any], type[Any]], Any]] = {
    "typedstore": lambda path, key, value: TypedStore.open(path, key, value),
    "floor": lambda path, key, value: FloorStore(path, key, value),
}
N = 200
"""Operations counted per workload, after as many of the same kind not counted."""


def _birthday(user: User) -> User:
    user.age += 1
    return user


def _workload(store: Any, kind: str, operation: str) -> Callable[[], None]:
    """Fill ``store`` as ``operation`` needs; return the ``N`` operations to count."""
    pairs: list[tuple[Any, Any]] = (
        [(index, 7 * index) for index in range(2 * N)] if kind == "int" else records(2 * N)
    )
    change: Callable[[Any], Any] = (lambda value: value + 1) if kind == "int" else _birthday
    for key, value in pairs[: N if operation == "insert" else 2 * N]:
        store[key] = value  # the first writes make the store's one-time choices
    counted = pairs[N:]

    def run() -> None:
        for key, value in counted:
            if operation == "insert":
                store[key] = value
            elif operation == "modify":
                store.modify(key, change)
            else:
                del store[key]

    return run


def count(subject: str, kind: str, operation: str) -> tuple[float, float, list[tuple[str, int]]]:
    """Return calls and bytecodes per operation, and the functions running the most."""
    with tempfile.TemporaryDirectory() as scratch:
        key_type = int if kind == "int" else str
        value_type = int if kind == "int" else User
        store = OPENERS[subject](Path(scratch) / "store.log", key_type, value_type)
        profiled = _workload(store, kind, operation)
        # The second run over the same keys and the same state again.
        found = counted(profiled, lambda: _workload(store, kind, operation), N, 5)
        store.close()
    return found


def counted(
    profiled: Callable[[], None], make_traced: Callable[[], Callable[[], None]], n: int, top: int
) -> tuple[float, float, list[tuple[str, int]]]:
    """Return calls (cProfile, of ``profiled``) and bytecodes (an opcode trace, of the
    run ``make_traced`` makes once that is done) per operation, each run doing ``n``
    operations, and the ``top`` functions running the most bytecodes. The two runs
    must do the same work."""
    profile = cProfile.Profile()
    profile.runcall(profiled)
    calls = pstats.Stats(profile).total_calls / n  # type: ignore[attr-defined]  # not in typeshed
    traced = make_traced()
    bytecodes: collections.Counter[str] = collections.Counter()

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code is traced.__code__:  # the loop, not the store's work
            return None
        frame.f_trace_opcodes = True
        if event == "opcode":
            bytecodes[frame.f_code.co_qualname] += 1
        return tracer

    sys.settrace(tracer)
    try:
        traced()
    finally:
        sys.settrace(None)
    most = [(name, round(number / n)) for name, number in bytecodes.most_common(top)]
    return calls, sum(bytecodes.values()) / n, most


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.parse_args(argv)
    print("per operation: calls (cProfile), bytecodes (opcode trace), where the most run")
    for kind in ("int", "User"):
        for operation in ("insert", "modify", "remove"):
            for subject in OPENERS:
                calls, codes, top = count(subject, kind, operation)
                where = ", ".join(f"{name} {n}" for name, n in top)
                print(f"{kind:4} {operation:6} {subject:10} {calls:6.1f} {codes:6.0f}   {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
