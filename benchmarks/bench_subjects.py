"""The stores ``bench.py`` compares, each behind one small interface.

Every peer stores the model's JSON (``model_dump_json()``) and returns
``User.model_validate_json(...)`` from ``get``, so every subject validates what it reads.
The floor (``bench_floor.py``) is the least a correct store with typedstore's guarantees
spends, measured like a peer.
The peers are imported only inside the class that uses them: they are untyped (mypy sees
them as ``Any``), so each is wrapped in a class with typed methods.
"""

from __future__ import annotations

import importlib
import os
import shelve
import sqlite3
import types
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bench_floor import FloorStore
from bench_model import User
from bench_scenarios import KV, Opener
from typedstore import StoreConfig, TypedStore

PROCESS = "process"
FSYNC = "fsync"


def disk_bytes(directory: Path) -> int:
    """Return the total size in bytes of every file under ``directory``."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            total += os.stat(os.path.join(root, name)).st_size
    return total


def _birthday(user: User) -> User:
    """Add one to the age of a working copy (typedstore passes a private copy)."""
    user.age += 1
    return user


def _bumped(raw: str | bytes) -> str:
    """Validate a peer's stored JSON, add one to the age and dump it again."""
    user = User.model_validate_json(raw)
    user.age += 1
    return user.model_dump_json()


def _sqlite_exec(path: Path, *statements: str) -> None:
    """Run statements on an SQLite file through a separate stdlib connection."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            connection.execute(statement).fetchall()
    finally:
        connection.close()


def _vacuum(path: Path) -> None:
    """VACUUM an SQLite file and fold its WAL back into it."""
    _sqlite_exec(path, "VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)")


class Subject(ABC):
    """One store under test. ``open`` is called again after ``close`` to reopen."""

    name: str = ""
    durability: str = PROCESS
    settings: str = ""
    #: If set, the remove phase removes only this many of its keys (see ShelveSubject).
    remove_cap: int | None = None
    #: Modules ``prepare`` imports, so that importing them is not measured as memory.
    modules: tuple[str, ...] = ()

    def prepare(self) -> None:
        """Import what the subject needs, before any measurement starts."""
        for module in self.modules:
            importlib.import_module(module)

    @abstractmethod
    def open(self, directory: Path) -> None:
        """Open (or create) the store in ``directory``."""

    @abstractmethod
    def insert(self, key: str, user: User) -> None:
        """Insert or replace ``key``."""

    @abstractmethod
    def flush(self) -> None:
        """Make everything written so far durable."""

    @abstractmethod
    def get(self, key: str) -> User | None:
        """Return the validated value of ``key``, or None if it is absent."""

    @abstractmethod
    def modify_age(self, key: str) -> None:
        """Add one to the age of the present ``key``."""

    @abstractmethod
    def remove(self, key: str) -> None:
        """Remove the present ``key``."""

    @abstractmethod
    def close(self) -> None:
        """Close the store (its data stays on disk)."""

    def compact(self) -> bool:
        """Compact the open store's files; return False if the subject has no compaction."""
        return False

    def scenario_opener(self) -> Opener | None:
        """How the Rust crate's scenarios open this subject's store; None to skip them."""
        return None


class _Mapping(KV, Protocol):
    """What a subject speaking typedstore's API uses beyond the scenarios' :class:`KV`."""

    def __delitem__(self, key: Any) -> None: ...

    def compact(self) -> None: ...


class _MappingSubject(Subject):
    """A subject whose store speaks typedstore's API: typedstore itself and the floor."""

    def __init__(self) -> None:
        self._store: _Mapping | None = None

    @abstractmethod
    def _open_store(self, path: Path, key_type: type[Any], value_type: type[Any]) -> _Mapping:
        """Open (or create) the store at ``path`` for ``key_type`` and ``value_type``."""

    @property
    def store(self) -> _Mapping:
        assert self._store is not None, "not open"
        return self._store

    def insert(self, key: str, user: User) -> None:
        # The dict form, like the peers' puts: insert() would also return the old value.
        self.store[key] = user

    def flush(self) -> None:
        self.store.flush()

    def get(self, key: str) -> User | None:
        found: User | None = self.store.get(key)
        return found

    def modify_age(self, key: str) -> None:
        self.store.modify(key, _birthday)

    def remove(self, key: str) -> None:
        # The dict form, like the peers' deletes: remove() would also decode the old value.
        del self.store[key]

    def close(self) -> None:
        self.store.close()
        self._store = None

    def compact(self) -> bool:
        self.store.compact()
        return True

    def scenario_opener(self) -> Opener:
        return self._open_store


