"""The floor: the plainest correct store with typedstore's default guarantees.

Issue 11 defines it as the practical lower bound for typedstore: what typedstore spends
beyond it is overhead to justify or remove. The library never imports it.

- pydantic's validator and serializer are built once per store. A value is dumped (JSON
  mode, so msgpack needs no hook for datetimes) and the dump validated, which catches
  instances built without validation; plain ``int``/``str``/``bytes``/``float``/``bool``
  values are just validated.
- Each mutation is one frame ``[u32 length][msgpack payload][u32 CRC-32 of length and
  payload]`` handed to the OS by one ``os.write`` on an ``O_APPEND`` descriptor, so a
  killed process loses nothing acknowledged; ``sync=True`` adds one ``fdatasync``.
- Memory is a dict: mutable values are kept as their dump and validated into a fresh copy
  on every read; plain values are kept and returned as they are.
- Opening replays with the cyclic collector paused, validating every value, and cuts a
  torn tail. Compaction writes a temp file, fsyncs it, renames it, fsyncs the directory.

It leaves out what costs nothing on the measured paths: telling damage from a torn tail,
transactions, read-only opens, schema records, the writer lock, key types other than the
plain ones, and value types whose JSON form does not validate back to the same value (the
benchmark's types all do).
"""

from __future__ import annotations

import errno
import gc
import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgpack
from pydantic import TypeAdapter

K = TypeVar("K")
V = TypeVar("V")

MAGIC = b"FLOOR\x00\x00\x01"
PLAIN = (int, str, bytes, float, bool)
MIN_COMPACT_BYTES = 1 << 20  # typedstore's defaults: min_compact_bytes and compact_ratio
COMPACT_RATIO = 2.0
_INSERT = 0
_REMOVE = 1
_U32 = struct.Struct("<I")
_MISSING: Any = object()


def frame(payload: bytes) -> bytes:
    """Return ``[u32 length][payload][u32 CRC-32 of length and payload]``."""
    head = _U32.pack(len(payload))
    return head + payload + _U32.pack(zlib.crc32(payload, zlib.crc32(head)))


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FloorStore(Generic[K, V]):
    """An insertion-ordered persistent mapping from plain keys to validated values."""

    def __init__(self, path: Path, key_type: type[K], value_type: type[V], *, sync: bool = False):
        if key_type not in PLAIN:
            raise TypeError(f"the floor takes plain key types only, not {key_type!r}")
        self._path = path
        self._sync = sync
        self._key_type = key_type
        self._plain = value_type in PLAIN
        values: TypeAdapter[V] = TypeAdapter(value_type)
        self._validate_key: Callable[[Any], Any] = TypeAdapter(key_type).validator.validate_python
        self._validate: Callable[[Any], Any] = values.validator.validate_python
        self._dump: Callable[..., Any] = values.serializer.to_python
        self._pack = msgpack.Packer().pack  # used under the lock only
        self._lock = threading.RLock()
        self._entries: dict[Any, Any] = {}
        self._records = 0
        self._fd = self._open_log()

    def _open_log(self) -> int:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{self._path}.compact.tmp").unlink(missing_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        if not data:
            os.write(fd, MAGIC)
            os.fsync(fd)  # a new log's magic survives power loss before any record follows
            data = MAGIC
        if not data.startswith(MAGIC):
            os.close(fd)
            raise ValueError(f"{self._path} is not a floor log")
        collecting = gc.isenabled()
        gc.disable()  # replay allocates only objects that stay referenced
        try:
            end = self._replay(data)
        finally:
            if collecting:
                gc.enable()
        if end < len(data):
            os.ftruncate(fd, end)  # a torn tail: the next record must not follow its bytes
            os.fsync(fd)
        self._size = end
        return fd

    def _replay(self, data: bytes) -> int:
        """Apply every complete frame in order; return the offset where they end."""
        offset, end = len(MAGIC), len(data)
        while offset + 8 <= end:
            (length,) = _U32.unpack_from(data, offset)
            stop = offset + 4 + length
            if stop + 4 > end:
                break
            payload = data[offset + 4 : stop]
            if (
                zlib.crc32(payload, zlib.crc32(data[offset : offset + 4]))
                != _U32.unpack_from(data, stop)[0]
            ):
                break
            self._apply(msgpack.unpackb(payload))
            offset = stop + 4
        return offset

    def _apply(self, record: list[Any]) -> None:
        self._records += 1
        key = self._validate_key(record[1])
        if record[0] == _REMOVE:
            self._entries.pop(key, None)
        elif self._plain:
            self._entries[key] = self._validate(record[2])
        else:
            self._validate(record[2])
            self._entries[key] = record[2]

    def _key(self, key: Any) -> Any:
        return key if type(key) is self._key_type else self._validate_key(key)

    def _append(self, record: bytes) -> None:
        written = os.write(self._fd, record)
        if written != len(record):
            os.ftruncate(self._fd, self._size)  # no later record may follow a partial one
            raise OSError(errno.EIO, f"short write to {self._path}")
        self._size += written
        self._records += 1
        if self._sync:
            try:
                os.fdatasync(self._fd)
            except OSError:
                # The kernel may have dropped the unsynced pages: refuse further writes.
                os.close(self._fd)
                self._fd = -1
                raise

    def _put(self, key: Any, value: Any) -> Any:
        """Validate, append and apply one insert; return the value a read would give."""
        if self._plain:
            held = fresh = self._validate(value)
        else:
            held = self._dump(value, mode="json", warnings=False)
            fresh = self._validate(held)
        self._append(frame(self._pack((_INSERT, key, held))))
        self._entries[key] = held
        if self._size >= MIN_COMPACT_BYTES and self._records >= COMPACT_RATIO * len(self._entries):
            self.compact()
        return fresh

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            self._put(self._validate_key(key), value)

    def get(self, key: K, default: V | None = None) -> V | None:
        held = self._entries.get(self._key(key), _MISSING)
        if held is _MISSING:
            return default
        return held if self._plain else self._validate(held)  # type: ignore[no-any-return]

    def modify(self, key: K, fn: Callable[[V], V]) -> V:
        """Apply ``fn`` to a private copy of the present ``key``'s value and store the result."""
        with self._lock:
            key = self._key(key)
            held = self._entries[key]
            working = held if self._plain else self._validate(held)
            return self._put(key, fn(working))  # type: ignore[no-any-return]

    def __delitem__(self, key: K) -> None:
        with self._lock:
            key = self._key(key)
            if key not in self._entries:
                raise KeyError(key)
            self._append(frame(self._pack((_REMOVE, key))))
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def flush(self) -> None:
        """Make every acknowledged write survive power loss (each is already in the OS)."""
        os.fsync(self._fd)

    def compact(self) -> None:
        """Rewrite the log to one insert per live entry, atomically."""
        with self._lock:
            tmp = Path(f"{self._path}.compact.tmp")
            with tmp.open("wb") as out:
                out.write(MAGIC)
                for key, held in self._entries.items():
                    out.write(frame(self._pack((_INSERT, key, held))))
                out.flush()
                os.fsync(out.fileno())  # the new log is whole on disk before it replaces the old
            os.replace(tmp, self._path)
            _fsync_directory(self._path.parent)  # the rename itself survives power loss
            fd = os.open(self._path, os.O_RDWR | os.O_APPEND)
            os.close(self._fd)
            self._fd = fd
            self._size = os.fstat(fd).st_size
            self._records = len(self._entries)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
