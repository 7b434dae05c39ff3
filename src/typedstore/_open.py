"""Opening a store's log: create it, or replay it and deal with what replay found.

The rules are in README ("Durability and recovery") and docs/FORMAT.md ("Replay").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal

from . import _compact
from ._codec import Codec
from ._config import Schema, StoreConfig
from ._file_engine import FileEngine
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

    The log is opened once, in a file engine: replay reads it, and the writer cuts and
    appends to it, through the same descriptor (see ``_fs.open_log``).
    """
    if readonly:
        reader = FileEngine(path, "readonly")
        try:
            buf = reader.read_log()
        finally:
            reader.close()
        if not buf:
            return Opened({}, None, None)
        state = replay(path, buf, codec, schema, config.recovery, config.buf_capacity)
        recovery = _describe_recovery(path, state, len(buf), config.recovery, None)
        return Opened(state.entries, None, recovery)
    engine = FileEngine(path, "exclusive")  # the store holds the open lock
    try:
        buf = engine.read_log()
        if buf:
            return _load_writable(path, engine, buf, codec, schema, config)
        engine.create([_compact.header(codec, schema.version)])
    except BaseException:
        engine.close()
        raise
    return Opened({}, Log(engine, config, 0), None)


def _load_writable(
    path: Path,
    engine: FileEngine,
    buf: bytes,
    codec: Codec[K, V],
    schema: Schema,
    config: StoreConfig,
) -> Opened[K]:
    """Replay ``buf``, read through ``engine``, and take the log for writing."""
    state = replay(path, buf, codec, schema, config.recovery, config.buf_capacity)
    log, backup = _open_log(engine, state, codec, schema, config)
    current = (schema.version, codec.fingerprint)
    if backup is None and (state.schema.version, state.schema.fingerprint) != current:
        # Later records must say they were written under the current schema.
        log.pending_schema = codec.metadata(schema.version)
    recovery = _describe_recovery(path, state, len(buf), config.recovery, backup)
    return Opened(state.entries, log, recovery)


def _open_log(
    engine: FileEngine,
    state: Replay[K],
    codec: Codec[K, V],
    schema: Schema,
    config: StoreConfig,
) -> tuple[Log, Path | None]:
    """Take the replayed log for appending, first dealing with any damage found."""
    engine.refuse_hard_links()
    status = state.verdict().status
    if status in ("clean", "torn_tail"):
        if status == "torn_tail":
            # Truncate and fsync before appending: a record written after the torn
            # one would turn a harmless torn tail into damage before the tail.
            engine.cut(state.end)
        return Log(engine, config, state.total_records, state.generation), None
    backup = engine.copy_aside()
    bodies = _compact.insert_bodies(state.entries, codec)
    chunks = _compact.live_chunks(_compact.header(codec, schema.version), bodies)
    engine.replace(chunks, state.end)
    return Log(engine, config, len(state.entries)), backup


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
