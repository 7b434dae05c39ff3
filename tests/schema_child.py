"""A compacting process for the schema kill test: it rewrites a v1 log at v2, over and over.

Run as ``python -m tests.schema_child MASTER LOG`` (``PYTHONPATH`` must hold the project
root). ``MASTER`` is a log written at schema version 1 (see :func:`write_v1`). Each
iteration puts a copy of it in place of ``LOG`` (copy beside it, then an atomic rename),
opens ``LOG`` at version 2 with :data:`MIGRATIONS`, compacts it, which rewrites every old
record at version 2, closes it and prints the iteration's number on its own line. It runs
until it is killed. Every state ``LOG`` passes through opens to the same entries: the
master's, upgraded.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pydantic import BaseModel

from typedstore import TypedStore

MAX_ITERATIONS = 100_000
"""A child left running by a crashed parent stops on its own after this many iterations."""


class ItemV1(BaseModel):
    """An item as version 1 of the application wrote it."""

    title: str
    qty: int
    note: str


class ItemV2(BaseModel):
    """Version 2: ``title`` is renamed to ``name``, ``note`` is dropped, ``tags`` is new."""

    name: str
    qty: int
    tags: list[str] = []


def upgrade_1_to_2(data: dict[str, object]) -> dict[str, object]:
    """Rename ``title`` to ``name`` and drop ``note``."""
    data["name"] = data.pop("title")
    del data["note"]
    return data


MIGRATIONS = {1: upgrade_1_to_2}


def write_v1(path: Path, count: int) -> None:
    """Write a v1 log of ``count`` items, with overwrites and removes among them."""
    with TypedStore.open(path, str, ItemV1) as items:
        for index in range(count):
            items[f"item{index:05d}"] = ItemV1(title=f"Item {index}", qty=index, note="x" * 40)
        for index in range(0, count, 3):
            items[f"item{index:05d}"] = ItemV1(title=f"Item {index}", qty=-index, note="redo")
        for index in range(0, count, 7):
            del items[f"item{index:05d}"]


def open_v2(path: Path, *, readonly: bool = False) -> TypedStore[str, ItemV2]:
    """Open ``path`` as version 2 of the application does."""
    return TypedStore.open(path, str, ItemV2, readonly=readonly, version=2, migrations=MIGRATIONS)


def main(argv: list[str]) -> None:
    """Replace the log by the master and compact it at version 2, until killed."""
    master, log = Path(argv[1]), Path(argv[2])
    staging = log.with_name(log.name + ".staging")
    for iteration in range(MAX_ITERATIONS):
        shutil.copyfile(master, staging)
        os.replace(staging, log)
        with open_v2(log) as items:
            items.compact()
        print(iteration, flush=True)


if __name__ == "__main__":
    main(sys.argv)
