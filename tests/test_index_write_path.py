"""A single write's short path to a collection with indexes (``Core._write_one_hooked``,
``IndexHook.before_one``/``after_one``, ``IndexSet.single_write``) against the general
one (``Core._write``, ``IndexHook.before``/``after``, ``IndexSet.plan``/``apply``).

Its insert is encoded by ``Codec.encode_insert``, which gives ``encode_write``'s write
and the validated value. For each shape the short path treats apart (a unique hash index
alone; an ordered index alone; a hash index alone that is not unique; several indexes),
the same writes through both paths give the same log, byte for byte, the same index
contents in the same order, and the same insertion positions; the short path refuses
what the general one refuses, changing nothing; and a Ctrl-C landing on any bytecode
where a signal can land leaves the indexes equal to memory and memory equal to the log.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from tests.test_interrupts import (
    LANDED,
    _every_step,
    _Injected,
    _interrupt_at,
    _lock_is_free_for_other_threads,
)
from typedstore import (
    Collection,
    Database,
    Index,
    StoreConfig,
    TypedStore,
    UniqueViolationError,
)
from typedstore._codec import Codec
from typedstore._core import Core, _Phase
from typedstore._index_set import IndexSet
from typedstore._records import Write


class Person(BaseModel):
    """A value whose index keys may be missing (None: left out of the index)."""

    name: str
    email: str | None = None
    age: int | None = None
    team: int = 0


def _email(person: Person) -> str | None:
    return person.email


def _age(person: Person) -> int | None:
    return person.age


def _team(person: Person) -> int:
    return person.team


class Lone(Collection[str, Person]):
    """A unique hash index alone: ``IndexSet._plan_lone``."""

    by_email: Index[Person, str] = Index(_email, unique=True)


class OrderedAlone(Collection[str, Person]):
    """An ordered index alone: ``IndexSet._plan_single``."""

    by_age: Index[Person, int] = Index(_age, ordered=True)


class TeamAlone(Collection[str, Person]):
    """A hash index alone, not unique: ``IndexSet._plan_single`` too."""

    by_team: Index[Person, int] = Index(_team)


class Several(Collection[str, Person]):
    """Several indexes: ``IndexSet.plan_one`` and ``apply``."""

    by_email: Index[Person, str] = Index(_email, unique=True)
    by_age: Index[Person, int] = Index(_age, ordered=True)


class LoneDb(Database):
    people: Lone


class OrderedDb(Database):
    people: OrderedAlone


class TeamDb(Database):
    people: TeamAlone


class SeveralDb(Database):
    people: Several


DATABASES: dict[str, type[Database]] = {
    "lone unique": LoneDb,
    "ordered alone": OrderedDb,
    "hash alone": TeamDb,
    "several": SeveralDb,
}

CONFIGS = {
    "write-through": StoreConfig(),
    "buffered": StoreConfig(write_through=False),
    "sync": StoreConfig(sync_on_write=True),
}

REMOVE = object()


def _person(index: int) -> Person:
    """Distinct emails (some missing), ages that repeat (some missing), a few teams."""
    return Person(
        name=f"n{index}",
        email=None if index % 9 == 4 else f"p{index}@x",
        age=None if index % 7 == 3 else index % 5,
        team=index % 3,
    )


def _operations() -> Iterator[tuple[str, Any]]:
    """Inserts of new keys, overwrites keeping or changing index keys or dropping them,
    removals of present and absent keys, and keys inserted again after a removal."""
    for index in range(45):
        yield f"k{index % 17}", _person(index)
        if index % 6 == 2:
            yield f"k{index % 17}", REMOVE
        if index % 8 == 5:
            yield "absent", REMOVE  # writes nothing
        if index % 10 == 7:  # the same value again: its index keys stay
            yield f"k{index % 17}", _person(index)
        if index % 11 == 1:
            kept = _person(index)
            yield f"k{index % 17}", kept.model_copy(update={"name": "renamed"})


def _write_short(people: Collection[str, Person], key: str, value: Any) -> None:
    if value is REMOVE:
        people.pop(key, None)
    else:
        people[key] = value


def _write_general(people: Collection[str, Person], key: str, value: Any) -> None:
    codec = people._codec
    write: Write[Any]
    if value is REMOVE:
        if key not in people:
            return
        write = (*codec.encode_key(key), None, None)
    else:
        write = codec.encode_write(key, value)
    Core._write(people._core, people, (write,))


def _index_state(people: Collection[str, Person]) -> dict[str, Any]:
    """Return every index's lookups in index order, and what writes read: the index
    keys each key holds and the keys in the order of their insertion positions."""
    indexes: IndexSet[str, Person] = people._indexes
    indexes.ready()  # after an open: what it left to the first write
    seqs = indexes._seqs
    state: dict[str, Any] = {"order": sorted(seqs, key=seqs.__getitem__)}
    for index in indexes.indexes:
        view = getattr(people, index.spec.name)
        state[index.spec.name] = {
            "size": len(index.entries),  # no entry left behind by a key that moved on
            "held": sorted(index.held.items(), key=str),  # a map: its order says nothing
            "listed": [
                view.find(index_key) for index_key in sorted(set(index.held.values()), key=str)
            ],
            "ordered": list(view) if index.spec.ordered else None,
        }
    return state


def _brute_force(people: Collection[str, Person]) -> dict[str, Any]:
    """Return what each index of ``people`` must list, from the entries alone."""
    entries = list(people.items())
    found: dict[str, Any] = {}
    for name, fn in (("by_email", _email), ("by_age", _age), ("by_team", _team)):
        if not hasattr(type(people), name):
            continue
        view = getattr(people, name)
        index_keys = sorted({fn(value) for _, value in entries} - {None})  # type: ignore[type-var]  # ints or strs
        found[name] = [
            (index_key, view.find(index_key), [(k, v) for k, v in entries if fn(v) == index_key])
            for index_key in index_keys
        ]
        if name == "by_age":
            aged = [(k, v, v.age) for k, v in entries if v.age is not None]
            assert list(view) == [(k, v) for k, v, _ in sorted(aged, key=lambda entry: entry[2])]
    return found


def _agrees(people: Collection[str, Person]) -> None:
    """Assert each index lists exactly the entries that hold each index key, in order,
    and holds nothing else."""
    for name, rows in _brute_force(people).items():
        for index_key, listed, expected in rows:
            assert listed == expected, (name, index_key, LANDED)
        index = people._indexes.named(name)
        assert len(index.entries) == sum(len(expected) for _, _, expected in rows), LANDED
        assert sorted(index.held.items(), key=str) == sorted(
            ((key, index_key) for index_key, _, expected in rows for key, _ in expected), key=str
        ), LANDED


def _drive(
    write: Callable[[Collection[str, Person], str, Any], None],
    path: Path,
    database: type[Database],
    config: StoreConfig,
) -> tuple[bytes, dict[str, Any]]:
    """Apply the same operations through ``write``; return the log and the index state."""
    with database.open(path, config=config) as opened:
        people: Collection[str, Person] = opened.people  # type: ignore[attr-defined]  # every database here has one
        for key, value in _operations():
            write(people, key, value)
        state = _index_state(people)
        _agrees(people)
    return path.read_bytes(), state


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
@pytest.mark.parametrize("shape", list(DATABASES))
def test_the_short_path_writes_the_log_and_indexes_of_the_general_path(
    tmp_path: Path, shape: str, config: StoreConfig
) -> None:
    """The same writes through the short path and through ``Core._write`` give equal
    logs, equal index contents in equal order, and equal insertion positions."""
    database = DATABASES[shape]
    short_log, short = _drive(_write_short, tmp_path / "short.log", database, config)
    general_log, general = _drive(_write_general, tmp_path / "general.log", database, config)
    assert len(short_log) > 1500  # the header and dozens of records
    assert short_log == general_log
    assert short == general
    assert len(short["order"]) > 10 or shape == "lone unique"  # positions were kept
    with database.open(tmp_path / "short.log") as reopened:  # rebuilt from the log
        assert _index_state(reopened.people) == short  # type: ignore[attr-defined]  # as above


def test_the_short_path_is_taken_by_a_write_with_indexes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone insert or removal of a collection with indexes never goes through
    ``Core._write`` nor the hook's general ``before``."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the general path was taken")

    with SeveralDb.open(tmp_path / "db.log") as opened:
        monkeypatch.setattr(Core, "_write", refuse)
        monkeypatch.setattr(type(opened.people._index_hook), "before", refuse)
        opened.people["a"] = _person(1)
        opened.people["a"] = _person(2)
        del opened.people["a"]
        opened.people.insert("b", _person(3))
        monkeypatch.undo()
        assert list(opened.people) == ["b"]


def test_an_insert_hands_the_indexes_its_validated_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexes read an insert's value as validated, not decoded again from its
    bytes: on the short path, and on the general one a shared store takes."""
    for shared in (False, True):
        with LoneDb.open(tmp_path / f"{shared}.log", shared=shared) as opened:
            codec = opened.people._codec
            monkeypatch.setattr(codec, "thaw", lambda stored: pytest.fail("decoded again"))
            opened.people["a"] = _person(1)
            monkeypatch.undo()
            assert opened.people.by_email.get("p1@x") == ("a", _person(1))


