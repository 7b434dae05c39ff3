"""The catalog: which collections a log holds, by name and id, and each one's schema.

A log's header (and each schema record) holds metadata in one of two forms
(docs/FORMAT.md, "Collections"): a single-collection log, as every ``TypedStore``
writes, keeps its one collection's schema keys at the top of the map, and that
collection is named :data:`DEFAULT_NAME` with id 0; a database's log keeps a list
under ``"collections"``, one map per collection with its name and id beside the same
schema keys. This module reads and writes both forms; it knows names, ids and maps,
not types (``_metadata`` describes those).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_NAME = "default"
"""The name of the collection of a single-collection log (one a ``TypedStore`` wrote)."""
MAX_NAME_BYTES = 255
"""Longest collection name, in bytes of UTF-8."""
SCHEMA_KEYS = ("key_type", "value_type", "key_schema", "value_schema", "version", "fingerprint")
"""The keys of one collection's schema, as a single-collection header holds them."""


class CatalogError(ValueError):
    """Metadata whose catalog is malformed; carries the reason."""


@dataclass(frozen=True, slots=True)
class CollectionMeta:
    """One collection as the log's catalog records it."""

    name: str
    id: int
    """The id its records carry (docs/FORMAT.md, "Record bodies"): 0 for bare records."""
    schema: dict[str, object]
    """Its schema keys (``SCHEMA_KEYS``) as the log holds them."""

    @property
    def version(self) -> int:
        """The schema version its records were written at (1 when the map has none)."""
        version = self.schema.get("version", 1)
        return version if isinstance(version, int) else 1

    @property
    def fingerprint(self) -> str:
        """The fingerprint of its types; empty when the map has none (a changed schema)."""
        fingerprint = self.schema.get("fingerprint", "")
        return fingerprint if isinstance(fingerprint, str) else ""


@dataclass(frozen=True, slots=True)
class Catalog:
    """The collections of a log, in the order the catalog lists them."""

    collections: tuple[CollectionMeta, ...]
    single: bool
    """Whether it is written in the single-collection form (one collection, id 0)."""

    def by_id(self, collection: int) -> CollectionMeta | None:
        """Return the collection with id ``collection``, or None."""
        for meta in self.collections:
            if meta.id == collection:
                return meta
        return None

    def by_name(self, name: str) -> CollectionMeta | None:
        """Return the collection named ``name``, or None."""
        for meta in self.collections:
            if meta.name == name:
                return meta
        return None

    def next_id(self) -> int:
        """Return the smallest id above every id in use: the id of a new collection."""
        return max((meta.id for meta in self.collections), default=-1) + 1

    def to_meta(self) -> dict[str, object]:
        """Return the metadata map of this catalog, in its form (see the module docstring)."""
        if self.single:
            (only,) = self.collections
            return dict(only.schema)
        return {
            "collections": [
                {"name": meta.name, "id": meta.id, **meta.schema} for meta in self.collections
            ]
        }


def single(schema: dict[str, object]) -> Catalog:
    """Return the catalog of a single-collection log whose schema keys are ``schema``."""
    return Catalog((CollectionMeta(DEFAULT_NAME, 0, _schema_keys(schema)),), single=True)


def database(collections: Iterable[CollectionMeta]) -> Catalog:
    """Return a database's catalog listing ``collections``; CatalogError if two clash."""
    listed = tuple(collections)
    _check_unique(listed)
    return Catalog(listed, single=False)


def read_catalog(data: dict[str, object]) -> Catalog:
    """Return the catalog a decoded header or schema record map describes.

    A map without a ``"collections"`` key is a single-collection log's. Raises
    CatalogError for a malformed list: not a list of maps, a bad or repeated name or
    id.
    """
    if "collections" not in data:
        return single(data)
    listed = data["collections"]
    if not isinstance(listed, list):
        raise CatalogError("the catalog's collections are not a list")
    collections = []
    for item in listed:
        if not isinstance(item, dict):
            raise CatalogError("a catalog entry is not a map")
        name, ident = item.get("name"), item.get("id")
        try:
            check_name(name)
        except (TypeError, ValueError) as exc:
            raise CatalogError(f"a catalog entry's name is invalid: {exc}") from None
        assert isinstance(name, str)
        if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident <= 0xFFFFFFFF:
            raise CatalogError(f"collection {name!r} has an invalid id {ident!r}")
        version = item.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise CatalogError(f"collection {name!r} has schema version {version!r}")
        collections.append(CollectionMeta(name, ident, _schema_keys(item)))
    return database(collections)


def check_name(name: object) -> str:
    """Return ``name`` if it can name a collection, else raise TypeError or ValueError.

    A name is a non-empty ``str`` of at most ``MAX_NAME_BYTES`` bytes of UTF-8 with no
    control characters (Unicode category Cc), so it prints on one line in the CLI.
    """
    if not isinstance(name, str):
        raise TypeError(f"a collection name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("a collection name must not be empty")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(
            f"collection name {name!r} is not valid UTF-8 (a lone surrogate)"
        ) from None
    if size > MAX_NAME_BYTES:
        raise ValueError(
            f"collection name {name[:40]!r}... is {size} bytes; at most {MAX_NAME_BYTES}"
        )
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise ValueError(f"collection name {name!r} holds a control character")
    return name


def nfc_clash(name: str, names: Iterable[str]) -> str | None:
    """Return the name of ``names`` that differs from ``name`` but is equal to it under
    Unicode NFC normalisation, or None: two such names print alike, and one would be
    taken for the other."""
    normal = unicodedata.normalize("NFC", name)
    for other in names:
        if other != name and unicodedata.normalize("NFC", other) == normal:
            return other
    return None


def nfc_spellings(names: Iterable[str]) -> dict[str, str]:
    """Return each of ``names`` by its NFC normal form (for :func:`nfc_clash` of many
    names at once)."""
    return {unicodedata.normalize("NFC", name): name for name in names}


def nfc_message(name: str, other: str) -> str:
    """Return why ``name`` is refused beside ``other`` (see :func:`nfc_clash`)."""
    return (
        f"collection names {name!r} and {other!r} are equal under Unicode NFC "
        "normalisation: they print alike, so one would be taken for the other; use "
        "one spelling"
    )


def _schema_keys(data: dict[str, object]) -> dict[str, object]:
    return {key: data[key] for key in SCHEMA_KEYS if key in data}


def _check_unique(collections: tuple[CollectionMeta, ...]) -> None:
    names: dict[str, str] = {}
    ids: set[int] = set()
    for meta in collections:
        normal = unicodedata.normalize("NFC", meta.name)
        if normal in names:
            if names[normal] != meta.name:
                raise CatalogError(nfc_message(meta.name, names[normal]))
            raise CatalogError(f"the catalog names collection {meta.name!r} twice")
        if meta.id in ids:
            raise CatalogError(f"the catalog gives id {meta.id} to two collections")
        names[normal] = meta.name
        ids.add(meta.id)
