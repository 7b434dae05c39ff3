"""File system access: the only module that opens, writes, fsyncs, renames or locks files.

Every durability step names the crash it guards against.

Locks (README, "One writer" and "Several processes"). Two lock files sit beside the log;
neither is ever replaced or removed, so both outlive compaction, which replaces the
log's inode. Both are ``flock`` locks: they belong to an open file description, so a
second open in the same process is refused (or waits) like one in another process,
closing some other descriptor of the file does not drop them, and the kernel drops
them when their holder dies, even by SIGKILL.

- ``<log>.lock``, the *open lock*, held from open to close. An exclusive (default)
  store holds it exclusively; a shared store holds it shared. So shared stores
  coexist, and an exclusive open beside shared ones, or the reverse, fails at once
  with ``StoreLockedError`` (non-blocking ``flock``). Read-only opens take no lock.
- ``<log>.writer.lock``, the *writer lock*, taken only in shared mode, and only
  around one operation's read-check-write: catch up with the log, check, append,
  release. It blocks (other writers wait their turn). Readers never take it: they
  read the log up to the last complete frame at the end they saw (a frame still being
  written is "not yet written", never damage), so they never wait on a writer.
  Compaction runs under it. Its file also holds the *move record*: which log a
  compaction replaced, at which position, by which file, up to which position (see
  :class:`WriterLock`), so that another process moves to the new file without
  replaying it. A compaction also grows the old file by one byte before the rename
  (:meth:`LogFile.mark_replaced`), so that whether the log changed at all is one
  ``lseek`` against the position a process knows, the move record read only if it did.

A ``flock`` on a network file system may not exclude another machine (NFS emulates it
with byte-range locks, some servers not at all): shared mode refuses the file systems
that :func:`network_filesystem` recognises.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ._errors import NotAStoreError, StoreLockedError

_CHUNK = 1024 * 1024
_IOV_MAX = 1024
"""Most buffers one ``pwritev`` takes (POSIX guarantees at least 16; Linux and macOS 1024)."""

_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def read_file(path: Path) -> bytes:
    """Return the whole content of the regular file at ``path`` (see :func:`open_regular`)."""
    fd = open_regular(path, writable=False)
    try:
        return read_all(fd)
    finally:
        os.close(fd)


def open_regular(path: Path, *, writable: bool) -> int:
    """Open the regular file at ``path`` and return its descriptor, read-only unless ``writable``.

    Anything else is ``NotAStoreError``, left untouched: a device such as
    ``/dev/zero`` would be read until memory runs out, and a FIFO would block the
    open until some writer came. The path is checked before opening (opening a
    device may have effects of its own) and the open file again, since the path may
    change in between; ``O_NONBLOCK`` keeps even that open from waiting on a FIFO.
    A missing file is ``FileNotFoundError``.

    Whatever the path names later, the descriptor stays on the file checked here:
    a store reads, truncates and appends to its log through one descriptor.
    """
    check_regular(path)
    mode = os.O_RDWR if writable else os.O_RDONLY
    fd = os.open(path, mode | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _require_regular(path, os.fstat(fd))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_all(fd: int) -> bytes:
    """Return the whole content of the open regular file ``fd``, from its first byte."""
    size = os.fstat(fd).st_size
    parts: list[bytes] = []
    offset = 0
    while True:  # the file may grow while it is read: read until a read comes back empty
        part = os.pread(fd, max(size - offset, _CHUNK), offset)
        if not part:
            return b"".join(parts)
        parts.append(part)
        offset += len(part)


def _read_range(fd: int, start: int, stop: int) -> bytes:
    """Return the bytes of the open file ``fd`` from ``start`` up to ``stop`` or its end."""
    parts: list[bytes] = []
    while start < stop:
        part = os.pread(fd, stop - start, start)
        if not part:  # cut short meanwhile
            break
        parts.append(part)
        start += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def check_regular(path: Path) -> os.stat_result | None:
    """Return the status of the file at ``path`` (None if there is none), if it is regular.

    A symlink is followed: a link to a device is the device. Anything but a regular
    file is ``NotAStoreError``.
    """
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    _require_regular(path, status)
    return status


def _require_regular(path: Path, status: os.stat_result) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _NOT_REGULAR if test(status.st_mode)), "")
        raise NotAStoreError(path, f"{kind or 'a special file'}, not a regular file")


def make_parents(path: Path) -> None:
    """Create the missing folders above ``path``, each made durable in its own parent.

    Without the parent's fsync a power loss could take a new folder, and the log
    in it, away even after writes to the log were fsynced.
    """
    missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        fsync_directory(folder.parent)


def real_path(path: Path) -> Path:
    """Return ``path`` with symlinks resolved: the log every path to it names.

    The lock and temp files sit beside the real log: through a link, a writer would
    otherwise take a lock of its own, and a rewrite would replace the link.
    """
    return Path(os.path.realpath(path))


def lock_path(path: Path) -> Path:
    """Return the lock file's path for the log at ``path``."""
    return path.with_name(path.name + ".lock")


