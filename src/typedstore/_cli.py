"""The ``typedstore`` command: inspect, verify, dump, compact and repair a log.

Its behaviour, output and exit codes are documented in ``docs/CLI.md``.

It works without the application's models: keys and values are shown as the data
msgpack holds. This module parses arguments, dispatches to a handler of
``_cli_commands``, and maps every error to one line on stderr (or one JSON object on
stdout) and an :class:`ExitCode`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from . import _cli_postgres, _fs
from ._cli_commands import cmd_compact, cmd_dump, cmd_info, cmd_repair, cmd_verify
from ._cli_exit import EXIT_CODES, CommandFailed, Failure, os_reason
from ._cli_exit import ExitCode as ExitCode
from ._errors import CorruptLogError, NotAStoreError, StoreLockedError
from ._render import STDOUT, error

# -- arguments ------------------------------------------------------------------------------


class UsageError(Exception):
    """A command line the parser refused; :func:`run` reports it and ends with ``USAGE``."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{message} (see '{prog} --help')")
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``typedstore`` and its subcommands."""
    parser = _Parser(
        prog="typedstore",
        description="Inspect, verify, dump, compact and repair a typedstore log, "
        "without the application's models.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {importlib.metadata.version('typedstore')}",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name, handler, summary in _COMMANDS:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "log",
            type=_cli_postgres.log_argument,
            metavar="LOG",
            help="the log file, or a PostgreSQL DSN (postgresql://...) with --name",
        )
        sub.add_argument("--name", help="the store's name, when LOG is a PostgreSQL DSN")
        sub.set_defaults(handler=handler, command=name, image=None)
        if name in _OPTIONS:
            _OPTIONS[name](sub)
    init = commands.add_parser(
        "init-postgres",
        help="create a store's tables in PostgreSQL (or print the SQL)",
        description="Create store NAME's tables in the database DSN names, as a first open "
        "does when its role may; --print-sql prints the statements instead, for a DBA.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("dsn", metavar="DSN", nargs="?", help="postgresql://...")
    init.add_argument("--name", required=True, help="the store's name")
    init.add_argument("--print-sql", action="store_true", help="print the SQL; connect nowhere")
    init.set_defaults(
        handler=_cli_postgres.cmd_init_postgres, command="init-postgres", log="", json=False
    )
    return parser


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (an error too, on stdout, instead of a line on stderr)",
    )


def _dump_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="report an error as one JSON object on stdout (entries are JSON lines anyway)",
    )
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument(
        "--all",
        action="store_true",
        help="print every record with its offset and kind, damaged ranges included",
    )
    shown.add_argument(
        "--collection",
        metavar="NAME",
        help="print the live entries of this collection only (see 'typedstore info')",
    )


def _verify_options(parser: argparse.ArgumentParser) -> None:
    _json_option(parser)
    parser.add_argument(
        "--collection",
        metavar="NAME",
        help="also decode the live entries of this collection (see 'typedstore info')",
    )


def _repair_options(parser: argparse.ArgumentParser) -> None:
    _json_option(parser)
    parser.add_argument(
        "--mode",
        required=True,
        choices=["truncate", "skip"],
        help="truncate: keep the records before the first damage; skip: keep every readable record",
    )


_COMMANDS: list[tuple[str, Callable[[argparse.Namespace], ExitCode], str]] = [
    ("info", cmd_info, "show the format version, sizes, record counts, types and collections"),
    ("verify", cmd_verify, "check every checksum as opening the store would; never writes"),
    ("dump", cmd_dump, "print the live entries in insertion order as JSON lines"),
    ("compact", cmd_compact, "rewrite the log to one record per live entry (takes the lock)"),
    ("repair", cmd_repair, "recover from damage before the tail; the original is copied aside"),
]
_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "info": _json_option,
    "verify": _verify_options,
    "dump": _dump_options,
    "compact": _json_option,
    "repair": _repair_options,
}


# -- errors and entry point -----------------------------------------------------------------


def _advice(args: argparse.Namespace) -> str:
    if args.handler is cmd_repair:
        return (
            "repair drops only damaged bytes, never a record whose checksum is valid, so "
            f"nothing was changed; inspect it with 'typedstore dump --all {args.log}'"
        )
    return f"nothing was changed; see 'typedstore verify {args.log}' and 'typedstore repair'"


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    STDOUT.broken = False
    try:
        code = _run(argv)
    except BrokenPipeError:  # ``--help`` to a closed pipe, or a closed stderr
        code = ExitCode.BROKEN_PIPE
    STDOUT.flush()
    # A broken pipe never turns a failure into success, nor hides one: only a command
    # that succeeded ends with BROKEN_PIPE, as docs/CLI.md's exit codes say.
    return ExitCode.BROKEN_PIPE if STDOUT.broken and code == ExitCode.OK else code


def _run(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _report_usage(argv, exc)
    except SystemExit as exc:  # --help or --version, already printed
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    handler: Callable[[argparse.Namespace], ExitCode] = args.handler
    try:
        if handler is not _cli_postgres.cmd_init_postgres:
            _cli_postgres.resolve(args)
        return handler(args)
    except KeyboardInterrupt:
        return _report(args, Failure(ExitCode.INTERRUPTED, "interrupted"))
    except Exception as exc:  # every error, a bug included, ends as one line or object
        return _report(args, _failure(args, exc))


def _failure(args: argparse.Namespace, exc: Exception) -> Failure:
    """Map ``exc`` to the failure reported for it."""
    if isinstance(exc, CommandFailed):
        return exc.failure
    if isinstance(exc, StoreLockedError):
        return Failure(ExitCode.LOCKED, _locked_message(args.log, exc))
    if isinstance(exc, NotAStoreError):
        return Failure(ExitCode.NOT_A_STORE, str(exc))
    if isinstance(exc, CorruptLogError):
        message = f"{args.log}: damaged at byte offset {exc.offset} ({exc.reason}); "
        return Failure(ExitCode.DAMAGED, message + _advice(args), exc.offset)
    if isinstance(exc, OSError):
        reason = os_reason(exc)
        return Failure(
            ExitCode.FILE_ERROR, reason if exc.filename is not None else f"{args.log}: {reason}"
        )
    return Failure(
        ExitCode.INTERNAL,
        f"{args.log}: internal error: {type(exc).__name__}: {exc}; "
        "this is a bug in typedstore, please report it",
    )


def _locked_message(path: Path, exc: StoreLockedError) -> str:
    if exc.reason is not None:  # the lock could not be taken safely (hard links)
        return f"{path}: {exc.reason}"
    return (
        f"{path}: another process holds this log's writer lock "
        f"({_fs.lock_path(path)}); close the store that uses it and retry"
    )


def _report(args: argparse.Namespace, failure: Failure) -> ExitCode:
    """Print ``failure``: one line on stderr, or with ``--json`` one object on stdout."""
    return _print_failure(failure, str(args.log), as_json=args.json)


def _report_usage(argv: list[str], exc: UsageError) -> ExitCode:
    """Print a usage error; as JSON if ``--json`` is anywhere in ``argv``, parsed or not."""
    failure = Failure(ExitCode.USAGE, str(exc))
    if not _wants_json(argv):
        print(f"{exc.prog}: error: {failure.message}", file=sys.stderr)
        return failure.code
    return _print_failure(failure, None, as_json=True)


def _wants_json(argv: list[str]) -> bool:
    """Tell whether ``argv`` asks for ``--json`` (or a prefix argparse accepts for it)."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    return any(len(arg) > 2 and "--json".startswith(arg) for arg in options)


def _print_failure(failure: Failure, path: str | None, *, as_json: bool) -> ExitCode:
    message = " ".join(failure.message.split())
    if as_json:
        kind = failure.code.name.lower()
        STDOUT.print_json(
            {"error": kind, "message": message, "offset": failure.offset, "path": path}, indent=2
        )
    else:
        error(message)
    return failure.code
