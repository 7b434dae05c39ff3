"""Model-free reading of logs, for the command line (README, "Inspecting a log").

Nothing here knows the application's types: keys and values stay msgpack bytes, and a
key's identity is its collection's id and its msgpack bytes. Each record is read under
the catalog of its schema generation (docs/FORMAT.md, "Collections"). Frames are found
and classified by the same reader a store's open uses (``_scan.open_header``,
``_scan.FrameScanner``, ``_format.decode_body``, ``_codec.unpack``), and judged by the
same ``_scan.verdict``, so :func:`check` reaches the verdict ``TypedStore.open`` would,
short of validating against the application's models (``SchemaMismatchError`` needs
them). Rewriting a log (compaction, repair) is ``_inspect_rewrite``'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import _format
from ._catalog import Catalog, CatalogError, read_catalog
from ._codec import RecordDecodeError, unpack
from ._config import StoreConfig
from ._errors import CorruptLogError
from ._replay import SchemaTrail, read_segment
from ._scan import DAMAGED_RECORD, Damage, FrameScanner, open_header, verdict

ProgressCallback = Callable[[int, int], None]
"""Told how many bytes of the log were read so far, and the log's size."""

TAIL_BOUND = StoreConfig().buf_capacity
"""The longest damaged tail judged torn without knowing the store's configuration."""
_PROGRESS_EVERY = 512
"""Frames between two progress reports: a report costs a clock read, a frame a CRC."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One checksum-valid frame of a log."""

    offset: int
    end: int
    kind: int
    """The body's first byte: a ``_format.RecordKind`` unless the record is undecodable."""
    ops: tuple[_format.Op, ...]
    """The operations in the body; empty when the body cannot be decoded."""
    error: str | None
    """Why the body, a key or a value cannot be decoded; None when all can."""
    undecodable_body: bytes = b""
    """The raw body when ``error`` is set, for forensics."""
    schema: bytes | None = None
    """The metadata of a schema record: the records after it were written under it."""
    catalog: Catalog | None = None
    """The catalog in force for this record (a schema record's own); None when ``error``."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A live entry: its key's and value's msgpack bytes, and the schema it was written under."""

    collection: int
    """The id of its collection."""
    key: bytes
    value: bytes
    schema: dict[str, object]
    """Its collection's schema keys in the catalog in force when the value was written."""


@dataclass(slots=True)
class Contents:
    """What a log's readable records replay to, without the models."""

    meta: bytes
    """The metadata in force at the end: the header's, or the last schema record's."""
    catalog: Catalog
    """The catalog ``meta`` holds: the collections the log holds now."""
    entries: dict[tuple[int, bytes], Entry] = field(default_factory=dict)
    """The live entries by collection id and key bytes, each collection's in its order."""
    operations: dict[int, int] = field(default_factory=dict)
    """Operations per collection id, counted as the compaction policy counts them."""

    def live(self, collection: int) -> list[Entry]:
        """Return the live entries of the collection with id ``collection``, in order."""
        return [entry for entry in self.entries.values() if entry.collection == collection]


@dataclass(frozen=True, slots=True)
class LogScan:
    """Everything readable in one log, with the byte ranges that are not."""

    path: Path
    size: int
    meta: bytes | None
    """The header's metadata; None for an empty file (a store that has no header yet)."""
    start: int
    """Where the first frame starts (the header's end)."""
    frames: tuple[Frame, ...]
    damage: tuple[Damage, ...]
    """Byte ranges holding no valid frame, in order, the torn tail apart."""
    torn_tail: int | None
    """Where the torn tail starts, if there is one."""

    @property
    def records(self) -> int:
        """Operations in readable records, counted as the compaction policy counts them."""
        return sum(len(frame.ops) for frame in self.frames)


@dataclass(frozen=True, slots=True)
class Finding:
    """What opening the log would find: ``damaged`` is what raises ``CorruptLogError``."""

    status: Literal["clean", "torn_tail", "damaged"]
    offset: int | None
    """Where the torn tail or the first damage starts; None when clean."""
    reason: str | None
    frames: int
    """Checksum-valid frames in the whole log."""
    frames_after: int
    """Checksum-valid frames after ``offset`` (0 when clean)."""


