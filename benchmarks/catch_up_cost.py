"""Measure what a shared store's catch-up costs: CPU per catch-up and per record caught up.

Run from the project's root: ``python benchmarks/catch_up_cost.py [--rounds 2000] [--reps 5]``.

Two shared handles on one log in one process: one inserts ``k`` users (the model of
``shared_cost.py``), then the other reads a key, which first catches up with those ``k``
records. The table gives CPU µs per catch-up (the read included, the writes not) and
per record caught up, for ``k`` of 1, 10 and 100: the first is mostly the fixed cost of
a catch-up, the last close to the cost of a record alone. Medians of ``reps`` runs of
``rounds`` catch-ups each (fewer for larger ``k``).

Each run alternates, catch-up by catch-up, the short way these records take (bare
inserts of collection 0: ``Core._read_bare``) and the general way every other record
takes (``Core._read_new`` with the short way switched off, as before it existed), so
that the two columns are measured in the same minutes on a noisy machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from shared_cost import User, user
from typedstore import TypedStore


def per_catch_up(path: Path, rounds: int, batch: int) -> tuple[float, float]:
    """Return CPU µs per catch-up of ``batch`` records, the short way and the general way
    (alternating), over ``rounds`` catch-ups."""
    users = [user(i) for i in range(batch)]
    with (
        TypedStore.open(path, str, User, shared=True) as writer,
        TypedStore.open(path, str, User, shared=True) as reader,
    ):
        core = reader._core
        short_way = core._read_bare
        spent = [0.0, 0.0]
        for round_ in range(rounds):
            general = round_ % 2
            core._read_bare = _nothing if general else short_way  # type: ignore[method-assign]
            for index, value in enumerate(users):
                writer[f"k{round_}:{index}"] = value
            start = time.process_time()
            reader.get("absent")
            spent[general] += time.process_time() - start
    return spent[0] / (rounds / 2) * 1e6, spent[1] / (rounds / 2) * 1e6


def _nothing(engine: object) -> bool:
    """The short way switched off: it applies nothing, and the general way reads all."""
    return False


def table(rounds: int, reps: int) -> list[str]:
    rows = [
        f"CPU µs per catch-up of k records by a second shared handle (median of {reps})",
        "| k | short way | general way | short way per record | general way per record |",
        "|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        for batch in (1, 10, 100):
            count = max(rounds // batch, 20)
            found = [
                per_catch_up(Path(folder) / f"{batch}-{rep}.log", count, batch)
                for rep in range(reps)
            ]
            short = statistics.median(pair[0] for pair in found)
            general = statistics.median(pair[1] for pair in found)
            rows.append(
                f"| {batch} | {short:.1f} | {general:.1f} | {short / batch:.2f} | "
                f"{general / batch:.2f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"catch_up_cost, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print("\n".join(table(args.rounds, args.reps)))


if __name__ == "__main__":
    main()
