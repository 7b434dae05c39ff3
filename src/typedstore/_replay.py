"""Replay: reading a log back into memory on open (docs/FORMAT.md, "Replay")."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal

import pydantic

from . import _format
from ._codec import Codec, RecordDecodeError, decode_metadata, describe_changes, unpack
from ._config import Schema
from ._errors import CorruptLogError, SchemaMismatchError
from ._scan import Damage, FrameScanner, Verdict, open_header, verdict
from ._types import MISSING, K, RecoveryMode, V

logger = logging.getLogger("typedstore")


@dataclass(frozen=True, slots=True)
class Recovery:
    """What opening a store did about damage found in its log.

    ``kind`` is ``"torn_tail"`` for an incomplete final record (dropped on a
    writable open), ``"truncated"`` or ``"skipped"`` for damage before the tail
    that a recovery mode dealt with. ``backup`` is the copy of the original log made
    before a recovery mode rewrote it.
    """

    kind: Literal["torn_tail", "truncated", "skipped"]
    offset: int
    """Byte offset where the first damage starts."""
    dropped_bytes: int
    """How many bytes of the log were not replayed."""
    backup: Path | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """The schema a run of records was written under: the header's, or a schema record's."""

    offset: int
    version: int
    fingerprint: str
    meta: dict[str, object]


@dataclass(slots=True)
class Replay(Generic[K]):
    """The state a log replays to."""

    entries: dict[K, object]
    """Live entries in insertion order, values in the form the codec keeps in memory."""
    total_records: int
    schema: Segment
    """The schema the log's last records were written under."""
    generation: int
    """The schema generation in force at the end of the log."""
    end: int
    """End of the last record replayed; a writable open continues from here."""
    damage: list[Damage] = field(default_factory=list)
    """Damage a recovery mode stepped over or cut off, in order."""
    torn_tail: int | None = None
    """Where the torn tail starts, if there is one."""

    def verdict(self) -> Verdict:
        """Return what the replay found: clean, a torn tail, or damage."""
        return verdict(self.damage, self.torn_tail)


class SchemaTrail:
    """Follow a log's schema generations, refusing records of a generation not in force.

    Every body carries the generation of the schema it was written under (see
    ``_format.tag``); each schema record opens the next one. A record of another
    generation means the schema record it was written under is lost (inside a range
    a recovery mode skipped): its schema is unknown, so it is refused, not guessed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.generation = 0

    def follow(self, body: memoryview, offset: int) -> bytes | None:
        """Return a schema record's metadata (its generation now in force), else None."""
        kind, generation = _format.kind_of(body)
        if kind == _format.RecordKind.SCHEMA:
            expected = (self.generation + 1) % _format.GENERATIONS
            if generation != expected:
                raise CorruptLogError(
                    self.path,
                    offset,
                    f"schema record of generation {generation} where "
                    f"{expected} was due: the schema record before it is lost",
                )
            self.generation = generation
            return bytes(body[1:])
        if generation != self.generation:
            raise CorruptLogError(
                self.path,
                offset,
                f"record of schema generation {generation} where "
                f"{self.generation} is in force: the schema record it was written under is lost",
            )
        return None


