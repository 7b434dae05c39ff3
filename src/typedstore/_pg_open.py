"""A store on the PostgreSQL engine: opening it, replaying it and its writer (README,
"Several machines").

What differs from a log file is here; everything else is the shared-mode core's
(``_core``): the engine is always shared, since other instances may write. A PostgreSQL
log holds whole rows only, so there is no torn tail to cut and no recovery mode to
apply: a record that is not valid is damage, and opening refuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from . import _format
from ._config import StoreConfig
from ._errors import CorruptLogError
from ._log import Log, OperationParts
from ._open import Image, Opened
from ._pg_engine import PostgresEngine
from ._records import operation_record
from ._replay import Declare, Replay, Replayer
from ._scan import open_header


def label(engine: PostgresEngine) -> Path:
    """Return what names a store on ``engine`` in messages, where a file store has its path."""
    return Path(engine.where())


def load(
    path: Path,
    engine: PostgresEngine,
    declare: Declare,
    config: StoreConfig,
    *,
    adopt: Callable[[Replay | None], None],
    image: Image,
) -> Opened:
    """Read the newest image and its tail from ``engine`` (whose writer lock the caller
    holds, unless it is read-only), replay it, and return the store's writer; a new store
    is created with ``image``."""
    buf = engine.read_log()
    if buf:
        state = replay(path, engine, buf, declare)
        adopt(state)
        if engine.mode == "readonly":
            return Opened(None, None, state, engine)
        return Opened(
            PgLog(engine, config, state.total_records, state.generation, state), None, state
        )
    adopt(None)
    if engine.mode == "readonly":
        return Opened(None, None, None, engine)
    chunks, records, generation = image()
    rows = list(renumbered(chunks))
    end = engine.create(rows)
    log = PgLog(engine, config, records, generation(), None)
    log.moved(end, sum(map(len, rows)))
    return Opened(log, None, None)


def replay(path: Path, engine: PostgresEngine, buf: bytes, declare: Declare) -> Replay:
    """Replay ``buf``, what ``engine.read_log()`` returned: an image's header and records.

    The same code as a file's replay applies each record (``Replayer.resume``); positions
    are record numbers, and a record that is not valid is damage (``CorruptLogError``).
    """
    meta, _ = open_header(path, buf)
    header, frames = engine.walk_log(buf)
    if frames.stop == "invalid":
        raise CorruptLogError(path, frames.end, "a record that is not valid")
    replayer = Replayer(path, header, declare)
    replayer._enter_catalog(meta, 0)
    replayer.resume(frames.bodies)
    assert replayer.catalog is not None, "the header gave one"
    return Replay(
        replayer.states,
        replayer.catalog,
        replayer.next_id,
        replayer.total,
        replayer.trail.generation,
        frames.end,
    )


def renumbered(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield a log image made for a file (a header, then frames framed at byte offsets)
    with its frames framed at record numbers instead, as a new PostgreSQL log's."""
    iterator = iter(chunks)
    yield next(iterator)
    for number, frame in enumerate(iterator, start=1):
        yield _format.encode_frame(frame[_format.FRAME_OVERHEAD :], number)


class PgLog(Log):
    """The writer of a store on PostgreSQL: each record is one compare-and-append.

    It knows the log's end (a record number) as far as this instance has applied it;
    an append at an end another instance moved raises ``StaleLogError``, writing nothing,
    and the core catches up and tries again. Nothing is buffered: a write returns once
    PostgreSQL committed it. :attr:`size` counts the bytes appended since the newest
    image, for the compaction policy.
    """

    def __init__(
        self,
        engine: PostgresEngine,
        config: StoreConfig,
        total_records: int,
        generation: int,
        replayed: Replay | None,
    ) -> None:
        self.pg = engine
        self.total_records = total_records
        self.generation = generation
        self._config = config
        self._buffer = bytearray()
        self.failure = None
        self.pending_schema = None
        if replayed is not None:
            engine.claim(replayed.end)
        self._size = 0
        if replayed is not None:
            self._size = replayed.total_records * 32  # an estimate until the next image

    @property
    def size(self) -> int:
        """Bytes appended since the newest image (an estimate after a replay)."""
        return self._size

    @property
    def end(self) -> int:
        """The log's end as this instance knows it: where the next record goes."""
        return self.pg.claimed

    def moved(self, end: int, size: int) -> None:
        """Append from ``end`` on, the log holding ``size`` bytes since its image."""
        self.pg.claim(end)
        self._size = size

    def append(self, body: bytes | list[bytes] | OperationParts, records: int) -> None:
        """Append ``body`` (holding ``records`` operations) at :attr:`end` in one statement;
        one operation's parts are made its record first (see :meth:`Log.append`).

        ``StaleLogError`` if another instance appended since (nothing written);
        ``ConnectionError`` if the connection was lost, the record then written or not,
        as the next catch-up tells.
        """
        if isinstance(body, tuple):
            body = operation_record(*body)
        generation = self.generation
        pending = self.pending_schema
        at = self.pg.claimed
        frames = []
        if pending is not None:
            generation = (generation + 1) % _format.GENERATIONS
            frames.append(_format.encode_frame(_format.schema_body(pending, generation), at))
        data = body if isinstance(body, bytes) else b"".join(body)
        frames.append(_format.encode_frame(_format.tag(data, generation), at + len(frames)))
        total, size = self.total_records + records, self._size + sum(map(len, frames))
        try:
            self.pg.append(frames, at)
        finally:
            # A Ctrl-C can land once the statement committed: the record is in the log
            # exactly when the engine's end moved, and then it is counted, so that the
            # caller makes memory agree (see Log.append), not a catch-up skip it.
            # The attribute, not the property: a call is where a Ctrl-C can land.
            if self.pg._claimed != at:
                self.total_records, self.pending_schema, self.generation = total, None, generation
                self._size = size

    def append_schema(self, meta: bytes) -> None:
        """Append a schema record alone, opening the next generation."""
        generation = (self.generation + 1) % _format.GENERATIONS
        at = self.pg.claimed
        frame = _format.encode_frame(_format.schema_body(meta, generation), at)
        try:
            self.pg.append([frame], at)
        finally:
            if self.pg._claimed != at:  # landed, whatever arrives now: see append
                self.generation, self.pending_schema = generation, None
                self._size += len(frame)

    def flush(self) -> None:
        """Nothing to do: every write was committed before it returned."""

    def rewrite(
        self, chunks: Iterable[bytes], records: int, generation: Callable[[], int] = lambda: 0
    ) -> None:
        """Append the image ``chunks`` as the newest one, if the log still ends at
        :attr:`end` (``StaleLogError`` otherwise); older records are forgotten."""
        rows = list(renumbered(chunks))
        self.pg.replace(rows, self.pg.claimed)
        self._size = sum(map(len, rows))
        self.pending_schema = None
        self.generation = generation()
        self.total_records = records

    def resume(self, records: int, generation: int) -> None:
        """Continue after records another instance wrote; see ``Log.resume``."""
        self.total_records = records
        self.generation = generation

    def close(self) -> None:
        """Close the engine's connection."""
        self.pg.close()

    def abandon(self) -> int:
        """Close the engine's connection; nothing is ever buffered."""
        self.pg.close()
        return 0
