"""The ``typedstore`` command: inspect, verify, dump, compact and repair a log.

Its behaviour, output and exit codes are documented in ``docs/CLI.md``.

It works without the application's models: keys and values are shown as the data
msgpack holds, rendered as JSON by ``_render.to_json``. Reading and rewriting is
``_inspect``'s job; this module parses arguments, prints, and maps errors to one
line on stderr and an :class:`ExitCode`.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import importlib.metadata
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from . import _format, _fs, _inspect, _inspect_rewrite
from ._catalog import Catalog, CollectionMeta
from ._codec import RecordDecodeError, decode_metadata, unpack
from ._errors import CorruptLogError, NotAStoreError, StoreLockedError
from ._render import JSONValue, Progress, dumps, to_json


class ExitCode(enum.IntEnum):
    """The command's exit status; documented in ``--help`` and ``docs/CLI.md``."""

    OK = 0
    DAMAGED = 1
    LOCKED = 2
    FILE_ERROR = 3
    NOT_A_STORE = 4
    USAGE = 64
    INTERNAL = 70
    INTERRUPTED = 130
    BROKEN_PIPE = 141


EXIT_CODES = """\
exit codes:
  0    success; for verify: the log is clean
  1    the log is damaged: verify found damage or a torn tail, or a command
       refused a log a store's open would refuse (CorruptLogError)
  2    another process holds the log's writer lock, or the log has other
       hard links, which the lock cannot cover (compact, repair)
  3    file error: no such file, permission denied, other I/O error
  4    not a typedstore log, or not a regular file (nothing was changed)
  64   usage error
  70   internal error: a bug in typedstore (reported on one line, please report it)
  130  interrupted
  141  the reader of the output went away (a broken pipe) before a command
       that otherwise succeeded was done; a failure keeps its own code"""


def _blob_to_json(blob: bytes) -> JSONValue:
    """Render the msgpack in ``blob``, which the scan already decoded once."""
    return to_json(unpack(blob))


def _print_json(data: JSONValue, *, indent: int | None = None) -> None:
    _STDOUT.print(dumps(data, indent=indent))


class _Stdout:
    """The command's stdout, which outlives its reader.

    When the reader goes away (``typedstore dump LOG | head``), writing raises
    ``BrokenPipeError``. Losing the output is not the command's failure: what it does
    and the status it ends with stay its own, so the rest of its output goes nowhere
    and ``broken`` tells :func:`run` to end with ``BROKEN_PIPE`` if nothing else failed.
    """

    def __init__(self) -> None:
        self.broken = False

    def print(self, line: str) -> None:
        """Print ``line``, unless the reader has gone away."""
        if not self.broken:
            try:
                print(line)
            except BrokenPipeError:
                self._lose()

    def flush(self) -> None:
        """Write what is buffered, before the status that depends on it is decided."""
        if not self.broken:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                self._lose()

    def _lose(self) -> None:
        """Point stdout at the null device, so no later write or flush at exit fails."""
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, sys.stdout.fileno())
            finally:
                os.close(null)


_STDOUT = _Stdout()


# -- commands -------------------------------------------------------------------------------


def _scan(path: Path, label: str) -> _inspect.LogScan:
    buf = _fs.read_file(path)
    progress = Progress(f"{label} {path}", sys.stderr)
    try:
        return _inspect.scan_log(path, buf, progress)
    finally:
        progress.finish()


def cmd_info(args: argparse.Namespace) -> ExitCode:
    """Print the log's format version, sizes, record counts and header metadata."""
    path: Path = args.log
    scan = _scan(path, "info")
    report = _info_report(scan)
    if args.json:
        _print_json(report, indent=2)
    else:
        _print_info(report)
    return ExitCode.OK


def _info_report(scan: _inspect.LogScan) -> dict[str, JSONValue]:
    total = scan.records
    contents = _inspect.read_contents(scan)
    catalogs = _catalogs(scan)
    live = len(contents.entries)
    meta, meta_error = _metadata(scan.meta)
    return {
        "path": str(scan.path),
        "format_version": None if scan.meta is None else _format.FORMAT_VERSION,
        "file_size": scan.size,
        "header_size": scan.start,
        "records": len(scan.frames),
        "operations": total,
        "live_entries": live,
        "dead_operations": total - live,
        "dead_ratio": round((total - live) / total, 4) if total else 0.0,
        "state": _state(_inspect.check(scan)),
        "schema_versions": _schema_versions(catalogs),
        "metadata": meta,
        "metadata_error": meta_error,
        "collections": _collections_report(catalogs, contents),
    }


