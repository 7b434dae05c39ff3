"""Shared stores' single-key reads, which skip the lock while the log is unchanged
(``_core._KeysWhileUnchanged``), see every write acknowledged before they began.

Another process writes transactions and publishes each one's number only once it
returned; threads of this process read meanwhile, with the interpreter switching
threads as often as it can, while one more thread writes too (its own writes, and the
catch-ups they and the reads make, change memory under the readers).
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import cast

from tests.test_unlocked_reads import switching_often
from typedstore import TypedStore
from typedstore._core import Core

WRITES = 1500
"""How many transactions the other process writes."""


class Ints(TypedStore[str, int]):
    """Immutable values: reads return what memory keeps."""


def write_pairs(path: Path, published: Synchronized[int]) -> None:
    """Set ``a`` then ``b`` to ``i`` in transaction ``i``, publishing ``i`` once it returned;
    compact now and then, so that readers follow a replaced log too."""
    with Ints.open(path, shared=True) as store:
        for number in range(1, WRITES + 1):
            with store.transaction() as txn:
                txn["a"] = number
                txn["b"] = number
            published.value = number
            if number % 500 == 0:
                store.compact()


def test_reads_see_every_write_acknowledged_before_they_began(log_path: Path) -> None:
    """A read returns at least the last number published before it began (the other
    process's), or written before it began (this process's); ``b``, read after ``a``,
    is never behind it: a transaction is seen whole."""
    with Ints.open(log_path, shared=True) as store:
        store["a"] = store["b"] = store["mine"] = 0
        context = multiprocessing.get_context("spawn")
        published: Synchronized[int] = context.Value("q", 0)
        writer = context.Process(target=write_pairs, args=(log_path, published))
        mine = [0]  # what this process's writer thread wrote last, once acknowledged
        failures: list[str] = []
        unlocked = [0]

        def read() -> None:
            while published.value < WRITES and not failures:
                before, own = published.value, mine[0]
                if str in store._unlocked_keys:
                    unlocked[0] += 1
                a = store["a"]
                b = store.get("b", -1)
                seen_own = store["mine"]
                if a < before or b < a or seen_own < own:
                    failures.append(f"published {before}, own {own}: a={a} b={b} mine={seen_own}")

        def write_own() -> None:
            number = 0
            while published.value < WRITES and not failures:
                number += 1
                store["mine"] = number
                mine[0] = number

        threads = [threading.Thread(target=read) for _ in range(3)]
        threads.append(threading.Thread(target=write_own))
        with switching_often():
            writer.start()
            for thread in threads:
                thread.start()
            writer.join()
            for thread in threads:
                thread.join()
        assert writer.exitcode == 0
        assert failures == []
        assert store["a"] == store["b"] == WRITES
        assert unlocked[0] > 0  # some reads found the log unchanged


class _CaughtUpMidway(dict[str, int]):
    """Entries whose lookup lets a catch-up run through it, as another thread could
    after a read's ``lseek`` found the log unchanged: another process's transaction
    (removing the key, then inserting it again) lands and a catch-up applies it in
    place; the lookup returns what it would have found between the two (nothing)."""

    core: Core
    other: Ints
    raced = False

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]  # a test double
        if self.raced:  # once
            return super().get(key, default)
        self.raced = True
        with self.other.transaction() as txn:
            del txn[key]
            txn[key] = 2
        self.core._catch_up()
        return default


def test_a_read_that_overlapped_a_catch_up_reads_again_under_the_lock(log_path: Path) -> None:
    """A catch-up changes entries as a batch does: a lookup it ran through is not
    trusted, and the read is made again, locked."""
    with Ints.open(log_path, shared=True) as store, Ints.open(log_path, shared=True) as other:
        store["a"] = 1
        for read in (store.get, store.__getitem__):
            raced = _CaughtUpMidway(cast(dict[str, int], store._table.entries))
            raced.core, raced.other = store._core, other
            store._table.entries = cast(dict[str, object], raced)
            assert str in store._unlocked_keys  # the read skips the lock
            assert read("a") == 2  # not None, nor KeyError: "a" was never absent
