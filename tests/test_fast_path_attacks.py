"""Hostile use of the short paths (``Core._write_one``, ``_write_one_hooked``,
``_modify_one``, replay's ``apply_bare``, the lazy index structures and the compaction
policy's skip window): keys that do not round-trip, a ``modify`` function that works
against the store, random mixes of every kind of write, readers through indexes while
the first writes after an open build what they left, and Ctrl-C in that first write.
Each compares memory with a fresh open of the log."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import decimal
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tests.test_interrupts import LANDED, _every_step, _Injected, _interrupt_at
from typedstore import Collection, Database, Index, StoreClosedError, StoreConfig, TypedStore
from typedstore._compact import is_due
from typedstore._core import _Phase

UTC = datetime.UTC
NOON = datetime.datetime(2020, 1, 1, 12, tzinfo=UTC)
NOON_ELSEWHERE = datetime.datetime(
    2020, 1, 1, 13, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
)  # equal to NOON, hashed alike, packed otherwise

REMOVE = object()

KEY_CASES: dict[str, tuple[Any, list[tuple[Any, Any]]]] = {
    "minus-zero-first": (float, [(-0.0, 1), (0.0, 2), (0.0, REMOVE), (0.0, 3), (-0.0, 4)]),
    "zero-first": (float, [(0.0, 1), (-0.0, 2)]),
    "int-or-float": (int | float, [(1, 1), (1.0, 2), (2.0, 3), (2, 4)]),
    "float-or-int": (float | int, [(1, 1), (1.0, 2), (2.0, 3), (2, 4)]),
    "bool-or-int": (bool | int, [(True, 1), (1, 2), (0, 3), (False, 4)]),
    "int-subclass": (int, [(True, 1), (1, 2), (2**64 - 1, 3), (-(2**63), 4)]),
    "datetime": (datetime.datetime, [(NOON, 1), (NOON_ELSEWHERE, 2)]),
    "datetime-other-first": (
        datetime.datetime,
        [(NOON_ELSEWHERE, 1), (NOON, 2), (NOON, REMOVE), (NOON, 5)],
    ),
    "decimal": (
        decimal.Decimal,
        [(decimal.Decimal("1.0"), 1), (decimal.Decimal("1.00"), 2), (decimal.Decimal(1), 3)],
    ),
    "tuple-with-zero": (tuple[int, float], [((1, 0.0), 1), ((1, -0.0), 2)]),
    "frozenset": (frozenset[int], [(frozenset({1, 2}), 1), (frozenset({2, 1}), 2)]),
}


def _typed_items(store: TypedStore[Any, int]) -> list[tuple[str, int]]:
    """The entries with each key's repr: ``-0.0``, ``True`` and a timezone show."""
    return [(repr(key), value) for key, value in store.items()]


@pytest.mark.parametrize("modify", [False, True], ids=["insert", "modify"])
@pytest.mark.parametrize("case", list(KEY_CASES))
def test_keys_equal_but_packed_otherwise_keep_the_first_key_through_reopen_and_compact(
    log_path: Path, case: str, modify: bool
) -> None:
    """A key equal to a present one (``0.0`` and ``-0.0``, ``1`` and ``True`` or
    ``1.0``, one instant in two timezones) overwrites it: memory keeps the first key
    object, and so do a reopen (replay's bare run) and a compacted log."""
    key_type, operations = KEY_CASES[case]
    with TypedStore.open(log_path, key_type, int) as store:
        for key, value in operations:
            if value is REMOVE:
                store.pop(key, None)
                continue
            store[key] = value
            if modify:
                assert store.modify(key, lambda old: old + 100) == value + 100
        in_memory = _typed_items(store)
    with TypedStore.open(log_path, key_type, int) as store:
        assert _typed_items(store) == in_memory
        store.compact()
    with TypedStore.open(log_path, key_type, int) as store:
        assert _typed_items(store) == in_memory


class Person(BaseModel):
    """A mutable value: memory keeps its bytes."""

    name: str
    tags: list[str]


CONFIGS = {
    "write-through": StoreConfig(),
    "buffered": StoreConfig(write_through=False),
    "sync": StoreConfig(sync_on_write=True),
}


