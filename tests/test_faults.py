"""Fault injection: failed writes, fsyncs and compaction steps leave the store consistent.

``typedstore._fs`` is the only module that touches files, so every fault is injected by
replacing the ``os`` module it sees with :class:`FaultyOS`, which fails chosen calls.

One class per promise, in file order:

- ``TestFailedWrite``: a failed write changes neither memory nor file.
- ``TestFailedBufferDrain``: a failed drain keeps the earlier buffered writes.
- ``TestFailedFsync``: after a failed fsync, writes are refused until a reopen.
- ``TestFailedCompaction``: the old log before the rename, the new one after it.
- ``TestFailedAutomaticCompaction``: the write that triggered it still succeeds.
- ``TestEncodingErrors``: what msgpack cannot hold raises EncodingError, writes nothing.
- ``TestFailuresWhileOpening``: no new log, no lock held.
- ``TestFailuresWhileClosing``: no buffered record lost, the lock let go.
- ``TestShortWrites``: a partial pwrite is completed.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from tests.models import User
from typedstore import (
    EncodingError,
    StoreConfig,
    StoreFailedError,
    TypedStore,
    _fs,
)

OsCall = Literal["pwrite", "fdatasync", "fsync", "replace", "ftruncate"]
Store = TypedStore[str, User]

ENOSPC = "No space left on device"
EIO = "Input/output error"
FAILED = "an fsync failed"


# -- the fault injector ----------------------------------------------------------------------


@dataclass
class Fault:
    """Fail the ``nth`` call of ``call`` (counting only calls on ``path``, if given)."""

    call: OsCall
    error: OSError
    path: Path | None = None
    nth: int = 1
    partial: bool = False
    """For ``pwrite``: the ``nth`` call writes half its data, the next one fails."""
    calls: int = 0
    has_written_short: bool = False
    fired: bool = False

    def covers(self, target: str) -> bool:
        """Return whether a call on ``target`` counts towards this fault."""
        return self.path is None or os.path.realpath(self.path) == target


class FaultyOS:
    """Stands in for ``os`` inside ``typedstore._fs``: fails chosen calls, passes the rest."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def fail(
        self,
        call: OsCall,
        *,
        path: Path | None = None,
        nth: int = 1,
        partial: bool = False,
        code: int = errno.ENOSPC,
    ) -> Fault:
        """Arm a fault and return it, so the test can check it fired."""
        fault = Fault(call, OSError(code, os.strerror(code)), path, nth, partial)
        self.faults.append(fault)
        return fault

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        fault = self._trip("pwrite", _fd_path(fd))
        if fault is None:
            return os.pwrite(fd, data, offset)
        if fault.partial and not fault.has_written_short:
            fault.has_written_short = True
            return os.pwrite(fd, data[: max(1, len(data) // 2)], offset)
        fault.fired = True
        raise fault.error

    def fdatasync(self, fd: int) -> None:
        self._raise_if_due("fdatasync", _fd_path(fd))
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._raise_if_due("fsync", _fd_path(fd))
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        self._raise_if_due("ftruncate", _fd_path(fd))
        os.ftruncate(fd, length)

    def replace(self, src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        self._raise_if_due("replace", os.path.realpath(src))
        os.replace(src, dst)

    def _raise_if_due(self, call: OsCall, target: str) -> None:
        fault = self._trip(call, target)
        if fault is not None:
            fault.fired = True
            raise fault.error

    def _trip(self, call: OsCall, target: str) -> Fault | None:
        """Count a call; return the armed fault it triggers, if any."""
        for fault in self.faults:
            if fault.call == call and not fault.fired and fault.covers(target):
                fault.calls += 1
                if fault.calls >= fault.nth:
                    return fault
        return None


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def faulty_os(monkeypatch: pytest.MonkeyPatch) -> FaultyOS:
    """Replace the ``os`` module that ``typedstore._fs`` sees by a fault injector."""
    proxy = FaultyOS()
    monkeypatch.setattr(_fs, "os", proxy)
    return proxy


# -- helpers ---------------------------------------------------------------------------------


def open_users(path: Path, config: StoreConfig | None = None) -> Store:
    return TypedStore.open(path, str, User, config=config)


def contents(store: Store) -> list[tuple[str, User]]:
    return list(store.items())


def reopened(path: Path) -> list[tuple[str, User]]:
    with open_users(path) as store:
        return contents(store)


def reopened_readonly(path: Path) -> list[tuple[str, User]]:
    with TypedStore.open(path, str, User, readonly=True) as store:
        return contents(store)


def fill(store: Store) -> None:
    """Give the store a few live entries and some dead records."""
    for i in range(5):
        store[f"k{i}"] = User(name=f"user{i}", age=20 + i, tags=["t"] * i)
    store.modify("k1", lambda user: user.model_copy(update={"age": 99}))
    store.modify("k3", lambda user: user.model_copy(update={"name": "renamed"}))
    del store["k2"]


def tmp_of(path: Path) -> Path:
    return path.with_name(path.name + ".compact.tmp")


def _insert_new(store: Store) -> None:
    store.insert("new", User(name="New", age=1, tags=["x"] * 50))


def _remove(store: Store) -> None:
    store.remove("k0")


def _modify(store: Store) -> None:
    store.modify("k1", lambda user: user.model_copy(update={"age": user.age + 1}))


def _commit(store: Store) -> None:
    with store.transaction() as txn:
        txn["new"] = User(name="New", age=1)
        txn.modify("k3", lambda user: user.model_copy(update={"age": 0}))
        del txn["k0"]


WRITES: dict[str, Callable[[Store], None]] = {
    "insert": _insert_new,
    "remove": _remove,
    "modify": _modify,
    "transaction": _commit,
}


class TestFailedWrite:
    """A failed write raises its OSError unchanged and changes neither memory nor file."""

    @pytest.mark.parametrize("partial", [False, True], ids=["enospc", "short-write-then-enospc"])
    @pytest.mark.parametrize("write", list(WRITES.values()), ids=list(WRITES))
    def test_failed_write_raises_oserror_unchanged(
        self, log_path: Path, faulty_os: FaultyOS, write: Callable[[Store], None], partial: bool
    ) -> None:
        """A write whose pwrite fails raises that very OSError."""
        with open_users(log_path) as store:
            fill(store)
            fault = faulty_os.fail("pwrite", path=log_path, partial=partial)
            with pytest.raises(OSError, match=ENOSPC) as caught:
                write(store)
            assert fault.fired
            assert caught.value is fault.error

    @pytest.mark.parametrize("partial", [False, True], ids=["enospc", "short-write-then-enospc"])
    @pytest.mark.parametrize("write", list(WRITES.values()), ids=list(WRITES))
    def test_failed_write_changes_neither_memory_nor_file(
        self, log_path: Path, faulty_os: FaultyOS, write: Callable[[Store], None], partial: bool
    ) -> None:
        """After a failed write, memory and the log's bytes are exactly as before the call."""
        with open_users(log_path) as store:
            fill(store)
            before, data = contents(store), log_path.read_bytes()
            fault = faulty_os.fail("pwrite", path=log_path, partial=partial)
            with pytest.raises(OSError, match=ENOSPC):
                write(store)
            assert fault.fired
            assert contents(store) == before
            assert log_path.read_bytes() == data

    @pytest.mark.parametrize("partial", [False, True], ids=["enospc", "short-write-then-enospc"])
    @pytest.mark.parametrize("write", list(WRITES.values()), ids=list(WRITES))
    def test_store_stays_usable_after_failed_write(
        self, log_path: Path, faulty_os: FaultyOS, write: Callable[[Store], None], partial: bool
    ) -> None:
        """After a failed write the same write succeeds, and a reopen equals memory."""
        with open_users(log_path) as store:
            fill(store)
            fault = faulty_os.fail("pwrite", path=log_path, partial=partial)
            with pytest.raises(OSError, match=ENOSPC):
                write(store)
            assert fault.fired
            write(store)
            store["after"] = User(name="After", age=2)
            expected = contents(store)
        assert ("after", User(name="After", age=2)) in expected
        assert reopened(log_path) == expected
        assert log_path.stat().st_size > 0

    def test_failed_write_whose_cleanup_fails_too_keeps_later_records_readable(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """A short write whose cut-back also fails still leaves later writes replayable."""
        with open_users(log_path) as store:
            fill(store)
            before = contents(store)
            faulty_os.fail("pwrite", path=log_path, partial=True)
            cut = faulty_os.fail("ftruncate", path=log_path, code=errno.EIO)
            with pytest.raises(OSError, match=EIO):
                store["big"] = User(name="B" * 4000, age=1)
            assert cut.fired
            assert contents(store) == before
            store["small"] = User(name="s", age=2)
            expected = contents(store)
        assert reopened(log_path) == expected


def _buffered(path: Path) -> Store:
    store = open_users(path, StoreConfig(write_through=False, buf_capacity=1024))
    fill(store)
    store.flush()
    store["buffered"] = User(name="in the buffer", age=3)
    return store


class TestFailedBufferDrain:
    """A buffered store whose write fails keeps its earlier buffered writes and stays usable."""

    def test_failed_buffer_drain_keeps_earlier_buffered_writes(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """A buffered store whose drain fails drops only the triggering write, keeping the file."""
        store = _buffered(log_path)
        try:
            before, size = contents(store), log_path.stat().st_size
            fault = faulty_os.fail("pwrite", path=log_path, partial=True)
            with pytest.raises(OSError, match=ENOSPC) as caught:
                store["large"] = User(name="L" * 2000, age=4)
            assert caught.value is fault.error
            assert contents(store) == before
            assert log_path.stat().st_size == size
        finally:
            store.close()
        assert reopened(log_path) == before

    def test_buffered_store_stays_usable_after_failed_drain(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """After a failed drain the next write drains the buffer, and a reopen equals memory."""
        store = _buffered(log_path)
        try:
            fault = faulty_os.fail("pwrite", path=log_path)
            with pytest.raises(OSError, match=ENOSPC):
                store["large"] = User(name="L" * 2000, age=4)
            assert fault.fired
            store["large"] = User(name="L" * 2000, age=5)
            expected = contents(store)
        finally:
            store.close()
        assert ("buffered", User(name="in the buffer", age=3)) in expected
        assert reopened(log_path) == expected

    def test_failed_flush_of_buffer_keeps_the_buffer(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """flush() whose write fails raises the OSError and a later flush writes the records."""
        store = _buffered(log_path)
        try:
            expected, size = contents(store), log_path.stat().st_size
            fault = faulty_os.fail("pwrite", path=log_path, partial=True)
            with pytest.raises(OSError, match=ENOSPC) as caught:
                store.flush()
            assert caught.value is fault.error
            assert log_path.stat().st_size == size
            store.flush()
            assert reopened_readonly(log_path) == expected
        finally:
            store.close()


def _refused_writes() -> dict[str, Callable[[Store], object]]:
    return {
        **WRITES,
        "setitem": lambda store: store.__setitem__("k4", User(name="x", age=1)),
        "delitem": lambda store: store.__delitem__("k4"),
        "pop": lambda store: store.pop("k4"),
        "clear": lambda store: store.clear(),
        "compact": lambda store: store.compact(),
        "flush": lambda store: store.flush(),
    }


REFUSED = _refused_writes()


def _fail_synced_insert(path: Path, faulty_os: FaultyOS) -> tuple[Store, list[tuple[str, User]]]:
    """Open with sync_on_write, fill, then make an insert's fsync fail."""
    store = open_users(path, StoreConfig(sync_on_write=True))
    fill(store)
    acknowledged = contents(store)
    fault = faulty_os.fail("fdatasync", path=path, code=errno.EIO)
    with pytest.raises(OSError, match=EIO) as caught:
        store["lost"] = User(name="never acknowledged", age=0)
    assert caught.value is fault.error
    return store, acknowledged


def _fail_flush(path: Path, faulty_os: FaultyOS) -> tuple[Store, list[tuple[str, User]]]:
    store = open_users(path)
    fill(store)
    fault = faulty_os.fail("fdatasync", path=path, code=errno.EIO)
    with pytest.raises(OSError, match=EIO) as caught:
        store.flush()
    assert caught.value is fault.error
    return store, contents(store)


FAILED_FSYNCS: dict[str, Callable[[Path, FaultyOS], tuple[Store, list[tuple[str, User]]]]] = {
    "on-write": _fail_synced_insert,
    "on-flush": _fail_flush,
}


class TestFailedFsync:
    """After an fsync fails, reads go on, writes are refused until a reopen gives the
    acknowledged state."""

    def test_failed_fsync_on_write_raises_and_applies_nothing(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """With sync_on_write, an insert whose fsync fails raises it and memory lacks the entry."""
        store, acknowledged = _fail_synced_insert(log_path, faulty_os)
        try:
            assert "lost" not in store
            assert contents(store) == acknowledged
        finally:
            store.close()

    def test_reads_work_after_failed_fsync(self, log_path: Path, faulty_os: FaultyOS) -> None:
        """A store whose fsync failed still answers reads."""
        store, acknowledged = _fail_synced_insert(log_path, faulty_os)
        try:
            assert store["k1"].age == 99
            assert store.get("k2") is None
            assert len(store) == len(acknowledged)
            assert list(store.keys()) == [key for key, _ in acknowledged]
            assert store.get_index(-1) == acknowledged[-1]
        finally:
            store.close()

    def test_reopen_after_failed_fsync_gives_acknowledged_state(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """Closing and reopening a store whose fsync failed gives the acknowledged state."""
        store, acknowledged = _fail_synced_insert(log_path, faulty_os)
        store.close()
        assert reopened(log_path) == acknowledged

    def test_reopened_store_accepts_writes_after_failed_fsync(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """The refusal lasts only until the store is reopened."""
        store, acknowledged = _fail_synced_insert(log_path, faulty_os)
        store.close()
        with open_users(log_path, StoreConfig(sync_on_write=True)) as again:
            again["lost"] = User(name="written now", age=1)
            expected = contents(again)
        assert expected == [*acknowledged, ("lost", User(name="written now", age=1))]
        assert reopened(log_path) == expected

    def test_failed_fsync_in_transaction_commit_applies_nothing(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """A transaction whose fsync fails applies nothing, and later writes are refused."""
        with open_users(log_path, StoreConfig(sync_on_write=True)) as store:
            fill(store)
            acknowledged = contents(store)
            fault = faulty_os.fail("fdatasync", path=log_path, code=errno.EIO)
            with pytest.raises(OSError, match=EIO):
                _commit(store)
            assert fault.fired
            assert contents(store) == acknowledged
            with pytest.raises(StoreFailedError, match=FAILED):
                store["k0"] = User(name="refused", age=1)
        assert reopened(log_path) == acknowledged

    @pytest.mark.parametrize("fail", list(FAILED_FSYNCS.values()), ids=list(FAILED_FSYNCS))
    @pytest.mark.parametrize("write", list(REFUSED.values()), ids=list(REFUSED))
    def test_writes_refused_after_failed_fsync(
        self,
        log_path: Path,
        faulty_os: FaultyOS,
        write: Callable[[Store], object],
        fail: Callable[[Path, FaultyOS], tuple[Store, list[tuple[str, User]]]],
    ) -> None:
        """After an fsync failed, on a write or in flush(), every further write is refused."""
        store, acknowledged = fail(log_path, faulty_os)
        try:
            with pytest.raises(StoreFailedError, match=FAILED):
                write(store)
            assert contents(store) == acknowledged
        finally:
            store.close()

    def test_reopen_after_failed_flush_gives_acknowledged_state(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """Every write acknowledged before a failed flush is there after reopening."""
        store, acknowledged = _fail_flush(log_path, faulty_os)
        assert store["k3"].name == "renamed"
        store.close()
        assert reopened(log_path) == acknowledged

    def test_failed_flush_of_buffered_store_refuses_writes(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """A buffered store whose flush fsync fails refuses writes; a reopen has the drained
        data."""
        store = _buffered(log_path)
        acknowledged = contents(store)
        try:
            faulty_os.fail("fdatasync", path=log_path, code=errno.EIO)
            with pytest.raises(OSError, match=EIO):
                store.flush()
            with pytest.raises(StoreFailedError, match=FAILED):
                store["k0"] = User(name="refused", age=1)
        finally:
            store.close()
        assert reopened(log_path) == acknowledged


BEFORE_RENAME: dict[str, tuple[OsCall, bool]] = {
    "write-temp": ("pwrite", False),
    "short-write-temp": ("pwrite", True),
    "fsync-temp": ("fdatasync", False),
    "rename": ("replace", False),
}


def _arm_step(faulty_os: FaultyOS, path: Path, step: str) -> Fault:
    """Arm a fault at one compaction step of the log at ``path``."""
    if step == "fsync-directory":
        return faulty_os.fail("fsync", path=path.parent, code=errno.EIO)
    call, partial = BEFORE_RENAME[step]
    return faulty_os.fail(call, path=tmp_of(path), partial=partial)


def _compacted_bytes(path: Path, tmp_path: Path) -> bytes:
    """Return what compacting a copy of the log at ``path`` gives, without faults."""
    copy = tmp_path / "reference" / path.name
    copy.parent.mkdir()
    shutil.copyfile(path, copy)
    with open_users(copy) as store:
        store.compact()
    return copy.read_bytes()


class TestFailedCompaction:
    """A compaction failing before its rename keeps the old log; after it, the new log stands."""

    @pytest.mark.parametrize("step", list(BEFORE_RENAME))
    def test_compaction_failing_before_rename_keeps_old_log(
        self, log_path: Path, faulty_os: FaultyOS, step: str
    ) -> None:
        """A compaction failing before its rename raises, keeps the old log and leaves no temp
        file."""
        with open_users(log_path) as store:
            fill(store)
            expected, old = contents(store), log_path.read_bytes()
            fault = _arm_step(faulty_os, log_path, step)
            with pytest.raises(OSError, match=ENOSPC) as caught:
                store.compact()
            assert caught.value is fault.error
            assert log_path.read_bytes() == old
            assert not tmp_of(log_path).exists()
            assert contents(store) == expected
        assert reopened(log_path) == expected

    @pytest.mark.parametrize("step", list(BEFORE_RENAME))
    def test_store_usable_after_compaction_failed_before_rename(
        self, log_path: Path, faulty_os: FaultyOS, step: str
    ) -> None:
        """After a compaction failed before its rename, writes and a new compaction succeed."""
        with open_users(log_path) as store:
            fill(store)
            fault = _arm_step(faulty_os, log_path, step)
            with pytest.raises(OSError, match=ENOSPC):
                store.compact()
            assert fault.fired
            store["after"] = User(name="after", age=1)
            store.compact()
            store["later"] = User(name="later", age=2)
            expected = contents(store)
        assert not tmp_of(log_path).exists()
        assert reopened(log_path) == expected

    @pytest.mark.parametrize("step", list(BEFORE_RENAME))
    def test_compaction_failing_before_rename_keeps_buffered_writes(
        self, log_path: Path, faulty_os: FaultyOS, step: str
    ) -> None:
        """A buffered store whose compaction fails keeps its buffer, so a reopen equals memory."""
        store = _buffered(log_path)
        try:
            expected = contents(store)
            fault = _arm_step(faulty_os, log_path, step)
            with pytest.raises(OSError, match=ENOSPC):
                store.compact()
            assert fault.fired
            assert contents(store) == expected
        finally:
            store.close()
        assert reopened(log_path) == expected

    def test_compaction_failing_directory_fsync_keeps_new_log(
        self, log_path: Path, tmp_path: Path, faulty_os: FaultyOS
    ) -> None:
        """A compaction whose directory fsync fails raises it, with the new log in place."""
        with open_users(log_path) as store:
            fill(store)
            expected, new = contents(store), _compacted_bytes(log_path, tmp_path)
            fault = _arm_step(faulty_os, log_path, "fsync-directory")
            with pytest.raises(OSError, match=EIO) as caught:
                store.compact()
            assert caught.value is fault.error
            assert log_path.read_bytes() == new
            assert not tmp_of(log_path).exists()
            assert contents(store) == expected
        assert reopened(log_path) == expected

    @pytest.mark.parametrize("write", list(REFUSED.values()), ids=list(REFUSED))
    def test_writes_refused_after_compaction_failed_directory_fsync(
        self, log_path: Path, faulty_os: FaultyOS, write: Callable[[Store], object]
    ) -> None:
        """After a compaction's directory fsync failed, every write raises StoreFailedError."""
        with open_users(log_path) as store:
            fill(store)
            expected = contents(store)
            _arm_step(faulty_os, log_path, "fsync-directory")
            with pytest.raises(OSError, match=EIO):
                store.compact()
            with pytest.raises(StoreFailedError, match=FAILED):
                write(store)
            assert contents(store) == expected
        assert reopened(log_path) == expected

    def test_reopened_store_accepts_writes_after_failed_directory_fsync(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """A store reopened after a failed directory fsync takes writes again."""
        with open_users(log_path) as store:
            fill(store)
            _arm_step(faulty_os, log_path, "fsync-directory")
            with pytest.raises(OSError, match=EIO):
                store.compact()
        with open_users(log_path) as again:
            again["after"] = User(name="after", age=1)
            expected = contents(again)
        assert reopened(log_path) == expected


def _auto_compacting(path: Path) -> Store:
    """Open a store whose next overwrite of ``k0`` triggers an automatic compaction."""
    store = open_users(path, StoreConfig(min_compact_bytes=0, compact_ratio=2.0))
    store["k0"] = User(name="first", age=1)
    return store


COMPACTION_FAILED = "automatic compaction failed"


def _overwrite_with_failing_compaction(
    store: Store, faulty_os: FaultyOS, path: Path, step: str, caplog: pytest.LogCaptureFixture
) -> Fault:
    """Arm ``step`` to fail, then overwrite ``k0``: the automatic compaction it starts fails."""
    fault = _arm_step(faulty_os, path, step)
    with caplog.at_level(logging.WARNING, logger="typedstore"):
        store["k0"] = User(name="second", age=2)
    return fault


class TestFailedAutomaticCompaction:
    """A failed automatic compaction logs a warning and does not fail the write."""

    @pytest.mark.parametrize("step", list(BEFORE_RENAME))
    def test_failed_automatic_compaction_does_not_fail_the_write(
        self, log_path: Path, faulty_os: FaultyOS, caplog: pytest.LogCaptureFixture, step: str
    ) -> None:
        """An automatic compaction that fails logs a warning and the triggering write succeeds."""
        store = _auto_compacting(log_path)
        try:
            fault = _overwrite_with_failing_compaction(store, faulty_os, log_path, step, caplog)
            assert fault.fired
            assert store["k0"] == User(name="second", age=2)
            assert not tmp_of(log_path).exists()
            messages = [record.getMessage() for record in caplog.records]
            assert any(COMPACTION_FAILED in message for message in messages), messages
        finally:
            store.close()
        assert reopened(log_path) == [("k0", User(name="second", age=2))]

    @pytest.mark.parametrize("step", list(BEFORE_RENAME))
    def test_store_usable_after_failed_automatic_compaction(
        self, log_path: Path, faulty_os: FaultyOS, caplog: pytest.LogCaptureFixture, step: str
    ) -> None:
        """After an automatic compaction failed, writes go on and a reopen equals memory."""
        store = _auto_compacting(log_path)
        try:
            fault = _overwrite_with_failing_compaction(store, faulty_os, log_path, step, caplog)
            assert fault.fired
            for i in range(20):
                store[f"n{i % 3}"] = User(name="n", age=i)
            store.compact()
            expected = contents(store)
        finally:
            store.close()
        assert len(expected) == 4
        assert reopened(log_path) == expected

    def test_automatic_compaction_failing_directory_fsync_refuses_later_writes(
        self, log_path: Path, faulty_os: FaultyOS, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failed directory fsync in an automatic compaction keeps the write but refuses the
        next."""
        store = _auto_compacting(log_path)
        try:
            _overwrite_with_failing_compaction(
                store, faulty_os, log_path, "fsync-directory", caplog
            )
            assert any(COMPACTION_FAILED in record.getMessage() for record in caplog.records)
            with pytest.raises(StoreFailedError, match=FAILED):
                store["k1"] = User(name="refused", age=3)
        finally:
            store.close()
        assert reopened(log_path) == [("k0", User(name="second", age=2))]


class Wide(BaseModel):
    """A model whose fields validate values msgpack cannot hold."""

    count: int
    payload: Any = None


class Opaque:
    """An object pydantic accepts for ``Any`` but cannot serialize."""


UNENCODABLE: dict[str, Wide] = {
    "int-above-2**64": Wide(count=2**64),
    "int-below--2**63": Wide(count=-(2**63) - 1),
    "object-in-any": Wide(count=1, payload=Opaque()),
    "nested-object-in-any": Wide(count=1, payload={"inner": [Opaque()]}),
}


def _open_wide(path: Path) -> TypedStore[str, Wide]:
    store = TypedStore.open(path, str, Wide)
    store["ok"] = Wide(count=1, payload={"a": [1, 2]})
    return store


def _stage_in_transaction(store: TypedStore[str, Wide], value: Wide) -> None:
    with store.transaction() as txn:
        txn["fine"] = Wide(count=2)
        txn["bad"] = value


class TestEncodingErrors:
    """A value or key msgpack cannot hold raises EncodingError and writes nothing."""

    @pytest.mark.parametrize("value", list(UNENCODABLE.values()), ids=list(UNENCODABLE))
    def test_unencodable_insert_raises_encoding_error(self, log_path: Path, value: Wide) -> None:
        """A validated value msgpack cannot hold raises EncodingError from insert, writing
        nothing."""
        with _open_wide(log_path) as store:
            before = log_path.read_bytes()
            with pytest.raises(EncodingError, match="cannot encode"):
                store["bad"] = value
            assert log_path.read_bytes() == before
            assert list(store) == ["ok"]

    @pytest.mark.parametrize("value", list(UNENCODABLE.values()), ids=list(UNENCODABLE))
    def test_unencodable_modify_raises_encoding_error(self, log_path: Path, value: Wide) -> None:
        """modify returning an unencodable value raises EncodingError and changes nothing."""
        with _open_wide(log_path) as store:
            before = log_path.read_bytes()
            with pytest.raises(EncodingError, match="cannot encode"):
                store.modify("ok", lambda _: value)
            assert log_path.read_bytes() == before
            assert store["ok"] == Wide(count=1, payload={"a": [1, 2]})

    @pytest.mark.parametrize("value", list(UNENCODABLE.values()), ids=list(UNENCODABLE))
    def test_unencodable_value_in_transaction_raises_encoding_error(
        self, log_path: Path, value: Wide
    ) -> None:
        """Staging an unencodable value in a transaction raises EncodingError and commits
        nothing."""
        with _open_wide(log_path) as store:
            before = log_path.read_bytes()
            with pytest.raises(EncodingError, match="cannot encode"):
                _stage_in_transaction(store, value)
            assert log_path.read_bytes() == before
            assert list(store) == ["ok"]

    def test_unencodable_key_raises_encoding_error(self, log_path: Path) -> None:
        """An int key above 2**64 raises EncodingError and writes nothing."""
        with TypedStore.open(log_path, int, str) as store:
            store[1] = "one"
            before = log_path.read_bytes()
            with pytest.raises(EncodingError, match="cannot encode"):
                store[2**64] = "huge"
            assert log_path.read_bytes() == before
            assert list(store.items()) == [(1, "one")]

    @pytest.mark.parametrize("value", list(UNENCODABLE.values()), ids=list(UNENCODABLE))
    def test_store_usable_after_encoding_error(self, log_path: Path, value: Wide) -> None:
        """After an EncodingError the store takes writes, and a reopen equals memory."""
        with _open_wide(log_path) as store:
            with pytest.raises(EncodingError, match="cannot encode"):
                store["bad"] = value
            store["good"] = Wide(count=2**64 - 1, payload=[None, "x"])
            expected = list(store.items())
        with TypedStore.open(log_path, str, Wide) as again:
            assert list(again.items()) == expected


class TestFailuresWhileOpening:
    """An open that fails raises its OSError, leaves no new log and holds no lock."""

    @pytest.mark.parametrize("call", ["ftruncate", "fsync"])
    def test_open_failing_to_cut_torn_tail_raises_and_releases_lock(
        self, log_path: Path, faulty_os: FaultyOS, call: OsCall
    ) -> None:
        """An open whose cut of a torn tail fails raises the OSError and holds no lock
        afterwards."""
        with open_users(log_path) as store:
            fill(store)
            expected = contents(store)
        with open(log_path, "ab") as file:
            file.write(b"\x01\x02\x03")
        fault = faulty_os.fail(call, path=log_path, code=errno.EIO)
        with pytest.raises(OSError, match=EIO) as caught:
            open_users(log_path)
        assert caught.value is fault.error
        assert reopened(log_path) == expected

    @pytest.mark.parametrize("step", list(BEFORE_RENAME))
    def test_creating_store_failing_leaves_no_log(
        self, log_path: Path, faulty_os: FaultyOS, step: str
    ) -> None:
        """Creating a new store whose first write fails raises, leaves no log and no lock held."""
        fault = _arm_step(faulty_os, log_path, step)
        with pytest.raises(OSError, match=ENOSPC) as caught:
            open_users(log_path)
        assert caught.value is fault.error
        assert not log_path.exists()
        assert not tmp_of(log_path).exists()
        assert reopened(log_path) == []

    def test_creating_store_failing_directory_fsync_raises_and_releases_lock(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """Creating a store whose directory fsync fails raises it; the next open succeeds."""
        fault = _arm_step(faulty_os, log_path, "fsync-directory")
        with pytest.raises(OSError, match=EIO) as caught:
            open_users(log_path)
        assert caught.value is fault.error
        with open_users(log_path) as store:
            store["a"] = User(name="A", age=1)
        assert reopened(log_path) == [("a", User(name="A", age=1))]


class TestFailuresWhileClosing:
    """A close that fails raises, never loses buffered records, and lets go of the lock."""

    def test_close_failing_fsync_raises_and_still_releases_lock(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """close() whose fsync fails raises it, yet closes the store and releases its lock."""
        store = open_users(log_path)
        fill(store)
        expected = contents(store)
        fault = faulty_os.fail("fdatasync", path=log_path, code=errno.EIO)
        with pytest.raises(OSError, match=EIO) as caught:
            store.close()
        assert caught.value is fault.error
        assert store.is_closed
        assert reopened(log_path) == expected

    def test_failed_close_keeps_buffered_records_and_can_be_retried(
        self, log_path: Path, faulty_os: FaultyOS
    ) -> None:
        """close() that cannot write the buffer raises, keeps the store open, and a retry saves
        all."""
        store = open_users(log_path, StoreConfig(write_through=False))
        store["a"] = User(name="A", age=1)
        fault = faulty_os.fail("pwrite", path=log_path)
        with pytest.raises(OSError, match=ENOSPC) as caught:
            store.close()
        assert caught.value is fault.error
        assert store["a"] == User(name="A", age=1)  # still open: a closed store would raise
        store.close()
        assert store.is_closed
        with open_users(log_path) as reopened:
            assert contents(reopened) == [("a", User(name="A", age=1))]

    def test_store_dropped_after_a_failed_close_releases_its_lock(
        self, log_path: Path, faulty_os: FaultyOS, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A store garbage-collected after close() failed frees the log for a new writer."""
        store = open_users(log_path, StoreConfig(write_through=False))
        store["a"] = User(name="A", age=1)
        first = faulty_os.fail("pwrite", path=log_path)
        with pytest.raises(OSError, match=ENOSPC) as caught:
            store.close()
        assert caught.value is first.error
        del caught  # its traceback would keep the store alive
        first.error.__traceback__ = None  # the armed error keeps the failed close's frames
        faulty_os.fail("pwrite", path=log_path)  # the close in __del__ fails too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del store
            gc.collect()
        assert "could not close" in caplog.text
        with open_users(log_path) as reopened:
            assert len(reopened) == 0


class ShortWritingOS:
    """Stands in for ``os`` inside ``typedstore._fs``: every pwrite writes at most 3 bytes."""

    def __init__(self) -> None:
        self.short_writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if len(data) > 3:
            self.short_writes += 1
        return os.pwrite(fd, data[:3], offset)


class TestShortWrites:
    """A pwrite that writes part of a record is followed by more until all is written."""

    @pytest.mark.parametrize("write", list(WRITES.values()), ids=list(WRITES))
    def test_short_writes_are_completed(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch, write: Callable[[Store], None]
    ) -> None:
        """A pwrite that writes only part of a record is followed by more until all of it is
        written."""
        with open_users(log_path) as store:
            fill(store)
            short = ShortWritingOS()
            monkeypatch.setattr(_fs, "os", short)
            write(store)
            expected = contents(store)
            assert short.short_writes > 0
        monkeypatch.undo()
        assert log_path.stat().st_size == len(log_path.read_bytes())
        assert reopened(log_path) == expected
