"""The ``typedstore`` command line (docs/CLI.md): each subcommand, its errors and exit codes.

Most tests call ``main(argv)`` in-process; a few run ``python -m typedstore`` for real.
``verify`` is checked against what ``TypedStore.open(..., readonly=True)`` itself finds.

One class per promise, in file order:

- ``TestHelpAndUsage``: ``--help``, ``--version`` and usage errors.
- ``TestInfo``: ``info``, as text or JSON.
- ``TestVerify``: ``verify`` reports and never writes.
- ``TestDump``: ``dump`` and ``dump --all``.
- ``TestRepair``: ``repair`` keeps what a writable open would.
- ``TestCompact``: ``compact``, and its refusals.
- ``TestErrorExitCodes``: one error line with its documented exit code.
- ``TestJsonErrors``: errors as one JSON object with ``--json``.
- ``TestRealProcesses``: ``python -m typedstore`` run for real.
- ``TestClosedStdout``: a reader that went away never turns a failure into success.
- ``TestJsonRendering``: values JSON cannot hold, data of any depth.
- ``TestProgress``: the progress line on a terminal.
- ``TestSchemaRecords``: schema records and versions offline.
- ``TestVerifyAgreesWithOpen``: ``verify`` finds what a read-only open finds.
- ``TestEqualKeys``: keys the store holds equal are one entry offline.
- ``TestCollections``: a database's log, collection by collection.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import io
import json
import math
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgpack
import pytest
from pydantic import BaseModel

from tests.dblogs import DatabaseLog, collection
from tests.models import User
from tests.test_locking import (
    MAY_HANG,
    SPECIAL_KINDS,
    limit_memory,
    make_special,
    node_state,
)
from typedstore import (
    CorruptLogError,
    NotAStoreError,
    StoreConfig,
    TypedStore,
    _format,
    _fs,
    _inspect,
    _inspect_rewrite,
)
from typedstore.__main__ import main
from typedstore._cli import ExitCode
from typedstore._render import Progress, _json_parts, dumps, to_json

ROOT = Path(__file__).parents[1]
COMMANDS = ["info", "verify", "dump", "compact", "repair"]


QUICK_IN_A_CHILD = {"fifo": "info", "link_to_dev_zero": "dump"}
"""The one command the quick run tries on each kind run in a child process (MAY_HANG)."""
SPECIAL_CASES = [
    pytest.param(
        kind,
        command,
        marks=[pytest.mark.slow] if QUICK_IN_A_CHILD.get(kind, command) != command else [],
    )
    for kind in SPECIAL_KINDS
    for command in COMMANDS
]
"""Every command on every kind of path that is not a regular file."""


@dataclass(frozen=True)
class Run:
    """One run of the command line: exit status and what it printed."""

    code: int
    out: str
    err: str


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Run:
    """Run ``typedstore argv`` in-process."""
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def cli_process(*argv: str | Path) -> Run:
    """Run ``python -m typedstore argv`` in a child process, bounded in time and memory."""
    done = subprocess.run(
        [sys.executable, "-m", "typedstore", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=limit_memory,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def make_log(path: Path) -> list[tuple[str, User]]:
    """Write a log through the API with inserts, a modify, removes and a batch; return its items."""
    with TypedStore.open(path, str, User) as store:
        store["alice"] = User(name="Alice", age=30, tags=["admin"])
        store["bob"] = User(name="Bob", age=25)
        store["carol"] = User(name="Carol", age=41)
        store["erin"] = User(name="Erin", age=19, tags=["new"])
        store.modify("alice", lambda user: user.model_copy(update={"age": user.age + 1}))
        store.remove("bob")
        with store.transaction() as txn:
            txn["dave"] = User(name="Dave", age=52)
            del txn["carol"]
            txn.modify("erin", lambda user: user.model_copy(update={"tags": []}))
        store["bob"] = User(name="Bob", age=26)
        return list(store.items())


def stored_items(path: Path, config: StoreConfig | None = None) -> list[tuple[str, User]]:
    """Return the entries the library's own open finds (read-only unless ``config`` is given)."""
    with TypedStore.open(path, str, User, config=config, readonly=config is None) as store:
        return list(store.items())


def open_outcome(path: Path) -> tuple[str, int | None]:
    """Return what a read-only open finds: clean, torn_tail, damaged or not_a_store, with offset."""
    try:
        store = TypedStore.open(path, str, User, readonly=True)
    except NotAStoreError:
        return "not_a_store", None
    except CorruptLogError as exc:
        return "damaged", exc.offset
    with store:
        recovery = store.recovery
    return ("clean", None) if recovery is None else (recovery.kind, recovery.offset)


