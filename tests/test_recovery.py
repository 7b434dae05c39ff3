"""Opening damaged logs: cuts at every byte, flipped bytes, foreign files, recovery modes.

README ("Durability and recovery") and docs/FORMAT.md ("Replay"); the byte layout is in
``typedstore._format``. Every log here is written with ``sync_on_write=True`` and
the file size is recorded after each acknowledged write, so each record boundary
comes with the exact state a reopen must give.
"""

from __future__ import annotations

import logging
import os
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Offsets
from tests.models import Point, User
from typedstore import (
    Collection,
    CorruptLogError,
    Database,
    NotAStoreError,
    Recovery,
    RecoveryMode,
    SchemaMismatchError,
    StoreConfig,
    StoreError,
    TypedStore,
    _format,
    _fs,
)

State = list[tuple[str, User]]

SYNCED = StoreConfig(sync_on_write=True)
MAGIC_AND_VERSION = len(_format.MAGIC) + 2
"""Header bytes whose damage makes a file foreign (magic, format version) rather than corrupt."""


def birthday(user: User) -> User:
    """Return ``user`` one year older."""
    return user.model_copy(update={"age": user.age + 1})


def read_state(path: Path, *, readonly: bool = True) -> State:
    """Open the log at ``path`` and return its entries in order."""
    with TypedStore.open(path, str, User, readonly=readonly) as store:
        return list(store.items())


def sibling_names(path: Path) -> set[str]:
    """Return the names of the files in the log's folder."""
    return {entry.name for entry in path.parent.iterdir()}


@dataclass(frozen=True)
class History:
    """A small complete log and the state at each record boundary."""

    data: bytes
    boundaries: list[int]
    """File size after the header and after each acknowledged write."""
    states: list[State]
    """State at each boundary."""
    batch: int
    """Index in ``boundaries`` of the write that was a transaction."""

    @property
    def header_end(self) -> int:
        return self.boundaries[0]

    def record_index(self, size: int) -> int:
        """Return the index of the last boundary at or before ``size``."""
        return max(i for i, boundary in enumerate(self.boundaries) if boundary <= size)

    def state_at(self, size: int) -> State:
        """Return the state of a log cut to ``size`` bytes."""
        return self.states[self.record_index(size)]


def write_history(path: Path) -> History:
    """Write inserts, a modify, a remove, a transaction and an insert, recording each boundary."""
    boundaries: list[int] = []
    states: list[State] = []
    with TypedStore.open(path, str, User, config=SYNCED) as store:

        def acknowledged() -> None:
            size = path.stat().st_size
            assert not boundaries or size > boundaries[-1], "a write added no record"
            boundaries.append(size)
            states.append(list(store.items()))

        acknowledged()
        store.insert("alice", User(name="Alice", age=30, tags=["admin"]))
        acknowledged()
        store["bob"] = User(name="Bob", age=25)
        acknowledged()
        store.insert("carol", User(name="Carol", age=41, tags=["x", "y"]))
        acknowledged()
        store.modify("alice", birthday)
        acknowledged()
        store.remove("bob")
        acknowledged()
        with store.transaction() as txn:
            txn["dave"] = User(name="Dave", age=52)
            txn.modify("carol", birthday)
            del txn["alice"]
        acknowledged()
        batch = len(boundaries) - 1
        store.insert("erin", User(name="Erin", age=19))
        acknowledged()
    data = path.read_bytes()
    assert len(data) == boundaries[-1]
    return History(data, boundaries, states, batch)


@pytest.fixture
def history(log_path: Path) -> History:
    """The small log of :func:`write_history`, written at ``log_path``."""
    return write_history(log_path)


# -- cuts at every byte offset ----------------------------------------------------------------


def test_every_cut_opens_readonly_to_last_complete_record(
    history: History, log_path: Path, offsets: Offsets
) -> None:
    """A read-only open of the log cut at any offset gives the last complete record's state."""
    for cut in offsets(history.header_end, len(history.data) + 1):
        log_path.write_bytes(history.data[:cut])
        assert read_state(log_path) == history.state_at(cut), f"cut at {cut}"
        assert log_path.read_bytes() == history.data[:cut], f"cut at {cut} was changed"


def test_every_cut_writable_open_truncates_to_last_complete_record(
    history: History, log_path: Path, offsets: Offsets
) -> None:
    """A writable open of a cut log gives the last complete state and cuts the file there."""
    for cut in offsets(history.header_end, len(history.data) + 1):
        log_path.write_bytes(history.data[:cut])
        assert read_state(log_path, readonly=False) == history.state_at(cut), f"cut at {cut}"
        boundary = history.boundaries[history.record_index(cut)]
        assert log_path.read_bytes() == history.data[:boundary], f"cut at {cut}"


def test_every_torn_cut_is_reported_and_logged(
    history: History, log_path: Path, caplog: pytest.LogCaptureFixture, offsets: Offsets
) -> None:
    """A cut inside a record is reported as a torn_tail recovery and logged with bytes dropped."""
    caplog.set_level(logging.WARNING, logger="typedstore")
    for cut in offsets(history.header_end, len(history.data) + 1):
        log_path.write_bytes(history.data[:cut])
        caplog.clear()
        with TypedStore.open(log_path, str, User) as store:
            recovery = store.recovery
        warnings = [r.getMessage() for r in caplog.records if r.name == "typedstore"]
        boundary = history.boundaries[history.record_index(cut)]
        if cut == boundary:
            assert recovery is None, f"cut at {cut}"
            assert warnings == [], f"cut at {cut}"
            continue
        assert recovery is not None, f"cut at {cut}"
        assert (recovery.kind, recovery.offset) == ("torn_tail", boundary), f"cut at {cut}"
        assert recovery.dropped_bytes == cut - boundary
        assert recovery.backup is None
        assert len(warnings) == 1, f"cut at {cut}: {warnings}"
        assert "torn tail" in warnings[0]
        assert f"{cut - boundary} bytes" in warnings[0]


