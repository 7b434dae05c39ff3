"""The open log's writer: appending records, buffering, syncing and rewriting."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from . import _format
from ._config import StoreConfig
from ._errors import StoreFailedError
from ._file_engine import FileEngine
from ._records import LARGE_BODY, operation_record

_operation_frame = _format.operation_frame  # bound once: every single write's call

OperationParts = tuple[bytes, bytes, bytes | None]
"""One operation's record as :meth:`Log.append_operation` takes it: head, key, value
(None for a removal)."""


class Log:
    """The open log's writer in exclusive mode: appends framed records, buffers, syncs, rewrites.

    Invariant: the file holds only complete records, and file plus buffer hold
    exactly the mutations memory has applied.

    The log lives in a ``FileEngine`` opened exclusive: it is read, created, cut,
    replaced and closed through the engine. Being the only writer, this writer knows the
    log's end without asking, and appends and syncs through the engine's file directly
    (``file``): the compare of ``FileEngine.append`` would only cost every write a check
    that cannot fail, and buffering needs the file's own cut-back on errors.
    """

    _direct = False
    """Whether a record goes straight to the file, and nowhere else: write-through with
    no fsync per record (see :meth:`append_operation`). False for subclasses that do
    not call this ``__init__`` (``PgLog``)."""

    def __init__(
        self, engine: FileEngine, config: StoreConfig, total_records: int, generation: int = 0
    ) -> None:
        self.engine = engine
        file = engine.file
        assert file is not None, "the engine has read or created its log"
        self.file = file
        self.total_records = total_records
        self.generation = generation
        """The schema generation the log's next record is written under."""
        self._config = config
        self._buffer = bytearray()
        self.failure: OSError | None = None
        """The error of an fsync that failed, after which the log refuses writes."""
        self.pending_schema: bytes | None = None
        """Metadata of a schema record to write before the next record, if the types changed."""
        self._direct = config.write_through and not config.sync_on_write

    @property
    def size(self) -> int:
        """Bytes in the log, buffered records included."""
        return self.file.size + len(self._buffer)

    @property
    def end(self) -> int:
        """The log's end, where the next record goes (shared mode buffers nothing)."""
        return self.file.size

    def append(self, body: bytes | list[bytes] | OperationParts, records: int) -> None:
        """Frame ``body`` at the log's end and append it; it holds ``records`` operations.

        ``body`` is one ``bytes``, or a large body's parts (see ``_records.LARGE_BODY``),
        or for one operation (``records`` 1) the ``(head, key, value)`` that
        :meth:`append_operation` takes, which frames it in one call when it can: the
        single write of a collection with indexes (``Core._write_one_hooked``), which
        appends here rather than there (tests interrupt a write right after this).
        When it returns the record is in the OS (write-through), on disk
        (``sync_on_write``) or in the buffer. When it raises, neither file nor
        buffer holds the record, unless the exception (a signal handler's) came once
        it was in one of them: then it stays, counted in ``total_records``.
        """
        if isinstance(body, tuple):
            self.append_operation(*body)  # which comes back here, with bytes, if it must
            return
        if self.failure is not None:  # check_writable, inlined on the path of every write
            self.check_writable()
        generation = self.generation
        pending = self.pending_schema
        if pending is not None:
            # In the same write as the first record under the new schema: a log opened
            # with changed types is not written to until something is stored.
            generation = (generation + 1) % _format.GENERATIONS
        total = self.total_records + records
        file = self.file
        before = file.size
        size = before + len(self._buffer)  # self.size, inlined on the path of every write
        try:
            if isinstance(body, list):
                self._append_parts(body, generation)
            else:
                if pending is None:
                    if generation:  # _format.tag's test, inlined: mostly 0
                        body = _format.tag(body, generation)
                    frame = _format.encode_frame(body, size)
                else:
                    schema = _format.encode_frame(_format.schema_body(pending, generation), size)
                    frame = schema + _format.encode_frame(
                        _format.tag(body, generation), size + len(schema)
                    )
                if self._config.write_through:
                    file.append(frame)
                    if self._config.sync_on_write:
                        self._sync(rollback_to=before)
                else:
                    self._buffer_frame(frame)
            self.total_records, self.pending_schema, self.generation = total, None, generation
        except BaseException:
            # A signal handler's exception can arrive anywhere, even after the bytes
            # reached the file: the record is in the log exactly when file or buffer
            # grew, and then it is counted, so that the caller can make memory agree.
            if self.size != size:
                self.total_records, self.pending_schema, self.generation = total, None, generation
            else:  # not in the log: cut bytes written but not yet counted by the file
                with contextlib.suppress(OSError):
                    self.file.truncate(self.file.size)
            raise

    def append_operation(self, head: bytes, key: bytes, value: bytes | None) -> int:
        """Append the record of one insert (``value`` set) or removal, as :meth:`append`
        appends ``_records.operation_record(head, key, value)``; return the log's size after.

        The same promises as :meth:`append`. Every single write takes this way: the
        commonest case (written straight to the file, generation 0, no schema record
        pending, a value not large) is framed and written in two calls.
        """
        if (
            not self._direct
            or self.generation
            or self.pending_schema is not None
            or self.failure is not None
            or (value is not None and len(value) >= LARGE_BODY)
        ):
            self.append(operation_record(head, key, value), 1)
            return self.size
        file = self.file
        before = file.size
        total = self.total_records + 1
        try:
            file.append(_operation_frame(head, key, value, before))
            self.total_records = total
        except BaseException:
            # As in append: in the log exactly when the file grew, and then counted.
            if file.size != before:
                self.total_records = total
            else:  # not in the log: cut bytes written but not yet counted by the file
                with contextlib.suppress(OSError):
                    file.truncate(before)
            raise
        return file.size

    def append_schema(self, meta: bytes) -> None:
        """Append a schema record alone, opening the next generation, and fsync it.

        For a catalog change made at open (a dropped or renamed collection): it must
        reach the disk whether or not a write follows.
        """
        self.check_writable()
        self._drain()
        generation = (self.generation + 1) % _format.GENERATIONS
        before = self.file.size
        frame = _format.encode_frame(_format.schema_body(meta, generation), before)
        try:
            self.file.append(frame)
        finally:
            # A signal handler's exception can arrive once the record is in the file:
            # it opens the generation then, or the next schema record would repeat it.
            if self.file.size != before:
                self.generation, self.pending_schema = generation, None
        # The change is durable before open returns, as the caller asked for it.
        self._sync(rollback_to=before)

    def _buffer_frame(self, frame: bytes) -> None:
        """Buffer ``frame``; hand the buffer to the OS first if ``frame`` would overfill it.

        So no write to the OS holds more than ``buf_capacity`` bytes, or else one record
        alone: what a crash in the middle of one write can tear, and what opening cuts
        as a torn tail (README, "Durability and recovery"). If handing the buffer over
        fails, it still holds its records and ``frame`` is not in it.
        """
        if len(self._buffer) + len(frame) > self._config.buf_capacity:
            self._drain()
            if len(frame) >= self._config.buf_capacity:
                self.file.append(frame)
                return
        self._buffer += frame

    def _append_parts(self, body: list[bytes], generation: int) -> None:
        """Append a body given as parts, as :meth:`append` does, without joining them.

        The record goes through the buffer only if it fits there; otherwise the buffer
        is handed to the OS first, to keep the records in order, then the record's parts.
        """
        frame: list[bytes] = []
        offset = self.size
        if self.pending_schema is not None:  # in the same write: see append
            schema = _format.encode_frame(
                _format.schema_body(self.pending_schema, generation), offset
            )
            frame.append(schema)
            offset += len(schema)
        frame += _format.frame_parts(_format.tag_parts(body, generation), offset)
        if self._config.write_through:
            before = self.file.size
            self.file.append_parts(frame)
            if self._config.sync_on_write:
                self._sync(rollback_to=before)
        elif len(self._buffer) + sum(map(len, frame)) < self._config.buf_capacity:
            self._buffer += b"".join(frame)  # one step: the buffer never holds part of it
        else:
            self._drain()
            self.file.append_parts(frame)

    def flush(self) -> None:
        """Hand buffered records to the OS and fsync the log."""
        self.check_writable()
        self._drain()
        self._sync(rollback_to=None)

    def rewrite(
        self, chunks: Iterable[bytes], records: int, generation: Callable[[], int] = lambda: 0
    ) -> None:
        """Replace the log atomically by ``chunks`` (header and records); see ``_fs``.

        ``generation`` gives the schema generation in force at the end of ``chunks``.
        """
        self.check_writable()
        old = self.file
        try:
            self.engine.replace(chunks, self.size)
            self._replaced(records, generation())
        except BaseException as exc:
            if self.engine.file is old:  # before the switch: the old log stands
                raise
            # The engine uses the new log and has closed the old one: so must this, whatever
            # arrived once it switched (a Ctrl-C there, or in _replaced, would leave writes
            # going to a closed descriptor, whose number something else may reuse).
            self._replaced(records, generation())  # again, if it had begun: it sets values
            if isinstance(exc, OSError):
                self.failure = exc  # the directory's fsync: the rename may not be durable
            raise

    def resume(self, records: int, generation: int) -> None:
        """Continue after records another process wrote (shared mode): the engine's file,
        which a compaction may have changed, now holding ``records`` records, and the
        schema ``generation`` in force at its end. Nothing is buffered in shared mode."""
        file = self.engine.file
        assert file is not None, "the engine has read or created its log"
        self.file = file
        self.total_records = records
        self.generation = generation

    def _replaced(self, records: int, generation: int) -> None:
        """Append to the engine's new log, holding ``records`` records, from now on."""
        file = self.engine.file
        assert file is not None, "replace leaves the engine with a log"
        self.file = file
        self._buffer.clear()
        self.pending_schema = None  # the new header describes the current schema
        self.generation = generation
        self.total_records = records

    def close(self) -> None:
        """Flush (unless an fsync already failed) and close the file.

        If handing the buffer to the OS fails, the file stays open and the buffer
        intact, so nothing acknowledged is lost and closing can be retried. Once an
        fsync has failed the file is closed whatever happens: durability is unknown,
        and only a reopen tells what the log holds.
        """
        if not self.has_failed():
            try:
                self.flush()
            except OSError:
                if not self.has_failed():
                    raise
                self.engine.close()
                raise
        self.engine.close()

    def abandon(self) -> int:
        """Close the file without flushing; return how many buffered bytes were dropped."""
        dropped = len(self._buffer)
        self._buffer.clear()
        self.engine.close()
        return dropped

    def has_failed(self) -> bool:
        """Whether an fsync failed: the log then refuses writes until reopened."""
        return self.failure is not None

    def check_writable(self) -> None:
        """Raise ``StoreFailedError`` if an earlier fsync failed."""
        if self.failure is not None:
            raise StoreFailedError(
                f"{self.file.path}: an fsync failed ({self.failure}); the kernel may have "
                "dropped written records, so this store refuses writes until it is reopened"
            ) from self.failure

    def _drain(self) -> None:
        if self._buffer:
            before = self.file.size
            try:
                self.file.append(bytes(self._buffer))
            finally:
                if self.file.size != before:  # written, even if an exception came after
                    self._buffer.clear()

    def _sync(self, rollback_to: int | None) -> None:
        try:
            self.file.sync()
        except OSError as exc:
            # After a failed fsync the page cache may or may not keep the data
            # (PostgreSQL's "fsyncgate"): retrying could report durability we do not
            # have. Refuse further writes, and take the unacknowledged record back out
            # so a reopen does not resurrect a mutation whose call failed.
            self.failure = exc
            if rollback_to is not None:
                with contextlib.suppress(OSError):  # the fsync error is the one to report
                    self.file.truncate(rollback_to)
            raise