# -- reading --------------------------------------------------------------------------------


def scan_log(path: Path, buf: bytes, progress: ProgressCallback | None = None) -> LogScan:
    """Return every readable frame of the log held in ``buf``, stepping over damage.

    Raises ``NotAStoreError`` for a foreign file and ``CorruptLogError`` (offset 0)
    for a damaged header, as a store's open does.
    """
    if not buf:
        return LogScan(path, 0, None, 0, (), (), torn_tail=None)
    meta, start = open_header(path, buf)
    catalog = read_log_catalog(path, meta, 0)  # a header open refuses is damage to verify too
    scanner = FrameScanner(path, buf, start, "skip", TAIL_BOUND)
    frames = tuple(_read_frames(buf, scanner, catalog, progress))
    return LogScan(path, len(buf), meta, start, frames, tuple(scanner.damage), scanner.torn_tail)


def read_log_catalog(path: Path, meta: bytes, offset: int) -> Catalog:
    """Return the catalog of the header (``offset`` 0) or of a schema record.

    Raises ``CorruptLogError`` at ``offset`` for metadata a store's open refuses and for
    a malformed catalog (docs/FORMAT.md, "Collections").
    """
    segment = read_segment(path, meta, offset)
    try:
        return read_catalog(segment.meta)
    except CatalogError as exc:
        raise CorruptLogError(path, offset, f"malformed catalog: {exc}") from exc


class _CatalogTrail:
    """Follow a log's schema generations and the catalog each one is read under."""

    def __init__(self, path: Path, catalog: Catalog) -> None:
        self.schemas = SchemaTrail(path)
        self.catalog = catalog
        self.ids = frozenset(meta.id for meta in catalog.collections)

    def follow(self, body: memoryview, offset: int) -> bytes | None:
        """Return a schema record's metadata, its catalog now in force, else None.

        Raises ``CorruptLogError`` for a record of a lost generation or a schema record
        whose metadata or catalog is malformed (the catalog in force stays as it was).
        """
        schema = self.schemas.follow(body, offset)
        if schema is not None:
            self.catalog = read_log_catalog(self.schemas.path, schema, offset)
            self.ids = frozenset(meta.id for meta in self.catalog.collections)
        return schema


def _read_frames(
    buf: bytes, scanner: FrameScanner, catalog: Catalog, progress: ProgressCallback | None
) -> Iterator[Frame]:
    trail = _CatalogTrail(scanner.path, catalog)
    for index, (offset, end) in enumerate(scanner):
        if progress is not None and index % _PROGRESS_EVERY == 0:
            progress(offset, len(buf))
        yield _decode_frame(buf, offset, end, trail)


def _decode_frame(buf: bytes, offset: int, end: int, trail: _CatalogTrail) -> Frame:
    body = _format.frame_body(buf, offset, end)
    kind = _format.kind_of(body)[0]
    try:
        schema = trail.follow(body, offset)
    except CorruptLogError as exc:  # a lost schema record or a malformed one: damage to open
        return Frame(offset, end, kind, (), exc.reason, bytes(body))
    if schema is not None:
        return Frame(offset, end, kind, (), None, schema=schema, catalog=trail.catalog)
    try:
        ops = tuple(_format.decode_body(body))
        for op in ops:  # undecodable content is damage to a store's open too
            _check_collection(op, trail.ids)
            unpack(op.key)
            if op.value is not None:
                unpack(op.value)
    except (_format.FormatError, RecordDecodeError) as exc:
        reason = f"undecodable record: {_why(exc)}"
        return Frame(offset, end, kind, (), reason, bytes(body))
    return Frame(offset, end, kind, ops, None, catalog=trail.catalog)


def _check_collection(op: _format.Op, ids: frozenset[int]) -> None:
    """Refuse an operation on a collection the catalog in force does not list.

    Its entries have no name and no schema: a dropped collection's id, or a damaged one
    under a valid checksum, is impossible content, not something to keep on a guess.
    """
    if op.collection not in ids:
        raise _format.FormatError(f"collection id {op.collection} is not in the catalog in force")


