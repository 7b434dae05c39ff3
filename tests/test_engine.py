"""The engine seam (``_engine``) and the file engine, in one process.

What the layers above rely on: catch-up reading stops at the last complete frame, appends
compare the end the caller saw, a replaced log is followed from the right position, and
shared mode refuses a network file system. Several processes: ``test_shared_locks.py``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine_child import HEADER, append_body, body, catch_up, compact, name_of, open_shared
from typedstore import StoreLockedError, _format, _fs
from typedstore._engine import Engine, StaleLogError, walk_frames
from typedstore._file_engine import FileEngine


def framed(names: list[str], position: int = len(HEADER)) -> bytes:
    """Return the frames of records ``names`` written from ``position`` on."""
    out = b""
    for name in names:
        out += _format.encode_frame(body(name), position + len(out))
    return out


@pytest.fixture
def shared(log_path: Path) -> Iterator[tuple[FileEngine, list[str], int]]:
    """A shared engine on a new log, with what it has seen and its known end."""
    engine, seen, known = open_shared(log_path)
    yield engine, seen, known
    engine.close()


def as_engine(engine: FileEngine) -> Engine:
    """Return ``engine`` typed as the seam's interface: mypy checks that it conforms."""
    return engine


class TestEngineInterface:
    """The file engine serves the seam's interface, as a later PostgreSQL engine will."""

    def test_a_log_created_and_appended_through_the_interface_reads_back(
        self, log_path: Path
    ) -> None:
        """Create, append and read back through ``Engine`` alone: positions chain."""
        engine = as_engine(FileEngine.open(log_path, "shared"))
        with engine.writing():
            assert engine.read_log() == b""
            start = engine.create([HEADER])
            first = _format.encode_frame(body("a"), start)
            second_at = engine.position_after(start, first)
            second = _format.encode_frame(body("b"), second_at)
            end = engine.append([first, second], start)
        frames = engine.read_frames(start)
        assert [(position, name_of(item)) for position, item in frames.bodies] == [
            (start, "a"),
            (second_at, "b"),
        ]
        assert frames.end == end == engine.end()
        engine.close()


class TestWalkFrames:
    """Catch-up reading yields the complete frames and stops where they end."""

    def test_frames_read_from_a_later_position_come_with_their_positions(self) -> None:
        """Bytes read from a frame boundary yield each frame's body at its log position."""
        log = HEADER + framed(["a", "b", "c"])
        start = len(HEADER) + len(framed(["a"]))
        frames = walk_frames(log[start:], start)
        assert [(position, name_of(item)) for position, item in frames.bodies] == [
            (start, "b"),
            (start + len(framed(["b"], start)), "c"),
        ]
        assert (frames.end, frames.stop) == (len(log), "end")

    def test_a_frame_cut_anywhere_is_incomplete_not_damage(self) -> None:
        """A final frame cut at any byte reads as not yet written, at the frame's start."""
        log = HEADER + framed(["a", "bbbbbbbb"])
        last = len(HEADER) + len(framed(["a"]))
        for cut in range(last + 1, len(log)):
            frames = walk_frames(log[len(HEADER) : cut], len(HEADER))
            assert ([name_of(item) for _, item in frames.bodies], frames.end, frames.stop) == (
                ["a"],
                last,
                "incomplete",
            ), cut

    def test_a_damaged_complete_frame_is_invalid(self) -> None:
        """A complete final frame with a flipped body byte reads as invalid, not incomplete."""
        log = bytearray(HEADER + framed(["a", "b"]))
        log[-1] ^= 0x01
        frames = walk_frames(bytes(log[len(HEADER) :]), len(HEADER))
        assert (len(frames.bodies), frames.stop) == (1, "invalid")

    def test_bytes_read_from_the_wrong_position_yield_no_frame(self) -> None:
        """Frames walked with a wrong start position fail their head checksum."""
        frames = walk_frames(framed(["a"]), len(HEADER) + 1)
        assert (frames.bodies, frames.stop) == ([], "invalid")