def replay(
    path: Path,
    buf: bytes,
    codec: Codec[K, V],
    schema: Schema,
    mode: RecoveryMode,
    tail_bound: int,
) -> Replay[K]:
    """Replay the log held in ``buf``; see ``docs/FORMAT.md`` ("Replay").

    ``tail_bound`` is the most a crash leaves beyond one record (``buf_capacity``).

    Raises ``NotAStoreError``, ``CorruptLogError`` (in ``strict`` mode, or for a
    checksum-valid record whose content cannot be decoded) and ``SchemaMismatchError``
    (a record that does not validate, a migration that fails or is missing, fields a
    type change would drop, or a schema version newer than ``schema.version``).
    """
    meta, start = open_header(path, buf)
    segments = [_segment(path, meta, 0, schema)]
    current = _is_current(segments[-1], codec, schema)
    # The live entries, values as memory keeps them; MISSING for a value not validated
    # yet, whose bytes, record offset and schema are then in ``deferred``.
    entries: dict[K, object] = {}
    deferred: dict[K, tuple[bytes, int, Segment]] = {}
    total = 0
    end = start
    frames = FrameScanner(path, buf, start, mode, tail_bound)
    trail = SchemaTrail(path)
    with _collector_paused():
        for offset, end in frames:
            ops: Sequence[tuple[K, bytes | None, object]]
            insert = _format.plain_insert(buf, offset, end, trail.generation)
            if insert is None:
                body = _format.frame_body(buf, offset, end)
                schema_meta = trail.follow(body, offset)
                if schema_meta is not None:
                    segments.append(_segment(path, schema_meta, offset, schema))
                    current = _is_current(segments[-1], codec, schema)
                    continue
                ops = _decode_ops(path, _body_ops(path, body, offset), offset, codec, segments[-1])
            else:
                ops = (_decode_op(path, *insert, offset, codec, segments[-1]),)
            for key, blob, data in ops:
                if blob is None:
                    entries.pop(key, None)
                    deferred.pop(key, None)
                    continue
                # Validated as it is read, so each value is decoded once. One that
                # fails, or was written under another schema, waits for the end: a
                # later record may still replace it, and a value no longer live must
                # not fail an open, whatever its validators raise.
                held: object = MISSING
                if current:
                    try:  # noqa: SIM105 - suppress() would cost a context manager per record
                        held = codec.freeze(codec.validate_value(data), blob)
                    except Exception:  # raised again at the end if the value is still live
                        pass
                entries[key] = held
                if held is MISSING:
                    deferred[key] = (blob, offset, segments[-1])
                elif deferred:
                    deferred.pop(key, None)
            total += len(ops)
        if deferred:
            _settle_deferred(path, entries, deferred, codec, schema)
    return Replay(
        entries, total, segments[-1], trail.generation, end, frames.damage, frames.torn_tail
    )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while replay builds many objects.

    Replay only allocates objects that stay referenced, so collections during it find
    nothing to free; each one would walk every object built so far.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _is_current(segment: Segment, codec: Codec[K, V], schema: Schema) -> bool:
    """Whether records of ``segment`` were written under exactly the types of this open."""
    return segment.version == schema.version and segment.fingerprint == codec.fingerprint


def read_segment(path: Path, meta: bytes, offset: int) -> Segment:
    """Read the metadata of the header (``offset`` 0) or of a schema record.

    Raises ``CorruptLogError`` when it is not a map or its version not a positive int.
    """
    try:
        data = decode_metadata(meta)
    except RecordDecodeError as exc:
        raise CorruptLogError(path, offset, f"undecodable schema metadata: {exc}") from exc
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptLogError(path, offset, f"schema version {version!r} is not a positive int")
    fingerprint = data.get("fingerprint", "")
    return Segment(offset, version, fingerprint if isinstance(fingerprint, str) else "", data)


def _segment(path: Path, meta: bytes, offset: int, schema: Schema) -> Segment:
    """Read a header's or schema record's metadata; refuse versions this code cannot reach."""
    segment = read_segment(path, meta, offset)
    version = segment.version
    if version > schema.version:
        raise SchemaMismatchError(
            f"{path}: records from byte offset {offset} were written at schema version "
            f"{version}, newer than this code's version {schema.version}; open it with the "
            "newer code (nothing was changed)",
            path=path,
            offset=offset,
            version=version,
        )
    missing = [step for step in range(version, schema.version) if step not in schema.migrations]
    if missing:
        raise SchemaMismatchError(
            f"{path}: records from byte offset {offset} were written at schema version "
            f"{version}, but no migration upgrades version {missing[0]} to {missing[0] + 1} "
            f"(declare migrations={{{missing[0]}: ...}}); nothing was changed",
            path=path,
            offset=offset,
            version=version,
        )
    return segment


def _body_ops(path: Path, body: memoryview, offset: int) -> list[_format.Op]:
    """Return the operations of a checksum-valid record's body."""
    try:
        return _format.decode_body(body)
    except _format.FormatError as exc:
        raise CorruptLogError(path, offset, f"undecodable record: {exc}") from exc


def _decode_op(
    path: Path, key: bytes, value: bytes, offset: int, codec: Codec[K, V], segment: Segment
) -> tuple[K, bytes, object]:
    """Return the validated key, the value bytes and the value data of a lone insert."""
    key_data, data = _decoded(path, key, value, offset, codec)
    return _valid_key(path, key_data, offset, codec, segment), value, data


