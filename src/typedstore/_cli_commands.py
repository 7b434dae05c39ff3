"""The ``typedstore`` commands: each reads or rewrites a log, prints, and returns its status.

What each command does is documented in ``docs/CLI.md``. Reading and rewriting is
``_inspect``'s and ``_inspect_rewrite``'s job, what is printed ``_cli_reports``'s; a
handler ties them together. Arguments are parsed, and failures reported, by ``_cli``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import _cli_reports, _fs, _inspect, _inspect_rewrite
from ._cli_exit import CommandFailed, ExitCode, Failure, os_reason
from ._render import STDOUT, JSONValue, Progress, warn


def cmd_info(args: argparse.Namespace) -> ExitCode:
    """Print the log's format version, sizes, record counts and header metadata."""
    report = _cli_reports.info_report(_scan(args, "info"))
    if args.json:
        STDOUT.print_json(report, indent=2)
    else:
        _print_lines(_cli_reports.info_lines(report))
    return ExitCode.OK


def _read(args: argparse.Namespace) -> bytes:
    """Return the log's bytes: the file's, or the image of a store in PostgreSQL."""
    image: bytes | None = getattr(args, "image", None)
    return _fs.read_file(args.log) if image is None else image


def _scan(args: argparse.Namespace, label: str) -> _inspect.LogScan:
    path: Path = args.log
    buf = _read(args)
    with Progress(f"{label} {path}", sys.stderr) as progress:
        return _inspect.scan_log(path, buf, progress)


def cmd_verify(args: argparse.Namespace) -> ExitCode:
    """Check every header byte and record checksum, as a store's open would; write nothing."""
    path: Path = args.log
    buf = _read(args)
    with Progress(f"verify {path}", sys.stderr) as progress:
        finding, scan = _inspect.verify(path, buf, progress)
    checked = None
    if args.collection is not None and scan is not None:  # else the verdict says why not
        checked = _cli_reports.check_collection(scan, args.collection)
    if args.json:
        report = _cli_reports.verify_report(path, len(buf), finding)
        if checked is not None:
            report["collection"] = checked
        STDOUT.print_json(report, indent=2)
    else:
        line = _cli_reports.verify_line(path, len(buf), finding)
        STDOUT.print(line if checked is None else f"{line}; {_cli_reports.checked_text(checked)}")
    return ExitCode.OK if finding.status == "clean" else ExitCode.DAMAGED


def cmd_dump(args: argparse.Namespace) -> ExitCode:
    """Print the live entries in insertion order, or every record with ``--all``."""
    path: Path = args.log
    scan = _scan(args, "dump")
    if args.all:
        STDOUT.print_json_lines(_cli_reports.records(scan))
        return ExitCode.OK
    finding = _inspect.check(scan)
    _inspect.refuse_damage(path, finding)
    contents = _inspect.read_contents(scan)
    entry_line = _cli_reports.entry_line
    if args.collection is not None:
        meta = _cli_reports.collection_named(path, contents.catalog, args.collection)
        STDOUT.print_json_lines(entry_line(entry) for entry in contents.live(meta.id))
    elif contents.catalog.single or scan.meta is None:
        STDOUT.print_json_lines(entry_line(entry) for entry in contents.entries.values())
    else:  # a database's log: every collection's entries, each line naming its collection
        names = {meta.id: meta.name for meta in contents.catalog.collections}
        STDOUT.print_json_lines(
            {"collection": names[entry.collection], **entry_line(entry)}
            for entry in contents.entries.values()
        )
    if finding.status == "torn_tail":
        warn(f"{path}: ignored a torn tail at byte offset {finding.offset}")
    return ExitCode.OK


def cmd_compact(args: argparse.Namespace) -> ExitCode:
    """Compact the log offline under its writer lock."""
    path: Path = args.log
    with Progress(f"compact {path}", sys.stderr) as progress:
        result = _inspect_rewrite.compact(path, progress)
    lines = _cli_reports.compaction_lines(path, result)
    return _finish_rewrite(args, result, lines, _cli_reports.compaction_report(path, result))


def cmd_repair(args: argparse.Namespace) -> ExitCode:
    """Recover the log from damage, after copying the original aside."""
    path: Path = args.log
    with Progress(f"repair {path}", sys.stderr) as progress:
        result = _inspect_rewrite.repair(path, args.mode, progress)
    lines = _cli_reports.repair_lines(path, args.mode, result)
    return _finish_rewrite(args, result, lines, _cli_reports.repair_report(path, args.mode, result))


def _finish_rewrite(
    args: argparse.Namespace,
    result: _inspect_rewrite.Rewrite,
    lines: list[str],
    report: dict[str, JSONValue],
) -> ExitCode:
    """Report a compaction or repair: warnings, its lines or JSON report, a failed fsync.

    The lines come before the fsync's failure, which does not undo what they say; the
    JSON report only after it, since with ``--json`` the failure is the one object printed.
    """
    path: Path = args.log
    if result.removed_temp:
        warn(f"{path}: removed {_fs.temp_path(path)} left by an interrupted compaction")
    if not args.json:
        _print_lines(lines)
    _check_directory(path, result)
    if args.json:
        STDOUT.print_json(report, indent=2)
    return ExitCode.OK


def _check_directory(path: Path, result: _inspect_rewrite.Rewrite) -> None:
    """Fail with ``FILE_ERROR`` if the folder's fsync after the rename failed."""
    if result.directory_error is not None:
        reason = os_reason(result.directory_error)
        message = f"{path}: the new log is in place, but fsyncing its folder failed: {reason}"
        raise CommandFailed(Failure(ExitCode.FILE_ERROR, message))


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        STDOUT.print(line)
