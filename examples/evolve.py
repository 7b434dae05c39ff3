"""Changing models over time: schema versions, migrations, and no field lost silently.

Three releases of an application share one log of customers. Version 2 renames ``name``
to ``full_name`` and gains a defaulted ``email``; version 3 drops ``fax``. Each release
opens the log with its own model, its schema ``version`` and the ``migrations`` that
upgrade older records (``migrations[k]`` turns version-k data into version k + 1), so
records written by every earlier release still open. The script also shows what is
refused (a missing migration step, a field dropped without saying so, older code opening
newer records), how ``compact()`` leaves a single-version log that needs no migrations,
and a compatible change (a new defaulted field) that needs no version bump.

Run it with ``python examples/evolve.py [LOG]``. The log defaults to
``./data/evolve.log`` under the current directory; an old one is removed first.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pydantic import BaseModel

from typedstore import SchemaMismatchError, TypedStore

DEFAULT_LOG = Path("data") / "evolve.log"


class CustomerV1(BaseModel):
    """Release 1."""

    name: str
    phone: str
    fax: str


class CustomerV2(BaseModel):
    """Release 2: ``name`` is renamed to ``full_name``; ``email`` is new, with a default."""

    full_name: str
    phone: str
    fax: str
    email: str = ""


class CustomerV3(BaseModel):
    """Release 3: ``fax`` is dropped."""

    full_name: str
    phone: str
    email: str = ""


class CustomerV3Newsletter(BaseModel):
    """Release 3 again, with a defaulted field added later: compatible, so still version 3."""

    full_name: str
    phone: str
    email: str = ""
    newsletter: bool = False


def rename_name(data: dict[str, object]) -> dict[str, object]:
    """Upgrade version-1 data to version 2: ``name`` becomes ``full_name``."""
    data["full_name"] = data.pop("name")
    return data


def drop_fax(data: dict[str, object]) -> dict[str, object]:
    """Upgrade version-2 data to version 3: remove ``fax``, on purpose."""
    del data["fax"]
    return data


def keep_all(data: dict[str, object]) -> dict[str, object]:
    """A wrong 2 -> 3 migration: it forgets to remove ``fax``."""
    return data


MIGRATIONS = {1: rename_name, 2: drop_fax}


class CustomersV3(TypedStore[str, CustomerV3], version=3, migrations=MIGRATIONS):
    """Release 3's store: types, version and migrations declared once, on the class."""


class PrintLogged(logging.Handler):
    """Print what the store logs, without the log's path, so the output is the same anywhere."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.INFO)
        self.prefix = f"{path.resolve()}: "

    def emit(self, record: logging.LogRecord) -> None:
        print(f"  logged: {record.getMessage().removeprefix(self.prefix)}")


def release_1(path: Path) -> None:
    """Store two customers at version 1 (the default version)."""
    with TypedStore.open(path, str, CustomerV1) as customers:
        customers["ada"] = CustomerV1(name="Ada Lovelace", phone="555-0101", fax="555-0102")
        customers["bo"] = CustomerV1(name="Bo Diddley", phone="555-0201", fax="555-0202")
        print(f"release 1: stored {len(customers)} customers at version {customers.schema_version}")


def release_2(path: Path) -> None:
    """Open the version-1 records at version 2, then store one customer at version 2."""
    with TypedStore.open(
        path, str, CustomerV2, version=2, migrations={1: rename_name}
    ) as customers:
        print(f"release 2: ada is {customers['ada']!r}")
        customers["cy"] = CustomerV2(
            full_name="Cy Twombly", phone="555-0301", fax="555-0302", email="cy@example.com"
        )
        print(f"release 2: stored cy at version {customers.schema_version}")


def release_3_mistakes(path: Path) -> None:
    """Two wrong ways to open the log at version 3: both refused, the log untouched."""
    before = path.read_bytes()
    try:
        TypedStore.open(path, str, CustomerV3, version=3, migrations={1: rename_name})
    except SchemaMismatchError as exc:
        print(f"release 3 without the 2 -> 3 step: refused (version {exc.version} records)")
    try:
        TypedStore.open(path, str, CustomerV3, version=3, migrations={1: rename_name, 2: keep_all})
    except SchemaMismatchError as exc:
        print(f"release 3 keeping fax by mistake: refused, would lose {', '.join(exc.fields)}")
    print(f"log unchanged by the refusals: {path.read_bytes() == before}")


def release_3(path: Path) -> None:
    """Open at version 3 through both migrations, write, and refuse release 2's code after."""
    with CustomersV3.open(path) as customers:
        for key, customer in customers.items():
            print(f"release 3: {key} is {customer!r}")
        customers["di"] = CustomerV3(full_name="Di Prima", phone="555-0401")
    try:
        TypedStore.open(path, str, CustomerV2, version=2, migrations={1: rename_name})
    except SchemaMismatchError as exc:
        print(f"release 2 reopening the log: refused (records at version {exc.version})")


def compact_and_reopen(path: Path) -> None:
    """Compact at version 3; the log then opens without any migration."""
    with CustomersV3.open(path) as customers:
        expected = list(customers.items())
        customers.compact()
    with TypedStore.open(path, str, CustomerV3, version=3) as customers:
        same = list(customers.items()) == expected
        print(f"after compact(): opens at version 3 without migrations, same values: {same}")


def compatible_change(path: Path) -> None:
    """Add a defaulted field without a version bump: it opens, and the store logs the change."""
    logger = logging.getLogger("typedstore")
    handler = PrintLogged(path)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with TypedStore.open(path, str, CustomerV3Newsletter, version=3) as customers:
            print(f"compatible change: ada.newsletter={customers['ada'].newsletter}")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def main(argv: list[str]) -> None:
    """Run the three releases against the log named in ``argv``."""
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_LOG
    path.unlink(missing_ok=True)
    release_1(path)
    release_2(path)
    release_3_mistakes(path)
    release_3(path)
    compact_and_reopen(path)
    compatible_change(path)


if __name__ == "__main__":
    main(sys.argv)