def _catalogs(scan: _inspect.LogScan) -> list[Catalog]:
    """Return the header's catalog and each schema record's, in log order."""
    if scan.meta is None:
        return []
    header = _inspect.read_log_catalog(scan.path, scan.meta, 0)
    schemas = (frame.catalog for frame in scan.frames if frame.schema is not None)
    return [header, *(catalog for catalog in schemas if catalog is not None)]


def _schema_versions(catalogs: list[Catalog], collection: int | None = None) -> list[JSONValue]:
    """Return the schema versions the log's records (of ``collection``) were written at.

    In log order, each once; every collection of a catalog counts when ``collection``
    is None.
    """
    versions: list[JSONValue] = []
    for catalog in catalogs:
        for meta in catalog.collections:
            if collection in (None, meta.id) and meta.version not in versions:
                versions.append(meta.version)
    return versions


def _collections_report(catalogs: list[Catalog], contents: _inspect.Contents) -> list[JSONValue]:
    """Return one report per collection the log holds now, in its catalog's order."""
    return [
        {
            "name": meta.name,
            "id": meta.id,
            "operations": contents.operations.get(meta.id, 0),
            "live_entries": len(contents.live(meta.id)),
            "key_type": to_json(meta.schema.get("key_type")),
            "value_type": to_json(meta.schema.get("value_type")),
            "version": meta.version,
            "schema_versions": _schema_versions(catalogs, meta.id),
            "fingerprint": meta.fingerprint or None,
        }
        for meta in contents.catalog.collections
    ]


def _metadata(meta: bytes | None) -> tuple[JSONValue, JSONValue]:
    if meta is None:
        return None, None
    try:
        return to_json(decode_metadata(meta)), None
    except RecordDecodeError as exc:
        return None, str(exc)


def _state(finding: _inspect.Finding) -> dict[str, JSONValue]:
    return {"status": finding.status, "offset": finding.offset, "reason": finding.reason}


def _print_info(report: dict[str, JSONValue]) -> None:
    rows = [
        ("path", report["path"]),
        ("format version", report["format_version"] or "none (empty file, no header yet)"),
        ("file size", f"{report['file_size']:,} bytes (header {report['header_size']:,})"),
        ("records", f"{report['records']:,} ({report['operations']:,} operations)"),
        ("live entries", f"{report['live_entries']:,}"),
        (
            "dead ratio",
            f"{report['dead_ratio']:.1%} ({report['dead_operations']:,} dead operations)",
        ),
        ("state", _state_line(report["state"])),
        ("schema versions", _versions_text(report["schema_versions"])),
    ]
    meta = report["metadata"]
    if isinstance(meta, dict) and "collections" not in meta:  # a database's: listed below
        rows.extend((name.replace("_", " "), _meta_text(value)) for name, value in meta.items())
    elif report["metadata_error"] is not None:
        rows.append(("metadata", f"undecodable ({report['metadata_error']})"))
    collections = report["collections"]
    assert isinstance(collections, list)
    rows.append(("collections", f"{len(collections):,}"))
    rows.extend(("collection", _collection_text(item)) for item in collections)
    for name, value in rows:
        _STDOUT.print(f"{name + ':':<15} {value}")


def _collection_text(item: JSONValue) -> str:
    """Return one collection of ``info`` on one line: name, id, counts, types, version."""
    assert isinstance(item, dict)
    live = _count(_int(item["live_entries"]), "live entry", "live entries")
    operations = _count(_int(item["operations"]), "operation")
    types = f"key {_meta_text(item['key_type'])}, value {_meta_text(item['value_type'])}"
    return (
        f"{item['name']} (id {item['id']}): {live}, {operations}; {types}; "
        f"schema version {item['version']}"
    )


def _int(value: JSONValue) -> int:
    assert isinstance(value, int)
    return value


def _versions_text(versions: JSONValue) -> str:
    if isinstance(versions, list) and versions:
        return ", ".join(str(version) for version in versions)
    return "none"


def _meta_text(value: JSONValue) -> str:
    return value if isinstance(value, str) else dumps(value)


def _state_line(state: JSONValue) -> str:
    assert isinstance(state, dict)
    offset = state["offset"]
    if state["status"] == "clean":
        return "clean"
    if state["status"] == "torn_tail":
        return f"torn tail at byte offset {offset} (a writable open drops it)"
    return f"damaged at byte offset {offset} ({state['reason']}); see 'typedstore verify'"


