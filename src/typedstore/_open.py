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
    """Open the log at ``path`` (its writer lock already held unless ``readonly``).

    The log is opened once: replay reads it, and the writer cuts and appends to it,
    through the same descriptor (see ``_fs.open_log``).
    """
    if readonly:
        buf = _fs.read_file(path)
        if not buf:
            return Opened({}, None, None)
        state = replay(path, buf, codec, schema, config.recovery, config.buf_capacity)
        recovery = _describe_recovery(path, state, len(buf), config.recovery, None)
        return Opened(state.entries, None, recovery)
    if _fs.remove_if_exists(_fs.temp_path(path)):
        logger.warning("%s: removed the temp file of an interrupted compaction", path)
    if path.exists():
        file, buf = _fs.open_log(path)
        if buf:
            return _load_writable(path, file, buf, codec, schema, config)
        file.close()
    header = _compact.header(codec, schema.version)
    return Opened({}, Log.create(path, config, [header], 0), None)


def _load_writable(
    path: Path,
    file: _fs.LogFile,
    buf: bytes,
    codec: Codec[K, V],
    schema: Schema,
    config: StoreConfig,
) -> Opened[K]:
    """Replay ``buf``, read from the open log ``file``, and take ``file`` for writing."""
    try:
        state = replay(path, buf, codec, schema, config.recovery, config.buf_capacity)
    except BaseException:
        file.close()
        raise
    log, backup = _open_log(path, file, state, codec, schema, config)
    current = (schema.version, codec.fingerprint)
    if backup is None and (state.schema.version, state.schema.fingerprint) != current:
        # Later records must say they were written under the current schema.
        log.pending_schema = codec.metadata(schema.version)
    recovery = _describe_recovery(path, state, len(buf), config.recovery, backup)
    return Opened(state.entries, log, recovery)


def _open_log(
    path: Path,
    file: _fs.LogFile,
    state: Replay[K],
    codec: Codec[K, V],
    schema: Schema,
    config: StoreConfig,
) -> tuple[Log, Path | None]:
    """Take the replayed log ``file`` for appending, first dealing with any damage found."""
    status = state.verdict().status
    if status in ("clean", "torn_tail"):
        try:
            file.refuse_hard_links()
            if status == "torn_tail":
                # Truncate and fsync before appending: a record written after the torn
                # one would turn a harmless torn tail into damage before the tail.
                file.cut_torn_tail(state.end)
        except BaseException:
            file.close()
            raise
        return Log(file, config, state.total_records, state.generation), None
    try:
        file.refuse_hard_links()
        backup = _fs.copy_aside(path, file)
    finally:
        file.close()
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
