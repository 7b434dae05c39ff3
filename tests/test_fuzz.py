"""Fuzzing the log readers: any log gives a clean open or a documented error, never worse.

Inputs are built in ``tests/fuzz_logs.py`` and judged in ``tests/fuzz_judge.py``. Each
test has a fixed CI budget of examples and a fixed seed; README ("Fuzzing") gives the
command for a long run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

from tests import fuzz_judge as fj
from tests import fuzz_logs as fz
from tests import fuzz_paths
from typedstore import CorruptLogError, NotAStoreError, SchemaMismatchError, TypedStore
from typedstore._cli import ExitCode
from typedstore._format import insert_body
from typedstore._types import RecoveryMode

F = TypeVar("F", bound=Callable[..., Any])


SMOKE = 12
"""A quick run's budget per fuzz test; the full suite adds each test's own, marked slow."""


def fuzz(budget: int) -> Callable[[F], F]:
    """Run a test on ``budget`` examples (or ``TYPEDSTORE_FUZZ_EXAMPLES``), seeded."""

    def wrap(test: F) -> F:
        configured = settings(
            max_examples=fj.FUZZ_EXAMPLES or budget,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )(test)
        return seed(fj.FUZZ_SEED)(configured)

    return wrap


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    """Keep the store's warnings (a torn tail per input or so) out of a long run's memory."""
    logger = logging.getLogger("typedstore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """Return a factory of fresh folders, one per example, removed at the end."""

    def fresh() -> Path:
        return Path(tempfile.mkdtemp(dir=tmp_path))

    yield fresh
    print(f"fuzz seed {fj.FUZZ_SEED}")


targets = st.sampled_from(fz.TARGETS)
modes: st.SearchStrategy[RecoveryMode] = st.sampled_from(fz.MODES)


@st.composite
def logs(draw: st.DrawFn) -> tuple[fz.Target, fj.Case]:
    """A target and a log for it: mutated from a real one, or built of crafted records."""
    target = draw(targets)
    buf = draw(fz.mutated_logs(target) | fz.structured_logs(target))
    return target, fj.Case(buf)


# -- the library's reader -------------------------------------------------------------------


def _read(store: TypedStore[Any, Any]) -> str | None:
    """Return the store's entries in order for comparison, and close it."""
    with store:
        return fj.shown(list(store.items()))


def _use(store: TypedStore[Any, Any], target: fz.Target) -> tuple[str | None, str | None]:
    """Return the entries; write, modify, compact, remove two keys; return the entries.

    The keys are removed by the key as stored (``del`` and ``popitem``): every stored key
    must be removable so.
    """
    with store:
        before = fj.shown(list(store.items()))
        key, value = target.sample
        store[key] = value
        first = next(iter(store))
        store.modify(first, lambda stored: stored)  # re-encodes what the log held
        store.compact()
        del store[first]
        if store:
            store.popitem()
        return before, fj.shown(list(store.items()))


def _open_both(
    case: fj.Case, target: fz.Target, mode: RecoveryMode, folder: Path
) -> tuple[fj.Outcome, fj.Outcome, fj.Outcome | None]:
    """Open copies of ``case`` read-only and writable; return the outcomes.

    They are the read-only store's entries, the writable open (its store), and the
    entries of that store before and after a write and a compaction (None if the
    writable open failed).
    """
    readonly, writable = folder / "ro.log", folder / "rw.log"
    readonly.write_bytes(case.buf)
    writable.write_bytes(case.buf)
    seen = fj.attempt(
        case, f"read-only open ({mode})", lambda: _read(target.open(readonly, mode, readonly=True))
    )
    assert readonly.read_bytes() == case.buf, f"a read-only open changed {case.describe()}"
    opened = fj.attempt(
        case, f"writable open ({mode})", lambda: target.open(writable, mode, readonly=False)
    )
    if opened.error is not None:
        assert writable.read_bytes() == case.buf, f"a failed open changed {case.describe()}"
        return seen, opened, None
    store = opened.value
    assert isinstance(store, TypedStore)
    _check_backup(case, store)
    return seen, opened, fj.attempt(case, "write and compact", lambda: _use(store, target))


def _check_backup(case: fj.Case, store: TypedStore[Any, Any]) -> None:
    """Check that a writable open that recovered from damage copied the original aside."""
    recovery = store.recovery
    if recovery is not None and recovery.kind in ("truncated", "skipped"):
        assert recovery.backup is not None, f"no copy of {case.describe()}"
        assert recovery.backup.read_bytes() == case.buf, f"a wrong copy of {case.describe()}"