def cmd_verify(args: argparse.Namespace) -> ExitCode:
    """Check every header byte and record checksum, as a store's open would; write nothing."""
    path: Path = args.log
    buf = _fs.read_file(path)
    progress = Progress(f"verify {path}", sys.stderr)
    try:
        finding, scan = _inspect.verify(path, buf, progress)
    finally:
        progress.finish()
    checked = None
    if args.collection is not None and scan is not None:  # else the verdict says why not
        checked = _check_collection(scan, args.collection)
    if args.json:
        report = _verify_report(path, len(buf), finding)
        if checked is not None:
            report["collection"] = checked
        _print_json(report, indent=2)
    else:
        line = _verify_line(path, len(buf), finding)
        _STDOUT.print(line if checked is None else f"{line}; {_checked_text(checked)}")
    return ExitCode.OK if finding.status == "clean" else ExitCode.DAMAGED


def _check_collection(scan: _inspect.LogScan, name: str) -> JSONValue:
    """Decode the live entries of the collection ``name``; report how many there are.

    The name is looked up in the catalog at the end of the readable records; an unknown
    name is a usage error listing the log's collections.
    """
    contents = _inspect.read_contents(scan)
    meta = _collection_named(scan.path, contents.catalog, name)
    entries = contents.live(meta.id)
    for entry in entries:  # what dump --collection would print must decode
        unpack(entry.key)
        unpack(entry.value)
    return {"name": meta.name, "id": meta.id, "live_entries": len(entries)}


def _checked_text(checked: JSONValue) -> str:
    assert isinstance(checked, dict)
    live = _count(_int(checked["live_entries"]), "live entry", "live entries")
    return f"collection {checked['name']}: {live} decoded"


def _collection_named(path: Path, catalog: Catalog, name: str) -> CollectionMeta:
    """Return the collection ``name`` of ``catalog``; a usage error listing the names if none."""
    meta = catalog.by_name(name)
    if meta is not None:
        return meta
    names = ", ".join(repr(item.name) for item in catalog.collections) or "none (no header yet)"
    message = f"{path}: no collection named {name!r}; the log's collections: {names}"
    raise CommandFailed(Failure(ExitCode.USAGE, message))


def _verify_report(path: Path, size: int, finding: _inspect.Finding) -> dict[str, JSONValue]:
    return {
        "path": str(path),
        "status": finding.status,
        "offset": finding.offset,
        "reason": finding.reason,
        "file_size": size,
        "records": finding.frames,
        "records_after": finding.frames_after,
    }


def _verify_line(path: Path, size: int, finding: _inspect.Finding) -> str:
    if finding.status == "clean":
        records = _count(finding.frames, "record")
        return f"{path}: clean: {records}, {size:,} bytes, every checksum valid"
    offset = finding.offset or 0
    if finding.status == "torn_tail":
        return (
            f"{path}: torn tail at byte offset {offset}: the last {size - offset:,} bytes are "
            f"an incomplete record; {_intact(finding.frames)} (a writable open drops the tail)"
        )
    return (
        f"{path}: damaged at byte offset {offset} ({finding.reason}); "
        f"{_count(finding.frames_after, 'readable record')} after it; opening the store raises "
        "CorruptLogError (see 'typedstore repair')"
    )


def _intact(records: int) -> str:
    verb = "is" if records == 1 else "are"
    return f"the {_count(records, 'record')} before it {verb} intact"


def cmd_dump(args: argparse.Namespace) -> ExitCode:
    """Print the live entries in insertion order, or every record with ``--all``."""
    path: Path = args.log
    scan = _scan(path, "dump")
    if args.all:
        _print_lines(_records(scan))
        return ExitCode.OK
    finding = _inspect.check(scan)
    _inspect.refuse_damage(path, finding)
    contents = _inspect.read_contents(scan)
    if args.collection is not None:
        meta = _collection_named(path, contents.catalog, args.collection)
        _print_lines(_entry_line(entry) for entry in contents.live(meta.id))
    elif contents.catalog.single or scan.meta is None:
        _print_lines(_entry_line(entry) for entry in contents.entries.values())
    else:  # a database's log: every collection's entries, each line naming its collection
        names = {meta.id: meta.name for meta in contents.catalog.collections}
        _print_lines(
            {"collection": names[entry.collection], **_entry_line(entry)}
            for entry in contents.entries.values()
        )
    if finding.status == "torn_tail":
        _warn(f"{path}: ignored a torn tail at byte offset {finding.offset}")
    return ExitCode.OK


