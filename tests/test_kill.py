"""SIGKILL a writing child process at random moments: no acknowledged mutation is ever lost.

README, "Durability and recovery": under the default config a crash of the process at any
instant keeps every mutation whose call returned, and the store opens. The child
(``tests/writer_child.py``) prints an acknowledgement after each call returns; the parent
replays the same deterministic stream on a plain dict, kills the child, reopens the log and
checks that it holds exactly the state after the last acknowledged operation, or after the
one in flight.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import pytest

from tests import writer_child
from tests.models import Account, User
from typedstore import TypedStore

pytestmark = pytest.mark.slow

KILLS = 20
"""Kills per test."""
BUDGET = 300.0
"""Seconds a test may take: a guard against a hung child, which fails the test instead of
hanging the suite, not a speed check. A test takes 5 to 30 s on a loaded machine."""
MAX_ACKS_BEFORE_KILL = 80
MAX_ACKS_WAITING_FOR_COMPACTION = 3000

FORKS = multiprocessing.get_context("forkserver")
"""Children fork from a server that imported the writer once: a fresh interpreter per
kill spent most of a kill test's time starting and importing."""
FORKS.set_forkserver_preload(["tests.writer_child"])

M = TypeVar("M", User, Account)
State = list[tuple[str, M]]


class Child:
    """A running ``tests.writer_child`` whose acknowledgements are read without blocking."""

    def __init__(self, args: list[str], workdir: Path, deadline: float) -> None:
        self.deadline = deadline
        self.acks: list[int] = []
        self._partial = b""
        self._stderr_path = workdir / "child.stderr"
        self._stdout, out = FORKS.Pipe(duplex=False)
        self.process = FORKS.Process(
            target=writer_child.forked, args=(args, str(workdir), out, str(self._stderr_path))
        )
        self.process.start()
        out.close()  # the child's is the only write end left: EOF once it died
        self._fd = self._stdout.fileno()
        os.set_blocking(self._fd, False)

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=BUDGET)
        self.process.close()
        self._stdout.close()

    def read_acks(self, timeout: float) -> None:
        """Collect the acknowledgements that arrive within ``timeout`` seconds."""
        readable, _, _ = select.select([self._fd], [], [], timeout)
        if not readable:
            return
        chunk = os.read(self._fd, 1 << 16)
        if not chunk:
            pytest.fail(f"the child exited on its own: {self.stderr()}")
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        self.acks.extend(int(line) for line in lines)

    def wait_for_acks(self, count: int) -> None:
        """Block until at least ``count`` operations were acknowledged."""
        while len(self.acks) < count:
            self.check_deadline()
            self.read_acks(timeout=0.05)

    def wait_for_compaction(self, temp: Path) -> None:
        """Poll until a compaction's temp file appears (or many operations passed)."""
        while not temp.exists() and len(self.acks) < MAX_ACKS_WAITING_FOR_COMPACTION:
            self.check_deadline()
            self.read_acks(timeout=0)

    def kill(self) -> None:
        """SIGKILL the child, then collect every acknowledgement it printed before dying."""
        self.process.kill()
        self.process.join(timeout=BUDGET)
        assert self.process.exitcode == -signal.SIGKILL, self.stderr()
        os.set_blocking(self._fd, True)
        rest = self._partial
        while chunk := os.read(self._fd, 1 << 16):
            rest += chunk
        lines = rest.split(b"\n")
        assert lines[-1] == b"", f"an acknowledgement was cut short: {rest!r}"
        self.acks.extend(int(line) for line in lines[:-1])

    def check_deadline(self) -> None:
        """Fail the test if it ran out of time."""
        if time.monotonic() > self.deadline:
            pytest.fail(f"the kill test exceeded {BUDGET} s; child stderr: {self.stderr()}")

    def stderr(self) -> str:
        """Return what the child wrote to stderr so far."""
        return self._stderr_path.read_text(errors="replace")


