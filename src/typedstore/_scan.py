"""Walking a log's frames and judging the damage found, for opening and ``verify`` alike.

The rules are in ``docs/FORMAT.md`` ("Replay") and README ("Durability and recovery"):
damage that a valid frame follows is damage before the tail; damage that none follows is a
torn tail only when it is what a crash can leave, and damage otherwise. :func:`verdict` is
the one place where a scan's findings become "clean", "torn tail" or "damaged".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import _format
from ._errors import CorruptLogError, NotAStoreError
from ._types import RecoveryMode

DAMAGED_RECORD = "checksum mismatch or cut-short record"
TORN_TAIL = "incomplete final record"
RECOVERY_HINT = (
    "Open with StoreConfig(recovery='truncate') or 'skip' to recover "
    "(the original is copied aside first)"
)


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes ``[start, end)`` holding no valid frame, and why they are not a torn tail."""

    start: int
    end: int
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What opening a log finds: ``damaged`` is what a strict open refuses."""

    status: Literal["clean", "torn_tail", "damaged"]
    offset: int | None
    """Where the first damage, or the torn tail, starts; None when clean."""
    reason: str | None


def verdict(
    damage: Sequence[Damage], torn_tail: int | None, undecodable: tuple[int, str] | None = None
) -> Verdict:
    """Return the verdict on a log from its damage, its torn tail and its first bad record.

    ``undecodable`` is the first checksum-valid record that cannot be read, if any: it is
    damage too, reported if it comes before the first damaged range.
    """
    problems = [(item.start, item.reason) for item in damage[:1]]
    if undecodable is not None:
        problems.append(undecodable)
    if problems:
        offset, reason = min(problems)
        return Verdict("damaged", offset, reason)
    if torn_tail is not None:
        return Verdict("torn_tail", torn_tail, TORN_TAIL)
    return Verdict("clean", None, None)


def tail_damage(buf: bytes, offset: int, bound: int) -> str | None:
    """Return why the bytes from ``offset`` on, with no valid frame among them, are damage;
    None when they are a torn tail.

    A crash tears at most the writes in flight: one record, however long (a frame head
    whose record reaches the end of the file, or a head cut short), or what one buffered
    write holds, ``bound`` bytes (``StoreConfig.buf_capacity``). A typedstore header in
    them is never torn: it is another log appended to this one.
    """
    size = len(buf)
    if size - offset < _format.FRAME_OVERHEAD or _format.read_head(buf, offset) >= size:
        return None
    if buf.find(_format.MAGIC, offset) != -1:
        return "a typedstore header inside the log, as when two logs are joined"
    if size - offset > bound:
        return (
            f"{size - offset:,} unreadable bytes at the end of the log, more than "
            f"a crash leaves ({bound:,})"
        )
    return None


def open_header(path: Path, buf: bytes) -> tuple[bytes, int]:
    """Return the header's metadata and end offset; raise the store's errors if unusable."""
    try:
        return _format.decode_header(buf)
    except _format.ForeignFileError as exc:
        raise NotAStoreError(path, str(exc)) from exc
    except _format.FormatError as exc:
        raise CorruptLogError(
            path, 0, str(exc), hint="No recovery mode reads a log whose header is damaged"
        ) from exc


class FrameScanner:
    """Walk the frames after the header, reporting damage and the torn tail apart.

    Iterating yields ``(offset, end)`` for each valid frame. Damage raises
    ``CorruptLogError`` in ``strict`` mode, ends the walk in ``truncate`` mode and is
    stepped over in ``skip`` mode; ``damage`` lists it. A torn tail ends the walk in every
    mode; ``torn_tail`` is its offset. ``tail_bound`` is the most a crash leaves beyond
    one record (see :func:`tail_damage`).
    """

    def __init__(
        self, path: Path, buf: bytes, start: int, mode: RecoveryMode, tail_bound: int
    ) -> None:
        self.path = path
        self.buf = buf
        self.start = start
        self.mode = mode
        self.tail_bound = tail_bound
        self.damage: list[Damage] = []
        self.torn_tail: int | None = None

    def __iter__(self) -> Iterator[tuple[int, int]]:
        buf, offset, read_frame = self.buf, self.start, _format.read_frame
        view, size = memoryview(buf), len(self.buf)
        while offset < size:
            end = read_frame(buf, offset, view)
            if end == -1:
                offset = self.step_over_damage(offset)
            else:
                yield offset, end
                offset = end

    def verdict(self) -> Verdict:
        """Return the verdict on what the walk found so far."""
        return verdict(self.damage, self.torn_tail)

    def step_over_damage(self, offset: int) -> int:
        """Record the damage at ``offset`` (where no valid frame starts); return where the
        walk goes on: past the log's end for a torn tail. Raises as iterating does."""
        damage = self._classify(offset)
        if damage is None:
            self.torn_tail = offset
            return len(self.buf)
        if self.mode == "strict":
            raise CorruptLogError(self.path, offset, damage.reason, hint=RECOVERY_HINT)
        if self.mode == "truncate":
            damage = Damage(offset, len(self.buf), damage.reason)
        self.damage.append(damage)
        return damage.end

    def _classify(self, offset: int) -> Damage | None:
        """Return the damage starting at ``offset``, or None for a torn tail."""
        if _format.read_head(self.buf, offset) >= len(self.buf):
            # An intact head whose record reaches the end of the file: the last write,
            # cut short by a crash. Nothing can follow it; no scan is needed to know.
            return None
        following = _format.find_next_frame(self.buf, offset)
        if following != -1:
            return Damage(offset, following, DAMAGED_RECORD)
        reason = tail_damage(self.buf, offset, self.tail_bound)
        return None if reason is None else Damage(offset, len(self.buf), reason)
