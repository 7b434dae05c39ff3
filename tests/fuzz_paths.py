"""Child process of the hostile-path fuzz test: every reader on one kind of file system node.

``python -m tests.fuzz_paths KIND FOLDER`` makes a node of ``KIND`` at ``FOLDER/store.log``
afresh before each reader, runs the reader under a time limit (the process's address
space is limited too, so reading an endless device ends in ``MemoryError``), and prints
one JSON line per reader: the outcome (``ok``, an exception's class name, or ``hang``)
and whether the node is still what it was.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from typedstore import StoreError, TypedStore
from typedstore._cli import run

TIME_LIMIT = 3
"""Seconds one reader may take."""
ADDRESS_SPACE = 384 * 1024**2
"""Bytes of address space the child may use: an endless read fails instead of swapping."""

KINDS = (
    "fifo",
    "null_device",
    "zero_device",
    "directory",
    "socket",
    "symlink_loop",
    "dangling_symlink",
)


def make(kind: str, path: Path) -> object:
    """Create a node of ``kind`` at ``path``; return what identifies it (see :func:`identity`)."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind in ("null_device", "zero_device"):  # /dev/null's and /dev/zero's numbers
        minor = 3 if kind == "null_device" else 5
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    elif kind == "dangling_symlink":
        path.symlink_to("elsewhere.log")
    else:
        path.symlink_to(path.name)
    return identity(path)


def identity(path: Path) -> object:
    """Return the node's type and device numbers, or None if nothing is there."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    return [stat.S_IFMT(info.st_mode), info.st_rdev]


def clear(path: Path) -> None:
    """Remove whatever is at ``path`` and the store's files beside it."""
    names = [path.name, "elsewhere.log"]
    for name in [*names, *(n + ".lock" for n in names), *(n + ".compact.tmp" for n in names)]:
        target = path.with_name(name)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.is_symlink() or target.exists():
            target.unlink()


def _cli(*argv: str) -> Callable[[Path], object]:
    def reader(path: Path) -> object:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return run([*argv, str(path)])

    return reader


READERS: dict[str, Callable[[Path], object]] = {
    "open readonly": lambda path: TypedStore.open(path, str, int, readonly=True).close(),
    "open writable": lambda path: TypedStore.open(path, str, int).close(),
    "info": _cli("info"),
    "verify": _cli("verify"),
    "dump": _cli("dump"),
    "compact": _cli("compact"),
    "repair": _cli("repair", "--mode", "skip"),
}


class Hang(BaseException):
    """The reader ran past ``TIME_LIMIT``."""


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang


def outcome(reader: Callable[[Path], object], path: Path) -> str:
    """Return ``ok``, ``exit N`` for a command, ``hang``, or the class of what was raised."""
    signal.alarm(TIME_LIMIT)
    try:
        try:
            result = reader(path)
        finally:
            signal.alarm(0)
    except Hang:
        return "hang"
    except (StoreError, OSError) as exc:
        return f"allowed {type(exc).__name__}"
    except BaseException as exc:
        return type(exc).__name__
    return "ok" if result is None else f"exit {result}"


def main(kind: str, folder: Path) -> None:
    """Print one JSON line per reader run on a fresh node of ``kind``."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    signal.signal(signal.SIGALRM, _on_alarm)
    path = folder / "store.log"
    for name, reader in READERS.items():
        clear(path)
        before = make(kind, path)
        result = outcome(reader, path)
        print(json.dumps({"reader": name, "outcome": result, "kept": identity(path) == before}))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
