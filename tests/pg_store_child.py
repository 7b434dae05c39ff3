"""A store instance of its own, for the several-instances tests of ``test_postgres_store``.

Run as ``python -m tests.pg_store_child DSN NAME WHO N``: open store ``NAME`` (``str`` to
``int``) and N times increment key ``"n"`` with ``modify`` and insert key ``WHO-i``;
every fifth round is a transaction doing both.
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


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
