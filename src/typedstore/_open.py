"""Opening a store's log: create it, or replay it and deal with what replay found.

The rules are in README ("Durability and recovery") and docs/FORMAT.md ("Replay").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._config import StoreConfig
from ._file_engine import FileEngine
from ._log import Log
from ._pg_engine import PostgresEngine
from ._replay import Declare, Recovery, Replay, replay
from ._types import RecoveryMode

logger = logging.getLogger("typedstore")


Image = Callable[[], tuple[Iterable[bytes], int, Callable[[], int]]]
"""Return a new log's content (header and records), its record count, and what gives
the schema generation at its end once written: the state in memory, as compaction
writes it."""


@dataclass(frozen=True, slots=True)
class Opened:
    """An opened log: its writer, what recovery did, and the replay it continues."""

    log: Log | None
    """None for a read-only open."""
    recovery: Recovery | None
    replay: Replay | None
    """The replay whose log ``log`` appends to; None when ``log`` was written anew (a new
    log, or one a recovery mode rebuilt), its header describing the state in memory."""
    reader: FileEngine | PostgresEngine | None = None
    """A read-only open's engine, kept open to follow the log as it grows."""


def load(
    path: Path,
    declare: Declare,
    config: StoreConfig,
    *,
    readonly: bool,
    adopt: Callable[[Replay | None], None],
    image: Image,
    engine: FileEngine | None = None,
) -> Opened:
    """Open the log at ``path`` (its open lock already held unless ``readonly``).

    ``adopt`` receives the replay (None for a new or empty log) before anything is
    written; ``image`` gives the content of a log written anew. The log is opened
    once, in a file engine: replay reads it, and the writer cuts and appends to it,
    through the same descriptor (see ``_fs.open_log``). A shared open passes its
    ``engine``, whose writer lock the caller holds; a read-only open keeps its engine,
    to follow the log (``Opened.reader``).
    """
    if readonly:
        return _load_readonly(path, declare, config, adopt)
    owned = engine is None
    if engine is None:
        engine = FileEngine(path, "exclusive")  # the store holds the open lock
    try:
        buf = engine.read_log()
        if buf:
            return _load_writable(path, engine, buf, declare, config, adopt, image)
        adopt(None)
        return Opened(_written_anew(engine, config, image, None), None, None)
    except BaseException:
        if owned:  # a shared engine is closed by its caller, once out of its writer lock
            engine.close()
        raise


def _load_readonly(
    path: Path, declare: Declare, config: StoreConfig, adopt: Callable[[Replay | None], None]
) -> Opened:
    """Replay the log for reading, keeping its engine open to follow it as it grows."""
    reader = FileEngine(path, "readonly")
    try:
        buf = reader.read_log()
        if not buf:
            adopt(None)
            return Opened(None, None, None, reader)
        state = replay(path, buf, declare, config.recovery, config.buf_capacity)
        adopt(state)
    except BaseException:
        reader.close()
        raise
    recovery = _describe_recovery(path, state, len(buf), config.recovery, None)
    return Opened(None, recovery, state, reader)


def _load_writable(
    path: Path,
    engine: FileEngine,
    buf: bytes,
    declare: Declare,
    config: StoreConfig,
    adopt: Callable[[Replay | None], None],
    image: Image,
) -> Opened:
    """Replay ``buf``, read through ``engine``, and take the log for writing."""
    state = replay(path, buf, declare, config.recovery, config.buf_capacity)
    adopt(state)
    log, backup = _open_log(engine, state, config, image)
    recovery = _describe_recovery(path, state, len(buf), config.recovery, backup)
    return Opened(log, recovery, state if backup is None else None)


def _open_log(
    engine: FileEngine, state: Replay, config: StoreConfig, image: Image
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
    return _written_anew(engine, config, image, state.end), backup


def _written_anew(engine: FileEngine, config: StoreConfig, image: Image, seen: int | None) -> Log:
    """Write the log anew with ``image`` (creating it, or replacing the log ``engine`` read
    up to ``seen``) and return its writer."""
    chunks, records, generation = image()
    if seen is None:
        engine.create(chunks)
    else:
        engine.replace(chunks, seen)
    return Log(engine, config, records, generation())


def _describe_recovery(
    path: Path, state: Replay, size: int, mode: RecoveryMode, backup: Path | None
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
