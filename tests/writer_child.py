"""A writer process for the kill tests: a deterministic stream of mutations, each acknowledged.

Run as ``python -m tests.writer_child WORKLOAD LOG SEED START CONFIG`` (``PYTHONPATH`` must
hold the project root). It opens the store at ``LOG`` and applies operations ``START``,
``START + 1``, ... until it is killed; after each call returns it prints the operation's
index on its own line and flushes stdout. Operation ``i`` depends only on ``SEED``, ``i`` and
the state it is applied to, so the parent replays the same stream on a plain dict to know
every state the log may hold. Workloads: ``kv`` (inserts, modifies and removes of users),
``transfer`` (transactions moving money between accounts), ``bank`` (transactions moving
money between the accounts of two collections of a database) and ``kv-indexed`` (``kv`` on
a store with a unique, an ordered and a multi index).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Literal, Protocol

from tests.models import Account, User
from typedstore import Collection, Database, Index, StoreConfig, TypedStore

KV_KEYS = 12
ACCOUNTS = tuple(f"acct{i}" for i in range(5))
INITIAL_BALANCE = 1000
MAX_OPS = 1_000_000
"""A child left running by a crashed parent stops on its own after this many operations."""

CONFIGS = {
    "default": StoreConfig(),
    "compacting": StoreConfig(min_compact_bytes=1024),
}
"""Store settings by name; ``compacting`` compacts every few dozen operations."""


# -- kv workload ------------------------------------------------------------------------------


KvKind = Literal["insert", "modify", "remove"]
KV_KINDS: tuple[KvKind, ...] = ("insert", "insert", "modify", "modify", "remove")
"""Operation kinds, drawn uniformly: inserts and modifies twice as often as removes."""


@dataclass(frozen=True)
class KvOp:
    """One mutation of the kv workload."""

    kind: KvKind
    key: str
    index: int


def kv_op(seed: int, index: int) -> KvOp:
    """Return operation ``index`` of the kv stream for ``seed``."""
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choice(KV_KINDS)
    return KvOp(kind, f"k{rng.randrange(KV_KEYS)}", index)


def new_user(op: KvOp) -> User:
    """Return the value an insert operation writes."""
    return User(name=op.key, age=op.index, tags=[f"tag{op.index}"] * (op.index % 7))


def older(user: User) -> User:
    """Return ``user`` one year older with one more tag (at most eight)."""
    return user.model_copy(update={"age": user.age + 1, "tags": [*user.tags, "m"][-8:]})


def apply_kv(store: TypedStore[str, User], op: KvOp) -> None:
    """Apply ``op`` to the store: a modify of an absent key inserts instead."""
    if op.kind == "remove":
        store.remove(op.key)
    elif op.kind == "modify" and op.key in store:
        store.modify(op.key, older)
    else:
        store.insert(op.key, new_user(op))


def apply_kv_to_dict(state: dict[str, User], op: KvOp) -> None:
    """Apply ``op`` to a plain dict exactly as :func:`apply_kv` does to the store."""
    if op.kind == "remove":
        state.pop(op.key, None)
    elif op.kind == "modify" and op.key in state:
        state[op.key] = older(state[op.key])
    else:
        state[op.key] = new_user(op)


class IndexedUsers(TypedStore[str, User]):
    """The kv workload's store with indexes: every write keeps them (README.md, "Indexes")."""

    by_name: Index[User, str] = Index(lambda user: user.name, unique=True)
    by_age: Index[User, int] = Index(lambda user: user.age, ordered=True)
    by_tag: Index[User, str] = Index(lambda user: user.tags, multi=True)


# -- transfer workload ------------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    """Move ``amount`` from ``source`` to ``target`` in one transaction."""

    source: str
    target: str
    amount: int


def transfer_op(seed: int, index: int) -> Transfer:
    """Return transfer ``index`` of the stream for ``seed``."""
    rng = random.Random(f"{seed}:{index}")
    source, target = rng.sample(ACCOUNTS, 2)
    return Transfer(source, target, rng.randrange(1, 300))


def initial_accounts() -> dict[str, Account]:
    """Return the accounts the transfer workload starts from."""
    return {name: Account(owner=name, balance=INITIAL_BALANCE) for name in ACCOUNTS}


def credited(account: Account, amount: int) -> Account:
    """Return ``account`` with ``amount`` added (negative to debit)."""
    return account.model_copy(update={"balance": account.balance + amount})


class Accounts(Protocol):
    """Where transfers happen: a store's transaction, or the parent's plain dict."""

    def __getitem__(self, key: str, /) -> Account: ...
    def __setitem__(self, key: str, value: Account, /) -> None: ...


def apply_transfer(accounts: Accounts, op: Transfer) -> None:
    """Debit the source and credit the target of ``op`` in ``accounts``."""
    accounts[op.source] = credited(accounts[op.source], -op.amount)
    accounts[op.target] = credited(accounts[op.target], op.amount)


# -- bank workload: two collections of a database ------------------------------------------


