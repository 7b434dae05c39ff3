"""Replay: reading a log back into memory on open (docs/FORMAT.md, "Replay")."""

from __future__ import annotations

import contextlib
import gc
import logging
import reprlib
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal

import pydantic

from . import _format
from ._catalog import Catalog, CatalogError, CollectionMeta, read_catalog
from ._codec import Codec, RecordDecodeError, decode_metadata, describe_changes, unpack
from ._config import Schema
from ._engine import walk_frames
from ._errors import CorruptLogError, SchemaMismatchError, StoreError
from ._scan import Damage, FrameScanner, Verdict, open_header, verdict
from ._types import MISSING, K, RecoveryMode, V

_INSERT_KEY, _REMOVE_KEY = _format.INSERT_KEY, _format.REMOVE_KEY

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


@dataclass(frozen=True, slots=True)
class Declaration(Generic[K, V]):
    """What the opening code declares for one collection: its types and its schema."""

    codec: Codec[K, V]
    schema: Schema
    keeps_values: bool = False
    """Whether replay keeps each live entry's validated value for the collection's indexes
    (README.md, "Indexes"), which are built from them once replay ends."""
    keep: Callable[[V], object] | None = None
    """With ``keeps_values``, what replay keeps of each value instead of the value itself
    (what the index functions return for it: far less for the collector to walk than
    the values); a value it raises for waits for the end, as one failing validation."""


Declare = Callable[[Catalog, CollectionMeta], "Declaration[Any, Any] | None"]
"""Return the declaration for a collection of a catalog, or None to keep it model-free."""


@dataclass(slots=True)
class Replay:
    """The state a log replays to."""

    collections: dict[int, Declared[Any, Any] | Kept]
    """Each live collection's state by id: validated if declared, else kept as bytes."""
    catalog: Catalog
    """The catalog in force at the end of the log."""
    next_id: int
    """The id a new collection gets: above every id seen since the header."""
    total_records: int
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


def replay(path: Path, buf: bytes, declare: Declare, mode: RecoveryMode, tail_bound: int) -> Replay:
    """Replay the log held in ``buf``; see ``docs/FORMAT.md`` ("Replay").

    ``declare`` names the collections the opening code declares: their records are
    validated as they are read; any other collection's are kept as bytes.

    Raises ``NotAStoreError``, ``CorruptLogError`` (in ``strict`` mode, or for a
    checksum-valid record whose content cannot be decoded) and ``SchemaMismatchError``
    (a record that does not validate, two stored keys that validate to one, a missing
    migration, fields a type change would drop, or a schema version newer than the
    declared one). An exception a validator or migration raises otherwise reaches
    the caller as it was raised, with a note naming the store, the key and the offset.
    ``tail_bound`` is the most a crash leaves beyond one record (``buf_capacity``).
    """
    return Replayer(path, buf, declare).run(mode, tail_bound)