class TypedStoreSubject(_MappingSubject):
    """typedstore through its public API."""

    def __init__(self, name: str, config: StoreConfig, durability: str, settings: str) -> None:
        super().__init__()
        self.name = name
        self.durability = durability
        self.settings = settings
        self._config = config

    def open(self, directory: Path) -> None:
        self._store = self._open_store(directory / "users.log", str, User)

    def _open_store(self, path: Path, key_type: type[Any], value_type: type[Any]) -> _Mapping:
        return TypedStore.open(path, key_type, value_type, config=self._config)


class FloorSubject(_MappingSubject):
    """The floor (``bench_floor.py``): the least a correct store with typedstore's guarantees
    spends."""

    def __init__(self, name: str, sync: bool) -> None:
        super().__init__()
        self.name = name
        self._sync = sync
        self.durability = FSYNC if sync else PROCESS
        self.settings = (
            "`bench_floor.FloorStore`: one `os.write` of a CRC-32 frame per mutation on an "
            "`O_APPEND` descriptor"
            + (", `fdatasync` after each" if sync else "")
            + "; mutable values held as their JSON-mode dump and validated on every read; "
            "flush = `fsync`; compact = temp file, fsync, rename, directory fsync"
        )

    def open(self, directory: Path) -> None:
        self._store = self._open_store(directory / "users.floor", str, User)

    def _open_store(self, path: Path, key_type: type[Any], value_type: type[Any]) -> _Mapping:
        return FloorStore(path, key_type, value_type, sync=self._sync)


class LmdbKV:
    """An lmdb environment as a typed mapping: keys and values as their pydantic JSON."""

    def __init__(self, path: Path, key_type: type[Any], value_type: type[Any]) -> None:
        import lmdb
        from pydantic import TypeAdapter

        self._keys: TypeAdapter[Any] = TypeAdapter(key_type)
        self._values: TypeAdapter[Any] = TypeAdapter(value_type)
        self._env: Any = lmdb.open(str(path), map_size=LmdbSubject.MAP_SIZE, sync=False)

    def __setitem__(self, key: Any, value: Any) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(self._keys.dump_json(key), self._values.dump_json(value))

    def get(self, key: Any) -> Any:
        with self._env.begin() as txn:
            raw = txn.get(self._keys.dump_json(key))
        return None if raw is None else self._values.validate_json(raw)

    def modify(self, key: Any, fn: Callable[[Any], Any]) -> Any:
        encoded = self._keys.dump_json(key)
        with self._env.begin(write=True) as txn:
            value = fn(self._values.validate_json(txn.get(encoded)))
            txn.put(encoded, self._values.dump_json(value))
        return value

    def flush(self) -> None:
        self._env.sync(True)

    def close(self) -> None:
        self._env.close()


class LmdbSubject(Subject):
    """lmdb: one write transaction per mutation, a read transaction per get."""

    MAP_SIZE = 1 << 32
    modules = ("lmdb",)

    def __init__(self, name: str, sync: bool) -> None:
        self.name = name
        self._sync = sync
        self.durability = FSYNC if sync else PROCESS
        flag = "True" if sync else "False"
        self.settings = (
            f"`lmdb.open(dir, map_size=4 GiB, sync={flag}, metasync={flag})`; "
            "one write txn per mutation (modify reads and writes in the same txn); "
            "flush = `env.sync(True)`; compact = `env.copy(tmp, compact=True)`, "
            "then the copy replaces the directory's files and the env is reopened"
        )
        self._env: Any = None
        self._directory: Path | None = None

    def open(self, directory: Path) -> None:
        import lmdb

        self._directory = directory
        self._env = lmdb.open(
            str(directory),
            map_size=self.MAP_SIZE,
            sync=self._sync,
            metasync=self._sync,
        )

    def insert(self, key: str, user: User) -> None:
        with self._env.begin(write=True) as txn:
            txn.put(key.encode(), user.model_dump_json().encode())

    def flush(self) -> None:
        self._env.sync(True)

    def get(self, key: str) -> User | None:
        with self._env.begin() as txn:
            raw = txn.get(key.encode())
        return None if raw is None else User.model_validate_json(raw)

    def modify_age(self, key: str) -> None:
        encoded = key.encode()
        with self._env.begin(write=True) as txn:
            txn.put(encoded, _bumped(txn.get(encoded)).encode())

    def remove(self, key: str) -> None:
        with self._env.begin(write=True) as txn:
            txn.delete(key.encode())

    def close(self) -> None:
        self._env.close()
        self._env = None

    def scenario_opener(self) -> Opener | None:
        return LmdbKV

    def compact(self) -> bool:
        directory = self._directory
        assert directory is not None
        copy = directory.with_name(directory.name + ".lmdb-compact")
        copy.mkdir()
        self._env.copy(str(copy), compact=True)
        self.close()
        for old in directory.iterdir():
            old.unlink()
        for new in copy.iterdir():
            os.replace(new, directory / new.name)
        copy.rmdir()
        self.open(directory)
        return True


