"""The file engine: the log as one local file (docs/FORMAT.md), behind ``_engine.Engine``.

Positions are byte offsets. The locks, and what each mode takes, are in ``_fs``'s module
docstring; every byte is read and written through ``_fs``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from . import _format, _fs
from ._engine import Frames, Mode, StaleLogError, is_incomplete, walk_frames
from ._errors import StoreLockedError

logger = logging.getLogger("typedstore")


class FileEngine:
    """The log at one path, opened exclusive, shared or read-only (see ``_engine.Engine``).

    ``file`` is the log file it reads and appends to: None until :meth:`read_log` or
    :meth:`create`. The exclusive store's writer (``_log.Log``) appends through it
    directly, buffering as it goes: it is the only writer, so it knows the end.
    """

    def __init__(self, path: Path, mode: Mode, open_lock: _fs.FileLock | None = None) -> None:
        """Use the log at ``path`` (symlinks resolved) in ``mode``; ``open_lock``, if given,
        is released by :meth:`close`. An exclusive engine made without one relies on
        its caller holding the open lock."""
        self.path = path
        self._mode: Mode = mode
        self._open_lock = open_lock
        self._writer = None
        if mode != "exclusive":
            self._writer = _fs.WriterLock(path, readonly=mode == "readonly")
        self.file: _fs.LogFile | None = None
        self.is_writing = False
        """Whether this engine holds the writer lock (:meth:`start_writing`). An attribute:
        read in the cleanup of every shared write, where a property's call would be one
        more place for a Ctrl-C to land."""
        self._stamp: bytes | None = None
        """The move record as it was when this engine's file was the log (see
        :meth:`is_replaced`)."""

    @classmethod
    def open(cls, path: Path, mode: Mode) -> FileEngine:
        """Take the open lock ``mode`` needs (none for ``"readonly"``) and return the engine.

        Raise ``StoreLockedError`` at once if a store in the other mode (or another
        exclusive one) holds the log, or, for ``"shared"``, if the log is on a network
        file system (see ``_fs.network_filesystem``).
        """
        if mode == "readonly":
            return cls(path, mode)
        _fs.make_parents(path)
        if mode == "shared":
            _refuse_network_filesystem(path)
        lock = _fs.FileLock(path, shared=mode == "shared")
        try:
            return cls(path, mode, lock)
        except BaseException:
            lock.release()
            raise

    @property
    def mode(self) -> Mode:
        """How the log was opened."""
        return self._mode

    # -- opening -------------------------------------------------------------------------

    def read_log(self) -> bytes:
        """Return the whole log for replay (``b""``: none yet), keeping it open to follow.

        A writable engine first removes a leftover ``<log>.compact.tmp``; in shared mode
        only under the writer lock, since without it the file may be another process's
        compaction in progress. A read-only one raises ``FileNotFoundError`` for a missing
        log.
        """
        self._read_stamp()  # before the file: see is_replaced
        if self._mode == "readonly":
            file, buf = _fs.open_log_readonly(self.path)
            self._switch(file)
            return buf
        if self._mode == "exclusive" or self.is_writing:
            self._remove_leftover_temp()
        if not self.path.exists():
            return b""
        file, buf = _fs.open_log(self.path)
        self._switch(file)
        return buf

    def _read_stamp(self) -> bytes | None:
        """Note the move record as it is now (shared and read-only engines); return it."""
        if self._writer is not None:
            self._stamp = self._writer.read_stamp()
        return self._stamp

    def _remove_leftover_temp(self) -> None:
        if _fs.remove_if_exists(_fs.temp_path(self.path)):
            logger.warning("%s: removed the temp file of an interrupted compaction", self.path)

    def create(self, image: Iterable[bytes]) -> int:
        """Write a new log holding ``image`` atomically; return its end (see ``_engine``)."""
        self._check_writing()
        if self._mode == "shared":
            status = _fs.check_regular(self.path)
            if status is not None and status.st_size > 0:
                raise StaleLogError(f"{self.path}: another process created the log first")
        file, directory_error = _fs.write_new_log(self.path, image)
        if directory_error is not None:
            file.close()
            raise directory_error
        self._switch(file)
        return file.size

    def _switch(self, file: _fs.LogFile) -> None:
        """Read and append to ``file`` from now on, closing the file used until now;
        nothing if ``file`` is already the one (``_fs.write_new_log`` may call it twice)."""
        if self.file is file:
            return
        old, self.file = self.file, file
        if old is not None:
            old.close()

    # -- reading -------------------------------------------------------------------------

    def end(self) -> int:
        """Return the log's size now (the exclusive writer's own count: nobody else writes)."""
        file = self._file()
        return file.size if self._mode == "exclusive" else file.end()

    def read_frames(self, start: int) -> Frames:
        """Return the frames from byte ``start`` to the log's end now (see ``walk_frames``).

        A shared engine that finds an invalid frame without the writer lock reads again
        under it: a read racing a writer that cuts a dead writer's partial record and
        appends in its place can see a mix of both, which no write leaves once the lock
        is free. So "invalid" from a shared engine is damage. A read-only engine takes no
        lock: its "invalid" may be such a mix, and is read again later.
        """
        file = self._file()
        frames = walk_frames(file.read_from(start, file.end()), start)
        if frames.stop != "invalid" or self._mode != "shared" or self.is_writing:
            return frames
        with self.writing():
            return walk_frames(file.read_from(start, file.end()), start)

    def read_bytes(self, start: int) -> bytes:
        """Return the log's bytes from byte ``start`` to its end now, unchecked: for a
        reader that walks them itself and leaves what it cannot read to
        :meth:`read_frames` (a shared catch-up's short way, ``Core._read_bare``)."""
        file = self._file()
        return file.read_from(start, file.end())

    def position_after(self, position: int, frame: bytes) -> int:
        """Return the byte offset after ``frame`` written at ``position``."""
        return position + len(frame)

    # -- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer lock (shared mode; the open lock suffices for exclusive mode).

        Not reentrant: a second ``flock`` on the same descriptor would succeed at once and
        the inner release would let other writers in while the outer write goes on.
        """
        self.start_writing()
        try:
            yield
        finally:
            self.stop_writing()

    def start_writing(self) -> None:
        """Take the writer lock, as entering :meth:`writing` does (for a hot caller that
        pairs it with :meth:`stop_writing` in ``try``/``finally``)."""
        if self._mode == "readonly":
            raise RuntimeError(f"{self.path}: a read-only engine does not write")
        if self.is_writing:
            raise RuntimeError(f"{self.path}: the writer lock is held already")
        # Marked first: a Ctrl-C landing right after the flock leaves a lock that
        # stop_writing, called on any exception, lets go (unlocking an unheld flock is
        # harmless).
        self.is_writing = True
        try:
            if self._writer is not None:
                self._writer.acquire()
        except BaseException:
            self.stop_writing()
            raise

    def try_start_writing(self) -> bool:
        """Take the writer lock if it is free, as :meth:`start_writing` does; return
        whether it was taken (never waits). Exclusive mode: always."""
        if self._mode == "readonly":
            raise RuntimeError(f"{self.path}: a read-only engine does not write")
        if self.is_writing:
            raise RuntimeError(f"{self.path}: the writer lock is held already")
        self.is_writing = True  # marked first, as in start_writing
        try:
            if self._writer is not None and not self._writer.try_acquire():
                self.is_writing = False
                return False
        except BaseException:
            self.stop_writing()
            raise
        return True

    def stop_writing(self) -> None:
        """Release the writer lock :meth:`start_writing` took."""
        if self._writer is not None:  # first: interrupted, the lock is still marked held
            self._writer.release()
        self.is_writing = False

    def grew_or_moved(self, known: int) -> bool:
        """Whether the log's end is not ``known`` or another process replaced the log:
        :meth:`end` and :meth:`is_replaced` in one call, the check before every shared
        operation. A read-only engine also compares the path's file (see there).

        In shared mode one ``lseek``: a compaction grows the file it replaces (see
        ``_fs.LogFile.mark_replaced``), so the file's size is not ``known`` once it is
        replaced, and the move record is read only then (:meth:`is_replaced`).
        """
        file = self.file
        if file is None or self._mode != "shared":
            return self.is_replaced() or self.end() != known
        return file.end() != known

    def append(self, frames: Sequence[bytes], at: int) -> int:
        """Append ``frames`` at byte ``at`` if that is the log's end; return the new end."""
        file = self._writable_file()
        self._check_end(file, at)
        file.size = at
        if len(frames) == 1:
            file.append(frames[0])
        else:
            file.append_parts(list(frames))
        return file.size

    def take_end(self, at: int) -> None:
        """Append at byte ``at`` through :attr:`file` from now on, unchecked: for a writer
        that, under the writer lock, just found the log unchanged (:meth:`grew_or_moved`
        false), where :meth:`claim` would only check the same again."""
        file = self._writable_file()
        file.size = at

    def claim(self, at: int) -> None:
        """Take the log's end at byte ``at`` for appending through :attr:`file` directly.

        What :meth:`append` checks first, for a writer that frames and appends records
        itself (``_log.Log`` in shared mode, under the writer lock): a dead writer's
        partial frame at ``at`` is cut; ``StaleLogError`` if the end is elsewhere.
        """
        file = self._writable_file()
        self._check_end(file, at)
        file.size = at

    def _check_end(self, file: _fs.LogFile, at: int) -> None:
        """Raise ``StaleLogError`` unless ``at`` is the log's end, cutting a dead writer's
        partial frame there first.

        Under the writer lock no other writer is in the middle of an append, so a partial
        frame at the end is one a killed writer left. Cut and fsynced before appending:
        a record written after it would turn it into damage before the tail.
        """
        if self._mode == "exclusive":
            if at != file.size:
                raise StaleLogError(f"{self.path}: the log ends at {file.size}, not {at}")
            return
        if self._writer is not None and self._writer.read_stamp() != self._stamp:
            raise StaleLogError(f"{self.path}: another process replaced the log")
        size = file.end()
        if size == at:
            return
        if size > at:
            head = file.read_from(at, at + _format.FRAME_OVERHEAD)
            if is_incomplete(head, at, size - at):
                file.cut_torn_tail(at)
                return
        raise StaleLogError(f"{self.path}: the log ends at {size}, not {at}")

    def cut(self, position: int) -> None:
        """Cut a torn tail at ``position`` and fsync, so it does not reappear."""
        self._writable_file().cut_torn_tail(position)

    def replace(self, image: Iterable[bytes], seen: int) -> int:
        """Replace the log by ``image`` atomically (``_fs.write_new_log``); return its end.

        In shared mode the move is recorded for other processes (see ``_fs.WriterLock``)
        before the rename, so whoever sees the new file can find the record. In exclusive
        mode ``seen`` is not checked: the only writer knows its log. A failed directory
        fsync is raised once the engine uses the new file.
        """
        file = self._writable_file()
        writer = self._writer
        record = None
        if writer is not None:
            self._check_end(file, seen)
            old_dev, old_ino = file.identity()

            def record(new: _fs.LogFile) -> None:
                move = _fs.Move(old_dev, old_ino, seen, *new.identity(), new.size)
                self._stamp = writer.write_move(move)
                file.mark_replaced()  # after the record, which whoever sees it reads

        new_file, directory_error = _fs.write_new_log(self.path, image, record, self._switch)
        if directory_error is not None:
            raise directory_error
        return new_file.size

    def sync(self) -> None:
        """fdatasync the log."""
        self._file().sync()

    # -- following a replaced log ----------------------------------------------------------

    def is_replaced(self) -> bool:
        """Whether another process renamed a new log over this one (never, when exclusive).

        Shared mode records every compaction in the writer lock's file before renaming
        the new log into place, so the record differing from the one noted when this
        file was opened says it, in one ``pread``. The record is read before the file is
        opened, so a compaction in between is seen (and, at worst, the same file is
        replayed again). Without a writer lock file (a reader beside no shared writer)
        the log's path is compared with the open file instead, and a reader always
        compares it too: an exclusive writer (one at a time with shared ones) leaves an
        old move record in place.
        """
        if self._writer is None:
            return False
        stamp = self._writer.read_stamp()
        if stamp is None:
            return self._file().is_replaced()
        if self._mode == "readonly" and self._file().is_replaced():
            return True  # an exclusive writer compacted: it records no move
        return stamp != self._stamp

    def follow(self, seen: int) -> int | None:
        """Move to the file now at the log's path; return where it matches ``seen``, or None.

        The move record (``_fs.WriterLock``) says which file replaced which at what
        position. It matches only if it names this engine's file, ``seen`` and the file
        opened now; anything else (two compactions since, or a record being written)
        returns None, and the caller replays the new log whole.
        """
        assert self._writer is not None, "an exclusive log is never replaced by another process"
        old = self._file().identity()
        stamp = self._read_stamp()  # before the file: see is_replaced
        move = None if stamp is None else _fs.Move.decode(stamp)
        new = _fs.open_log_file(self.path, writable=self._mode != "readonly")
        self._switch(new)
        if move is None or (move.old_dev, move.old_ino, move.seen) != (*old, seen):
            return None
        if (move.new_dev, move.new_ino) != new.identity():
            return None
        return move.end

    # -- the file's own concerns -----------------------------------------------------------

    def refuse_hard_links(self) -> None:
        """Raise ``StoreLockedError`` if the log has other names by now (``_fs``)."""
        self._file().refuse_hard_links()

    def copy_aside(self) -> Path:
        """Copy the log, as read, to a new ``<log>.damaged-<time>`` file; return its path."""
        return _fs.copy_aside(self.path, self._file())

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the log and the lock files, releasing the locks."""
        try:
            if self.file is not None:
                self.file.close()
                self.file = None
        finally:
            if self._writer is not None:
                self._writer.close()
            if self._open_lock is not None:
                self._open_lock.release()
                self._open_lock = None

    # -- checks ----------------------------------------------------------------------------

    def _file(self) -> _fs.LogFile:
        if self.file is None:
            raise RuntimeError(f"{self.path}: read_log() or create() first")
        return self.file

    def _writable_file(self) -> _fs.LogFile:
        self._check_writing()
        return self._file()

    def _check_writing(self) -> None:
        """Refuse a write outside :meth:`writing` in shared mode, or any on a reader."""
        if self._mode == "readonly":
            raise RuntimeError(f"{self.path}: a read-only engine does not write")
        if self._mode == "shared" and not self.is_writing:
            raise RuntimeError(f"{self.path}: a shared engine writes under the writer lock")


def _refuse_network_filesystem(path: Path) -> None:
    """Raise ``StoreLockedError`` if ``path`` is on a network file system (see ``_fs``)."""
    kind = _fs.network_filesystem(path)
    if kind is not None:
        raise StoreLockedError(
            path,
            f"the log is on a network file system ({kind}), where the locks of shared "
            "mode may not keep out another machine's writers; shared mode needs a local "
            "file system (README, 'Several processes')",
        )
