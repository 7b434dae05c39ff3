"""One store shared by threads: every operation is atomic with respect to the others (README).

One class per promise, in file order:

- ``TestMixedWritesOnOverlappingKeys``: no error, no lost write.
- ``TestTransfersInTransactions``: concurrent transactions are atomic.
- ``TestIteratingWhileOthersWrite``: iteration never raises.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import OpenStore
from tests.models import Account
from typedstore import StoreConfig, Transaction, TypedStore

Store = TypedStore[str, Account]

# Small enough that automatic compactions run while the threads write.
CONFIG = StoreConfig(min_compact_bytes=4096)
WRITERS = 8
COUNTERS = [f"counter{i}" for i in range(4)]
SHARED = [f"shared{i}" for i in range(6)]
ACCOUNTS = [f"account{i}" for i in range(8)]
OPENING_BALANCE = 1000
LEDGER = "ledger"


@pytest.fixture(autouse=True)
def fast_switching() -> Iterator[None]:
    """Switch threads far more often than usual, so operations interleave."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


class Crew:
    """Threads whose exceptions are collected instead of lost."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def start(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in self.threads), "a thread hangs"

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # collected for the test to report
            self.errors.append(exc)


def open_accounts(path: Path, open_store: OpenStore) -> Store:
    return open_store(TypedStore, path, str, Account, config=CONFIG)


def reopened(path: Path, open_store: OpenStore) -> list[tuple[str, Account]]:
    with open_accounts(path, open_store) as store:
        return list(store.items())


def plus(amount: int) -> Callable[[Account], Account]:
    return lambda account: account.model_copy(update={"balance": account.balance + amount})


def thread_rngs(rng: random.Random, count: int) -> list[random.Random]:
    """Return one generator per thread, all derived from the test's seeded one."""
    return [random.Random(rng.getrandbits(64)) for _ in range(count)]


def _mixed_writer(store: Store, rng: random.Random, increments: Counter[str]) -> None:
    """Insert, remove and modify shared keys; count every increment made to a counter."""
    for step in range(250):
        choice = rng.random()
        key = rng.choice(SHARED)
        if choice < 0.3:
            store[key] = Account(owner=key, balance=step)
        elif choice < 0.45:
            store.remove(key)
        elif choice < 0.85:
            counter = rng.choice(COUNTERS)
            store.modify(counter, plus(1))
            increments[counter] += 1
        else:
            first, second = rng.sample(COUNTERS, 2)
            with store.transaction() as txn:
                txn.modify(first, plus(1))
                txn.modify(second, plus(1))
                txn[key] = Account(owner=key, balance=-step)
            increments[first] += 1
            increments[second] += 1


def _run_mixed(store: Store, rng: random.Random) -> tuple[Crew, Counter[str]]:
    for counter in COUNTERS:
        store[counter] = Account(owner=counter, balance=0)
    per_thread: list[Counter[str]] = [Counter() for _ in range(WRITERS)]
    crew = Crew()
    for thread_rng, increments in zip(thread_rngs(rng, WRITERS), per_thread, strict=True):
        crew.start(partial(_mixed_writer, store, thread_rng, increments))
    crew.join()
    return crew, sum(per_thread, Counter())


class TestMixedWritesOnOverlappingKeys:
    """Threads writing overlapping keys raise nothing, lose no write and replay alike."""

    def test_threads_writing_overlapping_keys_raise_nothing(
        self, log_path: Path, open_store: OpenStore, rng: random.Random
    ) -> None:
        """Eight threads inserting, removing and modifying overlapping keys raise no exception."""
        with open_accounts(log_path, open_store) as store:
            crew, _ = _run_mixed(store, rng)
            assert crew.errors == []
            assert set(store) <= set(COUNTERS) | set(SHARED)

    def test_threads_lose_no_counter_increment(
        self, log_path: Path, open_store: OpenStore, rng: random.Random
    ) -> None:
        """Counters incremented by modify and transactions from many threads are exact."""
        with open_accounts(log_path, open_store) as store:
            crew, increments = _run_mixed(store, rng)
            assert crew.errors == []
            assert {key: store[key].balance for key in COUNTERS} == dict(increments)

    def test_threads_leave_memory_equal_to_reopen(
        self, log_path: Path, open_store: OpenStore, rng: random.Random
    ) -> None:
        """After many threads wrote, a reopen replays exactly what memory holds."""
        with open_accounts(log_path, open_store) as store:
            crew, increments = _run_mixed(store, rng)
            expected = list(store.items())
        assert crew.errors == []
        assert reopened(log_path, open_store) == expected
        assert sum(account.balance for key, account in expected if key in COUNTERS) == sum(
            increments.values()
        )


def _transfer(txn: Transaction[str, Account], rng: random.Random) -> None:
    source, target = rng.sample(ACCOUNTS, 2)
    amount = rng.randint(1, 100)
    txn.modify(source, plus(-amount))
    txn.modify(target, plus(amount))
    txn.modify(LEDGER, plus(1))


def _transferrer(store: Store, rng: random.Random, transfers: int) -> None:
    for _ in range(transfers):
        with store.transaction() as txn:
            _transfer(txn, rng)


def _auditor(store: Store, done: threading.Event, sums: list[int]) -> None:
    """Sum the balances of every snapshot, from items() and values() in turn, until done."""
    while not done.is_set() or not sums:
        items = [account for key, account in store.items() if key != LEDGER]
        values = [account for account in store.values() if account.owner != LEDGER]
        sums.append(sum(account.balance for account in items))
        sums.append(sum(account.balance for account in values))