@pytest.mark.slow
@fuzz(budget=150)
@given(logs(), modes)
def test_open_gives_a_store_or_a_documented_error(
    workdir: Callable[[], Path], generated: tuple[fz.Target, fj.Case], mode: RecoveryMode
) -> None:
    """Read-only and writable opens of any log agree, and raise nothing but the store's errors."""
    _check_open(workdir, generated, mode)


@fuzz(budget=SMOKE)
@given(logs(), modes)
def test_open_gives_a_store_or_a_documented_error_smoke(
    workdir: Callable[[], Path], generated: tuple[fz.Target, fj.Case], mode: RecoveryMode
) -> None:
    """Read-only and writable opens of a few logs agree, and raise nothing but the store's
    errors."""
    _check_open(workdir, generated, mode)


def _check_open(
    workdir: Callable[[], Path], generated: tuple[fz.Target, fj.Case], mode: RecoveryMode
) -> None:
    """Check both opens of one log in ``mode``."""
    target, case = generated
    folder = workdir()
    seen, opened, used = _open_both(case, target, mode, folder)
    event(f"{target.name} {mode}: {type(opened.error).__name__}")
    assert type(seen.error) is type(opened.error), (
        f"read-only open gave {seen.error!r}, writable {opened.error!r} on {case.describe()}"
    )
    if used is not None:
        path = folder / "rw.log"
        reopened = fj.attempt(
            case, "reopen", lambda: _read(target.open(path, "strict", readonly=True))
        )
        assert reopened.error is None, f"reopen after a writable open: {reopened.error!r}"
        if used.error is None:
            assert isinstance(used.value, tuple)
            before, after = used.value
            if None not in (seen.value, before):
                assert seen.value == before, f"read-only and writable differ: {case.describe()}"
            if None not in (after, reopened.value):
                assert reopened.value == after, f"memory and replay differ: {case.describe()}"
    shutil.rmtree(folder)


# -- the command line's model-free reader ---------------------------------------------------

READERS = (
    ["info"],
    ["info", "--json"],
    ["verify"],
    ["verify", "--json"],
    ["dump"],
    ["dump", "--all"],
)


def _run(case: fj.Case, argv: list[str]) -> tuple[int, str, str]:
    """Run one command on ``case``: it must return an exit status, with no traceback."""
    outcome = fj.attempt(case, " ".join(argv[:-1]), lambda: fj.run_cli(argv))
    if outcome.error is not None:  # a known bug: the command would print a traceback
        return -1, "", ""
    assert isinstance(outcome.value, tuple)
    code, out, err = outcome.value
    assert code in set(ExitCode), f"{argv} exited {code} on {case.describe()}"
    assert "Traceback" not in err, f"{argv} printed a traceback on {case.describe()}"
    return code, out, err


def _verify_agrees(case: fj.Case, target: fz.Target, path: Path, code: int, out: str) -> None:
    """Check that ``verify --json`` (``code``, ``out``) says what a read-only strict open finds."""
    opened = fj.attempt(case, "open", lambda: _read(target.open(path, "strict", readonly=True)))
    foreign = isinstance(opened.error, NotAStoreError)
    assert foreign == (code == ExitCode.NOT_A_STORE), (
        f"open gave {opened.error!r} but verify exited {code} on {case.describe()}"
    )
    if foreign:
        return
    verdict = json.loads(out)
    if isinstance(opened.error, CorruptLogError):
        assert (verdict["status"], verdict["offset"]) == ("damaged", opened.error.offset), (
            f"open raised {opened.error!r} but verify said {verdict} on {case.describe()}"
        )
    elif opened.error is None:
        assert verdict["status"] in ("clean", "torn_tail"), (
            f"open succeeded but verify said {verdict} on {case.describe()}"
        )


@pytest.mark.slow
@fuzz(budget=100)
@given(logs())
def test_cli_readers_end_with_an_exit_status(
    workdir: Callable[[], Path], generated: tuple[fz.Target, fj.Case]
) -> None:
    """info, verify and dump end with an exit status, change nothing, and agree with open."""
    _check_readers(workdir, generated)


@fuzz(budget=SMOKE)
@given(logs())
def test_cli_readers_end_with_an_exit_status_smoke(
    workdir: Callable[[], Path], generated: tuple[fz.Target, fj.Case]
) -> None:
    """info, verify and dump end with an exit status on a few logs, change nothing, and
    agree with open."""
    _check_readers(workdir, generated)


