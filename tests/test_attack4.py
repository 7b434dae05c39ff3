"""Hostile review of the index and fast-path work (attack4): each test is a defect found,
kept so it stays fixed, or a promise attacked that held.

Each compares what a store holds, and its indexes, with a fresh open of its log or a
brute-force scan of the same data."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pydantic import BaseModel

from tests.test_interrupts import LANDED, _every_step, _Injected, _interrupt_at
from typedstore import Collection, Database, Index, UniqueViolationError

_THREADED_PLAIN_WRITES = textwrap.dedent(
    """
    import sys, threading
    import msgpack
    from typedstore import TypedStore

    assert msgpack.Packer.__module__ == "msgpack.fallback", msgpack.Packer
    sys.setswitchinterval(1e-6)
    path = sys.argv[1]
    store = TypedStore.open(path, str, str)

    def value(key):
        return f"value-{key}" * (1 + int(key.split("-")[1]) % 5)

    def write(thread):
        for step in range(1500):
            key = f"{thread}-{step}"
            store[key] = value(key)

    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    with TypedStore.open(path, str, str) as reopened:
        assert len(reopened) == 6000, len(reopened)
        assert all(stored == value(key) for key, stored in reopened.items())
    print("ok")
    """
)


@pytest.mark.slow
def test_threads_writing_plain_data_with_msgpacks_pure_python_packer_keep_the_log_readable(
    tmp_path: Path,
) -> None:
    """msgpack's pure-Python fallback (PyPy, or ``MSGPACK_PUREPYTHON``) runs Python code
    while it packs, where another thread may enter the same packer: threads writing plain
    keys and values through the packer all threads shared wrote checksum-valid records
    holding another write's bytes, and the next open refused the log (CorruptLogError,
    'undecodable record: unpack(b) received extra data')."""
    env = {**os.environ, "MSGPACK_PUREPYTHON": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _THREADED_PLAIN_WRITES, str(tmp_path / "plain.log")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


class Reading(BaseModel):
    """A measurement: its value, ordered."""

    value: float


class Readings(Collection[str, Reading]):
    by_value: Index[Reading, float] = Index(lambda reading: reading.value, ordered=True)


class Lab(Database):
    readings: Readings


@pytest.mark.parametrize(
    ("low", "high"),
    [(math.nan, None), (math.nan, 5.0), (math.nan, math.nan), (None, math.nan), (3.0, math.nan)],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_a_nan_bound_of_a_range_holds_nothing(
    log_path: Path, low: float | None, high: float | None, reverse: bool
) -> None:
    """``range(lo, hi)`` lists the entries with ``lo <= index key < hi``: with a NaN bound,
    none (NaN orders with nothing), as a scan finds, in a transaction's view too. A NaN
    low bound listed every entry below the high one (the sorted keys bisected it to 0)."""
    with Lab.open(log_path) as lab:
        for number in range(10):
            lab.readings[f"k{number}"] = Reading(value=float(number))

        def scan(items: list[tuple[str, Reading]]) -> list[tuple[str, Reading]]:
            found = sorted(
                (
                    (key, reading)
                    for key, reading in items
                    if (low is None or low <= reading.value)
                    and (high is None or reading.value < high)
                ),
                key=lambda pair: pair[1].value,
            )
            return found[::-1] if reverse else found

        assert lab.readings.by_value.range(low, high, reverse=reverse) == scan(
            list(lab.readings.items())
        )
        with lab.transaction() as txn:
            txn.readings["k3"] = Reading(value=30.0)
            txn.readings["new"] = Reading(value=4.5)
            assert txn.readings.by_value.range(low, high, reverse=reverse) == scan(
                list(txn.readings.items())
            )


NUMBERS: list[object] = [1, True, 1.0, 0, False, 0.0, -0.0, 2, 2.5]
"""Index keys equal to each other across types (1, True, 1.0; 0, False, 0.0, -0.0),
which one dict entry holds: the unique checks, the buckets and the sorted keys must
treat them as the scan does, whatever type came first."""


class Mixed(BaseModel):
    """A value whose index keys are numbers of any type, equal or not."""

    u: Any = None
    o: Any = None
    t: list[Any] = []


def _u(row: Mixed) -> object:
    return row.u


def _o(row: Mixed) -> object:
    return row.o


class Three(Collection[str, Mixed]):
    by_u: Index[Mixed, object] = Index(lambda row: row.u, unique=True)
    by_o: Index[Mixed, Any] = Index(lambda row: row.o, ordered=True)
    by_t: Index[Mixed, object] = Index(lambda row: row.t, multi=True)


class LoneUnique(Collection[str, Mixed]):
    by_u: Index[Mixed, object] = Index(_u, unique=True)


class OrderedAlone(Collection[str, Mixed]):
    by_o: Index[Mixed, Any] = Index(_o, ordered=True)


class UniqueOrdered(Collection[str, Mixed]):
    by_o: Index[Mixed, Any] = Index(lambda row: row.o, ordered=True, unique=True)


class HashAlone(Collection[str, Mixed]):
    by_o: Index[Mixed, Any] = Index(lambda row: row.o)


class MultiAlone(Collection[str, Mixed]):
    by_t: Index[Mixed, object] = Index(lambda row: tuple(row.t), multi=True)


class Shapes(Database):
    """One collection per shape the write and open paths treat apart."""

    three: Three
    lone: LoneUnique
    single: OrderedAlone
    uord: UniqueOrdered
    hashy: HashAlone
    multi: MultiAlone


SHAPES = ["three", "lone", "single", "uord", "hashy", "multi"]
UNIQUE_BY: dict[str, Callable[[Mixed], object]] = {"three": _u, "lone": _u, "uord": _o}
mixed_rows = st.builds(
    Mixed,
    u=st.none() | st.sampled_from([*NUMBERS, "x", b"x"]),
    o=st.none() | st.sampled_from(NUMBERS),
    t=st.lists(st.sampled_from([*NUMBERS, "x"]), max_size=3),
)
mixed_keys = st.sampled_from(["a", "b", "c", "d", "e"])
shapes = st.sampled_from(SHAPES)


def _breaks_unique(model: dict[str, Mixed], index_key_of: Callable[[Mixed], object]) -> bool:
    held: list[object] = []
    for value in model.values():
        index_key = index_key_of(value)
        if index_key is not None:
            if any(index_key == other for other in held):
                return True
            held.append(index_key)
    return False


def _assert_agrees(collection: Any, shape: str, model: dict[str, Mixed]) -> None:
    """Assert every lookup of ``collection`` equals a scan of ``model``."""
    assert list(collection.items()) == list(model.items()), shape
    entries = list(model.items())
    if shape in ("three", "lone"):
        for index_key in [*NUMBERS, "x", b"x"]:
            holders = [(k, v) for k, v in entries if v.u is not None and v.u == index_key]
            found = collection.by_u.get(index_key)
            assert ([] if found is None else [found]) == holders, (shape, index_key)
    if shape in ("three", "multi"):
        for index_key in [*NUMBERS, "x"]:
            holders = [(k, v) for k, v in entries if any(e == index_key for e in v.t)]
            assert collection.by_t.find(index_key) == holders, (shape, index_key)
            assert collection.by_t.count(index_key) == len(holders), (shape, index_key)
    if shape in ("three", "single", "uord", "hashy"):
        view = collection.by_o
        for index_key in NUMBERS:
            holders = [(k, v) for k, v in entries if v.o is not None and v.o == index_key]
            assert view.find(index_key) == holders, (shape, index_key)
            assert (index_key in view) == bool(holders), (shape, index_key)
        if shape == "hashy":
            return
        ordered = sorted([(k, v) for k, v in entries if v.o is not None], key=lambda e: e[1].o)
        assert list(view) == ordered, shape
        for low, high in itertools.product([None, 0, 1, True, 2], repeat=2):
            within = [
                (k, v)
                for k, v in ordered
                if (low is None or v.o >= low) and (high is None or v.o < high)
            ]
            assert view.range(low, high) == within, (shape, low, high)
            assert view.range(low, high, reverse=True, limit=2, offset=1) == within[::-1][1:3]


class EqualIndexKeysMachine(RuleBasedStateMachine):
    """Every shape of index, fed index keys equal across types, against scans of dicts,
    through single writes, ``modify``, transactions, clears, compactions, reopens and
    read-only opens beside the writer."""

    def __init__(self) -> None:
        super().__init__()
        self.path = Path(tempfile.mkdtemp()) / "shapes.log"
        self.db = Shapes.open(self.path)
        self.models: dict[str, dict[str, Mixed]] = {shape: {} for shape in SHAPES}

    def teardown(self) -> None:
        self.db.close()

    def _write(self, shape: str, after: dict[str, Mixed], write: Callable[[], object]) -> None:
        index_key_of = UNIQUE_BY.get(shape)
        if index_key_of is not None and _breaks_unique(after, index_key_of):
            with pytest.raises(UniqueViolationError):
                write()
            return
        write()
        self.models[shape] = after

    @rule(shape=shapes, key=mixed_keys, value=mixed_rows)
    def put(self, shape: str, key: str, value: Mixed) -> None:
        collection = getattr(self.db, shape)
        self._write(
            shape, {**self.models[shape], key: value}, lambda: collection.__setitem__(key, value)
        )

    @rule(shape=shapes, key=mixed_keys, value=mixed_rows)
    def modify(self, shape: str, key: str, value: Mixed) -> None:
        collection = getattr(self.db, shape)
        self._write(
            shape,
            {**self.models[shape], key: value},
            lambda: collection.modify(key, lambda _: value, default=Mixed()),
        )

    @rule(shape=shapes, key=mixed_keys)
    def remove(self, shape: str, key: str) -> None:
        assert (getattr(self.db, shape).pop(key, None) is None) == (key not in self.models[shape])
        self.models[shape].pop(key, None)

    @rule(shape=shapes)
    def clear(self, shape: str) -> None:
        getattr(self.db, shape).clear()
        self.models[shape] = {}

    @rule(shape=shapes, writes=st.lists(st.tuples(mixed_keys, st.none() | mixed_rows), max_size=4))
    def transaction(self, shape: str, writes: list[tuple[str, Mixed | None]]) -> None:
        with contextlib.suppress(UniqueViolationError), self.db.transaction() as txn:
            staged = getattr(txn, shape)
            for key, value in writes:
                with contextlib.suppress(UniqueViolationError):  # refused at the call
                    if value is None:
                        staged.pop(key, None)
                    else:
                        staged[key] = value
        self.models[shape] = dict(getattr(self.db, shape).items())
        index_key_of = UNIQUE_BY.get(shape)
        assert index_key_of is None or not _breaks_unique(self.models[shape], index_key_of)

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = Shapes.open(self.path)

    @rule()
    def read_only_beside(self) -> None:
        with Shapes.open(self.path, readonly=True) as reader:
            for shape in SHAPES:
                _assert_agrees(getattr(reader, shape), shape, self.models[shape])

    @rule()
    def compact(self) -> None:
        self.db.compact()

    @invariant()
    def lookups_agree(self) -> None:
        for shape in SHAPES:
            _assert_agrees(getattr(self.db, shape), shape, self.models[shape])


TestEqualIndexKeys = pytest.mark.slow(EqualIndexKeysMachine.TestCase)
EqualIndexKeysMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)


class Member(BaseModel):
    """A member: a unique email, an ordered age, tags."""

    email: str
    age: int = 0
    tags: list[str] = []


class Members(Collection[str, Member]):
    by_email: Index[Member, str] = Index(lambda member: member.email, unique=True)
    by_age: Index[Member, int] = Index(lambda member: member.age, ordered=True)
    by_tag: Index[Member, str] = Index(lambda member: member.tags, multi=True)


class PlainFirst(Database):
    """Collection 0 without indexes (the catch-up's short way), then one with them."""

    counts: Collection[str, int]
    members: Members


class IndexedFirst(Database):
    """Collection 0 with indexes (the catch-up's general way), then one without."""

    members: Members
    counts: Collection[str, int]


def _lookups(db: PlainFirst | IndexedFirst) -> list[object]:
    """What the members' indexes give, and the entries, after asserting they agree."""
    entries = list(db.members.items())
    for key, member in entries:
        assert db.members.by_email.get(member.email) == (key, member)
    assert db.members.by_age.range(None, None) == sorted(entries, key=lambda e: e[1].age)
    for tag in ("red", "blue"):
        assert db.members.by_tag.find(tag) == [e for e in entries if tag in e[1].tags]
    return [entries, list(db.counts.items())]


@pytest.mark.slow
@pytest.mark.parametrize("database", [PlainFirst, IndexedFirst], ids=["plain-0", "indexed-0"])
def test_ctrl_c_in_a_shared_catch_up_leaves_the_indexes_of_every_collection_true(
    log_path: Path, database: type[PlainFirst] | type[IndexedFirst]
) -> None:
    """A KeyboardInterrupt at any point of a shared handle's catch-up with another's bare
    records of collection 0, indexed writes to another collection, and a transaction
    over both leaves the handle's entries and indexes equal to the writer's and to a
    fresh open's, and its next write (a unique one, checked against what it caught up)
    works."""
    with (
        database.open(log_path, shared=True) as reader,
        database.open(log_path, shared=True) as writer,
    ):

        def attempt(step: int, hits: list[int]) -> None:
            for index in range(2):
                writer.counts[f"c{(step + index) % 5}"] = step
                writer.members[f"m{(step + index) % 4}"] = Member(
                    email=f"e{step}-{index}@x",
                    age=(step * 7 + index) % 5,
                    tags=["red"][: index % 2],
                )
            writer.members.pop(f"m{step % 4}", None)
            with writer.transaction() as txn:
                txn.counts["t"] = step
                txn.members[f"m{step % 4}"] = Member(email=f"t{step}@x", tags=["blue"])
            writer.counts.pop(f"c{step % 5}", None)
            try:
                with _interrupt_at(step, hits):
                    reader.members.by_email.get("nobody")  # catches up
            except _Injected:
                pass
            # Against the writer, which wrote every record and reads its own log; against
            # a fresh open every 25th step only: the log grows by 8 records a step, so a
            # fresh open each step made the test quadratic (about 40 s a case).
            assert _lookups(reader) == _lookups(writer), f"after {LANDED}"
            if step % 25 == 0:
                with database.open(log_path, readonly=True) as fresh:
                    assert _lookups(reader) == _lookups(fresh), f"after {LANDED}"
            with pytest.raises(UniqueViolationError):
                reader.members["other"] = Member(email=f"t{step}@x")
            reader.members["r"] = Member(email=f"r{step}@x", age=step % 5)
            assert writer.members.by_email.get(f"r{step}@x") == ("r", reader.members["r"])

        assert _every_step(attempt) >= 50  # the trace saw the catch-up's code


def test_a_transaction_moving_an_entry_is_never_seen_half_done_by_lookups(
    log_path: Path,
) -> None:
    """Transactions moving one member between two keys, again and again, while other
    threads look it up every way: each lookup, and each listing of the entries, finds it
    exactly once (never under both keys, nor under neither), with a value holding what
    it was found by. Single-key reads, which may skip the lock, see it whole."""
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    db = PlainFirst.open(log_path)
    db.members["a"] = Member(email="e", age=0, tags=["red"])
    done = threading.Event()
    seen: list[object] = []

    def move() -> None:
        source, target = "a", "b"
        try:
            for step in range(1, 800):
                with db.transaction() as txn:
                    txn.members.pop(source)
                    txn.members[target] = Member(email="e", age=step % 5, tags=["red"])
                source, target = target, source
        finally:
            done.set()

    def look() -> None:
        while not done.is_set():
            found = [
                db.members.by_age.range(None, None),
                db.members.by_tag.find("red"),
                list(db.members.items()),
                [pair for pair in [db.members.by_email.get("e")] if pair is not None],
            ]
            for pairs in found:
                if len(pairs) != 1 or pairs[0][1].email != "e":
                    seen.append(pairs)
            if db.members.by_tag.count("red") != 1 or "e" not in db.members.by_email:
                seen.append("count")
            for key in ("a", "b"):
                member = db.members.get(key)
                if member is not None and (member.email, member.tags) != ("e", ["red"]):
                    seen.append(member)

    threads = [threading.Thread(target=move), *(threading.Thread(target=look) for _ in range(2))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
        db.close()
    assert seen == []
