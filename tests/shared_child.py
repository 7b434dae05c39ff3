"""Processes for the shared-mode tests (tests/test_shared.py), each a store opened shared.

Run as ``python -m tests.shared_child COMMAND LOG [ARGS]`` (``PYTHONPATH`` must hold the
project root):

- ``count N``: ``modify`` the counter ``"counter"`` N times, adding one; print ``done``.
- ``chaos NAME SEED N``: N operations of :func:`operations` (``NAME``'s keys, and the
  shared counter), printing ``try I`` before operation I and ``ack I`` once it returned;
  then print ``done``, wait for a line on stdin and print its view (:func:`view_line`).
- ``insert NAME N``: insert ``NAME:i = i`` for i below N, printing ``ack i`` after each.
- ``compact N``: compact the log N times; print ``done``.
- ``read KEY``: for each line on stdin, print the value of ``KEY`` (``None`` if absent);
  ``read-only KEY`` does the same in a store opened with ``readonly=True``.
- ``declare NAME``: declare the collection ``NAME`` of a :class:`Database`, print
  ``declared``, wait for a line on stdin, set ``NAME["k"] = 2`` and print ``written``.
- ``pairs N``: read ``left["k"]`` and ``right["k"]`` of :class:`Twins` in one
  transaction until they are N; print ``mismatch A B`` if they ever differ, else ``ok``.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from typedstore import Collection, Database, TypedStore

COUNTER = "counter"
"""The key every chaos child increments."""


class Twins(Database):
    """Two collections a transaction writes together."""

    left: Collection[str, int]
    right: Collection[str, int]


Operation = tuple[str, list[str]]
"""An operation of a chaos child: its kind and the keys it touches."""


def operations(name: str, seed: int, count: int) -> list[Operation]:
    """Return the deterministic operations of chaos child ``name``: the parent replays them."""
    rng = random.Random(f"{name}:{seed}")
    keys = [f"{name}:{i}" for i in range(6)]
    kinds = ["insert", "modify", "remove", "transaction", "increment"]
    return [(rng.choice(kinds), rng.sample(keys, 2)) for _ in range(count)]


def apply(model: dict[str, int], index: int, operation: Operation) -> None:
    """Apply ``operation``, the ``index``th, to ``model`` as a store applies it."""
    kind, (first, second) = operation
    if kind == "insert":
        model[first] = index
    elif kind == "modify":
        model[first] = model.get(first, 0) + 1
    elif kind == "remove":
        model.pop(first, None)
    elif kind == "transaction":
        model[first] = index
        model.pop(second, None)
    else:
        model[COUNTER] = model.get(COUNTER, 0) + 1


def run(store: TypedStore[str, int], index: int, operation: Operation) -> None:
    """Apply ``operation``, the ``index``th, to ``store``."""
    kind, (first, second) = operation
    if kind == "insert":
        store[first] = index
    elif kind == "modify":
        store.modify(first, lambda value: value + 1, default=0)
    elif kind == "remove":
        store.remove(first)
    elif kind == "transaction":
        with store.transaction() as txn:
            txn[first] = index
            txn.remove(second)
    else:
        store.modify(COUNTER, lambda value: value + 1, default=0)


def view_line(store: TypedStore[str, int]) -> str:
    """Return the store's entries as one JSON line."""
    return json.dumps(dict(store.items()), sort_keys=True)


def say(line: str) -> None:
    print(line, flush=True)


def chaos(path: Path, name: str, seed: int, count: int) -> None:
    with TypedStore.open(path, str, int, shared=True) as store:
        for index, operation in enumerate(operations(name, seed, count)):
            say(f"try {index}")
            run(store, index, operation)
            say(f"ack {index}")
        say("done")
        sys.stdin.readline()
        say(view_line(store))


def count(path: Path, times: int) -> None:
    with TypedStore.open(path, str, int, shared=True) as store:
        for _ in range(times):
            store.modify(COUNTER, lambda value: value + 1, default=0)
    say("done")


def insert(path: Path, name: str, times: int) -> None:
    with TypedStore.open(path, str, int, shared=True) as store:
        for index in range(times):
            store[f"{name}:{index}"] = index
            say(f"ack {index}")
    say("done")


def compact(path: Path, times: int) -> None:
    with TypedStore.open(path, str, int, shared=True) as store:
        for _ in range(times):
            store.compact()
    say("done")


def read(path: Path, key: str, *, readonly: bool) -> None:
    options = {"readonly": True} if readonly else {"shared": True}
    with TypedStore.open(path, str, int, **options) as store:  # type: ignore[call-overload]
        say("ready")
        for _ in sys.stdin:
            say(str(store.get(key)))


def declare(path: Path, name: str) -> None:
    with Database.open(path, shared=True) as database:
        collection = database.collection(name, str, int)
        say("declared")
        sys.stdin.readline()
        collection["k"] = 2
        say("written")


def pairs(path: Path, until: int) -> None:
    with Twins.open(path, shared=True) as twins:
        say("ready")
        while True:
            with twins.transaction() as tx:
                left, right = tx.left.get("k"), tx.right.get("k")
            if left != right:
                say(f"mismatch {left} {right}")
                return
            if left == until:
                say("ok")
                return


COMMANDS: dict[str, Callable[[Path, list[str]], None]] = {
    "count": lambda path, args: count(path, int(args[0])),
    "chaos": lambda path, args: chaos(path, args[0], int(args[1]), int(args[2])),
    "insert": lambda path, args: insert(path, args[0], int(args[1])),
    "compact": lambda path, args: compact(path, int(args[0])),
    "read": lambda path, args: read(path, args[0], readonly=False),
    "read-only": lambda path, args: read(path, args[0], readonly=True),
    "pairs": lambda path, args: pairs(path, int(args[0])),
    "declare": lambda path, args: declare(path, args[0]),
}


if __name__ == "__main__":
    COMMANDS[sys.argv[1]](Path(sys.argv[2]), sys.argv[3:])
