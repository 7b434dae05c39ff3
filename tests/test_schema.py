"""Schema evolution (issue 4): versions, migrations, and no field lost without being asked.

The running example is a customer model over three versions: version 2 renames ``name`` to
``full_name`` and gains ``email``; version 3 drops ``fax``. Every refusal is checked to leave
the log byte-for-byte as it was.

One class per promise, in file order:

- ``TestMigrations``: old records upgraded from their own version.
- ``TestCompactionAtANewVersion``: compact() leaves a single-version log.
- ``TestWritingAtANewVersion``: the schema record comes with the first write.
- ``TestChangesWithoutAVersionBump``: compatible changes open, others are refused.
- ``TestRemovedFields``: a field is dropped only when declared.
- ``TestMigrationFailures``: missing or failing migrations, log untouched.
- ``TestNewerVersionsRefused``: older code refuses a newer log.
- ``TestDamagedSchemaRecords``: records behind a damaged schema record.
- ``TestDeclaringTheSchema``: schema options at open or as class keywords.
- ``TestSigkillDuringMigratingCompaction``: SIGKILL while compacting at a new version.
- ``TestKeyMerges``: a key type change never merges keys silently.
- ``TestUserCodeErrors``: validator exceptions at open reach the caller.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import pytest
from pydantic import BaseModel

from tests import schema_child
from tests.conftest import OpenStore
from typedstore import CorruptLogError, SchemaMismatchError, StoreConfig, TypedStore, _format
from typedstore.__main__ import main as cli_main
from typedstore._codec import decode_metadata

PROJECT_ROOT = Path(__file__).parents[1]


class CustomerV1(BaseModel):
    """Version 1 of the customer model."""

    name: str
    phone: str
    fax: str


class CustomerV2(BaseModel):
    """Version 2: ``name`` became ``full_name``, and ``email`` is new."""

    full_name: str
    phone: str
    fax: str
    email: str = ""


class CustomerV3(BaseModel):
    """Version 3: ``fax`` is gone."""

    full_name: str
    phone: str
    email: str = ""


class CustomerV3Newsletter(BaseModel):
    """Version 3 with a defaulted field added later, without a version bump."""

    full_name: str
    phone: str
    email: str = ""
    newsletter: bool = False


def rename_name(data: dict[str, object]) -> dict[str, object]:
    """Migration 1 -> 2: ``name`` is now ``full_name``."""
    data["full_name"] = data.pop("name")
    return data


def drop_fax(data: dict[str, object]) -> dict[str, object]:
    """Migration 2 -> 3: ``fax`` is dropped."""
    del data["fax"]
    return data


MIGRATIONS = {1: rename_name, 2: drop_fax}

V1_CUSTOMERS = {
    "ada": CustomerV1(name="Ada Lovelace", phone="555-0101", fax="555-0102"),
    "bo": CustomerV1(name="Bo Diddley", phone="555-0201", fax="555-0202"),
}
V3_CUSTOMERS = {
    "ada": CustomerV3(full_name="Ada Lovelace", phone="555-0101"),
    "bo": CustomerV3(full_name="Bo Diddley", phone="555-0201"),
}


def write_v1(path: Path, open_store: OpenStore | None = None) -> bytes:
    """Write the version-1 customers (with an overwrite and a removal); return the log's bytes.

    ``open_store`` opens the store (see tests/conftest.py): a TypedStore by default."""
    opener = open_store or _open_typed_store
    with opener(TypedStore, path, str, CustomerV1) as customers:
        customers["ada"] = CustomerV1(name="Ada", phone="0", fax="0")
        customers["gone"] = CustomerV1(name="Gone", phone="1", fax="1")
        customers.update(V1_CUSTOMERS)
        del customers["gone"]
    return path.read_bytes()


def open_v3(
    path: Path, open_store: OpenStore | None = None, **options: Any
) -> TypedStore[str, CustomerV3]:
    """Open ``path`` as version 3 of the application does, with both migrations."""
    opener = open_store or _open_typed_store
    return opener(TypedStore, path, str, CustomerV3, version=3, migrations=MIGRATIONS, **options)


def _open_typed_store(
    store_class: type[TypedStore[Any, Any]], path: Path, /, *types: Any, **options: Any
) -> Any:
    return store_class.open(path, *types, **options)


def log_versions(path: Path) -> list[int]:
    """Return the schema version of the log's header and of each schema record, in order."""
    buf = path.read_bytes()
    meta, offset = _format.decode_header(buf)
    metas = [meta]
    while offset < len(buf):
        end = _format.read_frame(buf, offset)
        assert end != -1, f"no valid frame at {offset}"
        schema = _format.schema_meta(_format.frame_body(buf, offset, end))
        if schema is not None:
            metas.append(schema)
        offset = end
    versions = []
    for data in map(decode_metadata, metas):
        assert isinstance(data["version"], int)
        versions.append(data["version"])
    return versions


