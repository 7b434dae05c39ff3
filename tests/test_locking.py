"""The writer lock, what a log's path may be, read-only opens beside a writer, and closed stores.

The promises are README's "One writer" and "Readers" paragraphs. One class per promise, in file
order:

- ``TestOneWriter``: a second writer is refused.
- ``TestHardLinksAndSymlinks``: logs reached through links.
- ``TestLockHeld``: the lock lasts through compaction and other handles closing.
- ``TestLockReleased``: close or a failed open releases the lock.
- ``TestReadersBesideAWriter``: readonly opens take no lock.
- ``TestReadonlyWritesNothing``: a readonly store changes no file.
- ``TestPathsThatAreNotRegularFiles``: FIFOs, devices and folders are refused.
- ``TestClosedStores``: closed stores raise StoreClosedError.
- ``TestPathChangedDuringReplay``: the file replayed is the file written, whatever the path
  names by then.
"""

from __future__ import annotations

import os
import re
import resource
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import AfterValidator

from tests.models import User
from typedstore import (
    NotAStoreError,
    StoreClosedError,
    StoreConfig,
    StoreError,
    StoreLockedError,
    StoreReadOnlyError,
    TypedStore,
)

Store = TypedStore[str, User]

ROOT = Path(__file__).parents[1]

CHILD = """
import sys
from tests.models import User
from typedstore import StoreLockedError, TypedStore

try:
    store = TypedStore.open(sys.argv[1], str, User)
except StoreLockedError as exc:
    print("locked", exc)
else:
    store["child"] = User(name="child", age=1)
    store.close()
    print("opened")
"""