class Replayer:
    """Replay one log into memory: walk its frames and hand each operation to its collection.

    :meth:`run` is the frame walk; a lone insert (the common case) goes straight to
    its collection's ``insert``, every other record through :meth:`_read_record`;
    :meth:`_enter_catalog` follows schema records, which may add, drop, rename or
    change collections.
    """

    def __init__(self, path: Path, buf: bytes, declare: Declare) -> None:
        self.path = path
        self.buf = buf
        self.declare = declare
        self.states: dict[int, Declared[Any, Any] | Kept] = {}
        self.names: dict[int, str] = {}
        """The name each live collection's state was made for."""
        self.catalog: Catalog | None = None
        self.inserts: dict[int, Callable[[bytes, bytes, int], None]] = {}
        """Each live collection's short path for a lone insert, the common record, by id:
        one lookup per record, whatever the number of collections."""
        self.next_id = 0
        self.total = 0
        self.trail = SchemaTrail(path)

    def run(self, mode: RecoveryMode, tail_bound: int) -> Replay:
        """Walk the frames front to back and apply each; declared collections' values that
        had to wait are settled by the caller (``Declared.settle``), once it knows the
        collections are the ones it wants."""
        buf, path = self.buf, self.path
        meta, start = open_header(path, buf)
        self._enter_catalog(meta, 0)
        frames = FrameScanner(path, buf, start, mode, tail_bound)
        with collector_paused():
            end = self._walk(frames, start)
        assert self.catalog is not None
        return Replay(
            self.states,
            self.catalog,
            self.next_id,
            self.total,
            self.trail.generation,
            end,
            frames.damage,
            frames.torn_tail,
        )

    def _walk(self, frames: FrameScanner, offset: int) -> int:
        """Apply the frames from ``offset`` on, reporting damage to ``frames``; return the
        end of the last valid frame (``offset`` if there is none).

        Runs of bare inserts and removes, the common records, are read by
        ``_format.bare_records`` and applied a run at a time by their collection's
        ``apply_bare``; every other frame, or damage, one at a time.
        """
        buf, trail = self.buf, self.trail
        size, view = len(buf), memoryview(buf)
        bare_records, read_frame = _format.bare_records, _format.read_frame
        end = offset
        tag = trail.generation << 3
        while offset < size:
            # A frame whose (unchecked) kind byte says bare insert or removal of this
            # generation starts a run; bare_records checks it, and stops where the run ends.
            kind_at = offset + _format.FRAME_OVERHEAD
            if kind_at < size and (buf[kind_at] ^ tag) in _BARE:
                found, offset = bare_records(buf, offset, trail.generation, _RUN)
                if found:
                    state = self.states.get(0)
                    if state is None:
                        self._no_collection(0, found[0])
                    else:
                        state.apply_bare(buf, found)
                    self.total += len(found) // 3
                    end = offset
                    continue
            frame_end = read_frame(buf, offset, view)
            if frame_end == -1:
                offset = frames.step_over_damage(offset)
            else:
                self._read_record(offset, frame_end)
                end = offset = frame_end
                tag = trail.generation << 3
        return end

    def _no_collection(self, collection: int, offset: int) -> None:
        reason = _format.FormatError(_NO_COLLECTION.format(collection))
        raise _undecodable(self.path, offset, reason)

    def _read_record(self, offset: int, end: int) -> None:
        """Apply any other record: a schema record, a batch, a collection's."""
        insert = _format.lone_insert(self.buf, offset, end, self.trail.generation)
        if insert is None:
            self._apply_body(_format.frame_body(self.buf, offset, end), offset)
            return
        collection, key, blob = insert
        read = self.inserts.get(collection)
        if read is None:
            self._no_collection(collection, offset)
        else:
            read(key, blob, offset)
        self.total += 1

    def _apply_body(self, body: memoryview, offset: int) -> None:
        """Apply the record ``body``, found at byte ``offset``: any kind of record."""
        meta = self.trail.follow(body, offset)
        if meta is not None:
            self._enter_catalog(meta, offset)
            return
        states = self.states
        try:
            ops = _format.decode_body(body)
            for op in ops:
                if op.collection not in states:
                    raise _format.FormatError(_NO_COLLECTION.format(op.collection))
            # Every key and value is decoded before any is validated or applied, so
            # damage in a batch is reported before what its content means.
            decoded = [states[op.collection].decode(op.key, op.value) for op in ops]
        except (_format.FormatError, RecordDecodeError) as exc:
            raise _undecodable(self.path, offset, exc) from exc
        keys = [
            states[op.collection].key_of(item, offset)
            for op, item in zip(ops, decoded, strict=True)
        ]
        for op, key, item in zip(ops, keys, decoded, strict=True):
            states[op.collection].apply(key, item, op.value, offset)
        self.total += len(ops)

    def resume(self, bodies: Iterable[tuple[int, memoryview]]) -> int:
        """Apply the records ``bodies`` (position and body, in log order) to the states
        this replay was resumed with (:func:`resumed`); return how many operations they
        held. Values that had to wait are settled by the caller, as after :meth:`run`."""
        before = self.total
        with collector_paused():
            for offset, body in bodies:
                self._apply_body(body, offset)
        return self.total - before

    def _enter_catalog(self, meta: bytes, offset: int) -> None:
        """Follow the catalog of the header (offset 0) or of a schema record."""
        data = _read_meta(self.path, meta, offset)
        try:
            catalog = read_catalog(data)
        except CatalogError as exc:
            raise CorruptLogError(self.path, offset, f"invalid catalog: {exc}") from exc
        self.catalog = catalog
        live = {collection.id for collection in catalog.collections}
        for ident in [ident for ident in self.states if ident not in live]:
            del self.states[ident]  # dropped
            del self.names[ident]
        for collection in catalog.collections:
            self.next_id = max(self.next_id, collection.id + 1)
            segment = collection_segment(self.path, collection, offset)
            state = self.states.get(collection.id)
            if state is None or self.names[collection.id] != collection.name:
                state = self._state_for(catalog, collection, state)
            state.enter(segment)
        self.inserts.clear()  # the same dict: run holds it
        self.inserts.update((ident, state.insert) for ident, state in self.states.items())

    def _state_for(
        self, catalog: Catalog, collection: CollectionMeta, state: Declared[Any, Any] | Kept | None
    ) -> Declared[Any, Any] | Kept:
        """Return the state of a collection new here or renamed: declared, or kept as bytes."""
        declaration = self.declare(catalog, collection)
        kept = state.kept() if isinstance(state, Declared) else state
        new: Declared[Any, Any] | Kept
        if declaration is None:
            new = kept if kept is not None else Kept()
        else:
            new = Declared(self.path, declaration.codec, declaration.schema)
            if declaration.keeps_values:
                new.values = {}
                new.keep = declaration.keep
            if kept is not None:
                new.adopt(kept)
        self.states[collection.id] = new
        self.names[collection.id] = collection.name
        return new


