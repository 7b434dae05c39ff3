"""The records a store writes: one staged write each, and the record body they make.

Every write of a store, single or batch, becomes its record body here, from the
layouts in ``_format`` (described in ``docs/FORMAT.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias, overload

from ._format import (
    batch_body,
    batch_parts,
    collection_body,
    insert_body,
    insert_parts,
    remove_body,
)
from ._types import K, KeyBytes, Stored

Write: TypeAlias = tuple[K, KeyBytes, Stored, bytes | None]
"""One write, validated and encoded: ``(key, its bytes as given, what memory keeps, the
value's bytes)``; a removal has None for the last two. A plain tuple: a NamedTuple costs
several times as much to build, on the path of every write."""


def removal(key: K, key_bytes: KeyBytes) -> Write[K]:
    """Return the write that removes ``key``."""
    return (key, key_bytes, None, None)


NO_VALUE: tuple[None, None] = (None, None)
"""A removal's last two fields: ``(key, key_bytes) + NO_VALUE`` is :func:`removal` of them,
made without a call (every removal's path)."""


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


def operation_record(head: bytes, key_bytes: KeyBytes, blob: bytes | None) -> bytes | list[bytes]:
    """Return ``headed(head, operation_body(key_bytes, blob))``: the record of a single
    write, in one call for the common case (a value not large), as every write takes it."""
    if blob is not None and len(blob) < LARGE_BODY:
        body = insert_body(key_bytes, blob)
        return head + body if head else body
    return headed(head, operation_body(key_bytes, blob))


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


def record_head(collection: int) -> bytes:
    """Return what precedes an insert or remove body in a record of ``collection``: its
    kind and id (docs/FORMAT.md, "Record bodies"), nothing for collection 0."""
    return b"" if collection == 0 else collection_body(collection, b"")


@overload
def headed(head: bytes, body: bytes) -> bytes: ...
@overload
def headed(head: bytes, body: list[bytes]) -> list[bytes]: ...
@overload
def headed(head: bytes, body: bytes | list[bytes]) -> bytes | list[bytes]: ...
def headed(head: bytes, body: bytes | list[bytes]) -> bytes | list[bytes]:
    """Return the insert or remove ``body`` (whole or as parts) preceded by ``head``, a
    :func:`record_head`; only the first part is copied."""
    if isinstance(body, bytes):
        return head + body if head else body
    return [head + body[0], *body[1:]] if head else body


def collection_record(collection: int, body: bytes | list[bytes]) -> bytes | list[bytes]:
    """Return ``body`` (an insert or remove body) as a record of collection ``collection``;
    collection 0's records are the bare body itself."""
    return headed(record_head(collection), body)


Group: TypeAlias = tuple[int, Sequence[Write[Any]], Sequence[KeyBytes]]
"""The writes of one transaction to one collection: its id, the writes, their key bytes."""


def groups_body(groups: Sequence[Group]) -> bytes | list[bytes]:
    """Return the body of one batch record holding the writes of several collections.

    The writes of one collection keep their order; those of a single collection 0 make
    exactly :func:`batch_record_body`'s bytes.
    """
    if len(groups) == 1 and groups[0][0] == 0:
        return batch_record_body(groups[0][1], groups[0][2])
    ops = [
        (collection, key_bytes, write[3])
        for collection, writes, keys in groups
        for write, key_bytes in zip(writes, keys, strict=True)
    ]
    if max((len(blob) for _, _, blob in ops if blob), default=0) < LARGE_BODY:
        return batch_body(headed(record_head(c), _joined_body(k, b)) for c, k, b in ops)
    parts = (headed(record_head(c), _body_parts(k, b)) for c, k, b in ops)
    return batch_parts(parts, LARGE_BODY)