def _run_transfers(
    store: Store, rng: random.Random, transfers: int
) -> tuple[Crew, list[list[int]]]:
    for key in ACCOUNTS:
        store[key] = Account(owner=key, balance=OPENING_BALANCE)
    store[LEDGER] = Account(owner=LEDGER, balance=0)
    done = threading.Event()
    audits: list[list[int]] = [[], []]
    readers = Crew()
    for sums in audits:
        readers.start(partial(_auditor, store, done, sums))
    writers = Crew()
    for thread_rng in thread_rngs(rng, 4):
        writers.start(partial(_transferrer, store, thread_rng, transfers))
    writers.join()
    done.set()
    readers.join()
    writers.errors += readers.errors
    return writers, audits


class AbortError(Exception):
    """Raised inside a transaction to abandon it."""


def _aborting_transferrer(store: Store, rng: random.Random, transfers: int) -> None:
    """Transfer, abandoning every second transaction after it staged its writes."""
    for step in range(transfers):
        with contextlib.suppress(AbortError), store.transaction() as txn:
            _transfer(txn, rng)
            if step % 2:
                raise AbortError


class TestTransfersInTransactions:
    """Concurrent transactions are atomic: totals balance, none is lost, aborts block nobody."""

    def test_concurrent_transfers_keep_every_snapshot_balanced(
        self, log_path: Path, open_store: OpenStore, rng: random.Random
    ) -> None:
        """Readers iterating while transactions transfer money always see the same total."""
        with open_accounts(log_path, open_store) as store:
            crew, audits = _run_transfers(store, rng, transfers=150)
        assert crew.errors == []
        total = OPENING_BALANCE * len(ACCOUNTS)
        assert all(audits), "every auditor took at least one snapshot"
        assert [value for sums in audits for value in sums if value != total] == []

    def test_concurrent_transfers_lose_no_transaction(
        self, log_path: Path, open_store: OpenStore, rng: random.Random
    ) -> None:
        """Every committed transfer is counted, and the final total is unchanged."""
        with open_accounts(log_path, open_store) as store:
            crew, _ = _run_transfers(store, rng, transfers=150)
            assert crew.errors == []
            assert store[LEDGER].balance == 4 * 150
            assert sum(store[key].balance for key in ACCOUNTS) == OPENING_BALANCE * len(ACCOUNTS)

    def test_concurrent_transfers_leave_memory_equal_to_reopen(
        self, log_path: Path, open_store: OpenStore, rng: random.Random
    ) -> None:
        """After concurrent transactions, a reopen replays exactly what memory holds."""
        with open_accounts(log_path, open_store) as store:
            crew, _ = _run_transfers(store, rng, transfers=150)
            expected = list(store.items())
        assert crew.errors == []
        assert reopened(log_path, open_store) == expected

    def test_aborted_transactions_apply_nothing_and_block_nobody(
        self, log_path: Path, open_store: OpenStore, rng: random.Random
    ) -> None:
        """Transactions abandoned by an exception in some threads neither apply nor block others."""
        with open_accounts(log_path, open_store) as store:
            for key in ACCOUNTS:
                store[key] = Account(owner=key, balance=OPENING_BALANCE)
            store[LEDGER] = Account(owner=LEDGER, balance=0)
            crew = Crew()
            for thread_rng in thread_rngs(rng, 4):
                crew.start(partial(_aborting_transferrer, store, thread_rng, 100))
            crew.join()
            assert crew.errors == []
            assert store[LEDGER].balance == 4 * 50
            assert sum(store[key].balance for key in ACCOUNTS) == OPENING_BALANCE * len(ACCOUNTS)
            expected = list(store.items())
        assert reopened(log_path, open_store) == expected


def _churn(store: Store, rng: random.Random) -> None:
    for step in range(300):
        key = f"key{rng.randrange(40)}"
        choice = rng.random()
        if choice < 0.5:
            store[key] = Account(owner=key, balance=step)
        elif choice < 0.8:
            store.pop(key, None)
        else:
            _modify_if_present(store, key)


def _modify_if_present(store: Store, key: str) -> None:
    """Check and modify atomically: another writer may remove ``key`` between the two."""
    with store.transaction() as txn:
        if key in txn:
            txn.modify(key, plus(1))


VIEWS: dict[str, Callable[[Store], list[object]]] = {
    "keys": lambda store: list(store.keys()),
    "values": lambda store: list(store.values()),
    "items": lambda store: list(store.items()),
    "iter": lambda store: [store.get(key) for key in store],
    "get_index": lambda store: [store.get_index(i) for i in range(-3, 3)],
}


def _iterate(store: Store, view: Callable[[Store], list[object]], done: threading.Event) -> None:
    rounds = 0
    while not done.is_set() or rounds == 0:
        view(store)
        rounds += 1


class TestIteratingWhileOthersWrite:
    """Iterating a view while other threads write and compact never raises."""

    @pytest.mark.parametrize("view", list(VIEWS.values()), ids=list(VIEWS))
    def test_iterating_while_threads_write_never_raises(
        self,
        log_path: Path,
        open_store: OpenStore,
        rng: random.Random,
        view: Callable[[Store], list[object]],
    ) -> None:
        """Iterating a view while other threads write and compact never raises."""
        with open_accounts(log_path, open_store) as store:
            for i in range(20):
                store[f"key{i}"] = Account(owner=f"key{i}", balance=i)
            done = threading.Event()
            readers = Crew()
            for _ in range(3):
                readers.start(partial(_iterate, store, view, done))
            writers = Crew()
            for thread_rng in thread_rngs(rng, 3):
                writers.start(partial(_churn, store, thread_rng))
            writers.join()
            done.set()
            readers.join()
            expected = list(store.items())
        assert writers.errors + readers.errors == []
        assert reopened(log_path, open_store) == expected