def resumed(
    path: Path,
    declare: Declare,
    catalog: Catalog,
    states: dict[int, Declared[Any, Any] | Kept],
    generation: int,
) -> Replayer:
    """Return a replay that continues from a state in memory: the catch-up of shared mode.

    ``states`` are the live collections' states under ``catalog``, the one in force at
    schema ``generation``; :meth:`Replayer.resume` applies the records appended since to
    them, through the same code as a replay at open.
    """
    replayer = Replayer(path, b"", declare)
    replayer.catalog = catalog
    replayer.trail.generation = generation
    for meta in catalog.collections:
        replayer.next_id = max(replayer.next_id, meta.id + 1)
        state = states.get(meta.id)
        if state is not None:
            replayer.states[meta.id] = state
            replayer.names[meta.id] = meta.name
    replayer.inserts.update((ident, state.insert) for ident, state in replayer.states.items())
    return replayer


def resume_bare(
    state: Declared[Any, Any], buf: bytes, base: int, generation: int
) -> tuple[int, int]:
    """Apply the bare inserts and removes at the start of ``buf``, the log's bytes from
    position ``base`` on, to ``state`` (collection 0's, resumed from memory); return how
    many there were and where in ``buf`` they end.

    The short way of a catch-up (``Core._read_bare``): the frames are read a run at a
    time, as open reads them (``_format.bare_records``), and each record is applied by
    :meth:`Declared.insert` or :meth:`Declared.remove`, as open applies a lone record.
    It stops at the first frame that is anything else, of another schema generation,
    not valid or not complete yet, and leaves that frame, and every one after it, to
    :meth:`Replayer.resume`. The caller settles deferred values, as after that.
    """
    bare_records, apply_each = _format.bare_records, state.apply_each
    offset, size, count = 0, len(buf), 0
    was_enabled = gc.isenabled()  # collector_paused, without a generator per catch-up
    try:
        # Inside the try: a Ctrl-C landing as gc.disable() returns must not leave the
        # collector off for good.
        gc.disable()
        while offset < size:
            found, offset = bare_records(buf, offset, generation, _RUN, base)
            if not found:
                break
            apply_each(buf, found, base)
            count += len(found) // 3
    finally:
        if was_enabled:
            gc.enable()
    return count, offset