@dataclass(frozen=True)
class Workload(Generic[M]):
    """A writer_child workload and how to replay its operations on a plain dict."""

    name: str
    value_type: type[M]
    apply: Callable[[dict[str, M], int, int], None]
    """Apply operation ``index`` of the stream for ``seed``: ``apply(state, seed, index)``."""
    initial: dict[str, M] = field(default_factory=dict)
    """What the parent writes before the first child starts."""
    database: bool = False
    """Whether the child writes a ``writer_child.Bank`` database rather than a TypedStore."""
    indexed: bool = False
    """Whether the child writes a ``writer_child.IndexedUsers`` store."""


KV = Workload[User](
    "kv",
    User,
    lambda state, seed, index: writer_child.apply_kv_to_dict(
        state, writer_child.kv_op(seed, index)
    ),
)
KV_INDEXED = Workload[User](
    "kv-indexed",
    User,
    lambda state, seed, index: writer_child.apply_kv_to_dict(
        state, writer_child.kv_op(seed, index)
    ),
    indexed=True,
)
TRANSFER = Workload[Account](
    "transfer",
    Account,
    lambda state, seed, index: writer_child.apply_transfer(
        state, writer_child.transfer_op(seed, index)
    ),
    writer_child.initial_accounts(),
)
BANK = Workload[Account](
    "bank",
    Account,
    lambda state, seed, index: writer_child.apply_transfer(
        state, writer_child.bank_op(seed, index)
    ),
    writer_child.initial_bank(),
    database=True,
)


@dataclass
class KillReport(Generic[M]):
    """What a run of kills observed."""

    states: list[State[M]] = field(default_factory=list)
    """The state each reopen gave, in order."""
    kills_in_compaction: int = 0
    """Kills that left a compaction's temp file behind: the child died mid-compaction."""
    acknowledged: int = 0
    """Operations acknowledged over all rounds."""


def advanced(
    workload: Workload[M], state: dict[str, M], seed: int, start: int, count: int
) -> dict[str, M]:
    """Return a copy of ``state`` with operations ``start`` to ``start + count - 1`` applied."""
    state = dict(state)
    for index in range(start, start + count):
        workload.apply(state, seed, index)
    return state


def reopen(workload: Workload[M], path: Path) -> State[M]:
    """Open the log as the next writer would and return its entries; it must open cleanly."""
    if workload.database:
        with writer_child.Bank.open(path) as bank:
            assert bank.recovery is None or bank.recovery.kind == "torn_tail", bank.recovery
            accounts: list[tuple[str, Any]] = writer_child.bank_state(bank)
            return accounts
    if workload.indexed:
        with writer_child.IndexedUsers.open(path) as indexed:
            assert indexed.recovery is None or indexed.recovery.kind == "torn_tail"
            users: list[tuple[str, Any]] = list(indexed.items())
            assert indexes_of(indexed) == indexes_from_scratch(users)
            return users
    with TypedStore.open(path, str, workload.value_type) as store:
        recovery = store.recovery
        assert recovery is None or recovery.kind == "torn_tail", recovery
        return list(store.items())


def indexes_of(store: writer_child.IndexedUsers) -> dict[str, Any]:
    """Return what the store's indexes answer about its entries."""
    users = list(store.values())
    return {
        "name": {user.name: store.by_name.get(user.name) for user in users},
        "age": list(store.by_age),
        "tag": {tag: store.by_tag.find(tag) for user in users for tag in user.tags},
    }


