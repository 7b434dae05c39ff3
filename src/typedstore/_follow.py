"""Following: a declared collection's replay that notes which keys one catch-up touched.

A shared or read-only core applies the records other processes appended through
replay's own code (``_replay.Declared``), to its tables' entries in place. What follows
those entries (the key bytes of key types that need them, the indexes) must follow too,
at a cost in the number of new records, not of entries: so this state notes, from
:meth:`Following.begin` on, each key the records touched and how, and
:meth:`Following.changes` turns that into the index layer's changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Generic, cast

from ._codec import Codec
from ._config import Schema
from ._index_set import Change
from ._replay import Declared
from ._types import MISSING, K, KeyBytes, V, _Missing


class Following(Declared[K, V], Generic[K, V]):
    """A declared collection's state that notes the keys each catch-up touched."""

    def __init__(self, path: Path, codec: Codec[K, V], schema: Schema) -> None:
        super().__init__(path, codec, schema)
        self.before: dict[K, bool] = {}
        """Each key touched since :meth:`begin`, and whether it was present then."""
        self.appended: dict[K, None] = {}
        """The keys put while absent since :meth:`begin` and still present, in the order
        they got there: the last ones of the entries, in the same order."""

    def begin(self, *, keeps_values: bool) -> None:
        """Start noting the keys touched from now on; keep their validated values when
        ``keeps_values`` (the collection has indexes, which need them)."""
        self.before = {}
        self.appended = {}
        self.values = {} if keeps_values else None

    def _put(self, key: K, key_data: object, blob: bytes, data: object, offset: int) -> None:
        present = key in self.entries
        if key not in self.before:
            self.before[key] = present
        if not present:
            self.appended.pop(key, None)
            self.appended[key] = None
        super()._put(key, key_data, blob, data, offset)

    def _remove(self, key: K) -> None:
        if key not in self.before:
            self.before[key] = key in self.entries
        self.appended.pop(key, None)
        super()._remove(key)

    def settle(self) -> None:
        """Fill in the deferred values, as ``Declared.settle`` does, going through only the
        deferred keys (these records' own, in the order they were put) rather than every
        entry: O(records caught up)."""
        if not self.deferred:
            return
        whole = self.entries
        self.entries = {key: whole[key] for key in self.deferred if key in whole}
        try:
            super().settle()
        finally:
            settled, self.entries = self.entries, whole
            whole.update(settled)  # every key is in whole: each keeps its place

    def changes(self) -> list[Change[K, V]]:
        """Return what the records since :meth:`begin` did, as the index layer's changes.

        Removals first, then replacements, then the keys put at the end, in entry order;
        a key removed and put again goes through "missing" first, as it moved to the end.
        Values are the validated ones replay kept, else decoded again from memory.
        """
        # A following state keeps the values themselves (no ``keep``: see _resumed).
        values = cast("dict[K, V]", self.values or {})
        entries, thaw = self.entries, self.codec.thaw
        removals: list[Change[K, V]] = []
        replacements: list[Change[K, V]] = []
        for key, present in self.before.items():
            if not present:
                continue  # absent before: put at the end (below), or absent still
            if key not in entries or key in self.appended:
                removals.append((key, MISSING))
            else:
                value = values.get(key, MISSING)
                if isinstance(value, _Missing):
                    value = thaw(entries[key])
                replacements.append((key, value))
        fresh: list[Change[K, V]] = []
        for key in self.appended:
            if key not in entries:
                continue  # an exception stopped its put half-way: the caller rebuilds
            value = values.get(key, MISSING)
            if isinstance(value, _Missing):
                value = thaw(entries[key])
            fresh.append((key, value))
        return removals + replacements + fresh

    def follow_key_bytes(self, key_bytes: dict[K, KeyBytes]) -> None:
        """Bring ``key_bytes`` (a table's, for key types that need them) up to date with
        the keys touched since :meth:`begin`: a replaced key keeps the bytes it was first
        written with, as in the table."""
        entries, encode = self.entries, self.codec.key_bytes
        for key in self.before:
            if key not in entries:
                key_bytes.pop(key, None)
        for key in self.appended:
            if key in entries:  # not, if an exception stopped its put half-way
                key_bytes[key] = encode(key)