def test_reopen_after_torn_tail_truncation_is_clean(history: History, log_path: Path) -> None:
    """Once a writable open dropped a torn tail, the next open finds nothing to recover."""
    cut = history.boundaries[-2] + 3
    log_path.write_bytes(history.data[:cut])
    TypedStore.open(log_path, str, User).close()
    with TypedStore.open(log_path, str, User) as store:
        assert store.recovery is None
        assert list(store.items()) == history.states[-2]


def test_appends_after_torn_tail_truncation_survive_reopen(
    history: History, log_path: Path
) -> None:
    """A record appended after a torn tail was dropped follows the last complete record."""
    log_path.write_bytes(history.data[: history.boundaries[-1] - 1])
    with TypedStore.open(log_path, str, User) as store:
        store.insert("frank", User(name="Frank", age=60))
    expected = [*history.states[-2], ("frank", User(name="Frank", age=60))]
    assert read_state(log_path) == expected


@pytest.mark.slow
def test_every_cut_inside_batch_opens_to_state_before_batch(
    history: History, log_path: Path
) -> None:
    """A transaction's record cut anywhere applies none of its operations."""
    start, end = history.boundaries[history.batch - 1], history.boundaries[history.batch]
    before = history.states[history.batch - 1]
    assert "dave" not in dict(before)
    for cut in range(start + 1, end):
        for readonly in (True, False):
            log_path.write_bytes(history.data[:cut])
            assert read_state(log_path, readonly=readonly) == before, f"cut at {cut}"


def test_empty_file_opens_as_new_store(log_path: Path) -> None:
    """An empty file (a log cut at offset 0) opens as a new, empty store with a header."""
    log_path.write_bytes(b"")
    with TypedStore.open(log_path, str, User) as store:
        assert list(store.items()) == []
        assert store.recovery is None
    assert log_path.read_bytes().startswith(_format.MAGIC)


def test_cut_inside_magic_is_not_a_store(history: History, log_path: Path) -> None:
    """A file holding only part of the magic number is refused as foreign and left untouched."""
    for cut in range(1, len(_format.MAGIC)):
        for readonly in (True, False):
            log_path.write_bytes(history.data[:cut])
            with pytest.raises(NotAStoreError, match="not a typedstore log"):
                TypedStore.open(log_path, str, User, readonly=readonly)
            assert log_path.read_bytes() == history.data[:cut]


@pytest.mark.parametrize("mode", ["strict", "truncate", "skip"])
def test_cut_inside_header_is_corrupt_at_offset_zero(
    history: History, log_path: Path, mode: RecoveryMode
) -> None:
    """A header cut after the magic is damage at offset 0 in every mode, and nothing changes.

    Headers are written to a temp file and renamed into place, so a short header is never
    a torn write: it is not truncated away, and no recovery mode can rebuild it.
    """
    before = sibling_names(log_path)
    for cut in range(len(_format.MAGIC), history.header_end):
        log_path.write_bytes(history.data[:cut])
        with pytest.raises(CorruptLogError, match="byte offset 0") as caught:
            TypedStore.open(log_path, str, User, config=StoreConfig(recovery=mode))
        assert caught.value.offset == 0
        assert log_path.read_bytes() == history.data[:cut], f"cut at {cut}"
        assert sibling_names(log_path) <= before | {log_path.name + ".lock"}


def test_cut_final_record_embedding_a_frame_is_a_torn_tail(log_path: Path) -> None:
    """A torn final record whose bytes value embeds a complete frame still opens as a torn tail."""
    # A complete frame as it sat in some other log, at that log's first record offset.
    inner = _format.encode_frame(_format.insert_body(msgpack.packb("zz"), msgpack.packb(b"v")), 200)
    with TypedStore.open(log_path, str, bytes, config=SYNCED) as store:
        store["a"] = b"first"
        boundary = log_path.stat().st_size
        store["b"] = b"head" + inner + b"tail" * 4
    data = log_path.read_bytes()
    failures = []
    for cut in range(boundary, len(data)):
        log_path.write_bytes(data[:cut])
        try:
            with TypedStore.open(log_path, str, bytes, readonly=True) as reopened:
                assert dict(reopened.items()) == {"a": b"first"}, f"cut at {cut}"
        except CorruptLogError:
            failures.append(cut)
    assert failures == [], "cuts refused as damage before the tail"


# -- flipped bytes ----------------------------------------------------------------------------


def open_damaged(path: Path, *, readonly: bool) -> tuple[State, Recovery | None] | StoreError:
    """Open the log; return its entries and recovery, or the store error the open raised."""
    try:
        with TypedStore.open(path, str, User, readonly=readonly) as store:
            return list(store.items()), store.recovery
    except (NotAStoreError, CorruptLogError) as exc:
        return exc


