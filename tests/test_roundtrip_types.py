"""Keys and values of many types read back as written, from memory and after a reopen."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import errno
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NamedTuple, NotRequired, cast

import msgpack
import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from tests.models import Point, User
from typedstore import EncodingError, StoreConfig, TypedStore, _format
from typedstore._codec import Codec

UTC_PLUS_0530 = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
UTC_MINUS_08 = datetime.timezone(datetime.timedelta(hours=-8))


class Color(enum.Enum):
    """A plain enum with string values."""

    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    """An int enum: equal to ints, so only a type check tells them apart."""

    LOW = 1
    HIGH = 2


class Team(BaseModel):
    """A mutable model nesting other models."""

    name: str
    lead: User
    members: list[User]
    origin: Point


class Profile(BaseModel):
    """A model with optional fields."""

    nickname: str | None = None
    age: int | None
    tags: list[str] | None = None


class Badge(BaseModel):
    """A frozen model of immutable fields, nesting another one."""

    model_config = ConfigDict(frozen=True)

    label: str
    origin: Point
    ids: tuple[int, ...]


class Tagged(BaseModel):
    """A frozen model with a mutable field: frozen alone does not make it immutable."""

    model_config = ConfigDict(frozen=True)

    tags: list[str]


@dataclasses.dataclass
class Item:
    """A mutable dataclass."""

    name: str
    qty: int
    tags: list[str]


@dataclasses.dataclass(frozen=True)
class Coord:
    """A frozen dataclass of immutable fields."""

    lat: Decimal
    lon: Decimal


class Movie(TypedDict):
    """A TypedDict with an optional key."""

    title: str
    year: int
    rating: NotRequired[float]


class Pair(NamedTuple):
    """A named tuple of immutable fields."""

    left: int
    right: str


class Stamped(BaseModel):
    """A frozen model whose fields use pydantic's constrained date types."""

    model_config = ConfigDict(frozen=True)

    created: pydantic.AwareDatetime
    born: pydantic.PastDate
    seen: pydantic.NaiveDatetime


STAMPED = Stamped(
    created=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    born=datetime.date(2001, 2, 3),
    seen=datetime.datetime(2024, 1, 1),
)


@dataclasses.dataclass(frozen=True)
class Case:
    """Entries of one key and value type, written in this order."""

    key_type: Any
    value_type: Any
    entries: list[tuple[Any, Any]]


def values_of(value_type: Any, *values: Any) -> Case:
    """Return a case storing ``values`` under string keys."""
    return Case(str, value_type, [(f"k{i}", value) for i, value in enumerate(values)])


def keys_of(key_type: Any, *keys: Any) -> Case:
    """Return a case storing an int under each of ``keys``."""
    return Case(key_type, int, [(key, i) for i, key in enumerate(keys)])


ALICE = User(name="Alice", age=30, tags=["admin"])
BOB = User(name="Bob", age=25)

VALUE_CASES = {
    "int": values_of(int, 0, -1, 2**63 - 1, -(2**63), 2**64 - 1),
    "str": values_of(str, "", "plain", "h\u00e9llo \u2603 \x00 \U0001f600"),
    "bytes-not-utf8": values_of(bytes, b"\xff\xfe\x80", b"", b"\x00\xc3\x28"),
    "uuid": values_of(
        uuid.UUID, uuid.UUID(int=0), uuid.UUID("12345678-1234-5678-1234-567812345678")
    ),
    "datetime-tz": values_of(
        datetime.datetime,
        datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC_PLUS_0530),
        datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC),
        datetime.datetime(9999, 12, 31, 12, tzinfo=UTC_MINUS_08),
    ),
    "decimal": values_of(
        Decimal,
        Decimal("3.141592653589793238462643383279502884"),
        Decimal("-0.000"),
        Decimal("1E+30"),
    ),
    "enum": values_of(Color, Color.RED, Color.GREEN),
    "int-enum": values_of(Priority, Priority.LOW, Priority.HIGH),
    "tuple": values_of(tuple[int, str, bytes], (1, "a", b"\xff"), (-5, "", b"")),
    "variadic-tuple": values_of(tuple[int, ...], (), (1,), (1, 2, 3)),
    "named-tuple": values_of(Pair, Pair(1, "one")),
    "set": values_of(set[int], set(), {1, 2, 3}),
    "frozenset": values_of(frozenset[str], frozenset(), frozenset({"a", "b"})),
    "model": values_of(User, ALICE, BOB),
    "nested-model": values_of(
        Team, Team(name="core", lead=ALICE, members=[ALICE, BOB], origin=Point(x=1, y=-1))
    ),
    "frozen-model": values_of(Badge, Badge(label="b", origin=Point(x=0, y=0), ids=(1, 2))),
    "dataclass": values_of(Item, Item("pen", 3, ["office"]), Item("cup", 0, [])),
    "frozen-dataclass": values_of(Coord, Coord(Decimal("52.37"), Decimal("4.89"))),
    "optional-fields": values_of(
        Profile, Profile(age=None), Profile(nickname="al", age=3, tags=["x"]), Profile(age=0)
    ),
    "typed-dict": values_of(
        Movie, Movie(title="Alien", year=1979), Movie(title="Up", year=2009, rating=8.3)
    ),
    "list-of-models": values_of(list[User], [], [ALICE, BOB]),
    "dict-of-lists": values_of(dict[str, list[int]], {}, {"a": [1, 2], "b": []}),
    "dict-int-keys": values_of(dict[int, str], {1: "one", -2: "minus two"}),
    "dict-tuple-keys": values_of(dict[tuple[int, int], str], {(1, 2): "a", (3, 4): "b"}),
    "union-scalar": values_of(int | str, 1, "1", "x"),
    "union-models": values_of(User | Point, ALICE, Point(x=2, y=3)),
    "optional-none": values_of(int | None, None, 7),
    "float": values_of(float, 0.5, -0.0, 1e308, 5e-324),
}

