"""The write protocol of ``_engine``, written against ``Engine`` alone, for the contract suite.

Every helper works on either engine: the file engine (positions are byte offsets) and the
PostgreSQL engine (record numbers). Positions are only ever chained with
``Engine.position_after``. The records are plain bodies (``tests.engine_child.body``).

Run as ``python -m tests.contract_child KIND WHERE increment N`` (``PYTHONPATH`` must hold
the project root): open the engine ``KIND`` (``file`` or ``postgres``) on ``WHERE`` (a
log path, or ``DSN|NAME``) and N times, under the writer lock, append the integer after
the last record's.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.engine_child import HEADER, body, name_of
from typedstore import _format
from typedstore._engine import Engine, Frames, StaleLogError, walk_frames
from typedstore._file_engine import FileEngine
from typedstore._pg_engine import PostgresEngine


def open_engine(kind: str, where: str, *, readonly: bool = False) -> Engine:
    """Open engine ``kind`` on ``where`` shared (or read-only); nothing is read yet."""
    if kind == "file":
        return FileEngine.open(Path(where), "readonly" if readonly else "shared")
    dsn, name = where.split("|")
    return PostgresEngine(dsn, name=name, readonly=readonly)


def walk(engine: Engine, buf: bytes) -> Frames:
    """Return the frames of ``buf``, the whole log ``engine.read_log()`` returned.

    The one step the interface does not cover: where read_log's frames start. A file's
    start at the byte after its header; PostgreSQL's after its image's header row.
    """
    if isinstance(engine, PostgresEngine):
        return engine.walk_log(buf)[1]
    _, header_end = _format.decode_header(buf)
    return walk_frames(buf[header_end:], header_end)


def open_log(engine: Engine) -> tuple[list[str], int]:
    """Read the log (creating it if there is none); return its records and its end."""
    with engine.writing():
        buf = engine.read_log()
        if not buf:
            return [], engine.create([HEADER])
    return replay(engine, buf)


def replay(engine: Engine, buf: bytes) -> tuple[list[str], int]:
    """Return the records of the whole log ``buf`` and the position after them."""
    seen: list[str] = []
    return seen, apply(seen, walk(engine, buf))


def apply(seen: list[str], frames: Frames) -> int:
    """Add the records of ``frames`` to ``seen``; return the position after them."""
    if frames.stop == "invalid":
        raise AssertionError(f"damage at {frames.end}")
    seen.extend(name_of(item) for _, item in frames.bodies)
    return frames.end


def catch_up(engine: Engine, seen: list[str], known: int) -> int:
    """Apply what was appended since ``known`` (following a compaction); return the end."""
    if engine.is_replaced():
        known = apply(seen, engine.read_frames(known))  # the old log, as far as it goes
        moved = engine.follow(known)
        if moved is None:
            fresh, end = replay(engine, engine.read_log())
            seen[:] = fresh
            return end
        known = moved
    return apply(seen, engine.read_frames(known))


def append(engine: Engine, seen: list[str], known: int, names: list[str]) -> int:
    """Append records ``names`` in one batch with the protocol; return the new end."""
    with engine.writing():
        for _ in range(3):  # under the lock, one catch-up is all a stale end needs
            known = catch_up(engine, seen, known)
            try:
                end = engine.append(framed(engine, names, known), known)
            except StaleLogError:
                continue
            seen.extend(names)
            return end
    raise AssertionError(f"append at {known} stays stale")


def framed(engine: Engine, names: list[str], position: int) -> list[bytes]:
    """Return the frames of records ``names`` written from ``position`` on."""
    frames = []
    for name in names:
        frame = _format.encode_frame(body(name), position)
        frames.append(frame)
        position = engine.position_after(position, frame)
    return frames


def compact(engine: Engine, seen: list[str], known: int) -> int:
    """Replace the log by a new log's image of ``seen``; return where appends go next."""
    with engine.writing():
        known = catch_up(engine, seen, known)
        first = engine.position_after(0, HEADER)  # an image is framed as a new log
        return engine.replace([HEADER, *framed(engine, seen, first)], known)


def increment(engine: Engine, times: int) -> None:
    """``times`` times, under the writer lock, append the last record's integer plus one."""
    seen, known = open_log(engine)
    for _ in range(times):
        with engine.writing():
            known = catch_up(engine, seen, known)
            value = str(int(seen[-1]) + 1 if seen else 1)
            known = engine.append(framed(engine, [value], known), known)
            seen.append(value)


def main(argv: list[str]) -> None:
    kind, where, command = argv[:3]
    engine = open_engine(kind, where)
    if command == "increment":
        increment(engine, int(argv[3]))
    else:
        raise SystemExit(f"unknown command {command}")
    engine.close()


if __name__ == "__main__":
    main(sys.argv[1:])
