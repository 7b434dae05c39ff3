"""Domain records updated in place with ``modify``: orders are marked paid, then shipped.

``modify(key, fn)`` hands ``fn`` a private copy of the stored value and writes what it
returns as one record. If ``fn`` raises, or its result does not validate, nothing
changes: not the value in memory, not the log file.

Run it with ``python examples/records.py [LOG]``. The log defaults to
``./data/records.log`` under the current directory; an old one is removed first.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from typedstore import TypedStore

DEFAULT_LOG = Path("data") / "records.log"
PAID_AT = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


class LineItem(BaseModel):
    """One product line of an order."""

    sku: str
    quantity: int
    unit_price_cents: int


class Order(BaseModel):
    """An order; its status only moves forward: open, paid, shipped."""

    customer: str
    items: list[LineItem]
    status: Literal["open", "paid", "shipped"] = "open"
    paid_at: datetime | None = None

    @property
    def total_cents(self) -> int:
        """The order's total price in cents."""
        return sum(item.quantity * item.unit_price_cents for item in self.items)


class OrderStateError(Exception):
    """An order cannot move to the requested status from its current one."""


class PaymentDeclinedError(Exception):
    """The payment provider refused the payment."""


def mark_paid(order: Order) -> Order:
    """Return ``order`` marked paid; raise ``OrderStateError`` unless it is open."""
    if order.status != "open":
        raise OrderStateError(f"cannot pay an order that is {order.status}")
    order.status = "paid"  # safe: modify passes a private copy, not the stored value
    order.paid_at = PAID_AT
    return order


def mark_shipped(order: Order) -> Order:
    """Return ``order`` marked shipped; raise ``OrderStateError`` unless it is paid."""
    if order.status != "paid":
        raise OrderStateError(f"cannot ship an order that is {order.status}")
    return order.model_copy(update={"status": "shipped"})


def pay_with_declined_card(order: Order) -> Order:
    """Mark ``order`` paid, then fail as a declined card would, after changing the copy."""
    mark_paid(order)
    raise PaymentDeclinedError("card declined")


def show(orders: TypedStore[str, Order]) -> None:
    """Print every order on one line, in insertion order."""
    for order_id, order in orders.items():
        paid = order.paid_at.isoformat() if order.paid_at else "-"
        print(f"  {order_id}: {order.customer} {order.total_cents} cents {order.status} {paid}")


def failed_updates(orders: TypedStore[str, Order], path: Path) -> None:
    """Try updates that raise, and show that neither the value nor the log changed."""
    before, size = orders["A-1002"], path.stat().st_size
    try:
        orders.modify("A-1002", mark_shipped)
    except OrderStateError as exc:
        print(f"ship A-1002 refused: {exc}")
    try:
        orders.modify("A-1002", pay_with_declined_card)
    except PaymentDeclinedError as exc:
        print(f"pay A-1002 failed: {exc}")
    try:
        orders.modify("A-1002", lambda o: o.model_copy(update={"status": "lost"}))
    except ValidationError as exc:
        print(f"status 'lost' refused: {exc.errors()[0]['msg']}")
    unchanged = orders["A-1002"] == before and path.stat().st_size == size
    print(f"A-1002 and the log unchanged after failed updates: {unchanged}")


def main(argv: list[str]) -> None:
    """Create orders, update them with ``modify``, and reopen the log to check."""
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_LOG
    path.unlink(missing_ok=True)
    with TypedStore.open(path, str, Order) as orders:
        pens = LineItem(sku="pen", quantity=3, unit_price_cents=150)
        ink = LineItem(sku="ink", quantity=1, unit_price_cents=900)
        orders["A-1001"] = Order(customer="Ada", items=[pens])
        orders["A-1002"] = Order(customer="Bo", items=[ink, pens])
        orders.modify("A-1001", mark_paid)
        orders.modify("A-1001", mark_shipped)
        failed_updates(orders, path)
        paid = orders.modify("A-1002", mark_paid)
        print(f"paid A-1002: status={paid.status}")
    with TypedStore.open(path, str, Order, readonly=True) as orders:
        print("after reopening:")
        show(orders)


if __name__ == "__main__":
    main(sys.argv)
