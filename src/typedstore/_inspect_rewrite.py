"""Model-free rewriting of logs, for the command line: offline compaction and repair.

Both read the log with ``_inspect`` under its writer lock, as a writable store would
hold it, and replace it through ``_fs`` (README, "Inspecting a log"; docs/FORMAT.md,
"Compaction").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from . import _format, _fs
from ._catalog import Catalog, CollectionMeta
from ._compact import live_chunks
from ._errors import CorruptLogError
from ._inspect import (
    Contents,
    Entry,
    Finding,
    LogScan,
    ProgressCallback,
    check,
    first_damage_in,
    read_contents,
    refuse_damage,
    scan_log,
)
from ._packing import packb
from ._scan import open_header
from ._types import RecoveryMode


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Hold the log's writer lock, as a writable store does; ``StoreLockedError`` if taken."""
    lock = _fs.FileLock(path)
    try:
        yield
    finally:
        lock.release()


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What compacting or repairing a log did."""

    scan: LogScan
    """The log as it was found, under the writer lock."""
    live: int
    """Live entries written to the new log."""
    schemas: int
    """Schema records written between them, keeping each value's schema version."""
    size: int
    """The log's size afterwards."""
    removed_temp: bool
    """Whether a leftover ``.compact.tmp`` of an interrupted compaction was removed."""
    backup: Path | None = None
    """Where the original was copied before a repair changed it."""
    dropped: tuple[tuple[int, int], ...] = ()
    """Byte ranges of the original that a repair did not keep."""
    dropped_frames: int = 0
    """Checksum-valid frames a repair did not keep (those after the damage, to truncate)."""
    directory_error: OSError | None = None
    """An fsync of the folder that failed after the new log was renamed into place."""


REPAIR_HINT = "See 'typedstore repair'"


def _preflight(path: Path) -> None:
    """Fail on a missing, unreadable or foreign file before a lock file is made beside it."""
    buf = _fs.read_file(path)
    if buf:
        open_header(path, buf)


def _read_locked(path: Path, progress: ProgressCallback | None) -> tuple[LogScan, bool]:
    """Scan the log while its writer lock is held; say whether a stale temp file went."""
    removed = _fs.remove_if_exists(_fs.temp_path(path))
    return scan_log(path, _fs.read_file(path), progress), removed


def compact(path: Path, progress: ProgressCallback | None = None) -> Rewrite:
    """Rewrite the log to its header and one insert per live entry, under the writer lock.

    Refuses (``CorruptLogError``, nothing changed) what a store's open refuses; a torn
    tail is dropped. An empty file is left as it is.
    """
    path = _fs.real_path(path)
    _preflight(path)
    with writer_lock(path):
        scan, removed = _read_locked(path, progress)
        if scan.meta is None:
            return Rewrite(scan, 0, 0, 0, removed)
        refuse_damage(path, check(scan), hint=REPAIR_HINT)
        contents = read_contents(scan)
        size, schemas, directory_error = _write_log(path, contents)
    return Rewrite(
        scan, len(contents.entries), schemas, size, removed, directory_error=directory_error
    )


def repair(path: Path, mode: RecoveryMode, progress: ProgressCallback | None = None) -> Rewrite:
    """Recover from damage as a store's open with ``recovery=mode`` would, under the lock.

    The original is copied aside first. A torn tail alone is cut off; damage before the
    tail leaves the records before it (``truncate``) or every readable record
    (``skip``), compacted. A checksum-valid record that cannot be decoded is not
    damage a repair may drop: ``CorruptLogError``, nothing changed.
    """
    if mode == "strict":
        raise ValueError("repair needs a recovery mode: 'truncate' or 'skip'")
    path = _fs.real_path(path)
    _preflight(path)
    with writer_lock(path):
        scan, removed = _read_locked(path, progress)
        finding = check(scan)
        if scan.meta is None or finding.status == "clean":
            live = read_contents(scan).entries
            return Rewrite(scan, len(live), 0, scan.size, removed)
        return _repair_locked(scan, finding, mode, removed)


def _repair_locked(scan: LogScan, finding: Finding, mode: RecoveryMode, removed: bool) -> Rewrite:
    assert scan.meta is not None
    starts = [item.start for item in scan.damage[:1]]
    if scan.torn_tail is not None:
        starts.append(scan.torn_tail)
    cut = min(starts, default=scan.size)
    kept = scan.frames if mode == "skip" else tuple(f for f in scan.frames if f.offset < cut)
    problem = first_damage_in(kept)
    if problem is not None:
        raise CorruptLogError(scan.path, problem[0], problem[1])
    ranges = tuple((item.start, item.end) for item in scan.damage)
    if scan.torn_tail is not None:
        ranges += ((scan.torn_tail, scan.size),)
    dropped = ranges if mode == "skip" else ((cut, scan.size),) if ranges else ()
    contents = read_contents(scan, kept)
    live = len(contents.entries)
    backup = _fs.copy_aside(scan.path)
    if finding.status == "torn_tail":
        _fs.truncate_file(scan.path, cut)
        kept_schemas = sum(frame.schema is not None for frame in kept)
        return Rewrite(scan, live, kept_schemas, cut, removed, backup, dropped)
    size, schemas, directory_error = _write_log(scan.path, contents)
    lost = len(scan.frames) - len(kept)
    return Rewrite(scan, live, schemas, size, removed, backup, dropped, lost, directory_error)


def _write_log(path: Path, contents: Contents) -> tuple[int, int, OSError | None]:
    """Replace the log atomically by its current header and one insert per entry (see ``_fs``).

    Return its size, the schema records written, and a failed fsync of its folder.

    The header holds the catalog in force at the end. A schema record goes before every
    entry written under another schema of its collection than the one in force, so each
    value keeps the schema version it was written at; a last one puts the current
    catalog back in force (docs/FORMAT.md, "Collections").
    """
    header = _format.encode_header(contents.meta)
    bodies = _Bodies(contents)
    file, directory_error = _fs.write_new_log(path, live_chunks(header, bodies))
    size = file.size
    file.close()
    return size, bodies.schemas, directory_error


class _Bodies:
    """The bodies of a rewritten log, counting the schema records among them as they go.

    Counted on the way rather than by a second pass, which would encode every entry twice.
    """

    def __init__(self, contents: Contents) -> None:
        self.contents = contents
        self.schemas = 0

    def __iter__(self) -> Iterator[bytes]:
        current = self.contents.catalog
        in_force = {meta.id: meta for meta in current.collections}
        generation = 0
        for entry in self.contents.entries.values():
            if in_force[entry.collection].schema != entry.schema:
                in_force[entry.collection] = replace(
                    in_force[entry.collection], schema=entry.schema
                )
                generation = (generation + 1) % _format.GENERATIONS
                yield self._schema(_catalog_meta(current, in_force), generation)
            yield _format.tag(_entry_body(entry), generation)
        if any(in_force[meta.id] != meta for meta in current.collections):
            yield self._schema(self.contents.meta, (generation + 1) % _format.GENERATIONS)

    def _schema(self, meta: bytes, generation: int) -> bytes:
        self.schemas += 1
        return _format.schema_body(meta, generation)


def _catalog_meta(current: Catalog, in_force: dict[int, CollectionMeta]) -> bytes:
    """Return the metadata of ``current`` with each collection's schema as ``in_force`` has it."""
    listed = tuple(in_force[meta.id] for meta in current.collections)
    return packb(Catalog(listed, single=current.single).to_meta())


def _entry_body(entry: Entry) -> bytes:
    body = _format.insert_body(entry.key, entry.value)
    return _format.collection_body(entry.collection, body) if entry.collection else body