KEY_CASES = {
    "str": keys_of(str, "", "a", "\U0001f600"),
    "int": keys_of(int, 0, -1, 2**63 - 1, -(2**63)),
    "bytes-not-utf8": keys_of(bytes, b"\xff", b"\x80\x81", b"a"),
    "uuid": keys_of(uuid.UUID, uuid.UUID(int=1), uuid.UUID(int=2**128 - 1)),
    "datetime-tz": keys_of(
        datetime.datetime,
        datetime.datetime(2024, 1, 1, 12, tzinfo=UTC_PLUS_0530),
        datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.UTC),
    ),
    "enum": keys_of(Color, Color.GREEN, Color.RED),
    "int-enum": keys_of(Priority, Priority.HIGH, Priority.LOW),
    "tuple": keys_of(tuple[str, int], ("a", 1), ("a", 2), ("", 0)),
    "frozenset": keys_of(frozenset[int], frozenset({1, 2}), frozenset()),
    "frozen-model": keys_of(Point, Point(x=1, y=2), Point(x=2, y=1)),
    "nested-frozen-model": keys_of(Badge, Badge(label="b", origin=Point(x=0, y=0), ids=(1,))),
}

ALL_CASES = {f"value-{name}": case for name, case in VALUE_CASES.items()} | {
    f"key-{name}": case for name, case in KEY_CASES.items()
}


def assert_same(got: object, expected: object) -> None:
    """Assert ``got`` equals ``expected``, has its type and, for datetimes, its offset."""
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(expected, datetime.datetime):
        assert isinstance(got, datetime.datetime)
        assert got.utcoffset() == expected.utcoffset()


def assert_holds(store: TypedStore[Any, Any], entries: list[tuple[Any, Any]]) -> None:
    """Assert ``store`` holds exactly ``entries``, in order, through every read path."""
    assert list(store) == [key for key, _ in entries]
    for (got_key, got), (key, value) in zip(store.items(), entries, strict=True):
        assert_same(got_key, key)
        assert_same(got, value)
        assert_same(store[key], value)
        assert_same(store.get(key), value)


def open_case(path: Path, case: Case) -> TypedStore[Any, Any]:
    """Open the store at ``path`` with ``case``'s types."""
    return TypedStore.open(path, case.key_type, case.value_type)


def write_case(path: Path, case: Case) -> TypedStore[Any, Any]:
    """Open a store of ``case``'s types at ``path`` and write its entries."""
    store = open_case(path, case)
    for key, value in case.entries:
        store[key] = value
    return store


@pytest.mark.parametrize("case", ALL_CASES.values(), ids=ALL_CASES.keys())
def test_entries_read_back_as_written(log_path: Path, case: Case) -> None:
    """Written keys and values read back equal and of the same type before any reopen."""
    with write_case(log_path, case) as store:
        assert_holds(store, case.entries)


@pytest.mark.parametrize("case", ALL_CASES.values(), ids=ALL_CASES.keys())
def test_entries_survive_reopen(log_path: Path, case: Case) -> None:
    """A reopened store holds the same keys and values, in the same order, as memory did."""
    with write_case(log_path, case) as store:
        in_memory = list(store.items())
    with open_case(log_path, case) as reopened:
        assert list(reopened.items()) == in_memory
        assert_holds(reopened, case.entries)


@pytest.mark.parametrize("case", ALL_CASES.values(), ids=ALL_CASES.keys())
def test_entries_survive_compaction(log_path: Path, case: Case) -> None:
    """A compacted and reopened store holds the entries as written."""
    with write_case(log_path, case) as store:
        store.compact()
    with open_case(log_path, case) as reopened:
        assert_holds(reopened, case.entries)


@pytest.mark.parametrize(
    "offset",
    [datetime.timedelta(hours=5, minutes=30, seconds=15), datetime.timedelta(seconds=-1)],
    ids=["plus-seconds", "minus-one-second"],
)
def test_datetime_value_keeps_an_offset_with_seconds(
    log_path: Path, offset: datetime.timedelta
) -> None:
    """A datetime whose UTC offset has seconds (as historic zones do) keeps its instant."""
    value = datetime.datetime(1900, 1, 1, 12, tzinfo=datetime.timezone(offset))
    with TypedStore.open(log_path, str, datetime.datetime) as store:
        store["t"] = value
        assert_same(store["t"], value)
    with TypedStore.open(log_path, str, datetime.datetime) as reopened:
        assert_same(reopened["t"], value)