def generation_at(path: Path, buf: bytes) -> int:
    """Return the schema generation in force at the end of ``buf``, a log's first bytes.

    Reads the header and each frame's kind only, decoding nothing: what a process needs
    after following a compaction (see ``Core``), whose image may hold schema records.
    """
    _, start = open_header(path, buf)
    generation = 0
    for _, body in walk_frames(buf[start:], start).bodies:
        kind, tagged = _format.kind_of(body)
        if kind == _format.RecordKind.SCHEMA:
            generation = tagged
    return generation


_NO_COLLECTION = "a record of collection {}, which the catalog does not list"
_BARE = (int(_format.RecordKind.INSERT), int(_format.RecordKind.REMOVE))
_RUN = 1024
"""The most frames ``_format.bare_records`` reads in one run: what the list of a run holds
stays small however large the log."""


class Kept:
    """A collection no code declared: its live entries as bytes, each with its schema."""

    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[bytes, int, Segment]] = {}
        """Key bytes to value bytes, the offset of their record and its schema."""
        self.segment: Segment | None = None

    def enter(self, segment: Segment) -> None:
        """Follow a switch of this collection's schema."""
        self.segment = segment

    def insert(self, key: bytes, blob: bytes, offset: int) -> None:
        """Apply a lone insert."""
        assert self.segment is not None
        self.entries[key] = (blob, offset, self.segment)

    def apply_bare(self, buf: bytes, found: list[int], base: int = 0) -> None:
        """Apply a run of bare inserts and removes (see ``_format.bare_records``); ``base``
        is the log's position of ``buf[0]``."""
        runs = iter(found)
        for offset, split, end in zip(runs, runs, runs, strict=True):
            if split:
                self.insert(buf[offset + _INSERT_KEY : split], buf[split:end], base + offset)
            else:
                self.entries.pop(buf[offset + _REMOVE_KEY : end], None)

    def decode(self, key: bytes, blob: bytes | None) -> object:
        """Return what :meth:`apply` needs of an operation's key: its bytes."""
        return bytes(key)

    def key_of(self, decoded: object, offset: int) -> object:
        """Return the key an operation applies to: its bytes."""
        return decoded

    def apply(self, key: object, decoded: object, blob: bytes | None, offset: int) -> None:
        """Apply an insert (``blob`` set) or a removal of ``key`` (bytes)."""
        assert isinstance(key, bytes)
        if blob is None:
            self.entries.pop(key, None)
        else:
            self.insert(key, bytes(blob), offset)


