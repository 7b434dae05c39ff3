"""Build a database's log record by record, for tests of what reads logs without models.

The log is written with the low-level functions only (``_format``'s frames and bodies,
``_catalog``'s metadata, msgpack packing as ``_codec`` does it), so that the command
line can be tested on any layout docs/FORMAT.md allows ("Collections"), drops, renames
and records naming an unlisted id included, whatever the library's ``Database`` writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from typedstore import _format
from typedstore._catalog import Catalog, CollectionMeta, database
from typedstore._codec import Codec, decode_metadata
from typedstore._packing import packb


def schema_keys(key_type: object, value_type: object, version: int = 1) -> dict[str, object]:
    """Return the schema keys a store of ``key_type`` and ``value_type`` records at ``version``."""
    return decode_metadata(Codec(key_type, value_type).metadata(version))


def collection(
    name: str, ident: int, key_type: object, value_type: object, version: int = 1
) -> CollectionMeta:
    """Return a catalog entry for collection ``name`` with id ``ident`` and these types."""
    return CollectionMeta(name, ident, schema_keys(key_type, value_type, version))


class DatabaseLog:
    """A database's log in memory: a header with a catalog, then records appended in turn."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.generation = 0
        self.buf = bytearray(_format.encode_header(packb(catalog.to_meta())))

    @classmethod
    def of(cls, *collections: CollectionMeta) -> DatabaseLog:
        """Return a new log whose header's catalog (database form) lists ``collections``."""
        return cls(database(collections))

    def save(self, path: Path) -> Path:
        """Write the log to ``path``; return ``path``."""
        path.write_bytes(bytes(self.buf))
        return path

    def append(self, body: bytes, generation: int | None = None) -> int:
        """Frame ``body`` under the generation in force (or ``generation``); return its offset."""
        offset = len(self.buf)
        tagged = _format.tag(body, self.generation if generation is None else generation)
        self.buf += _format.encode_frame(tagged, offset)
        return offset

    def op(self, name: str, key: object, value: object = None, *, remove: bool = False) -> bytes:
        """Return the body of an insert (or a remove) of ``key`` in collection ``name``."""
        meta = self.catalog.by_name(name)
        assert meta is not None, name
        return self.op_by_id(meta.id, key, value, remove=remove)

    def op_by_id(
        self, ident: int, key: object, value: object = None, *, remove: bool = False
    ) -> bytes:
        """Return the body of an insert (or remove) in the collection with id ``ident``."""
        key_bytes = packb(key)
        body = (
            _format.remove_body(key_bytes)
            if remove
            else _format.insert_body(key_bytes, packb(value))
        )
        return _format.collection_body(ident, body) if ident else body

    def insert(self, name: str, key: object, value: object) -> int:
        """Append an insert of ``key`` and ``value`` (plain data) to ``name``; return its offset."""
        return self.append(self.op(name, key, value))

    def remove(self, name: str, key: object) -> int:
        """Append a remove of ``key`` from ``name``; return its offset."""
        return self.append(self.op(name, key, remove=True))

    def batch(self, *bodies: bytes) -> int:
        """Append one batch record of the operation ``bodies``; return its offset."""
        return self.append(_format.batch_body(bodies))

    def switch(self, catalog: Catalog) -> int:
        """Append a schema record putting ``catalog`` in force; return its offset."""
        self.catalog = catalog
        self.generation = (self.generation + 1) % _format.GENERATIONS
        return self.append(_format.schema_body(packb(catalog.to_meta()), self.generation))

    def rename(self, old: str, new: str) -> int:
        """Append a schema record renaming collection ``old`` to ``new``, id kept."""
        return self.switch(self._changed(old, lambda meta: replace(meta, name=new)))

    def drop(self, name: str) -> int:
        """Append a schema record whose catalog no longer lists ``name``."""
        kept = [meta for meta in self.catalog.collections if meta.name != name]
        return self.switch(database(kept))

    def add(self, meta: CollectionMeta) -> int:
        """Append a schema record whose catalog lists ``meta`` too."""
        return self.switch(database([*self.catalog.collections, meta]))

    def retype(self, name: str, key_type: object, value_type: object, version: int) -> int:
        """Append a schema record giving ``name`` these types at schema ``version``."""
        schema = schema_keys(key_type, value_type, version)
        return self.switch(self._changed(name, lambda meta: replace(meta, schema=schema)))

    def _changed(self, name: str, change: Callable[[CollectionMeta], CollectionMeta]) -> Catalog:
        listed = [change(meta) if meta.name == name else meta for meta in self.catalog.collections]
        return database(listed)
