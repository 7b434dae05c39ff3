"""What the fast paths must keep: replay order and errors, the reused packer, writes, compaction.

Each test pins a behaviour that a speed-up of replay, the codec, appending or compaction
could change (docs/BENCHMARKS.md lists those speed-ups). One class per promise, in file order:

- ``TestDeadValuesAreNotValidated``: replaced or removed values are not validated.
- ``TestErrorPrecedence``: which damage or invalid value is reported.
- ``TestGarbageCollector``: the collector is restored after replay.
- ``TestReplayGivesWhatWasWritten``: keys and order as written.
- ``TestMigrationsAndDeferredValues``: only live old values are migrated.
- ``TestPerThreadPacker``: signal handlers and threads sharing the packer.
- ``TestShortWrites``: no partial record after a failed write.
- ``TestCompactionFailingWhileStreaming``: the old log is kept whole.
- ``TestTypesCompletedAfterOpen``: models completed after open.
- ``TestPlainScalars``: plain keys and values skip pydantic, exactly as validated.
- ``TestWritesThatSkipTheReadBack``: values whose dump is plain data read back as returned.
- ``TestReadsSkipTheCopyOnlyForImmutableValues``: reads hand out held or copied values.
- ``TestReplayShortPath``: runs of bare records replay as the general path replays them.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import errno
import gc
import math
import os
import signal
import sys
import threading
import tracemalloc
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar, Union

import msgpack
import pydantic
import pytest
from pydantic import BaseModel, ConfigDict

from typedstore import (
    CorruptLogError,
    EncodingError,
    SchemaMismatchError,
    StoreConfig,
    TypedStore,
    _codec,
    _format,
    _fs,
    _packing,
)

# -- helpers -----------------------------------------------------------------------------------


def append_frame(path: Path, body: bytes) -> int:
    """Append ``body`` as a frame at the end of the log at ``path``; return its offset."""
    offset = path.stat().st_size
    with open(path, "ab") as file:
        file.write(_format.encode_frame(body, offset))
    return offset


def insert(key: object, value: object) -> bytes:
    """Return the body of an insert record of msgpack-packed ``key`` and ``value``."""
    return _format.insert_body(msgpack.packb(key), msgpack.packb(value))


REGISTRY: dict[str, int] = {}


def _registered(name: str) -> str:
    REGISTRY[name]  # a lookup: KeyError for an unknown name, as application code raises
    return name


RegisteredName = Annotated[str, pydantic.AfterValidator(_registered)]
"""A type whose validator raises KeyError (not a validation error) for an unknown name."""


@pytest.fixture
def registry() -> Iterator[dict[str, int]]:
    REGISTRY.clear()
    yield REGISTRY
    REGISTRY.clear()


ALLOWED: set[str] = set()


def _allowed(name: str) -> str:
    if name not in ALLOWED:
        raise ValueError(f"{name!r} is not allowed")
    return name


AllowedName = Annotated[str, pydantic.AfterValidator(_allowed)]


@pytest.fixture
def allowed() -> Iterator[set[str]]:
    ALLOWED.clear()
    yield ALLOWED
    ALLOWED.clear()


class TestDeadValuesAreNotValidated:
    """A value a later record replaces or removes is not validated (FORMAT.md, Replay step 7)."""

    def test_overwritten_value_is_not_validated_on_open(
        self, log_path: Path, registry: dict[str, int]
    ) -> None:
        """A value a later record replaced is validated no further than its msgpack on open."""
        registry.update(old=1, new=2)
        with TypedStore.open(log_path, str, RegisteredName) as store:
            store["k"] = "old"
            store["k"] = "new"
        del registry["old"]
        with TypedStore.open(log_path, str, RegisteredName) as store:
            assert dict(store.items()) == {"k": "new"}

    def test_removed_value_is_not_validated_on_open(
        self, log_path: Path, registry: dict[str, int]
    ) -> None:
        """A value whose key was removed later is validated no further than its msgpack on open."""
        registry.update(old=1, new=2)
        with TypedStore.open(log_path, str, RegisteredName) as store:
            store["gone"] = "old"
            store["k"] = "new"
            del store["gone"]
        del registry["old"]
        with TypedStore.open(log_path, str, RegisteredName, readonly=True) as store:
            assert dict(store.items()) == {"k": "new"}

    def test_invalid_record_replaced_by_a_later_one_opens(
        self, log_path: Path, allowed: set[str]
    ) -> None:
        """A value that no longer validates but that a later record replaces is not an error."""
        allowed.update({"old", "new"})
        with TypedStore.open(log_path, str, AllowedName) as store:
            store["k"] = "old"
            store["k"] = "new"
            store["gone"] = "old"
            del store["gone"]
        allowed.discard("old")
        with TypedStore.open(log_path, str, AllowedName) as store:
            assert dict(store.items()) == {"k": "new"}


class TestErrorPrecedence:
    """Replay reports the damage or invalid value it would report without the fast paths."""

    def test_invalid_live_record_raises_at_its_own_offset(
        self, log_path: Path, allowed: set[str]
    ) -> None:
        """A live value that no longer validates raises SchemaMismatchError naming its record."""
        allowed.update({"old", "new"})
        with TypedStore.open(log_path, str, AllowedName) as store:
            store["k"] = "new"
            store["live"] = "new"
            offset = log_path.stat().st_size
            store["live"] = "old"
            store["later"] = "new"
        allowed.discard("old")
        with pytest.raises(SchemaMismatchError, match="'live'") as caught:
            TypedStore.open(log_path, str, AllowedName)
        assert (caught.value.offset, caught.value.key) == (offset, "live")

    def test_undecodable_record_after_an_invalid_value_is_reported_first(
        self, log_path: Path, allowed: set[str]
    ) -> None:
        """Damage found by the scan wins over a value that fails validation earlier in the file."""
        allowed.add("ok")
        with TypedStore.open(log_path, str, AllowedName) as store:
            store["k"] = "ok"
        append_frame(log_path, insert("bad", "refused"))
        damaged = append_frame(log_path, _format.insert_body(msgpack.packb("x"), b"\xc1"))
        append_frame(log_path, insert("after", "ok"))
        with pytest.raises(CorruptLogError, match="undecodable") as caught:
            TypedStore.open(log_path, str, AllowedName, readonly=True)
        assert caught.value.offset == damaged

    def test_batch_with_an_invalid_and_an_undecodable_value_is_corrupt(
        self, log_path: Path, allowed: set[str]
    ) -> None:
        """A batch holding an undecodable value is damage, whatever its other operations hold."""
        allowed.add("ok")
        with TypedStore.open(log_path, str, AllowedName) as store:
            store["k"] = "ok"
        body = _format.batch_body(
            [insert("a", "refused"), _format.insert_body(msgpack.packb("b"), b"\xc1")]
        )
        offset = append_frame(log_path, body)
        with pytest.raises(CorruptLogError, match="undecodable") as caught:
            TypedStore.open(log_path, str, AllowedName, readonly=True)
        assert caught.value.offset == offset

    def test_first_of_two_invalid_live_values_in_entry_order_is_reported(
        self, log_path: Path, allowed: set[str]
    ) -> None:
        """With two live invalid values, the error names the entry that comes first in the store."""
        allowed.update({"ok", "bad"})
        with TypedStore.open(log_path, str, AllowedName) as store:
            store["first"] = "ok"
            store["second"] = "ok"
            store["second"] = "bad"
            offset = log_path.stat().st_size
            store["first"] = "bad"
        allowed.discard("bad")
        with pytest.raises(SchemaMismatchError, match="'first'") as caught:
            TypedStore.open(log_path, str, AllowedName)
        assert (caught.value.offset, caught.value.key) == (offset, "first")

    def test_invalid_value_in_a_skipped_range_does_not_stop_the_open(
        self, log_path: Path, allowed: set[str]
    ) -> None:
        """In skip mode a record inside a damaged range is never validated, and the rest replays."""
        allowed.update({"ok", "bad"})
        with TypedStore.open(log_path, str, AllowedName) as store:
            store["k"] = "ok"
            damaged = log_path.stat().st_size
            store["k"] = "bad"
            store["other"] = "ok"
        allowed.discard("bad")
        data = bytearray(log_path.read_bytes())
        data[damaged + 5] ^= 0xFF  # the body length byte of the record holding "bad"
        log_path.write_bytes(bytes(data))
        config = StoreConfig(recovery="skip")
        with TypedStore.open(log_path, str, AllowedName, config=config, readonly=True) as store:
            assert dict(store.items()) == {"k": "ok", "other": "ok"}
            assert store.recovery is not None
            assert store.recovery.offset == damaged

    def test_invalid_utf8_str_key_is_corrupt_in_every_mode(self, log_path: Path) -> None:
        """A checksum-valid record whose short str key is not UTF-8 is damage even in skip mode."""
        with TypedStore.open(log_path, str, int) as store:
            store["k"] = 1
        offset = append_frame(log_path, _format.insert_body(b"\xa2\xff\xfe", msgpack.packb(2)))
        append_frame(log_path, insert("after", 3))
        config = StoreConfig(recovery="skip")
        with pytest.raises(CorruptLogError, match="undecodable") as caught:
            TypedStore.open(log_path, str, int, config=config)
        assert caught.value.offset == offset


class TestGarbageCollector:
    """Replay pauses the cyclic collector and always turns it back as it was."""

    @pytest.mark.parametrize("enabled", [True, False], ids=["gc-enabled", "gc-disabled"])
    @pytest.mark.parametrize("fails", [False, True], ids=["opens", "raises"])
    def test_open_leaves_the_garbage_collector_as_it_found_it(
        self, log_path: Path, allowed: set[str], enabled: bool, fails: bool
    ) -> None:
        """Replay pauses the cyclic collector; afterwards it is on or off as before, even on
        error."""
        allowed.add("name")
        with TypedStore.open(log_path, str, AllowedName) as store:
            store["k"] = "name"
        if fails:
            allowed.clear()
        was_enabled = gc.isenabled()
        try:
            if not enabled:
                gc.disable()
            if fails:
                with pytest.raises(SchemaMismatchError, match="'k'"):
                    TypedStore.open(log_path, str, AllowedName)
            else:
                TypedStore.open(log_path, str, AllowedName).close()
            assert gc.isenabled() is enabled
        finally:
            if was_enabled:
                gc.enable()

    def test_keyboard_interrupt_in_a_migration_leaves_the_collector_enabled(
        self, log_path: Path
    ) -> None:
        """An interrupt raised while replay runs application code still turns the collector back
        on."""
        with TypedStore.open(log_path, str, str) as store:
            store["k"] = "v"

        def interrupted(data: Any) -> Any:
            raise KeyboardInterrupt

        assert gc.isenabled()
        with pytest.raises(KeyboardInterrupt, match=r"^$"):
            TypedStore.open(log_path, str, str, version=2, migrations={1: interrupted})
        assert gc.isenabled()
        with TypedStore.open(log_path, str, str) as store:
            assert dict(store.items()) == {"k": "v"}


def upper(data: Any) -> Any:
    """Migration 1 -> 2 of a str value: mark it as migrated."""
    return f"{data}!"


class TestReplayGivesWhatWasWritten:
    """Replay gives the keys, in the order, that were written."""

    def test_key_reinserted_after_removal_goes_to_the_end_on_replay(self, log_path: Path) -> None:
        """A key removed and inserted again replays at the end, also when its value is migrated."""
        with TypedStore.open(log_path, str, str) as store:
            store["a"] = "1"
            store["b"] = "2"
            del store["a"]
            store["a"] = "3"
            store["c"] = "4"
        with TypedStore.open(log_path, str, str, version=2, migrations={1: upper}) as store:
            assert list(store.items()) == [("b", "2!"), ("a", "3!"), ("c", "4!")]

    @pytest.mark.parametrize("length", range(0, 40))
    def test_str_keys_of_every_short_length_replay_equal(self, log_path: Path, length: int) -> None:
        """ASCII and multi-byte str keys around msgpack's 31-byte fixstr limit replay as written."""
        keys = ["a" * length, "é" * (length // 2) + "z" * (length % 2), "😀" * (length // 4) + "b"]
        expected = {key: index for index, key in enumerate(keys)}
        with TypedStore.open(log_path, str, int) as store:
            for key, index in expected.items():
                store[key] = index
        with TypedStore.open(log_path, str, int) as store:
            assert list(store.items()) == list(expected.items())
            assert all(key in store for key in keys)


class TestMigrationsAndDeferredValues:
    """Only live values of an older schema are migrated, in memory for readonly opens."""

    def test_old_value_replaced_under_the_current_schema_is_never_migrated(
        self, log_path: Path
    ) -> None:
        """A value of an older schema that a current record replaces is dropped, not migrated."""
        with TypedStore.open(log_path, str, str) as store:
            store["k"] = "old"
            store["other"] = "x"
        migrated: list[object] = []

        def spy(data: Any) -> Any:
            migrated.append(data)
            return upper(data)

        with TypedStore.open(log_path, str, str, version=2, migrations={1: spy}) as store:
            store["k"] = "new"
        migrated.clear()
        with TypedStore.open(log_path, str, str, version=2, migrations={1: spy}) as store:
            assert dict(store.items()) == {"k": "new", "other": "x!"}
        assert migrated == ["x"]

    def test_readonly_open_migrates_in_memory_and_writes_nothing(self, log_path: Path) -> None:
        """A read-only open of an older log upgrades its values in memory and leaves the file as
        is."""
        with TypedStore.open(log_path, str, str) as store:
            store["k"] = "v"
            store["k"] = "w"
        before = log_path.read_bytes()
        with TypedStore.open(
            log_path, str, str, version=2, migrations={1: upper}, readonly=True
        ) as s:
            assert dict(s.items()) == {"k": "w!"}
        assert log_path.read_bytes() == before


class SignallingDatetime(datetime.datetime):
    """A datetime that raises SIGUSR1 while it is encoded: a signal arriving at that instant."""

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        os.kill(os.getpid(), signal.SIGUSR1)
        return super().isoformat(sep, timespec)


@pytest.fixture
def audit_on_signal(tmp_path: Path) -> Iterator[TypedStore[str, int]]:
    """A store that a SIGUSR1 handler writes to, as a handler saving state on a signal does."""
    audit = TypedStore.open(tmp_path / "audit.log", str, int)

    def handler(signum: int, frame: FrameType | None) -> None:
        audit[f"signal-{signum}"] = signum

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield audit
    finally:
        signal.signal(signal.SIGUSR1, previous)
        audit.close()


STAMPS = [datetime.datetime(2020, 1, 1), datetime.datetime(2022, 1, 1)]


Stamp = frozenset[tuple[int, datetime.datetime]]


class TestPerThreadPacker:
    """The reused packer serves signal handlers and threads without mixing their bytes."""

    def test_write_interrupted_by_a_signal_handler_that_writes_succeeds(
        self, log_path: Path, audit_on_signal: TypedStore[str, int]
    ) -> None:
        """A write whose encoding a store-writing signal handler interrupts is stored as given."""
        value = [STAMPS[0], SignallingDatetime(2021, 1, 1), STAMPS[1]]
        with TypedStore.open(log_path, str, list[datetime.datetime]) as store:
            store["k"] = value
        assert "signal-10" in audit_on_signal
        with TypedStore.open(log_path, str, list[datetime.datetime]) as store:
            assert store["k"] == [STAMPS[0], datetime.datetime(2021, 1, 1), STAMPS[1]]

    def test_signal_handler_write_during_another_encoding_reopens(
        self, log_path: Path, audit_on_signal: TypedStore[str, int]
    ) -> None:
        """What a signal handler writes while another store encodes a value reads back on reopen."""
        value = [STAMPS[0], SignallingDatetime(2021, 1, 1), STAMPS[1]]
        store = TypedStore.open(log_path, str, list[datetime.datetime])
        # This write's own outcome is the test above; this one is about the handler's.
        with store, contextlib.suppress(EncodingError):
            store["k"] = value
        audit_on_signal.close()
        with TypedStore.open(audit_on_signal.path, str, int) as audit:
            assert dict(audit.items()) == {"signal-10": 10}

    @pytest.mark.slow
    def test_thread_that_wrote_a_large_value_does_not_keep_a_buffer_of_its_size(
        self,
        log_path: Path,
    ) -> None:
        """Once a thread's write of a large value returns, no buffer that large stays allocated."""
        size = 8 * 1024 * 1024

        def write_large() -> None:
            with TypedStore.open(log_path, str, list[int]) as store:
                store["big"] = [1] * size  # a mutable value: the store keeps only its bytes

        held = bytes_held_after_a_thread_ran(write_large)
        assert held < size // 4, f"{held} bytes still allocated after an {size}-byte value"

    def test_set_keys_written_from_many_threads_replay_equal(self, log_path: Path) -> None:
        """Threads writing frozenset keys of tuples and datetimes at once produce a log that
        replays."""
        base = datetime.datetime(2024, 1, 1)

        def key(thread: int, index: int) -> Stamp:
            return frozenset(
                (n, base + datetime.timedelta(days=thread, seconds=n)) for n in range(index % 5 + 1)
            )

        with TypedStore.open(log_path, Stamp, frozenset[datetime.datetime]) as store:

            def work(thread: int) -> None:
                for index in range(150):
                    store[key(thread, index)] = frozenset({base, base + datetime.timedelta(index)})

            threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            expected = dict(store.items())
        assert len(expected) == 4 * 5
        with TypedStore.open(log_path, Stamp, frozenset[datetime.datetime]) as store:
            assert dict(store.items()) == expected
            assert store[frozenset(reversed(sorted(key(0, 4))))] == expected[key(0, 4)]

    @pytest.mark.slow
    def test_plain_data_packed_large_leaves_no_buffer_of_its_size(self, log_path: Path) -> None:
        """The one packer of plain keys and values keeps no buffer as large as a large key
        it packed (a removal of an absent key packs it and stores nothing)."""
        size = 8 * 1024 * 1024
        with TypedStore.open(log_path, str, bytes) as store:

            def look_up_large() -> None:
                assert store.pop("k" * size, None) is None  # packed to find it, absent

            held = bytes_held_after_a_thread_ran(look_up_large)
            assert held < size // 4, f"{held} bytes still allocated after an {size}-byte key"
            store["k" * 100] = b"v" * size  # a pair too, then a small write after it
            store["small"] = b"s"
        with TypedStore.open(log_path, str, bytes) as store:
            assert store["k" * 100] == b"v" * size
            assert store["small"] == b"s"

    def test_plain_writes_from_many_threads_keep_their_own_bytes(self, log_path: Path) -> None:
        """Threads switching every microsecond while writing plain keys and values, some
        large enough to replace the shared packer, each store exactly what they gave."""
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            with TypedStore.open(log_path, str, str) as store:

                def work(thread: int) -> None:
                    for index in range(400):
                        size = 70_000 if index % 50 == 0 else index % 7
                        store[f"{thread}-{index}"] = f"{thread}:{index}:" + "x" * size
                        if index % 3 == 0 and index:
                            del store[f"{thread}-{index - 1}"]

                threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                expected = dict(store.items())
        finally:
            sys.setswitchinterval(interval)
        assert all(value.startswith(key.replace("-", ":") + ":") for key, value in expected.items())
        assert len(expected) == 4 * (400 - 133)
        with TypedStore.open(log_path, str, str) as store:
            assert dict(store.items()) == expected

    def test_a_write_from_inside_a_plain_pack_at_every_bytecode_keeps_both(
        self, tmp_path: Path
    ) -> None:
        """A signal handler's write landing anywhere inside the shared plain packer's
        calls (before the store's lock: the write is not refused) packs with the same
        packer: each write stores its own bytes."""
        written: dict[str, str] = {}
        nested: dict[str, str] = {}
        with (
            TypedStore.open(tmp_path / "a.log", str, str) as store,
            TypedStore.open(tmp_path / "b.log", str, str) as other,
        ):
            step = 0
            while True:
                tracer, landed = _write_inside_a_plain_pack(step, other, nested)
                sys.settrace(tracer)
                try:
                    store[f"k{step}"] = written[f"k{step}"] = "w" * (step + 1)
                finally:
                    sys.settrace(None)
                if not landed:
                    break
                step += 1
            assert step > 10  # every bytecode of the pack was a landing point
            assert dict(store.items()) == written
            assert dict(other.items()) == nested
        with TypedStore.open(tmp_path / "a.log", str, str) as store:
            assert dict(store.items()) == written
        with TypedStore.open(tmp_path / "b.log", str, str) as other:
            assert dict(other.items()) == nested


def _write_inside_a_plain_pack(
    step: int, other: TypedStore[str, str], nested: dict[str, str]
) -> tuple[Callable[[FrameType, str, object], Any], list[bool]]:
    """Return a trace function that writes to ``other`` at the ``step``-th bytecode run
    inside the plain packer's functions, and a list that holds True once it did."""
    pack_codes = {_packing.packed_plain_pair.__code__, _packing.packb_plain.__code__}
    seen = [0]
    landed: list[bool] = []

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code not in pack_codes:
            return None
        frame.f_trace_opcodes = True
        if event == "opcode" and not landed:
            seen[0] += 1
            if seen[0] - 1 == step:
                landed.append(True)
                sys.settrace(None)  # the handler's own write is not traced
                other[f"h{step}"] = nested[f"h{step}"] = "n" * step
        return tracer

    return tracer, landed


class TestShortWrites:
    """A write failing after a short write leaves no partial record."""

    def test_write_failing_after_a_short_write_leaves_no_partial_record(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pwrite that fails after an earlier short one cuts the file back to its last record."""
        with TypedStore.open(log_path, str, int) as store:
            store["a"] = 1
            size = log_path.stat().st_size
            calls: list[int] = []
            real_pwrite = os.pwrite

            def short_then_full_disk(fd: int, data: bytes | memoryview, offset: int) -> int:
                calls.append(offset)
                if len(calls) == 1:
                    return real_pwrite(fd, bytes(data)[:5], offset)
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "pwrite", short_then_full_disk)
            with pytest.raises(OSError, match="No space left"):
                store["b"] = 2
            monkeypatch.undo()
            assert calls == [size, size + 5]
            assert log_path.stat().st_size == size
            store["c"] = 3
        with TypedStore.open(log_path, str, int) as store:
            assert dict(store.items()) == {"a": 1, "c": 3}


FAIL_AFTER: list[int] = []
"""When set, the number of serializations left before ``Chunk`` raises."""


class Chunk(BaseModel):
    """A frozen model (kept as it is, so compaction serializes it) that can fail on demand."""

    model_config = ConfigDict(frozen=True)

    data: bytes

    @pydantic.field_serializer("data")
    def _serialize(self, data: bytes) -> bytes:
        if FAIL_AFTER:
            FAIL_AFTER[0] -= 1
            if FAIL_AFTER[0] == 0:
                raise ValueError("serializer failed")
        return data


def fill_chunks(store: TypedStore[str, Chunk]) -> None:
    """Store 40 records of 64 KiB each: more than one of compaction's 1 MiB writes."""
    for index in range(40):
        store[f"k{index}"] = Chunk(data=bytes([index]) * 65536)


def assert_old_log_kept(store: TypedStore[str, Chunk], before: bytes) -> None:
    """Assert the failed compaction left the log as it was, no temp file, and a usable store."""
    assert not _fs.temp_path(store.path).exists()
    assert store.path.read_bytes() == before
    store["after"] = Chunk(data=b"x")
    store.compact()
    store.close()
    with TypedStore.open(store.path, str, Chunk) as reopened:
        assert len(reopened) == 41
        assert reopened["k39"] == Chunk(data=bytes([39]) * 65536)


class TestCompactionFailingWhileStreaming:
    """A compaction failing as it streams its frames keeps the old log whole."""

    def test_compaction_whose_records_fail_to_encode_midway_keeps_the_old_log(
        self,
        log_path: Path,
    ) -> None:
        """A compaction whose records fail to encode after 1 MiB was written keeps the old log
        whole."""
        store = TypedStore.open(log_path, str, Chunk)
        fill_chunks(store)
        before = log_path.read_bytes()
        FAIL_AFTER[:] = [35]
        try:
            with pytest.raises(EncodingError, match="serializer failed"):
                store.compact()
        finally:
            FAIL_AFTER.clear()
        assert_old_log_kept(store, before)

    def test_compaction_interrupted_midway_keeps_the_old_log(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A KeyboardInterrupt while compaction streams its frames keeps the old log whole."""
        store = TypedStore.open(log_path, str, Chunk)
        fill_chunks(store)
        before = log_path.read_bytes()
        encode_frame = _format.encode_frame
        temp_sizes: list[int] = []

        def interrupted(body: bytes, offset: int) -> bytes:
            if offset > 2 * 1024 * 1024:
                temp_sizes.append(_fs.temp_path(log_path).stat().st_size)
                raise KeyboardInterrupt
            return encode_frame(body, offset)

        monkeypatch.setattr(_format, "encode_frame", interrupted)
        with pytest.raises(KeyboardInterrupt, match=r"^$"):
            store.compact()
        monkeypatch.undo()
        assert temp_sizes[0] >= 1024 * 1024
        assert_old_log_kept(store, before)


class TestTypesCompletedAfterOpen:
    """A model pydantic completes only after open is stored and replayed."""

    def test_model_completed_after_open_is_stored_and_replayed(self, log_path: Path) -> None:
        """A model whose forward reference is defined only after open is usable once rebuilt."""

        class Node(BaseModel):
            child: Later | None = None

        store = TypedStore.open(log_path, str, Node)

        class Later(BaseModel):
            x: int

        Node.model_rebuild()
        with store:
            store["a"] = Node(child=Later(x=1))
        with TypedStore.open(log_path, str, Node) as reopened:
            assert reopened["a"] == Node(child=Later(x=1))


class Level(enum.IntEnum):
    LOW = 1


class Label(str):
    """A str subclass: stored as a plain str."""


class TestPlainScalars:
    """Plain keys and values of their exact type skip pydantic; anything else is validated."""

    def test_int_subclass_key_and_value_are_held_as_plain_ints(self, log_path: Path) -> None:
        """An IntEnum given for an int key and value is held as the int a reopen gives."""
        with TypedStore.open(log_path, int, int) as store:
            store[Level.LOW] = Level.LOW
            assert [(type(k), type(v)) for k, v in store.items()] == [(int, int)]

    def test_str_subclass_value_is_held_as_a_plain_str(self, log_path: Path) -> None:
        """A str subclass given for a str value is held as the str a reopen gives."""
        with TypedStore.open(log_path, str, str) as store:
            store["k"] = Label("text")
            assert type(store["k"]) is str

    @pytest.mark.parametrize(
        "value", [0, -1, 2**63, -(2**63), 2**64 - 1], ids=["zero", "neg", "u63", "i64", "u64"]
    )
    def test_int_keys_and_values_at_msgpack_bounds_reopen_equal(
        self, log_path: Path, value: int
    ) -> None:
        """An int at a bound of msgpack's integer formats reopens as the same key and value."""
        with TypedStore.open(log_path, int, int) as store:
            store[value] = value
        with TypedStore.open(log_path, int, int) as reopened:
            assert list(reopened.items()) == [(value, value)]

    def test_int_beyond_64_bits_is_refused(self, log_path: Path) -> None:
        """An int key msgpack cannot hold raises EncodingError and writes nothing."""
        with TypedStore.open(log_path, int, int) as store:
            with pytest.raises(EncodingError, match="cannot encode int"):
                store[2**64] = 1
            assert len(store) == 0

    def test_thread_that_wrote_a_large_bytes_value_does_not_keep_a_buffer_of_its_size(
        self, log_path: Path
    ) -> None:
        """Once a thread's write of a large bytes value returns, no buffer that large stays."""
        size = 8 * 1024 * 1024

        def write_large() -> None:
            with TypedStore.open(log_path, str, bytes) as store:
                store["big"] = bytes(size)

        held = bytes_held_after_a_thread_ran(write_large)
        assert held < size // 4, f"{held} bytes still allocated after an {size}-byte value"

    def test_float_values_keep_sign_infinity_and_nan(self, log_path: Path) -> None:
        """Float values -0.0, inf and NaN reopen as they were stored."""
        with TypedStore.open(log_path, str, float) as store:
            store.update({"neg": -0.0, "inf": math.inf, "nan": math.nan})
        with TypedStore.open(log_path, str, float) as reopened:
            assert math.copysign(1, reopened["neg"]) == -1
            assert reopened["inf"] == math.inf
            assert math.isnan(reopened["nan"])

    @pytest.mark.parametrize("key", [2**64, -(2**63) - 1], ids=["above-u64", "below-i64"])
    def test_int_key_msgpack_cannot_hold_is_absent_for_removals(
        self, log_path: Path, key: int
    ) -> None:
        """An int key beyond msgpack's range is absent to pop, remove and del."""
        with TypedStore.open(log_path, int, int) as store:
            store[1] = 1
            assert (store.pop(key, None), store.remove(key)) == (None, None)
            with pytest.raises(KeyError, match=str(key)):
                del store[key]

    def test_nan_float_key_is_still_refused(self, log_path: Path) -> None:
        """A NaN key is refused even though float values take the plain path."""
        with (
            TypedStore.open(log_path, float, float) as store,
            pytest.raises(EncodingError, match="not equal to itself"),
        ):
            store[math.nan] = 1.0


class Profile(BaseModel):
    """A mutable model whose dump is plain data: writes of it skip the read-back."""

    name: str
    tags: list[str] = []
    scores: dict[str, int] = {}
    blob: bytes = b""
    seen: datetime.datetime | None = None


class StrictProfile(Profile):
    """Profile in pydantic's strict mode: its dump is plain data too."""

    model_config = ConfigDict(strict=True)


class Loose(BaseModel):
    data: Any


class Either(BaseModel):
    value: Union[str, bytes]  # noqa: UP007 - the typing.Union form, as users write it


class Serialized(BaseModel):
    data: Annotated[bytes, pydantic.PlainSerializer(lambda data: bytearray(data))]


M = TypeVar("M", bound=BaseModel)


def unvalidated(model: type[M], **fields: Any) -> M:
    """Return an instance of ``model`` built without validation, from any ``fields``."""
    return model.model_construct(**fields)


PARIS = zoneinfo.ZoneInfo("Europe/Paris")
CET = datetime.timezone(datetime.timedelta(hours=1), "CET")
TINY = datetime.timezone(datetime.timedelta(microseconds=1))
AS_NONE = datetime.timezone(datetime.timedelta(hours=1), "UTC+01:00")
"""A zone named as the unnamed zone of its offset is: still a named zone, as repr shows."""
NAMED_UTC = datetime.timezone(datetime.timedelta(0), "UTC")


def shape(value: object) -> object:
    """Return ``value`` as nested (type, content) pairs, datetimes with their zone and fold."""
    if isinstance(value, BaseModel):
        return type(value), {name: shape(item) for name, item in value}
    if isinstance(value, (list, tuple)):
        return type(value), [shape(item) for item in value]
    if isinstance(value, dict):
        return type(value), {shape(k): shape(v) for k, v in value.items()}
    if isinstance(value, datetime.datetime):
        return type(value), value.isoformat(), repr(value.tzinfo), value.fold
    return type(value), repr(value)


class TestWritesThatSkipTheReadBack:
    """A value whose dump is plain data is not read back; what modify returns still reopens."""

    @pytest.mark.parametrize(
        "value",
        [
            Profile(name="plain", tags=["b", "a"], scores={"x": 1}, blob=b"\x00"),
            Profile(name="utc", seen=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)),
            Profile(name="offset", seen=datetime.datetime(2024, 1, 1, 1, 2, 3, 4, tzinfo=CET)),
            Profile(name="zone", seen=datetime.datetime(2024, 7, 1, tzinfo=PARIS)),
            Profile(name="fold", seen=datetime.datetime(2024, 10, 27, 2, 30, fold=1)),
            Profile(name="microsecond-offset", seen=datetime.datetime(2024, 1, 1, tzinfo=TINY)),
            Profile(name="named-as-none", seen=datetime.datetime(2024, 1, 1, tzinfo=AS_NONE)),
            Profile(name="named-utc", seen=datetime.datetime(2024, 1, 1, tzinfo=NAMED_UTC)),
            unvalidated(Profile, name="set", tags={"c", "a", "b"}),
            unvalidated(Profile, name="tuple", tags=("a", "b")),
            unvalidated(Profile, name=Label("subclass")),
            unvalidated(Profile, name="bytearray", blob=bytearray(b"\x01")),
            unvalidated(Profile, name="bool-for-int", scores={"x": True}),
        ],
        ids=lambda value: value.name,
    )
    def test_modify_returns_what_a_reopen_gives(self, log_path: Path, value: Profile) -> None:
        """What modify returns has the types, zones and order that reopening gives."""
        with TypedStore.open(log_path, str, Profile) as store:
            store["k"] = Profile(name="old")
            returned = store.modify("k", lambda _: value)
        with TypedStore.open(log_path, str, Profile) as reopened:
            assert shape(returned) == shape(reopened["k"])

    @pytest.mark.parametrize(
        ("model", "value"),
        [
            (Loose, Loose(data=bytearray(b"any"))),
            (Either, unvalidated(Either, value=bytearray(b"union"))),
            (Serialized, Serialized(data=b"serializer")),
        ],
        ids=["any", "union", "serializer"],
    )
    def test_types_not_known_to_dump_plain_data_are_read_back(
        self, log_path: Path, model: type[BaseModel], value: BaseModel
    ) -> None:
        """A value of a type whose dump may hold what msgpack changes reads back as a reopen."""
        with TypedStore.open(log_path, str, model) as store:
            returned = store.modify("k", lambda _: value, default=value)
        with TypedStore.open(log_path, str, model) as reopened:
            assert shape(returned) == shape(reopened["k"])

    def test_instance_built_without_validation_is_refused_at_write(self, log_path: Path) -> None:
        """An instance holding a str where an int goes raises ValidationError and writes nothing."""
        with (
            TypedStore.open(log_path, str, Profile) as store,
            pytest.raises(pydantic.ValidationError, match=r"scores\.x"),
        ):
            store["k"] = unvalidated(Profile, name="bad", scores={"x": "many"})
        with TypedStore.open(log_path, str, Profile) as reopened:
            assert len(reopened) == 0

    @pytest.mark.parametrize(
        "value",
        [
            unvalidated(StrictProfile, name="bool-for-int", scores={"x": True}),
            unvalidated(StrictProfile, name="str-for-int", scores={"x": "5"}),
            unvalidated(StrictProfile, name=b"bytes-for-str"),
        ],
        ids=lambda value: str(value.name),
    )
    def test_strict_instance_built_without_validation_is_refused_at_write(
        self, log_path: Path, value: StrictProfile
    ) -> None:
        """An instance breaking a strict rule raises ValidationError and writes nothing."""
        with TypedStore.open(log_path, str, StrictProfile) as store:
            with pytest.raises(pydantic.ValidationError, match="Input should be a valid"):
                store["k"] = value
            assert len(store) == 0
        with TypedStore.open(log_path, str, StrictProfile) as reopened:
            assert len(reopened) == 0

    def test_strict_instance_with_valid_data_is_stored(self, log_path: Path) -> None:
        """A strict model's instance built without validation from valid data is stored."""
        value = unvalidated(StrictProfile, name="ok", tags=["a"], scores={"x": 1}, seen=None)
        with TypedStore.open(log_path, str, StrictProfile) as store:
            returned = store.modify("k", lambda _: value, default=value)
        with TypedStore.open(log_path, str, StrictProfile) as reopened:
            assert (
                shape(returned)
                == shape(reopened["k"])
                == shape(StrictProfile(name="ok", tags=["a"], scores={"x": 1}))
            )


def bytes_held_after_a_thread_ran(write: Callable[[], None]) -> int:
    """Return how many bytes stay allocated once a thread ran ``write``, measured while the
    thread is still alive (so its thread-local state, such as a packer, counts)."""
    written, release = threading.Event(), threading.Event()

    def worker() -> None:
        write()
        written.set()
        release.wait(30)

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        thread = threading.Thread(target=worker)
        thread.start()
        written.wait(60)
        gc.collect()
        return int(tracemalloc.get_traced_memory()[0] - baseline)
    finally:
        tracemalloc.stop()
        release.set()
        thread.join()


# -- replay's short path ----------------------------------------------------------------------


class Stamped(BaseModel):
    """A mutable model holding a datetime, as replay's short path decodes the most."""

    name: str
    at: datetime.datetime
    tags: list[str] = []


class Aliased(BaseModel):
    """A model stored by field name whose field has an alias: validated by name on replay."""

    model_config = ConfigDict(populate_by_name=True)

    full_name: str = pydantic.Field(alias="fullName")


class StrictPair(BaseModel):
    """Strict, with a tuple field msgpack gives back as a list: replay must validate laxly."""

    model_config = ConfigDict(strict=True)

    pair: tuple[int, int]


class Nested(BaseModel):
    """A plain model holding a strict one: the strict config is found inside it."""

    inner: StrictPair


INTERRUPT_ON: set[str] = set()


def _interruptible(name: str) -> str:
    if name in INTERRUPT_ON:
        raise KeyboardInterrupt
    return name


InterruptibleName = Annotated[str, pydantic.AfterValidator(_interruptible)]
"""A type whose validator raises KeyboardInterrupt for the names in ``INTERRUPT_ON``."""


def _replayed(
    path: Path, key_type: Any, value_type: Any, monkeypatch: pytest.MonkeyPatch, *, general: bool
) -> object:
    """Return what opening ``path`` gives: its items (with their types), or the error."""
    with monkeypatch.context() as patch:
        if general:  # every record through Declared.insert and Declared.remove
            patch.setattr(_codec.Codec, "decoding", lambda self: None)
        try:
            with TypedStore.open(path, key_type, value_type, readonly=True) as store:
                return [(key, type(key), value, type(value)) for key, value in store.items()]
        except (CorruptLogError, SchemaMismatchError) as exc:
            return type(exc), exc.offset, str(exc)


def _both_ways(
    path: Path, key_type: Any, value_type: Any, monkeypatch: pytest.MonkeyPatch
) -> object:
    """Return what an open gives, checking that the short path gives what the general one does."""
    short = _replayed(path, key_type, value_type, monkeypatch, general=False)
    assert short == _replayed(path, key_type, value_type, monkeypatch, general=True)
    return short


class TestReplayShortPath:
    """Runs of bare records replay as record-by-record replay does (``Declared.apply_bare``)."""

    def test_models_with_datetimes_removals_and_reinsertions(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Values, zones, order and removals come back as the general path gives them."""
        zones = [datetime.UTC, TINY, datetime.timezone(datetime.timedelta(hours=-5)), None]
        with TypedStore.open(log_path, str, Stamped) as store:
            for index in range(3000):  # more than one run of bare records
                at = datetime.datetime(2020, 1, 1, 12, 0, index % 60, tzinfo=zones[index % 4])
                store[f"user:{index}" * (1 + index % 5)] = Stamped(name=f"n{index}", at=at)
            for index in range(0, 3000, 7):
                del store[f"user:{index}" * (1 + index % 5)]
            store["user:14" * 5] = Stamped(name="back", at=datetime.datetime(2021, 1, 1))
        items = _both_ways(log_path, str, Stamped, monkeypatch)
        assert isinstance(items, list)
        assert len(items) == 3000 - len(range(0, 3000, 7)) + 1
        assert items[-1][0] == "user:14" * 5
        assert {value.at.tzinfo for _, _, value, _ in items} == set(zones)

    def test_plain_keys_and_values_of_other_types_in_the_log(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Stored data not exactly of the plain type (an int for a float, a bool key for an int
        key, a non-UTF-8 str) takes the general path, whatever it then makes of it."""
        with TypedStore.open(log_path, int, float) as store:
            store[-(2**63)] = 1.5
            store[2**64 - 1] = -0.0
        append_frame(log_path, insert(7, 3))  # an int stored for a float
        append_frame(log_path, insert(True, 2.5))  # a bool key for an int key
        append_frame(log_path, _format.remove_body(msgpack.packb(2**64 - 1)))
        items = _both_ways(log_path, int, float, monkeypatch)
        assert items == [
            (-(2**63), int, 1.5, float),
            (7, int, 3.0, float),
            (1, int, 2.5, float),
        ]
        append_frame(log_path, _format.insert_body(b"\xa2\xff\xfe", msgpack.packb(1.0)))
        error = _both_ways(log_path, int, float, monkeypatch)
        assert isinstance(error, tuple)
        assert error[0] in (CorruptLogError, SchemaMismatchError)

    def test_invalid_utf8_str_key_in_a_run_is_corrupt_at_its_offset(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with TypedStore.open(log_path, str, int) as store:
            store["a"] = 1
        offset = append_frame(log_path, _format.insert_body(b"\xa2\xff\xfe", msgpack.packb(1)))
        append_frame(log_path, insert("b", 2))
        error = _both_ways(log_path, str, int, monkeypatch)
        assert isinstance(error, tuple)
        assert error[:2] == (CorruptLogError, offset)

    def test_values_that_fail_are_deferred_and_reported_only_if_live(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch, allowed: set[str]
    ) -> None:
        allowed.update({"old", "new"})
        with TypedStore.open(log_path, str, AllowedName) as store:
            store["replaced"] = "old"
            store["removed"] = "old"
            store["live"] = "new"
            store["replaced"] = "new"
            del store["removed"]
            store["kept"] = "old"
        allowed.discard("old")
        error = _both_ways(log_path, str, AllowedName, monkeypatch)
        assert isinstance(error, tuple)
        assert error[0] is SchemaMismatchError
        assert "'kept'" in str(error[2])
        allowed.add("old")
        assert _both_ways(log_path, str, AllowedName, monkeypatch) == [
            ("replaced", str, "new", str),
            ("live", str, "new", str),
            ("kept", str, "old", str),
        ]

    def test_data_msgpack_reads_only_another_way(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A map keyed by arrays and an unknown extension type replay as the general path has it."""
        with TypedStore.open(log_path, str, Loose) as store:
            store["tuple keys"] = Loose(data={(1, 2): "x"})
        append_frame(
            log_path,
            insert("ext", {"data": msgpack.ExtType(42, b"raw")}),
        )
        items = _both_ways(log_path, str, Loose, monkeypatch)
        assert isinstance(items, list)
        assert [key for key, *_ in items] == ["tuple keys", "ext"]

    @pytest.mark.parametrize(
        ("value_type", "value"),
        [
            (Aliased, Aliased(full_name="Ada")),
            (StrictPair, StrictPair(pair=(1, 2))),
            (Nested, Nested(inner=StrictPair(pair=(3, 4)))),
            (Stamped, Stamped(name="a", at=datetime.datetime(2020, 1, 1))),
        ],
    )
    def test_types_whose_decoding_options_matter_replay(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch, value_type: Any, value: BaseModel
    ) -> None:
        """Validated laxly and by field name, as without the short path, with or without
        the options the type needs."""
        with TypedStore.open(log_path, str, value_type) as store:
            store["k"] = value
        assert _both_ways(log_path, str, value_type, monkeypatch) == [("k", str, value, value_type)]

    def test_keyboard_interrupt_from_a_validator_in_a_run_stops_the_open_only(
        self, log_path: Path
    ) -> None:
        """An interrupt a validator raises in the short path ends the open, which leaves the
        collector on and the log as it was; the next open reads it whole."""
        with TypedStore.open(log_path, str, InterruptibleName) as store:
            store["x"] = "a"
            store["y"] = "b"
        before = log_path.read_bytes()
        INTERRUPT_ON.add("b")
        try:
            with pytest.raises(KeyboardInterrupt, match=r"^$"):
                TypedStore.open(log_path, str, InterruptibleName)
        finally:
            INTERRUPT_ON.clear()
        assert gc.isenabled()
        assert log_path.read_bytes() == before
        with TypedStore.open(log_path, str, InterruptibleName) as store:
            assert dict(store.items()) == {"x": "a", "y": "b"}

    @pytest.mark.parametrize(
        ("value_type", "matters"),
        [
            (Stamped, False),
            (int, False),
            (list[Stamped], False),
            (Aliased, True),
            (StrictPair, True),
            (Nested, True),
            (Annotated[int, pydantic.Strict()], True),
            (dict[str, Aliased], True),
        ],
    )
    def test_decoding_options_are_passed_where_they_may_matter(
        self, value_type: Any, matters: bool
    ) -> None:
        schema = pydantic.TypeAdapter(value_type).core_schema
        assert _codec.decoding_options_matter(schema) is matters


def _bare_run(buf: bytes, offset: int, limit: int) -> tuple[list[int], int]:
    """Return what ``_format.bare_records`` returns, found with read_frame and decode_body."""
    found: list[int] = []
    while limit and len(buf) - offset >= 17:
        end = _format.read_frame(buf, offset)
        if end == -1:
            break
        body = _format.frame_body(buf, offset, end)
        try:
            ops = _format.decode_body(body)
        except _format.FormatError:
            break
        if body[0] == _format.RecordKind.INSERT:
            found += (offset, end - len(ops[0].value or b""), end)
        elif body[0] == _format.RecordKind.REMOVE:
            found += (offset, 0, end)
        else:
            break
        offset = end
        limit -= 1
    return found, offset


class TestBareRecords:
    """``_format.bare_records`` finds what the general frame reading finds, however damaged."""

    def test_every_cut_and_every_flipped_byte(self) -> None:
        header = _format.encode_header(b"\x80")
        bodies = [
            insert("a", 1),
            _format.remove_body(msgpack.packb("a")),
            insert("key", [1, 2]),
            _format.batch_body([insert("b", 2)]),
            insert("c", 3),
            _format.remove_body(msgpack.packb(7)),
        ]
        log = header
        for body in bodies:
            log += _format.encode_frame(body, len(log))
        cases = [log[:cut] for cut in range(len(header), len(log) + 1)]
        for index in range(len(header), len(log)):
            for flip in (0x01, 0x80):
                damaged = bytearray(log)
                damaged[index] ^= flip
                cases.append(bytes(damaged))
        for buf in cases:
            for limit in (1, 2, 100):
                assert _format.bare_records(buf, len(header), 0, limit) == _bare_run(
                    buf, len(header), limit
                )
        found, stop = _format.bare_records(log, len(header), 0, 100)
        assert len(found) == 3 * 3  # three frames, three numbers each
        assert stop == len(header) + sum(len(body) + 12 for body in bodies[:3])

    def test_an_insert_with_an_impossible_key_length_ends_the_run(self) -> None:
        header = _format.encode_header(b"\x80")
        log = header + _format.encode_frame(insert("a", 1), len(header))
        stop = len(log)
        for key_length in (0, 2, 100):
            body = b"\x01" + key_length.to_bytes(4, "little") + msgpack.packb("a")
            bad = log + _format.encode_frame(body, stop)
            found, end = _format.bare_records(bad, len(header), 0, 100)
            assert (len(found), end) == (3, stop)
            assert _bare_run(bad, len(header), 100) == (found, end)