class Sqlite3Subject(Subject):
    """Raw stdlib sqlite3: one row per key holding the JSON, autocommit, WAL."""

    def __init__(self, name: str, synchronous: str) -> None:
        self.name = name
        self._synchronous = synchronous
        self.durability = FSYNC if synchronous == "FULL" else PROCESS
        self.settings = (
            f"`journal_mode=WAL`, `synchronous={synchronous}`, `isolation_level=None` "
            "(autocommit); table `kv(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID` (one B-tree); "
            "`INSERT OR REPLACE` / `SELECT` then `UPDATE` / `DELETE`; "
            "flush = `PRAGMA wal_checkpoint(FULL)`; compact = `VACUUM` then "
            "`wal_checkpoint(TRUNCATE)`"
        )
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "not open"
        return self._db

    def open(self, directory: Path) -> None:
        self._db = sqlite3.connect(directory / "kv.sqlite", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL").fetchall()
        self._db.execute(f"PRAGMA synchronous={self._synchronous}")
        # WITHOUT ROWID: the rows live in the key's B-tree, not in a second one.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID"
        )

    def insert(self, key: str, user: User) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, user.model_dump_json())
        )

    def flush(self) -> None:
        self.db.execute("PRAGMA wal_checkpoint(FULL)").fetchall()

    def _raw(self, key: str) -> str | None:
        row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def get(self, key: str) -> User | None:
        raw = self._raw(key)
        return None if raw is None else User.model_validate_json(raw)

    def modify_age(self, key: str) -> None:
        raw = self._raw(key)
        assert raw is not None
        self.db.execute("UPDATE kv SET v = ? WHERE k = ?", (_bumped(raw), key))

    def remove(self, key: str) -> None:
        self.db.execute("DELETE FROM kv WHERE k = ?", (key,))

    def close(self) -> None:
        self.db.close()
        self._db = None

    def compact(self) -> bool:
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return True


class _SqliteFileSubject(Subject):
    """A peer that keeps its data in one SQLite file, compacted with VACUUM."""

    file_name = ""
    _directory: Path | None = None

    def _file(self) -> Path:
        assert self._directory is not None, "not open"
        return self._directory / self.file_name

    def compact(self) -> bool:
        directory = self._directory
        assert directory is not None, "not open"
        self.close()
        _vacuum(self._file())
        self.open(directory)
        return True


class DiskcacheSubject(_SqliteFileSubject):
    """diskcache.Cache with its default settings (SQLite in WAL, synchronous=NORMAL)."""

    name = "diskcache"
    modules = ("diskcache",)
    file_name = "cache.db"
    settings = (
        "`diskcache.Cache(dir)` defaults (WAL, `synchronous=NORMAL`, auto_vacuum=FULL, "
        "size_limit 1 GiB, never reached); `set` / `get` / `delete`; "
        "flush = `wal_checkpoint(FULL)` on `cache.db` through a separate sqlite3 connection; "
        "compact = close, `VACUUM` on `cache.db` through sqlite3, reopen"
    )

    def __init__(self) -> None:
        self._cache: Any = None

    def open(self, directory: Path) -> None:
        import diskcache

        self._directory = directory
        self._cache = diskcache.Cache(str(directory))

    def insert(self, key: str, user: User) -> None:
        self._cache.set(key, user.model_dump_json())

    def flush(self) -> None:
        _sqlite_exec(self._file(), "PRAGMA wal_checkpoint(FULL)")

    def get(self, key: str) -> User | None:
        raw = self._cache.get(key)
        return None if raw is None else User.model_validate_json(raw)

    def modify_age(self, key: str) -> None:
        self._cache.set(key, _bumped(self._cache.get(key)))

    def remove(self, key: str) -> None:
        self._cache.delete(key)

    def close(self) -> None:
        self._cache.close()
        self._cache = None