def temp_path(path: Path) -> Path:
    """Return the compaction temp file's path for the log at ``path``."""
    return path.with_name(path.name + ".compact.tmp")


class FileLock:
    """The open lock: a ``flock`` on ``<log>.lock``, exclusive or shared, held until released.

    It lives on its own file, not the log, because compaction replaces the log's
    inode; ``flock`` (not ``fcntl`` record locks) because closing some other
    descriptor of the same file must not drop it, and because a second open in the
    same process must be refused too. Shared holders coexist; an exclusive holder
    excludes every other holder (see the module docstring).
    """

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        """Take the open lock of the log at ``path``; raise ``StoreLockedError`` if it is held.

        Before the lock file is made, a ``path`` that is not a regular file raises
        ``NotAStoreError``, and a log with other hard links ``StoreLockedError`` (see
        :func:`_refuse_hard_links`).
        """
        status = check_regular(path)
        if status is not None:
            _refuse_hard_links(path, status)
        self.path = lock_path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            reason = self._holders(shared)
            self.release()
            raise StoreLockedError(path, reason) from None
        except BaseException:  # a Ctrl-C as the flock returns: no one else can let it go
            self.release()
            raise

    def _holders(self, shared: bool) -> str | None:
        """Say who holds the lock, when it is not simply another exclusive store."""
        if shared:
            return (
                "a store holds this log exclusively; shared mode needs every writer to "
                "open it with shared=True (or open it with readonly=True to read it)"
            )
        try:  # a shared lock taken at once means only shared stores hold it
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        return (
            "stores in shared mode hold this log; open it with shared=True to write "
            "beside them, or with readonly=True to read it"
        )

    def release(self) -> None:
        """Drop the lock; the lock file stays, so no other opener races on its inode.
        Once only: the descriptor's number may name another file afterwards."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        # A lock no one can release any more: a Ctrl-C landed between its making and
        # the code that keeps it (an open's), which then never returned it. Without
        # this, its descriptor, an int, would hold the lock until the process ends.
        if getattr(self, "_fd", -1) >= 0:
            self.release()


def writer_lock_path(path: Path) -> Path:
    """Return the writer lock's path for the log at ``path`` (shared mode)."""
    return path.with_name(path.name + ".writer.lock")


class Move(NamedTuple):
    """What the last compaction in shared mode did: the new log holds exactly the state
    of the old one at position ``seen``, and its compacted image ends at ``end``."""

    old_dev: int
    old_ino: int
    seen: int
    new_dev: int
    new_ino: int
    end: int

    def encode(self) -> bytes:
        """Return the record as stored: its six fields, then a CRC-32 of them."""
        fields = _MOVE.pack(*self, 0)[:-4]
        return fields + struct.pack("<I", zlib.crc32(fields))

    @classmethod
    def decode(cls, stamp: bytes) -> Move | None:
        """Return the move ``stamp`` records, or None if it holds none (or a torn one)."""
        if len(stamp) != _MOVE.size:
            return None
        *fields, crc = _MOVE.unpack(stamp)
        if zlib.crc32(stamp[:-4]) != crc:
            return None
        return cls(*fields)


_MOVE = struct.Struct("<QQQQQQI")
"""The move record on disk: the six fields of :class:`Move`, then a CRC-32 of them."""