def _throw(exc: BaseException) -> Any:
    raise exc


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
def test_a_hostile_modify_function_changes_nothing_it_should_not(
    log_path: Path, config: StoreConfig
) -> None:
    """``fn`` writing to the store, compacting or flushing it is refused; raising
    (KeyboardInterrupt too) or returning an invalid value writes nothing; mutating and
    returning its argument, or returning a dict, writes that; closing the store writes
    nothing and raises StoreClosedError. A reopen replays what memory held."""
    store = TypedStore.open(log_path, str, Person, config=config)
    store["a"] = Person(name="a", tags=[])
    store["b"] = Person(name="b", tags=[])

    def mutated(person: Person) -> Person:
        person.tags.append("x")
        return person

    assert store.modify("a", mutated) == Person(name="a", tags=["x"])
    assert store["a"] == Person(name="a", tags=["x"])
    refused: list[Callable[[Person], Any]] = [
        lambda person: store.__setitem__("c", person),
        lambda person: store.__delitem__("b"),
        lambda person: store.modify("b", lambda other: other),
        lambda person: store.compact(),
        lambda person: store.flush(),
    ]
    for fn in refused:
        with pytest.raises(RuntimeError):
            store.modify("a", fn)
    for fn, error in [
        (lambda person: _throw(ZeroDivisionError()), ZeroDivisionError),
        (lambda person: _throw(KeyboardInterrupt()), KeyboardInterrupt),
        (lambda person: 5, ValueError),  # pydantic's ValidationError
    ]:
        with pytest.raises(error):
            store.modify("a", fn)
    before = dict(store.items())
    assert before == {"a": Person(name="a", tags=["x"]), "b": Person(name="b", tags=[])}

    def as_dict(person: Person) -> Any:
        return {"name": "d", "tags": ["q"]}

    assert store.modify("a", as_dict) == Person(name="d", tags=["q"])
    items = dict(store.items())
    size = log_path.stat().st_size if config.write_through else None

    def closing(person: Person) -> Person:
        store.close()
        return Person(name="e", tags=[])

    with pytest.raises(StoreClosedError):
        store.modify("a", closing)
    if size is not None:
        assert log_path.stat().st_size == size
    with TypedStore.open(log_path, str, Person) as reopened:
        assert dict(reopened.items()) == items


class Two(Database):
    """Two collections, for transactions and clears across them."""

    a: Collection[int, int]
    b: Collection[int, int]


def _random_write(db: Two, rnd: random.Random, step: int) -> None:
    collection = db.a if rnd.random() < 0.5 else db.b
    roll, key = rnd.random(), rnd.randrange(12)
    if roll < 0.4:
        collection[key] = step
    elif roll < 0.6:
        collection.pop(key, None)
    elif roll < 0.7:
        if key in collection:
            collection.modify(key, lambda value: value + 1)
    elif roll < 0.78:
        with db.transaction() as txn:
            for value in range(rnd.randrange(1, 6)):
                if rnd.random() < 0.5:
                    txn.a[rnd.randrange(12)] = value
                else:
                    txn.b.pop(rnd.randrange(12), None)
    elif roll < 0.82:
        collection.clear()
    elif roll < 0.85:
        db.compact()
    else:
        collection.update({rnd.randrange(12): step for _ in range(3)})


@pytest.mark.parametrize("seed", range(24))
def test_no_mix_of_writes_leaves_the_compaction_policy_due(log_path: Path, seed: int) -> None:
    """Single writes, modifies, transactions across collections, clears, updates and
    explicit compactions, under odd ratios and minimums: after each the policy is not
    due (a write that made it due compacted), and a reopen replays memory."""
    rnd = random.Random(seed)
    config = StoreConfig(
        min_compact_bytes=rnd.choice([0, 1, 50, 500]),
        compact_ratio=rnd.choice([1.0001, 1.01, 1.5, 2.0, 3.7, 10.0, 100.0]),
        write_through=rnd.random() < 0.5,
    )
    with Two.open(log_path, config=config) as db:
        for step in range(100):
            _random_write(db, rnd, step)
            log = db._core._log
            assert log is not None
            live = len(db.a) + len(db.b)
            assert not is_due(config, log.size, log.total_records, live), (step, config)
        in_memory = (dict(db.a.items()), dict(db.b.items()))
    with Two.open(log_path, config=config) as db:
        assert (dict(db.a.items()), dict(db.b.items())) == in_memory


class Member(BaseModel):
    """A value with a unique name and a team many share."""

    name: str
    team: int


class Members(Collection[str, Member]):
    """A unique hash index and an ordered one keys share: both left partly to a write."""

    by_name: Index[Member, str] = Index(lambda member: member.name, unique=True)
    by_team: Index[Member, int] = Index(lambda member: member.team, ordered=True)


