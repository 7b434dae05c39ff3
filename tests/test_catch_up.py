"""Catching up in shared mode: the short way of bare records against the general way.

A shared handle applies the records other handles appended since it last looked
(README, "Several processes"). Bare inserts and removes of collection 0 take a short
way (``Core._read_bare``); everything from the first other frame on takes the general
one. Each test here runs a handle on the short way beside one held to the general way
(``general``) and checks they end alike: the same entries in the same order, the same
position in the log, the same error where there is damage.
"""

from __future__ import annotations

import gc
import itertools
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.models import User
from tests.test_interrupts import LANDED, _every_step, _Injected, _interrupt_at
from typedstore import (
    Collection,
    CorruptLogError,
    Database,
    Index,
    SchemaMismatchError,
    TypedStore,
    _core,
    _format,
    _replay,
)
from typedstore._core import Core
from typedstore._file_engine import FileEngine


def general(core: Core) -> Core:
    """Hold ``core`` to the general way of catching up (its short way finds nothing)."""

    def nothing(engine: FileEngine) -> bool:
        return False

    core._read_bare = nothing  # type: ignore[method-assign]  # the test's own switch
    return core


@pytest.fixture
def short_ways(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the records the short way applies (to check that a test takes it)."""
    counted: list[int] = []
    real = _replay.resume_bare

    def counting(*args: Any) -> tuple[int, int]:
        found = real(*args)
        counted.append(found[0])
        return found

    monkeypatch.setattr(_core, "resume_bare", counting)
    return counted


def user(index: int) -> User:
    return User(name=f"user {index}", age=index % 90)


def position(store: TypedStore[Any, Any] | Database) -> tuple[int, int, int]:
    """Where ``store`` has read the log to: position, records counted, generation."""
    core = store._core
    return core._known, core._total, core._generation


class TestAgainstTheGeneralWay:
    def test_store_of_models_follows_alike(self, log_path: Path, short_ways: list[int]) -> None:
        """Inserts, replacements and removes another handle wrote, caught up a few at a
        time, leave the short way's handle equal to the general way's, in order and by
        position."""
        rng = random.Random(7)
        with (
            TypedStore.open(log_path, str, User, shared=True) as writer,
            TypedStore.open(log_path, str, User, shared=True) as short,
            TypedStore.open(log_path, str, User, shared=True) as slow,
        ):
            general(slow._core)
            for step in range(300):
                key = f"k{rng.randrange(40)}"
                if rng.random() < 0.3:
                    writer.pop(key, None)
                else:
                    writer[key] = user(step)
                if rng.random() < 0.3:
                    assert list(short.items()) == list(slow.items()) == list(writer.items())
                    assert position(short) == position(slow)
                    for index in (0, -1, len(writer) // 2):  # positions follow too
                        assert short.get_index(index) == writer.get_index(index)
            assert list(short.items()) == list(slow.items()) == list(writer.items())
            assert position(short) == position(slow)
            assert short._core._known == writer._core._known
        assert sum(short_ways) > 250  # the short way applied nearly every record

    def test_own_writes_after_catching_up_land_where_they_should(
        self, log_path: Path, short_ways: list[int]
    ) -> None:
        """A write that first catches up on the short way appends right after what it
        read: every handle, and a fresh open, then agree."""
        with (
            TypedStore.open(log_path, str, int, shared=True) as first,
            TypedStore.open(log_path, str, int, shared=True) as second,
        ):
            for index in range(50):
                first[f"a{index}"] = index
                second[f"b{index}"] = index
                if index % 7 == 0:
                    del first[f"b{index}"]
            assert list(first.items()) == list(second.items())
            entries = list(first.items())
        with TypedStore.open(log_path, str, int) as again:
            assert list(again.items()) == entries
        assert sum(short_ways) >= 99


@pytest.mark.parametrize(
    ("key_type", "make_key", "short"),
    [
        (int, lambda i: i * 7 - 20, True),  # plain, not str: each record through insert
        (bytes, lambda i: b"k%d" % i, True),
        (Decimal, lambda i: Decimal(i) / 4, False),  # key bytes kept: the general way
    ],
    ids=["int", "bytes", "decimal"],
)
def test_other_key_types_follow_alike(
    log_path: Path,
    short_ways: list[int],
    key_type: type,
    make_key: Callable[[int], Any],
    short: bool,
) -> None:
    """Keys of other types catch up alike on both ways, the short way taking those whose
    bytes are their own."""
    rng = random.Random(11)
    with (
        _open_any(log_path, key_type) as writer,
        _open_any(log_path, key_type) as fast,
        _open_any(log_path, key_type) as slow,
    ):
        general(slow._core)
        for step in range(200):
            key = make_key(rng.randrange(30))
            if rng.random() < 0.3:
                writer.pop(key, None)
            else:
                writer[key] = step
            if step % 5 == 0:
                assert list(fast.items()) == list(slow.items()) == list(writer.items())
                assert position(fast) == position(slow)
    assert (sum(short_ways) > 100) is short


def _open_any(path: Path, key_type: type[Any]) -> TypedStore[Any, int]:
    store: TypedStore[Any, int] = TypedStore.open(path, key_type, int, shared=True)
    return store


class Plain(Collection[str, int]):
    """No index: its records, collection 0's, take the short way."""


class Members(Collection[str, User]):
    """An indexed collection: its records always take the general way."""

    by_name: Index[User, str] = Index(lambda u: u.name, unique=True)


class Mixed(Database):
    """Collection 0 without indexes beside an indexed one, written together too."""

    plain: Plain
    members: Members


class Interleaved(RuleBasedStateMachine):
    """A writer, a handle on the short way and one on the general way: both followers
    end alike after any mix of bare records, collection records, transactions,
    compactions and their own writes."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        path = Path(self.folder.name) / "mixed.log"
        self.writer = Mixed.open(path, shared=True)
        self.short = Mixed.open(path, shared=True)
        self.slow = Mixed.open(path, shared=True)
        general(self.slow._core)
        assert self.writer.plain._id == 0
        assert self.writer.members._id != 0

    keys = st.sampled_from(["a", "b", "c", "d", "e"])
    names = st.sampled_from(["ann", "bob", "cy"])
    handle = st.sampled_from(["writer", "short", "slow"])

    def _handle(self, name: str) -> Mixed:
        found: Mixed = getattr(self, name)
        return found

    @rule(who=handle, key=keys, value=st.integers(-3, 3))
    def put_plain(self, who: str, key: str, value: int) -> None:
        self._handle(who).plain[key] = value

    @rule(who=handle, key=keys)
    def remove_plain(self, who: str, key: str) -> None:
        self._handle(who).plain.pop(key, None)

    @rule(who=handle, key=keys)
    def modify_plain(self, who: str, key: str) -> None:
        self._handle(who).plain.modify(key, lambda value: value + 1, default=0)

    @rule(who=handle, key=keys, name=names)
    def put_member(self, who: str, key: str, name: str) -> None:
        members = self._handle(who).members
        holder = members.by_name.get(name)
        if holder is None or holder[0] == key:
            members[key] = User(name=name, age=len(key))

    @rule(who=handle, key=keys)
    def remove_member(self, who: str, key: str) -> None:
        self._handle(who).members.pop(key, None)

    @rule(who=handle, first=keys, second=keys, value=st.integers(-3, 3))
    def transaction(self, who: str, first: str, second: str, value: int) -> None:
        with self._handle(who).transaction() as txn:
            txn.plain[first] = value
            txn.plain.pop(second, None)
            txn.members.pop(second, None)

    @rule(who=handle)
    def compact(self, who: str) -> None:
        self._handle(who).compact()

    @invariant()
    def followers_agree(self) -> None:
        handles = [self.writer, self.short, self.slow]
        plains = [list(h.plain.items()) for h in handles]
        members = [list(h.members.items()) for h in handles]
        assert plains[0] == plains[1] == plains[2]
        assert members[0] == members[1] == members[2]
        for name in ("ann", "bob", "cy"):
            found = [h.members.by_name.get(name) for h in handles]
            assert found[0] == found[1] == found[2]
        assert position(self.short)[::2] == position(self.slow)[::2]
        assert position(self.short)[0] == position(self.writer)[0]

    def teardown(self) -> None:
        for handle in (self.writer, self.short, self.slow):
            handle.close()
        self.folder.cleanup()


Interleaved.TestCase.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)
TestInterleaved = Interleaved.TestCase


class TestInterrupted:
    @pytest.mark.parametrize("way", ["short", "general"])
    @pytest.mark.parametrize("reading", [True, False], ids=["read", "write"])
    def test_ctrl_c_anywhere_in_a_catch_up_leaves_a_view_the_next_completes(
        self, log_path: Path, reading: bool, way: str, short_ways: list[int]
    ) -> None:
        """A catch-up on either way (of a read, or of a write under the writer lock)
        interrupted wherever a signal can land leaves the handle usable: the next
        operation completes it, and it then equals a handle on the general way; the
        cycle collector, paused while records are applied, runs again."""
        with (
            TypedStore.open(log_path, str, User, shared=True) as writer,
            TypedStore.open(log_path, str, User, shared=True) as short,
            TypedStore.open(log_path, str, User, shared=True) as slow,
        ):
            general(slow._core)
            if way == "general":
                general(short._core)

            def attempt(step: int, hits: list[int]) -> None:
                writer[f"new{step}"] = user(step)
                writer[f"more{step}"] = user(step + 1)
                writer.pop(f"more{step - 1}", None)
                try:
                    with _interrupt_at(step, hits):
                        if reading:
                            short.get("absent")
                        else:
                            short[f"own{step}"] = user(step + 2)
                except _Injected:
                    pass
                assert short._core._engine is not None
                assert not short._core._engine.is_writing, f"writer held after {LANDED}"
                assert gc.isenabled(), f"collector left paused after {LANDED}"
                entries = list(short.items())
                assert entries == list(slow.items()) == list(writer.items()), LANDED
                assert position(short) == position(slow), LANDED

            assert _every_step(attempt) >= 20
        if way == "short":
            assert sum(short_ways) > 0


# -- what another process appended, cut and damaged ------------------------------------------


Step = Callable[[TypedStore[str, int]], None]


def _batch(store: TypedStore[str, int]) -> None:
    with store.transaction() as txn:
        txn["a"] = 4
        txn["d"] = 5


STEPS: list[Step] = [
    lambda s: s.__setitem__("a", 1),
    lambda s: s.__setitem__("b", 2),
    lambda s: s.__delitem__("a"),
    lambda s: s.__setitem__("c", 300_000),
    _batch,  # a batch record: the general way, between bare ones
    lambda s: s.__setitem__("b", 6),
    lambda s: s.__setitem__("e" * 40, 7),
]


class Appended:
    """A log's bytes before and after the writes of :data:`STEPS`, the end of each
    write's record in them, and the entries after each."""

    def __init__(self, folder: Path) -> None:
        path = folder / "source.log"
        with TypedStore.open(path, str, int, shared=True) as store:
            store["before"] = 0
            self.prefix = path.read_bytes()
            self.ends = [len(self.prefix)]
            self.states = [list(store.items())]
            for step in STEPS:
                step(store)
                self.ends.append(path.stat().st_size)
                self.states.append(list(store.items()))
        self.tail = path.read_bytes()[len(self.prefix) :]

    def state_at(self, size: int) -> tuple[int, list[tuple[str, int]]]:
        """Return where the last whole record ends at or before ``size``, and the entries."""
        index = max(i for i, end in enumerate(self.ends) if end <= size)
        return self.ends[index], self.states[index]


@pytest.fixture(scope="module")
def appended(tmp_path_factory: pytest.TempPathFactory) -> Appended:
    return Appended(tmp_path_factory.mktemp("appended"))


@pytest.fixture
def followers(log_path: Path, appended: Appended) -> Iterator[tuple[TypedStore[str, int], ...]]:
    """Two shared handles that read the prefix: the short way's and the general way's."""
    log_path.write_bytes(appended.prefix)
    with (
        TypedStore.open(log_path, str, int, shared=True) as short,
        TypedStore.open(log_path, str, int, shared=True) as slow,
    ):
        general(slow._core)
        yield short, slow


def append(path: Path, data: bytes) -> None:
    """Append ``data`` as another process's write would, in one write."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(descriptor, data)
    finally:
        os.close(descriptor)


def outcome(store: TypedStore[str, int]) -> tuple[str, object]:
    """What reading ``store`` gives: its entries, or the error it raises."""
    try:
        return "entries", list(store.items())
    except CorruptLogError as exc:
        return "error", str(exc)


class TestAppendedBytes:
    @pytest.mark.slow
    def test_cut_anywhere_stops_at_the_last_whole_record(
        self, log_path: Path, appended: Appended, short_ways: list[int]
    ) -> None:
        """Another process's records cut at any byte (a write in progress, or a killed
        writer's) read up to the last whole record on both ways, without an error, and
        the next write cuts the rest."""
        for cut in range(len(appended.tail) + 1):
            _check_cut(log_path, appended, cut)
        assert sum(short_ways) > len(STEPS)

    def test_cut_inside_a_record_after_whole_ones_stops_there(
        self, log_path: Path, appended: Appended, short_ways: list[int]
    ) -> None:
        """The quick run's sample of the cuts above: a byte into each record, in the
        middle of each, and each record's last byte missing."""
        base = len(appended.prefix)
        for start, end in itertools.pairwise(appended.ends):
            for cut in (start + 1, (start + end) // 2, end - 1):
                _check_cut(log_path, appended, cut - base)
        assert sum(short_ways) > len(STEPS)

    @pytest.mark.slow
    def test_flipped_byte_anywhere_reads_alike(
        self, log_path: Path, appended: Appended, short_ways: list[int]
    ) -> None:
        """A byte flipped anywhere in another process's records gives both ways the same
        outcome: the same CorruptLogError, or (a length that now reaches past the end)
        the records before it and no error; reading again gives it again."""
        errors = sum(_check_flip(log_path, appended, i) for i in range(len(appended.tail)))
        assert errors > len(appended.tail) // 2
        assert sum(short_ways) > 0

    def test_flipped_byte_in_each_record_reads_alike(
        self, log_path: Path, appended: Appended, short_ways: list[int]
    ) -> None:
        """The quick run's sample of the flips above: in each record's head, its kind
        byte and its last byte."""
        base = len(appended.prefix)
        errors = 0
        for start, end in itertools.pairwise(appended.ends):
            for at in (start + 2, start + 8, start + _format.FRAME_OVERHEAD, end - 1):
                errors += _check_flip(log_path, appended, at - base)
        assert errors >= len(STEPS) * 3
        assert sum(short_ways) > 0

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            (b"\xa1y", b"\xc1"),  # a value that is not msgpack
            (b"\xa2\xff\xfe", b"\x01"),  # a short str key that is not UTF-8
            (b"\xa1", b"\x01"),  # a str key cut short
            (b"\xc1", b"\x01"),  # a key that is not msgpack
        ],
    )
    def test_checksum_valid_record_that_does_not_decode_is_reported_alike(
        self,
        log_path: Path,
        appended: Appended,
        followers: tuple[TypedStore[str, int], ...],
        key: bytes,
        value: bytes,
    ) -> None:
        """A whole record whose key or value cannot be decoded raises the same
        CorruptLogError, at its offset, on both ways, after the records before it."""
        short, slow = followers
        at = len(appended.prefix)
        good = _format.encode_frame(b"\x01" + _insert_body(b"\xa1x", b"\x01"), at)
        bad_at = at + len(good)
        bad = _format.encode_frame(b"\x01" + _insert_body(key, value), bad_at)
        append(log_path, good + bad)
        found = outcome(short)
        assert found == outcome(slow)
        assert found[0] == "error"
        assert f"offset {bad_at}" in str(found[1])
        assert outcome(short) == found

    def test_key_of_another_type_is_reported_alike(
        self, log_path: Path, appended: Appended, followers: tuple[TypedStore[str, int], ...]
    ) -> None:
        """A whole record whose key is not a str raises the same SchemaMismatchError, at
        its offset, on both ways."""
        short, slow = followers
        at = len(appended.prefix)
        append(log_path, _format.encode_frame(b"\x01" + _insert_body(b"\x05", b"\x01"), at))
        errors = []
        for store in (short, slow):
            with pytest.raises(SchemaMismatchError, match=f"offset {at}") as caught:
                store.get("x")
            errors.append(str(caught.value))
        assert errors[0] == errors[1]

    def test_value_that_does_not_validate_is_reported_alike(
        self, log_path: Path, appended: Appended, followers: tuple[TypedStore[str, int], ...]
    ) -> None:
        """A whole record whose value is not of the value type raises the same error on
        both ways, naming its offset."""
        short, slow = followers
        at = len(appended.prefix)
        append(log_path, _format.encode_frame(b"\x01" + _insert_body(b"\xa1x", b"\xa3abc"), at))
        errors = []
        for store in (short, slow):
            with pytest.raises(SchemaMismatchError, match=f"offset {at}") as caught:
                store.get("x")
            errors.append((type(caught.value), str(caught.value)))
        assert errors[0] == errors[1]