def _decode_ops(
    path: Path, ops: list[_format.Op], offset: int, codec: Codec[K, V], segment: Segment
) -> list[tuple[K, bytes | None, object]]:
    """Return a checksum-valid record's operations: validated key, value bytes, value data.

    Keys are validated once the whole record decodes, so damage is reported first.
    """
    decoded = [(*_decoded(path, key, value, offset, codec), value) for key, value in ops]
    return [
        (_valid_key(path, key_data, offset, codec, segment), value, data)
        for key_data, data, value in decoded
    ]


def _decoded(
    path: Path, key: bytes, value: bytes | None, offset: int, codec: Codec[K, V]
) -> tuple[object, object]:
    """Return the data a checksum-valid record's key and value bytes hold (None: a removal).

    Content that fails to decode is not damage a recovery mode may drop: the
    checksum proves these are the bytes that were written.
    """
    try:
        return codec.decode_key(key), None if value is None else unpack(value)
    except RecordDecodeError as exc:
        raise CorruptLogError(path, offset, f"undecodable record: {exc}") from exc


def _valid_key(
    path: Path, key_data: object, offset: int, codec: Codec[K, V], segment: Segment
) -> K:
    """Return the key ``key_data`` validates to; SchemaMismatchError if it does not."""
    try:
        return codec.validate_key(key_data)
    except pydantic.ValidationError as exc:
        raise _invalid(path, key_data, offset, segment, exc, part="key") from exc


def _settle_deferred(
    path: Path,
    entries: dict[K, object],
    deferred: dict[K, tuple[bytes, int, Segment]],
    codec: Codec[K, V],
    schema: Schema,
) -> None:
    """Fill in the live values replay deferred, upgrading those of another schema.

    Goes through the entries in order, so the first live value that fails is the one
    reported. Raises the validation error of a live value written under the current schema.
    """
    described: set[str] = set()
    for key, held in entries.items():
        if held is not MISSING:
            continue
        blob, offset, segment = deferred[key]
        if _is_current(segment, codec, schema):
            try:
                entries[key] = codec.freeze(codec.decode_value(blob), blob)
            except pydantic.ValidationError as exc:
                raise _invalid(path, key, offset, segment, exc) from exc
            continue
        if segment.version == schema.version and segment.fingerprint not in described:
            described.add(segment.fingerprint)
            logger.info(
                "%s: the value type changed without a schema version bump (%s)",
                path,
                describe_changes(segment.meta, codec.describe()),
            )
        value, blob = _upgrade(path, key, blob, offset, segment, codec, schema)
        entries[key] = codec.freeze(value, blob)


def _upgrade(
    path: Path,
    key: K,
    blob: bytes,
    offset: int,
    segment: Segment,
    codec: Codec[K, V],
    schema: Schema,
) -> tuple[V, bytes]:
    """Migrate a value written under an older schema; refuse to lose fields silently."""
    data = unpack(blob)
    for step in range(segment.version, schema.version):
        try:
            data = schema.migrations[step](data)
        except Exception as exc:  # the application's code: report which record broke it
            raise SchemaMismatchError(
                f"{path}: migration {step} -> {step + 1} failed on the record at byte offset "
                f"{offset} (key {key!r}, schema version {segment.version}): {exc!r}; "
                "nothing was changed",
                path=path,
                offset=offset,
                key=key,
                version=segment.version,
                error=exc,
            ) from exc
    try:
        value = codec.validate_value(data)
    except pydantic.ValidationError as exc:
        raise _invalid(path, key, offset, segment, exc) from exc
    lost = sorted(codec.lost_fields(data, value) - schema.dropped_fields)
    if lost:
        raise SchemaMismatchError(
            f"{path}: the record at byte offset {offset} (key {key!r}, schema version "
            f"{segment.version}) holds fields the value type no longer has: "
            f"{', '.join(lost)}. Remove them in a migration, or declare "
            f"dropped_fields={{{', '.join(map(repr, lost))}}}; nothing was changed",
            path=path,
            offset=offset,
            key=key,
            version=segment.version,
            fields=tuple(lost),
        )
    return codec.encode_value(value)


def _invalid(
    path: Path,
    key: object,
    offset: int,
    segment: Segment,
    exc: pydantic.ValidationError,
    part: str = "value",
) -> SchemaMismatchError:
    return SchemaMismatchError(
        f"{path}: the record at byte offset {offset} (key {key!r}, schema version "
        f"{segment.version}) does not validate against the store's {part} type; nothing "
        f"was changed:\n{exc}",
        path=path,
        offset=offset,
        key=key,
        version=segment.version,
        error=exc,
    )
