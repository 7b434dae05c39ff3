"""A single write's short path (``Core._write_one`` and ``_modify_one``,
``Log.append_operation``) against the general one (``Core._write``, ``Log.append``): the
same log, byte for byte, and the same refusals.

The short path is taken by every insert, removal and ``modify`` without default of an
exclusive store with no transaction open and no index; these tests drive the same
writes through both paths and compare the files, for each layout a single write's
record can take (a collection's records carry its id, a large value is written as
parts, a changed schema writes its record first) and each config (buffered,
write-through, fsync per write). Then: the short path is taken, refuses a write
re-entered during its append, never leaves the compaction policy due, and keeps memory
equal to the log wherever a Ctrl-C lands.
"""

from __future__ import annotations

import datetime
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.test_interrupts import (
    LANDED,
    Ints,
    _every_step,
    _Injected,
    _interrupt_at,
    _lock_is_free_for_other_threads,
    _write_from_another_thread,
)
from typedstore import Collection, Database, Index, StoreConfig, TypedStore, _format, _fs, _log
from typedstore._compact import is_due
from typedstore._core import Core, _Phase
from typedstore._records import Write, operation_record, record_head

CONFIGS = {
    "write-through": StoreConfig(),
    "buffered": StoreConfig(write_through=False),
    "sync": StoreConfig(sync_on_write=True),
}


class Person(BaseModel):
    """A mutable value with a datetime, as the benchmark stores."""

    name: str
    born: datetime.datetime
    tags: list[str]


class Two(Database):
    """A database whose second collection's records carry its id."""

    first: Collection[int, int]
    second: Collection[str, Person]


class IndexedPeople(Collection[str, Person]):
    """A collection whose writes go through its indexes' hooks."""

    by_name: Index[Person, str] = Index(lambda person: person.name, unique=True)
    by_born: Index[Person, datetime.datetime] = Index(lambda person: person.born, ordered=True)


class Indexed(Database):
    """A database of one collection with indexes."""

    people: IndexedPeople