@pytest.mark.parametrize(
    "offset",
    [datetime.timedelta(microseconds=1), datetime.timedelta(microseconds=-999_999)],
    ids=["plus-one-microsecond", "minus-under-a-second"],
)
def test_datetime_and_time_keep_an_offset_under_a_second(
    log_path: Path, offset: datetime.timedelta
) -> None:
    """A datetime and a time whose UTC offset is under a second but not zero reopen with it."""
    zone = datetime.timezone(offset)
    at = datetime.datetime(2024, 1, 1, 12, tzinfo=zone)
    with TypedStore.open(log_path, str, tuple[datetime.datetime, datetime.time]) as store:
        store["t"] = (at, datetime.time(12, tzinfo=zone))
    with TypedStore.open(log_path, str, tuple[datetime.datetime, datetime.time]) as reopened:
        assert [item.utcoffset() for item in reopened["t"]] == [offset, offset]
        assert reopened["t"][0] == at


def test_datetime_key_keeps_an_offset_with_seconds(log_path: Path) -> None:
    """A datetime key whose UTC offset has seconds is found again under itself."""
    key = datetime.datetime(
        1900, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(seconds=15))
    )
    with TypedStore.open(log_path, datetime.datetime, int) as store:
        store[key] = 1
        assert key in store


class AliasedUser(BaseModel):
    """A model whose field has one alias for both directions."""

    user_name: str = Field(alias="userName")


class SerializedAliasUser(BaseModel):
    """A model whose field is dumped under an alias but validated by its name."""

    user_name: str = Field(serialization_alias="userName")


class ValidatedAliasUser(BaseModel):
    """A model whose field is validated from an alias but dumped under its name."""

    user_name: str = Field(validation_alias="userName")


@pytest.mark.parametrize(
    "value",
    [
        AliasedUser(userName="al"),
        SerializedAliasUser(user_name="al"),
        ValidatedAliasUser(userName="al"),
    ],
    ids=["alias", "serialization-alias", "validation-alias"],
)
def test_models_with_aliases_round_trip(log_path: Path, value: BaseModel) -> None:
    """A valid instance of a model with field aliases is stored and read back equal."""
    with TypedStore.open(log_path, str, type(value)) as store:
        store["a"] = value
        assert_same(store["a"], value)
    with TypedStore.open(log_path, str, type(value)) as reopened:
        assert_same(reopened["a"], value)


# -- copies and identity ------------------------------------------------------------------


def read_paths(store: TypedStore[Any, Any], key: Any) -> Iterator[Any]:
    """Yield the value of ``key`` once through each way of reading it."""
    position = list(store).index(key)
    yield store.get(key)
    yield store[key]
    yield list(store.values())[position]
    yield list(store.items())[position][1]
    entry = store.get_index(position)
    assert entry is not None
    yield entry[1]
    yield store.get_index(position - len(store))[1]  # type: ignore[index]  # in range: not None


IMMUTABLE_CASES = {
    "int": values_of(int, 2**40),
    "str": values_of(str, "a string long enough not to be interned " * 3),
    "bytes": values_of(bytes, b"\xff" * 50),
    "frozen-model": values_of(Point, Point(x=1, y=2)),
    "nested-frozen-model": values_of(Badge, Badge(label="b", origin=Point(x=0, y=0), ids=(1,))),
    "frozen-dataclass": values_of(Coord, Coord(Decimal("1.5"), Decimal("2.5"))),
    "tuple": values_of(tuple[int, str], (2**40, "x")),
    "named-tuple": values_of(Pair, Pair(2**40, "x")),
    "frozenset": values_of(frozenset[int], frozenset({2**40})),
    "datetime": values_of(datetime.datetime, datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)),
    "enum": values_of(Color, Color.RED),
    "aware-datetime": values_of(
        pydantic.AwareDatetime, datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    ),
    "past-date": values_of(pydantic.PastDate, datetime.date(2001, 2, 3)),
    "frozen-model-of-constrained-dates": values_of(Stamped, STAMPED),
}


def _change_user(user: User) -> None:
    user.age += 1
    user.tags.append("changed")


def _change_item(item: Item) -> None:
    item.qty += 1
    item.tags.append("changed")


def _change_movie(movie: Movie) -> None:
    movie["year"] += 1