class WriterLock:
    """The writer lock of shared mode: a blocking exclusive ``flock`` on ``<log>.writer.lock``.

    Taken around one operation (see the module docstring). Its file's first bytes hold
    the :class:`Move` record of the last compaction, written under the lock and read
    without it: a read that races with a write fails its checksum and counts as no
    record, so the reader replays the new log instead of trusting a torn one.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """Open (or, unless ``readonly``, create) the writer lock file of the log at ``path``.

        A read-only store only reads the move record: a missing file reads as none.
        """
        self.path = writer_lock_path(path)
        self._fd: int | None = None  # a reader opens it when it first needs the record
        if not readonly:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def acquire(self) -> None:
        """Wait for the lock and take it."""
        assert self._fd is not None, "a read-only store never writes"
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def try_acquire(self) -> bool:
        """Take the lock if no one holds it; return whether it was taken (never waits)."""
        assert self._fd is not None, "a read-only store never writes"
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        """Let the next writer in (closing the lock file did already, if it is closed)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def write_move(self, move: Move) -> bytes:
        """Record ``move`` (under the lock) and return its stamp (see :meth:`read_stamp`).

        No fsync: after a crash, every store opens by replaying the log.
        """
        assert self._fd is not None, "a read-only store never writes"
        stamp = move.encode()
        os.pwrite(self._fd, stamp, 0)
        return stamp

    def read_stamp(self) -> bytes | None:
        """Return the move record's bytes as they are now, or None if there is no lock file.

        One ``pread``: comparing stamps is how a process finds out cheaply, before each
        operation, that a compaction replaced the log (``Move.decode`` reads one).
        """
        if self._fd is None:
            self._fd = _open_if_exists(self.path)
            if self._fd is None:
                return None
        return os.pread(self._fd, _MOVE.size, 0)

    def close(self) -> None:
        """Close the lock file (dropping the lock if held)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _open_if_exists(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _refuse_hard_links(path: Path, status: os.stat_result) -> None:
    """Raise ``StoreLockedError`` if the log at ``path`` has other names (hard links).

    The lock is named after the log's path, so a writer through another name would
    take a lock of its own and both would append at the same offsets; and the first
    compaction would split the names into two diverging files. Links made after the
    open cannot be seen here; README's "One writer" section states the limit.
    """
    if status.st_nlink > 1:
        raise StoreLockedError(
            path,
            f"the log has {status.st_nlink} hard links (names); the writer lock is taken "
            "by name and cannot keep out a writer using another one, so writing is "
            "refused: remove the other names, or open it with readonly=True",
        )


class LogFile:
    """An open log file that records are appended to, tracking its valid length."""

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path = path
        self.size = size
        """Bytes of complete records; the file never keeps a partial record past this."""
        self._fd = fd

    @classmethod
    def open_existing(cls, path: Path, fd: int, size: int) -> LogFile:
        """Take the log ``fd`` (opened read-write from ``path``) to append after ``size`` bytes.

        The descriptor is the one the log was replayed through, never the path opened
        again: the path may name another file by now.
        """
        return cls(path, fd, size)

    @classmethod
    def create(cls, path: Path) -> LogFile:
        """Create (or empty) ``path`` for writing."""
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        return cls(path, os.open(path, flags, 0o644), 0)

    def append(self, data: bytes) -> None:
        """Write ``data`` at the end; on failure, cut the file back and re-raise.

        Cutting back guards against a partial record that later records would
        follow, which replay would then have to call damage rather than a torn tail.
        """
        offset = self.size
        try:
            written = os.pwrite(self._fd, data, offset)
            if written < len(data):  # a short write (a full disk, a signal): finish it
                view = memoryview(data)[written:]
                while view:
                    offset += written
                    written = os.pwrite(self._fd, view, offset)
                    view = view[written:]
        except OSError:
            self.truncate(self.size)
            raise
        self.size = offset + written

    def append_parts(self, parts: list[bytes]) -> None:
        """Write the concatenation of ``parts`` at the end, as :meth:`append` writes bytes.

        The parts go to the OS with ``pwritev``, never joined: a huge record is written
        without a second copy of it in memory.
        """
        offset = self.size
        try:
            for start in range(0, len(parts), _IOV_MAX):
                offset = self._write_parts(parts[start : start + _IOV_MAX], offset)
        except OSError:
            self.truncate(self.size)
            raise
        self.size = offset

    def _write_parts(self, parts: list[bytes], offset: int) -> int:
        """Write ``parts`` at ``offset``, finishing a short write; return where they end."""
        written = os.pwritev(self._fd, parts, offset)
        for part in parts:
            done = min(written, len(part))
            written -= done
            offset += done
            view = memoryview(part)[done:]
            while view:  # a short write (a full disk, a signal): finish it
                done = os.pwrite(self._fd, view, offset)
                offset += done
                view = view[done:]
        return offset

    def sync(self) -> None:
        """fdatasync the file: after it returns, its records survive power loss."""
        os.fdatasync(self._fd)

    def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes."""
        os.ftruncate(self._fd, size)
        self.size = size

    def refuse_hard_links(self) -> None:
        """Raise ``StoreLockedError`` if the file has other names (hard links) by now.

        Checked on the descriptor after replay, before the store first writes: a link
        made while the log was replayed (by a validator, say) is seen too.
        """
        _refuse_hard_links(self.path, os.fstat(self._fd))

    def end(self) -> int:
        """Return the file's size now, which other processes' appends may have grown."""
        # lseek, not fstat: the same answer without building a stat result, at half the
        # cost, on the path of every shared read. Reads and writes use pread and pwrite,
        # so the descriptor's offset that lseek moves is never used.
        return os.lseek(self._fd, 0, os.SEEK_END)

    def read_from(self, start: int, stop: int) -> bytes:
        """Return the file's bytes from ``start`` up to ``stop`` (fewer if it ends before)."""
        return _read_range(self._fd, start, stop)

    def identity(self) -> tuple[int, int]:
        """Return the open file's device and inode, which a rename over its path keeps."""
        status = os.fstat(self._fd)
        return status.st_dev, status.st_ino

    def is_replaced(self) -> bool:
        """Whether the log's path names another file than this one by now (or none)."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (status.st_dev, status.st_ino) != self.identity()

    def mark_replaced(self) -> None:
        """Append one byte to the file, which a compaction is about to replace (shared mode).

        So the file's size alone says that it changed: a process on it notices the
        compaction with the one ``lseek`` it makes anyway, never reading the move record
        unless the size changed. Done before the rename: a compactor killed in between
        leaves a torn tail (less than a frame head), which the next writer cuts.
        """
        os.pwrite(self._fd, b"\0", self.end())

    def cut_torn_tail(self, size: int) -> None:
        """Cut the file to ``size`` bytes and fsync it, so a torn tail does not reappear."""
        self.truncate(size)
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the descriptor (no flush: nothing is buffered here)."""
        os.close(self._fd)


