"""Compaction: when to rewrite the log, and what the rewritten log holds (README)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import cast

from . import _format
from ._codec import Codec
from ._config import StoreConfig
from ._types import K, V


def is_due(config: StoreConfig, log_bytes: int, total_records: int, live_records: int) -> bool:
    """Return whether the seed's policy calls for a compaction now."""
    if log_bytes < config.min_compact_bytes or total_records == 0:
        return False
    return live_records == 0 or total_records >= config.compact_ratio * live_records


def records_before_due(config: StoreConfig, total_records: int, live_records: int) -> int:
    """Return how many more records the log can take, from ``total_records`` of which
    ``live_records`` live, before :func:`is_due` can become true (at least that many).

    Each record counted adds one to the total and changes the live count by at most
    one, so after ``j`` of them the ratio is due only once ``total + j >= ratio * (live
    - j)``. Nothing is live, the other case, needs ``j >= live``, which is later.
    """
    ratio = config.compact_ratio
    return max(0, int((ratio * live_records - total_records) // (ratio + 1)))


def header(codec: Codec[K, V], version: int) -> bytes:
    """Return the header a new or rewritten log starts with: the current types and version."""
    return _format.encode_header(codec.metadata(version))


def live_chunks(header: bytes, bodies: Iterable[bytes]) -> Iterator[bytes]:
    """Yield a rewritten log's content: ``header``, then each record body framed in turn.

    One frame per chunk: an engine may store each frame apart (PostgreSQL's snapshot
    rows, docs/FORMAT.md), so frames are never joined here."""
    yield header
    offset = len(header)
    encode_frame = _format.encode_frame
    for body in bodies:
        # A frame's checksum covers the offset it is written at (see _format).
        frame = encode_frame(body, offset)
        yield frame
        offset += len(frame)


def insert_bodies(
    entries: Mapping[K, object], codec: Codec[K, V], head: bytes = b""
) -> Iterator[bytes]:
    """Yield one insert body per live entry of a store, in order, each after ``head`` (a
    collection's record head, ``_records.record_head``: nothing for collection 0)."""
    insert_body, key_bytes, stored_bytes = _format.insert_body, codec.key_bytes, codec.stored_bytes
    if codec.copies_values:
        # Memory keeps a mutable value's bytes: Codec.stored_bytes, inlined.
        blobs = cast(Mapping[K, bytes], entries)
        if not head:
            for key, blob in blobs.items():
                yield insert_body(key_bytes(key), blob)
            return
        for key, blob in blobs.items():
            yield head + insert_body(key_bytes(key), blob)
        return
    if not head:
        for key, stored in entries.items():
            yield insert_body(key_bytes(key), stored_bytes(stored))
        return
    for key, stored in entries.items():
        yield head + insert_body(key_bytes(key), stored_bytes(stored))


@dataclass(frozen=True, slots=True)
class Switch:
    """A schema record in a rewritten log: the catalog in force from here on."""

    meta: bytes


class Rewrite:
    """A rewritten log's content, made as it is written: the generation it ends at."""

    def __init__(self) -> None:
        self.generation = 0
        """The schema generation in force after the chunks yielded so far."""

    def chunks(self, header: bytes, items: Iterable[bytes | Switch]) -> Iterator[bytes]:
        """Yield ``header``, then each record body, or schema record, framed in turn.

        A rewritten log holds schema records only for a collection no code declared
        whose live entries were written under different schemas: each keeps its own.
        """
        yield header
        offset = len(header)
        encode_frame, tag = _format.encode_frame, _format.tag
        for item in items:
            if isinstance(item, Switch):
                self.generation = (self.generation + 1) % _format.GENERATIONS
                body = _format.schema_body(item.meta, self.generation)
            else:
                body = tag(item, self.generation)
            # A frame's checksum covers the offset it is written at (see _format).
            frame = encode_frame(body, offset)
            yield frame
            offset += len(frame)