class Declared(Generic[K, V]):
    """A declared collection's replay: its records validated, one method per concern.

    :meth:`insert` is the short path of a lone insert; :meth:`enter` follows schema
    switches; :meth:`_put` and :meth:`_remove` apply operations; :meth:`settle`
    validates and upgrades what was deferred.
    """

    def __init__(self, path: Path, codec: Codec[K, V], schema: Schema) -> None:
        self.path = path
        self.codec = codec
        self.schema = schema
        self.entries: dict[K, object] = {}
        """Live entries, values as memory keeps them; MISSING for one not validated yet."""
        self.deferred: dict[K, tuple[bytes, int, Segment]] = {}
        """Bytes, record offset and schema of each value left MISSING in ``entries``."""
        self.sources: dict[K, object] = {}
        """The stored key data of live keys that validation changed, to catch merges."""
        self.segment: Segment | None = None
        self.current = False
        """Whether the records in force were written under exactly this open's types."""
        self.values: dict[K, object] | None = None
        """The validated value of each live entry validated as it was read (or what
        ``Declaration.keep`` returns for it), when the declaration keeps them
        (``Declaration.keeps_values``); None otherwise."""
        self.keep: Callable[[V], object] | None = None
        """``Declaration.keep``: what to keep of a value instead of itself."""

    def enter(self, segment: Segment) -> None:
        """Follow a switch to the schema of the header or of a schema record."""
        self.segment = _checked(self.path, segment, self.schema)
        self.current = _is_current(segment, self.codec, self.schema)

    def insert(self, key: bytes, blob: bytes, offset: int) -> None:
        """Apply a lone insert of the schema in force."""
        try:
            key_data, data = self.codec.decode_key(key), unpack(blob)
        except RecordDecodeError as exc:
            raise _undecodable(self.path, offset, exc) from exc
        self._put(self._valid_key(key_data, offset), key_data, blob, data, offset)

    def apply_bare(self, buf: bytes, found: list[int], base: int = 0) -> None:
        """Apply a run of bare inserts and removes (see ``_format.bare_records``); ``base``
        is the log's position of ``buf[0]`` (a catch-up's new bytes), which the offsets
        errors name count from.

        What :meth:`insert` and :meth:`remove` do for each, with their calls inlined
        where the record allows: a key of exactly the plain key type, which is then valid
        as it is decoded and cannot merge with another, under the schema of this open. Any
        other record, and any that fails to decode, goes through them, which also say
        what is wrong with it.
        """
        decoding = self.codec.decoding() if self.current else None
        if decoding is None:
            self.apply_each(buf, found, base)
            return
        plain_key, plain_value, validate, copies_values, unpack_raw, ext_hook = decoding
        entries, deferred, sources, values, keep = (
            self.entries,
            self.deferred,
            self.sources,
            self.values,
            self.keep,
        )
        str_keys = plain_key is str
        # Checked to be exactly the plain key type (K) before use, as the value is (V)
        # or validated: Any, since a cast per record would cost a call.
        key: Any
        value: Any
        runs = iter(found)
        for offset, split, end in zip(runs, runs, runs, strict=True):
            start = offset + _INSERT_KEY if split else offset + _REMOVE_KEY
            stop = split or end
            # Codec.decode_key, inlined: its short way for a str key, else msgpack's own.
            try:
                if str_keys and 0 < stop - start <= 32 and buf[start] == 0x9F + stop - start:
                    key = buf[start + 1 : stop].decode()
                else:
                    key = unpack_raw(buf[start:stop])
            except Exception:  # reported by insert or remove
                key = MISSING
            if type(key) is not plain_key or sources:
                if split:
                    self.insert(buf[start:split], buf[split:end], base + offset)
                else:
                    self.remove(buf[start:end], base + offset)
                continue
            if not split:  # _remove's
                entries.pop(key, None)
                if values is not None:
                    values.pop(key, None)
                if deferred:
                    deferred.pop(key, None)
                continue
            blob = buf[split:end]
            if plain_value is None:
                try:  # Codec.decode_value's, as Decoding.unpack says
                    data = unpack_raw(blob, strict_map_key=False, ext_hook=ext_hook)
                except Exception:  # reported, or read another way, by insert
                    self.insert(buf[start:split], blob, base + offset)
                    continue
                try:  # _put's
                    value = validate(data)
                    if values is not None:
                        values[key] = value if keep is None else keep(value)
                except Exception:  # raised again at the end if the value is still live
                    self._defer(key, blob, base + offset)
                    continue
            else:
                try:
                    value = unpack_raw(blob)
                except Exception:  # reported by insert
                    value = MISSING
                if type(value) is not plain_value:  # validated, or reported, by insert
                    self.insert(buf[start:split], blob, base + offset)
                    continue
                if values is not None:
                    try:
                        values[key] = value if keep is None else keep(value)
                    except Exception:  # raised again at the end if the value is still live
                        self._defer(key, blob, base + offset)
                        continue
            entries[key] = blob if copies_values else value
            if deferred:
                deferred.pop(key, None)

    def apply_each(self, buf: bytes, found: list[int], base: int) -> None:
        """Apply a run of bare inserts and removes one at a time, as :meth:`insert` and
        :meth:`remove` do, through :meth:`_put` and :meth:`_remove` (which a catch-up's
        ``_follow.Following`` overrides to note the keys touched).

        A short key of a ``str`` key type, the common case, is read here, where those
        calls' decoding and validation would find it valid as it is; any other key goes
        through them, which also say what is wrong with a record.
        """
        str_keys = self.codec.plain_key is str
        put, forget = self._put, self._remove
        runs = iter(found)
        for offset, split, end in zip(runs, runs, runs, strict=True):
            start = offset + _INSERT_KEY if split else offset + _REMOVE_KEY
            stop = split or end
            key: Any = MISSING
            if str_keys and 0 < stop - start <= 32 and buf[start] == 0x9F + stop - start:
                try:  # Codec.decode_key's short way
                    key = buf[start + 1 : stop].decode()
                except UnicodeDecodeError:  # reported by insert or remove
                    key = MISSING
            if key is MISSING or self.sources:
                if split:
                    self.insert(buf[start:split], buf[split:end], base + offset)
                else:
                    self.remove(buf[start:end], base + offset)
            elif split:
                blob = buf[split:end]
                try:
                    data = unpack(blob)
                except RecordDecodeError as exc:
                    raise _undecodable(self.path, base + offset, exc) from exc
                put(key, key, blob, data, base + offset)
            else:
                forget(key)

    def remove(self, key: bytes, offset: int) -> None:
        """Apply a lone removal of the schema in force."""
        try:
            key_data = self.codec.decode_key(key)
        except RecordDecodeError as exc:
            raise _undecodable(self.path, offset, exc) from exc
        self._remove(self._valid_key(key_data, offset))

    def decode(self, key: bytes, blob: bytes | None) -> tuple[object, object]:
        """Return an operation's key data and value data (None for a removal)."""
        return self.codec.decode_key(key), _maybe_unpack(blob)

    def key_of(self, decoded: object, offset: int) -> K:
        """Return the key an operation's decoded data validates to."""
        assert isinstance(decoded, tuple)
        return self._valid_key(decoded[0], offset)

    def apply(self, key: object, decoded: object, blob: bytes | None, offset: int) -> None:
        """Apply an insert (``blob`` set) or a removal of the validated ``key``."""
        assert isinstance(decoded, tuple)
        valid = typing.cast(K, key)
        if blob is None:
            self._remove(valid)
        else:
            self._put(valid, decoded[0], bytes(blob), decoded[1], offset)

    def adopt(self, kept: Kept) -> None:
        """Take over the entries of a collection kept as bytes until now, validating them."""
        for key_bytes, (blob, offset, segment) in kept.entries.items():
            if segment is not self.segment:
                self.enter(segment)
            self.insert(key_bytes, blob, offset)
        if kept.segment is not None:
            self.enter(kept.segment)

    def kept(self) -> Kept:
        """Return these entries as bytes, for a collection no longer declared under its name."""
        self.settle()
        kept = Kept()
        fingerprint = self.codec.fingerprint
        meta = self.codec.describe() | {"version": self.schema.version, "fingerprint": fingerprint}
        segment = Segment(0, self.schema.version, fingerprint, meta)
        for key, held in self.entries.items():
            blob = self.codec.stored_bytes(held)
            kept.entries[self.codec.key_bytes(key)] = (blob, 0, segment)
        kept.segment = self.segment
        return kept

    # -- applying -------------------------------------------------------------------------

    def _valid_key(self, key_data: object, offset: int) -> K:
        """Return the key ``key_data`` validates to; SchemaMismatchError if it does not."""
        try:
            return self.codec.validate_key(key_data)
        except pydantic.ValidationError as exc:
            assert self.segment is not None
            raise _invalid(self.path, key_data, offset, self.segment, exc, "key") from exc
        except Exception as exc:  # the application's validator: say where it failed
            _add_context(exc, self.path, offset, key_data)
            raise

    def _put(self, key: K, key_data: object, blob: bytes, data: object, offset: int) -> None:
        """Set ``key`` to the value ``data``, validated now if it can be, else at the end."""
        if key is not key_data or self.sources:
            self._check_merge(key, key_data, offset)
        # Validated as it is read, so each value is decoded once. One that fails, or
        # was written under another schema, waits for the end: a later record may
        # still replace it, and a value no longer live must not fail an open,
        # whatever its validators raise.
        held: object = MISSING
        values = self.values
        if self.current:
            try:
                value = self.codec.validate_value(data)
                kept: object = value if self.keep is None else self.keep(value)
                held = self.codec.freeze(value, blob)
                if values is not None:
                    values[key] = kept
            except Exception:  # raised again at the end if the value is still live
                pass
        if held is MISSING:
            self._defer(key, blob, offset)
            return
        self.entries[key] = held
        if self.deferred:
            self.deferred.pop(key, None)

    def _defer(self, key: K, blob: bytes, offset: int) -> None:
        """Leave the value of ``key`` for :meth:`settle`: it failed, or is of another schema."""
        self.entries[key] = MISSING
        if self.values is not None:
            self.values.pop(key, None)
        assert self.segment is not None
        self.deferred[key] = (blob, offset, self.segment)

    def _remove(self, key: K) -> None:
        self.entries.pop(key, None)
        if self.values is not None:
            self.values.pop(key, None)
        self.deferred.pop(key, None)
        self.sources.pop(key, None)

    def _check_merge(self, key: K, key_data: object, offset: int) -> None:
        """Refuse a record whose stored key validates to the key of another live entry.

        A key type that changes stored keys (lower-casing them, say) would otherwise
        merge two entries into one, and the next compaction would erase the other.
        """
        source = self.sources.get(key, key)
        if key in self.entries and source != key_data:
            raise SchemaMismatchError(
                f"{self.path}: the record at byte offset {offset} holds key "
                f"{shown(key_data)} and an earlier record key {shown(source)}; both "
                f"validate to the key {shown(key)}, so the store's key type would merge "
                "two entries into one. Keep the old key type, or migrate the keys with "
                "a new store; nothing was changed",
                path=self.path,
                offset=offset,
                key=key,
                version=None if self.segment is None else self.segment.version,
            )
        if key is not key_data:
            self.sources[key] = key_data

    # -- deferred values ------------------------------------------------------------------

    def settle(self) -> None:
        """Fill in the live values replay deferred, upgrading those of another schema.

        Goes through the entries in order, so the first live value that fails is the one
        reported.
        """
        if not self.deferred:
            return
        described: set[str] = set()
        for key, held in self.entries.items():
            if held is MISSING:
                blob, offset, segment = self.deferred[key]
                if segment.fingerprint not in described:
                    described.add(segment.fingerprint)
                    self._log_type_change(segment)
                try:
                    self.entries[key] = self._settled(key, blob, offset, segment)
                except Exception as exc:
                    if not isinstance(exc, StoreError | pydantic.ValidationError):
                        _add_context(exc, self.path, offset, key)
                    raise
        self.deferred.clear()

    def _settled(self, key: K, blob: bytes, offset: int, segment: Segment) -> object:
        """Return what memory keeps for a deferred value, validated or upgraded."""
        codec = self.codec
        if _is_current(segment, codec, self.schema):
            try:
                return codec.freeze(codec.decode_value(blob), blob)
            except pydantic.ValidationError as exc:
                raise _invalid(self.path, key, offset, segment, exc) from exc
        value, blob = _upgrade(self.path, key, blob, offset, segment, codec, self.schema)
        return codec.freeze(value, blob)

    def _log_type_change(self, segment: Segment) -> None:
        """Log a type change made without a schema version bump (INFO: it is allowed)."""
        if segment.version != self.schema.version or _is_current(segment, self.codec, self.schema):
            return
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s: %s",
                self.path,
                _type_change(segment.meta, self.codec.describe()),
            )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while replay builds many objects.

    Replay only allocates objects that stay referenced, so collections during it find
    nothing to free; each one would walk every object built so far.
    """
    was_enabled = gc.isenabled()
    try:
        gc.disable()  # in the try: a Ctrl-C landing as it returns still enables it again
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
    data = _read_meta(path, meta, offset)
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptLogError(path, offset, f"schema version {version!r} is not a positive int")
    fingerprint = data.get("fingerprint", "")
    return Segment(offset, version, fingerprint if isinstance(fingerprint, str) else "", data)


def _read_meta(path: Path, meta: bytes, offset: int) -> dict[str, object]:
    try:
        return decode_metadata(meta)
    except RecordDecodeError as exc:
        raise CorruptLogError(path, offset, f"undecodable schema metadata: {exc}") from exc


def collection_segment(path: Path, collection: CollectionMeta, offset: int) -> Segment:
    """Return the schema a catalog (of the header, or a schema record at ``offset``) gives
    one collection; CorruptLogError when its version is not a positive int."""
    version = collection.schema.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptLogError(path, offset, f"schema version {version!r} is not a positive int")
    return Segment(offset, version, collection.fingerprint, collection.schema)


def _checked(path: Path, segment: Segment, schema: Schema) -> Segment:
    """Return ``segment`` if this code's schema can read it; refuse versions it cannot reach."""
    offset, version = segment.offset, segment.version
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