def open_log_readonly(path: Path) -> tuple[LogFile, bytes]:
    """Open the existing regular file at ``path`` to read, now and as it grows; read it whole.

    Return it open (a read-only descriptor: appending to it fails), and its content.
    """
    fd = open_regular(path, writable=False)
    try:
        buf = read_all(fd)
    except BaseException:
        os.close(fd)
        raise
    return LogFile.open_existing(path, fd, len(buf)), buf


def open_log_file(path: Path, *, writable: bool) -> LogFile:
    """Open the existing regular file at ``path`` as a log whose end is its size now."""
    fd = open_regular(path, writable=writable)
    try:
        size = os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        raise
    return LogFile.open_existing(path, fd, size)


def open_log(path: Path) -> tuple[LogFile, bytes]:
    """Open the existing regular file at ``path`` to replay and then append to; read it whole.

    Return it open, its size the bytes read, and its content. The store reads, cuts a
    torn tail from and appends to this one descriptor: code that runs during replay
    (a validator) may rename the log away or put a link to another file at its path,
    and the store still writes to the file it replayed.
    """
    fd = open_regular(path, writable=True)
    try:
        buf = read_all(fd)
    except BaseException:
        os.close(fd)
        raise
    return LogFile.open_existing(path, fd, len(buf)), buf


