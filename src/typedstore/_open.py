"""Opening a store's log: create it, or replay it and deal with what replay found.

The rules are in README ("Durability and recovery") and docs/FORMAT.md ("Replay").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import _fs
from ._config import StoreConfig
from ._log import Log
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


def load(
    path: Path,
    declare: Declare,
    config: StoreConfig,
    *,
    readonly: bool,
    adopt: Callable[[Replay | None], None],
    image: Image,
) -> Opened:
    """Open the log at ``path`` (its writer lock already held unless ``readonly``).

    ``adopt`` receives the replay (None for a new or empty log) before anything is
    written; ``image`` gives the content of a log written anew. The log is opened
    once: replay reads it, and the writer cuts and appends to it, through the same
    descriptor (see ``_fs.open_log``).
    """
    if readonly:
        buf = _fs.read_file(path)
        if not buf:
            adopt(None)
            return Opened(None, None, None)
        state = replay(path, buf, declare, config.recovery, config.buf_capacity)
        adopt(state)
        recovery = _describe_recovery(path, state, len(buf), config.recovery, None)
        return Opened(None, recovery, state)
    if _fs.remove_if_exists(_fs.temp_path(path)):
        logger.warning("%s: removed the temp file of an interrupted compaction", path)
    if path.exists():
        file, buf = _fs.open_log(path)
        if buf:
            return _load_writable(path, file, buf, declare, config, adopt, image)
        file.close()
    adopt(None)
    return Opened(Log.create(path, config, *image()), None, None)


def _load_writable(
    path: Path,
    file: _fs.LogFile,
    buf: bytes,
    declare: Declare,
    config: StoreConfig,
    adopt: Callable[[Replay | None], None],
    image: Image,
) -> Opened:
    """Replay ``buf``, read from the open log ``file``, and take ``file`` for writing."""
    try:
        state = replay(path, buf, declare, config.recovery, config.buf_capacity)
        adopt(state)
    except BaseException:
        file.close()
        raise
    log, backup = _open_log(path, file, state, config, image)
    recovery = _describe_recovery(path, state, len(buf), config.recovery, backup)
    return Opened(log, recovery, state if backup is None else None)


def _open_log(
    path: Path, file: _fs.LogFile, state: Replay, config: StoreConfig, image: Image
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
    return Log.create(path, config, *image()), backup


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