class SqlitedictSubject(_SqliteFileSubject):
    """sqlitedict with autocommit=True and its default journaling."""

    name = "sqlitedict"
    modules = ("sqlitedict",)
    file_name = "dict.sqlite"
    settings = (
        '`SqliteDict(file, autocommit=True)` with its defaults: `journal_mode="DELETE"`, and '
        "sqlitedict itself sets `synchronous=OFF` (it never fsyncs); values are pickled; every "
        "write goes through its background thread and waits for its commit; "
        "flush = `commit(blocking=True)`; compact = close, `VACUUM` through sqlite3, reopen"
    )

    def __init__(self) -> None:
        self._dict: Any = None

    def open(self, directory: Path) -> None:
        import sqlitedict

        self._directory = directory
        self._dict = sqlitedict.SqliteDict(str(self._file()), autocommit=True)

    def insert(self, key: str, user: User) -> None:
        self._dict[key] = user.model_dump_json()

    def flush(self) -> None:
        self._dict.commit(blocking=True)

    def get(self, key: str) -> User | None:
        raw = self._dict.get(key)
        return None if raw is None else User.model_validate_json(raw)

    def modify_age(self, key: str) -> None:
        self._dict[key] = _bumped(self._dict[key])

    def remove(self, key: str) -> None:
        del self._dict[key]

    def close(self) -> None:
        self._dict.close()
        self._dict = None


_USER_ROW: list[Any] = []


def _user_row() -> Any:
    """Return the SQLModel table class ``UserRow(k: str primary key, v: str JSON)``.

    Built with ``types.new_class`` because mypy sees the untyped ``SQLModel`` as ``Any``,
    which a class statement may not subclass under ``--strict``.
    """
    if not _USER_ROW:
        from sqlmodel import Field, SQLModel

        def body(namespace: dict[str, Any]) -> None:
            namespace["__annotations__"] = {"k": str, "v": str}
            namespace["__tablename__"] = "users"
            namespace["k"] = Field(primary_key=True)
            namespace["v"] = Field()

        _USER_ROW.append(types.new_class("UserRow", (SQLModel,), {"table": True}, body))
    return _USER_ROW[0]


def _sqlite_pragmas(synchronous: str) -> Callable[[Any, Any], None]:
    def on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    return on_connect


class SqlmodelSubject(_SqliteFileSubject):
    """SQLModel over an SQLite file: one long-lived Session, one commit per mutation."""

    name = "sqlmodel"
    modules = ("sqlalchemy", "sqlmodel")
    file_name = "sqlmodel.sqlite"
    settings = (
        "table `UserRow(k: str primary key, v: str)` holding the JSON; "
        "`create_engine('sqlite:///file')`, WAL + `synchronous=NORMAL` set by a `connect` "
        "event listener; one `Session`, `add` + `commit` per insert (keys are new), "
        "`session.get` for reads, get + assign + `commit` per modify, get + `delete` + "
        "`commit` per remove; flush = close the session's transaction, then "
        "`wal_checkpoint(FULL)`; compact = close, `VACUUM` through sqlite3, reopen"
    )

    def __init__(self) -> None:
        self._engine: Any = None
        self._session: Any = None

    def prepare(self) -> None:
        super().prepare()
        _user_row()

    def open(self, directory: Path) -> None:
        from sqlalchemy import event
        from sqlmodel import Session, SQLModel, create_engine

        self._directory = directory
        row = _user_row()
        self._engine = create_engine(f"sqlite:///{self._file()}")
        event.listen(self._engine, "connect", _sqlite_pragmas("NORMAL"))
        SQLModel.metadata.create_all(self._engine, tables=[row.__table__])
        self._session = Session(self._engine)

    def insert(self, key: str, user: User) -> None:
        self._session.add(_user_row()(k=key, v=user.model_dump_json()))
        self._session.commit()

    def flush(self) -> None:
        self._session.close()
        _sqlite_exec(self._file(), "PRAGMA wal_checkpoint(FULL)")

    def get(self, key: str) -> User | None:
        row = self._session.get(_user_row(), key)
        return None if row is None else User.model_validate_json(row.v)

    def modify_age(self, key: str) -> None:
        row = self._session.get(_user_row(), key)
        row.v = _bumped(row.v)
        self._session.commit()

    def remove(self, key: str) -> None:
        self._session.delete(self._session.get(_user_row(), key))
        self._session.commit()

    def close(self) -> None:
        self._session.close()
        self._engine.dispose()
        self._session = None
        self._engine = None


