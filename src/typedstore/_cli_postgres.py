"""The command line on a store in PostgreSQL: a DSN and ``--name`` where a log path goes,
and ``init-postgres`` (README, "Several machines"; docs/CLI.md).

The model-free commands read a log's bytes: a store in PostgreSQL is read as one
consistent image (its newest snapshot and the tail after it) and handed to them as the
log file holding the same records would be, each frame framed at its byte offset. So
``info``, ``verify`` and ``dump`` are the file's code, and a dump of a store in PostgreSQL
equals the dump of a file store with the same writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import _format
from ._cli_exit import CommandFailed, ExitCode, Failure
from ._pg_engine import PostgresEngine, table_sql
from ._render import STDOUT

DSN_PREFIXES = ("postgresql://", "postgres://")


def is_dsn(text: object) -> bool:
    """Whether a LOG argument is a PostgreSQL connection URI rather than a path."""
    return isinstance(text, str) and text.startswith(DSN_PREFIXES)


def log_argument(text: str) -> Path | str:
    """argparse's ``type`` of LOG: a DSN stays a string (a Path would fold its ``//``)."""
    return text if is_dsn(text) else Path(text)


def resolve(args: argparse.Namespace) -> None:
    """Turn a DSN given as LOG into the image the commands read (``args.image``), and
    ``args.log`` into the label that names it in messages; nothing for a path."""
    if not is_dsn(args.log):
        if getattr(args, "name", None) is not None:
            raise _usage("--name goes with a PostgreSQL DSN (postgresql://...), not a path")
        return
    engine = _engine(args, readonly=True)
    args.log = Path(engine.where())
    if args.command in ("compact", "repair"):
        raise _usage(
            f"{args.command} rewrites a log file; a store in PostgreSQL never tears, and "
            "compacts with store.compact() from the application"
        )
    try:
        args.image = file_image(engine)
    finally:
        engine.close()


def file_image(engine: PostgresEngine) -> bytes:
    """Return the store's newest image and tail as the bytes of the log file holding the
    same records: each frame framed again at its byte offset. A frame that is not valid is
    kept as it is, so that the file's scan finds the damage there."""
    buf = engine.read_log()
    if not buf:
        return b""
    header, frames = engine.walk_log(buf)
    parts = [header]
    offset = len(header)
    for _, body in frames.bodies:
        frame = _format.encode_frame(bytes(body), offset)
        parts.append(frame)
        offset += len(frame)
    if frames.stop == "invalid":
        parts.append(buf[len(header) + sum(len(p) for p in parts[1:]) :])
    return b"".join(parts)


def cmd_init_postgres(args: argparse.Namespace) -> ExitCode:
    """Create a store's tables (``--print-sql``: print the SQL instead, for a DBA)."""
    if args.print_sql:
        try:
            statements = table_sql(args.name)
        except ValueError as exc:
            raise _usage(str(exc)) from exc
        for statement in statements:
            STDOUT.print(statement + ";")
        return ExitCode.OK
    if not is_dsn(args.dsn):
        raise _usage(f"{args.dsn!r} is not a PostgreSQL DSN (postgresql://...)")
    engine = _engine(args, readonly=False)
    args.log = Path(engine.where())
    try:
        engine.create_tables()
    finally:
        engine.close()
    STDOUT.print(f"{engine.where()}: tables ready")
    return ExitCode.OK


def _engine(args: argparse.Namespace, *, readonly: bool) -> PostgresEngine:
    name = getattr(args, "name", None)
    if name is None:
        raise _usage("a PostgreSQL DSN needs --name, the store's name")
    dsn = args.dsn if args.command == "init-postgres" else args.log
    try:
        return PostgresEngine(dsn, name=name, readonly=readonly)
    except ValueError as exc:
        raise _usage(str(exc)) from exc


def _usage(message: str) -> CommandFailed:
    return CommandFailed(Failure(ExitCode.USAGE, message))
