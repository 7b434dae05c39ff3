"""The PostgreSQL engine: a store's log as rows of a PostgreSQL table, behind ``_engine.Engine``.

The tables, per store ``name`` (docs/FORMAT.md, "PostgreSQL"):

- ``<name>_log (position bigint primary key, frame bytea)``: one row per frame, the same
  checksummed frames as a log file's, seeded with the row's position, a record number.
  Positions are gap-free and only grow; nothing is ever renumbered.
  The log's end is the position after its last row. Every write is one statement that
  inserts its rows from the end its writer saw, if the row before it is there: the
  primary key refuses a position another writer took first, so a position is inserted
  only after every position before it committed, and a reader polling "after my last
  position" never skips a row that commits later, as it could with a ``bigserial``.
- ``<name>_snapshot (position bigint primary key, image_end bigint)``: where compacted
  images start. An image is appended to the log like any write: its header in the row at
  ``position`` (the old end), its frames after it, up to ``image_end``, where the tail of
  later writes starts. Opening reads the newest image and its tail in one statement.
  Rows before the previous image are forgotten under a lock that holds writes while they
  go: a writer that has not caught up since finds the row before its end gone.

psycopg is imported here only, and only once an engine is used: ``import typedstore``
does not need it (the ``typedstore[postgres]`` extra).
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import _format
from ._engine import Frames, Mode, StaleLogError

if TYPE_CHECKING:
    import psycopg
    from psycopg import pq

_INT8 = struct.Struct(">q")
"""A bigint as PostgreSQL's binary format has it."""
_INT8_OID, _BYTEA_OID = 20, 17
_COMMAND_OK, _TUPLES_OK, _FATAL_ERROR, _CONNECTION_OK = 1, 2, 7, 0
"""libpq's PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_FATAL_ERROR and CONNECTION_OK
(``psycopg.pq``'s enums hold the same numbers; these spare
:meth:`PostgresEngine._run_prepared` an import)."""
_SQLSTATE = 67
"""libpq's PG_DIAG_SQLSTATE, ``ord("C")``: the field of an error result naming its kind."""
_SUCCEEDED = (_COMMAND_OK, _TUPLES_OK)
_BINARY = [(1,) * count for count in range(4)]
"""The formats of a prepared statement's ``count`` parameters: all binary."""

NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,39}")
"""A store name: a lower-case SQL identifier short enough for its tables' suffixes."""