class Mixed(Collection[str, Person]):
    """An ordered index whose keys are ints, or a str for one name: incomparable."""

    by_mixed: Index[Person, object] = Index(
        lambda person: "s" if person.name == "str" else person.age, ordered=True
    )


class MixedDb(Database):
    people: Mixed


def _raising(person: Person) -> str:
    if person.name == "raise":
        raise LookupError("index function failed")
    return person.name


class Raising(Collection[str, Person]):
    by_name: Index[Person, str] = Index(_raising, unique=True)


class RaisingDb(Database):
    people: Raising


class Listed(Collection[str, Person]):
    """A hash index alone whose function returns an unhashable list for one name."""

    by_team: Index[Person, object] = Index(
        lambda person: [person.team] if person.name == "list" else person.team
    )


class ListDb(Database):
    people: Listed


REFUSALS: list[tuple[type[Database], Person, type[BaseException]]] = [
    (LoneDb, Person(name="dup", email="p1@x"), UniqueViolationError),
    (RaisingDb, Person(name="raise"), LookupError),
    (MixedDb, Person(name="str"), TypeError),
    (SeveralDb, Person(name="dup", email="p1@x", age=7), UniqueViolationError),
    (ListDb, Person(name="list"), TypeError),
]


@pytest.mark.parametrize(("database", "value", "error"), REFUSALS)
@pytest.mark.parametrize("key", ["new", "a"], ids=["insert", "overwrite"])
def test_the_short_path_refuses_what_the_general_path_refuses(
    tmp_path: Path,
    database: type[Database],
    value: Person,
    error: type[BaseException],
    key: str,
) -> None:
    """A write the indexes refuse raises the same error on both paths, writes nothing
    and changes neither memory nor the indexes."""
    outcomes = []
    for name, write in (("short", _write_short), ("general", _write_general)):
        path = tmp_path / f"{name}.log"
        with database.open(path) as opened:
            people: Collection[str, Person] = opened.people  # type: ignore[attr-defined]  # every database here has one
            people["a"] = Person(name="a", email="p0@x", age=1)
            people["b"] = Person(name="b", email="p1@x", age=2)
            opened.flush()
            before = (path.read_bytes(), list(people.items()), _index_state(people))
            with pytest.raises(error):
                write(people, key, value)
            assert (path.read_bytes(), list(people.items()), _index_state(people)) == before
            people["c"] = Person(name="c", email="p2@x", age=3)  # still writable
            outcomes.append((path.read_bytes(), _index_state(people)))
    assert outcomes[0] == outcomes[1]