def indexes_from_scratch(users: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return what :func:`indexes_of` must give, computed from the entries alone."""
    return {
        "name": {user.name: (key, user) for key, user in users},
        "age": sorted(users, key=lambda entry: entry[1].age),
        "tag": {
            tag: [(key, user) for key, user in users if tag in user.tags]
            for _, owner in users
            for tag in owner.tags
        },
    }


def kill_once(child: Child, rng: random.Random, temp: Path, *, at_compaction: bool) -> bool:
    """Let the child run, kill it; return whether it died in the middle of a compaction."""
    if at_compaction:
        child.wait_for_compaction(temp)
    else:
        child.wait_for_acks(rng.randrange(MAX_ACKS_BEFORE_KILL))
        time.sleep(rng.random() * 0.002)  # land the kill anywhere inside the next call
    child.kill()
    return temp.exists()


def run_kills(
    workload: Workload[M], log_path: Path, config: str, rng: random.Random
) -> KillReport[M]:
    """Start, kill and check the child ``KILLS`` times on one log; return what was seen."""
    deadline = time.monotonic() + BUDGET
    seed = rng.randrange(2**32)
    temp = log_path.with_name(log_path.name + ".compact.tmp")
    if workload.database:
        with writer_child.Bank.open(log_path) as bank:
            initial: dict[str, Any] = dict(workload.initial)
            writer_child.apply_initial(bank, initial)
    else:
        with TypedStore.open(log_path, str, workload.value_type) as store:
            store.update(workload.initial)
    model, start = dict(workload.initial), 0
    report = KillReport[M]()
    for round_ in range(KILLS):
        args = [workload.name, str(log_path), str(seed), str(start), config]
        with Child(args, log_path.parent, deadline) as child:
            at_compaction = config == "compacting" and round_ % 2 == 1
            report.kills_in_compaction += kill_once(child, rng, temp, at_compaction=at_compaction)
        acks = child.acks
        assert acks == list(range(start, start + len(acks))), f"acks out of order: {acks}"
        acked = advanced(workload, model, seed, start, len(acks))
        in_flight = advanced(workload, acked, seed, start + len(acks), 1)
        state = reopen(workload, log_path)
        report.states.append(state)
        report.acknowledged += len(acks)
        if state == list(acked.items()):
            model, start = acked, start + len(acks)
        else:
            assert state == list(in_flight.items()), (
                f"round {round_} (seed {seed}, ops {start}..{start + len(acks) - 1} acknowledged): "
                f"reopened {state}, acknowledged {list(acked.items())}"
            )
            model, start = in_flight, start + len(acks) + 1
    return report


@pytest.mark.parametrize("config", ["default", "compacting"])
def test_killed_writer_loses_no_acknowledged_mutation(
    log_path: Path, rng: random.Random, config: str
) -> None:
    """After each SIGKILL the log holds every acknowledged insert, modify and remove."""
    report = run_kills(KV, log_path, config, rng)
    assert len(report.states) == KILLS
    assert report.acknowledged > KILLS, "the child was killed before it did anything"
    if config == "compacting":
        assert report.kills_in_compaction >= 1, "no kill landed inside a compaction"


def test_killed_indexed_writer_reopens_with_indexes_equal_to_a_rebuild(
    log_path: Path, rng: random.Random
) -> None:
    """After each SIGKILL, the indexes of the reopened store equal indexes built from scratch
    from its entries, and no acknowledged mutation is lost."""
    # One config: compaction leaves indexes alone, and kills mid-compaction are the kv
    # test's; each config costs about 20 s of the suite.
    report = run_kills(KV_INDEXED, log_path, "default", rng)  # reopen compares the indexes
    assert len(report.states) == KILLS
    assert report.acknowledged > KILLS, "the child was killed before it did anything"


@pytest.mark.parametrize("config", ["default", "compacting"])
def test_killed_transfers_keep_total_balance(
    log_path: Path, rng: random.Random, config: str
) -> None:
    """After each SIGKILL mid-transfer the accounts add up to the same total."""
    report = run_kills(TRANSFER, log_path, config, rng)
    total = len(writer_child.ACCOUNTS) * writer_child.INITIAL_BALANCE
    assert len(report.states) == KILLS
    for state in report.states:
        assert [name for name, _ in state] == list(writer_child.ACCOUNTS)
        assert sum(account.balance for _, account in state) == total
    assert report.acknowledged > KILLS, "the child was killed before it did anything"
    if config == "compacting":
        assert report.kills_in_compaction >= 1, "no kill landed inside a compaction"


@pytest.mark.parametrize("config", ["default", "compacting"])
def test_killed_bank_transfers_keep_both_collections_whole(
    log_path: Path, rng: random.Random, config: str
) -> None:
    """After each SIGKILL mid-transaction across two collections, both replay whole or not
    at all: the accounts of the two collections add up to the same total."""
    report = run_kills(BANK, log_path, config, rng)
    total = len(writer_child.initial_bank()) * writer_child.INITIAL_BALANCE
    assert len(report.states) == KILLS
    for state in report.states:
        assert [name for name, _ in state] == list(writer_child.initial_bank())
        assert sum(account.balance for _, account in state) == total
    assert report.acknowledged > KILLS, "the child was killed before it did anything"