class ShelveSubject(Subject):
    """shelve over dbm (dbm.dumb on this Python), writeback=False."""

    name = "shelve"
    settings = (
        "`shelve.open(file, writeback=False)`; values are the JSON strings (pickled by "
        "shelve); flush = `sync()`; no compaction. Which dbm backs it is shown in the report. "
        "`dbm.dumb` rewrites its whole index file on every delete (about 30 ms per delete "
        "at 50k keys), so its remove phase removes only the first 500 keys of the sample, "
        "which leaves it 4,500 more live keys to reopen than the others"
    )
    remove_cap = 500

    def __init__(self) -> None:
        self._shelf: shelve.Shelf[str] | None = None

    @property
    def shelf(self) -> shelve.Shelf[str]:
        assert self._shelf is not None, "not open"
        return self._shelf

    def open(self, directory: Path) -> None:
        self._shelf = shelve.open(str(directory / "shelf"), writeback=False)  # noqa: SIM115

    def insert(self, key: str, user: User) -> None:
        self.shelf[key] = user.model_dump_json()

    def flush(self) -> None:
        self.shelf.sync()

    def get(self, key: str) -> User | None:
        raw = self.shelf.get(key)
        return None if raw is None else User.model_validate_json(raw)

    def modify_age(self, key: str) -> None:
        self.shelf[key] = _bumped(self.shelf[key])

    def remove(self, key: str) -> None:
        del self.shelf[key]

    def close(self) -> None:
        self.shelf.close()
        self._shelf = None


def _typedstore(name: str, durability: str, settings: str, config: StoreConfig) -> Subject:
    return TypedStoreSubject(name, config, durability, settings)


SUBJECTS: dict[str, Callable[[], Subject]] = {
    "typedstore": lambda: _typedstore(
        "typedstore", PROCESS, "`StoreConfig()` (default)", StoreConfig()
    ),
    "typedstore-buffered": lambda: _typedstore(
        "typedstore-buffered",
        PROCESS,
        "`StoreConfig(write_through=False)`: a kill -9 may lose the buffered tail "
        "(up to `buf_capacity`), so it is not strictly in this class",
        StoreConfig(write_through=False),
    ),
    "floor": lambda: FloorSubject("floor", sync=False),
    "lmdb": lambda: LmdbSubject("lmdb", sync=False),
    "sqlite3": lambda: Sqlite3Subject("sqlite3", "NORMAL"),
    "diskcache": DiskcacheSubject,
    "sqlitedict": SqlitedictSubject,
    "sqlmodel": SqlmodelSubject,
    "shelve": ShelveSubject,
    "typedstore-sync": lambda: _typedstore(
        "typedstore-sync",
        FSYNC,
        "`StoreConfig(sync_on_write=True)`",
        StoreConfig(sync_on_write=True),
    ),
    "floor-sync": lambda: FloorSubject("floor-sync", sync=True),
    "sqlite3-full": lambda: Sqlite3Subject("sqlite3-full", "FULL"),
    "lmdb-sync": lambda: LmdbSubject("lmdb-sync", sync=True),
}

REFERENCE = {PROCESS: "typedstore", FSYNC: "typedstore-sync"}


def make(name: str) -> Subject:
    """Return a fresh, unopened subject by name."""
    return SUBJECTS[name]()