class Club(Database):
    """A database of one indexed collection."""

    members: Members


def _indexes_agree_with_memory(members: Members) -> None:
    """Each lookup answers what a scan of the entries, in their order, does."""
    entries = list(members.items())
    for team in range(7):
        assert members.by_team.find(team) == [(k, v) for k, v in entries if v.team == team]
    ranged = [(k, v) for k, v in entries if 2 <= v.team < 4]
    assert sorted(members.by_team.range(2, 4), key=lambda item: item[1].team) == sorted(
        ranged, key=lambda item: item[1].team
    )
    assert [v.team for _, v in members.by_team.range(2, 4)] == sorted(v.team for _, v in ranged)
    for key, member in entries:
        assert members.by_name.get(member.name) == (key, member)


def test_readers_through_indexes_while_the_first_writes_after_an_open_build_the_rest(
    log_path: Path,
) -> None:
    """Threads looking up through both indexes right after an open, while another
    writes (the first write builds what the open left): no lookup fails or sees an
    index out of order, and the indexes then agree with memory."""
    with Club.open(log_path) as club:
        for index in range(300):
            club.members[f"k{index}"] = Member(name=f"n{index}", team=index % 7)
    errors: list[BaseException] = []
    for round_ in range(4):
        with Club.open(log_path) as club:
            members = club.members
            assert members._indexes.pending is not None  # left to the first write
            stop = threading.Event()

            def read(members: Members = members, stop: threading.Event = stop) -> None:
                try:
                    while not stop.is_set():
                        teams = [member.team for _, member in members.by_team.range(2, 4)]
                        assert teams == sorted(teams)
                        members.by_team.find(3)
                        members.by_name.get("n5")
                except BaseException as exc:  # reported below
                    errors.append(exc)

            readers = [threading.Thread(target=read) for _ in range(2)]
            for reader in readers:
                reader.start()
            try:
                for index in range(20):
                    members[f"new{round_}.{index}"] = Member(name=f"m{round_}.{index}", team=3)
                    members.pop(f"k{index * 3 + round_}", None)
                with club.transaction() as txn:
                    txn.members[f"tx{round_}"] = Member(name=f"t{round_}", team=2)
                    assert f"tx{round_}" in [k for k, _ in txn.members.by_team.range(2, 3)]
            finally:
                stop.set()
                for reader in readers:
                    reader.join()
            _indexes_agree_with_memory(members)
    assert errors == []


FIRST_WRITES: dict[str, Callable[[Club, int], object]] = {
    "insert": lambda club, step: club.members.__setitem__(
        f"new{step}", Member(name=f"m{step}", team=3)
    ),
    "remove": lambda club, step: club.members.__delitem__("k2"),
    "modify": lambda club, step: club.members.modify(
        "k3", lambda member: member.model_copy(update={"team": 1})
    ),
    "transaction": lambda club, step: _transaction(club, step),
}


_KEPT: list[object] = []
"""What a traced write made, freed after the trace: a finalizer run inside it (the
transaction's copy of the database) would take the injected exception, as unraisable."""


def _transaction(club: Club, step: int) -> None:
    with club.transaction() as txn:
        _KEPT.append(txn)
        txn.members[f"new{step}"] = Member(name=f"m{step}", team=3)
        del txn.members["k2"]


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(name, marks=pytest.mark.slow) if name == "transaction" else name
        for name in FIRST_WRITES
    ],
)  # a transaction runs more bytecodes than the others, each interrupted after an open
def test_ctrl_c_in_the_first_write_after_an_open_leaves_the_indexes_whole(
    log_path: Path, first: str
) -> None:
    """Interrupted wherever a signal can land in the first write after an open (which
    builds what the open left of the indexes), the store stays usable: its indexes agree
    with memory, the next write works, and memory equals a reopen."""
    with Club.open(log_path) as club:
        for index in range(12):
            club.members[f"k{index}"] = Member(name=f"n{index}", team=index % 7)
    write = FIRST_WRITES[first]
    copy = log_path.with_name("copy.log")

    def attempt(step: int, hits: list[int]) -> None:
        club = Club.open(log_path)
        try:
            assert club.members._indexes.pending is not None  # left to the first write
            try:
                with _interrupt_at(step, hits):
                    write(club, step)
            except _Injected:
                pass
            _KEPT.clear()
            assert club._core._phase is _Phase.IDLE, f"phase left set after {LANDED}"
            _indexes_agree_with_memory(club.members)
            copy.write_bytes(log_path.read_bytes())  # the store holds its own file's lock
            with Club.open(copy) as replayed:
                assert list(replayed.members.items()) == list(club.members.items()), LANDED
            club.members[f"after{step}"] = Member(name=f"a{step}", team=step % 7)
            _indexes_agree_with_memory(club.members)
            # Put back what the write changed, so each step starts from the same log.
            club.members.pop(f"after{step}")
            club.members.pop(f"new{step}", None)
            club.members["k2"] = Member(name="n2", team=2)
            club.members["k3"] = Member(name="n3", team=3)
        finally:
            club.close()
        with Club.open(log_path) as reopened:
            assert len(reopened.members) == 12
            _indexes_agree_with_memory(reopened.members)

    steps = _every_step(attempt)
    assert steps >= 20