def _person(index: int) -> Person:
    born = datetime.datetime(1990, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(days=index)
    return Person(name=f"p{index}", born=born, tags=["a"] * (index % 3))


Operation = tuple[Any, Any]
"""A key and its new value, or ``REMOVE``."""

REMOVE = object()
MODIFY = object()
"""``modify`` with the collection's ``BUMP`` function (a present key)."""
BUMPS: dict[type, Callable[[Any], Any]] = {
    int: lambda value: value * 3 + 1,
    bytes: lambda value: value[1:],
    Person: lambda person: person.model_copy(update={"tags": [*person.tags, "m"]}),
}


def _operations(value: Callable[[int], Any]) -> Iterator[Operation]:
    """Inserts, overwrites, modifies, removals of present and absent keys."""
    for index in range(40):
        yield index % 25, value(index)
        if index % 7 == 3:
            yield index % 25, REMOVE
        if index % 11 == 5:
            yield 1000 + index, REMOVE  # absent: writes nothing
        if index % 5 == 2:
            yield index % 25, MODIFY


def _bump(collection: Collection[Any, Any]) -> Callable[[Any], Any]:
    return BUMPS[collection._codec.value_type]  # type: ignore[index]  # a type, as above


def _write_short(collection: Collection[Any, Any], key: Any, value: Any) -> None:
    if value is REMOVE:
        collection.pop(key, None)
    elif value is MODIFY:
        if key in collection:
            collection.modify(key, _bump(collection))
    else:
        collection[key] = value


def _write_general(collection: Collection[Any, Any], key: Any, value: Any) -> None:
    codec = collection._codec
    write: Write[Any]
    if value is REMOVE:
        found = codec.find_key(key)
        assert found is not None
        write = (found[0], found[1], None, None)
    elif value is MODIFY:
        if key not in collection:
            return
        validated, blob = codec.encode_value(_bump(collection)(collection[key]))
        write = (*codec.encode_key(key), codec.freeze(validated, blob), blob)
    else:
        write = codec.encode_write(key, value)
    Core._write(collection._core, collection, (write,))


def _drive(
    write: Callable[[Collection[Any, Any], Any, Any], None],
    path: Path,
    config: StoreConfig,
    kind: str,
) -> bytes:
    """Apply the same operations through ``write``; return the log's bytes once closed."""
    if kind == "ints":
        with TypedStore.open(path, int, int, config=config) as store:
            for key, value in _operations(lambda index: index * 7 - 3):
                write(store, key, value)
    elif kind == "large":
        with TypedStore.open(path, int, bytes, config=config) as blobs:
            for key, value in _operations(lambda index: bytes([index]) * (index * 4_000)):
                write(blobs, key, value)
    elif kind == "indexed":
        with Indexed.open(path, config=config) as indexed:
            for key, value in _operations(_person):
                write(indexed.people, str(key), value)
            held = indexed.people
            for key, person in held.items():  # the hooks followed either path's writes
                assert held.by_name.get(person.name) == (key, person)
    elif kind == "uuid":  # a key validated before the lock, not an exact plain one
        with TypedStore.open(path, uuid.UUID, Person, config=config) as people:
            for key, value in _operations(_person):
                write(people, uuid.UUID(int=key), value)
    else:
        with Two.open(path, config=config) as db:
            for key, value in _operations(_person):
                write(db.second, str(key), value)
                write(db.first, key, value if value in (REMOVE, MODIFY) else len(value.tags))
    return path.read_bytes()


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
@pytest.mark.parametrize("kind", ["ints", "large", "uuid", "collections", "indexed"])
def test_a_single_write_appends_the_bytes_of_the_general_path(
    tmp_path: Path, config: StoreConfig, kind: str
) -> None:
    """The same writes through the short path and through ``Core._write`` give equal logs."""
    short = _drive(_write_short, tmp_path / "short.log", config, kind)
    general = _drive(_write_general, tmp_path / "general.log", config, kind)
    assert len(short) > 800  # the header and dozens of records
    assert short == general


def test_a_write_after_a_schema_change_appends_the_bytes_of_the_general_path(
    tmp_path: Path,
) -> None:
    """A write that opens a new schema generation writes what the general path writes."""
    logs = []
    for name, write in (("short", _write_short), ("general", _write_general)):
        path = tmp_path / f"{name}.log"
        with TypedStore.open(path, int, int) as store:
            store[1] = 1
        with TypedStore.open(path, int, int, version=2, migrations={1: lambda d: d}) as store:
            write(store, 2, 2)  # schema record, then this record in generation 1
            write(store, 1, REMOVE)
        logs.append(path.read_bytes())
    assert logs[0] == logs[1]


def test_a_write_of_an_exclusive_store_takes_the_short_path(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inserts, modifies and removals of an exclusive write-through store never call
    ``Log.append``,
    so that the comparisons above compare two paths."""

    def refuse(*args: object) -> None:
        raise AssertionError("Log.append called")

    with TypedStore.open(log_path, str, int) as store:
        monkeypatch.setattr(_log.Log, "append", refuse)
        store["a"] = 1
        store.insert("b", 2)
        assert store.modify("b", lambda value: value + 1) == 3
        del store["a"]
        assert store.pop("b") == 3
        monkeypatch.undo()
    with TypedStore.open(log_path, str, int) as reopened:
        assert dict(reopened.items()) == {}


class _WritingOS:
    """``os`` as ``_fs`` sees it, with a ``pwrite`` that first writes to a store."""

    def __init__(self, write: Callable[[], None]) -> None:
        self.write = write
        self.refused: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        try:
            self.write()
        except RuntimeError as exc:
            self.refused.append(str(exc))
        return os.pwrite(fd, data, offset)


@pytest.mark.parametrize("operation", ["insert", "remove"])
def test_a_write_from_inside_the_short_paths_append_is_refused(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    """A write re-entered while the short path appends (as a signal handler's would be)
    is refused, and the log holds the outer write alone."""
    store = TypedStore.open(log_path, str, int)
    store["a"] = 0
    writing = _WritingOS(lambda: store.__setitem__("inner", 1))
    monkeypatch.setattr(_fs, "os", writing)
    if operation == "insert":
        store["a"] = 1
    else:
        del store["a"]
    monkeypatch.undo()
    assert len(writing.refused) == 1
    assert "inside one of its writes" in writing.refused[0]
    expected = {"a": 1} if operation == "insert" else {}
    assert dict(store.items()) == expected
    store.close()
    with TypedStore.open(log_path, str, int) as reopened:
        assert dict(reopened.items()) == expected


@settings(max_examples=60, deadline=None)
@given(
    ratio=st.sampled_from([1.5, 2.0, 3.0, 7.25]),
    operations=st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=300),
)
def test_no_write_leaves_the_compaction_policy_due(
    tmp_path_factory: pytest.TempPathFactory, ratio: float, operations: list[tuple[int, bool]]
) -> None:
    """The short path asks the policy only when it may be due, yet after every write the
    policy is not due: a write that made it due compacted."""
    path = tmp_path_factory.mktemp("policy") / "store.log"
    config = StoreConfig(min_compact_bytes=0, compact_ratio=ratio)
    with TypedStore.open(path, int, int, config=config) as store:
        log = store._core._log
        assert log is not None
        for key, insert in operations:
            if insert:
                store[key] = key
            else:
                store.pop(key, None)
            log = store._core._log
            assert log is not None
            assert not is_due(config, log.size, log.total_records, len(store))


@given(
    collection=st.integers(0, 2**32 - 1),
    key=st.binary(max_size=40),
    value=st.none() | st.binary(max_size=300),
    offset=st.integers(0, 2**64 - 1),
)
def test_a_single_writes_frame_is_the_general_frame(
    collection: int, key: bytes, value: bytes | None, offset: int
) -> None:
    """``operation_frame`` gives ``encode_frame`` of the record ``operation_record`` makes."""
    head = record_head(collection)
    body = operation_record(head, key, value)
    assert isinstance(body, bytes)
    assert _format.operation_frame(head, key, value, offset) == _format.encode_frame(body, offset)


@pytest.mark.parametrize("size", [0, 1, 254, 255, 256, 257, 70_000])
def test_a_single_writes_frame_is_the_general_frame_for_keys_of_any_length(size: int) -> None:
    """Keys under 256 bytes take an insert head made once, longer ones pack their own:
    both give ``encode_frame`` of the record ``operation_record`` makes."""
    key = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    for value in (b"\x01", None):
        body = operation_record(b"", key, value)
        assert isinstance(body, bytes)
        assert _format.operation_frame(b"", key, value, 77) == _format.encode_frame(body, 77)


def _modify_present(store: Ints, key: str) -> None:
    store.modify(key, lambda value: value + 1)


def _remove_present(store: Ints, key: str) -> None:
    store.pop(key, None)


@pytest.mark.parametrize("operation", [_modify_present, _remove_present])
def test_ctrl_c_at_any_point_of_a_short_path_write_keeps_memory_equal_to_the_log(
    log_path: Path, operation: Callable[[Ints, str], None]
) -> None:
    """Interrupted wherever a signal can land, a ``modify`` of a present key (no default)
    or a removal leaves the lock free and memory equal to what a reopen replays."""
    store = Ints.open(log_path)
    core = store._core

    def attempt(step: int, hits: list[int]) -> None:
        key = f"t{step}"  # a key of its own: a later step does not overwrite it
        store[key] = step  # present, so that the operation writes
        try:
            with _interrupt_at(step, hits):
                operation(store, key)
        except _Injected:
            pass
        assert core._phase is _Phase.IDLE, f"phase left set after {LANDED}"
        assert _lock_is_free_for_other_threads(core), f"lock held after {LANDED}"
        _write_from_another_thread(lambda: store.__setitem__("other", step))

    steps = _every_step(attempt)
    assert steps >= 20  # the trace saw the operation's code
    items = dict(store.items())
    store.close()
    with Ints.open(log_path) as reopened:
        assert dict(reopened.items()) == items


def test_a_compaction_starts_the_policys_count_afresh(log_path: Path) -> None:
    """The records the short path skips the policy for are counted from the log the
    policy was asked about; a compaction leaves fewer records, and a count from the old
    log must not keep the policy from a compaction that is now due."""
    config = StoreConfig(min_compact_bytes=0, compact_ratio=1.5)
    with TypedStore.open(log_path, int, int, config=config) as store:
        for key in range(5):
            store[key] = key  # 5 records, 5 live: the next record cannot make it due
        del store[0]  # 6 records, 4 live: due, so this write compacts to 4 records
        log = store._core._log
        assert log is not None
        assert log.total_records == 4
        del store[1]  # 5 records, 3 live: due again
        log = store._core._log
        assert log is not None
        assert not is_due(config, log.size, log.total_records, len(store))


class People(TypedStore[str, Person]):
    """Mutable values, kept as their bytes: ``modify`` decodes, then encodes."""


def test_ctrl_c_in_a_short_path_modify_of_a_mutable_value_keeps_memory_equal_to_the_log(
    log_path: Path,
) -> None:
    """The same for a value memory keeps as bytes (``Codec.encode_modified``'s decode,
    ``fn``, the dump's validation and the append)."""
    store = People.open(log_path)
    core = store._core

    def attempt(step: int, hits: list[int]) -> None:
        key = f"t{step}"
        store[key] = _person(step)
        try:
            with _interrupt_at(step, hits):
                store.modify(key, BUMPS[Person])
        except _Injected:
            pass
        assert core._phase is _Phase.IDLE, f"phase left set after {LANDED}"
        assert _lock_is_free_for_other_threads(core), f"lock held after {LANDED}"
        _write_from_another_thread(lambda: store.__setitem__("other", _person(step)))

    steps = _every_step(attempt)
    assert steps >= 20
    items = dict(store.items())
    assert any(person.tags[-1:] == ["m"] for person in items.values())  # some modify landed
    store.close()
    with People.open(log_path) as reopened:
        assert dict(reopened.items()) == items


@pytest.mark.parametrize("key", [2**70, "\ud800", "absent"], ids=["big-int", "surrogate", "str"])
def test_a_short_path_modify_of_an_exact_key_no_store_holds_raises_key_error(
    log_path: Path, key: Any
) -> None:
    """An exact ``int`` or ``str`` key that could never be stored (too large to pack, a lone
    surrogate) or is absent raises KeyError without calling ``fn`` or writing."""
    calls: list[object] = []

    def fn(value: int) -> int:
        calls.append(value)
        return value

    int_keys = isinstance(key, int)
    store: TypedStore[Any, int]
    with TypedStore.open(log_path, int if int_keys else str, int) as store:
        store[1 if int_keys else "a"] = 1
        size = log_path.stat().st_size
        with pytest.raises(KeyError) as raised:
            store.modify(key, fn)
        assert raised.value.args == (key,)
        assert calls == []
        assert log_path.stat().st_size == size
        assert len(store) == 1