CTRL_C_WRITES: dict[str, Callable[[Collection[str, Person], int], object]] = {
    "insert new": lambda people, step: people.__setitem__(f"t{step}", _person(1000 + step)),
    "replace": lambda people, step: people.__setitem__(
        f"r{step}", Person(name="moved", email=f"m{step}@x", age=step % 4)
    ),
    "remove": lambda people, step: people.pop(f"r{step}"),
}


def _write_interrupted_at(
    people: Collection[str, Person],
    write: Callable[[Collection[str, Person], int], object],
    step: int,
    hits: list[int],
) -> None:
    """Put ``r{step}`` (present, for a replacement or removal), then run ``write`` with a
    Ctrl-C at its ``step``-th point; assert the write's phase and the lock are left free."""
    people[f"r{step}"] = _person(2000 + step)
    try:
        with _interrupt_at(step, hits):
            write(people, step)
    except _Injected:
        pass
    core = people._core
    assert core._phase is _Phase.IDLE, f"phase left set after {LANDED}"
    assert _lock_is_free_for_other_threads(core), f"lock held after {LANDED}"


@pytest.mark.parametrize("operation", list(CTRL_C_WRITES))
@pytest.mark.parametrize("shape", ["lone unique", "ordered alone"])
def test_ctrl_c_anywhere_in_a_short_path_write_with_indexes_keeps_them_true(
    tmp_path: Path, shape: str, operation: str
) -> None:
    """Interrupted wherever a signal can land, an insert, a replacement or a removal
    leaves the lock free, the indexes equal to memory, and memory equal to what a
    reopen replays, with the indexes it rebuilds."""
    database = DATABASES[shape]
    path = tmp_path / "db.log"
    opened = database.open(path)
    people: Collection[str, Person] = opened.people  # type: ignore[attr-defined]  # every database here has one
    write = CTRL_C_WRITES[operation]

    def attempt(step: int, hits: list[int]) -> None:
        _write_interrupted_at(people, write, step, hits)
        _agrees(people)

    steps = _every_step(attempt)
    assert steps >= 20  # the trace saw the write's code
    items, state = list(people.items()), _index_state(people)
    opened.close()
    with database.open(path) as reopened:
        assert list(reopened.people.items()) == items  # type: ignore[attr-defined]  # as above
        assert _index_state(reopened.people) == state  # type: ignore[attr-defined]  # as above