def frame_kinds(buf: bytes, offset: int) -> list[int]:
    """Return the record kind of every frame from ``offset`` to the end of ``buf``."""
    kinds = []
    while offset < len(buf):
        end = _format.read_frame(buf, offset)
        assert end != -1, f"no valid frame at {offset}"
        kinds.append(_format.kind_of(_format.frame_body(buf, offset, end))[0])
        offset = end
    return kinds


def assert_untouched(path: Path, before: bytes) -> None:
    """The log holds exactly ``before``, and no temp file or copy was left beside it."""
    assert path.read_bytes() == before
    extra = {p.name for p in path.parent.iterdir()} - {path.name, path.name + ".lock"}
    assert extra == set()


class TestMigrations:
    """Each old record is upgraded from its own version by the declared migrations."""

    @pytest.mark.file_only  # writes or reads the log's file itself
    def test_v1_log_opens_at_v3_through_two_migrations(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """A log written at version 1 opens at version 3 with each value upgraded twice."""
        write_v1(log_path, open_store)
        with open_v3(log_path, open_store) as customers:
            assert list(customers.items()) == list(V3_CUSTOMERS.items())
            assert customers.schema_version == 3

    def test_each_record_migrates_from_its_own_version(self, log_path: Path) -> None:
        """In a log holding v1 and v2 records, v1 values take two steps and v2 values one."""
        write_v1(log_path)
        with TypedStore.open(
            log_path, str, CustomerV2, version=2, migrations={1: rename_name}
        ) as customers:
            customers["cy"] = CustomerV2(full_name="Cy", phone="555-0301", fax="-", email="cy@x")
        with open_v3(log_path) as customers:
            assert customers["cy"] == CustomerV3(full_name="Cy", phone="555-0301", email="cy@x")
            assert customers["ada"] == V3_CUSTOMERS["ada"]

    def test_migrations_get_the_decoded_data_of_old_values_only(self, log_path: Path) -> None:
        """Migrations receive plain dicts of old live values, and nothing written since."""
        write_v1(log_path)
        seen: list[object] = []

        def spy(data: dict[str, object]) -> dict[str, object]:
            seen.append(dict(data))
            return rename_name(data)

        def open_v2() -> TypedStore[str, CustomerV2]:
            return TypedStore.open(log_path, str, CustomerV2, version=2, migrations={1: spy})

        with open_v2() as customers:
            customers.modify("ada", lambda c: c.model_copy(update={"email": "ada@x"}))
        seen.clear()
        with open_v2() as customers:
            assert customers["ada"].email == "ada@x"
            assert customers["bo"].full_name == "Bo Diddley"
        assert seen == [{"name": "Bo Diddley", "phone": "555-0201", "fax": "555-0202"}]

    @pytest.mark.file_only  # writes or reads the log's file itself
    def test_readonly_open_migrates_in_memory_and_writes_nothing(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """A read-only open at version 3 shows upgraded values and leaves the folder as it was."""
        before = write_v1(log_path, open_store)
        listing = sorted(p.name for p in log_path.parent.iterdir())
        with open_v3(log_path, open_store, readonly=True) as customers:
            assert list(customers.items()) == list(V3_CUSTOMERS.items())
        assert log_path.read_bytes() == before
        assert sorted(p.name for p in log_path.parent.iterdir()) == listing


class TestCompactionAtANewVersion:
    """compact() rewrites old records at the current version, leaving a single-version log."""

    def test_compacted_log_opens_at_v3_without_migrations(self, log_path: Path) -> None:
        """After compact() the log opens at version 3 with no migrations, to the same values."""
        write_v1(log_path)
        with open_v3(log_path) as customers:
            customers.compact()
        with TypedStore.open(log_path, str, CustomerV3, version=3) as customers:
            assert list(customers.items()) == list(V3_CUSTOMERS.items())

    def test_compacted_log_is_single_version(self, log_path: Path) -> None:
        """After compact() the header says version 3 and the log holds no schema record."""
        write_v1(log_path)
        with open_v3(log_path) as customers:
            customers["cy"] = CustomerV3(full_name="Cy", phone="555-0301")
            assert log_versions(log_path) == [1, 3]
            customers.compact()
        assert log_versions(log_path) == [3]
        assert _format.RecordKind.SCHEMA not in frame_kinds(
            log_path.read_bytes(), _format.decode_header(log_path.read_bytes())[1]
        )


class TestWritingAtANewVersion:
    """The first write at a new version appends a schema record; opening alone writes nothing."""

    def test_first_write_after_new_types_appends_schema_record_then_record(
        self, log_path: Path
    ) -> None:
        """The first write at a new version appends a schema record, then the record itself."""
        before = write_v1(log_path)
        with open_v3(log_path) as customers:
            customers["cy"] = CustomerV3(full_name="Cy", phone="555-0301")
            customers["di"] = CustomerV3(full_name="Di", phone="555-0401")
        after = log_path.read_bytes()
        assert after.startswith(before)
        insert = _format.RecordKind.INSERT
        assert frame_kinds(after, len(before)) == [_format.RecordKind.SCHEMA, insert, insert]
        assert log_versions(log_path) == [1, 3]

    @pytest.mark.file_only  # writes or reads the log's file itself
    def test_reopen_after_writing_at_new_version_gives_the_same_values(
        self, log_path: Path, open_store: OpenStore
    ) -> None:
        """Values written at version 3 and upgraded v1 values read back alike after a reopen."""
        write_v1(log_path, open_store)
        with open_v3(log_path, open_store) as customers:
            customers["cy"] = CustomerV3(full_name="Cy", phone="555-0301", email="cy@x")
            expected = list(customers.items())
        with open_v3(log_path, open_store) as customers:
            assert list(customers.items()) == expected
        assert [key for key, _ in expected] == ["ada", "bo", "cy"]

    def test_transaction_after_new_types_replays_at_the_new_version(self, log_path: Path) -> None:
        """A transaction committed first after opening at version 3 replays as version-3 data."""
        before = write_v1(log_path)
        with open_v3(log_path) as customers, customers.transaction() as tx:
            tx["cy"] = CustomerV3(full_name="Cy", phone="555-0301")
            del tx["bo"]
        kinds = frame_kinds(log_path.read_bytes(), len(before))
        assert kinds == [_format.RecordKind.SCHEMA, _format.RecordKind.BATCH]
        with open_v3(log_path) as customers:
            assert list(customers) == ["ada", "cy"]
            assert customers["cy"] == CustomerV3(full_name="Cy", phone="555-0301")

    def test_buffered_write_after_new_types_replays_at_the_new_version(
        self, log_path: Path
    ) -> None:
        """With write_through=False the schema record is buffered with the record and both land."""
        write_v1(log_path)
        config = StoreConfig(write_through=False)
        with open_v3(log_path, config=config) as customers:
            customers["cy"] = CustomerV3(full_name="Cy", phone="555-0301")
        assert log_versions(log_path) == [1, 3]
        with open_v3(log_path) as customers:
            assert customers["cy"] == CustomerV3(full_name="Cy", phone="555-0301")

    def test_opening_with_new_types_without_writing_changes_nothing(self, log_path: Path) -> None:
        """Opening at version 3, reading, flushing and closing leaves the log's bytes as they
        were."""
        before = write_v1(log_path)
        with open_v3(log_path) as customers:
            assert list(customers.values()) == list(V3_CUSTOMERS.values())
            customers.flush()
        assert_untouched(log_path, before)


class TestChangesWithoutAVersionBump:
    """Compatible type changes open without a bump and are logged; others are refused."""

    def test_defaulted_field_without_bump_opens_and_logs_the_change(
        self, log_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A new field with a default needs no bump; open takes the default and logs the change."""
        write_v1(log_path)
        with open_v3(log_path) as customers:
            customers.compact()
        caplog.set_level(logging.INFO, logger="typedstore")
        with TypedStore.open(log_path, str, CustomerV3Newsletter, version=3) as customers:
            assert customers["ada"].newsletter is False
        messages = [r.getMessage() for r in caplog.records if r.name == "typedstore"]
        assert len(messages) == 1
        assert "without a schema version bump" in messages[0]
        assert "added: newsletter" in messages[0]

    def test_unchanged_types_log_nothing(
        self, log_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Reopening with the types a log was written with logs nothing on the typedstore logger."""
        write_v1(log_path)
        caplog.set_level(logging.DEBUG, logger="typedstore")
        with TypedStore.open(log_path, str, CustomerV1) as customers:
            assert customers["ada"] == V1_CUSTOMERS["ada"]
        assert [r.getMessage() for r in caplog.records if r.name == "typedstore"] == []

    def test_widened_type_without_bump_opens(self, log_path: Path) -> None:
        """Widening a field's type (int to float | str) keeps the stored values."""

        class Reading(BaseModel):
            value: int

        class WideReading(BaseModel):
            value: float | str

        with TypedStore.open(log_path, str, Reading) as readings:
            readings["t1"] = Reading(value=21)
        with TypedStore.open(log_path, str, WideReading) as wide:
            assert wide["t1"] == WideReading(value=21)

    def test_renamed_field_without_migration_is_refused(self, log_path: Path) -> None:
        """Records that do not validate against the new model raise SchemaMismatchError."""

        class Renamed(BaseModel):
            full_name: str
            phone: str
            fax: str

        before = write_v1(log_path)
        with pytest.raises(SchemaMismatchError, match="does not validate") as info:
            TypedStore.open(log_path, str, Renamed)
        assert isinstance(info.value.error, pydantic.ValidationError)
        assert_untouched(log_path, before)

    def test_key_type_change_is_logged_as_a_key_type_change(
        self, log_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Reopening with another key type logs that the key type changed, not the value type."""
        with TypedStore.open(log_path, str, str) as store:
            store["a"] = "x"
        caplog.set_level(logging.INFO, logger="typedstore")
        with TypedStore.open(log_path, Literal["a", "b"], str, readonly=True) as store:
            assert dict(store) == {"a": "x"}
        messages = [r.getMessage() for r in caplog.records if r.name == "typedstore"]
        assert len(messages) == 1
        assert "the key type changed" in messages[0]
        assert "value type" not in messages[0]

    def test_deeply_nested_invalid_key_is_a_schema_mismatch(self, log_path: Path) -> None:
        """A checksum-valid key nested 1000 lists deep that does not validate:
        SchemaMismatchError."""
        with TypedStore.open(log_path, str, int) as store:
            store["a"] = 1
        size = log_path.stat().st_size
        deep_key = b"\x91" * 1000 + b"\xa1a"  # msgpack: 1000 nested one-item lists around "a"
        body = _format.insert_body(deep_key, b"\x01")
        log_path.write_bytes(log_path.read_bytes() + _format.encode_frame(body, size))
        before = log_path.read_bytes()
        with pytest.raises(SchemaMismatchError, match=f"byte offset {size} .*key type"):
            TypedStore.open(log_path, str, int)
        assert_untouched(log_path, before)


class Address(BaseModel):
    """An address as first stored."""

    street: str
    zip: str


class AddressNoZip(BaseModel):
    """The address without its zip code."""

    street: str


class Line(BaseModel):
    """An order line as first stored."""

    sku: str
    qty: int


class LineNoSku(BaseModel):
    """The order line without its SKU."""

    qty: int


class Person(BaseModel):
    """A person with a nested address and a list of order lines."""

    name: str
    address: Address
    lines: list[Line]


class PersonNoZip(BaseModel):
    """The person whose address lost its zip code."""

    name: str
    address: AddressNoZip
    lines: list[Line]


class PersonNoSku(BaseModel):
    """The person whose order lines lost their SKU."""

    name: str
    address: Address
    lines: list[LineNoSku]


def write_person(path: Path) -> bytes:
    """Write one person and return the log's bytes."""
    with TypedStore.open(path, str, Person) as people:
        people["p1"] = Person(
            name="Ada",
            address=Address(street="1 Main St", zip="12345"),
            lines=[Line(sku="A-1", qty=2), Line(sku="B-2", qty=1)],
        )
    return path.read_bytes()


class TestRemovedFields:
    """A stored field is dropped only when dropped_fields declares it, else refused by name."""

    def test_removed_field_without_bump_is_refused_naming_it(self, log_path: Path) -> None:
        """Opening v1 records with a model lacking ``fax``, at the same version, names ``fax``."""

        class CustomerNoFax(BaseModel):
            name: str
            phone: str

        before = write_v1(log_path)
        with pytest.raises(SchemaMismatchError, match=r"no longer has: fax\b") as info:
            TypedStore.open(log_path, str, CustomerNoFax)
        assert info.value.fields == ("fax",)
        assert info.value.key == "ada"
        assert_untouched(log_path, before)

    def test_removed_field_declared_in_dropped_fields_opens(self, log_path: Path) -> None:
        """The same removal opens when ``dropped_fields`` declares it, and compaction drops it."""

        class CustomerNoFax(BaseModel):
            name: str
            phone: str

        write_v1(log_path)
        with TypedStore.open(log_path, str, CustomerNoFax, dropped_fields={"fax"}) as customers:
            assert customers["bo"] == CustomerNoFax(name="Bo Diddley", phone="555-0201")
            customers.compact()
        with TypedStore.open(log_path, str, dict[str, str]) as raw:
            assert raw["bo"] == {"name": "Bo Diddley", "phone": "555-0201"}

    def test_migration_that_keeps_a_removed_field_is_refused(self, log_path: Path) -> None:
        """A version bump whose migration forgets to remove ``fax`` is refused naming ``fax``."""
        before = write_v1(log_path)
        with pytest.raises(SchemaMismatchError, match="fax") as info:
            TypedStore.open(
                log_path, str, CustomerV3, version=3, migrations={1: rename_name, 2: dict}
            )
        assert info.value.fields == ("fax",)
        assert info.value.version == 1
        assert_untouched(log_path, before)

    @pytest.mark.parametrize(
        ("new_type", "path"),
        [(PersonNoZip, "address.zip"), (PersonNoSku, "lines[].sku")],
        ids=["nested-model", "list-items"],
    )
    def test_nested_field_removal_is_reported_with_a_dotted_path(
        self, log_path: Path, new_type: type[BaseModel], path: str
    ) -> None:
        """A field removed inside a nested model or list item is named by its dotted path."""
        before = write_person(log_path)
        with pytest.raises(SchemaMismatchError, match=re.escape(path)) as info:
            TypedStore.open(log_path, str, new_type)
        assert info.value.fields == (path,)
        assert_untouched(log_path, before)

    def test_nested_field_removal_declared_by_dotted_path_opens(self, log_path: Path) -> None:
        """``dropped_fields={"address.zip"}`` lets the nested removal open."""
        write_person(log_path)
        with TypedStore.open(log_path, str, PersonNoZip, dropped_fields={"address.zip"}) as people:
            assert people["p1"].address == AddressNoZip(street="1 Main St")


def assert_names_the_record(exc: BaseException, path: Path, key: str) -> None:
    """``exc`` carries a note naming the store's log, the record's key and its offset."""
    notes = " ".join(getattr(exc, "__notes__", []))
    assert re.search(rf"store {re.escape(str(path))}\b.*byte offset \d+ \(key {key}\)", notes)


class TestMigrationFailures:
    """A missing or failing migration is refused, naming the record, and the log is untouched."""

    def test_missing_migration_step_is_refused_untouched(self, log_path: Path) -> None:
        """Opening a v1 log at version 3 without a 2 -> 3 migration is refused, file untouched."""
        before = write_v1(log_path)
        with pytest.raises(
            SchemaMismatchError, match=r"no migration upgrades version 2 to 3"
        ) as info:
            TypedStore.open(log_path, str, CustomerV3, version=3, migrations={1: rename_name})
        assert info.value.version == 1
        assert_untouched(log_path, before)

    def test_failing_migration_is_raised_as_is_with_a_note(self, log_path: Path) -> None:
        """A migration's own exception reaches the caller unchanged, noting store, key, offset."""
        before = write_v1(log_path)
        problem = RuntimeError("phone book unreachable")

        def fail_on_bo(data: dict[str, object]) -> dict[str, object]:
            if data["name"] == "Bo Diddley":
                raise problem
            return rename_name(data)

        migrations = {1: fail_on_bo, 2: drop_fax}
        with pytest.raises(RuntimeError, match="phone book unreachable") as info:
            TypedStore.open(log_path, str, CustomerV3, version=3, migrations=migrations)
        assert info.value is problem
        assert_names_the_record(info.value, log_path, "'bo'")
        assert_untouched(log_path, before)

    def test_migrated_record_failing_validation_is_refused(self, log_path: Path) -> None:
        """A migration whose output does not validate gives the key, the version and the error."""
        before = write_v1(log_path)

        def lose_phone(data: dict[str, object]) -> dict[str, object]:
            del data["phone"]
            return data

        migrations = {1: rename_name, 2: lambda data: drop_fax(lose_phone(data))}
        with pytest.raises(SchemaMismatchError, match="does not validate") as info:
            TypedStore.open(log_path, str, CustomerV3, version=3, migrations=migrations)
        assert (info.value.key, info.value.version) == ("ada", 1)
        assert isinstance(info.value.error, pydantic.ValidationError)
        assert info.value.__cause__ is info.value.error
        assert_untouched(log_path, before)


class TestNewerVersionsRefused:
    """Code refuses a log written at a newer version than its own."""

    @pytest.mark.parametrize("readonly", [False, True], ids=["writable", "readonly"])
    def test_log_at_a_newer_version_is_refused_untouched(
        self, log_path: Path, readonly: bool
    ) -> None:
        """Version-2 code refuses a log whose later records were written at version 3."""
        write_v1(log_path)
        size_v1 = log_path.stat().st_size
        with open_v3(log_path) as customers:
            customers["cy"] = CustomerV3(full_name="Cy", phone="555-0301")
        before = log_path.read_bytes()
        with pytest.raises(
            SchemaMismatchError, match=r"version 3, newer than this code's version 2"
        ):
            TypedStore.open(
                log_path, str, CustomerV2, version=2, migrations={1: rename_name}, readonly=readonly
            )
        assert_untouched(log_path, before)
        with pytest.raises(SchemaMismatchError, match="newer") as info:
            TypedStore.open(log_path, str, CustomerV1, readonly=readonly)
        assert (info.value.offset, info.value.version) == (size_v1, 3)

    def test_compacted_log_refuses_older_code(self, log_path: Path) -> None:
        """After compaction the header itself says version 3, and version-1 code is refused."""
        write_v1(log_path)
        with open_v3(log_path) as customers:
            customers.compact()
        before = log_path.read_bytes()
        with pytest.raises(
            SchemaMismatchError, match=r"version 3, newer than this code's version 1"
        ):
            TypedStore.open(log_path, str, CustomerV1)
        assert_untouched(log_path, before)


class Price(BaseModel):
    """A price; version 1 stored dollars, version 2 stores cents."""

    amount: float


def dollars_to_cents(data: dict[str, float]) -> dict[str, float]:
    """Migration 1 -> 2: not idempotent, so applying it twice gives a wrong value."""
    data["amount"] *= 100
    return data


class TestDamagedSchemaRecords:
    """A record whose schema record is damaged is refused, never re-migrated."""

    def test_skip_recovery_refuses_records_whose_schema_record_is_damaged(
        self, log_path: Path
    ) -> None:
        """Skip mode refuses a record whose schema record it stepped over, not re-migrating it."""
        with TypedStore.open(log_path, str, Price) as prices:
            prices["a"] = Price(amount=1.5)
        size_v1 = log_path.stat().st_size
        migrations = {1: dollars_to_cents}
        with TypedStore.open(log_path, str, Price, version=2, migrations=migrations) as prices:
            prices["b"] = Price(amount=250)  # cents, behind a schema record at size_v1
        buf = bytearray(log_path.read_bytes())
        buf[size_v1 + 12] ^= 0xFF  # inside the schema record's metadata
        log_path.write_bytes(bytes(buf))
        skip = StoreConfig(recovery="skip")
        record_b = _format.find_next_frame(bytes(buf), size_v1)  # the first frame after the damage
        lost = "the schema record it was written under is lost"
        with (
            pytest.raises(CorruptLogError, match=rf"byte offset {record_b}\b.*{lost}"),
            TypedStore.open(
                log_path, str, Price, version=2, migrations=migrations, config=skip
            ) as prices,
        ):
            assert prices.get("b") != Price(amount=25000), "b was migrated a second time"
        assert_untouched(log_path, bytes(buf))

    def test_cli_skip_repair_refuses_records_whose_schema_record_is_damaged(
        self, log_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``typedstore repair --mode skip`` refuses a record whose schema record is lost too."""
        with TypedStore.open(log_path, str, Price) as prices:
            prices["a"] = Price(amount=1.5)
        size_v1 = log_path.stat().st_size
        with TypedStore.open(
            log_path, str, Price, version=2, migrations={1: dollars_to_cents}
        ) as p:
            p["b"] = Price(amount=250)
        buf = bytearray(log_path.read_bytes())
        buf[size_v1 + 12] ^= 0xFF
        log_path.write_bytes(bytes(buf))
        assert cli_main(["repair", "--mode", "skip", str(log_path)]) == 1
        assert "the schema record it was written under is lost" in capsys.readouterr().err
        assert_untouched(log_path, bytes(buf))


class Customers(TypedStore[str, CustomerV3], version=3, migrations=MIGRATIONS):
    """The declarative form: types, version and migrations bound on the class."""


def identity(data: object) -> object:
    """A migration that changes nothing."""
    return data


class TestDeclaringTheSchema:
    """Version, migrations and dropped_fields are given once, at open or as class keywords."""

    def test_schema_version_defaults_to_1(self, log_path: Path) -> None:
        """A store opened without a version writes at version 1, and its header says so."""
        with TypedStore.open(log_path, str, int) as store:
            assert store.schema_version == 1
        assert log_versions(log_path) == [1]

    def test_declarative_class_keywords_migrate(self, log_path: Path) -> None:
        """A subclass declaring version and migrations as class keywords opens a v1 log at v3."""
        write_v1(log_path)
        with Customers.open(log_path) as customers:
            assert isinstance(customers, Customers)
            assert customers.schema_version == 3
            assert list(customers.items()) == list(V3_CUSTOMERS.items())

    def test_declared_dropped_fields_class_keyword(self, log_path: Path) -> None:
        """``dropped_fields`` works as a class keyword too."""

        class CustomerNoFax(BaseModel):
            name: str
            phone: str

        class NoFax(TypedStore[str, CustomerNoFax], dropped_fields=["fax"]):
            pass

        write_v1(log_path)
        with NoFax.open(log_path) as customers:
            assert customers.schema_version == 1
            assert customers["ada"] == CustomerNoFax(name="Ada Lovelace", phone="555-0101")

    @pytest.mark.parametrize(
        "options",
        [{"version": 3}, {"migrations": MIGRATIONS}, {"dropped_fields": {"fax"}}],
        ids=["version", "migrations", "dropped_fields"],
    )
    def test_schema_options_on_a_class_that_declares_them_are_a_type_error(
        self, log_path: Path, options: dict[str, Any]
    ) -> None:
        """Passing version, migrations or dropped_fields to a class that declares them raises."""
        with pytest.raises(TypeError, match="declares its schema version"):
            Customers.open(log_path, **options)
        assert not log_path.exists()

    @pytest.mark.parametrize(
        ("options", "error", "match"),
        [
            ({"version": 0}, ValueError, "version must be at least 1"),
            ({"version": -2}, ValueError, "version must be at least 1"),
            ({"version": "2"}, TypeError, "version must be an int"),
            ({"version": True}, TypeError, "version must be an int"),
            (
                {"version": 2, "migrations": {2: identity}},
                ValueError,
                "beyond the declared version",
            ),
            ({"version": 2, "migrations": {0: identity}}, ValueError, "must be at least 1"),
            ({"version": 2, "migrations": {1: "identity"}}, TypeError, r"\[1\] must be callable"),
            ({"dropped_fields": "fax"}, TypeError, "not one string"),
            ({"dropped_fields": [1]}, TypeError, "collection of field names"),
        ],
        ids=[
            "version-0",
            "version-negative",
            "version-str",
            "version-bool",
            "migration-beyond-version",
            "migration-key-0",
            "migration-not-callable",
            "dropped-fields-str",
            "dropped-fields-int",
        ],
    )
    def test_bad_schema_options_raise_at_open(
        self, log_path: Path, options: dict[str, Any], error: type[Exception], match: str
    ) -> None:
        """Impossible schema options raise ValueError or TypeError at open, creating no file."""
        with pytest.raises(error, match=match):
            TypedStore.open(log_path, str, int, **options)
        assert not log_path.exists()

    def test_bad_schema_class_keywords_raise_at_class_creation(self) -> None:
        """A declarative class with an impossible version is refused when the class is made."""
        with pytest.raises(ValueError, match="beyond the declared version"):

            class Broken(TypedStore[str, int], version=1, migrations={1: identity}):
                pass


KILLS = 10
BUDGET = 60.0
"""Seconds the kill test may take; a hung child fails it instead of hanging the suite."""
KILL_ENTRIES = 3000
"""Items in the v1 log the child compacts: enough for a compaction to take a few ms."""


def start_child(master: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start ``tests.schema_child`` compacting ``log`` (a copy of ``master``) in a loop."""
    paths = [str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.schema_child", str(master), str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=log.parent,
        env=env,
    )


def kill_at_random(
    child: subprocess.Popen[bytes], temp: Path, rng: random.Random, deadline: float
) -> bool:
    """SIGKILL the child at a random moment; return whether its compaction was in flight."""
    if rng.random() < 0.5:
        while not temp.exists():
            assert child.poll() is None, child.stderr.read() if child.stderr else b""
            assert time.monotonic() < deadline, "no compaction started in time"
    else:
        time.sleep(rng.uniform(0.3, 1.0))  # the child needs ~0.3 s to import and start
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=BUDGET) == -signal.SIGKILL
    return temp.exists()


class TestSigkillDuringMigratingCompaction:
    """A process killed as it compacts at a new version leaves a log that opens alike."""

    @pytest.mark.slow
    def test_sigkill_during_migrating_compaction_keeps_the_state(
        self, tmp_path: Path, rng: random.Random
    ) -> None:
        """Killing a process as it compacts a v1 log at v2 leaves a log that opens to the same
        state."""
        deadline = time.monotonic() + BUDGET
        master = tmp_path / "master.log"
        schema_child.write_v1(master, KILL_ENTRIES)
        with schema_child.open_v2(master, readonly=True) as items:
            expected = list(items.items())
        assert len(expected) > KILL_ENTRIES // 2
        log = tmp_path / "items.log"
        temp = log.with_name(log.name + ".compact.tmp")
        in_compaction = 0
        for _ in range(KILLS):
            shutil.copyfile(master, log)
            child = start_child(master, log)
            try:
                in_compaction += kill_at_random(child, temp, rng, deadline)
            finally:
                if child.poll() is None:
                    child.kill()
                child.wait(timeout=BUDGET)
                if child.stderr is not None:
                    child.stderr.close()
            assert log.read_bytes() == master.read_bytes() or log_versions(log) == [2]
            with schema_child.open_v2(log) as items:
                assert items.recovery is None
                assert list(items.items()) == expected
            assert not temp.exists()
        assert in_compaction >= 1, "no kill landed inside a compaction"


LowerStr = Annotated[str, pydantic.AfterValidator(str.lower)]


class TestKeyMerges:
    """A key type change never merges two stored keys into one entry silently."""

    def test_two_keys_validating_to_one_are_refused(self, log_path: Path) -> None:
        """Stored "Alice" and "alice" reopened with a lower-casing key type: refused, untouched."""
        with TypedStore.open(log_path, str, int) as store:
            store["Alice"] = 1
            store["alice"] = 2
        before = log_path.read_bytes()
        with pytest.raises(SchemaMismatchError, match=r"'alice'.*'Alice'.*merge") as info:
            TypedStore.open(log_path, LowerStr, int)
        assert info.value.key == "alice"
        assert_untouched(log_path, before)

    def test_one_key_changed_by_the_new_key_type_opens(self, log_path: Path) -> None:
        """A stored key the new key type changes, with no other key to merge with, opens."""
        with TypedStore.open(log_path, str, int) as store:
            store["Alice"] = 1
            store["Alice"] = 3
            store["bob"] = 2
        with TypedStore.open(log_path, LowerStr, int, readonly=True) as store:
            assert dict(store) == {"alice": 3, "bob": 2}


def refuse_bo(value: str) -> str:
    """A validator that fails with something other than a validation error."""
    if value == "bo":
        raise LookupError("bo is not in the directory")
    return value


class TestUserCodeErrors:
    """An exception a validator raises at open reaches the caller as raised, with a note."""

    def test_key_validator_error_is_raised_with_a_note(self, log_path: Path) -> None:
        """A key validator's LookupError is raised unchanged, noting store, key and offset."""
        with TypedStore.open(log_path, str, int) as store:
            store["al"] = 1
            store["bo"] = 2
        before = log_path.read_bytes()
        refusing = Annotated[str, pydantic.AfterValidator(refuse_bo)]
        with pytest.raises(LookupError, match="not in the directory") as info:
            TypedStore.open(log_path, refusing, int)
        assert_names_the_record(info.value, log_path, "'bo'")
        assert_untouched(log_path, before)

    def test_value_validator_error_is_raised_with_a_note(self, log_path: Path) -> None:
        """A value validator's LookupError is raised unchanged, noting store, key and offset."""
        with TypedStore.open(log_path, str, str) as store:
            store["first"] = "al"
            store["second"] = "bo"
        before = log_path.read_bytes()
        refusing = Annotated[str, pydantic.AfterValidator(refuse_bo)]
        with pytest.raises(LookupError, match="not in the directory") as info:
            TypedStore.open(log_path, str, refusing)
        assert_names_the_record(info.value, log_path, "'second'")
        assert_untouched(log_path, before)

    def test_validator_error_with_tuple_notes_reaches_the_caller(self, tmp_path: Path) -> None:
        """A validator's exception whose __notes__ is not a list is not replaced by TypeError."""
        path = tmp_path / "notes.log"

        class Refused(Exception):
            """An application's error, carrying its notes as a tuple."""

        armed: list[bool] = []

        def check(value: int) -> int:
            if armed:
                error = Refused("no")
                vars(error)["__notes__"] = ("from the application",)  # a tuple, not a list
                raise error
            return value

        value_type = Annotated[int, pydantic.AfterValidator(check)]
        with TypedStore.open(path, str, value_type) as store:
            store["a"] = 1
        armed.append(True)
        with pytest.raises(Refused, match="no"):
            TypedStore.open(path, str, value_type)
