"""Hostile checks of the shared catch-up, the exclusive write paths and the indexed
single writes: Ctrl-C at every point, killed writers, re-entrant writes, threads.

Each test here is one way these paths could break that the tests beside them did not
try, and what must hold afterwards: memory equal to what a fresh open reads, the next
operation working, and the process left as it was (its garbage collector on).
"""

from __future__ import annotations

import gc
from pathlib import Path

from tests.test_interrupts import LANDED, _every_step, _Injected, _interrupt_at
from typedstore import TypedStore


def _state(store: TypedStore[str, int]) -> tuple[list[tuple[str, int]], int, int]:
    """What a handle holds: its entries in order, and where it has read the log to."""
    core = store._core
    return list(store.items()), core._known, core._total


class TestCtrlCInACatchUp:
    def test_the_collector_stays_on_and_memory_equals_a_fresh_open(self, log_path: Path) -> None:
        """A KeyboardInterrupt at any point of a shared catch-up (the short way of bare
        records, and the general way behind it) leaves Python's cyclic garbage collector
        enabled as it was: a catch-up pauses it while it builds entries, and a Ctrl-C
        landing right after the pause, before the block that restores it, once left it
        off for the rest of the process. Memory then equals a fresh open's, and the next
        write works."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as reader,
            TypedStore.open(log_path, str, int, shared=True) as writer,
        ):

            def attempt(step: int, hits: list[int]) -> None:
                for index in range(4):
                    writer[f"k{(step * 3 + index) % 7}"] = step
                writer.pop(f"k{step % 7}", None)
                with writer.transaction() as txn:  # a batch: the general way after it
                    txn[f"t{step % 3}"] = step
                writer[f"k{step % 7}"] = -step
                assert gc.isenabled()
                try:
                    with _interrupt_at(step, hits):
                        len(reader)  # catches up
                except _Injected:
                    pass
                enabled = gc.isenabled()
                gc.enable()
                assert enabled, f"the collector was left off after {LANDED}"
                with TypedStore.open(log_path, str, int, readonly=True) as fresh:
                    assert _state(reader) == _state(fresh), f"after {LANDED}"
                reader["r"] = step
                assert writer["r"] == step

            assert _every_step(attempt) >= 50  # the trace saw the catch-up's code
