"""The records a store writes: one staged write each, and the record body they make.

Every write of a store, single or batch, becomes its record body here, from the
layouts in ``_format`` (described in ``docs/FORMAT.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, NamedTuple

from ._format import batch_body, insert_body, remove_body
from ._types import K, KeyBytes, Stored


class Write(NamedTuple, Generic[K]):
    """One write, validated and encoded: an insert (``blob`` set) or a removal (``blob`` None)."""

    key: K
    key_bytes: KeyBytes
    """The bytes of ``key`` as given; the record names a stored key by its stored bytes."""
    stored: Stored
    """What memory keeps once the insert is applied; None for a removal."""
    blob: bytes | None
    """The value's bytes, or None for a removal."""


def removal(key: K, key_bytes: KeyBytes) -> Write[K]:
    """Return the write that removes ``key``."""
    return Write(key, key_bytes, None, None)


def record_body(writes: Sequence[Write[K]], key_bytes: Sequence[KeyBytes], *, batch: bool) -> bytes:
    """Return the body of the one record holding ``writes``, named by ``key_bytes``.

    A single write is an insert or remove record; with ``batch``, the writes are one
    batch record, which replay applies whole or not at all.
    """
    if not batch:
        (write,) = writes
        return _operation(key_bytes[0], write.blob)
    return batch_body(map(_operation, key_bytes, (write.blob for write in writes)))


def _operation(key_bytes: KeyBytes, blob: bytes | None) -> bytes:
    return remove_body(key_bytes) if blob is None else insert_body(key_bytes, blob)
