"""Shared fixtures: a fresh log path per test, a seeded random generator, Hypothesis profiles."""

from __future__ import annotations

import itertools
import os
import random
import re
import typing
from collections.abc import Collection as Sized
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar, overload

import pytest
from hypothesis import HealthCheck, settings

from typedstore import (
    Collection,
    Database,
    DatabaseTransaction,
    Index,
    PostgresEngine,
    StoreConfig,
    TypedStore,
)
from typedstore._codec import Codec
from typedstore._collection import schema_of
from typedstore._config import Schema
from typedstore._core import LogOwner, Wanted
from typedstore._format import read_frame
from typedstore._types import Migration

if TYPE_CHECKING:
    from typing_extensions import TypeForm

S = TypeVar("S", bound="TypedStore[Any, Any]")
K = TypeVar("K")
V = TypeVar("V")

pytest_plugins = ["tests.pg"]  # the PostgreSQL server and schema fixtures

settings.register_profile(
    "default",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SEED = int(os.environ.get("TYPEDSTORE_TEST_SEED", random.randrange(2**32)))


class Settle(Protocol):
    """Return the store to assert on: the same one, or its log closed and opened again."""

    def __call__(self, store: S, /) -> S: ...


@pytest.fixture(params=["fresh", "reopened"])
def settle(request: pytest.FixtureRequest) -> Settle:
    """Run the test on the store as written and on a reopened one."""

    def same(store: S, /) -> S:
        return store

    def reopen(store: S, /) -> S:
        store.close()
        where = store._core._pg or store.path  # a store in PostgreSQL: its engine
        return type(store).open(where, config=store.config)

    return same if request.param == "fresh" else reopen


def frames_after(path: Path, offset: int) -> list[tuple[int, int]]:
    """Return ``(start, end)`` of each valid frame from ``offset`` to the end of the file."""
    buf = path.read_bytes()
    frames = []
    while offset < len(buf):
        end = read_frame(buf, offset)
        assert end != -1, f"no valid frame at offset {offset}"
        frames.append((offset, end))
        offset = end
    return frames


def pytest_report_header() -> str:
    return f"typedstore random seed: {SEED} (set TYPEDSTORE_TEST_SEED={SEED} to repeat)"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator seeded from the run's printed seed and the test's name."""
    return random.Random(f"{SEED}:{request.node.nodeid}")


SAMPLE_STRIDE = 6
"""A quick run's sweep tries one offset in this many."""


class Offsets(Protocol):
    """Return the offsets of ``range(start, stop)`` a sweep tries, in order."""

    def __call__(self, start: int, stop: int, /) -> list[int]: ...


@pytest.fixture(params=["sampled", pytest.param("every", marks=pytest.mark.slow)])
def offsets(request: pytest.FixtureRequest, rng: random.Random) -> Offsets:
    """Sweep every offset (marked slow), or for the quick run every ``SAMPLE_STRIDE``-th
    from a seeded random start, plus the first and the last."""

    def every(start: int, stop: int, /) -> list[int]:
        return list(range(start, stop))

    def sampled(start: int, stop: int, /) -> list[int]:
        if stop <= start:
            return []
        picked = range(start + rng.randrange(SAMPLE_STRIDE), stop, SAMPLE_STRIDE)
        return sorted({start, *picked, stop - 1})

    return every if request.param == "every" else sampled


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """A path for a store's log in a fresh folder."""
    return tmp_path / "store.log"


class DatabaseCollection(LogOwner, Collection[K, V]):
    """A collection of a two-collection database, with a TypedStore's open and close, so the
    store tests run against a database's collection too.

    The database's first collection, ``"other"``, holds entries of its own; the subject is
    its second (records of kind 05). A subclass binds the types and schema a TypedStore
    class or an ``open`` call gave.
    """

    _like: ClassVar[type[TypedStore[Any, Any]]] = TypedStore
    _types: ClassVar[tuple[object, ...]] = ()
    _schema_now: Schema

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        config: StoreConfig | None = None,
        readonly: bool = False,
        version: int | None = None,
        migrations: Mapping[int, Migration] | None = None,
        dropped_fields: Sized[str] = (),
    ) -> Self:
        """Open the database at ``path`` and return its subject collection."""
        key_type, value_type = cls._types or (cls._like._key_type, cls._like._value_type)
        schema = cls._like._schema or schema_of(version, migrations, dropped_fields)
        database = Database.open(path, config=config, readonly=readonly)
        try:
            is_new = "other" not in database.collection_names()
            other = database.collection("other", str, int)
            if is_new and not readonly:
                other.update({"a": 1, "b": 2})
            want = Wanted(cls, Codec[Any, Any](key_type, value_type), schema)
            subject = database._core.collection("subject", want)
        except BaseException:
            database.close()
            raise
        database._adopt("subject", subject)
        assert isinstance(subject, cls)
        return subject

    @property
    def is_closed(self) -> bool:
        """Whether the database is closed."""
        return self._core.is_closed

    def transaction(self) -> CollectionTransaction[K, V]:
        """Return a database transaction seen through this collection."""
        owner = self._owner
        assert isinstance(owner, Database)
        return CollectionTransaction(owner.transaction(), self)