def open_in_child(path: Path) -> str:
    """Try a writable open of ``path`` from another process; return what it reports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def open_users(path: Path, *, readonly: bool = False) -> Store:
    return TypedStore.open(path, str, User, readonly=readonly)


def locked_message(path: Path) -> str:
    return re.escape(str(path))


@pytest.fixture
def writer(log_path: Path) -> Iterator[Store]:
    """An open writable store holding two entries and some dead records."""
    with open_users(log_path) as store:
        store["alice"] = User(name="Alice", age=30)
        store["bob"] = User(name="Bob", age=25)
        store.modify("alice", lambda user: user.model_copy(update={"age": 31}))
        store["carol"] = User(name="Carol", age=41)
        del store["carol"]
        yield store


class TestOneWriter:
    """A second writable open of a log, by any path or from any process, raises StoreLockedError."""

    def test_second_writer_in_same_process_is_refused(self, log_path: Path, writer: Store) -> None:
        """A second writable open of the same path in this process raises StoreLockedError."""
        with pytest.raises(StoreLockedError, match=locked_message(log_path)):
            open_users(log_path)

    def test_second_writer_through_other_spelling_of_path_is_refused(
        self, log_path: Path, writer: Store
    ) -> None:
        """The lock holds for the same log reached through another spelling of its path."""
        other = log_path.parent / "." / log_path.name
        with pytest.raises(StoreLockedError, match=locked_message(other)):
            open_users(other)

    def test_refused_writer_leaves_first_store_working(self, log_path: Path, writer: Store) -> None:
        """A refused second open does not disturb the store holding the lock."""
        with pytest.raises(StoreLockedError, match=locked_message(log_path)):
            open_users(log_path)
        writer["dave"] = User(name="Dave", age=5)
        assert list(writer) == ["alice", "bob", "dave"]

    def test_second_writer_in_other_process_is_refused(self, log_path: Path, writer: Store) -> None:
        """A writable open from another process fails at once with StoreLockedError."""
        report = open_in_child(log_path)
        assert report.startswith("locked"), report
        assert str(log_path) in report

    def test_second_writer_through_symlink_is_refused(self, log_path: Path, writer: Store) -> None:
        """A writable open through a symlink to an open log raises StoreLockedError."""
        alias = log_path.with_name("alias.log")
        alias.symlink_to(log_path.name)
        with pytest.raises(StoreLockedError, match="another writer holds this log"):
            open_users(alias).close()

    def test_second_writer_through_hard_link_is_refused(
        self, log_path: Path, writer: Store
    ) -> None:
        """A writable open through a hard link to an open log raises StoreLockedError."""
        alias = log_path.with_name("alias.log")
        os.link(log_path, alias)
        with pytest.raises(StoreLockedError, match="2 hard links"):
            open_users(alias).close()


class TestHardLinksAndSymlinks:
    """A log with two names refuses writers; a symlinked log is written and compacted in place."""

    def test_writable_open_of_hard_linked_log_is_refused_and_changes_nothing(
        self, log_path: Path
    ) -> None:
        """A log with two names refuses a writable open under either name, its bytes unchanged."""
        with open_users(log_path) as store:
            store["alice"] = User(name="Alice", age=30)
        alias = log_path.with_name("alias.log")
        os.link(log_path, alias)
        content = log_path.read_bytes()
        for name in (log_path, alias):
            with pytest.raises(StoreLockedError, match="readonly=True"):
                open_users(name).close()
        assert log_path.read_bytes() == content

    def test_readonly_open_of_hard_linked_log_reads_it(self, log_path: Path) -> None:
        """A read-only open through a hard link reads the log: only writers are refused."""
        with open_users(log_path) as store:
            store["alice"] = User(name="Alice", age=30)
        alias = log_path.with_name("alias.log")
        os.link(log_path, alias)
        with open_users(alias, readonly=True) as reader:
            assert dict(reader) == {"alice": User(name="Alice", age=30)}

    def test_compaction_through_symlink_keeps_writing_the_linked_log(self, log_path: Path) -> None:
        """A store opened through a symlink compacts the linked log and leaves the link in place."""
        with open_users(log_path) as store:
            store["alice"] = User(name="Alice", age=30)
        alias = log_path.with_name("alias.log")
        alias.symlink_to(log_path.name)
        with open_users(alias) as store:
            store.compact()
            store["bob"] = User(name="Bob", age=25)
        assert alias.is_symlink()
        with open_users(log_path) as store:
            assert list(store) == ["alice", "bob"]


def _lock_file(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


class TestLockHeld:
    """The lock lasts while the writer is open, through compaction and other handles closing."""

    def test_lock_survives_compaction_in_same_process(self, log_path: Path, writer: Store) -> None:
        """After the writer compacts (replacing the log's file), a second open is still refused."""
        size = log_path.stat().st_size
        writer.compact()
        assert log_path.stat().st_size < size
        with pytest.raises(StoreLockedError, match=locked_message(log_path)):
            open_users(log_path)

    def test_lock_survives_compaction_for_other_process(
        self, log_path: Path, writer: Store
    ) -> None:
        """After the writer compacts, another process is still refused."""
        writer.compact()
        writer["dave"] = User(name="Dave", age=5)
        report = open_in_child(log_path)
        assert report.startswith("locked"), report

    @pytest.mark.parametrize("which", ["log", "lock"])
    def test_closing_other_handle_keeps_lock_in_same_process(
        self, log_path: Path, writer: Store, which: str
    ) -> None:
        """Opening and closing another handle to the log or its lock file does not drop the lock."""
        target = log_path if which == "log" else _lock_file(log_path)
        assert target.exists()
        with open(target, "rb") as handle:
            handle.read()
        os.close(os.open(target, os.O_RDWR))
        with pytest.raises(StoreLockedError, match=locked_message(log_path)):
            open_users(log_path)

    @pytest.mark.parametrize("which", ["log", "lock"])
    def test_closing_other_handle_keeps_lock_for_other_process(
        self, log_path: Path, writer: Store, which: str
    ) -> None:
        """After another handle to the log or its lock file is closed, other processes are
        refused."""
        target = log_path if which == "log" else _lock_file(log_path)
        with open(target, "rb") as handle:
            handle.read()
        os.close(os.open(target, os.O_RDWR))
        report = open_in_child(log_path)
        assert report.startswith("locked"), report


class TestLockReleased:
    """The lock is released when the writer closes or its open fails."""

    def test_lock_released_on_close_in_same_process(self, log_path: Path, writer: Store) -> None:
        """After close() a new writer in this process opens and sees the data."""
        writer.close()
        with open_users(log_path) as again:
            again["dave"] = User(name="Dave", age=5)
            assert list(again) == ["alice", "bob", "dave"]

    def test_lock_released_on_close_for_other_process(self, log_path: Path, writer: Store) -> None:
        """After close() a writer in another process opens, and its write is visible here."""
        writer.close()
        assert open_in_child(log_path) == "opened"
        with open_users(log_path) as again:
            assert again["child"] == User(name="child", age=1)

    def test_lock_released_when_with_block_ends(self, log_path: Path) -> None:
        """Leaving a with block releases the lock."""
        with open_users(log_path) as store:
            store["a"] = User(name="A", age=1)
        with open_users(log_path) as again:
            assert list(again) == ["a"]

    def test_lock_released_after_failed_open(self, log_path: Path) -> None:
        """An open that fails on a foreign file does not keep the lock."""
        log_path.write_bytes(b"not a store at all\n")
        with pytest.raises(NotAStoreError, match="not a typedstore log"):
            open_users(log_path)
        log_path.unlink()
        with open_users(log_path) as store:
            store["a"] = User(name="A", age=1)
            assert len(store) == 1


class TestReadersBesideAWriter:
    """Readonly opens take no lock and see what the writer flushed."""

    def test_readonly_open_beside_writer(self, log_path: Path, writer: Store) -> None:
        """A readonly open works while a writer holds the lock and sees its flushed writes."""
        writer.flush()
        with open_users(log_path, readonly=True) as reader:
            assert list(reader.items()) == list(writer.items())

    def test_readonly_reopen_sees_later_writes(self, log_path: Path, writer: Store) -> None:
        """A readonly store reopened after more writes sees them."""
        with open_users(log_path, readonly=True) as reader:
            assert "dave" not in reader
        writer["dave"] = User(name="Dave", age=5)
        writer.modify("bob", lambda user: user.model_copy(update={"age": 26}))
        writer.flush()
        with open_users(log_path, readonly=True) as reader:
            assert list(reader.items()) == list(writer.items())
            assert reader["bob"].age == 26

    def test_readonly_open_beside_compacted_writer(self, log_path: Path, writer: Store) -> None:
        """A readonly open after the writer compacted sees the same entries."""
        writer.compact()
        writer["dave"] = User(name="Dave", age=5)
        writer.flush()
        with open_users(log_path, readonly=True) as reader:
            assert list(reader.items()) == list(writer.items())

    def test_many_readonly_opens_at_once(self, log_path: Path, writer: Store) -> None:
        """Several readonly stores can be open together beside the writer."""
        writer.flush()
        readers = [open_users(log_path, readonly=True) for _ in range(3)]
        try:
            assert all(list(reader) == ["alice", "bob"] for reader in readers)
        finally:
            for reader in readers:
                reader.close()

    def test_readonly_open_does_not_block_a_writer(self, log_path: Path, writer: Store) -> None:
        """A readonly store holds no lock: once the writer closes, a new writer opens beside it
        (and the reader follows its writes)."""
        writer.close()
        with open_users(log_path, readonly=True) as reader, open_users(log_path) as again:
            again["dave"] = User(name="Dave", age=5)
            assert "dave" in reader


READONLY_WRITES: dict[str, Callable[[Store], object]] = {
    "insert": lambda store: store.insert("x", User(name="X", age=1)),
    "setitem": lambda store: store.__setitem__("x", User(name="X", age=1)),
    "remove": lambda store: store.remove("alice"),
    "remove-absent": lambda store: store.remove("absent"),
    "delitem": lambda store: store.__delitem__("alice"),
    "pop": lambda store: store.pop("alice"),
    "popitem": lambda store: store.popitem(),
    "modify": lambda store: store.modify("alice", lambda user: user),
    "update": lambda store: store.update({"x": User(name="X", age=1)}),
    "setdefault": lambda store: store.setdefault("x", User(name="X", age=1)),
    "clear": lambda store: store.clear(),
    "transaction": lambda store: store.transaction(),
    "compact": lambda store: store.compact(),
}


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Return every file in ``folder`` with its bytes and modification time."""
    return {
        path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(folder.iterdir())
    }


@pytest.fixture
def closed_log(log_path: Path) -> Path:
    """A log written and closed, with a torn tail, a leftover temp file and no lock file."""
    with open_users(log_path) as store:
        store["alice"] = User(name="Alice", age=30)
        store["bob"] = User(name="Bob", age=25)
    _lock_file(log_path).unlink()
    with open(log_path, "ab") as file:
        file.write(b"\x07\x00\x00")
    log_path.with_name(log_path.name + ".compact.tmp").write_bytes(b"leftover")
    return log_path


class TestReadonlyWritesNothing:
    """A readonly store refuses writes and changes or creates no file."""

    @pytest.mark.parametrize("write", list(READONLY_WRITES.values()), ids=list(READONLY_WRITES))
    def test_readonly_store_refuses_writes(
        self, closed_log: Path, write: Callable[[Store], object]
    ) -> None:
        """Every write on a readonly store raises StoreReadOnlyError."""
        with open_users(closed_log, readonly=True) as reader:
            with pytest.raises(StoreReadOnlyError, match="readonly"):
                write(reader)
            assert list(reader) == ["alice", "bob"]

    def test_readonly_store_changes_no_file(self, closed_log: Path) -> None:
        """Opening, reading, failed writes and closing a readonly store change and create no
        file."""
        before = _snapshot(closed_log.parent)
        with open_users(closed_log, readonly=True) as reader:
            assert reader["alice"] == User(name="Alice", age=30)
            for write in READONLY_WRITES.values():
                with pytest.raises(StoreReadOnlyError, match="readonly"):
                    write(reader)
            reader.flush()
        assert _snapshot(closed_log.parent) == before

    def test_readonly_store_stops_at_torn_tail(self, closed_log: Path) -> None:
        """A readonly open of a log with a torn tail reads up to it and truncates nothing."""
        size = closed_log.stat().st_size
        with open_users(closed_log, readonly=True) as reader:
            assert list(reader.items()) == [
                ("alice", User(name="Alice", age=30)),
                ("bob", User(name="Bob", age=25)),
            ]
        assert closed_log.stat().st_size == size

    def test_readonly_open_of_missing_file_raises(self, tmp_path: Path) -> None:
        """A readonly open of a missing log raises FileNotFoundError and creates nothing."""
        path = tmp_path / "missing" / "store.log"
        with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
            open_users(path, readonly=True)
        assert list(tmp_path.iterdir()) == []

    def test_readonly_open_of_missing_file_in_existing_folder_creates_nothing(
        self,
        log_path: Path,
    ) -> None:
        """A readonly open of a missing log in an existing folder leaves the folder empty."""
        with pytest.raises(FileNotFoundError, match=re.escape(str(log_path))):
            open_users(log_path, readonly=True)
        assert list(log_path.parent.iterdir()) == []


SPECIAL_KINDS = ["fifo", "character_device", "link_to_dev_zero", "directory"]
MAY_HANG = frozenset({"fifo", "link_to_dev_zero"})
"""Kinds that blocked or filled memory before the fix: opened only in a bounded child process."""


def make_special(folder: Path, kind: str) -> Path:
    """Create a node of ``kind`` (one of ``SPECIAL_KINDS``) named ``store.log`` in ``folder``."""
    path = folder / "store.log"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "character_device":
        try:  # the numbers of /dev/null: harmless whatever a failing test does to it
            os.mknod(path, stat.S_IFCHR | 0o600, os.stat("/dev/null").st_rdev)
        except PermissionError:
            pytest.skip("making a device node needs root (CAP_MKNOD), which this run lacks")
    elif kind == "link_to_dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    return path


def node_state(path: Path) -> tuple[int, int, int]:
    """Return what identifies the node at ``path`` itself: its mode, inode and device numbers."""
    status = path.lstat()
    return status.st_mode, status.st_ino, status.st_rdev


def limit_memory() -> None:
    """Cap a child's address space, so that reading /dev/zero fails fast instead of swapping."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


OPEN_CHILD = """
import sys
from typedstore import StoreError, TypedStore

try:
    TypedStore.open(sys.argv[1], str, int, readonly=sys.argv[2] == "readonly").close()
except StoreError as exc:
    print(type(exc).__name__, exc)
else:
    print("opened")
"""


def open_outcome(path: Path, kind: str, mode: str) -> str:
    """Open ``path`` (a child process for a kind in ``MAY_HANG``); return what was raised."""
    if kind in MAY_HANG:
        return open_in_guarded_child(path, mode)
    try:
        open_users(path, readonly=mode == "readonly").close()
    except StoreError as exc:
        return f"{type(exc).__name__} {exc}"
    return "opened"


def open_in_guarded_child(path: Path, mode: str) -> str:
    """Open ``path`` in a child process bounded in time and memory; return what it reports."""
    result = subprocess.run(
        [sys.executable, "-c", OPEN_CHILD, str(path), mode],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        preexec_fn=limit_memory,
    )
    return result.stdout.strip()


class TestPathsThatAreNotRegularFiles:
    """An open of a FIFO, a device, a link to one or a folder raises NotAStoreError."""

    @pytest.mark.parametrize("mode", ["writable", "readonly"])
    @pytest.mark.parametrize("kind", SPECIAL_KINDS)
    def test_open_refuses_a_path_that_is_not_a_regular_file(
        self, tmp_path: Path, kind: str, mode: str
    ) -> None:
        """An open of a FIFO, a device, a link to one or a folder raises NotAStoreError, node
        intact."""
        path = make_special(tmp_path, kind)
        before = node_state(path)
        assert open_outcome(path, kind, mode).startswith("NotAStoreError")
        assert node_state(path) == before
        assert [entry.name for entry in tmp_path.iterdir()] == [path.name]

    def test_open_names_what_the_path_is(self, tmp_path: Path) -> None:
        """The refusal of a folder says it is a directory, not a regular file."""
        path = make_special(tmp_path, "directory")
        with pytest.raises(NotAStoreError, match="a directory, not a regular file"):
            open_users(path)


CLOSED_USES: dict[str, Callable[[Store], object]] = {
    "get": lambda store: store.get("alice"),
    "getitem": lambda store: store["alice"],
    "contains": lambda store: "alice" in store,
    "contains_key": lambda store: store.contains_key("alice"),
    "len": len,
    "iter": lambda store: list(store),
    "keys": lambda store: list(store.keys()),
    "values": lambda store: list(store.values()),
    "items": lambda store: list(store.items()),
    "get_index": lambda store: store.get_index(0),
    "flush": lambda store: store.flush(),
    **READONLY_WRITES,
}


class TestClosedStores:
    """A closed store raises StoreClosedError on every use, and closing again is harmless."""

    @pytest.mark.parametrize("use", list(CLOSED_USES.values()), ids=list(CLOSED_USES))
    def test_closed_store_raises_store_closed_error(
        self, log_path: Path, use: Callable[[Store], object]
    ) -> None:
        """Every read and write on a closed store raises StoreClosedError."""
        store = open_users(log_path)
        store["alice"] = User(name="Alice", age=30)
        store.close()
        with pytest.raises(StoreClosedError, match="closed"):
            use(store)

    @pytest.mark.parametrize("use", list(CLOSED_USES.values()), ids=list(CLOSED_USES))
    def test_closed_readonly_store_raises_store_closed_error(
        self, closed_log: Path, use: Callable[[Store], object]
    ) -> None:
        """A closed readonly store raises StoreClosedError, not StoreReadOnlyError."""
        store = open_users(closed_log, readonly=True)
        store.close()
        with pytest.raises(StoreClosedError, match="closed"):
            use(store)

    def test_closing_twice_is_harmless(self, log_path: Path) -> None:
        """A second close() neither raises nor reopens the store."""
        store = open_users(log_path)
        store.close()
        store.close()
        assert store.is_closed


def swapping_on_replay(action: Callable[[], object]) -> tuple[type[int], list[bool]]:
    """Return an int type whose validator runs ``action`` once, when armed, and the arming list."""
    armed: list[bool] = []

    def swap(value: int) -> int:
        if armed:
            armed.clear()
            action()
        return value

    return Annotated[int, AfterValidator(swap)], armed  # type: ignore[return-value]


def linking_elsewhere(path: Path, victim: Path) -> Callable[[], None]:
    """Write someone else's data to ``victim``; return an action that moves the log at
    ``path`` away and links ``victim`` at its path."""
    victim.write_bytes(b"someone else's data")

    def swap() -> None:
        path.rename(path.with_name("moved.log"))
        path.symlink_to(victim)

    return swap


class TestPathChangedDuringReplay:
    """A writable open uses the file it replayed, whatever its path names by the end."""

    def test_log_swapped_for_a_device_during_replay_is_not_written_to(self, tmp_path: Path) -> None:
        """A log replaced by a link to /dev/null while replaying is refused, or its inode kept."""
        path = tmp_path / "swap.log"
        moved = tmp_path / "moved.log"

        def swap() -> None:
            path.rename(moved)
            path.symlink_to("/dev/null")

        value_type, armed = swapping_on_replay(swap)
        with TypedStore.open(path, str, value_type) as store:
            store["a"] = 1
        armed.append(True)
        try:
            store = TypedStore.open(path, str, value_type)
        except NotAStoreError:
            return  # refused: the fix may take this way
        store["b"] = 2
        store.close()
        with TypedStore.open(moved, str, int, readonly=True) as original:
            assert dict(original.items()) == {"a": 1, "b": 2}

    def test_torn_tail_is_cut_from_the_replayed_log_not_what_its_path_names_by_then(
        self,
        tmp_path: Path,
    ) -> None:
        """A torn tail is cut from the file replayed, never from a file linked at its path since."""
        path = tmp_path / "torn.log"
        victim = tmp_path / "victim.bin"
        value_type, armed = swapping_on_replay(linking_elsewhere(path, victim))
        with TypedStore.open(path, str, value_type) as store:
            store["a"] = 1
            store["b"] = 2
        os.truncate(path, path.stat().st_size - 3)
        armed.append(True)
        with TypedStore.open(path, str, value_type) as store:
            assert store.recovery is not None
            assert store.recovery.kind == "torn_tail"
        assert victim.read_bytes() == b"someone else's data"

    def test_damaged_log_is_copied_aside_from_the_replayed_file(self, tmp_path: Path) -> None:
        """Recovery copies aside the log it replayed, not a file linked at its path since."""
        path = tmp_path / "damaged.log"
        victim = tmp_path / "victim.bin"
        value_type, armed = swapping_on_replay(linking_elsewhere(path, victim))
        with TypedStore.open(path, str, value_type) as store:
            for i in range(20):
                store[f"k{i}"] = i
        damaged = bytearray(path.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        path.write_bytes(bytes(damaged))
        armed.append(True)
        config = StoreConfig(recovery="skip")
        with TypedStore.open(path, str, value_type, config=config) as store:
            assert store.recovery is not None
            assert store.recovery.backup is not None
            assert store.recovery.backup.read_bytes() == damaged

    def test_hard_link_made_during_replay_refuses_the_writable_open(self, tmp_path: Path) -> None:
        """A hard link to the log made while it is replayed refuses the open, as one made before."""
        path = tmp_path / "linked.log"
        value_type, armed = swapping_on_replay(lambda: os.link(path, tmp_path / "other.log"))
        with TypedStore.open(path, str, value_type) as store:
            store["a"] = 1
        before = path.read_bytes()
        armed.append(True)
        with pytest.raises(StoreLockedError, match="2 hard links"):
            TypedStore.open(path, str, value_type)
        assert path.read_bytes() == before