def _check_cut(log_path: Path, appended: Appended, cut: int) -> None:
    """Check the appended records cut after ``cut`` bytes read alike on both ways, up to
    the last whole record, and that a write then cuts the rest and appends."""
    log_path.write_bytes(appended.prefix)
    with (
        TypedStore.open(log_path, str, int, shared=True) as reader,
        TypedStore.open(log_path, str, int, shared=True) as writer,
        TypedStore.open(log_path, str, int, shared=True) as slow,
    ):
        general(slow._core)
        append(log_path, appended.tail[:cut])
        end, entries = appended.state_at(len(appended.prefix) + cut)
        assert list(reader.items()) == list(slow.items()) == entries, cut
        assert position(reader) == position(slow), cut
        assert reader._core._known == end, cut
        writer["after"] = 9  # its catch-up, under the writer lock, cuts the rest
        after = [*entries, ("after", 9)]
        assert list(reader.items()) == list(slow.items()) == after, cut
        assert list(writer.items()) == after, cut
        assert position(reader) == position(slow) == position(writer), cut
    with TypedStore.open(log_path, str, int) as again:
        assert list(again.items()) == after, cut
        assert again.recovery is None, cut
    log_path.unlink()


def _check_flip(log_path: Path, appended: Appended, index: int) -> bool:
    """Check the appended records with byte ``index`` flipped read alike on both ways,
    twice; return whether that is an error."""
    damaged = bytearray(appended.tail)
    damaged[index] ^= 0x41
    log_path.write_bytes(appended.prefix)
    with (
        TypedStore.open(log_path, str, int, shared=True) as short,
        TypedStore.open(log_path, str, int, shared=True) as slow,
    ):
        general(slow._core)
        append(log_path, bytes(damaged))
        first = outcome(short)
        assert first == outcome(slow), index
        assert outcome(short) == outcome(slow) == first, index
    log_path.unlink()
    return first[0] == "error"


def _insert_body(key: bytes, value: bytes) -> bytes:
    """Return a bare insert's body after its kind byte: key length, key (packed), value."""
    return len(key).to_bytes(4, "little") + key + value