MUTABLE_CASES: dict[str, tuple[Case, Callable[[Any], None]]] = {
    "model": (values_of(User, ALICE), _change_user),
    "nested-model": (
        values_of(Team, Team(name="t", lead=ALICE, members=[BOB], origin=Point(x=0, y=0))),
        lambda team: team.members[0].tags.append("changed"),
    ),
    "frozen-model-with-list": (
        values_of(Tagged, Tagged(tags=["a"])),
        lambda tagged: tagged.tags.append("b"),
    ),
    "dataclass": (values_of(Item, Item("pen", 1, [])), _change_item),
    "list": (values_of(list[int], [1, 2]), lambda items: items.append(3)),
    "dict": (values_of(dict[str, int], {"a": 1}), lambda mapping: mapping.update(b=2)),
    "set": (values_of(set[int], {1}), lambda numbers: numbers.add(2)),
    "typed-dict": (values_of(Movie, Movie(title="Up", year=2009)), _change_movie),
    "tuple-of-list": (
        values_of(tuple[list[int], str], ([1], "x")),
        lambda pair: pair[0].append(2),
    ),
}


@pytest.mark.parametrize("case", IMMUTABLE_CASES.values(), ids=IMMUTABLE_CASES.keys())
def test_immutable_values_are_returned_without_copying(log_path: Path, case: Case) -> None:
    """Every read of an immutable value returns the very object the store holds."""
    with write_case(log_path, case) as store:
        key, _ = case.entries[0]
        held = store.get(key)
        assert all(value is held for value in read_paths(store, key))


@pytest.mark.parametrize(
    "case", [case for case, _ in MUTABLE_CASES.values()], ids=MUTABLE_CASES.keys()
)
def test_mutable_values_are_fresh_copies(log_path: Path, case: Case) -> None:
    """Every read of a mutable value returns a new object."""
    with write_case(log_path, case) as store:
        key, _ = case.entries[0]
        seen = list(read_paths(store, key))
        assert len({id(value) for value in seen}) == len(seen)


@pytest.mark.parametrize(("case", "change"), MUTABLE_CASES.values(), ids=MUTABLE_CASES.keys())
def test_changing_a_returned_value_changes_nothing(
    log_path: Path, case: Case, change: Callable[[Any], None]
) -> None:
    """Changing returned mutable values in place changes neither memory nor the reopened log."""
    with write_case(log_path, case) as store:
        key, value = case.entries[0]
        for returned in read_paths(store, key):
            change(returned)
            assert returned != value
        assert_holds(store, case.entries)
    with open_case(log_path, case) as reopened:
        assert_holds(reopened, case.entries)


# -- instances built without validation ---------------------------------------------------


def _constructed_with_wrong_type() -> User:
    # model_construct skips validation, so a wrong field type gets through it.
    return User.model_construct(name="Mallory", age="not a number")  # type: ignore[arg-type]


def _constructed_without_a_field() -> User:
    # model_construct does not check that required fields are present either.
    return User.model_construct(name="Mallory")  # type: ignore[call-arg]


def _copied_with_wrong_update() -> User:
    return ALICE.model_copy(update={"age": "not a number"})


def _assigned_wrong_type() -> User:
    user = ALICE.model_copy(deep=True)
    # User has no validate_assignment, so the assignment is not checked.
    user.age = "not a number"  # type: ignore[assignment]
    return user


def _appended_wrong_type() -> User:
    user = ALICE.model_copy(deep=True)
    user.tags.append(42)  # type: ignore[arg-type]  # a wrong element type on purpose
    return user


UNVALIDATED: dict[str, Callable[[], User]] = {
    "model-construct-wrong-type": _constructed_with_wrong_type,
    "model-construct-missing-field": _constructed_without_a_field,
    "model-copy-update": _copied_with_wrong_update,
    "attribute-assignment": _assigned_wrong_type,
    "list-append": _appended_wrong_type,
}


def _write_by_insert(store: TypedStore[str, User], user: User) -> None:
    store.insert("alice", user)


def _write_by_setitem(store: TypedStore[str, User], user: User) -> None:
    store["alice"] = user


def _write_by_modify(store: TypedStore[str, User], user: User) -> None:
    store.modify("alice", lambda _: user)


def _write_new_key(store: TypedStore[str, User], user: User) -> None:
    store["mallory"] = user


def _write_in_transaction(store: TypedStore[str, User], user: User) -> None:
    with store.transaction() as txn:
        txn["bob"] = BOB
        txn["alice"] = user


WRITES: dict[str, Callable[[TypedStore[str, User], User], None]] = {
    "insert": _write_by_insert,
    "setitem": _write_by_setitem,
    "modify": _write_by_modify,
    "new-key": _write_new_key,
    "transaction": _write_in_transaction,
}


@pytest.mark.parametrize("build", UNVALIDATED.values(), ids=UNVALIDATED.keys())
@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_unvalidated_instances_are_rejected_and_nothing_is_written(
    log_path: Path,
    build: Callable[[], User],
    write: Callable[[TypedStore[str, User], User], None],
) -> None:
    """An instance that skipped validation raises ValidationError and leaves the log as it was."""
    with TypedStore.open(log_path, str, User) as store:
        store["alice"] = ALICE
        store.flush()
        size = log_path.stat().st_size
        with pytest.raises(pydantic.ValidationError, match="validation error for User"):
            write(store, build())
        store.flush()
        assert log_path.stat().st_size == size
        assert list(store.items()) == [("alice", ALICE)]
    with TypedStore.open(log_path, str, User) as reopened:
        assert list(reopened.items()) == [("alice", ALICE)]