def verify_outcome(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[str, int | None]:
    """Return what ``typedstore verify --json`` finds, in ``open_outcome``'s terms."""
    run = cli(capsys, "verify", "--json", path)
    if run.code == ExitCode.NOT_A_STORE:
        return "not_a_store", None
    report = json.loads(run.out)
    assert run.code == (ExitCode.OK if report["status"] == "clean" else ExitCode.DAMAGED)
    return report["status"], report["offset"]


def frame_offsets(path: Path) -> list[int]:
    """Return the offset of every record of an undamaged log."""
    buf = path.read_bytes()
    _, offset = _format.decode_header(buf)
    offsets = []
    while offset < len(buf):
        offsets.append(offset)
        offset = _format.read_frame(buf, offset)
    return offsets


def flip(path: Path, offset: int, mask: int = 0xFF) -> None:
    """XOR the byte at ``offset`` of ``path`` with ``mask``."""
    buf = bytearray(path.read_bytes())
    buf[offset] ^= mask
    path.write_bytes(bytes(buf))


Part = tuple[Literal["frame", "raw"], bytes]
"""A record body to frame where it lands, or raw bytes to append as they are."""


def append_parts(path: Path, parts: list[Part]) -> list[int]:
    """Append ``parts`` to the log at ``path``; return the offset each one starts at."""
    buf = bytearray(path.read_bytes())
    offsets = []
    for kind, data in parts:
        offsets.append(len(buf))
        buf += _format.encode_frame(data, len(buf)) if kind == "frame" else data
    path.write_bytes(bytes(buf))
    return offsets


def insert(key: object, value: bytes) -> Part:
    """Return an insert record of ``key`` (packed here) and raw ``value`` bytes."""
    return "frame", _format.insert_body(msgpack.packb(key), value)


def user_bytes(name: str, age: int) -> bytes:
    """Return a User value as a log holds it."""
    packed: bytes = msgpack.packb({"name": name, "age": age, "tags": []})
    return packed


def assert_one_line_error(run: Run, code: ExitCode) -> None:
    """Assert the run failed with ``code`` and one error line on stderr, no traceback."""
    assert run.code == code, run
    assert "Traceback" not in run.err
    assert run.err.count("\n") == 1, run.err
    assert run.err.startswith("typedstore: error: ")


class TestHelpAndUsage:
    """--help lists the exit codes, --version the version, and a usage error is one line, exit
    64."""

    @pytest.mark.parametrize("command", [[], *[[name] for name in COMMANDS]])
    def test_help_documents_exit_codes(
        self, capsys: pytest.CaptureFixture[str], command: list[str]
    ) -> None:
        """``--help`` of the command and of every subcommand lists every exit code."""
        run = cli(capsys, *command, "--help")
        assert run.code == 0
        for code in ExitCode:
            assert f"\n  {code.value} " in run.out

    def test_usage_error_exits_64_on_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A missing required option is a usage error: one line, exit 64."""
        run = cli(capsys, "repair", "some.log")
        assert run.code == 64
        assert run.err.count("\n") == 1
        assert "--mode" in run.err

    def test_usage_error_with_json_prints_one_object(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`repair --json LOG` without --mode prints one error object and exits 64."""
        code = main(["repair", "--json", "some.log"])
        out = capsys.readouterr().out
        assert code == 64
        assert out.lstrip().startswith("{")

    def test_usage_error_object_names_the_kind_and_no_path(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A usage error with ``--json`` is kind ``usage``, with the message and no path or
        offset."""
        run = cli(capsys, "repair", "some.log", "--json")
        error = json_error(run)
        assert (error["error"], error["offset"], error["path"]) == ("usage", None, None)
        assert "--mode" in str(error["message"])

    def test_version_prints_the_installed_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``typedstore --version`` prints the package's version and exits 0."""
        run = cli(capsys, "--version")
        assert run.code == ExitCode.OK
        assert run.out.strip() == f"typedstore {importlib.metadata.version('typedstore')}"


class TestInfo:
    """info reports counts, header, types and a torn tail, as text or JSON."""

    def test_info_json_reports_counts_and_header(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``info --json`` gives version, size, record counts, dead ratio and the recorded types."""
        items = make_log(log_path)
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        assert report["format_version"] == _format.FORMAT_VERSION
        assert report["file_size"] == log_path.stat().st_size
        assert report["records"] == len(frame_offsets(log_path)) == 8
        assert report["operations"] == 10  # the batch holds three
        assert report["live_entries"] == len(items) == 4
        assert report["dead_ratio"] == pytest.approx(6 / 10, abs=1e-4)
        assert report["state"]["status"] == "clean"
        meta = report["metadata"]
        assert (meta["key_type"], meta["value_type"]) == ("str", "tests.models.User")
        assert meta["value_schema"] == User.model_json_schema()

    def test_info_text_names_types_and_state(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """Plain ``info`` prints one labelled line per fact, the types included."""
        make_log(log_path)
        lines = cli(capsys, "info", log_path).out.splitlines()
        assert f"format version: {_format.FORMAT_VERSION}" in lines
        assert "live entries:   4" in lines
        assert "value type:     tests.models.User" in lines
        assert "state:          clean" in lines

    def test_info_reports_a_torn_tail(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``info`` on a log cut inside its last record names the torn tail and its offset."""
        make_log(log_path)
        last = frame_offsets(log_path)[-1]
        _fs.truncate_file(log_path, log_path.stat().st_size - 3)
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        assert report["state"] == {
            "status": "torn_tail",
            "offset": last,
            "reason": report["state"]["reason"],
        }


class TestVerify:
    """verify reports a clean log, a torn tail or damage with its offset, and never writes."""

    def test_verify_clean_log_exits_0(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A log written through the API verifies clean, every record counted, nothing on stderr."""
        make_log(log_path)
        run = cli(capsys, "verify", "--json", log_path)
        assert run.code == ExitCode.OK
        assert run.err == ""
        report = json.loads(run.out)
        assert (report["status"], report["offset"]) == ("clean", None)
        assert report["records"] == len(frame_offsets(log_path))

    def test_verify_damage_gives_offset_and_records_after(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """Damage in the second record: exit 1, its offset, and the count of readable records
        after."""
        make_log(log_path)
        offsets = frame_offsets(log_path)
        flip(log_path, offsets[1] + 9)
        run = cli(capsys, "verify", "--json", log_path)
        assert run.code == ExitCode.DAMAGED
        report = json.loads(run.out)
        assert (report["status"], report["offset"]) == ("damaged", offsets[1])
        assert report["records_after"] == len(offsets) - 2

    def test_verify_text_tells_torn_tail_from_damage(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """The plain report says "torn tail" for a cut last record and "damaged" for earlier
        damage."""
        make_log(log_path)
        offsets = frame_offsets(log_path)
        original = log_path.read_bytes()
        _fs.truncate_file(log_path, len(original) - 1)
        torn = cli(capsys, "verify", log_path)
        log_path.write_bytes(original)
        flip(log_path, offsets[0] + 6)
        damaged = cli(capsys, "verify", log_path)
        assert torn.code == damaged.code == ExitCode.DAMAGED
        assert f"torn tail at byte offset {offsets[-1]}" in torn.out
        assert f"damaged at byte offset {offsets[0]}" in damaged.out
        assert "torn tail" not in damaged.out

    def test_verify_torn_tail_after_one_record_says_it_is_intact(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``verify`` of one record and a torn tail says "the 1 record before it is intact"."""
        with TypedStore.open(log_path, str, User) as store:
            store["alice"] = User(name="Alice", age=30)
            store["bob"] = User(name="Bob", age=25)
        _fs.truncate_file(log_path, log_path.stat().st_size - 2)
        run = cli(capsys, "verify", log_path)
        assert run.code == ExitCode.DAMAGED
        assert "the 1 record before it is intact" in run.out

    def test_verify_never_writes(self, capsys: pytest.CaptureFixture[str], log_path: Path) -> None:
        """``verify`` of a torn log leaves its bytes as they were and makes no lock or temp file."""
        make_log(log_path)
        _fs.truncate_file(log_path, log_path.stat().st_size - 2)
        _fs.lock_path(log_path).unlink()
        before = log_path.read_bytes()
        cli(capsys, "verify", log_path)
        assert log_path.read_bytes() == before
        assert sorted(p.name for p in log_path.parent.iterdir()) == [log_path.name]


UNDECODABLE: dict[str, list[Part]] = {
    "undecodable key": [("frame", _format.insert_body(b"\xc1", user_bytes("Zed", 1)))],
    "unknown record kind": [("frame", b"\x07abc")],
    "undecodable live value": [insert("zed", b"\xc1")],
    "undecodable value, then damage": [
        insert("zed", b"\xc1"),
        ("raw", b"\x00" * 9),
        insert("amy", user_bytes("Amy", 2)),
    ],
    "two undecodable values": [insert("zed", b"\xc1"), insert("alice", b"\xc1")],
    "undecodable value made dead": [insert("zed", b"\xc1"), insert("zed", user_bytes("Zed", 3))],
}


def nested_list(depth: int) -> Any:
    """Return an empty list nested ``depth`` lists deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


class TestDump:
    """dump prints the live entries, or with --all every record, as JSON whatever they hold."""

    def test_dump_equals_live_entries_in_order(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """Each ``dump`` line parses as JSON and together they are the store's entries, in order."""
        items = make_log(log_path)
        run = cli(capsys, "dump", log_path)
        assert run.code == ExitCode.OK
        lines = [json.loads(line) for line in run.out.splitlines()]
        assert lines == [{"key": key, "value": value.model_dump()} for key, value in items]
        assert [line["key"] for line in lines] == ["alice", "erin", "dave", "bob"]

    def test_dump_all_lists_every_record(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump --all`` prints every record with its offset and kind, a batch's operations
        inside."""
        make_log(log_path)
        records = [
            json.loads(line) for line in cli(capsys, "dump", "--all", log_path).out.splitlines()
        ]
        assert [record["offset"] for record in records] == frame_offsets(log_path)
        kinds = [record["kind"] for record in records]
        assert kinds == ["insert"] * 5 + ["remove", "batch", "insert"]
        batch = records[6]["ops"]
        assert [(op["kind"], op["key"]) for op in batch] == [
            ("insert", "dave"),
            ("remove", "carol"),
            ("insert", "erin"),
        ]
        assert records[5] == {"offset": records[5]["offset"], "kind": "remove", "key": "bob"}

    def test_dump_all_shows_damaged_ranges(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump --all`` of a damaged log shows the damaged range in place and the records after
        it."""
        make_log(log_path)
        offsets = frame_offsets(log_path)
        flip(log_path, offsets[2] + 5)
        run = cli(capsys, "dump", "--all", log_path)
        records = [json.loads(line) for line in run.out.splitlines()]
        assert run.code == ExitCode.OK
        assert records[2] == {
            "offset": offsets[2],
            "kind": "damaged",
            "length": offsets[3] - offsets[2],
        }
        assert [record["offset"] for record in records] == offsets

    def test_dump_all_shows_undecodable_records(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump --all`` shows a checksum-valid record it cannot decode with its raw body."""
        make_log(log_path)
        bad = append_parts(log_path, [("frame", b"\x07abc"), insert("amy", user_bytes("A", 1))])[0]
        run = cli(capsys, "dump", "--all", log_path)
        records = {record["offset"]: record for record in map(json.loads, run.out.splitlines())}
        assert records[bad]["kind"] == "undecodable"
        assert records[bad]["body"] == {"$bytes": "B2FiYw=="}
        assert "unknown record kind 7" in records[bad]["error"]

    def test_dump_renders_what_json_cannot_hold(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """Bytes keys, int-keyed maps and NaN come out tagged as docs/CLI.md documents."""
        with TypedStore.open(log_path, bytes, dict[int, float]) as store:
            store[b"\x00\xff"] = {1: math.nan, 2: 0.5}
        line = json.loads(cli(capsys, "dump", log_path).out)
        assert line == {
            "key": {"$bytes": "AP8="},
            "value": {"$map": [[1, {"$float": "nan"}], [2, 0.5]]},
        }

    def test_dump_of_torn_log_prints_the_prefix_and_warns(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump`` of a torn log prints what a read-only open holds and notes the tail on
        stderr."""
        make_log(log_path)
        _fs.truncate_file(log_path, log_path.stat().st_size - 4)
        run = cli(capsys, "dump", log_path)
        assert run.code == ExitCode.OK
        lines = [json.loads(line) for line in run.out.splitlines()]
        expected = stored_items(log_path)
        assert lines == [{"key": key, "value": value.model_dump()} for key, value in expected]
        assert "torn tail" in run.err

    @pytest.mark.parametrize("depth", [600, 1000])
    @pytest.mark.parametrize("option", [[], ["--all"]])
    def test_dump_prints_values_nested_past_the_recursion_limit(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, depth: int, option: list[str]
    ) -> None:
        """``dump`` of a list nested as deep as the store accepts prints it, no traceback."""
        with TypedStore.open(log_path, str, Any) as store:
            store["deep"] = nested_list(depth)
        run = cli(capsys, "dump", *option, log_path)
        assert (run.code, run.err) == (ExitCode.OK, "")
        assert "[" * depth + "]" * depth in run.out

    def test_dump_and_info_read_a_store_of_deeply_nested_dicts(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A ``dict[str, Any]`` store holding 400 nested dicts dumps and reports info cleanly."""
        value: dict[str, Any] = {}
        for _ in range(400):
            value = {"inner": value}
        with TypedStore.open(log_path, str, dict[str, Any]) as store:
            store["deep"] = value
        dump = cli(capsys, "dump", log_path)
        info = cli(capsys, "info", "--json", log_path)
        assert (dump.code, dump.err, info.code, info.err) == (ExitCode.OK, "", ExitCode.OK, "")
        assert dump.out.startswith('{"key": "deep", "value": ' + '{"inner": ' * 400 + "{}")
        assert json.loads(info.out)["live_entries"] == 1


class TestRepair:
    """repair keeps what a writable open would, after copying the original aside."""

    @pytest.mark.parametrize("mode", ["truncate", "skip"])
    def test_repair_matches_the_library_recovery_mode(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, mode: str
    ) -> None:
        """``repair --mode M`` leaves the entries a writable open with ``recovery=M`` keeps."""
        make_log(log_path)
        flip(log_path, frame_offsets(log_path)[3] + 6)
        twin = log_path.with_name("twin.log")
        twin.write_bytes(log_path.read_bytes())
        expected = stored_items(twin, StoreConfig(recovery=mode))  # type: ignore[arg-type]  # a RecoveryMode
        run = cli(capsys, "repair", "--mode", mode, log_path)
        assert run.code == ExitCode.OK
        assert stored_items(log_path) == expected
        assert open_outcome(log_path) == ("clean", None)

    def test_repair_copies_the_original_aside_first(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``repair`` prints where it copied the original, and the copy holds the original bytes."""
        make_log(log_path)
        flip(log_path, frame_offsets(log_path)[2] + 6)
        original = log_path.read_bytes()
        run = cli(capsys, "repair", "--mode", "skip", log_path)
        backups = list(log_path.parent.glob(log_path.name + ".damaged-*"))
        assert len(backups) == 1
        assert f"copied the original to {backups[0]}" in run.out
        assert backups[0].read_bytes() == original

    def test_repair_prints_what_it_dropped(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``repair --mode truncate`` names the dropped byte range and the readable records lost."""
        make_log(log_path)
        offsets = frame_offsets(log_path)
        size = log_path.stat().st_size
        flip(log_path, offsets[4] + 6)
        run = cli(capsys, "repair", "--mode", "truncate", log_path)
        assert f"dropped bytes {offsets[4]}-{size} " in run.out
        assert f"dropped {len(offsets) - 5} readable records" in run.out

    def test_repair_json_reports_the_backup_and_what_it_dropped(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``repair --json`` prints one object naming the copy and the dropped byte ranges."""
        make_log(log_path)
        offset = frame_offsets(log_path)[1]
        flip(log_path, offset + 4)
        run = cli(capsys, "repair", "--mode", "skip", "--json", log_path)
        report = json.loads(run.out)
        assert run.code == ExitCode.OK
        assert report["status"] == "repaired"
        assert Path(report["backup"]).read_bytes() != log_path.read_bytes()
        assert report["dropped"][0][0] == offset

    def test_repair_of_clean_log_changes_nothing(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``repair`` of a clean log says so, writes nothing and makes no copy."""
        make_log(log_path)
        before = log_path.read_bytes()
        run = cli(capsys, "repair", "--mode", "skip", log_path)
        assert run.code == ExitCode.OK
        assert "nothing changed" in run.out
        assert log_path.read_bytes() == before
        assert not list(log_path.parent.glob("*.damaged-*"))

    def test_repair_cuts_a_torn_tail(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``repair`` of a torn log cuts it at the last complete record, as a writable open
        would."""
        make_log(log_path)
        last = frame_offsets(log_path)[-1]
        _fs.truncate_file(log_path, log_path.stat().st_size - 2)
        assert cli(capsys, "repair", "--mode", "truncate", log_path).code == ExitCode.OK
        assert log_path.stat().st_size == last
        assert open_outcome(log_path) == ("clean", None)

    def test_repair_refuses_a_checksum_valid_undecodable_record(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A record whose checksum holds is never dropped: exit 1, one line, nothing changed."""
        make_log(log_path)
        bad = append_parts(log_path, [("frame", b"\x07abc"), insert("amy", user_bytes("A", 1))])[0]
        before = log_path.read_bytes()
        run = cli(capsys, "repair", "--mode", "skip", log_path)
        assert_one_line_error(run, ExitCode.DAMAGED)
        assert f"offset {bad} " in run.err
        assert log_path.read_bytes() == before
        assert not list(log_path.parent.glob("*.damaged-*"))

    def test_repair_of_locked_log_exits_2(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``repair`` while a store holds the writer lock exits 2 with one line."""
        make_log(log_path)
        with TypedStore.open(log_path, str, User):
            run = cli(capsys, "repair", "--mode", "skip", log_path)
        assert_one_line_error(run, ExitCode.LOCKED)


def _args(command: str) -> list[str]:
    return ["repair", "--mode", "skip"] if command == "repair" else [command]


class TestCompact:
    """compact rewrites a log to its live entries, and refuses damage, a held lock or a second
    name."""

    def test_compact_keeps_entries_and_header(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``compact`` leaves one record per live entry, the same entries and the same header."""
        items = make_log(log_path)
        before = log_path.read_bytes()
        run = cli(capsys, "compact", log_path)
        assert run.code == ExitCode.OK
        after = log_path.read_bytes()
        assert stored_items(log_path) == items
        assert len(frame_offsets(log_path)) == len(items)
        assert _format.decode_header(after) == _format.decode_header(before)
        assert len(after) < len(before)

    def test_compact_json_reports_the_rewrite(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``compact --json`` prints one object with the counts and sizes before and after."""
        items = make_log(log_path)
        size = log_path.stat().st_size
        run = cli(capsys, "compact", "--json", log_path)
        report = json.loads(run.out)
        assert run.code == ExitCode.OK
        assert (report["status"], report["live_entries"]) == ("compacted", len(items))
        assert (report["size_before"], report["size"]) == (size, log_path.stat().st_size)

    def test_compact_removes_leftover_temp_file(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A ``.compact.tmp`` left by an interrupted compaction is removed, and said so on
        stderr."""
        items = make_log(log_path)
        _fs.temp_path(log_path).write_bytes(b"half a compaction")
        run = cli(capsys, "compact", log_path)
        assert run.code == ExitCode.OK
        assert not _fs.temp_path(log_path).exists()
        assert "interrupted compaction" in run.err
        assert stored_items(log_path) == items

    def test_compact_drops_a_torn_tail(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``compact`` of a torn log keeps what a read-only open holds and verifies clean after."""
        make_log(log_path)
        _fs.truncate_file(log_path, log_path.stat().st_size - 1)
        expected = stored_items(log_path)
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        assert stored_items(log_path) == expected
        assert open_outcome(log_path) == ("clean", None)

    def test_compact_refuses_a_damaged_log(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``compact`` of a log the library refuses exits 1 on one line and changes nothing."""
        make_log(log_path)
        flip(log_path, frame_offsets(log_path)[1] + 7)
        before = log_path.read_bytes()
        run = cli(capsys, "compact", log_path)
        assert_one_line_error(run, ExitCode.DAMAGED)
        assert "typedstore repair" in run.err
        assert log_path.read_bytes() == before

    def test_compact_of_locked_log_exits_2(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``compact`` while a store holds the writer lock exits 2 with one line, log unchanged."""
        make_log(log_path)
        before = log_path.read_bytes()
        with TypedStore.open(log_path, str, User):
            run = cli(capsys, "compact", log_path)
        assert_one_line_error(run, ExitCode.LOCKED)
        assert "writer lock" in run.err
        assert log_path.read_bytes() == before

    def test_compact_through_a_symlink_respects_the_writers_lock(
        self, log_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """compact given a link to a log a writer holds exits 2 and leaves the link in place."""
        link = log_path.with_name("link.log")
        link.symlink_to(log_path.name)
        with TypedStore.open(log_path, str, int) as store:
            store["a"] = 1
            run = cli(capsys, "compact", link)
            assert run.code == ExitCode.LOCKED
            assert link.is_symlink()
            store["b"] = 2
        with TypedStore.open(link, str, int, readonly=True) as store:
            assert dict(store) == {"a": 1, "b": 2}

    @pytest.mark.parametrize("command", ["compact", "repair"])
    def test_rewrite_of_hard_linked_log_exits_2(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, command: str
    ) -> None:
        """``compact`` and ``repair`` refuse a log with two names, as a writable open does: exit
        2."""
        make_log(log_path)
        os.link(log_path, log_path.with_name("alias.log"))
        content = log_path.read_bytes()
        run = cli(capsys, *_args(command), log_path)
        assert_one_line_error(run, ExitCode.LOCKED)
        assert "2 hard links" in run.err
        assert log_path.read_bytes() == content


class TestErrorExitCodes:
    """Every error is one line on stderr with the exit code docs/CLI.md gives it."""

    @pytest.mark.parametrize("command", COMMANDS)
    def test_missing_file_exits_3(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, command: str
    ) -> None:
        """Every subcommand on a missing file: one line, exit 3, and no file created."""
        run = cli(capsys, *_args(command), log_path)
        assert_one_line_error(run, ExitCode.FILE_ERROR)
        assert "no such file" in run.err
        assert list(log_path.parent.iterdir()) == []

    @pytest.mark.parametrize("command", COMMANDS)
    def test_foreign_file_exits_4(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, command: str
    ) -> None:
        """Every subcommand on a file that is not a log: one line, exit 4, the file untouched."""
        log_path.write_text("name,age\nalice,30\n")
        run = cli(capsys, *_args(command), log_path)
        assert_one_line_error(run, ExitCode.NOT_A_STORE)
        assert "not a typedstore log" in run.err
        assert [p.name for p in log_path.parent.iterdir()] == [log_path.name]

    @pytest.mark.parametrize("command", COMMANDS)
    def test_permission_denied_exits_3(
        self,
        capsys: pytest.CaptureFixture[str],
        log_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        command: str,
    ) -> None:
        """Every subcommand on a log it may not read: one line naming the cause, exit 3."""
        make_log(log_path)

        def refuse(path: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(_fs, "read_file", refuse)
        run = cli(capsys, *_args(command), log_path)
        assert_one_line_error(run, ExitCode.FILE_ERROR)
        assert f"{log_path}: permission denied" in run.err

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
    def test_unreadable_file_exits_3(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``verify`` of a log with mode 000 reports permission denied on one line, exit 3."""
        make_log(log_path)
        log_path.chmod(0)
        run = cli(capsys, "verify", log_path)
        assert_one_line_error(run, ExitCode.FILE_ERROR)
        assert "permission denied" in run.err

    @pytest.mark.parametrize("command", ["dump", "compact"])
    def test_damaged_log_exits_1(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, command: str
    ) -> None:
        """``dump`` and ``compact`` refuse what the library refuses: one line with the offset."""
        make_log(log_path)
        offset = frame_offsets(log_path)[0]
        flip(log_path, offset + 4)
        run = cli(capsys, command, log_path)
        assert_one_line_error(run, ExitCode.DAMAGED)
        assert f"byte offset {offset} " in run.err

    def test_damaged_header_is_reported_at_offset_0(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A flipped header byte after the magic is damage at offset 0, as the library says."""
        make_log(log_path)
        flip(log_path, 20)
        assert verify_outcome(capsys, log_path) == open_outcome(log_path) == ("damaged", 0)
        assert_one_line_error(cli(capsys, "dump", log_path), ExitCode.DAMAGED)

    @pytest.mark.parametrize(("kind", "command"), SPECIAL_CASES)
    def test_path_that_is_not_a_regular_file_exits_4(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str, command: str
    ) -> None:
        """Every subcommand on a FIFO, a device, a link to one or a folder: exit 4, node
        untouched."""
        path = make_special(tmp_path, kind)
        before = node_state(path)
        argv: list[str | Path] = [*_args(command), path]
        run = cli_process(*argv) if kind in MAY_HANG else cli(capsys, *argv)
        assert_one_line_error(run, ExitCode.NOT_A_STORE)
        assert "not a regular file" in run.err
        assert node_state(path) == before
        assert [entry.name for entry in tmp_path.iterdir()] == [path.name]

    def test_unexpected_error_is_one_line_with_exit_70(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An exception the command line does not expect is one error line, exit 70, no
        traceback."""
        make_log(log_path)

        def broken(*args: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(_inspect, "scan_log", broken)
        run = cli(capsys, "info", log_path)
        assert_one_line_error(run, ExitCode.INTERNAL)
        assert "RuntimeError: boom" in run.err


def json_error(run: Run) -> dict[str, object]:
    """Return the one JSON object a failed ``--json`` run printed, checking nothing else was."""
    assert run.err == "", run.err
    error: dict[str, object] = json.loads(run.out)
    assert sorted(error) == ["error", "message", "offset", "path"]
    return error


class TestJsonErrors:
    """With --json, an error is one JSON object on stdout naming its kind, with the exit status."""

    @pytest.mark.parametrize("command", COMMANDS)
    def test_json_error_is_one_object_on_stdout(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, command: str
    ) -> None:
        """With ``--json``, a missing file is one JSON object on stdout, with its exit status."""
        run = cli(capsys, *_args(command), "--json", log_path)
        assert run.code == ExitCode.FILE_ERROR
        error = json_error(run)
        assert (error["error"], error["offset"], error["path"]) == (
            "file_error",
            None,
            str(log_path),
        )
        assert "no such file" in str(error["message"])

    @pytest.mark.parametrize("command", ["dump", "compact", "repair"])
    def test_json_error_of_damaged_log_gives_its_offset(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, command: str
    ) -> None:
        """A command refusing damage reports it in JSON with the damage's byte offset, exit 1."""
        make_log(log_path)
        if command == "repair":  # the damage repair refuses: a checksum-valid undecodable record
            parts: list[Part] = [("frame", b"\x07abc"), insert("amy", user_bytes("A", 1))]
            offset = append_parts(log_path, parts)[0]
        else:
            offset = frame_offsets(log_path)[0]
            flip(log_path, offset + 4)
        run = cli(capsys, *_args(command), "--json", log_path)
        assert run.code == ExitCode.DAMAGED
        error = json_error(run)
        assert (error["error"], error["offset"]) == ("damaged", offset)

    def test_json_error_names_a_locked_log(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``compact --json`` of a log a store holds reports kind ``locked``, exit 2."""
        make_log(log_path)
        with TypedStore.open(log_path, str, User):
            run = cli(capsys, "compact", "--json", log_path)
        assert run.code == ExitCode.LOCKED
        assert json_error(run)["error"] == "locked"

    def test_json_error_names_a_foreign_file(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``info --json`` of a file that is not a log reports kind ``not_a_store``, exit 4."""
        log_path.write_text("name,age\n")
        run = cli(capsys, "info", "--json", log_path)
        assert run.code == ExitCode.NOT_A_STORE
        assert json_error(run)["error"] == "not_a_store"


WRITER = """
import sys
from tests.dblogs import DatabaseLog, collection
from tests.models import User
from typedstore import TypedStore

store = TypedStore.open(sys.argv[1], str, User)
for number in range(20):
    store[f"user{number}"] = User(name=f"User {number}", age=number)
store.remove("user3")
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""


class TestRealProcesses:
    """python -m typedstore behaves as the in-process call, beside a writer process too."""

    def test_module_runs_as_a_process(self, log_path: Path) -> None:
        """``python -m typedstore dump`` prints the entries, like the in-process call."""
        items = make_log(log_path)
        run = cli_process("dump", log_path)
        assert run.code == ExitCode.OK
        assert [json.loads(line)["key"] for line in run.out.splitlines()] == [k for k, _ in items]

    def test_process_error_is_one_line_without_traceback(self, tmp_path: Path) -> None:
        """``python -m typedstore`` on a missing log: one error line, no traceback, exit 3."""
        assert_one_line_error(cli_process("info", tmp_path / "nope.log"), ExitCode.FILE_ERROR)

    def test_process_locked_compact_exits_2(self, log_path: Path) -> None:
        """``python -m typedstore compact`` of a log this process holds open exits 2."""
        make_log(log_path)
        with TypedStore.open(log_path, str, User):
            run = cli_process("compact", log_path)
        assert_one_line_error(run, ExitCode.LOCKED)

    @pytest.mark.slow
    def test_verify_and_dump_beside_a_writer_process(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """Beside a child process holding the log to write, verify and dump read it; compact
        exits 2."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        ) as writer:
            assert writer.stdout is not None
            assert writer.stdin is not None
            assert writer.stdout.readline() == "ready\n"
            verify = cli(capsys, "verify", log_path)
            dump = cli(capsys, "dump", log_path)
            verify_child = cli_process("verify", "--json", log_path)
            compact = cli(capsys, "compact", log_path)
            writer.stdin.write("\n")
            writer.stdin.flush()
            assert writer.wait(timeout=30) == 0
        assert verify.code == ExitCode.OK
        assert json.loads(verify_child.out)["status"] == "clean"
        keys = [json.loads(line)["key"] for line in dump.out.splitlines()]
        assert keys == [f"user{number}" for number in range(20) if number != 3]
        assert compact.code == ExitCode.LOCKED


class TestJsonRendering:
    """Values JSON cannot hold are tagged, and data of any depth prints as json.dumps would."""

    def test_to_json_tags_values_json_cannot_hold(self) -> None:
        """Bytes, non-finite floats, non-string keys, tag look-alikes and ext types are tagged."""
        assert to_json(b"hi") == {"$bytes": "aGk="}
        assert to_json([math.inf, -math.inf]) == [{"$float": "inf"}, {"$float": "-inf"}]
        assert to_json({(1, 2): None}) == {"$map": [[[1, 2], None]]}
        assert to_json({"$bytes": "x"}) == {"$map": [["$bytes", "x"]]}
        assert to_json({"$bytes": 1, "a": 2}) == {"$bytes": 1, "a": 2}
        assert to_json(msgpack.ExtType(5, b"x")) == {
            "$ext": {"code": 5, "data": {"$bytes": "eA=="}}
        }
        assert to_json(msgpack.Timestamp(1, 2)) == {"$timestamp": {"seconds": 1, "nanoseconds": 2}}

    def test_to_json_and_dumps_handle_any_depth(self) -> None:
        """Data nested 5,000 deep converts and prints as JSON."""
        assert dumps(to_json(nested_list(5000))) == "[" * 5000 + "]" * 5000

    def test_deep_json_text_is_what_json_dumps_writes(self) -> None:
        """The iterative writer used past the recursion limit writes the text ``json.dumps``
        does."""
        shallow: dict[str, Any] = {"a": [1, {"b": None, "c": [2.5, "x", {}]}], "d": []}
        assert "".join(_json_parts(shallow, 2)) == json.dumps(shallow, indent=2)
        assert "".join(_json_parts(shallow, None)) == json.dumps(shallow)


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class TestProgress:
    """Progress shows on a terminal only after a second, and erases itself."""

    def test_progress_shows_only_after_a_second_on_a_terminal(self) -> None:
        """Progress stays quiet for the first second, then shows a percentage, then erases
        itself."""
        now = [0.0]
        stream = _Terminal()
        progress = Progress("verify x.log", stream, clock=lambda: now[0])
        now[0] = 0.9
        progress(10, 100)
        assert stream.getvalue() == ""
        now[0] = 1.2
        progress(50, 100)
        assert "verify x.log:  50% of 100 bytes" in stream.getvalue()
        progress.finish()
        assert stream.getvalue().endswith("\r")

    def test_progress_is_silent_off_a_terminal(self) -> None:
        """Progress writes nothing when the stream is not a terminal, however long the run."""
        now = [0.0]
        stream = io.StringIO()
        progress = Progress("verify x.log", stream, clock=lambda: now[0])
        now[0] = 60.0
        progress(50, 100)
        progress.finish()
        assert stream.getvalue() == ""


class UserV2(BaseModel):
    """Version 2 of ``tests.models.User``: ``name`` is renamed to ``full_name``."""

    full_name: str
    age: int
    tags: list[str] = []


def rename_name(data: dict[str, object]) -> dict[str, object]:
    """Migration 1 -> 2 of the user model."""
    data["full_name"] = data.pop("name")
    return data


def open_users_v2(path: Path, *, readonly: bool = False) -> TypedStore[str, UserV2]:
    """Open ``path`` as version 2 of the application does."""
    return TypedStore.open(
        path, str, UserV2, readonly=readonly, version=2, migrations={1: rename_name}
    )


def make_two_version_log(path: Path) -> list[tuple[str, UserV2]]:
    """Write users at version 1, then change some at version 2; return the entries at v2.

    Live entries alternate between versions: ``alice`` (v2), ``bob`` (v1), ``carol`` (v2).
    """
    with TypedStore.open(path, str, User) as users:
        users["alice"] = User(name="Alice", age=30)
        users["bob"] = User(name="Bob", age=25, tags=["x"])
    with open_users_v2(path) as users:
        users.modify("alice", lambda user: user.model_copy(update={"age": 31}))
        users["carol"] = UserV2(full_name="Carol", age=41)
        return list(users.items())


class TestSchemaRecords:
    """dump, info and compact show and keep the schema version each record was written at."""

    def test_dump_all_shows_schema_records(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump --all`` prints a schema record as kind "schema" with its version and types."""
        make_two_version_log(log_path)
        records = [
            json.loads(line) for line in cli(capsys, "dump", "--all", log_path).out.splitlines()
        ]
        assert [record["kind"] for record in records] == [
            "insert",
            "insert",
            "schema",
            "insert",
            "insert",
        ]
        schema = records[2]
        assert schema["offset"] == frame_offsets(log_path)[2]
        assert schema["metadata"]["version"] == 2
        assert schema["metadata"]["value_type"] == "tests.test_cli.UserV2"

    def test_dump_of_two_version_log_shows_values_as_stored(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump`` prints each live value as it was written, old fields for v1 values."""
        make_two_version_log(log_path)
        lines = [json.loads(line) for line in cli(capsys, "dump", log_path).out.splitlines()]
        assert lines == [
            {"key": "alice", "value": {"full_name": "Alice", "age": 31, "tags": []}},
            {"key": "bob", "value": {"name": "Bob", "age": 25, "tags": ["x"]}},
            {"key": "carol", "value": {"full_name": "Carol", "age": 41, "tags": []}},
        ]

    def test_info_json_lists_the_schema_versions(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``info --json`` lists the schema versions the log's records were written at."""
        make_two_version_log(log_path)
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        assert report["schema_versions"] == [1, 2]
        assert report["live_entries"] == 3

    def test_info_text_shows_the_schema_versions(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """Plain ``info`` prints the versions on a labelled line, label and value apart."""
        make_two_version_log(log_path)
        lines = cli(capsys, "info", log_path).out.splitlines()
        shown = [line for line in lines if line.startswith("schema versions:")]
        assert len(shown) == 1
        assert re.fullmatch(r"schema versions:\s+1, 2", shown[0]), shown[0]

    def test_offline_compact_keeps_each_values_schema_version(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``compact`` of a two-version log keeps each value's version: reopening migrates alike."""
        expected = make_two_version_log(log_path)
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        with open_users_v2(log_path) as users:
            assert list(users.items()) == expected
        kinds = [
            record["kind"]
            for record in map(json.loads, cli(capsys, "dump", "--all", log_path).out.splitlines())
        ]
        assert kinds.count("insert") == 3

    def test_offline_compact_writes_the_current_schema_in_the_header(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``compact`` of a two-version log writes the last schema, version 2, in the header."""
        make_two_version_log(log_path)
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        meta, _ = _format.decode_header(log_path.read_bytes())
        assert msgpack.unpackb(meta)["version"] == 2

    def test_offline_compact_then_store_compact_makes_one_version(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """After the offline compaction, the store's own compact() leaves a single-version log."""
        expected = make_two_version_log(log_path)
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        with open_users_v2(log_path) as users:
            users.compact()
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        assert report["schema_versions"] == [2]
        with TypedStore.open(log_path, str, UserV2, version=2) as users:
            assert list(users.items()) == expected


def _log_with_header_meta(path: Path, meta: bytes) -> None:
    path.write_bytes(_format.encode_header(meta))


class TestVerifyAgreesWithOpen:
    """verify finds the damage a read-only open finds, at the same offset."""

    def test_verify_agrees_with_open_on_sampled_cuts_and_flips(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, rng: random.Random
    ) -> None:
        """For 40 random cuts and 40 random byte flips, verify finds what a read-only open finds."""
        make_log(log_path)
        original = log_path.read_bytes()
        for offset in rng.sample(range(len(original) + 1), 40):
            log_path.write_bytes(original[:offset])
            assert verify_outcome(capsys, log_path) == open_outcome(log_path), f"cut at {offset}"
        for offset in rng.sample(range(len(original)), 40):
            log_path.write_bytes(original)
            flip(log_path, offset, rng.randrange(1, 256))
            assert verify_outcome(capsys, log_path) == open_outcome(log_path), f"flip at {offset}"

    @pytest.mark.slow
    def test_verify_agrees_with_open_on_every_cut(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """For the log cut at every byte offset, verify finds what a read-only open finds."""
        make_log(log_path)
        original = log_path.read_bytes()
        seen = set()
        for offset in range(len(original) + 1):
            log_path.write_bytes(original[:offset])
            outcome = open_outcome(log_path)
            assert verify_outcome(capsys, log_path) == outcome, f"cut at {offset}"
            seen.add(outcome[0])
        assert seen == {"clean", "torn_tail", "damaged", "not_a_store"}

    @pytest.mark.slow
    def test_verify_agrees_with_open_on_every_byte_flip(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, rng: random.Random
    ) -> None:
        """For one byte flipped at every offset, verify finds what a read-only open finds."""
        make_log(log_path)
        original = log_path.read_bytes()
        seen = set()
        for offset in range(len(original)):
            log_path.write_bytes(original)
            flip(log_path, offset, rng.randrange(1, 256))
            outcome = open_outcome(log_path)
            assert verify_outcome(capsys, log_path) == outcome, f"flip at {offset}"
            seen.add(outcome[0])
        assert {"damaged", "torn_tail", "not_a_store"} <= seen

    @pytest.mark.parametrize("parts", UNDECODABLE.values(), ids=list(UNDECODABLE))
    def test_verify_agrees_with_open_on_undecodable_records(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, parts: list[Part]
    ) -> None:
        """Checksum-valid records that cannot be decoded: verify finds what a read-only open
        finds."""
        make_log(log_path)
        append_parts(log_path, parts)
        assert verify_outcome(capsys, log_path) == open_outcome(log_path)

    def test_open_refuses_undecodable_dead_value(self, log_path: Path) -> None:
        """A checksum-valid record that cannot be decoded is damage, even if overwritten
        (README)."""
        make_log(log_path)
        bad = append_parts(log_path, UNDECODABLE["undecodable value made dead"])[0]
        with pytest.raises(CorruptLogError, match=f"offset {bad} "):
            TypedStore.open(log_path, str, User, readonly=True).close()

    def test_open_reports_first_undecodable_value_in_file_order(self, log_path: Path) -> None:
        """CorruptLogError carries the offset of the first undecodable record in the file
        (README)."""
        make_log(log_path)
        bad = append_parts(log_path, UNDECODABLE["two undecodable values"])[0]
        with pytest.raises(CorruptLogError, match=f"offset {bad} "):
            TypedStore.open(log_path, str, User, readonly=True).close()

    @pytest.mark.parametrize(
        "meta",
        [msgpack.packb([1, 2]), msgpack.packb({"version": 0}), msgpack.packb({"version": "two"})],
        ids=["not-a-map", "version-0", "version-not-int"],
    )
    def test_verify_refuses_a_header_open_refuses(
        self, log_path: Path, capsys: pytest.CaptureFixture[str], meta: bytes
    ) -> None:
        """verify reports damage at offset 0 for checksum-valid header metadata open refuses."""
        _log_with_header_meta(log_path, meta)
        with pytest.raises(CorruptLogError, match="byte offset 0 "):
            TypedStore.open(log_path, str, int, readonly=True)
        run = cli(capsys, "verify", "--json", log_path)
        assert run.code == ExitCode.DAMAGED
        assert json.loads(run.out)["offset"] == 0

    def test_verify_refuses_a_schema_record_open_refuses(
        self, log_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """verify reports a checksum-valid schema record with a bad version where open does."""
        with TypedStore.open(log_path, str, int) as store:
            store["a"] = 1
        offset = log_path.stat().st_size
        body = _format.schema_body(msgpack.packb({"version": "two"}), 1)
        with log_path.open("ab") as file:
            file.write(_format.encode_frame(body, offset))
        with pytest.raises(CorruptLogError, match=f"byte offset {offset} "):
            TypedStore.open(log_path, str, int, readonly=True)
        run = cli(capsys, "verify", "--json", log_path)
        assert run.code == ExitCode.DAMAGED
        assert json.loads(run.out)["offset"] == offset


class TestEqualKeys:
    """Keys the store holds equal are one entry to the command line too."""

    def test_equal_keys_of_other_bytes_are_one_entry_to_the_cli(
        self, log_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Decimal("1.0") and Decimal("1.00") are one key to the store, and so to dump and info."""
        with TypedStore.open(log_path, Decimal, int) as store:
            store[Decimal("1.0")] = 1
            store[Decimal("1.00")] = 2
            assert dict(store) == {Decimal("1.0"): 2}
        lines = cli(capsys, "dump", log_path).out.splitlines()
        assert [json.loads(line) for line in lines] == [{"key": "1.0", "value": 2}]

    def test_removal_through_an_equal_key_is_seen_by_the_cli(
        self, log_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A key removed through an equal key of other bytes (another zone) stays removed
        offline."""
        utc = datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.UTC)
        same_instant = utc.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
        with TypedStore.open(log_path, datetime.datetime, int) as store:
            store[utc] = 1
            store[utc + datetime.timedelta(days=1)] = 2
            assert store.remove(same_instant) == 1
        assert len(cli(capsys, "dump", log_path).out.splitlines()) == 1
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        with TypedStore.open(log_path, datetime.datetime, int) as store:
            assert dict(store) == {utc + datetime.timedelta(days=1): 2}


def cli_to_closed_stdout(*argv: str | Path) -> Run:
    """Run ``python -m typedstore argv`` with a stdout whose reader has gone away."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "typedstore", *map(str, argv)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
            preexec_fn=limit_memory,
        )
    finally:
        os.close(write_end)
    return Run(done.returncode, "", done.stderr)


class TestClosedStdout:
    """A reader that went away never turns a failure into success, nor prints a traceback."""

    def test_json_error_to_a_closed_stdout_prints_no_traceback(self, tmp_path: Path) -> None:
        """`info --json` of a missing log, stdout closed, exits 3 without a traceback."""
        done = cli_to_closed_stdout("info", "--json", tmp_path / "missing.log")
        assert "Traceback" not in done.err
        assert done.code == 3

    def test_verify_of_a_damaged_log_to_a_closed_stdout_does_not_succeed(
        self, tmp_path: Path
    ) -> None:
        """`verify --json` of a damaged log does not exit 0 because stdout was closed."""
        path = tmp_path / "damaged.log"
        with TypedStore.open(path, str, int) as store:
            for i in range(20):
                store[f"k{i}"] = i
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        done = cli_to_closed_stdout("verify", "--json", path)
        assert done.code != 0

    @pytest.mark.parametrize(
        "command",
        [
            ["dump"],
            pytest.param(["verify"], marks=pytest.mark.slow),  # the quick run tries dump's
            pytest.param(["info", "--json"], marks=pytest.mark.slow),
        ],
    )
    def test_success_to_a_closed_stdout_exits_141_quietly(
        self, log_path: Path, command: list[str]
    ) -> None:
        """A command that succeeds but whose reader went away exits 141 and prints nothing."""
        make_log(log_path)
        run = cli_to_closed_stdout(*command, log_path)
        assert (run.code, run.err) == (ExitCode.BROKEN_PIPE, "")


# -- databases: several collections in one log ------------------------------------------------


def shop_log(path: Path) -> DatabaseLog:
    """Write a two-collection log: users (id 0, bare records) and orders (id 1), a batch across.

    Live: users ``ada`` = 30 and ``cy`` = 7, orders ``1`` = True; ``bob`` was removed.
    """
    log = DatabaseLog.of(collection("users", 0, str, int), collection("orders", 1, int, bool))
    log.insert("users", "ada", 0)
    log.insert("users", "bob", 5)
    log.insert("orders", 1, False)
    log.batch(log.op("orders", 1, True), log.op("users", "ada", 30))
    log.remove("users", "bob")
    log.insert("users", "cy", 7)
    log.save(path)
    return log


def dumped(run: Run) -> list[dict[str, Any]]:
    """Return the JSON lines of a ``dump`` run, after checking it succeeded."""
    assert run.code == ExitCode.OK, run
    return [json.loads(line) for line in run.out.splitlines()]


def contents_of(path: Path) -> _inspect.Contents:
    """Return what the log at ``path`` replays to without models."""
    return _inspect.read_contents(_inspect.scan_log(path, path.read_bytes()))


def entries_of(path: Path) -> list[tuple[str, bytes, bytes, dict[str, object]]]:
    """Return each live entry as its collection's name, key and value bytes, and schema keys."""
    contents = contents_of(path)
    names = {meta.id: meta.name for meta in contents.catalog.collections}
    return [
        (names[entry.collection], entry.key, entry.value, entry.schema)
        for entry in contents.entries.values()
    ]


def mixed_log(path: Path) -> DatabaseLog:
    """Write a log whose users were written under two schemas, with an undeclared-to-be
    collection ``notes`` holding values of any shape."""
    log = DatabaseLog.of(
        collection("users", 0, str, int),
        collection("notes", 1, str, object),
        collection("orders", 2, int, bool),
    )
    log.insert("users", "ada", 1)
    log.insert("notes", "n1", {"text": "hello", "tags": [1, 2.5, None], "raw": b"\x00\xff"})
    log.insert("users", "bob", 2)
    log.retype("users", str, float, 2)
    log.insert("users", "ada", 1.5)
    log.insert("orders", 7, True)
    log.insert("notes", "n2", [[], {}])
    log.save(path)
    return log


class TestCollections:
    """info, dump, verify, compact and repair see every collection of a database's log."""

    def test_info_json_lists_each_collection(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``info --json`` gives each collection's name, id, operations, live entries, types and
        version."""
        shop_log(log_path)
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        users, orders = report["collections"]
        assert users == {
            "name": "users",
            "id": 0,
            "operations": 5,
            "live_entries": 2,
            "key_type": "str",
            "value_type": "int",
            "version": 1,
            "schema_versions": [1],
            "fingerprint": users["fingerprint"],
        }
        assert (orders["name"], orders["id"], orders["operations"]) == ("orders", 1, 2)
        assert (orders["live_entries"], orders["key_type"], orders["value_type"]) == (
            1,
            "int",
            "bool",
        )
        assert (report["live_entries"], report["operations"], report["records"]) == (3, 7, 6)

    def test_info_text_prints_one_line_per_collection(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """Plain ``info`` counts the collections and prints each on one labelled line."""
        shop_log(log_path)
        lines = cli(capsys, "info", log_path).out.splitlines()
        assert "collections:    2" in lines
        assert (
            "collection:     users (id 0): 2 live entries, 5 operations; key str, value int; "
            "schema version 1"
        ) in lines
        assert (
            "collection:     orders (id 1): 1 live entry, 2 operations; key int, value bool; "
            "schema version 1"
        ) in lines
        assert not any(line.startswith("key type:") for line in lines)

    def test_info_of_a_store_log_shows_its_one_collection(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A TypedStore's log keeps its report and lists one collection, "default" with id 0."""
        make_log(log_path)
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        (only,) = report["collections"]
        assert (only["name"], only["id"], only["live_entries"]) == ("default", 0, 4)
        assert (only["operations"], only["value_type"]) == (10, "tests.models.User")
        assert report["metadata"]["value_type"] == "tests.models.User"
        text = cli(capsys, "info", log_path).out.splitlines()
        assert "value type:     tests.models.User" in text
        assert "collections:    1" in text

    def test_dump_names_each_entrys_collection(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump`` of a database's log prints every collection's entries, each naming its own."""
        shop_log(log_path)
        assert dumped(cli(capsys, "dump", log_path)) == [
            {"collection": "users", "key": "ada", "value": 30},
            {"collection": "orders", "key": 1, "value": True},
            {"collection": "users", "key": "cy", "value": 7},
        ]

    def test_dump_of_one_collection(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump --collection NAME`` prints that collection's live entries only, in its order."""
        shop_log(log_path)
        assert dumped(cli(capsys, "dump", "--collection", "users", log_path)) == [
            {"key": "ada", "value": 30},
            {"key": "cy", "value": 7},
        ]
        assert dumped(cli(capsys, "dump", "--collection", "orders", log_path)) == [
            {"key": 1, "value": True}
        ]

    def test_dump_collection_of_a_store_log_is_default(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A TypedStore's log has one collection, "default", whose dump is the plain dump."""
        make_log(log_path)
        plain = cli(capsys, "dump", log_path)
        assert cli(capsys, "dump", "--collection", "default", log_path) == plain

    def test_dump_all_names_each_operations_collection(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump --all`` of a database's log names the collection of each operation."""
        shop_log(log_path)
        records = dumped(cli(capsys, "dump", "--all", log_path))
        assert [record.get("collection") for record in records] == [
            "users",
            "users",
            "orders",
            None,
            "users",
            "users",
        ]
        assert [op["collection"] for op in records[3]["ops"]] == ["orders", "users"]

    @pytest.mark.parametrize("command", ["dump", "verify"])
    def test_unknown_collection_is_a_usage_error_listing_the_names(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, command: str
    ) -> None:
        """An unknown ``--collection`` name exits 64 with one line listing the log's names."""
        shop_log(log_path)
        run = cli(capsys, command, "--collection", "payments", log_path)
        assert_one_line_error(run, ExitCode.USAGE)
        assert "no collection named 'payments'" in run.err
        assert "'users', 'orders'" in run.err
        assert run.out == ""

    def test_dump_all_and_collection_are_exclusive(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``dump --all --collection NAME`` is refused as a usage error: --all is the whole log."""
        shop_log(log_path)
        run = cli(capsys, "dump", "--all", "--collection", "users", log_path)
        assert run.code == ExitCode.USAGE
        assert "not allowed with argument" in run.err

    def test_verify_checks_a_database_log(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``verify`` of a clean database's log without ``--collection`` exits 0 as before."""
        shop_log(log_path)
        run = cli(capsys, "verify", "--json", log_path)
        report = json.loads(run.out)
        assert (run.code, report["status"], report["records"]) == (ExitCode.OK, "clean", 6)
        assert "collection" not in report

    def test_verify_collection_reports_its_decoded_entries(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``verify --collection NAME`` checks the log and says how many live entries it decoded."""
        shop_log(log_path)
        run = cli(capsys, "verify", "--collection", "users", log_path)
        assert run.code == ExitCode.OK
        assert run.out.rstrip().endswith("; collection users: 2 live entries decoded")
        report = json.loads(cli(capsys, "verify", "--json", "--collection", "orders", log_path).out)
        assert report["collection"] == {"name": "orders", "id": 1, "live_entries": 1}

    def test_verify_collection_still_reports_damage(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``verify --collection NAME`` of a damaged log exits 1 with the damage's offset."""
        shop_log(log_path)
        offsets = frame_offsets(log_path)
        flip(log_path, offsets[1] + 13)
        run = cli(capsys, "verify", "--json", "--collection", "users", log_path)
        report = json.loads(run.out)
        assert (run.code, report["status"], report["offset"]) == (
            ExitCode.DAMAGED,
            "damaged",
            offsets[1],
        )

    def test_record_naming_an_unlisted_id_is_undecodable(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A checksum-valid record of a collection id the catalog does not list is damage at it."""
        log = shop_log(log_path)
        bad = log.append(log.op_by_id(5, "x", 1))
        log.insert("users", "dee", 4)
        log.save(log_path)
        report = json.loads(cli(capsys, "verify", "--json", log_path).out)
        assert (report["status"], report["offset"]) == ("damaged", bad)
        assert "collection id 5 is not in the catalog in force" in report["reason"]
        with pytest.raises(CorruptLogError, match="collection id 5") as caught:
            _inspect_rewrite.compact(log_path)
        assert caught.value.offset == bad

    @pytest.mark.parametrize("command", [["compact"], ["repair", "--mode", "skip"]])
    def test_rewrites_refuse_a_record_naming_an_unlisted_id(
        self, capsys: pytest.CaptureFixture[str], log_path: Path, command: list[str]
    ) -> None:
        """``compact`` and ``repair`` exit 1 on such a record and leave the log as it was."""
        log = shop_log(log_path)
        log.append(log.op_by_id(5, "x", 1))
        log.save(log_path)
        original = log_path.read_bytes()
        run = cli(capsys, *command, log_path)
        assert_one_line_error(run, ExitCode.DAMAGED)
        assert log_path.read_bytes() == original

    def test_collection_record_in_a_store_log_is_what_open_refuses(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A collection record in a TypedStore's log is damage to verify where open finds it."""
        make_log(log_path)
        body = _format.collection_body(1, _format.insert_body(msgpack.packb("x"), b"\x01"))
        bad = append_parts(log_path, [("frame", body), insert("amy", user_bytes("A", 1))])[0]
        assert verify_outcome(capsys, log_path) == open_outcome(log_path) == ("damaged", bad)

    def test_malformed_catalog_in_a_schema_record_is_damage_at_it(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A schema record whose catalog names one collection twice is damage at its offset."""
        log = shop_log(log_path)
        meta = {"collections": [{"name": "users", "id": 0}, {"name": "users", "id": 1}]}
        log.generation += 1
        bad = log.append(_format.schema_body(msgpack.packb(meta), log.generation))
        log.save(log_path)
        report = json.loads(cli(capsys, "verify", "--json", log_path).out)
        assert (report["status"], report["offset"]) == ("damaged", bad)
        assert "malformed catalog" in report["reason"]

    def test_malformed_catalog_in_the_header_is_damage_at_0(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A header whose collections are not a list is damage at offset 0, for every command."""
        _log_with_header_meta(log_path, msgpack.packb({"collections": "users"}))
        report = json.loads(cli(capsys, "verify", "--json", log_path).out)
        assert (report["status"], report["offset"]) == ("damaged", 0)
        assert_one_line_error(cli(capsys, "dump", log_path), ExitCode.DAMAGED)

    def test_compact_keeps_every_collection_and_its_catalog(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``compact`` of a database's log keeps each collection's entries, bytes and catalog."""
        shop_log(log_path)
        before, catalog = entries_of(log_path), contents_of(log_path).catalog
        run = cli(capsys, "compact", "--json", log_path)
        assert run.code == ExitCode.OK
        assert json.loads(run.out)["records"] == 3
        assert entries_of(log_path) == before
        assert contents_of(log_path).catalog == catalog
        assert cli(capsys, "verify", log_path).code == ExitCode.OK

    def test_compact_keeps_any_collections_entries_byte_for_byte(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A collection no code declares keeps its keys' and values' bytes through compaction."""
        mixed_log(log_path)
        notes = [entry for entry in entries_of(log_path) if entry[0] == "notes"]
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        assert [entry for entry in entries_of(log_path) if entry[0] == "notes"] == notes
        assert len(notes) == 2

    def test_compact_keeps_each_entrys_schema(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """Entries written under two schemas of a collection keep theirs, and the catalog stays."""
        mixed_log(log_path)
        before, catalog = entries_of(log_path), contents_of(log_path).catalog
        assert {entry[3]["version"] for entry in before if entry[0] == "users"} == {1, 2}
        run = cli(capsys, "compact", "--json", log_path)
        assert json.loads(run.out)["schema_records"] >= 1
        assert entries_of(log_path) == before
        assert contents_of(log_path).catalog == catalog
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        assert report["collections"][0]["schema_versions"] == [2, 1]

    def test_compact_writes_the_current_catalog_in_the_header(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """After ``compact``, the header holds the catalog the log ended with."""
        log = mixed_log(log_path)
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        meta, _ = _format.decode_header(log_path.read_bytes())
        assert meta == msgpack.packb(log.catalog.to_meta())

    def test_compact_is_stable(self, capsys: pytest.CaptureFixture[str], log_path: Path) -> None:
        """Compacting a compacted log gives the same bytes again."""
        mixed_log(log_path)
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        once = log_path.read_bytes()
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        assert log_path.read_bytes() == once

    def test_compact_after_a_drop_and_a_rename(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """A dropped collection's entries are gone; a renamed one keeps its entries and id."""
        log = shop_log(log_path)
        log.add(collection("notes", 2, str, str))
        log.insert("notes", "n", "gone soon")
        log.rename("orders", "purchases")
        log.drop("notes")
        log.insert("purchases", 2, False)
        log.save(log_path)
        assert cli(capsys, "compact", log_path).code == ExitCode.OK
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        assert [(item["name"], item["id"]) for item in report["collections"]] == [
            ("users", 0),
            ("purchases", 1),
        ]
        assert dumped(cli(capsys, "dump", "--collection", "purchases", log_path)) == [
            {"key": 1, "value": True},
            {"key": 2, "value": False},
        ]
        assert len(dumped(cli(capsys, "dump", log_path))) == 4

    def test_entries_of_a_dropped_collection_are_dead(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """From a drop on, its entries count as dead and it is no longer listed."""
        log = shop_log(log_path)
        log.drop("orders")
        log.save(log_path)
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        assert [item["name"] for item in report["collections"]] == ["users"]
        assert report["live_entries"] == 2

    def test_repair_keeps_every_collection(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``repair --mode skip`` of a damaged database's log keeps each collection's records."""
        log = mixed_log(log_path)
        damaged = log.insert("orders", 8, False)
        log.insert("notes", "n3", "after")
        log.save(log_path)
        expected = [entry for entry in entries_of(log_path) if entry[1] != msgpack.packb(8)]
        catalog = contents_of(log_path).catalog
        flip(log_path, damaged + 13)
        run = cli(capsys, "repair", "--mode", "skip", log_path)
        assert run.code == ExitCode.OK, run
        assert entries_of(log_path) == expected
        assert contents_of(log_path).catalog == catalog

    def test_repair_truncate_keeps_the_catalog_of_the_kept_records(
        self, capsys: pytest.CaptureFixture[str], log_path: Path
    ) -> None:
        """``repair --mode truncate`` keeps the catalog in force before the damage."""
        log = shop_log(log_path)
        log.rename("orders", "purchases")
        damaged = log.insert("users", "dee", 1)
        log.insert("users", "eve", 2)
        log.save(log_path)
        flip(log_path, damaged + 13)
        assert cli(capsys, "repair", "--mode", "truncate", log_path).code == ExitCode.OK
        report = json.loads(cli(capsys, "info", "--json", log_path).out)
        assert [item["name"] for item in report["collections"]] == ["users", "purchases"]
        assert report["live_entries"] == 3
