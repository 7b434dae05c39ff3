"""Processes for the shared-mode engine tests, and the write protocol they follow.

Run as ``python -m tests.engine_child COMMAND LOG [ARGS]`` (``PYTHONPATH`` must hold the
project root):

- ``hold MODE``: open the log's engine in ``MODE``, print ``opened`` (or ``locked`` and
  the error) and wait until stdin closes; ``hold-writer`` also takes the writer lock.
- ``count COUNTER N``: N times, under the writer lock, read the integer in the plain file
  ``COUNTER``, add one and write it back.
- ``append NAME N``: append N records ``NAME:i`` with :func:`append_body`, printing each
  one's name once it is appended (acknowledged).
- ``compact N``: N times, replace the log by a header and every record seen so far.
- ``tear``: append one record, then half of another, and SIGKILL itself, holding the
  writer lock.

The protocol (``_engine``'s module docstring) is :func:`open_shared`, :func:`catch_up`
and :func:`append_body`; the records are plain bodies, not a store's.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from typedstore import StoreLockedError, _format
from typedstore._engine import Frames, Mode, StaleLogError, walk_frames
from typedstore._file_engine import FileEngine

HEADER = _format.encode_header(b"\x80")
"""A log header with empty metadata: the engine does not read it."""


def body(name: str) -> bytes:
    """Return the record body the tests append for ``name`` (an insert's kind byte first)."""
    return b"\x01" + name.encode()


def name_of(frame_body: memoryview) -> str:
    """Return the name :func:`body` made ``frame_body`` from."""
    return bytes(frame_body[1:]).decode()


def open_shared(path: Path) -> tuple[FileEngine, list[str], int]:
    """Open ``path`` shared, creating it if needed; return the engine, its records and end."""
    engine = FileEngine.open(path, "shared")
    with engine.writing():
        buf = engine.read_log()
        if not buf:
            return engine, [], engine.create([HEADER])
    frames = walk_frames(buf[len(HEADER) :], len(HEADER))
    return engine, [name_of(item) for _, item in frames.bodies], frames.end


def catch_up(engine: FileEngine, seen: list[str], known: int) -> int:
    """Apply the records appended since ``known`` to ``seen`` (moving to a replaced log
    first); return the new known position."""
    if engine.is_replaced():
        known = _apply(seen, engine.read_frames(known))  # the old log, to its end
        moved = engine.follow(known)
        if moved is None:  # more than one compaction behind: replay the new log whole
            buf = engine.read_log()
            seen.clear()
            frames = walk_frames(buf[len(HEADER) :], len(HEADER))
            return _apply(seen, frames)
        known = moved
    return _apply(seen, engine.read_frames(known))


def _apply(seen: list[str], frames: Frames) -> int:
    if frames.stop == "invalid":
        raise AssertionError(f"damage at {frames.end}")
    seen.extend(name_of(item) for _, item in frames.bodies)
    return frames.end


def append_body(engine: FileEngine, seen: list[str], known: int, name: str) -> int:
    """Append record ``name`` with the shared-mode protocol; return the new known position."""
    with engine.writing():
        for _ in range(3):  # under the lock, one catch-up is all a stale end needs
            known = catch_up(engine, seen, known)
            try:
                end = engine.append([_format.encode_frame(body(name), known)], known)
            except StaleLogError:
                continue
            seen.append(name)
            return end
    raise AssertionError(f"append at {known} stays stale")


def compact(engine: FileEngine, seen: list[str], known: int) -> int:
    """Replace the log by a header and every record in ``seen``; return the new end."""
    with engine.writing():
        known = catch_up(engine, seen, known)
        image, position = [HEADER], len(HEADER)
        for name in seen:
            frame = _format.encode_frame(body(name), position)
            image.append(frame)
            position += len(frame)
        return engine.replace(image, known)


MODES: dict[str, Mode] = {"exclusive": "exclusive", "shared": "shared", "readonly": "readonly"}


def _hold(path: Path, mode: str) -> None:
    try:
        engine = FileEngine.open(path, MODES.get(mode, "shared"))
    except StoreLockedError as exc:
        print("locked", exc, flush=True)
        return
    if mode == "hold-writer":
        with engine.writing():
            print("opened", flush=True)
            sys.stdin.read()
    else:
        print("opened", flush=True)
        sys.stdin.read()
    engine.close()


def _count(path: Path, counter: Path, times: int) -> None:
    engine, _, _ = open_shared(path)
    for _ in range(times):
        with engine.writing():
            value = int(counter.read_text() or "0")
            counter.write_text(str(value + 1))
    engine.close()


def _append(path: Path, name: str, times: int) -> None:
    engine, seen, known = open_shared(path)
    for i in range(times):
        known = append_body(engine, seen, known, f"{name}:{i}")
        print(f"{name}:{i}", flush=True)  # acknowledged
    engine.close()


def _compact(path: Path, times: int) -> None:
    engine, seen, known = open_shared(path)
    for _ in range(times):
        known = compact(engine, seen, known)
        time.sleep(0.005)
    engine.close()


def _tear(path: Path) -> None:
    engine, seen, known = open_shared(path)
    known = append_body(engine, seen, known, "whole")
    with engine.writing():
        assert engine.file is not None
        frame = _format.encode_frame(body("torn" * 10), known)
        engine.file.append(frame[: len(frame) // 2])
        print("torn", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    command, path = argv[0], Path(argv[1])
    if command in ("hold", "hold-writer"):
        _hold(path, argv[2] if command == "hold" else command)
    elif command == "count":
        _count(path, Path(argv[2]), int(argv[3]))
    elif command == "append":
        _append(path, argv[2], int(argv[3]))
    elif command == "compact":
        _compact(path, int(argv[2]))
    elif command == "tear":
        _tear(path)
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