def count_frames(path: Path, buf: bytes, start: int) -> int:
    """Return how many checksum-valid frames follow ``start``, stepping over damage."""
    return sum(1 for _ in FrameScanner(path, buf, start, "skip", TAIL_BOUND))


def read_contents(scan: LogScan, frames: tuple[Frame, ...] | None = None) -> Contents:
    """Return what the scanned log's ``frames`` (default: all readable ones) replay to.

    A schema record's catalog is in force from it on: the entries of a collection it
    no longer lists are dead from there (a drop); a collection keeps its id, and so its
    entries, under a new name (a rename). Frames with an error are passed over.
    """
    if scan.meta is None:
        return Contents(b"", Catalog((), single=False))
    contents = Contents(scan.meta, read_log_catalog(scan.path, scan.meta, 0))
    schemas = {meta.id: meta.schema for meta in contents.catalog.collections}
    for frame in scan.frames if frames is None else frames:
        if frame.schema is not None and frame.catalog is not None:
            schemas = _switch(contents, frame.schema, frame.catalog)
        for op in frame.ops:
            _apply(contents, op, schemas)
    return contents


def _switch(contents: Contents, meta: bytes, catalog: Catalog) -> dict[int, dict[str, object]]:
    """Put ``catalog`` in force; return each listed collection's schema by id."""
    schemas = {collection.id: collection.schema for collection in catalog.collections}
    for ident, key in list(contents.entries):
        if ident not in schemas:
            del contents.entries[ident, key]
    contents.meta, contents.catalog = meta, catalog
    return schemas


def _apply(contents: Contents, op: _format.Op, schemas: dict[int, dict[str, object]]) -> None:
    ident = op.collection
    contents.operations[ident] = contents.operations.get(ident, 0) + 1
    if op.value is None:
        contents.entries.pop((ident, op.key), None)
    else:  # an existing key keeps its position, as in a store
        contents.entries[ident, op.key] = Entry(ident, op.key, op.value, schemas[ident])


def check(scan: LogScan) -> Finding:
    """Return what a read-only ``TypedStore.open`` of the scanned log would find.

    The first undecodable record or damage, in file order, is what ``CorruptLogError``
    reports; otherwise a torn tail is the only finding.
    """
    found = verdict(scan.damage, scan.torn_tail, first_damage_in(scan.frames))
    after = 0 if found.offset is None else _after(scan, found.offset)
    if found.status != "damaged":
        after = 0
    return Finding(found.status, found.offset, found.reason, len(scan.frames), after)


def verify(
    path: Path, buf: bytes, progress: ProgressCallback | None = None
) -> tuple[Finding, LogScan | None]:
    """Return what opening the log held in ``buf`` would find, a damaged header included.

    The scan comes with it, for a closer look; None when the header is damaged.
    """
    try:
        scan = scan_log(path, buf, progress)
    except CorruptLogError as exc:  # the header itself is damaged
        frames = count_frames(path, buf, 0)
        return Finding("damaged", exc.offset, exc.reason, frames, frames), None
    return check(scan), scan


def _why(exc: Exception) -> str:
    return str(exc) or "not valid msgpack"


def _after(scan: LogScan, offset: int) -> int:
    return sum(1 for frame in scan.frames if frame.offset > offset)


def first_damage_in(frames: tuple[Frame, ...]) -> tuple[int, str] | None:
    """Return the offset and reason of the first of ``frames`` that cannot be decoded."""
    for frame in frames:
        if frame.error is not None:
            return frame.offset, frame.error
    return None


def refuse_damage(path: Path, finding: Finding, *, hint: str = "") -> None:
    """Raise ``CorruptLogError`` if ``finding`` is damage a store's open refuses."""
    if finding.status == "damaged":
        raise CorruptLogError(
            path, finding.offset or 0, finding.reason or DAMAGED_RECORD, hint=hint
        )
