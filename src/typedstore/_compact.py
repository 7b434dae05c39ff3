"""Compaction: when to rewrite the log, and what the rewritten log holds (SPEC §4)."""

from __future__ import annotations

from collections.abc import Mapping

from . import _format
from ._codec import Codec
from ._config import StoreConfig
from ._types import K, V


def is_due(config: StoreConfig, log_bytes: int, total_records: int, live_records: int) -> bool:
    """Return whether the seed's policy calls for a compaction now."""
    if log_bytes < config.min_compact_bytes or total_records == 0:
        return False
    return live_records == 0 or total_records >= config.compact_ratio * live_records


def live_chunks(header: bytes, entries: Mapping[K, object], codec: Codec[K, V]) -> list[bytes]:
    """Return the compacted log's content: the header, then one insert per live entry."""
    chunks = [header]
    offset = len(header)
    for key, stored in entries.items():
        body = _format.insert_body(codec.key_bytes(key), codec.stored_bytes(stored))
        chunks.append(_format.encode_frame(body, offset))
        offset += len(chunks[-1])
    return chunks