def _entry_line(entry: _inspect.Entry) -> dict[str, JSONValue]:
    return {"key": _blob_to_json(entry.key), "value": _blob_to_json(entry.value)}


def _print_lines(lines: Iterable[JSONValue]) -> None:
    """Print each of ``lines`` as one JSON line, and stop rendering once no one reads them."""
    for line in lines:
        if _STDOUT.broken:
            return
        _print_json(line)


def _records(scan: _inspect.LogScan) -> Iterator[dict[str, JSONValue]]:
    """Yield every frame and damaged range of the log, in file order."""
    events: list[tuple[int, dict[str, JSONValue]]] = [
        (frame.offset, _frame_record(frame)) for frame in scan.frames
    ]
    ranges = [("damaged", item.start, item.end) for item in scan.damage]
    if scan.torn_tail is not None:
        ranges.append(("torn_tail", scan.torn_tail, scan.size))
    for kind, start, end in ranges:
        events.append((start, {"offset": start, "kind": kind, "length": end - start}))
    for _, record in sorted(events, key=lambda event: event[0]):
        yield record


def _frame_record(frame: _inspect.Frame) -> dict[str, JSONValue]:
    if frame.error is not None:
        body = to_json(frame.undecodable_body)
        return {"offset": frame.offset, "kind": "undecodable", "error": frame.error, "body": body}
    if frame.schema is not None:
        return {"offset": frame.offset, "kind": "schema", "metadata": _metadata(frame.schema)[0]}
    if frame.kind == _format.RecordKind.BATCH:
        ops: list[JSONValue] = [_op_record(op, frame.catalog) for op in frame.ops]
        return {"offset": frame.offset, "kind": "batch", "ops": ops}
    return {"offset": frame.offset, **_op_record(frame.ops[0], frame.catalog)}


def _op_record(op: _format.Op, catalog: Catalog | None) -> dict[str, JSONValue]:
    """Return one operation; in a database's log, with the name of its collection then."""
    named: dict[str, JSONValue] = {}
    if catalog is not None and not catalog.single:
        meta = catalog.by_id(op.collection)
        named["collection"] = None if meta is None else meta.name
    if op.value is None:
        return {**named, "kind": "remove", "key": _blob_to_json(op.key)}
    return {
        **named,
        "kind": "insert",
        "key": _blob_to_json(op.key),
        "value": _blob_to_json(op.value),
    }


def cmd_compact(args: argparse.Namespace) -> ExitCode:
    """Compact the log offline under its writer lock."""
    path: Path = args.log
    progress = Progress(f"compact {path}", sys.stderr)
    try:
        result = _inspect_rewrite.compact(path, progress)
    finally:
        progress.finish()
    _note_removed_temp(path, result)
    if not args.json:
        _print_compaction(path, result)
    _check_directory(path, result)
    if args.json:
        _print_json(_compaction_report(path, result), indent=2)
    return ExitCode.OK


def _print_compaction(path: Path, result: _inspect_rewrite.Rewrite) -> None:
    scan = result.scan
    if scan.meta is None:
        _STDOUT.print(f"{path}: empty log (no header yet); nothing to compact")
        return
    if scan.torn_tail is not None:
        _STDOUT.print(f"{path}: dropped a torn tail at byte offset {scan.torn_tail}")
    schemas = f" and {_count(result.schemas, 'schema record')}" if result.schemas else ""
    _STDOUT.print(
        f"{path}: compacted {_count(len(scan.frames), 'record')} "
        f"({_count(scan.records, 'operation')}) to {_count(result.live, 'record')}{schemas}; "
        f"{scan.size:,} -> {result.size:,} bytes"
    )


def _compaction_report(path: Path, result: _inspect_rewrite.Rewrite) -> dict[str, JSONValue]:
    scan = result.scan
    return {
        "path": str(path),
        "status": "empty" if scan.meta is None else "compacted",
        "records_before": len(scan.frames),
        "operations_before": scan.records,
        "records": result.live + result.schemas,
        "live_entries": result.live,
        "schema_records": result.schemas,
        "size_before": scan.size,
        "size": result.size if scan.meta is not None else scan.size,
        "torn_tail_dropped_at": scan.torn_tail,
    }