# -- strict models, foreign instances, validators that are not idempotent ---------------------


class Shade(enum.Enum):
    """An enum for strict-mode models."""

    RED = "r"


class StrictRecord(BaseModel):
    """A strict model: validation refuses the plain data msgpack decodes to."""

    model_config = ConfigDict(strict=True)

    shade: Shade
    pair: tuple[int, int]
    ident: uuid.UUID
    amount: Decimal
    tags: set[str]


def test_strict_model_round_trips(log_path: Path) -> None:
    """A model in pydantic's strict mode is stored and reads back equal after a reopen."""
    record = StrictRecord(
        shade=Shade.RED, pair=(1, 2), ident=uuid.UUID(int=7), amount=Decimal("1.50"), tags={"a"}
    )
    with TypedStore.open(log_path, str, StrictRecord) as store:
        store["r"] = record
        assert store["r"] == record
    with TypedStore.open(log_path, str, StrictRecord) as store:
        assert store["r"] == record


class StrictCount(BaseModel):
    """A strict model of one plain field: "5" is no int for it."""

    model_config = ConfigDict(strict=True)

    count: int


def test_strict_model_built_without_validation_is_checked_strictly(log_path: Path) -> None:
    """A strict model built without validation, holding "5" for an int, raises ValidationError."""
    with (
        TypedStore.open(log_path, str, StrictCount) as store,
        pytest.raises(pydantic.ValidationError, match="count"),
    ):
        store["a"] = StrictCount.model_construct(count="5")  # type: ignore[arg-type]


class FieldStrictCount(BaseModel):
    """A lax model with one field strict by ``Field(strict=True)``."""

    count: int = pydantic.Field(strict=True)


class StrictTypes(BaseModel):
    """A lax model whose fields are strict by their types."""

    count: pydantic.StrictInt
    other: Annotated[int, pydantic.Strict()]


class FrozenStrictCount(BaseModel):
    """A frozen strict model: the store keeps the instance, not its bytes."""

    model_config = ConfigDict(strict=True, frozen=True)

    count: int


class EnumValues(BaseModel):
    """A strict model that keeps an enum's value: strict validation of that value fails."""

    model_config = ConfigDict(strict=True, use_enum_values=True)

    shade: Shade


STR_FOR_INT: dict[str, Any] = {"count": "5"}
"""Fields for ``model_construct``: a str where a strict int goes, hidden from mypy."""

UNVALIDATED_STRICT = {
    "field strict": (FieldStrictCount, lambda: FieldStrictCount.model_construct(**STR_FOR_INT)),
    "StrictInt": (StrictTypes, lambda: StrictTypes.model_construct(count=True, other=1)),
    "Annotated Strict": (StrictTypes, lambda: StrictTypes.model_construct(count=1, other=True)),
    "nested in a list": (list[StrictCount], lambda: [StrictCount.model_construct(**STR_FOR_INT)]),
    "frozen": (FrozenStrictCount, lambda: FrozenStrictCount.model_construct(**STR_FOR_INT)),
    "model_copy": (StrictCount, lambda: StrictCount(count=1).model_copy(update={"count": "5"})),
}


@pytest.mark.parametrize(
    ("value_type", "make"), UNVALIDATED_STRICT.values(), ids=UNVALIDATED_STRICT.keys()
)
def test_unvalidated_value_breaking_a_strict_rule_writes_nothing(
    log_path: Path, value_type: Any, make: Any
) -> None:
    """A value built without validation that breaks a strict rule raises and writes nothing."""
    with TypedStore.open(log_path, str, value_type) as store:
        size = log_path.stat().st_size
        with pytest.raises(pydantic.ValidationError, match="valid integer"):
            store["a"] = make()
        assert "a" not in store
        assert log_path.stat().st_size == size


def test_strict_key_built_without_validation_is_checked_strictly(log_path: Path) -> None:
    """A frozen strict model key holding "5" for an int raises ValidationError."""
    with (
        TypedStore.open(log_path, FrozenStrictCount, int) as store,
        pytest.raises(pydantic.ValidationError, match="count"),
    ):
        store[FrozenStrictCount.model_construct(count="5")] = 1  # type: ignore[arg-type]


def test_strict_model_keeping_enum_values_round_trips(log_path: Path) -> None:
    """A valid strict model with ``use_enum_values`` is not refused by the strict check."""
    with TypedStore.open(log_path, str, EnumValues) as store:
        store["a"] = EnumValues(shade=Shade.RED)
    with TypedStore.open(log_path, str, EnumValues) as store:
        assert store["a"] == EnumValues(shade=Shade.RED)


class Admin(BaseModel):
    """A model with User's fields and one more, but not a User."""

    name: str
    age: int
    role: str


