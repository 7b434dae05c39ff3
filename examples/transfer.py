"""Transfers between accounts in ``store.transaction()``: the total balance never changes.

A transaction's writes reach the log as one batch record when the ``with`` block ends
normally, so a crash can never leave money debited but not credited. An exception in
the block (here: insufficient funds, raised after the credit was already staged)
discards every write of the block and propagates.

Run it with ``python examples/transfer.py [LOG]``. The log defaults to
``./data/transfer.log`` under the current directory; an old one is removed first.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

from typedstore import TypedStore

DEFAULT_LOG = Path("data") / "transfer.log"


class Account(BaseModel):
    """A bank account; balances are whole cents."""

    owner: str
    balance: int


class InsufficientFundsError(Exception):
    """The source account cannot cover the transfer."""


def transfer(accounts: TypedStore[str, Account], source: str, target: str, amount: int) -> None:
    """Move ``amount`` cents from ``source`` to ``target``, all or nothing."""

    def debit(account: Account) -> Account:
        if account.balance < amount:
            raise InsufficientFundsError(
                f"{account.owner} has {account.balance} cents, cannot send {amount}"
            )
        return account.model_copy(update={"balance": account.balance - amount})

    with accounts.transaction() as tx:
        # Credit first, so the failure below happens with a write already staged.
        tx.modify(target, lambda a: a.model_copy(update={"balance": a.balance + amount}))
        tx.modify(source, debit)


def show(label: str, accounts: TypedStore[str, Account]) -> None:
    """Print every balance and the total on one line."""
    balances = " ".join(f"{key}={account.balance}" for key, account in accounts.items())
    total = sum(account.balance for account in accounts.values())
    print(f"{label}: {balances} total={total}")


def main(argv: list[str]) -> None:
    """Open two accounts, run one good and one failing transfer, then reopen the log."""
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_LOG
    path.unlink(missing_ok=True)
    with TypedStore.open(path, str, Account) as accounts:
        accounts["alice"] = Account(owner="Alice", balance=10_000)
        accounts["bob"] = Account(owner="Bob", balance=2_500)
        show("opened", accounts)
        transfer(accounts, "alice", "bob", 3_000)
        show("after alice->bob 3000", accounts)
        try:
            transfer(accounts, "bob", "alice", 9_000)
        except InsufficientFundsError as exc:
            print(f"bob->alice 9000 failed: {exc}")
        show("after failed transfer", accounts)
    with TypedStore.open(path, str, Account, readonly=True) as accounts:
        show("after reopening", accounts)


if __name__ == "__main__":
    main(sys.argv)
