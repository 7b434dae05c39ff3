"""The records a store writes: one staged write each, and the record body they make.

Every write of a store, single or batch, becomes its record body here, from the
layouts in ``_format`` (described in ``docs/FORMAT.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from ._format import batch_body, insert_body, remove_body
from ._types import K, KeyBytes, Stored

Write: TypeAlias = tuple[K, KeyBytes, Stored, bytes | None]
"""One write, validated and encoded: ``(key, its bytes as given, what memory keeps, the
value's bytes)``; a removal has None for the last two. A plain tuple: a NamedTuple costs
several times as much to build, on the path of every write."""


def removal(key: K, key_bytes: KeyBytes) -> Write[K]:
    """Return the write that removes ``key``."""
    return (key, key_bytes, None, None)


def operation_body(key_bytes: KeyBytes, blob: bytes | None) -> bytes:
    """Return the body of an insert record (``blob`` set) or a remove record of a key."""
    return remove_body(key_bytes) if blob is None else insert_body(key_bytes, blob)


def batch_record_body(writes: Sequence[Write[K]], key_bytes: Sequence[KeyBytes]) -> bytes:
    """Return the body of one batch record holding ``writes``, named by ``key_bytes``.

    Replay applies a batch record whole or not at all.
    """
    return batch_body(map(operation_body, key_bytes, [write[3] for write in writes]))