def test_instance_of_another_model_is_rejected(log_path: Path) -> None:
    """An instance of an unrelated model is invalid input, not a User with fields dropped."""
    with TypedStore.open(log_path, str, User) as store:
        size = log_path.stat().st_size
        with pytest.raises(pydantic.ValidationError, match="instance of User"):
            store["a"] = Admin(name="a", age=1, role="root")  # type: ignore[assignment]
        assert "a" not in store
        assert log_path.stat().st_size == size


def _bump(value: int) -> int:
    return value + 1


class Bumped(BaseModel):
    """A frozen model whose validator changes the value every time it runs."""

    model_config = ConfigDict(frozen=True)

    x: Annotated[int, pydantic.AfterValidator(_bump)]


class BumpedMutable(BaseModel):
    """The same validator on a mutable model, whose bytes the store keeps."""

    x: Annotated[int, pydantic.AfterValidator(_bump)]


def test_unstable_immutable_value_is_refused(log_path: Path) -> None:
    """An immutable value that validation changes again would not survive compaction: refused."""
    with TypedStore.open(log_path, str, Bumped) as store:
        size = log_path.stat().st_size
        with pytest.raises(EncodingError, match="not idempotent"):
            store["k"] = Bumped(x=0)
        assert "k" not in store
        assert log_path.stat().st_size == size


def test_unstable_mutable_value_survives_compaction(log_path: Path) -> None:
    """A mutable value is kept as its bytes, so compaction and a reopen give what memory had."""
    with TypedStore.open(log_path, str, BumpedMutable) as store:
        store["k"] = BumpedMutable(x=0)
        before = store["k"]
        store.compact()
    with TypedStore.open(log_path, str, BumpedMutable) as store:
        assert store["k"] == before


class BumpedLarge(BaseModel):
    """An unstable frozen model with a payload large enough to be compared by digest."""

    model_config = ConfigDict(frozen=True)

    x: Annotated[int, pydantic.AfterValidator(_bump)]
    payload: bytes


LARGE_PAYLOAD = b"p" * (2 * 1024 * 1024)


def test_large_unstable_immutable_value_is_refused(log_path: Path) -> None:
    """A large immutable value that validation changes again is refused, as a small one is."""
    with TypedStore.open(log_path, str, BumpedLarge) as store:
        with pytest.raises(EncodingError, match="not idempotent"):
            store["k"] = BumpedLarge(x=0, payload=LARGE_PAYLOAD)
        assert "k" not in store


def test_large_immutable_value_survives_compaction(log_path: Path) -> None:
    """A large immutable value reads back as stored after compaction and a reopen."""
    with TypedStore.open(log_path, str, tuple[int, bytes]) as store:
        store["k"] = (1, LARGE_PAYLOAD)
        store.compact()
    with TypedStore.open(log_path, str, tuple[int, bytes]) as store:
        assert store["k"] == (1, LARGE_PAYLOAD)


def test_annotated_metadata_need_not_be_hashable(log_path: Path) -> None:
    """A type whose Annotated metadata is a dict opens, stores and reads back."""
    with TypedStore.open(log_path, str, list[Annotated[int, {"doc": "x"}]]) as store:
        store["k"] = [1, 2]
    with TypedStore.open(log_path, str, list[Annotated[int, {"doc": "x"}]]) as store:
        assert store["k"] == [1, 2]


class Deferred(BaseModel):
    """A model whose validator pydantic builds only when first needed."""

    model_config = ConfigDict(defer_build=True)

    items: list[int]


def test_model_with_deferred_build_round_trips(log_path: Path) -> None:
    """A model with ``defer_build=True`` is validated, stored, copied on read and replayed."""
    with TypedStore.open(log_path, str, Deferred) as store:
        store["k"] = Deferred(items=[1, 2])
        store["k"].items.append(3)
        assert store["k"] == Deferred(items=[1, 2])
    with TypedStore.open(log_path, str, Deferred) as store:
        assert store["k"] == Deferred(items=[1, 2])


# -- deeply nested data -------------------------------------------------------------------