_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS {log} (position bigint PRIMARY KEY, frame bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {snapshot} (position bigint PRIMARY KEY, "
    "image_end bigint NOT NULL)",
)

_COLUMNS = {
    "log": ("position bigint", "frame bytea"),
    "snapshot": ("position bigint", "image_end bigint"),
}
"""Each table's columns, as ``_FIND_SQL`` lists them: how a table of ours is told apart."""

_COLUMNS_OF = (
    "(SELECT array_agg(attname || ' ' || format_type(atttypid, atttypmod) ORDER BY attnum) "
    "FROM pg_attribute WHERE attrelid = to_regclass(%({kind})s) AND attnum > 0 "
    "AND NOT attisdropped)"
)
# The log table's oid (the writer lock's key) and each table's columns (NULL: missing).
_FIND_SQL = "SELECT to_regclass(%(log)s)::oid::bigint, " + ", ".join(
    _COLUMNS_OF.replace("{kind}", kind) for kind in _COLUMNS
)

_UNIQUE_VIOLATION = b"23505"
"""The SQLSTATE of a row inserted at a position another writer took first."""

# The compare-and-append. The rows of a write go from %(at)s on, and only if the row
# before them, at %(at)s - 1, is there (committed before the statement began): the log's
# primary key refuses a position taken already (a unique violation: another writer got
# there first), and the row before refuses a position past the end or in rows a
# compaction forgot. So a position is inserted only once every position before it
# committed, and readers polling "after my last position" never skip a row that commits
# later (as they could with a bigserial). The rows after %(at)s - 1 are numbered from
# it; :data:`_FORGET_SQL` and ``cut`` lock the table against writes while they delete,
# so a statement that saw the row before never inserts after it was deleted.
_INSERT_ROWS = (
    "INSERT INTO {log} (position, frame) SELECT %(at)s + number - 1, frame "
    "FROM previous, unnest(%(frames)s::bytea[]) WITH ORDINALITY AS rows (frame, number)"
)
_PREVIOUS = "SELECT FROM {log} WHERE position = %(at)s - 1"
# A write waits while another instance holds the writer lock (a transaction or a
# compaction between its catch-up and its append): the writer lock's key taken shared
# until the write commits, in a statement of its own before the insert, so that the wait
# holds no lock on the log (a compaction's forgetting locks it). Shared holders do not
# wait for each other. One round trip: both statements in one string (and one implicit
# transaction), sent with the parameters bound in (``_execute_script``).
_APPEND_SQL = (
    "SELECT pg_advisory_xact_lock_shared(%(key)s); "
    "WITH previous AS (" + _PREVIOUS + ") " + _INSERT_ROWS
)
# The usual write as the fast path sends it (:meth:`PostgresEngine._append_one`): one
# frame, prepared once per connection, binary parameters ($1 the end seen, $2 the lock's
# key, $3 the frame). It only tries the lock, never waits for it, so the blocking call
# that sends it waits for no client work: a writer lock held elsewhere lands nothing and
# the waiting statement above runs instead. A row another writer's statement is
# inserting at $1 is waited for, as any insert does, for that statement's length only.
_APPEND_ONE_PREPARED = (
    b"INSERT INTO {log} (position, frame) SELECT $1, $3 FROM {log} "
    b"WHERE position = $1 - 1 AND pg_try_advisory_xact_lock_shared($2)"
)
_REPLACE_SQL = (
    "WITH previous AS (" + _PREVIOUS + "), "
    "marked AS (INSERT INTO {snapshot} (position, image_end) "
    "SELECT %(at)s, %(end)s FROM previous RETURNING 1) " + _INSERT_ROWS
)
# A new log: rows from 0 on, if no image was ever written (another instance's first
# image at 0 is a unique violation too).
_CREATE_SQL = (
    "WITH previous AS (SELECT WHERE NOT EXISTS (SELECT FROM {snapshot})), "
    "marked AS (INSERT INTO {snapshot} (position, image_end) "
    "SELECT %(at)s, %(end)s FROM previous RETURNING 1) " + _INSERT_ROWS
)
# The log's end (after its last row) and its newest image: whether anything changed, in
# one round trip. The last row is found through the primary key's index.
_END_SQL = "SELECT max(position) + 1 FROM {log}"
_STATE_SQL = "SELECT (" + _END_SQL + "), (SELECT max(position) FROM {snapshot})"
_STATE_PREPARED = _STATE_SQL.encode()
# The newest image and its tail: one statement, so one consistent snapshot of the tables.
_READ_LOG_SQL = (
    "SELECT position, frame FROM {log} "
    "WHERE position >= (SELECT max(position) FROM {snapshot}) ORDER BY position"
)
# The frames from %(start)s up to the next image's header, if another process wrote one.
_READ_FRAMES_SQL = (
    "SELECT position, frame FROM {log} WHERE position >= %(start)s AND position < "
    "coalesce((SELECT min(position) FROM {snapshot} WHERE position >= %(start)s), "
    "9223372036854775807) ORDER BY position"
)
# Deleting rows, under a lock that waits for the writes under way and holds new ones
# until it commits (one implicit transaction): a write whose statement began before the
# rows went, and saw the row before its own, inserts before they go, and a write that
# began after sees them gone. Readers are not held up.
_LOCK_WRITES = "LOCK TABLE {log} IN SHARE MODE; "
# Rows older than the image before the new one: kept until then for lagging readers.
_FORGET_SQL = (
    _LOCK_WRITES + "WITH old AS (SELECT coalesce(max(position), 0) AS position FROM {snapshot} "
    "WHERE position < %(at)s), "
    "gone AS (DELETE FROM {snapshot} WHERE position < (SELECT position FROM old)) "
    "DELETE FROM {log} WHERE position < (SELECT position FROM old)"
)
_CUT_SQL = _LOCK_WRITES + "DELETE FROM {log} WHERE position >= %(at)s"


def check_name(name: str) -> str:
    """Return ``name`` if it may name a store's tables; raise ``ValueError`` otherwise."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"store name {name!r} is not a lower-case SQL identifier of at most 40 "
            "characters (letters a-z, digits and '_', not starting with a digit)"
        )
    return name


class PostgresEngine:
    """A store's log in PostgreSQL, shared by every instance that opens it (``_engine``).

    Positions are record numbers: a log's header is the record at its image's position
    and each frame takes the next one (:meth:`position_after`). One connection per
    engine, opened at first use and again after one was lost. Compare-and-append alone
    keeps the log right; the writer lock (:meth:`writing`, a session advisory lock) only
    spares writers from redoing their checks.
    """

    def __init__(self, dsn: str, *, name: str, readonly: bool = False) -> None:
        """Use store ``name``'s tables in the database ``dsn`` names; connect at first use.

        Raise ``ValueError`` for a name that is not a lower-case SQL identifier.
        """
        self.dsn = dsn
        self.name = check_name(name)
        self._mode: Mode = "readonly" if readonly else "shared"
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._lock_key: int | None = None
        self._lock_conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self.is_writing = False
        """Whether this engine holds (or is taking) the writer lock; as the file engine's."""
        self._snapshot = -1
        self._start = 0
        self._claimed = 0
        self._busy = False
        """Whether a statement is under way: see :meth:`_enter`."""
        self._state: tuple[int, int | None] | None = None
        """The end and newest image :meth:`grew_or_moved` found, until the next statement
        or :meth:`end`: the catch-up it starts reads them without asking again."""
        self._statements: dict[str | bytes, bytes] = {}
        self._prepared: dict[bytes, bytes] = {}
        """The statements prepared on :attr:`_prepared_on`, by text: their names."""
        self._prepared_on: psycopg.Connection[tuple[Any, ...]] | None = None
        self._names = 0
        """How many statements this engine prepared: the next one's name."""

    @property
    def mode(self) -> Mode:
        """``"shared"``, or ``"readonly"``: a PostgreSQL log is never one process's alone."""
        return self._mode

    @property
    def start(self) -> int:
        """The position of the header :meth:`read_log` returned last (0 before a compaction)."""
        return self._start

    def __repr__(self) -> str:
        return f"PostgresEngine({self.where()!r}, name={self.name!r})"

    # -- opening -------------------------------------------------------------------------

    def read_log(self) -> bytes:
        """Return the newest image and every frame after it (``b""``: none yet).

        The header comes first, then frames at positions ``start + 1``, ``start + 2``, ...
        (:meth:`walk_log` reads them). A writable engine creates the tables if they are
        missing and the role may; a read-only one raises ``FileNotFoundError`` then.
        """
        self._ensure_tables()
        rows = self._fetch(_READ_LOG_SQL, {})
        if not rows:
            return b""
        self._start = self._snapshot = rows[0][0]
        return b"".join(bytes(frame) for _, frame in rows)

    def walk_log(self, buf: bytes) -> tuple[bytes, Frames]:
        """Return the header of ``buf``, what :meth:`read_log` returned, and its frames."""
        _, header_end = _format.decode_header(buf)
        return buf[:header_end], walk_records(buf, header_end, self._start + 1)

    def create(self, image: Iterable[bytes]) -> int:
        """Write a new log holding ``image`` (a header, then frames framed from position 1).

        Raise :class:`StaleLogError` if another instance created it first.
        """
        self._check_writable()
        self._ensure_tables()
        rows = reframe(list(image), 0)
        if not self._write(_CREATE_SQL, rows, 0):
            raise StaleLogError(f"{self.where()}: another instance created the log first")
        self._start = self._snapshot = 0
        self._claimed = len(rows)
        return len(rows)

    # -- reading -------------------------------------------------------------------------

    def end(self) -> int:
        """Return the log's end now: one round trip (0: no log yet), or none right after
        :meth:`grew_or_moved`, whose answer it takes (once)."""
        state, self._state = self._state, None
        if state is not None:
            return state[0]
        rows = self._fetch(_END_SQL, {})
        return int(rows[0][0] or 0)

    def read_frames(self, start: int) -> Frames:
        """Return the frames from position ``start`` to the log's end, or to the next
        image's header: a reader meeting one learns of it from :meth:`is_replaced`."""
        rows = self._fetch(_READ_FRAMES_SQL, {"start": start})
        bodies: list[tuple[int, memoryview]] = []
        position = start
        if not rows and start > 0 and self.end() < start:
            # Rows this engine read are gone: not a compaction, which forgets only rows
            # before an image (the query then finds none, the log's end past them).
            return Frames(bodies, position, "invalid")
        for row_position, frame in rows:
            if row_position != position:
                # A hole: a compaction forgets rows before an image only, which this
                # query then finds none of. Writing at the hole would fork the log.
                return Frames(bodies, position, "invalid")
            data = bytes(frame)
            if _format.read_frame(data, 0, None, position) != len(data):
                return Frames(bodies, position, "invalid")
            bodies.append((position, memoryview(data)[_format.FRAME_OVERHEAD :]))
            position += 1
        return Frames(bodies, position, "end")

    def position_after(self, position: int, frame: bytes) -> int:
        """Return the record number after ``position``: every frame is one row."""
        return position + 1

    # -- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer lock, a session advisory lock, for one read-check-write.

        The server releases it if this connection dies, so a killed instance never
        leaves it held. Not reentrant, like the file engine's.
        """
        self.start_writing()
        try:
            yield
        finally:
            self.stop_writing()

    def start_writing(self) -> None:
        """Take the writer lock, as entering :meth:`writing` does: one round trip."""
        self._check_writable()
        if self._lock_conn is not None:
            raise RuntimeError(f"{self.where()}: the writer lock is held already")
        key = self._ensure_tables()
        self.is_writing = True  # marked first: stop_writing lets go if a Ctrl-C lands now
        try:
            self._fetch("SELECT pg_advisory_lock(%(key)s)", {"key": key})
            self._lock_conn = self._conn
        except BaseException:
            self.stop_writing()
            raise

    def try_start_writing(self) -> bool:
        """Take the writer lock if it is free, as :meth:`start_writing` does; return
        whether it was taken (never waits)."""
        self._check_writable()
        if self._lock_conn is not None:
            raise RuntimeError(f"{self.where()}: the writer lock is held already")
        key = self._ensure_tables()
        self.is_writing = True
        try:
            rows = self._fetch("SELECT pg_try_advisory_lock(%(key)s)", {"key": key})
            if not rows[0][0]:
                self.is_writing = False
                return False
            self._lock_conn = self._conn
        except BaseException:
            self.stop_writing()
            raise
        return True

    def stop_writing(self) -> None:
        """Release the writer lock :meth:`start_writing` took (a lost connection did)."""
        held, self._lock_conn, conn = self._lock_conn, None, self._conn
        try:
            # held None while marked: interrupted right after the lock was taken, maybe.
            # Unlocking a lock not held only draws a warning from the server.
            if self.is_writing and conn is not None and not conn.closed and held in (None, conn):
                self._fetch("SELECT pg_advisory_unlock(%(key)s)", {"key": self._lock_key})
        finally:
            self.is_writing = False

    def grew_or_moved(self, known: int) -> bool:
        """Whether the log's end is not ``known`` or another instance wrote a newer image:
        :meth:`end` and :meth:`is_replaced` in one round trip, the check before every
        operation of a store on this engine."""
        reused = self._conn is not None and not self._conn.closed
        try:
            result = self._run_prepared(_STATE_PREPARED, (), ())
        except ConnectionError:
            if not reused:
                raise
            result = None  # lost since the last call: _fetch connects again
        if result is None:
            end, newest = self._fetch(_STATE_SQL, {})[0]
        else:
            end, newest = (
                None if value is None else _INT8.unpack(value)[0]
                for value in (result.get_value(0, 0), result.get_value(0, 1))
            )
        end = end or 0
        grew = end != known or (newest is not None and newest > self._snapshot)
        if grew:  # the catch-up that follows asks is_replaced and end: answered already
            self._state = (int(end), newest)
        return grew

    def claim(self, at: int) -> None:
        """Note ``at`` as the end the next append expects (:attr:`claimed`); nothing to
        check ahead, as :meth:`append` compares the end in its own statement."""
        self._claimed = at

    def take_end(self, at: int) -> None:
        """:meth:`claim`, for a writer that just found the log unchanged under the lock."""
        self._claimed = at

    @property
    def claimed(self) -> int:
        """The end the last :meth:`claim`, create, append or replace left this engine at."""
        return self._claimed

    def append(self, frames: Sequence[bytes], at: int) -> int:
        """Append ``frames`` (framed from ``at`` on) if ``at`` is the log's end; return the
        new end. One statement, one round trip: all rows or none.

        Raise :class:`StaleLogError`, writing nothing, if the end is elsewhere. If the
        connection is lost meanwhile (``ConnectionError``), the rows may or may not have
        been committed: catching up tells.
        """
        self._check_writable()
        key = self._ensure_tables()
        if len(frames) == 1:
            landed = self._append_one(frames[0], at, key)
        else:
            landed = self._write(_APPEND_SQL, list(frames), at, key, script=True)
        if not landed:
            raise StaleLogError(f"{self.where()}: the log ends at {self.end()}, not {at}")
        self._claimed = at + len(frames)
        return self._claimed

    def _append_one(self, frame: bytes, at: int, key: int) -> bool:
        """Append one frame at ``at``, the usual write; whether it landed.

        The prepared statement first (one round trip): a unique violation says another
        writer took ``at``. If it lands nothing (the writer lock is held elsewhere, or
        the row before ``at`` is not there) or fails otherwise, the waiting statement
        runs, waiting for the lock if need be, or raises what applies.
        """
        result = self._run_prepared(
            _APPEND_ONE_PREPARED,
            (_INT8_OID, _INT8_OID, _BYTEA_OID),
            (_INT8.pack(at), _INT8.pack(key), frame),
        )
        if result is not None:
            if result.status == _FATAL_ERROR:
                return False  # a unique violation: another writer appended at ``at``
            if result.command_tuples == 1:
                return True
        return self._write(_APPEND_SQL, [frame], at, key, script=True)

    def cut(self, position: int) -> None:
        """Drop the frames from ``position`` on; PostgreSQL never leaves a torn one."""
        self._check_writable()
        self._execute_script(_CUT_SQL, {"at": position})

    def replace(self, image: Iterable[bytes], seen: int) -> int:
        """Append ``image`` (framed as a new log's) as the newest image, if the log ends
        at ``seen``; return where its tail starts. Older rows are forgotten, except those
        after the previous image, which lagging readers may still be reading.

        Raise :class:`StaleLogError` if the log grew past ``seen``.
        """
        self._check_writable()
        rows = reframe(list(image), seen)
        if not self._write(_REPLACE_SQL, rows, seen):
            raise StaleLogError(f"{self.where()}: the log ends at {self.end()}, not {seen}")
        self._start = self._snapshot = seen
        self._claimed = seen + len(rows)
        self._execute_script(_FORGET_SQL, {"at": seen})
        return self._claimed

    def sync(self) -> None:
        """Nothing to do: a committed write is as durable as the server makes commits."""

    # -- following a compaction ----------------------------------------------------------

    def is_replaced(self) -> bool:
        """Whether another instance wrote a newer image than the one this engine read
        (right after :meth:`grew_or_moved`, from its answer: no round trip)."""
        if self._state is not None:
            newest: int | None = self._state[1]
        else:
            rows = self._fetch("SELECT max(position) FROM {snapshot}", {})
            newest = rows[0][0] if rows else None
        return newest is not None and newest > self._snapshot

    def follow(self, seen: int) -> int | None:
        """Move to the newest image; return where its tail starts if it holds the state
        at ``seen``, or None (an older image, or rows already forgotten): replay whole."""
        rows = self._fetch(
            "SELECT position, image_end FROM {snapshot} ORDER BY position DESC LIMIT 1", {}
        )
        if not rows:
            return None
        position, image_end = rows[0]
        self._start = self._snapshot = position
        return int(image_end) if position == seen else None

    def generation_at(self, position: int) -> int:
        """Return the schema generation in force at ``position`` of the newest image (where
        :meth:`follow` said to catch up from): the one its last record was tagged with.

        Every record's kind byte carries its generation (``_format.tag``), so this reads
        one byte of one row; the image's header, alone, opens generation 0.
        """
        if position - 1 <= self._start:
            return 0
        rows = self._fetch(
            "SELECT get_byte(frame, %(kind)s) FROM {log} WHERE position = %(last)s",
            {"kind": _format.FRAME_OVERHEAD, "last": position - 1},
        )
        if not rows:
            raise ConnectionError(f"{self.where()}: record {position - 1} is gone")
        return int(rows[0][0]) >> 3

    def copy(self, *, readonly: bool) -> PostgresEngine:
        """Return a new engine on the same store, connecting at first use: a store opens
        its own, so that one engine given to several opens shares no connection."""
        return PostgresEngine(self.dsn, name=self.name, readonly=readonly)

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection, releasing the writer lock if it is held."""
        conn, self._conn, self._lock_conn = self._conn, None, None
        if conn is not None:
            conn.close()

    # -- the connection ------------------------------------------------------------------

    def where(self) -> str:
        """Name the server and store, for messages: ``host:port/database, store name``."""
        from psycopg.conninfo import conninfo_to_dict

        try:
            info = conninfo_to_dict(self.dsn)
        except Exception:  # a malformed DSN: connecting says what is wrong with it
            return f"PostgreSQL store {self.name!r}"
        host = info.get("host") or "localhost"
        port = info.get("port") or "5432"
        database = info.get("dbname") or info.get("user") or ""
        return f"PostgreSQL at {host}:{port}/{database}, store {self.name!r}"

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """Return the open connection, connecting first if there is none (or it was lost)."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        import psycopg

        with self._translating():
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        return self._conn

    @contextlib.contextmanager
    def _translating(self) -> Iterator[None]:
        """Turn psycopg's connection and privilege errors into the builtin ones
        (:meth:`_translated`); the engine connects again next time."""
        try:
            yield
        except Exception as exc:
            error = self._translated(exc)
            if error is None:
                raise
            raise error from exc

    def _translated(self, exc: Exception) -> OSError | None:
        """Return the builtin error for psycopg's ``exc``, or None to let it through.

        A lost or refused connection is ``ConnectionError`` (an ``OSError``, as the file
        engine's I/O errors are) naming the server, and the connection is dropped. A
        role that may not create or use the tables gets ``PermissionError``.
        """
        import psycopg
        from psycopg import errors

        if isinstance(exc, errors.InsufficientPrivilege):
            return PermissionError(f"{self.where()}: {exc}".strip())
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            self._drop_connection()
            return ConnectionError(f"{self.where()}: {exc}".strip())
        return None

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _sql(self, text: str | bytes) -> bytes:
        """Return ``text`` with this store's table names quoted in, rendered once per text:
        psycopg converts a query given as bytes once, not at every call as it would a
        ``sql.Composed``."""
        statement = self._statements.get(text)
        if statement is None:
            from psycopg import sql

            source = text.decode() if isinstance(text, bytes) else text
            statement = (
                sql.SQL(source)
                .format(
                    log=sql.Identifier(f"{self.name}_log"),
                    snapshot=sql.Identifier(f"{self.name}_snapshot"),
                )
                .as_string()
                .encode()
            )
            self._statements[text] = statement
        return statement

    def _run_prepared(
        self, text: bytes, types: Sequence[int], params: Sequence[bytes]
    ) -> pq.abc.PGresult | None:
        """Run ``text``, prepared once per connection, with binary parameters and results,
        in one blocking libpq call; return its result (a failed one for a unique
        violation), or None if it failed otherwise on a sound connection (nothing was
        written: the caller runs it psycopg's way, which waits, retries or raises what
        applies).

        About half of what ``conn.execute`` costs: no query conversion and adaptation,
        no wait loop in Python (the call releases the GIL). The price: a signal lands
        only once the call returns, so this runs only statements that wait for no client
        work (a Ctrl-C during psycopg's own wait is sent to the server as a cancel).
        Raise ``ConnectionError`` if the connection was lost: a write may or may not
        have landed.
        """
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._connection()
        if self._prepared_on is not conn:
            self._prepared, self._prepared_on = {}, conn
        self._enter()
        try:
            self._busy = True  # as in _execute
            # No _translating here: its generator costs as much as the rest of this call.
            try:
                with conn.lock:
                    pgconn = conn.pgconn
                    name = self._prepared.get(text)
                    if name is None:
                        self._names += 1
                        name = b"typedstore_%d" % self._names
                        prepared = pgconn.prepare(name, self._sql(text), types)
                        if prepared.status != _COMMAND_OK:
                            self._failed(conn)
                            return None
                        self._prepared[text] = name
                    result = pgconn.exec_prepared(name, params, _BINARY[len(params)], 1)
            except Exception as exc:  # psycopg's, for a connection closed under it
                error = self._translated(exc)
                if error is None:
                    raise
                raise error from exc
            if result.status in _SUCCEEDED:
                return result
            if result.error_field(_SQLSTATE) == _UNIQUE_VIOLATION:
                return result  # nothing written; the statement stays prepared
            self._failed(conn)
            return None
        finally:
            self._busy = False

    def _failed(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Raise ``ConnectionError`` if ``conn`` is lost; otherwise forget what was
        prepared on it (a failed statement is prepared afresh next time)."""
        if conn.pgconn.status != _CONNECTION_OK:
            message = conn.pgconn.error_message.decode(errors="replace")
            self._drop_connection()
            raise ConnectionError(f"{self.where()}: {message}".strip())
        self._prepared = {}

    def _quoted(self, kind: str) -> str:
        """Return the quoted name of this store's ``kind`` table (``log``, ``end``...)."""
        from psycopg import sql

        return sql.Identifier(f"{self.name}_{kind}").as_string()

    def _execute(self, text: str, params: dict[str, Any]) -> int:
        """Run one statement; return how many rows it changed."""
        conn = self._connection()
        self._enter()
        try:
            self._busy = True  # in the try: a Ctrl-C right after _enter leaves it unset
            with self._translating():
                return conn.execute(self._sql(text), params).rowcount
        finally:
            self._busy = False

    def _execute_script(self, text: str, params: dict[str, Any]) -> int:
        """Run ``text``, several statements, in one round trip and one implicit transaction
        (the parameters bound in by psycopg, as the protocol that takes several statements
        has no others); return how many rows its last statement changed."""
        import psycopg

        conn = self._connection()
        self._enter()
        try:
            self._busy = True  # as in _execute
            with self._translating(), psycopg.ClientCursor(conn) as cursor:
                cursor.execute(self._sql(text), params)
                while cursor.nextset():
                    pass
                return cursor.rowcount
        finally:
            self._busy = False

    def _enter(self) -> None:
        """Refuse a statement from code that interrupted one of this engine's (a signal
        handler): psycopg's connection lock is not reentrant, so it would wait forever.
        The caller marks the connection busy itself, inside the ``try`` whose ``finally``
        clears the mark: a Ctrl-C landing as this returns must not leave it set."""
        self._state = None  # any other statement: grew_or_moved's answer is old now
        if self._busy:
            raise RuntimeError(
                f"{self.where()}: a statement from code that interrupted another one on the "
                "same connection (a signal handler) is refused"
            )

    def _fetch(self, text: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one query; return its rows.

        A connection lost since the last call (the server restarted, or ended the
        session) is replaced once and the query repeated: a query changes nothing, so
        unlike a write it can be. A second failure raises ``ConnectionError``.
        """
        reused = self._conn is not None and not self._conn.closed
        try:
            return self._query(text, params)
        except ConnectionError:
            if not reused:
                raise
            return self._query(text, params)

    def _query(self, text: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        conn = self._connection()
        self._enter()
        try:
            self._busy = True  # as in _execute
            with self._translating():
                return conn.execute(self._sql(text), params).fetchall()
        finally:
            self._busy = False

    def _write(
        self, text: str, frames: list[bytes], at: int, key: int = 0, *, script: bool = False
    ) -> bool:
        """Run a write statement (a ``script`` of several) inserting ``frames`` from
        ``at``; whether it landed. A unique violation (a row at a position another writer
        took first) lands nothing, as the statement fails whole."""
        from psycopg import errors

        params = {"at": at, "end": at + len(frames), "frames": frames, "key": key}
        try:
            if script:
                return self._execute_script(text, params) == len(frames)
            return self._execute(text, params) == len(frames)
        except errors.UniqueViolation:
            return False

    def _ensure_tables(self) -> int:
        """Create the tables if they are missing and this engine writes (once per engine);
        return the writer lock's key, the log table's oid, unique in the database.

        Concurrent first opens take a transaction-level advisory lock around the
        ``CREATE TABLE IF NOT EXISTS``, which two sessions could otherwise race on.
        """
        if self._lock_key is None:
            key = self._find_tables()
            if key is None:
                self._create_tables()
                key = self._find_tables()
            assert key is not None, "the tables were just created"
            self._lock_key = key
        return self._lock_key

    def _find_tables(self) -> int | None:
        """Return the log table's oid if both tables exist, else None (or, for a
        read-only engine, raise ``FileNotFoundError``).

        A table of one of our names whose columns are not ours raises ``NotAStoreError``
        before anything is created or changed.
        """
        names = {kind: self._quoted(kind) for kind in _COLUMNS}
        rows = self._fetch(_FIND_SQL, names)
        oid, *columns = rows[0]
        for (kind, expected), found in zip(_COLUMNS.items(), columns, strict=True):
            if found is not None and list(found) != list(expected):
                from pathlib import Path

                from ._errors import NotAStoreError

                raise NotAStoreError(
                    Path(self.where()),
                    f"a table {self._quoted(kind)} that typedstore did not make is there, with "
                    f"columns ({', '.join(found)}) where typedstore's has "
                    f"({', '.join(expected)}); pick another store name",
                    untouched="nothing",
                )
        if oid is not None and all(found is not None for found in columns):
            return int(oid)
        if self._mode == "readonly":
            raise FileNotFoundError(f"{self.where()}: no such store (its tables are missing)")
        return None

    def _create_tables(self) -> None:
        conn = self._connection()
        with self._translating(), conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"typedstore tables {self._quoted('log')}"],
            )
            for statement in _TABLE_SQL:
                conn.execute(self._sql(statement))

    def create_tables(self) -> None:
        """Create this store's tables if they are missing (``NotAStoreError`` if a table of
        one of their names is not ours); its log stays empty until a first open."""
        self._check_writable()
        self._ensure_tables()

    def _check_writable(self) -> None:
        if self._mode == "readonly":
            raise RuntimeError(f"{self.where()}: a read-only engine does not write")


def table_sql(name: str) -> list[str]:
    """Return the statements that create store ``name``'s tables (``init-postgres
    --print-sql``): what a first open runs when its role may create tables."""
    from psycopg import sql

    check_name(name)
    names = {kind: sql.Identifier(f"{name}_{kind}") for kind in _COLUMNS}
    return [sql.SQL(text).format(**names).as_string() for text in _TABLE_SQL]


def reframe(image: list[bytes], at: int) -> list[bytes]:
    """Return ``image``, a header then frames framed as a new log's (from position 1),
    with its frames framed again for a log whose header is at position ``at``.

    Raise ``ValueError`` for a frame that is not valid where the new log would hold it.
    """
    if not image:
        raise ValueError("an image starts with a header")
    rows = [image[0]]
    for number, frame in enumerate(image[1:], start=1):
        if _format.read_frame(frame, 0, None, number) != len(frame):
            raise ValueError(f"the image's frame {number} is not a valid frame at {number}")
        body = frame[_format.FRAME_OVERHEAD :]
        rows.append(frame if at == 0 else _format.encode_frame(body, at + number))
    return rows


def walk_records(buf: bytes, offset: int, position: int) -> Frames:
    """Return the frames of ``buf`` from byte ``offset`` on, the first at record ``position``.

    What :meth:`PostgresEngine.read_log` returned is whole rows: a frame that is not
    valid is damage (``"invalid"``), never a write in progress.
    """
    view = memoryview(buf)
    bodies: list[tuple[int, memoryview]] = []
    while offset < len(buf):
        end = _format.read_frame(buf, offset, view, position - offset)
        if end == -1:
            return Frames(bodies, position, "invalid")
        bodies.append((position, view[offset + _format.FRAME_OVERHEAD : end]))
        offset, position = end, position + 1
    return Frames(bodies, position, "end")