def _check_readers(workdir: Callable[[], Path], generated: tuple[fz.Target, fj.Case]) -> None:
    """Check every read-only command on one log."""
    target, case = generated
    folder = workdir()
    path = folder / "fuzz.log"
    path.write_bytes(case.buf)
    results = {" ".join(argv): _run(case, [*argv, str(path)]) for argv in READERS}
    assert path.read_bytes() == case.buf, f"a read-only command changed {case.describe()}"
    code, out, _ = results["verify --json"]
    event(f"verify exit {code}, dump exit {results['dump'][0]}")
    if code in (ExitCode.OK, ExitCode.DAMAGED, ExitCode.NOT_A_STORE):
        _verify_agrees(case, target, path, code, out)
    shutil.rmtree(folder)


REWRITES = st.sampled_from(["compact", "repair --mode skip", "repair --mode truncate"])


@pytest.mark.slow
@fuzz(budget=80)
@given(logs(), REWRITES)
def test_cli_rewrites_leave_a_clean_log(
    workdir: Callable[[], Path], generated: tuple[fz.Target, fj.Case], command: str
) -> None:
    """compact and repair end with an exit status; a log they rewrite verifies clean, and
    compact keeps what the log replays to."""
    _check_rewrite(workdir, generated, command)


@fuzz(budget=SMOKE)
@given(logs(), REWRITES)
def test_cli_rewrites_leave_a_clean_log_smoke(
    workdir: Callable[[], Path], generated: tuple[fz.Target, fj.Case], command: str
) -> None:
    """compact and repair of a few logs end with an exit status; a log they rewrite
    verifies clean, and compact keeps what the log replays to."""
    _check_rewrite(workdir, generated, command)


def _check_rewrite(
    workdir: Callable[[], Path], generated: tuple[fz.Target, fj.Case], command: str
) -> None:
    """Check one rewriting ``command`` on one log."""
    target, case = generated
    folder = workdir()
    path = folder / "fuzz.log"
    path.write_bytes(case.buf)
    dumped, before, _ = _run(case, ["dump", str(path)])
    held = fj.attempt(case, "open", lambda: _read(target.open(path, "strict", readonly=True)))
    code, _, _ = _run(case, [*command.split(), str(path)])
    event(f"{command} exit {code}")
    if code == ExitCode.OK:
        verified, out, _ = _run(case, ["verify", str(path)])
        assert verified == ExitCode.OK, f"{command} left {out!r} from {case.describe()}"
    if code == ExitCode.OK and command == "compact":
        if dumped == ExitCode.OK:
            after = _run(case, ["dump", str(path)])[1]
            assert after == before, f"compact changed the dump of {case.describe()}"
        if held.error is None:
            again = fj.attempt(
                case, "reopen", lambda: _read(target.open(path, "strict", readonly=True))
            )
            assert again.value == held.value, f"compact changed the entries of {case.describe()}"
    shutil.rmtree(folder)


# -- the judge can fail ---------------------------------------------------------------------