def cmd_repair(args: argparse.Namespace) -> ExitCode:
    """Recover the log from damage, after copying the original aside."""
    path: Path = args.log
    progress = Progress(f"repair {path}", sys.stderr)
    try:
        result = _inspect_rewrite.repair(path, args.mode, progress)
    finally:
        progress.finish()
    _note_removed_temp(path, result)
    if not args.json:
        _print_repair(path, args.mode, result)
    _check_directory(path, result)
    if args.json:
        _print_json(_repair_report(path, args.mode, result), indent=2)
    return ExitCode.OK


def _print_repair(path: Path, mode: str, result: _inspect_rewrite.Rewrite) -> None:
    if result.backup is None:
        _STDOUT.print(f"{path}: no damage found; nothing changed")
        return
    _STDOUT.print(f"{path}: copied the original to {_beside(path, result.backup)}")
    for start, end in result.dropped:
        _STDOUT.print(f"{path}: dropped bytes {start}-{end} ({end - start:,} bytes)")
    if result.dropped_frames:
        lost = _count(result.dropped_frames, "readable record")
        _STDOUT.print(f"{path}: dropped {lost} after the damage (the copy keeps them)")
    live = _count(result.live, "live entry", "live entries")
    _STDOUT.print(f"{path}: repaired ({mode}): {live} kept, {result.size:,} bytes")


def _repair_report(path: Path, mode: str, result: _inspect_rewrite.Rewrite) -> dict[str, JSONValue]:
    backup = None if result.backup is None else str(_beside(path, result.backup))
    return {
        "path": str(path),
        "mode": mode,
        "status": "clean" if result.backup is None else "repaired",
        "backup": backup,
        "dropped": [[start, end] for start, end in result.dropped],
        "dropped_records": result.dropped_frames,
        "live_entries": result.live,
        "size": result.size,
    }


def _beside(path: Path, backup: Path) -> Path:
    """Name ``backup`` as the user named the log, unless that name is a link elsewhere."""
    named = path.with_name(backup.name)
    return named if named.resolve() == backup.resolve() else backup


def _count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number:,} {singular if number == 1 else plural or singular + 's'}"


def _note_removed_temp(path: Path, result: _inspect_rewrite.Rewrite) -> None:
    if result.removed_temp:
        _warn(f"{path}: removed {_fs.temp_path(path)} left by an interrupted compaction")


def _check_directory(path: Path, result: _inspect_rewrite.Rewrite) -> None:
    """Fail with ``FILE_ERROR`` if the folder's fsync after the rename failed."""
    if result.directory_error is not None:
        reason = _os_reason(result.directory_error)
        message = f"{path}: the new log is in place, but fsyncing its folder failed: {reason}"
        raise CommandFailed(Failure(ExitCode.FILE_ERROR, message))


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
        sub.add_argument("log", type=Path, metavar="LOG", help="the log file")
        sub.set_defaults(handler=handler)
        if name in _OPTIONS:
            _OPTIONS[name](sub)
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


def _warn(message: str) -> None:
    print(f"typedstore: {message}", file=sys.stderr)


def _error(message: str) -> None:
    print(f"typedstore: error: {message}", file=sys.stderr)


def _os_reason(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return where + (exc.strerror or str(exc)).lower()


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
    _STDOUT.broken = False
    try:
        code = _run(argv)
    except BrokenPipeError:  # ``--help`` to a closed pipe, or a closed stderr
        code = ExitCode.BROKEN_PIPE
    _STDOUT.flush()
    # A broken pipe never turns a failure into success, nor hides one: only a command
    # that succeeded ends with BROKEN_PIPE, as docs/CLI.md's exit codes say.
    return ExitCode.BROKEN_PIPE if _STDOUT.broken and code == ExitCode.OK else code


def _run(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _report_usage(argv, exc)
    except SystemExit as exc:  # --help or --version, already printed
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    handler: Callable[[argparse.Namespace], ExitCode] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return _report(args, Failure(ExitCode.INTERRUPTED, "interrupted"))
    except Exception as exc:  # every error, a bug included, ends as one line or object
        return _report(args, _failure(args, exc))


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a command failed: its exit status, one line of message, and where, if known."""

    code: ExitCode
    message: str
    offset: int | None = None
    """The byte offset of the damage, for ``ExitCode.DAMAGED``."""


class CommandFailed(Exception):
    """Raised by a command to end with ``failure`` after doing what it could."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


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
        reason = _os_reason(exc)
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
        error = {"error": failure.code.name.lower(), "message": message, "offset": failure.offset}
        _print_json({**error, "path": path}, indent=2)
    else:
        _error(message)
    return failure.code