def truncate_file(path: Path, size: int) -> None:
    """Cut ``path`` to ``size`` bytes and fsync it, so a torn tail does not reappear."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_log(
    path: Path,
    chunks: Iterable[bytes],
    before_rename: Callable[[LogFile], None] | None = None,
    renamed: Callable[[LogFile], None] | None = None,
) -> tuple[LogFile, OSError | None]:
    """Write ``chunks`` as the new content of ``path`` atomically; return it open to append.

    ``chunks`` may be a generator: it is written as it is produced, so a compaction never
    holds a second copy of the whole log in memory.

    Protocol: write ``<log>.compact.tmp``, fsync it, rename it over the log, fsync
    the directory. A crash at any instant leaves either the whole old file or the
    whole new one. ``before_rename`` is called with the new file, complete and
    fsynced, just before the rename (shared mode records the move then: see
    :class:`WriterLock`). On an error before the rename the temp file is removed, the old
    log stands and the error propagates. Once renamed, the new file is the log
    whatever happens next, so a failed directory fsync is returned, not raised: the
    caller must switch to the new file and then report it.

    ``renamed`` (which must do nothing when called again with the same file) is called
    with the new file as soon as it is the log, before the directory's fsync: also when
    an exception (a Ctrl-C) arrives once the rename is done, before it propagates, so
    that the caller never goes on appending to the old file, which no longer has a name.
    """
    tmp = temp_path(path)
    log = LogFile.create(tmp)
    try:
        for chunk in _rechunk(chunks):
            log.append(chunk)
        # fsync before the rename: otherwise a power loss could leave the log's name
        # pointing at a file whose data never reached the disk.
        log.sync()
        if before_rename is not None:
            before_rename(log)
        os.replace(tmp, path)
        log.path = path
        if renamed is not None:
            renamed(log)
    except BaseException:
        if _names(path, log):  # the rename is done: the new file is the log
            log.path = path
            if renamed is not None:
                renamed(log)
                raise
        log.close()
        remove_if_exists(tmp)
        raise
    try:
        # Until the directory is fsynced, a power loss may bring the old name back.
        fsync_directory(path.parent)
    except OSError as exc:
        return log, exc
    return log, None


def _names(path: Path, log: LogFile) -> bool:
    """Whether ``path`` names the file ``log`` has open (False when that cannot be told)."""
    try:
        status = os.stat(path)
        return (status.st_dev, status.st_ino) == log.identity()
    except OSError:
        return False


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Group small records into writes of about ``_CHUNK`` bytes, as they come."""
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= _CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def fsync_directory(path: Path) -> None:
    """fsync a directory, making a rename or file creation in it durable."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_if_exists(path: Path) -> bool:
    """Remove ``path``; return whether it existed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def copy_aside(path: Path, source: LogFile | None = None) -> Path:
    """Copy ``path`` to a new ``<log>.damaged-<time>`` file, fsynced; return its path.

    Recovery modes rewrite the log, so the original is kept first: whatever the
    recovery drops can still be read from the copy. Given the open log ``source``, the
    copy is of that file, whatever ``path`` names by now.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for attempt in range(1000):
        suffix = f".damaged-{stamp}" + (f"-{attempt}" if attempt else "")
        target = path.with_name(path.name + suffix)
        try:
            with open(target, "xb") as out:
                if source is None:
                    with open(path, "rb") as src:
                        shutil.copyfileobj(src, out)
                else:
                    _copy_from(source._fd, out)
                out.flush()
                os.fsync(out.fileno())
        except FileExistsError:
            continue
        fsync_directory(path.parent)
        return target
    raise FileExistsError(f"{path}: could not find a free name to copy the damaged log to")


def _copy_from(fd: int, out: BinaryIO) -> None:
    """Write the whole content of the open file ``fd`` to ``out``, from its first byte."""
    offset = 0
    while part := os.pread(fd, _CHUNK, offset):
        out.write(part)
        offset += len(part)


MOUNTINFO = Path("/proc/self/mountinfo")
"""Linux's table of this process's mounts, with each one's device number and type."""

NETWORK_FILESYSTEMS = frozenset(
    {
        "9p",  # WSL's Windows drives, QEMU and gVisor shares
        "afs",
        "ceph",
        "cifs",
        "fuse.glusterfs",
        "fuse.rclone",
        "fuse.s3fs",
        "fuse.sshfs",
        "gpfs",
        "lustre",
        "ncpfs",
        "nfs",
        "nfs4",
        "smb3",
        "smbfs",
    }
)
"""File system types whose ``flock`` may not exclude another machine, or another client."""


def network_filesystem(path: Path, mountinfo: str | None = None) -> str | None:
    """Return the type of the network file system the log at ``path`` is on, or None.

    None also when the platform does not tell (no ``/proc/self/mountinfo``): README's
    "Several processes" states that limit. The mount is found by the device number of
    the log's folder, which ``os.stat`` and mountinfo's third field both give, so bind
    mounts and symlinks do not mislead it. ``mountinfo`` replaces the file's text.
    """
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    device = os.stat(path.parent).st_dev
    wanted = f"{os.major(device)}:{os.minor(device)}"
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) > 2 and parts[2] == wanted and rest:
            kind = rest.split()[0]
            return kind if kind in NETWORK_FILESYSTEMS else None
    return None