def _maybe_unpack(blob: bytes | None) -> object:
    return None if blob is None else unpack(blob)


def _undecodable(path: Path, offset: int, exc: Exception) -> CorruptLogError:
    """Content that fails to decode is not damage a recovery mode may drop: the
    checksum proves these are the bytes that were written."""
    return CorruptLogError(
        path,
        offset,
        f"undecodable record: {exc}",
        hint="Recovery modes never drop a checksum-valid record; see 'typedstore verify'",
    )


def _add_context(exc: BaseException, path: Path, offset: int, key: object) -> None:
    """Note on an exception from the application's code which record of which store raised it.

    An exception whose ``__notes__`` the application made something other than a list
    refuses notes (``TypeError``): it then goes on as it was raised, without this one.
    """
    with contextlib.suppress(TypeError):
        exc.add_note(
            f"typedstore: raised while opening the store {path}, on the record at byte "
            f"offset {offset} (key {shown(key)})"
        )


def shown(value: object, limit: int = 200) -> str:
    """Return a repr of ``value`` for a message: bounded in length and nesting depth."""
    try:
        text = _REPR.repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deep to show>"
    return text if len(text) <= limit else f"{text[:limit]}..."


_REPR = reprlib.Repr()
_REPR.maxlevel = 6
_REPR.maxstring = 160
_REPR.maxother = 160