class TestJudge:
    """The harness's judge fails on each outcome the rule forbids."""

    case = fj.Case(b"")

    def test_an_unexpected_exception_fails(self) -> None:
        """A reader raising something other than the store's errors fails the example."""
        with pytest.raises(AssertionError, match="raised ZeroDivisionError"):
            fj.attempt(self.case, "reader", lambda: 1 // 0)

    def test_a_busy_loop_fails(self) -> None:
        """A reader spending more CPU time than the limit is stopped and fails the example."""

        def spin() -> None:
            while True:
                pass

        with pytest.raises(AssertionError, match=r"ran past 0\.2 s"):
            fj.attempt(self.case, "reader", spin, limit=0.2)

    def test_a_blocked_reader_fails(self) -> None:
        """A reader blocked on the clock for WALL_FACTOR times the limit fails the example."""
        with pytest.raises(AssertionError, match=r"ran past 0\.1 s"):
            fj.attempt(self.case, "reader", lambda: time.sleep(30), limit=0.1)

    def test_a_memory_blow_up_fails(self) -> None:
        """A reader allocating far more than its input needs fails the example."""
        with pytest.raises(AssertionError, match="raised MemoryError"):
            fj.attempt(self.case, "reader", lambda: bytearray(2 * fj.MEMORY_LIMIT))

    def test_the_store_errors_pass(self, tmp_path: Path) -> None:
        """A reader raising an allowed error (here an OSError) gives it as its outcome."""
        reader = lambda: TypedStore.open(tmp_path / "none.log", str, int, readonly=True)  # noqa: E731
        assert isinstance(fj.attempt(self.case, "reader", reader).error, FileNotFoundError)


# -- regressions: inputs the fuzzer found, fixed with issue 10 ----------------------------


def _deep_log(folder: Path, target: fz.Target, meta: bytes, key: bytes, value: bytes) -> Path:
    path = folder / "deep.log"
    path.write_bytes(fz.assemble(meta, [insert_body(key, value)]))
    return path


_ANY = fz.TARGETS[0]
_DEEP_LIST = b"\x91" * 1000 + b"\x01"  # msgpack reads it: its own limit is 1024


def test_a_deep_key_is_a_schema_mismatch(tmp_path: Path) -> None:
    """A key nested 1,000 deep that does not validate is a SchemaMismatchError (``_invalid``)."""
    meta = fz.metas(_ANY)[-1]  # the current schema of TypedStore[str, Any]
    path = _deep_log(tmp_path, _ANY, meta, _DEEP_LIST, b"\x01")
    with pytest.raises(SchemaMismatchError, match="does not validate"):
        TypedStore.open(path, str, Any, readonly=True)


def test_a_deep_value_under_an_older_schema_opens(tmp_path: Path) -> None:
    """A value nested 1,000 deep written under another value type opens (_codec._missing_paths)."""
    meta = fz.metas(_ANY)[0]  # the header: TypedStore[str, int]
    path = _deep_log(tmp_path, _ANY, meta, b"\xa1a", _DEEP_LIST)
    with TypedStore.open(path, str, Any, readonly=True) as store:
        assert list(store) == ["a"]


def test_dump_prints_a_deep_value(tmp_path: Path) -> None:
    """dump prints a value nested 900 deep, which the store opens (_render.to_json)."""
    path = _deep_log(tmp_path, _ANY, fz.metas(_ANY)[-1], b"\xa1a", b"\x91" * 900 + b"\x01")
    with TypedStore.open(path, str, Any, readonly=True) as store:
        assert list(store) == ["a"]
    code, out, _ = fj.run_cli(["dump", str(path)])
    assert (code, out.count("[")) == (ExitCode.OK, 900)


# -- paths that are not regular files -------------------------------------------------------

READ_ALL = tuple(fuzz_paths.READERS)


def _path_cases() -> Iterator[Any]:
    for kind in fuzz_paths.KINDS:
        for reader in fuzz_paths.READERS:
            yield pytest.param(kind, reader, id=f"{kind}-{reader}")


@functools.cache
def _path_outcomes(kind: str) -> dict[str, dict[str, Any]]:
    """Run every reader on a node of ``kind`` in a child process; return its report."""
    with tempfile.TemporaryDirectory() as folder:
        child = subprocess.run(
            [sys.executable, "-m", "tests.fuzz_paths", kind, folder],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    lines = [json.loads(line) for line in child.stdout.splitlines()]
    return {line["reader"]: line for line in lines}


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "reader"), list(_path_cases()))
def test_a_path_that_is_not_a_regular_file_is_refused(kind: str, reader: str) -> None:
    """Every reader refuses a node that is not a regular file at once, and leaves it as it was."""
    if kind in ("null_device", "zero_device") and os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    report = _path_outcomes(kind).get(reader, {"outcome": "no report", "kept": None})
    refused = report["outcome"].startswith("allowed ") or report["outcome"] in (
        f"exit {ExitCode.FILE_ERROR}",
        f"exit {ExitCode.NOT_A_STORE}",
    )
    # A link to a missing file is a store not created yet: a writable open creates it.
    created = (kind, reader, report["outcome"]) == ("dangling_symlink", "open writable", "ok")
    assert (refused or created, report["kept"]) == (True, True), f"{reader} on a {kind}: {report}"


def test_a_writable_open_of_the_root_directory_is_refused() -> None:
    """A writable open of ``/`` is refused as a directory, not with an error about its name."""
    with pytest.raises(NotAStoreError, match="a directory, not a regular file"):
        TypedStore.open("/", str, int)


def test_a_nan_key_read_from_a_log_can_be_removed(tmp_path: Path) -> None:
    """A NaN key that an older log holds is removed by the key as stored."""
    target = fz.TARGETS[3]  # TypedStore[float, list[int]]
    nan = b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"
    path = tmp_path / "nan.log"
    path.write_bytes(fz.assemble(fz.metas(target)[0], [insert_body(nan, b"\x91\x01")]))
    with target.open(path, "strict", readonly=False) as store:
        del store[next(iter(store))]
        assert len(store) == 0


def test_a_scan_bomb_opens_at_once(tmp_path: Path) -> None:
    """256 KiB of frame heads claiming the rest of the file are scanned in under a second."""
    base = fz.base_log(_ANY)
    buf = fz.assemble(base.meta, base.bodies)
    case = fj.Case(buf + fz.scan_bomb(len(buf), 32 * 1024))
    path = tmp_path / "bomb.log"
    path.write_bytes(case.buf)
    outcome = fj.attempt(case, "open", lambda: _read(_ANY.open(path, "skip", readonly=True)), 1.0)
    assert outcome.error is None