class Frozen(BaseModel):
    """An immutable value: memory keeps the validated value itself."""

    model_config = ConfigDict(frozen=True)
    name: str


class Strict(BaseModel):
    """A value with a strict rule: encode_value's careful path."""

    model_config = ConfigDict(strict=True)
    name: str


@pytest.mark.parametrize(
    ("key_type", "value_type", "key", "value"),
    [
        (str, Person, "k", _person(3)),
        (str, Person, "k", {"name": "n", "age": "7"}),  # validated, not as given
        (uuid.UUID, Person, "12345678-1234-5678-1234-567812345678", _person(4)),
        (str, Frozen, "k", Frozen(name="f")),
        (str, Strict, "k", Strict(name="s")),
        (int, int, 3, 9),
    ],
    ids=["model", "coerced", "uuid-key", "frozen", "strict", "int"],
)
def test_encode_insert_gives_encode_writes_write_and_the_validated_value(
    tmp_path: Path, key_type: type, value_type: type, key: object, value: object
) -> None:
    """``Codec.encode_insert``, what an indexed collection's insert encodes with, gives
    the write ``encode_write`` gives, and the value ``encode_value`` validates."""
    store: TypedStore[Any, Any]
    with TypedStore.open(tmp_path / "store.log", key_type, value_type) as store:
        codec: Codec[Any, Any] = store._codec
        write, validated = codec.encode_insert(key, value)
        assert write == codec.encode_write(key, value)
        assert validated == codec.encode_value(value)[0]
        assert type(validated) is value_type


@pytest.mark.parametrize("shape", ["lone unique", "ordered alone"])
def test_threads_writing_through_the_short_path_keep_the_indexes_true(
    tmp_path: Path, shape: str
) -> None:
    """Threads inserting, replacing and removing keys, some racing for one email, while
    others look up: every lookup answers with an entry that holds its index key, each
    contested email ends with at most one holder, and the indexes equal memory and a
    reopen's."""
    database = DATABASES[shape]
    path = tmp_path / "db.log"
    errors: list[BaseException] = []
    refused: list[str] = []
    with database.open(path) as opened:
        people: Collection[str, Person] = opened.people  # type: ignore[attr-defined]  # every database here has one

        def write(worker: int) -> None:
            try:
                for step in range(150):
                    key = f"w{worker}-{step % 20}"
                    contested = Person(name=key, email=f"c{step % 5}@x", age=step % 4)
                    try:
                        people[key] = contested if step % 3 == 0 else _person(worker * 1000 + step)
                    except UniqueViolationError:
                        refused.append(key)
                    if step % 7 == 6:
                        people.pop(key, None)
            except BaseException as exc:  # reported below
                errors.append(exc)

        def look() -> None:
            try:
                for step in range(300):
                    if shape == "lone unique":
                        found = people.by_email.get(f"c{step % 5}@x")  # type: ignore[attr-defined]  # Lone's
                        assert found is None or found[1].email == f"c{step % 5}@x"
                    else:
                        for _, value in people.by_age.range(1, 2):  # type: ignore[attr-defined]  # OrderedAlone's
                            assert value.age == 1
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
        threads += [threading.Thread(target=look) for _ in range(2)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # threads switch between any two bytecodes, near enough
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.setswitchinterval(interval)
        assert not errors, errors
        if shape == "lone unique":
            assert refused  # the race for one email was lost by some writes
        _agrees(people)
        items, state = list(people.items()), _index_state(people)
    with database.open(path) as reopened:
        assert list(reopened.people.items()) == items  # type: ignore[attr-defined]  # as above
        assert _index_state(reopened.people) == state  # type: ignore[attr-defined]  # as above
