"""A store instance of its own, for the several-instances tests of ``test_postgres_store``.

Run as ``python -m tests.pg_store_child DSN NAME WHO N``: open store ``NAME`` (``str`` to
``int``) and N times increment key ``"n"`` with ``modify`` and insert key ``WHO-i``;
every fifth round is a transaction doing both.

With N ``forever``: write batches until killed, each a transaction setting keys
``WHO-i-0`` to ``WHO-i-19`` to ``i`` (one record), and printing ``i`` once it committed.
"""

from __future__ import annotations

import sys

from typedstore import PostgresEngine, TypedStore


def main(dsn: str, name: str, who: str, count: int) -> None:
    """Increment and insert ``count`` times; see the module docstring."""
    with TypedStore.open(PostgresEngine(dsn, name=name), str, int) as store:
        for number in range(count):
            if number % 5 == 4:
                with store.transaction() as txn:
                    txn["n"] = txn["n"] + 1
                    txn[f"{who}-{number}"] = number
            else:
                store.modify("n", lambda n: n + 1)
                store[f"{who}-{number}"] = number


BATCH = 20
"""How many keys each of ``forever``'s transactions sets."""


def forever(dsn: str, name: str, who: str) -> None:
    """Write batches until killed; see the module docstring."""
    with TypedStore.open(PostgresEngine(dsn, name=name), str, int) as store:
        number = 0
        while True:
            with store.transaction() as txn:
                for part in range(BATCH):
                    txn[f"{who}-{number}-{part}"] = number
            print(number, flush=True)
            number += 1


if __name__ == "__main__":
    if sys.argv[4] == "forever":
        forever(sys.argv[1], sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