def test_threads_mixing_short_path_writes_compactions_and_transactions_keep_the_log_true(
    log_path: Path,
) -> None:
    """Three threads insert, remove, modify, compact and commit transactions under a
    policy that compacts often: memory equals a reopen, and the policy is not left due."""
    config = StoreConfig(min_compact_bytes=0, compact_ratio=1.4)
    with TypedStore.open(log_path, int, int, config=config) as store:

        def write(seed: int) -> None:
            rnd = random.Random(seed)
            for step in range(400):
                key, roll = rnd.randrange(40), rnd.random()
                if roll < 0.5:
                    store[key] = step
                elif roll < 0.8:
                    store.pop(key, None)
                elif roll < 0.95:
                    with contextlib.suppress(KeyError):
                        store.modify(key, lambda value: value + 1)
                elif roll < 0.96:
                    store.compact()
                else:
                    with store.transaction() as txn:
                        txn[key] = step
                        if key + 1 in txn:
                            del txn[key + 1]

        writers = [threading.Thread(target=write, args=(seed,)) for seed in range(3)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        log = store._core._log
        assert log is not None
        assert not is_due(config, log.size, log.total_records, len(store))
        in_memory = list(store.items())
        assert in_memory
    with TypedStore.open(log_path, int, int) as reopened:
        assert list(reopened.items()) == in_memory


class Named(BaseModel):
    """The first version of a value."""

    name: str


class Aged(BaseModel):
    """The second: a field added, which old records get from a migration."""

    name: str
    age: int = 0


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
@pytest.mark.parametrize("first", ["modify", "remove", "remove-absent", "insert"])
def test_the_first_short_path_write_after_a_schema_change_replays(
    log_path: Path, config: StoreConfig, first: str
) -> None:
    """Opened with a new version, the first write (a modify, a removal, a removal of an
    absent key that writes nothing, an insert) carries the new schema; a reopen and a
    compacted log replay what memory held."""
    with TypedStore.open(log_path, str, Named) as old:
        for index in range(5):
            old[f"k{index}"] = Named(name=f"n{index}")
    migrations = {1: lambda data: {**data, "age": 1}}

    def reopen() -> TypedStore[str, Aged]:
        return TypedStore.open(log_path, str, Aged, version=2, migrations=migrations)

    with TypedStore.open(
        log_path, str, Aged, version=2, migrations=migrations, config=config
    ) as store:
        if first == "modify":
            store.modify("k1", lambda value: value.model_copy(update={"age": 5}))
        elif first == "remove":
            del store["k2"]
        elif first == "remove-absent":
            assert store.pop("absent", None) is None
        else:
            store["k9"] = Aged(name="x", age=9)
        store.modify("k3", lambda value: value.model_copy(update={"age": 7}))
        in_memory = list(store.items())
    assert in_memory[3 if first != "remove" else 2] == ("k3", Aged(name="n3", age=7))
    with reopen() as store:
        assert list(store.items()) == in_memory
        store.compact()
    with reopen() as store:
        assert list(store.items()) == in_memory


class Mixed(Database):
    """A second collection, whose records carry its id, and large values."""

    first: Collection[str, int]
    second: Collection[str, Person]
    blobs: Collection[int, bytes]


SHORT_WRITES: dict[str, Callable[[Mixed, int], object]] = {
    "second-insert": lambda db, step: db.second.__setitem__(
        f"s{step}", Person(name=f"p{step}", tags=["t"])
    ),
    "second-modify": lambda db, step: db.second.modify(
        "kept", lambda person: person.model_copy(update={"tags": [*person.tags, "m"]})
    ),
    "second-remove": lambda db, step: db.second.pop(f"r{step}"),
    "large-insert": lambda db, step: db.blobs.__setitem__(step % 3, bytes([step % 256]) * 70_000),
    "large-modify": lambda db, step: db.blobs.modify(
        0, lambda blob: bytes([blob[0] ^ 1]) + blob[1:]
    ),
}


@pytest.mark.parametrize("write", list(SHORT_WRITES))
def test_ctrl_c_in_a_short_path_write_of_a_database_keeps_memory_equal_to_the_log(
    log_path: Path, write: str
) -> None:
    """Interrupted wherever a signal can land, a single write to a collection whose
    records carry its id, or of a value over 64 KiB (written as parts), leaves memory
    equal to what a fresh open of the log replays."""
    copy = log_path.with_name("copy.log")
    db = Mixed.open(log_path)
    db.second["kept"] = Person(name="kept", tags=[])
    db.blobs[0] = b"z" * 70_000
    operation = SHORT_WRITES[write]

    def items(opened: Mixed) -> list[object]:
        return [list(c.items()) for c in (opened.first, opened.second, opened.blobs)]

    def attempt(step: int, hits: list[int]) -> None:
        db.second[f"r{step}"] = Person(name="removed", tags=[])
        try:
            with _interrupt_at(step, hits):
                operation(db, step)
        except _Injected:
            pass
        assert db._core._phase is _Phase.IDLE, f"phase left set after {LANDED}"
        copy.write_bytes(log_path.read_bytes())  # the store holds its own file's lock
        with Mixed.open(copy) as replayed:
            assert items(replayed) == items(db), LANDED

    try:
        steps = _every_step(attempt)
    finally:
        db.close()
    assert steps >= 20


@pytest.mark.parametrize("buffering", list(CONFIGS))
def test_ctrl_c_in_a_compaction_a_write_triggers_leaves_the_store_writable(
    log_path: Path, buffering: str
) -> None:
    """Interrupted wherever a signal can land in a write that makes the policy due, so
    compacts (the new log renamed in place, the old one closed), the store goes on
    writing to the log a reopen reads: never to the closed descriptor of the old one
    (a Ctrl-C once the engine had switched left ``Log.file`` on it: the next write
    failed with EBADF, or wrote wherever that descriptor number had been reused)."""
    copy = log_path.with_name("copy.log")
    config = dataclasses.replace(CONFIGS[buffering], min_compact_bytes=0, compact_ratio=2.0)
    store = TypedStore.open(log_path, str, int, config=config)
    store["a"] = 0

    def attempt(step: int, hits: list[int]) -> None:
        store["a"] = -1  # due: compacts to one record, so the write below compacts again
        try:
            with _interrupt_at(step, hits):
                store["a"] = step
        except _Injected:
            pass
        assert store._core._phase is _Phase.IDLE, f"phase left set after {LANDED}"
        store["b"] = step  # raised OSError (EBADF) after a Ctrl-C in the switch
        store.flush()  # buffered: hand the buffer to the file
        copy.write_bytes(log_path.read_bytes())  # the store holds its own file's lock
        with TypedStore.open(copy, str, int) as replayed:
            assert list(replayed.items()) == list(store.items()), LANDED

    try:
        steps = _every_step(attempt)
    finally:
        store.close()
    assert steps >= 50


def test_ctrl_c_in_an_explicit_compaction_loses_no_later_write(log_path: Path) -> None:
    """Interrupted wherever a signal can land in ``compact()``, a write made after it is
    in the log a fresh open reads."""
    copy = log_path.with_name("copy.log")
    store = TypedStore.open(log_path, str, int)
    store["a"] = 0
    lost: list[tuple[int, list[str]]] = []

    def attempt(step: int, hits: list[int]) -> None:
        store["a"] = step
        try:
            with _interrupt_at(step, hits):
                store.compact()
        except _Injected:
            pass
        store[f"b{step}"] = step
        copy.write_bytes(log_path.read_bytes())  # the store holds its own file's lock
        with TypedStore.open(copy, str, int) as replayed:
            if list(replayed.items()) != list(store.items()):
                lost.append((step, list(LANDED)))
        del store[f"b{step}"]

    try:
        steps = _every_step(attempt)
    finally:
        store.close()
    assert steps >= 50
    assert lost == []
