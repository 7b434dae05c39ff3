"""The catalog of a log's collections (typedstore._catalog): both metadata forms, names.

- ``TestForms``: the single-collection and the database form read back as written.
- ``TestNames``: what may name a collection.
- ``TestMalformed``: a malformed catalog is refused with its reason.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from typedstore._catalog import (
    DEFAULT_NAME,
    CatalogError,
    CollectionMeta,
    check_name,
    database,
    read_catalog,
    single,
)

SCHEMA: dict[str, object] = {
    "key_type": "str",
    "value_type": "int",
    "key_schema": {"type": "string"},
    "value_schema": {"type": "integer"},
    "version": 3,
    "fingerprint": "ab" * 16,
}

names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60).filter(
    lambda name: len(name.encode()) <= 255
)


class TestForms:
    """Both forms of the metadata map read back to the catalog they were written from."""

    def test_single_collection_map_is_the_default_collection_with_id_0(self) -> None:
        """A map with no collections list, as a TypedStore writes, is one collection."""
        catalog = read_catalog(dict(SCHEMA))
        assert catalog.single
        assert catalog.collections == (CollectionMeta(DEFAULT_NAME, 0, SCHEMA),)
        assert catalog.collections[0].version == 3

    def test_single_collection_map_writes_back_unchanged(self) -> None:
        """The single form writes the schema keys at the top, as before collections existed."""
        assert single(dict(SCHEMA)).to_meta() == SCHEMA

    @given(st.lists(names, min_size=1, max_size=5, unique=True))
    def test_database_catalog_round_trips(self, listed: list[str]) -> None:
        """A database's catalog reads back with every name, id and schema, in order."""
        catalog = database(
            CollectionMeta(name, 7 * position, dict(SCHEMA)) for position, name in enumerate(listed)
        )
        assert read_catalog(catalog.to_meta()) == catalog
        assert catalog.next_id() == 7 * (len(listed) - 1) + 1

    def test_lookups_by_name_and_id(self) -> None:
        """A collection is found by its name and by its id; others give None."""
        catalog = database([CollectionMeta("users", 0, {}), CollectionMeta("orders", 4, {})])
        assert catalog.by_name("orders") == catalog.by_id(4) == catalog.collections[1]
        assert catalog.by_name("nope") is None
        assert catalog.by_id(1) is None

    def test_missing_version_and_fingerprint_read_as_1_and_changed(self) -> None:
        """An old map with no version is version 1 and no fingerprint matches it."""
        meta = read_catalog({"collections": [{"name": "a", "id": 0}]}).collections[0]
        assert (meta.version, meta.fingerprint) == (1, "")


class TestNames:
    """A collection name is a printable, non-empty str of at most 255 bytes of UTF-8."""

    @given(names)
    def test_printable_names_are_accepted(self, name: str) -> None:
        """Any non-empty name without control characters within 255 bytes is a name."""
        assert check_name(name) == name

    @pytest.mark.parametrize(
        ("name", "error", "match"),
        [
            ("", ValueError, "empty"),
            ("é" * 128, ValueError, "256 bytes"),
            ("a\nb", ValueError, "control character"),
            ("a\x00", ValueError, "control character"),
            ("\ud800", ValueError, "surrogate"),
            (b"users", TypeError, "must be a str"),
            (3, TypeError, "must be a str"),
        ],
    )
    def test_bad_names_are_refused(self, name: object, error: type[Exception], match: str) -> None:
        """Empty, too long, control characters, unencodable and non-str names are refused."""
        with pytest.raises(error, match=match):
            check_name(name)


class TestMalformed:
    """A malformed catalog raises CatalogError naming what is wrong."""

    @pytest.mark.parametrize(
        ("data", "match"),
        [
            ({"collections": {}}, "not a list"),
            ({"collections": [3]}, "not a map"),
            ({"collections": [{"name": "", "id": 0}]}, "name is invalid"),
            ({"collections": [{"name": "a", "id": -1}]}, "invalid id"),
            ({"collections": [{"name": "a", "id": True}]}, "invalid id"),
            ({"collections": [{"name": "a", "id": 0, "version": 0}]}, "schema version"),
            ({"collections": [{"name": "a", "id": 0}, {"name": "a", "id": 1}]}, "twice"),
            ({"collections": [{"name": "a", "id": 0}, {"name": "b", "id": 0}]}, "two collections"),
        ],
    )
    def test_malformed_catalog_is_refused(self, data: dict[str, object], match: str) -> None:
        """Each kind of malformed list raises CatalogError with its reason."""
        with pytest.raises(CatalogError, match=match):
            read_catalog(data)