def _type_change(old: dict[str, object], new: dict[str, object]) -> str:
    """Return which stored types changed, and how, for the log."""
    details = []
    subjects = []
    if (old.get("key_type"), old.get("key_schema")) != (new.get("key_type"), new.get("key_schema")):
        subjects.append("key")
        details.append(f"key type {old.get('key_type')!s} is now {new.get('key_type')!s}")
    if (old.get("value_type"), old.get("value_schema")) != (
        new.get("value_type"),
        new.get("value_schema"),
    ) or not subjects:
        subjects.append("value")
        details.append(describe_changes(old, new))
    subject = "the key and value types" if len(subjects) == 2 else f"the {subjects[0]} type"
    return f"{subject} changed without a schema version bump ({'; '.join(details)})"


def _upgrade(
    path: Path,
    key: K,
    blob: bytes,
    offset: int,
    segment: Segment,
    codec: Codec[K, V],
    schema: Schema,
) -> tuple[V, bytes]:
    """Migrate a value written under an older schema; refuse to lose fields silently.

    An exception a migration raises reaches the caller as it was raised (the caller
    adds a note saying where).
    """
    data = unpack(blob)
    for step in range(segment.version, schema.version):
        try:
            data = schema.migrations[step](data)
        except pydantic.ValidationError as exc:  # a migration that validates as it goes
            raise _invalid(path, key, offset, segment, exc) from exc
    try:
        value = codec.validate_value(data)
    except pydantic.ValidationError as exc:
        raise _invalid(path, key, offset, segment, exc) from exc
    lost = sorted(codec.lost_fields(data, value) - schema.dropped_fields)
    if lost:
        raise SchemaMismatchError(
            f"{path}: the record at byte offset {offset} (key {shown(key)}, schema version "
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
        f"{path}: the record at byte offset {offset} (key {shown(key)}, schema version "
        f"{segment.version}) does not validate against the store's {part} type; nothing "
        f"was changed:\n{_validation_text(exc)}",
        path=path,
        offset=offset,
        key=key,
        version=segment.version,
        error=exc,
    )


def _validation_text(exc: pydantic.ValidationError) -> str:
    try:
        return str(exc)
    except RecursionError:
        return f"{exc.error_count()} validation error(s), too deeply nested to show"