class Bank(Database):
    """Checking and savings accounts, in two collections of one log."""

    checking: Collection[str, Account]
    savings: Collection[str, Account]


BANK_COLLECTIONS = ("checking", "savings")


def bank_op(seed: int, index: int) -> Transfer:
    """Return transfer ``index`` of the bank stream: between accounts named
    ``collection/account``, always across the two collections."""
    rng = random.Random(f"{seed}:{index}")
    source, target = rng.sample(BANK_COLLECTIONS, 2)
    account = rng.choice(ACCOUNTS)
    return Transfer(f"{source}/{account}", f"{target}/{account}", rng.randrange(1, 300))


def initial_bank() -> dict[str, Account]:
    """Return the accounts the bank workload starts from, named ``collection/account``."""
    return {
        f"{collection}/{name}": Account(owner=name, balance=INITIAL_BALANCE)
        for collection in BANK_COLLECTIONS
        for name in ACCOUNTS
    }


class Routed:
    """Accounts named ``collection/account``, in a bank (or a bank's transaction)."""

    def __init__(self, bank: Bank) -> None:
        self._bank = bank

    def _collection(self, key: str) -> tuple[Collection[str, Account], str]:
        collection, account = key.split("/")
        return getattr(self._bank, collection), account

    def __getitem__(self, key: str, /) -> Account:
        collection, account = self._collection(key)
        return collection[account]

    def __setitem__(self, key: str, value: Account, /) -> None:
        collection, account = self._collection(key)
        collection[account] = value


def apply_initial(bank: Bank, accounts: dict[str, Account]) -> None:
    """Write ``accounts``, named ``collection/account``, to the bank."""
    routed = Routed(bank)
    for key, account in accounts.items():
        routed[key] = account


def bank_state(bank: Bank) -> list[tuple[str, Account]]:
    """Return the bank's accounts, named ``collection/account``, collection by collection."""
    return [
        (f"{name}/{key}", value)
        for name in BANK_COLLECTIONS
        for key, value in getattr(bank, name).items()
    ]


# -- process ----------------------------------------------------------------------------------


def acknowledge(index: int) -> None:
    """Tell the parent that operation ``index`` returned."""
    sys.stdout.write(f"{index}\n")
    sys.stdout.flush()


def run_kv(path: Path, seed: int, start: int, config: StoreConfig) -> None:
    """Apply kv operations from ``start`` on, acknowledging each."""
    with TypedStore.open(path, str, User, config=config) as store:
        for index in range(start, start + MAX_OPS):
            apply_kv(store, kv_op(seed, index))
            acknowledge(index)


def run_kv_indexed(path: Path, seed: int, start: int, config: StoreConfig) -> None:
    """Apply kv operations from ``start`` on to an indexed store, acknowledging each."""
    with IndexedUsers.open(path, config=config) as store:
        for index in range(start, start + MAX_OPS):
            apply_kv(store, kv_op(seed, index))
            acknowledge(index)


def run_transfers(path: Path, seed: int, start: int, config: StoreConfig) -> None:
    """Apply transfers from ``start`` on, each in one transaction, acknowledging each."""
    with TypedStore.open(path, str, Account, config=config) as store:
        for index in range(start, start + MAX_OPS):
            with store.transaction() as txn:
                apply_transfer(txn, transfer_op(seed, index))
            acknowledge(index)


def run_bank(path: Path, seed: int, start: int, config: StoreConfig) -> None:
    """Apply bank transfers from ``start`` on, each one transaction across two collections."""
    with Bank.open(path, config=config) as bank:
        for index in range(start, start + MAX_OPS):
            with bank.transaction() as tx:
                apply_transfer(Routed(tx), bank_op(seed, index))
            acknowledge(index)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the workload until killed."""
    parser = argparse.ArgumentParser(prog="python -m tests.writer_child")
    parser.add_argument("workload", choices=["kv", "kv-indexed", "transfer", "bank"])
    parser.add_argument("log", type=Path)
    parser.add_argument("seed", type=int)
    parser.add_argument("start", type=int)
    parser.add_argument("config", choices=sorted(CONFIGS))
    args = parser.parse_args(argv)
    run = {
        "kv": run_kv,
        "kv-indexed": run_kv_indexed,
        "transfer": run_transfers,
        "bank": run_bank,
    }[args.workload]
    run(args.log, args.seed, args.start, CONFIGS[args.config])


def forked(argv: list[str], cwd: str, out: Connection, stderr: str) -> None:
    """Run :func:`main` on ``argv`` in a process forked from a server that imported this
    module already (``multiprocessing``'s forkserver): as ``python -m tests.writer_child``
    would run from ``cwd``, without the interpreter's start and the imports, with
    stdout going to ``out`` and stderr to the file ``stderr``."""
    os.chdir(cwd)
    os.dup2(out.fileno(), sys.stdout.fileno())
    out.close()
    errors = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(errors, sys.stderr.fileno())
    os.close(errors)
    main(argv)


if __name__ == "__main__":
    main()
