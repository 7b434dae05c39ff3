"""A shop's users and orders in one ``Database``, and payments across both collections.

Paying an order marks it paid and adds its total to its user's spending in one
transaction: one batch record across the two collections, so a crash can never leave an
order paid but not charged, or the reverse. A payment that fails (a declined card,
raised after the order was already marked paid in the transaction) writes nothing.

Indexes find a user by email and list the newest orders first (README.md, "Indexes").

The script is safe to run again over its own log, as after a crash: it creates what is
missing and pays what is unpaid, so a second run charges nobody twice and prints the same.

Run it with ``python examples/shop.py [LOG]``. The log defaults to ``./data/shop.log``
under the current directory.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from pydantic import BaseModel

from typedstore import Collection, Database, Index

DEFAULT_LOG = Path("data") / "shop.log"


class User(BaseModel):
    """A customer and what they spent, in cents."""

    name: str
    email: str
    spent: int = 0


class Order(BaseModel):
    """An order of a user, in cents."""

    user: str
    total: int
    placed: date
    paid: bool = False


class Users(Collection[str, User]):
    """The customers, found by email: no two share one."""

    by_email: Index[User, str] = Index(lambda user: user.email, unique=True)


class Orders(Collection[int, Order]):
    """The orders, listed by the day they were placed."""

    by_placed: Index[Order, date] = Index(lambda order: order.placed, ordered=True)


class Shop(Database):
    """Everything the shop keeps, in one log."""

    users: Users
    orders: Orders


class CardDeclinedError(Exception):
    """The payment provider refused the card."""


def pay(shop: Shop, order_id: int, *, declined: bool = False) -> bool:
    """Mark the order paid and charge its user, all or nothing; return whether it charged."""
    with shop.transaction() as tx:
        order = tx.orders[order_id]
        if order.paid:
            return False
        tx.orders[order_id] = order.model_copy(update={"paid": True})
        tx.users.modify(order.user, lambda u: u.model_copy(update={"spent": u.spent + order.total}))
        if declined:
            raise CardDeclinedError(f"card of {order.user} declined")
    return True


def show(shop: Shop) -> None:
    """Print every user and order on one line each."""
    for key, user in shop.users.items():
        print(f"  user {key}: {user.name} spent={user.spent}")
    for number, order in shop.orders.items():
        state = "paid" if order.paid else "open"
        print(f"  order {number}: {order.user} {order.total} {state}")


def main(argv: list[str]) -> None:
    """Set the shop up where needed, look users and orders up, pay order 1, fail to pay
    order 2, then reopen."""
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_LOG
    with Shop.open(path) as shop:
        shop.users.setdefault("ada", User(name="Ada", email="ada@example.org"))
        shop.users.setdefault("bo", User(name="Bo", email="bo@example.org"))
        shop.orders.setdefault(1, Order(user="ada", total=3000, placed=date(2026, 3, 2)))
        shop.orders.setdefault(2, Order(user="bo", total=1250, placed=date(2026, 3, 9)))
        shop.orders.setdefault(3, Order(user="ada", total=800, placed=date(2026, 2, 20)))
        found = shop.users.by_email.get("bo@example.org")
        print(f"user with email bo@example.org: {found[0] if found else None}")
        newest = shop.orders.by_placed.range(None, None, reverse=True, limit=2)
        print(f"two newest orders: {[number for number, _ in newest]}")
        pay(shop, 1)
        print(f"order 1 paid: {shop.orders[1].paid}, ada spent {shop.users['ada'].spent}")
        size = path.stat().st_size
        try:
            pay(shop, 2, declined=True)
        except CardDeclinedError as exc:
            print(f"order 2 payment failed: {exc}")
        print(f"nothing written by the failed payment: {path.stat().st_size == size}")
    with Shop.open(path) as shop:
        print("after reopening:")
        show(shop)


if __name__ == "__main__":
    main(sys.argv)