_TOKENS = itertools.count()


class IndexedDatabaseCollection(DatabaseCollection[K, V]):
    """A database's collection with a unique and an ordered index over any value type: the
    store tests run with every write going through the indexes (README.md, "Indexes").

    The unique index's key is a fresh number per indexed value, so that the tests' equal
    values in several keys are no conflict; the ordered one sorts values by their repr.
    """

    by_token: Index[V, int] = Index(lambda value: next(_TOKENS), unique=True)
    by_repr: Index[V, str] = Index(repr, ordered=True)


class CollectionTransaction(Generic[K, V]):
    """A database transaction, entered as the view of one collection."""

    def __init__(self, transaction: DatabaseTransaction[Any], collection: Collection[K, V]) -> None:
        self._transaction = transaction
        self._collection = collection

    def __enter__(self) -> Collection[K, V]:
        self._transaction.__enter__()
        return self._transaction.view(self._collection)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._transaction.__exit__(exc_type, exc, traceback)


def postgres_opener(request: pytest.FixtureRequest) -> OpenStore:
    """Open stores in PostgreSQL, in the test's own schema, one store per log path."""
    marker = request.node.get_closest_marker("file_only")
    if marker is not None:
        pytest.skip(marker.args[0] if marker.args else "looks at the log's file")
    dsn: str = request.getfixturevalue("pg_dsn")

    def store(store_class: type[S], path: Path, /, *types: object, **options: Any) -> Any:
        options.pop("shared", None)  # a store in PostgreSQL is always shared
        name = "s_" + re.sub(r"[^a-z0-9_]", "_", path.name.lower())[:30]
        return store_class.open(PostgresEngine(dsn, name=name), *types, **options)

    return typing.cast(OpenStore, store)


class OpenStore(Protocol):
    """Open a store like ``store_class.open(path, *types, **options)``: that store, or a
    collection of a database dressed as one."""

    @overload
    def __call__(
        self,
        store_class: type[TypedStore[Any, Any]],
        path: Path,
        key_type: TypeForm[K],
        value_type: TypeForm[V],
        /,
        **options: Any,
    ) -> TypedStore[K, V]: ...
    @overload
    def __call__(self, store_class: type[S], path: Path, /, **options: Any) -> S: ...


@pytest.fixture(params=["store", "collection", "indexed", "postgres"])
def open_store(request: pytest.FixtureRequest) -> OpenStore:
    """Run the test on a TypedStore, on the second collection of a database, on such a
    collection with indexes, and on a TypedStore in PostgreSQL (``postgres``: its log's
    path names a store in the test's own schema; tests marked ``file_only`` look at the
    log's file and skip it)."""
    if request.param == "postgres":
        return postgres_opener(request)

    def store(store_class: type[S], path: Path, /, *types: object, **options: Any) -> Any:
        return store_class.open(path, *types, **options)

    def collection(store_class: type[S], path: Path, /, *types: object, **options: Any) -> Any:
        bound: type[DatabaseCollection[Any, Any]] = type(
            f"{store_class.__name__}InADatabase",
            (IndexedDatabaseCollection if request.param == "indexed" else DatabaseCollection,),
            {"_like": store_class, "_types": types},
        )
        return bound.open(path, **options)  # not a TypedStore, but it has its API

    opener: Any = store if request.param == "store" else collection
    return typing.cast(OpenStore, opener)
