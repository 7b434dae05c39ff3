"""Opening a store's log: create it, or replay it and deal with what replay found.

The rules are in README ("Durability and recovery") and docs/FORMAT.md ("Replay").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal

from . import _compact, _fs
from ._codec import Codec
from ._config import Schema, StoreConfig
from ._log import Log
from ._replay import Recovery, Replay, replay
from ._types import K, RecoveryMode, V

logger = logging.getLogger("typedstore")


@dataclass(frozen=True, slots=True)
class Opened(Generic[K]):
    """An opened log: the entries it replays to, its writer, and what recovery did."""

    entries: dict[K, object]
    log: Log | None
    """None for a read-only open."""
    recovery: Recovery | None


def load(
    path: Path, codec: Codec[K, V], schema: Schema, config: StoreConfig, *, readonly: bool
) -> Opened[K]:
    """Open the log at ``path`` (its writer lock already held unless ``readonly``)."""
    if not readonly and _fs.remove_if_exists(_fs.temp_path(path)):
        logger.warning("%s: removed the temp file of an interrupted compaction", path)
    buf = _fs.read_file(path) if readonly or path.exists() else b""
    if not buf:
        header = _compact.header(codec, schema.version)
        return Opened({}, None if readonly else Log.create(path, config, [header], 0), None)
    state = replay(path, buf, codec, schema, config.recovery, config.buf_capacity)
    log, backup = None, None
    if not readonly:
        log, backup = _open_log(path, state, len(buf), codec, schema, config)
        current = (schema.version, codec.fingerprint)
        if backup is None and (state.schema.version, state.schema.fingerprint) != current:
            # Later records must say they were written under the current schema.
            log.pending_schema = codec.metadata(schema.version)
    return Opened(
        state.entries, log, _describe_recovery(path, state, len(buf), config.recovery, backup)
    )


def _open_log(
    path: Path,
    state: Replay[K],
    size: int,
    codec: Codec[K, V],
    schema: Schema,
    config: StoreConfig,
) -> tuple[Log, Path | None]:
    """Open the replayed log for appending, first dealing with any damage found."""
    status = state.verdict().status
    if status == "clean":
        file = _fs.LogFile.open_existing(path, size)
        return Log(file, config, state.total_records, state.generation), None
    if status == "torn_tail":
        # Truncate and fsync before appending: a record written after the torn
        # one would turn a harmless torn tail into damage before the tail.
        _fs.truncate_file(path, state.end)
        file = _fs.LogFile.open_existing(path, state.end)
        return Log(file, config, state.total_records, state.generation), None
    backup = _fs.copy_aside(path)
    bodies = _compact.insert_bodies(state.entries, codec)
    chunks = _compact.live_chunks(_compact.header(codec, schema.version), bodies)
    return Log.create(path, config, chunks, len(state.entries)), backup


def _describe_recovery(
    path: Path, state: Replay[Any], size: int, mode: RecoveryMode, backup: Path | None
) -> Recovery | None:
    """Return (and log) what replay did about damage, or None if there was none."""
    found = state.verdict()
    if found.status == "clean" or found.offset is None:
        return None
    dropped = sum(item.end - item.start for item in state.damage)
    if state.torn_tail is not None:
        dropped += size - state.torn_tail
    kind: Literal["torn_tail", "truncated", "skipped"]
    if found.status == "torn_tail":
        kind = "torn_tail"
    else:
        kind = "truncated" if mode == "truncate" else "skipped"
    copied = f"; the original was copied to {backup}" if backup else ""
    logger.warning(
        "%s: %s at byte offset %d; %d bytes not replayed%s",
        path,
        kind.replace("_", " "),
        found.offset,
        dropped,
        copied,
    )
    return Recovery(kind, found.offset, dropped, backup)
