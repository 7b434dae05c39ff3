"""The records a store writes: one staged write each, and the record body they make.

Every write of a store, single or batch, becomes its record body here, from the
layouts in ``_format`` (described in ``docs/FORMAT.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from ._format import batch_body, batch_parts, insert_body, insert_parts, remove_body
from ._types import K, KeyBytes, Stored

Write: TypeAlias = tuple[K, KeyBytes, Stored, bytes | None]
"""One write, validated and encoded: ``(key, its bytes as given, what memory keeps, the
value's bytes)``; a removal has None for the last two. A plain tuple: a NamedTuple costs
several times as much to build, on the path of every write."""


def removal(key: K, key_bytes: KeyBytes) -> Write[K]:
    """Return the write that removes ``key``."""
    return (key, key_bytes, None, None)


LARGE_BODY = 64 * 1024
"""Value bytes from which a record body is kept as parts rather than joined: each join
copies the whole value, and the frame's parts go to the OS in one write (README,
"Limitations"). Below it, one joined ``bytes`` is faster."""


def operation_body(key_bytes: KeyBytes, blob: bytes | None) -> bytes | list[bytes]:
    """Return the body of an insert record (``blob`` set) or a remove record of a key:
    one ``bytes``, or parts (see ``LARGE_BODY``) for a large value."""
    if blob is None:
        return remove_body(key_bytes)
    if len(blob) < LARGE_BODY:
        return insert_body(key_bytes, blob)
    return insert_parts(key_bytes, blob)


def batch_record_body(
    writes: Sequence[Write[K]], key_bytes: Sequence[KeyBytes]
) -> bytes | list[bytes]:
    """Return the body of one batch record holding ``writes``, named by ``key_bytes``:
    one ``bytes``, or parts (see ``LARGE_BODY``) when one of its values is large.

    Replay applies a batch record whole or not at all.
    """
    blobs = [write[3] for write in writes]
    if max(map(len, filter(None, blobs)), default=0) < LARGE_BODY:
        return batch_body(map(_joined_body, key_bytes, blobs))
    return batch_parts(map(_body_parts, key_bytes, blobs), LARGE_BODY)


def _joined_body(key_bytes: KeyBytes, blob: bytes | None) -> bytes:
    return remove_body(key_bytes) if blob is None else insert_body(key_bytes, blob)


def _body_parts(key_bytes: KeyBytes, blob: bytes | None) -> list[bytes]:
    return [remove_body(key_bytes)] if blob is None else insert_parts(key_bytes, blob)
