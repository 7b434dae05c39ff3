"""Table: what a store holds in memory, and the key bytes its records name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic

from ._records import Write
from ._types import MISSING, K, KeyBytes, Stored


class Table(Generic[K]):
    """The live entries in insertion order, their positions, and the bytes of their keys.

    Values are in the form the codec keeps in memory (see ``Codec.freeze``). Equal keys
    may encode differently (``Decimal("1.0")`` and ``Decimal("1.00")``): the table keeps
    the first key object, and, for key types that need it, the bytes it was written
    with, so that every later record names it the same way and a model-free reader of
    the log (the CLI) sees the keys the store sees.
    """

    def __init__(self, entries: dict[K, Stored], key_bytes: dict[K, KeyBytes] | None) -> None:
        self.entries = entries
        """Key to stored value, in insertion order; read it, change it through the methods."""
        self._key_bytes = key_bytes
        self._order: list[K] | None = None
        """Keys by position, built on demand and dropped by a removal."""

    def at(self, index: int) -> tuple[K, Stored] | None:
        """Return the entry at ``index`` (negative counts from the end), or None if out of range.

        O(1), except that the first call after a removal rebuilds the positions in O(n).
        """
        if self._order is None:
            self._order = list(self.entries)
        if not -len(self._order) <= index < len(self._order):
            return None
        key = self._order[index]
        return key, self.entries[key]

    def record_key(self, key: K, given: KeyBytes) -> KeyBytes:
        """Return the key bytes a record about ``key`` holds: the stored key's, if present."""
        if self._key_bytes is None:
            return given
        return self._key_bytes.get(key, given)

    def record_keys(self, writes: Sequence[Write[K]]) -> list[KeyBytes]:
        """Return the key bytes each of ``writes``' records holds, the writes applied in turn.

        A key present in the table (or put by an earlier write) is named by the bytes it
        was first written with; a new key by its own.
        """
        if self._key_bytes is None:
            return [write[1] for write in writes]
        known = self._key_bytes
        after: dict[K, KeyBytes | None] = {}
        """The bytes of the keys the earlier writes touched; None once removed."""
        out = []
        for key, given, _, blob in writes:
            key_bytes = (after[key] if key in after else known.get(key)) or given
            out.append(key_bytes)
            after[key] = None if blob is None else key_bytes
        return out

    def apply(
        self, writes: Sequence[Write[K]], key_bytes: Sequence[KeyBytes], previous: list[Stored]
    ) -> None:
        """Apply ``writes`` (their record written), named by ``key_bytes``, in turn.

        Appends to ``previous`` what each replaced (MISSING where nothing) as it is
        applied: if an exception interrupts, ``writes[len(previous):]`` are what
        :meth:`settle` must still apply.
        """
        put, pop, add = self.put, self.pop, previous.append
        for (key, _, stored, blob), named in zip(writes, key_bytes):  # noqa: B905 - hot
            add(pop(key) if blob is None else put(key, named, stored))

    def settle(self, writes: Sequence[Write[K]], key_bytes: Sequence[KeyBytes]) -> None:
        """Finish applying ``writes`` whose record is written, after an exception interrupted.

        The first of them may be applied already, or half applied: each step here
        leaves the same table whether it ran before or not, so running it again is
        harmless.
        """
        self._order = None  # may miss a key, or hold one twice: rebuilt on demand
        for (key, _, stored, blob), named in zip(writes, key_bytes):  # noqa: B905 - same length
            if blob is None:
                self.entries.pop(key, None)
                if self._key_bytes is not None:
                    self._key_bytes.pop(key, None)
            else:
                self.entries[key] = stored
                if self._key_bytes is not None:
                    self._key_bytes[key] = named

    def put(self, key: K, key_bytes: KeyBytes, stored: Stored) -> Stored:
        """Set ``key`` to ``stored`` (its record written); return what it replaced, or MISSING."""
        previous = self.entries.get(key, MISSING)
        self.entries[key] = stored
        if previous is MISSING:
            if self._order is not None:
                self._order.append(key)
            if self._key_bytes is not None:
                self._key_bytes[key] = key_bytes
        return previous

    def pop(self, key: K) -> Stored:
        """Remove ``key`` (its removal written); return its stored value."""
        previous = self.entries.pop(key)
        self._order = None
        if self._key_bytes is not None:
            del self._key_bytes[key]
        return previous