def _nested_lists(depth: int) -> Any:
    """Return ``1`` inside ``depth`` lists."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _nested_sets(depth: int) -> Any:
    """Return ``1`` inside ``depth`` frozensets."""
    value: Any = 1
    for _ in range(depth):
        value = frozenset({value})
    return value


class TestDeeplyNestedData:
    """Data nests up to msgpack's 1,024 levels; deeper is refused clearly, and open copes."""

    def test_value_at_the_nesting_limit_reads_back_after_reopen(self, log_path: Path) -> None:
        """A value nested 1,024 levels deep, deeper than Python's recursion limit, reopens."""
        with TypedStore.open(log_path, str, Any) as store:
            store["deep"] = _nested_lists(1024)
        with TypedStore.open(log_path, str, Any) as store:
            # msgpack compares without Python's recursion limit; == would not.
            assert msgpack.packb(store["deep"]) == msgpack.packb(_nested_lists(1024))

    def test_value_beyond_the_nesting_limit_is_refused_naming_it(self, log_path: Path) -> None:
        """A value nested deeper than 1,024 levels raises EncodingError naming the limit."""
        with TypedStore.open(log_path, str, Any) as store:
            with pytest.raises(EncodingError, match="nested deeper than 1024 levels"):
                store["deep"] = _nested_lists(1025)
            assert "deep" not in store
        with TypedStore.open(log_path, str, Any) as store:
            assert len(store) == 0

    def test_nested_sets_encode_in_time_linear_in_their_size(self, log_path: Path) -> None:
        """Sets nested 40 deep store at once (each level once, not twice per level)."""
        with TypedStore.open(log_path, str, Any) as store:
            store["sets"] = _nested_sets(40)
        with TypedStore.open(log_path, str, Any) as store:
            assert msgpack.packb(store["sets"]) == msgpack.packb(_nested_lists(40))

    def test_sets_nested_too_deep_are_refused_with_encoding_error(self, log_path: Path) -> None:
        """Sets nested 1,000 deep raise EncodingError, not a RecursionError, and write nothing."""
        with TypedStore.open(log_path, str, Any) as store:
            with pytest.raises(EncodingError, match="nested too deeply"):
                store["sets"] = _nested_sets(1000)
            assert len(store) == 0

    def test_upgrade_checks_a_deep_value_for_dropped_fields(self, log_path: Path) -> None:
        """Opening at a new version checks a 1,000-deep value for lost fields and opens."""
        with TypedStore.open(log_path, str, Any) as store:
            store["deep"] = _nested_lists(1000)
        before = log_path.read_bytes()
        with TypedStore.open(log_path, str, Any, version=2, migrations={1: _same}) as store:
            assert msgpack.packb(store["deep"]) == msgpack.packb(_nested_lists(1000))
        assert log_path.read_bytes() == before

    def test_header_naming_a_deeply_nested_type_opens_and_logs(
        self, log_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A header whose value type is 1,000-deep data opens and logs it shortened."""
        log_path.write_bytes(_log_with_deep_value_type(1000))
        before = log_path.read_bytes()
        caplog.set_level(logging.INFO, logger="typedstore")
        with TypedStore.open(log_path, str, Point) as store:
            assert store["p"] == Point(x=1, y=2)
        message = " ".join(r.getMessage() for r in caplog.records if r.name == "typedstore")
        assert re.search(r"value type \[+\.\.\.\]+ is now tests\.models\.Point", message)
        assert log_path.read_bytes() == before


def _same(data: object) -> object:
    """A migration that changes nothing."""
    return data


def _log_with_deep_value_type(depth: int) -> bytes:
    """Return a log with one Point under a header naming ``depth``-deep data as value type.

    Checksum-valid, and with another fingerprint than Point's, so opening describes the
    change from that header's types to Point.
    """
    meta = Codec(str, Point).describe() | {
        "value_type": _nested_lists(depth),
        "value_schema": None,
        "version": 1,
        "fingerprint": "0" * 32,
    }
    header = _format.encode_header(msgpack.packb(meta))
    body = _format.insert_body(msgpack.packb("p"), msgpack.packb({"x": 1, "y": 2}))
    return header + _format.encode_frame(body, len(header))


# -- huge values --------------------------------------------------------------------------

PEAK_OF_STORING = """
import json, resource, sys
from typedstore import EncodingError, StoreConfig, TypedStore

def rss() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024

path, size, kind, write_through = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
value_type = {"bytes": bytes, "str": str}[kind]
config = StoreConfig(write_through=write_through == "1")
store = TypedStore.open(path, str, value_type, config=config)
store["small"] = value_type(b"x") if kind == "bytes" else "x"
baseline = rss()
value = (b"x" if kind == "bytes" else "x") * size
try:
    store["huge"] = value
    outcome = "stored"
except EncodingError as exc:
    outcome = str(exc)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
store.close()
reads_back = False
if outcome == "stored":
    del store
    with TypedStore.open(path, str, value_type) as reopened:
        reads_back = reopened["huge"] == value and reopened["small"] in (b"x", "x")
print(json.dumps({"outcome": outcome, "grew": peak - baseline, "reads_back": reads_back}))
"""
SLACK_BYTES = 64 * 1024 * 1024
"""What the peak may exceed its bound by: allocator rounding and page-table noise."""


def _peak_of_storing(
    path: Path, size: int, kind: str = "bytes", write_through: bool = True
) -> dict[str, Any]:
    """Store a value of ``size`` bytes or characters in a fresh process; return its outcome,
    the growth of its peak memory above what it used just before building the value (so
    the caller's own value counts as one copy), and whether it read back after reopening."""
    flag = "1" if write_through else "0"
    command = [sys.executable, "-c", PEAK_OF_STORING, str(path), str(size), kind, flag]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return cast(dict[str, Any], json.loads(result.stdout))


@pytest.mark.slow
class TestHugeValues:
    """Storing a huge value holds few copies of it at once, the caller's own included."""

    def test_value_beyond_the_record_bound_is_refused_within_three_copies(
        self, log_path: Path
    ) -> None:
        """A 300 MB value is refused with EncodingError at a peak of 3 x its size at most."""
        size = 300 * 1000 * 1000
        peak = _peak_of_storing(log_path, size)
        assert peak["grew"] <= 3 * size + SLACK_BYTES
        assert "MAX_RECORD_BYTES" in peak["outcome"]

    @pytest.mark.parametrize(
        ("kind", "write_through"),
        [("bytes", True), ("str", True), ("bytes", False)],
        ids=["bytes", "str", "bytes-buffered"],
    )
    def test_value_under_the_record_bound_is_stored_within_four_copies(
        self, log_path: Path, kind: str, write_through: bool
    ) -> None:
        """A 200 MB value is stored at a peak of 4 x its size at most and reads back.

        The caller's value, the decoded copy memory keeps, and msgpack's buffer and bytes
        while the value is encoded again: the write path itself adds no copy.
        """
        size = 200 * 1000 * 1000
        peak = _peak_of_storing(log_path, size, kind, write_through)
        assert peak["outcome"] == "stored"
        assert peak["grew"] <= 4 * size + SLACK_BYTES
        assert peak["reads_back"]

    @pytest.mark.parametrize("write_through", [True, False], ids=["write-through", "buffered"])
    def test_large_records_are_written_as_the_small_record_path_frames_them(
        self, log_path: Path, write_through: bool
    ) -> None:
        """Small and large records, single and batched, give the frames encode_frame makes."""
        big, small = b"b" * 300_000, b"s" * 100
        config = StoreConfig(write_through=write_through, buf_capacity=4096)
        with TypedStore.open(log_path, str, bytes, config=config) as store:
            store["a"] = small
            store["b"] = big
            with store.transaction() as txn:
                txn["c"], txn["d"], txn["f"] = small, big, small
            del store["a"]
        with TypedStore.open(log_path, str, bytes | str, config=config) as store:
            store["e"] = big  # after a schema record, under generation 1
        key, value = msgpack.packb, msgpack.packb
        expected = [
            _format.insert_body(key("a"), value(small)),
            _format.insert_body(key("b"), value(big)),
            _format.batch_body(
                [
                    _format.insert_body(key("c"), value(small)),
                    _format.insert_body(key("d"), value(big)),
                    _format.insert_body(key("f"), value(small)),
                ]
            ),
            _format.remove_body(key("a")),
            _format.tag(_format.insert_body(key("e"), value(big)), 1),
        ]
        assert _frames_reencoded(log_path.read_bytes()) == expected

    def test_large_record_whose_write_fails_after_a_short_one_leaves_no_partial_record(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pwritev that writes part of a large record, then a failing write, cut the log back."""
        with TypedStore.open(log_path, str, bytes) as store:
            store["a"] = b"a"
            size = log_path.stat().st_size
            real_pwrite = os.pwrite

            def short(fd: int, parts: list[bytes], offset: int) -> int:
                return real_pwrite(fd, parts[0], offset)

            def full_disk(fd: int, data: bytes, offset: int) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "pwritev", short)
            monkeypatch.setattr(os, "pwrite", full_disk)
            with pytest.raises(OSError, match="No space left"):
                store["b"] = b"b" * 300_000
            monkeypatch.undo()
            assert log_path.stat().st_size == size
            store["c"] = b"c" * 300_000
        with TypedStore.open(log_path, str, bytes) as reopened:
            assert dict(reopened.items()) == {"a": b"a", "c": b"c" * 300_000}

    def test_large_record_written_short_is_completed(
        self, log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A pwritev that writes only a large record's head is followed by writes of the rest."""
        real_pwrite = os.pwrite

        def short(fd: int, parts: list[bytes], offset: int) -> int:
            return real_pwrite(fd, parts[0], offset)

        with TypedStore.open(log_path, str, bytes) as store:
            monkeypatch.setattr(os, "pwritev", short)
            store["b"] = b"b" * 300_000
            monkeypatch.undo()
        with TypedStore.open(log_path, str, bytes) as reopened:
            assert reopened["b"] == b"b" * 300_000

    def test_large_batch_of_many_operations_reads_back(self, log_path: Path) -> None:
        """A transaction of more large values than one pwritev takes reads back."""
        writes = {f"k{index}": b"v" * (64 * 1024) if index % 2 else b"v" for index in range(1200)}
        with TypedStore.open(log_path, str, bytes) as store, store.transaction() as txn:
            for key, value in writes.items():
                txn[key] = value
        with TypedStore.open(log_path, str, bytes) as reopened:
            assert dict(reopened.items()) == writes


def _frames_reencoded(data: bytes) -> list[bytes]:
    """Return the bodies of the log's records but schema records, each checked to be
    framed byte for byte as ``encode_frame`` frames it where it stands."""
    offset = _format.decode_header(data)[1]
    bodies = []
    while offset < len(data):
        end = _format.read_frame(data, offset)
        body = bytes(_format.frame_body(data, offset, end))
        assert data[offset:end] == _format.encode_frame(body, offset)
        if _format.schema_meta(memoryview(body)) is None:
            bodies.append(body)
        offset = end
    return bodies
