"""The storage engine seam: the one narrow interface between a store and where its log lives.

Everything above this layer (replay, the codec, transactions, databases) works on
*frames* (docs/FORMAT.md, "Frames") at *positions*. A position is an opaque integer
that only grows while a log lives: the file engine (``_file_engine``) uses byte
offsets, and a PostgreSQL engine may use record numbers. A frame's head checksum
covers its position, so a frame is framed for the position it is appended at: by
``_format.encode_frame(body, position)``, the next position being
:meth:`Engine.position_after`.

The protocol of one operation in shared mode (README, "Several processes")::

    with engine.writing():                      # the writer lock, blocking
        frames = engine.read_frames(known)      # catch up: only what was appended since
        ...apply frames; check; build the record...
        known = engine.append([frame], at=frames.end)

:meth:`Engine.append` is a compare-and-append: it raises :class:`StaleLogError` when the
log's end is not ``at`` (another process appended, or the log was replaced), and the
caller catches up and retries. A reader needs no lock: :meth:`Engine.end` says cheaply
whether the log grew, :meth:`Engine.read_frames` reads only what is new, and a frame
still being written reads as "not yet written", never as damage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from . import _format

Mode = Literal["exclusive", "shared", "readonly"]
"""How a store opens its log: the only writer, one of several, or a reader."""

Stop = Literal["end", "incomplete", "invalid"]
"""Why a walk of frames stopped: the bytes ended, a frame is not complete yet, or a frame
is complete but not valid."""


class StaleLogError(Exception):
    """The log's end is not where the caller saw it, or the log was replaced.

    Private to the layers above the engine: the caller catches up (or moves to the new
    log, see :meth:`Engine.follow`) and retries. It never reaches a user.
    """


@dataclass(frozen=True, slots=True)
class Frames:
    """The complete frames read from a position, and where the next one goes."""

    bodies: list[tuple[int, memoryview]]
    """Each valid frame's position and body, in log order."""
    end: int
    """The position after the last valid frame: what the reader has caught up to."""
    stop: Stop
    """Why the walk stopped at ``end``. ``"incomplete"`` is a frame being written, or one
    a killed writer left (the next writer cuts it): never damage. ``"invalid"`` is damage
    at ``end`` when a writer reads it (``Engine.read_frames`` says when else)."""


def walk_frames(buf: bytes, start: int) -> Frames:
    """Return the complete frames of ``buf``, the log's bytes from position ``start`` on.

    The catch-up reading of the file engine (its positions are byte offsets): it stops at
    the first frame that is not valid, whether ``buf`` ends inside it (``"incomplete"``:
    not yet written, in shared mode) or it is complete but wrong (``"invalid"``).
    """
    view = memoryview(buf)
    bodies: list[tuple[int, memoryview]] = []
    size, index = len(buf), 0
    while index < size:
        end = _format.read_frame(buf, index, view, start)
        if end == -1:
            head = buf[index : index + _format.FRAME_OVERHEAD]
            incomplete = is_incomplete(head, start + index, size - index)
            return Frames(bodies, start + index, "incomplete" if incomplete else "invalid")
        bodies.append((start + index, view[index + _format.FRAME_OVERHEAD : end]))
        index = end
    return Frames(bodies, start + index, "end")


def is_incomplete(head: bytes, position: int, available: int) -> bool:
    """Whether the ``available`` bytes at byte ``position``, which start with ``head``, are
    the beginning of a frame.

    That is a head cut short, or an intact head whose record reaches past them: what a
    write in progress shows a reader, and what a writer killed mid-append leaves.
    ``head`` is their first ``FRAME_OVERHEAD`` bytes (all of them, if fewer).
    """
    if available < _format.FRAME_OVERHEAD:
        return True
    return _format.read_head(head, 0, position) > available


class Engine(Protocol):
    """Where a log lives: one file (``_file_engine.FileEngine``) or, later, PostgreSQL.

    An engine is opened in one :data:`Mode` and used by one thread at a time (the store's
    lock sees to that). Positions are opaque integers (see the module docstring).
    Methods that write need the writer lock in shared mode (:meth:`writing`); an
    exclusive engine is the only writer, and a read-only one refuses to write.
    """

    @property
    def mode(self) -> Mode:
        """How the log was opened."""
        ...

    def read_log(self) -> bytes:
        """Return the whole log, header included, for a replay at open (``b""``: none yet).

        In shared mode call it under the writer lock (a leftover compaction temp file
        is removed first, which would otherwise race with a compaction in progress);
        a partial final frame is left for the next writer to cut.
        """
        ...

    def create(self, image: Iterable[bytes]) -> int:
        """Write a new log holding ``image`` (a header, then frames); return its end.

        Atomic: the log is the old one or the new one, never a mix. In shared mode it
        raises :class:`StaleLogError` if another process created the log first.
        """
        ...

    def end(self) -> int:
        """Return the position after the log's last byte now: one cheap call."""
        ...

    def read_frames(self, start: int) -> Frames:
        """Return the frames from position ``start`` (a frame boundary) to the end now.

        Needs no lock, and waits for none unless what it read looks damaged.
        """
        ...

    def position_after(self, position: int, frame: bytes) -> int:
        """Return the position that follows ``frame`` appended at ``position``."""
        ...

    def writing(self) -> AbstractContextManager[None]:
        """Hold the writer lock for one read-check-write; other writers wait meanwhile."""
        ...

    def append(self, frames: Sequence[bytes], at: int) -> int:
        """Append ``frames``, framed from position ``at`` on, if ``at`` is the log's end.

        Return the new end. Raise :class:`StaleLogError`, writing nothing, if the end
        is elsewhere or the log was replaced. A partial frame a killed writer left at
        ``at`` is cut first. On an ``OSError`` nothing of ``frames`` stays in the log.
        """
        ...

    def cut(self, position: int) -> None:
        """Cut the log durably at ``position``: the torn tail replay found at open."""
        ...

    def replace(self, image: Iterable[bytes], seen: int) -> int:
        """Replace the log by ``image``, the state at position ``seen``; return its end.

        Atomic, and under the writer lock in shared mode: :class:`StaleLogError` if the
        log grew past ``seen``. Other processes learn it through :meth:`is_replaced`.
        """
        ...

    def is_replaced(self) -> bool:
        """Whether another process replaced the log (compacted it) since this one read it."""
        ...

    def follow(self, seen: int) -> int | None:
        """Move to the log that replaced this one, read by the caller up to ``seen``.

        Return the position in the new log that holds exactly the old log's state at
        ``seen``, from which to catch up; or None when that is not known (the caller
        fell more than one replacement behind, or raced one): then replay
        :meth:`read_log` whole.
        """
        ...

    def sync(self) -> None:
        """Make every appended frame durable (survive a power loss)."""
        ...

    def close(self) -> None:
        """Release the engine's locks and files; the engine is unusable afterwards."""
        ...