def expect_detected(history: History, path: Path, offset: int, *, readonly: bool) -> None:
    """Open the log with the byte at ``offset`` damaged; assert the damage is detected."""
    damaged = path.read_bytes()
    index = history.record_index(offset) + 1 if offset >= history.header_end else 0
    record_start = history.boundaries[index - 1] if index else 0
    outcome = open_damaged(path, readonly=readonly)
    if isinstance(outcome, StoreError):
        if isinstance(outcome, CorruptLogError):
            assert outcome.offset <= record_start, f"flip at {offset} reported at {outcome.offset}"
        else:
            assert offset < MAGIC_AND_VERSION, f"flip at {offset} called a foreign file"
        assert path.read_bytes() == damaged, f"flip at {offset} changed the file"
        return
    state, recovery = outcome
    assert index > 0, f"flip at {offset} in the header went undetected"
    assert recovery is not None, f"flip at {offset} went undetected"
    assert state == history.states[index - 1], f"flip at {offset} gave a wrong state"


@pytest.mark.parametrize("mask", [0xFF, 0x01])
@pytest.mark.parametrize("readonly", [True, False], ids=["readonly", "writable"])
def test_every_flipped_byte_is_detected(
    history: History, log_path: Path, mask: int, readonly: bool, offsets: Offsets
) -> None:
    """A byte flipped anywhere is refused or recovered to the state before its record."""
    for offset in offsets(0, len(history.data)):
        damaged = bytearray(history.data)
        damaged[offset] ^= mask
        log_path.write_bytes(damaged)
        expect_detected(history, log_path, offset, readonly=readonly)


# -- ported seed tests ------------------------------------------------------------------------


def test_torn_tail_after_two_inserts_keeps_both(log_path: Path) -> None:
    """Garbage appended after two inserts is dropped on reopen and both entries remain."""
    alice, bob = User(name="Alice", age=30), User(name="Bob", age=25)
    with TypedStore.open(log_path, str, User) as store:
        store["alice"], store["bob"] = alice, bob
    size = log_path.stat().st_size
    with log_path.open("ab") as file:
        file.write(b"\xff\xff\xff\xff\xde\xad")
    assert read_state(log_path, readonly=False) == [("alice", alice), ("bob", bob)]
    assert log_path.stat().st_size == size


def test_truncated_payload_keeps_only_first(log_path: Path) -> None:
    """A log whose last record lost two bytes reopens with the first entry only, and shrinks."""
    alice = User(name="Alice", age=30)
    with TypedStore.open(log_path, str, User) as store:
        store["alice"] = alice
        first_end = log_path.stat().st_size
        store["bob"] = User(name="Bob", age=25)
    size = log_path.stat().st_size
    with log_path.open("r+b") as file:
        file.truncate(size - 2)
    assert read_state(log_path, readonly=False) == [("alice", alice)]
    assert log_path.stat().st_size == first_end < size - 2


# -- foreign files ----------------------------------------------------------------------------


def future_version() -> bytes:
    """Return a header claiming a format version this typedstore does not read."""
    header = bytearray(_format.encode_header(b"\x80"))
    header[len(_format.MAGIC)] = _format.FORMAT_VERSION + 1
    return bytes(header)