class TestCompareAndAppend:
    """An append lands only at the end its caller saw."""

    def test_append_at_an_end_another_handle_moved_raises_and_writes_nothing(
        self, log_path: Path, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """Appending at an end another handle has appended past raises StaleLogError."""
        engine, _, known = shared
        other, other_seen, other_known = open_shared(log_path)
        append_body(other, other_seen, other_known, "first")
        before = log_path.read_bytes()
        with engine.writing(), pytest.raises(StaleLogError, match="the log ends at"):
            engine.append([_format.encode_frame(body("second"), known)], known)
        assert log_path.read_bytes() == before
        other.close()

    def test_append_past_the_end_raises(self, shared: tuple[FileEngine, list[str], int]) -> None:
        """Appending at a position beyond the log's end raises StaleLogError."""
        engine, _, known = shared
        with engine.writing(), pytest.raises(StaleLogError, match="the log ends at"):
            engine.append([_format.encode_frame(body("x"), known + 20)], known + 20)

    def test_stale_append_lands_once_caught_up(
        self, log_path: Path, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """After another handle's append, catching up lets this handle's append land."""
        engine, seen, known = shared
        other, other_seen, other_known = open_shared(log_path)
        other_known = append_body(other, other_seen, other_known, "first")
        append_body(engine, seen, known, "second")
        assert catch_up(other, other_seen, other_known) == log_path.stat().st_size
        assert (seen, other_seen) == (["first", "second"], ["first", "second"])
        other.close()

    def test_shared_append_outside_the_writer_lock_is_refused(
        self, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """A shared engine refuses to append without holding the writer lock."""
        engine, _, known = shared
        with pytest.raises(RuntimeError, match="under the writer lock"):
            engine.append([_format.encode_frame(body("x"), known)], known)

    def test_writer_lock_is_not_reentrant(self, shared: tuple[FileEngine, list[str], int]) -> None:
        """Taking the writer lock again inside it raises RuntimeError."""
        engine, _, _ = shared
        with engine.writing(), pytest.raises(RuntimeError, match="held already"), engine.writing():
            pass

    def test_second_create_of_a_shared_log_is_stale(
        self, log_path: Path, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """Creating a shared log another process created meanwhile raises StaleLogError."""
        late = FileEngine.open(log_path, "shared")
        with late.writing(), pytest.raises(StaleLogError, match="created the log first"):
            late.create([HEADER])
        late.close()


class TestFollowing:
    """Readers follow a growing log, and every process follows a compaction."""

    def test_readonly_engine_sees_appends_made_after_it_opened(
        self, log_path: Path, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """A read-only engine's end grows with the log and it reads only the new frames."""
        engine, seen, known = shared
        reader = FileEngine.open(log_path, "readonly")
        reader_known = len(reader.read_log())
        append_body(engine, seen, known, "new")
        assert reader.end() > reader_known
        assert [name_of(item) for _, item in reader.read_frames(reader_known).bodies] == ["new"]
        reader.close()

    def test_compaction_is_followed_from_where_the_old_log_ended(
        self, log_path: Path, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """After another process compacts, a process moves to the new log at its image's end."""
        engine, seen, known = shared
        other, other_seen, other_known = open_shared(log_path)
        known = append_body(engine, seen, known, "a")
        other_known = compact(other, other_seen, other_known)
        append_body(other, other_seen, other_known, "b")
        assert engine.is_replaced()
        assert catch_up(engine, seen, known) == log_path.stat().st_size
        assert seen == ["a", "b"]
        other.close()

    def test_follow_gives_the_position_matching_the_old_end(
        self, log_path: Path, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """follow() returns the end of the compacted image when one compaction happened."""
        engine, seen, known = shared
        known = append_body(engine, seen, known, "a")
        other, other_seen, other_known = open_shared(log_path)
        image_end = compact(other, other_seen, other_known)
        assert engine.follow(known) == image_end
        other.close()

    def test_follow_after_two_compactions_asks_for_a_whole_replay(
        self, log_path: Path, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """follow() returns None when the log was replaced twice since this process read it."""
        engine, seen, known = shared
        known = append_body(engine, seen, known, "a")
        other, other_seen, other_known = open_shared(log_path)
        other_known = compact(other, other_seen, other_known)
        compact(other, other_seen, other_known)
        assert engine.follow(known) is None
        other.close()

    def test_readonly_engine_follows_a_compaction(
        self, log_path: Path, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """A read-only engine moves to the compacted log like a writer does."""
        engine, seen, known = shared
        known = append_body(engine, seen, known, "a")
        reader = FileEngine.open(log_path, "readonly")
        reader_known = len(reader.read_log())
        image_end = compact(engine, seen, known)
        assert reader.is_replaced()
        assert reader.follow(reader_known) == image_end
        reader.close()


class TestMoveRecord:
    """A shared compaction leaves the move record docs/FORMAT.md describes."""

    def test_move_record_names_both_logs_the_position_and_the_image_end(
        self, log_path: Path, shared: tuple[FileEngine, list[str], int]
    ) -> None:
        """The writer lock file starts with the old and new logs' ids, seen and end."""
        engine, seen, known = shared
        known = append_body(engine, seen, known, "a")
        old = log_path.stat()
        image_end = compact(engine, seen, known)
        new = log_path.stat()
        record = _fs.writer_lock_path(log_path).read_bytes()
        fields = struct.unpack_from("<QQQQQQI", record)
        assert fields[:6] == (old.st_dev, old.st_ino, known, new.st_dev, new.st_ino, image_end)
        assert fields[6] == zlib.crc32(record[:48])


class TestNetworkFileSystems:
    """Shared mode refuses a log on a network file system the platform names."""

    @staticmethod
    def mountinfo(path: Path, kind: str) -> str:
        """Return a mountinfo text mounting ``path``'s folder with file system ``kind``."""
        device = path.parent.stat().st_dev
        number = f"{os.major(device)}:{os.minor(device)}"
        return (
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
            f"40 27 {number} / {path.parent} rw,relatime shared:1 - {kind} srv:/export rw\n"
        )

    def test_nfs_mount_is_recognised(self, log_path: Path) -> None:
        """A folder mounted over NFS is named as such."""
        text = self.mountinfo(log_path, "nfs4")
        assert _fs.network_filesystem(log_path, text) == "nfs4"

    def test_local_mount_is_not_network(self, log_path: Path) -> None:
        """A folder on a local file system is not flagged."""
        text = self.mountinfo(log_path, "ext4")
        assert _fs.network_filesystem(log_path, text) is None

    def test_shared_open_on_nfs_is_refused(
        self, log_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A shared open of a log on NFS raises StoreLockedError naming the file system."""
        fake = tmp_path / "mountinfo"
        fake.write_text(self.mountinfo(log_path, "nfs4"))
        monkeypatch.setattr(_fs, "MOUNTINFO", fake)
        with pytest.raises(StoreLockedError, match=r"network file system \(nfs4\)"):
            FileEngine.open(log_path, "shared")
        assert not _fs.lock_path(log_path).exists()