FOREIGN: dict[str, Callable[[random.Random], bytes]] = {
    "text": lambda rng: b"name,age\nalice,30\nbob,25\n",
    "random": lambda rng: rng.randbytes(4096),
    "png": lambda rng: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(64),
    "shorter_than_magic": lambda rng: b"\x89TD",
    "zeros": lambda rng: bytes(512),
    "future_version": lambda rng: future_version(),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_file_writable_open_changes_nothing(
    log_path: Path, rng: random.Random, kind: str
) -> None:
    """A writable open of a foreign file raises NotAStoreError, keeps its bytes, frees the lock."""
    content = FOREIGN[kind](rng)
    log_path.write_bytes(content)
    for _ in range(2):  # the second attempt shows the first released its lock
        with pytest.raises(NotAStoreError, match="not a typedstore log"):
            TypedStore.open(log_path, str, User)
    assert log_path.read_bytes() == content
    assert sibling_names(log_path) <= {log_path.name, log_path.name + ".lock"}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_file_readonly_open_creates_nothing(
    log_path: Path, rng: random.Random, kind: str
) -> None:
    """A read-only open of a foreign file raises NotAStoreError and creates no file."""
    content = FOREIGN[kind](rng)
    log_path.write_bytes(content)
    with pytest.raises(NotAStoreError, match="not a typedstore log"):
        TypedStore.open(log_path, str, User, readonly=True)
    assert log_path.read_bytes() == content
    assert sibling_names(log_path) == {log_path.name}


# -- incompatible types -----------------------------------------------------------------------


def write_points(path: Path) -> int:
    """Write a log of points as plain dicts, the second invalid as a Point; return its offset."""
    with TypedStore.open(path, str, dict[str, int]) as store:
        store["origin"] = {"x": 0, "y": 0}
        offset = path.stat().st_size
        store["bad"] = {"x": 1}
    return offset


@pytest.mark.parametrize("readonly", [True, False], ids=["readonly", "writable"])
def test_incompatible_value_type_raises_schema_mismatch(log_path: Path, readonly: bool) -> None:
    """A record whose value does not validate raises SchemaMismatchError with its offset and key."""
    offset = write_points(log_path)
    content = log_path.read_bytes()
    with pytest.raises(SchemaMismatchError, match="'bad'") as caught:
        TypedStore.open(log_path, str, Point, readonly=readonly)
    assert (caught.value.offset, caught.value.key) == (offset, "bad")
    assert log_path.read_bytes() == content


@pytest.mark.parametrize("readonly", [True, False], ids=["readonly", "writable"])
def test_incompatible_key_type_raises_schema_mismatch(
    history: History, log_path: Path, readonly: bool
) -> None:
    """A record whose key does not validate raises SchemaMismatchError at the first record."""
    with pytest.raises(SchemaMismatchError, match="'alice'") as caught:
        TypedStore.open(log_path, int, User, readonly=readonly)
    assert (caught.value.offset, caught.value.key) == (history.header_end, "alice")
    assert log_path.read_bytes() == history.data


def test_schema_mismatch_with_torn_tail_truncates_nothing(log_path: Path) -> None:
    """A log with both an invalid record and a torn tail raises SchemaMismatchError untouched."""
    write_points(log_path)
    content = log_path.read_bytes() + b"\x00\x01\x02"
    log_path.write_bytes(content)
    with pytest.raises(SchemaMismatchError, match="'bad'"):
        TypedStore.open(log_path, str, Point)
    assert log_path.read_bytes() == content


# -- damage before the tail -------------------------------------------------------------------


@dataclass(frozen=True)
class Damaged:
    """A log whose second record (bob's insert) has a flipped byte."""

    data: bytes
    offset: int
    """Where the damaged record starts."""
    prefix: State
    without_damaged: State


ALICE = User(name="Alice", age=30)
CAROL = User(name="Carol", age=41)


@pytest.fixture
def damaged(log_path: Path) -> Damaged:
    """Write alice, bob, carol and a modify of alice, then flip a byte inside bob's record."""
    with TypedStore.open(log_path, str, User, config=SYNCED) as store:
        store["alice"] = ALICE
        start = log_path.stat().st_size
        store["bob"] = User(name="Bob", age=25)
        end = log_path.stat().st_size
        store["carol"] = CAROL
        store.modify("alice", birthday)
    data = bytearray(log_path.read_bytes())
    data[(start + end) // 2] ^= 0x10
    log_path.write_bytes(data)
    return Damaged(
        bytes(data), start, [("alice", ALICE)], [("alice", birthday(ALICE)), ("carol", CAROL)]
    )


@pytest.mark.parametrize("readonly", [True, False], ids=["readonly", "writable"])
def test_damage_before_tail_raises_and_changes_nothing(
    damaged: Damaged, log_path: Path, readonly: bool
) -> None:
    """Damage with valid records after it raises CorruptLogError at its offset; nothing changes."""
    with pytest.raises(CorruptLogError, match=f"byte offset {damaged.offset} ") as caught:
        TypedStore.open(log_path, str, User, readonly=readonly)
    assert caught.value.offset == damaged.offset
    assert log_path.read_bytes() == damaged.data
    assert sibling_names(log_path) <= {log_path.name, log_path.name + ".lock"}


def test_truncate_mode_copies_aside_and_keeps_prefix(damaged: Damaged, log_path: Path) -> None:
    """recovery='truncate' backs the original up, then keeps the records before the damage."""
    config = StoreConfig(recovery="truncate")
    with TypedStore.open(log_path, str, User, config=config) as store:
        recovery = store.recovery
        assert list(store.items()) == damaged.prefix
    assert recovery is not None
    assert (recovery.kind, recovery.offset) == ("truncated", damaged.offset)
    assert recovery.backup is not None
    assert recovery.backup.read_bytes() == damaged.data


def test_skip_mode_copies_aside_and_drops_damaged_record(damaged: Damaged, log_path: Path) -> None:
    """recovery='skip' backs the original up, then keeps every record but the damaged one."""
    with TypedStore.open(log_path, str, User, config=StoreConfig(recovery="skip")) as store:
        recovery = store.recovery
        assert list(store.items()) == damaged.without_damaged
    assert recovery is not None
    assert (recovery.kind, recovery.offset) == ("skipped", damaged.offset)
    assert recovery.backup is not None
    assert recovery.backup.read_bytes() == damaged.data


@pytest.mark.parametrize("mode", ["truncate", "skip"])
def test_reopen_after_recovery_mode_is_clean(
    damaged: Damaged, log_path: Path, mode: RecoveryMode
) -> None:
    """After a recovery mode rewrote the log, a strict reopen finds no damage and the same state."""
    with TypedStore.open(log_path, str, User, config=StoreConfig(recovery=mode)) as store:
        recovered = list(store.items())
    with TypedStore.open(log_path, str, User) as store:
        assert store.recovery is None
        assert list(store.items()) == recovered


def test_readonly_recovery_mode_changes_nothing(damaged: Damaged, log_path: Path) -> None:
    """A read-only open in a recovery mode shows the recovered state but writes no file."""
    config = StoreConfig(recovery="skip")
    before = sibling_names(log_path)
    with TypedStore.open(log_path, str, User, config=config, readonly=True) as store:
        assert list(store.items()) == damaged.without_damaged
        assert store.recovery is not None
        assert store.recovery.backup is None
    assert log_path.read_bytes() == damaged.data
    assert sibling_names(log_path) == before


# -- interrupted compaction -------------------------------------------------------------------


def leave_temp_file(history: History, log_path: Path) -> Path:
    """Create the temp file an interrupted compaction leaves: a header and part of a record."""
    temp = log_path.with_name(log_path.name + ".compact.tmp")
    temp.write_bytes(history.data[: history.boundaries[1] - 2])
    return temp


def test_leftover_compaction_temp_removed_by_writable_open(
    history: History, log_path: Path
) -> None:
    """A writable open removes ``<log>.compact.tmp`` and replays the log itself."""
    temp = leave_temp_file(history, log_path)
    assert read_state(log_path, readonly=False) == history.states[-1]
    assert not temp.exists()
    assert log_path.read_bytes() == history.data


def test_leftover_compaction_temp_ignored_by_readonly_open(
    history: History, log_path: Path
) -> None:
    """A read-only open leaves ``<log>.compact.tmp`` as it is and replays the log itself."""
    temp = leave_temp_file(history, log_path)
    content = temp.read_bytes()
    assert read_state(log_path) == history.states[-1]
    assert temp.read_bytes() == content


# -- checksum-valid records that do not decode ------------------------------------------------

UNDECODABLE: dict[str, bytes] = {
    "value_reserved_byte": _format.insert_body(msgpack.packb("k"), b"\xc1"),
    "value_cut_short": _format.insert_body(msgpack.packb("k"), b"\x93\x01"),
    "value_trailing_bytes": _format.insert_body(msgpack.packb("k"), b"\x01\x02"),
    "key_reserved_byte": _format.insert_body(b"\xc1", msgpack.packb({"name": "K", "age": 1})),
    "unknown_kind": b"\x09" + msgpack.packb("k"),
    "batch_with_garbage": _format.batch_body(
        [_format.remove_body(msgpack.packb("alice")), _format.insert_body(b"\xc1", b"\x01")]
    ),
}


@pytest.mark.parametrize("kind", sorted(UNDECODABLE))
def test_undecodable_final_record_is_corrupt_not_torn(
    history: History, log_path: Path, kind: str
) -> None:
    """A checksum-valid last record that cannot be decoded raises CorruptLogError; no truncation."""
    content = history.data + _format.encode_frame(UNDECODABLE[kind], len(history.data))
    log_path.write_bytes(content)
    match = f"byte offset {len(history.data)} "
    with pytest.raises(CorruptLogError, match=match) as caught:
        TypedStore.open(log_path, str, User)
    assert caught.value.offset == len(history.data)
    assert log_path.read_bytes() == content


@pytest.mark.parametrize("mode", ["truncate", "skip"])
def test_undecodable_record_is_not_dropped_by_recovery_modes(
    history: History, log_path: Path, mode: RecoveryMode
) -> None:
    """Recovery modes do not drop a checksum-valid record: it raises and nothing is copied."""
    content = history.data + _format.encode_frame(
        UNDECODABLE["value_reserved_byte"], len(history.data)
    )
    log_path.write_bytes(content)
    with pytest.raises(CorruptLogError, match="undecodable"):
        TypedStore.open(log_path, str, User, config=StoreConfig(recovery=mode))
    assert log_path.read_bytes() == content
    assert sibling_names(log_path) <= {log_path.name, log_path.name + ".lock"}


def test_torn_tail_of_a_large_record_is_known_from_its_intact_head(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large record cut short is a torn tail at once: the bytes after it are not scanned."""
    with TypedStore.open(log_path, str, bytes) as store:
        store["small"] = b"x"
        boundary = log_path.stat().st_size
        store["big"] = bytes(range(256)) * 4096
    size = log_path.stat().st_size
    log_path.write_bytes(log_path.read_bytes()[: size - 1])

    def no_scan(buf: bytes, offset: int) -> int:
        raise AssertionError("scanned byte by byte")

    monkeypatch.setattr(_format, "find_next_frame", no_scan)
    with TypedStore.open(log_path, str, bytes, readonly=True) as store:
        assert dict(store) == {"small": b"x"}
        assert store.recovery is not None
        assert store.recovery.kind == "torn_tail"
        assert store.recovery.offset == boundary


# -- how long a torn tail can be -------------------------------------------------------------


def write_users(path: Path, count: int, config: StoreConfig = SYNCED) -> list[tuple[str, User]]:
    """Write ``count`` users to the log at ``path``; return them in order."""
    users = [(f"u{index}", User(name=f"User {index}", age=index % 90)) for index in range(count)]
    with TypedStore.open(path, str, User, config=config) as store:
        for key, user in users:
            store[key] = user
    return users


class TestTornTailBound:
    """A damaged tail is dropped as torn only when a crash can have left it."""

    def test_zeroed_last_buffered_write_is_a_torn_tail(self, log_path: Path) -> None:
        """A crash right after the buffer's last write to the OS, zero-filling all of it, is a
        torn tail: no write of the buffer holds more than ``buf_capacity`` bytes."""
        config = StoreConfig(write_through=False, buf_capacity=4096)
        crashed = log_path.with_name("crashed.log")
        with TypedStore.open(log_path, str, bytes, config=config) as store:
            store.flush()
            before = log_path.stat().st_size
            key = 0
            while log_path.stat().st_size == before:  # until one write of the buffer
                store[f"k{key}"] = b"x" * 1500
                key += 1
            after = log_path.stat().st_size
            crashed.write_bytes(log_path.read_bytes())  # the file as a crash then leaves it
        assert key == 3  # the third record overfilled the buffer: two went, it stays
        assert 3000 < after - before <= config.buf_capacity
        with crashed.open("r+b") as file:
            file.seek(before)
            file.write(bytes(after - before))
        with TypedStore.open(crashed, str, bytes, config=config) as reopened:
            assert reopened.recovery is not None
            assert reopened.recovery.kind == "torn_tail"
            assert len(reopened) == 0

    def test_no_write_of_the_buffer_exceeds_its_capacity(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every write a buffered store hands the OS holds at most ``buf_capacity`` bytes,
        or one record larger than that alone."""
        config = StoreConfig(write_through=False, buf_capacity=4096)
        sizes: list[int] = []
        real_pwrite = os.pwrite

        def pwrite(fd: int, data: bytes, offset: int) -> int:
            sizes.append(len(data))
            return real_pwrite(fd, data, offset)

        with TypedStore.open(log_path, str, bytes, config=config) as store:
            monkeypatch.setattr(os, "pwrite", pwrite)
            for key in range(40):
                store[f"k{key}"] = b"x" * (700 + 97 * key % 1300)
            store["big"] = b"y" * 6000
            store["after"] = b"z"
        assert sizes
        oversized = [size for size in sizes if size > config.buf_capacity]
        assert len(oversized) == 1
        assert 6000 < oversized[0] < 6100  # the big record alone, framed

    def test_joined_logs_are_damage_not_a_torn_tail(self, log_path: Path) -> None:
        """``cat a.log b.log > c.log`` raises CorruptLogError at b's header; nothing changes."""
        first = log_path.with_name("a.log")
        second = log_path.with_name("b.log")
        write_users(first, 3)
        write_users(second, 50)
        joined = first.read_bytes() + second.read_bytes()
        log_path.write_bytes(joined)
        with pytest.raises(CorruptLogError, match=f"byte offset {first.stat().st_size} .*header"):
            TypedStore.open(log_path, str, User)
        assert log_path.read_bytes() == joined

    def test_junk_longer_than_a_buffer_is_damage(self, log_path: Path) -> None:
        """Junk appended past ``buf_capacity`` raises CorruptLogError at its start; no change."""
        write_users(log_path, 3)
        size = log_path.stat().st_size
        junk = bytes(random.Random(SEED_JUNK).randrange(256) for _ in range(5000))
        log_path.write_bytes(log_path.read_bytes() + junk)
        config = StoreConfig(buf_capacity=4096)
        with pytest.raises(CorruptLogError, match=f"byte offset {size} .*more than a crash"):
            TypedStore.open(log_path, str, User, config=config)
        assert log_path.stat().st_size == size + len(junk)

    def test_junk_within_a_buffer_is_a_torn_tail(self, log_path: Path) -> None:
        """Junk no longer than ``buf_capacity`` is what a crash can leave: dropped as torn."""
        users = write_users(log_path, 3)
        size = log_path.stat().st_size
        log_path.write_bytes(log_path.read_bytes() + b"\xff" * 4096)
        config = StoreConfig(buf_capacity=4096)
        with TypedStore.open(log_path, str, User, config=config) as store:
            assert list(store.items()) == users
            assert store.recovery == Recovery("torn_tail", size, 4096)
        assert log_path.stat().st_size == size

    def test_recovery_mode_copies_a_long_damaged_tail_aside(self, log_path: Path) -> None:
        """``recovery='truncate'`` drops a junk tail too long to be torn, after a backup."""
        users = write_users(log_path, 3)
        size = log_path.stat().st_size
        original = log_path.read_bytes() + b"\xff" * 5000
        log_path.write_bytes(original)
        config = StoreConfig(buf_capacity=4096, recovery="truncate")
        with TypedStore.open(log_path, str, User, config=config) as store:
            assert list(store.items()) == users
            assert store.recovery is not None
            assert (store.recovery.kind, store.recovery.offset) == ("truncated", size)
            assert store.recovery.backup is not None
            assert store.recovery.backup.read_bytes() == original

    def test_long_record_cut_short_is_a_torn_tail(self, log_path: Path) -> None:
        """A record longer than ``buf_capacity`` cut short by a crash is still a torn tail."""
        config = StoreConfig(buf_capacity=4096)
        with TypedStore.open(log_path, str, bytes, config=config) as store:
            store["small"] = b"x"
            boundary = log_path.stat().st_size
            store["big"] = bytes(100_000)
        cut = log_path.stat().st_size - 10
        _fs.truncate_file(log_path, cut)
        with TypedStore.open(log_path, str, bytes, config=config) as store:
            assert dict(store) == {"small": b"x"}
            assert store.recovery == Recovery("torn_tail", boundary, cut - boundary)


SEED_JUNK = 20261207


class TestDamageScanSpeed:
    """Finding the next valid frame after damage is linear in the file: each byte is
    checksummed a bounded number of times, whatever the bytes (counted, not timed: speed
    itself is the benchmark's business)."""

    @pytest.mark.slow
    def test_damaged_head_before_a_large_record_is_scanned_linearly(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A damaged head in front of a 64 MiB record is stepped over checksumming each of
        its bytes at most twice."""
        big = random.Random(SEED_JUNK).randbytes(64 * 1024 * 1024)
        counter = damaged_scan_work(log_path, big, monkeypatch)
        assert counter.bytes <= 2 * len(big) + 1024 * 1024

    def test_crafted_heads_claiming_the_whole_file_are_scanned_linearly(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Intact heads every 8 bytes, each claiming a body to the end, cost each byte a
        bounded number of checksums, not one pass per head."""
        write_users(log_path, 1)
        start = log_path.stat().st_size
        log_path.write_bytes(log_path.read_bytes() + crafted_heads(start, 1024 * 1024))
        counter = ChecksumCounter()
        monkeypatch.setattr(_format, "zlib", counter)
        with TypedStore.open(log_path, str, User, readonly=True) as store:
            assert store.recovery == Recovery("torn_tail", start, 1024 * 1024)
        assert counter.bytes <= 4 * log_path.stat().st_size

    @pytest.mark.slow
    def test_damage_over_log_records_costs_what_random_bytes_cost(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Stepping over 16 MiB of records as a log holds them checks about as many
        candidate frames as 16 MiB of random bytes."""
        rng = random.Random(SEED_JUNK)
        size = 16 * 1024 * 1024
        records = b"".join(
            _format.insert_body(
                msgpack.packb(f"user{n}"), msgpack.packb({"id": n, "age": rng.randrange(100)})
            )
            for n in range(size // 25)
        )
        on_records = damaged_scan_work(log_path, records[:size], monkeypatch)
        on_random = damaged_scan_work(
            log_path.with_name("random.log"), rng.randbytes(size), monkeypatch
        )
        assert on_records.calls < 3 * on_random.calls + 1000
        assert on_records.bytes <= 2 * size + 1024 * 1024


class ChecksumCounter:
    """Stands in for ``zlib`` in ``_format``: counts CRC-32 calls and the bytes they cover."""

    def __init__(self) -> None:
        self.calls = 0
        self.bytes = 0

    def crc32(self, data: bytes | memoryview, value: int = 0) -> int:
        """Return ``zlib.crc32(data, value)``, counted."""
        self.calls += 1
        self.bytes += len(data)
        return zlib.crc32(data, value)


def damaged_scan_work(path: Path, big: bytes, monkeypatch: pytest.MonkeyPatch) -> ChecksumCounter:
    """Return the checksum work of a skip-mode open of a log whose record holding ``big``
    has a damaged head and one record follows."""
    with TypedStore.open(path, str, bytes) as store:
        store["big"] = big
        store["after"] = b"x"
    data = bytearray(path.read_bytes())
    data[_format.decode_header(bytes(data))[1]] ^= 0xFF  # the head checksum of the big record
    path.write_bytes(data)
    counter = ChecksumCounter()
    with monkeypatch.context() as patch:
        patch.setattr(_format, "zlib", counter)
        with TypedStore.open(path, str, bytes, readonly=True, config=SKIP) as store:
            assert dict(store) == {"after": b"x"}
    return counter


def crafted_heads(start: int, length: int) -> bytes:
    """Return ``length`` bytes to put at ``start``: from ``start + 8`` on, a frame head every
    8 bytes whose checksum is intact (see docs/FORMAT.md, "Frames"), each claiming a body
    that ends where the bytes end. Heads overlap: a head's body checksum field is the next
    head's checksum, so they are built from the last one back."""
    data = bytearray(length)
    end = start + length
    following = 0
    for offset in reversed(range(start + 8, end - 12, 8)):
        tail = struct.pack("<II", end - offset - 12, following)
        following = zlib.crc32(tail, zlib.crc32(struct.pack("<Q", offset)))
        data[offset - start : offset - start + 12] = struct.pack("<I", following) + tail
    return bytes(data)


SKIP = StoreConfig(recovery="skip")


class TestDamageMessages:
    """Errors about damage say what was found and advise only what can help."""

    def test_damaged_header_does_not_advise_recovery_modes(self, log_path: Path) -> None:
        """A damaged header's error names the header and advises no recovery mode."""
        write_users(log_path, 2)
        data = bytearray(log_path.read_bytes())
        data[MAGIC_AND_VERSION + 4] ^= 0x01  # inside the header's metadata
        log_path.write_bytes(data)
        with pytest.raises(CorruptLogError, match=r"byte offset 0 .*header") as caught:
            TypedStore.open(log_path, str, User)
        assert "recovery=" not in str(caught.value)
        assert "valid records after it" not in str(caught.value)

    def test_error_in_skip_mode_does_not_advise_skip(self, log_path: Path) -> None:
        """An undecodable record found by a ``recovery='skip'`` open does not advise 'skip'."""
        write_users(log_path, 1)
        size = log_path.stat().st_size
        body = _format.insert_body(b"\xc1", b"\x01")  # 0xc1: never valid msgpack
        log_path.write_bytes(log_path.read_bytes() + _format.encode_frame(body, size))
        with pytest.raises(CorruptLogError, match=f"byte offset {size} .*undecodable") as caught:
            TypedStore.open(log_path, str, User, config=SKIP)
        assert "'skip'" not in str(caught.value)

    def test_short_header_of_a_newer_format_names_its_version(self, log_path: Path) -> None:
        """A header cut short after the magic and a newer format version names the version."""
        log_path.write_bytes(_format.MAGIC + struct.pack("<H", _format.FORMAT_VERSION + 1))
        with pytest.raises(NotAStoreError, match=f"format version {_format.FORMAT_VERSION + 1}"):
            TypedStore.open(log_path, str, User)


class TestNextFrameSearch:
    """The fast search for the frame after damage finds what an offset-by-offset check finds."""

    @given(
        filler=st.sampled_from(["random", "zeros", "text", "msgpack"]),
        seed=st.integers(0, 2**32),
        size=st.integers(13, 3000),
        base=st.sampled_from([0, 1000, (1 << 20) - 700, 3 * (1 << 20) - 1500]),
        planted=st.lists(
            st.tuples(
                st.integers(0, 2999),
                st.sampled_from(["valid", "bad body", "past the end", "no kind"]),
                st.binary(max_size=40),
            ),
            max_size=4,
        ),
        start=st.integers(0, 2999),
    )
    @settings(max_examples=150, deadline=None)
    def test_search_matches_a_per_offset_reference(
        self,
        filler: str,
        seed: int,
        size: int,
        base: int,
        planted: list[tuple[int, str, bytes]],
        start: int,
    ) -> None:
        """Any bytes with planted frames give the offset a per-offset check gives."""
        data = bytearray(base) + filler_bytes(filler, random.Random(seed), size)
        for position, flavour, body in planted:
            plant_frame(data, base + position % size, flavour, body)
        buf = bytes(data)
        offset = base + start % size
        assert _format.find_next_frame(buf, offset) == reference_next_frame(buf, offset)


def filler_bytes(kind: str, rng: random.Random, size: int) -> bytes:
    """Return ``size`` bytes of random data, zeros, text or msgpack records."""
    if kind == "random":
        return rng.randbytes(size)
    if kind == "zeros":
        return bytes(size)
    if kind == "text":
        return (b"The quick brown fox jumps over the lazy dog.\n" * (size // 45 + 1))[:size]
    records = b"".join(
        msgpack.packb({"id": number, "age": rng.randrange(100), "name": f"user{number}"})
        for number in range(size // 20 + 1)
    )
    return records[:size]


def plant_frame(data: bytearray, offset: int, flavour: str, body: bytes) -> None:
    """Write at ``offset`` a frame that is valid, has a bad body, claims more bytes than
    follow, or whose body starts with no record kind; what does not fit is cut off."""
    body = bytes([0 if flavour == "no kind" else 1]) + body
    frame = bytearray(_format.encode_frame(body, offset))
    if flavour == "bad body":
        frame[-1] ^= 0xFF
    if flavour == "past the end":
        claimed = max(len(data) - offset - 11, 1)  # one byte more than follows
        tail = struct.pack("<II", claimed, zlib.crc32(body))
        seed = zlib.crc32(struct.pack("<Q", offset))
        frame[:12] = struct.pack("<I", zlib.crc32(tail, seed)) + tail
    data[offset : offset + len(frame)] = frame[: len(data) - offset]


def reference_next_frame(buf: bytes, offset: int) -> int:
    """Return the next frame's offset, checking every offset: an intact head whose body
    starts with a record kind and fits in ``buf`` is either the frame or, its body
    damaged, skipped whole (docs/FORMAT.md, "Replay")."""
    end = _format.read_head(buf, offset)
    position = offset + 1 if end == -1 else end
    while position < len(buf) - _format.FRAME_OVERHEAD:
        end = _format.read_head(buf, position)
        kind = buf[position + _format.FRAME_OVERHEAD] & 0x07
        if end == -1 or end > len(buf) or not 1 <= kind <= 4:
            position += 1
        elif _format.read_frame(buf, position) != -1:
            return position
        else:
            position = end
    return -1


# -- cuts in a database's log: transactions across two collections -----------------------------


class Pair(Database):
    """Users and points in one log."""

    users: Collection[str, User]
    points: Collection[int, Point]


PairState = tuple[State, list[tuple[int, Point]]]


def read_pair(path: Path, *, readonly: bool) -> PairState:
    """Open the database at ``path`` and return both collections' entries in order."""
    with Pair.open(path, readonly=readonly) as pair:
        return list(pair.users.items()), list(pair.points.items())


def write_pair_history(path: Path) -> tuple[bytes, list[int], list[PairState]]:
    """Write single writes to both collections and two transactions across them; return the
    log's bytes, the size after each acknowledged write and the state there."""
    boundaries: list[int] = []
    states: list[PairState] = []
    with Pair.open(path, config=SYNCED) as pair:

        def acknowledged() -> None:
            boundaries.append(path.stat().st_size)
            states.append((list(pair.users.items()), list(pair.points.items())))

        acknowledged()
        pair.users["ada"] = User(name="Ada", age=36)
        acknowledged()
        pair.points[1] = Point(x=1, y=1)
        acknowledged()
        with pair.transaction() as tx:
            tx.users.modify("ada", birthday)
            tx.points[2] = Point(x=2, y=2)
            del tx.points[1]
        acknowledged()
        with pair.transaction() as tx:
            tx.points[3] = Point(x=3, y=3)
            tx.users["bo"] = User(name="Bo", age=5)
        acknowledged()
    return path.read_bytes(), boundaries, states


def test_every_cut_of_a_database_log_opens_to_a_whole_write(
    log_path: Path, offsets: Offsets
) -> None:
    """A database log cut at any byte opens, read-only or writable, to the state after the
    last complete record: a transaction across collections applies whole or not at all."""
    data, boundaries, states = write_pair_history(log_path)
    for cut in offsets(boundaries[0], len(data) + 1):
        expected = states[max(i for i, size in enumerate(boundaries) if size <= cut)]
        for readonly in (True, False):
            log_path.write_bytes(data[:cut])
            assert read_pair(log_path, readonly=readonly) == expected, f"cut at {cut}"
