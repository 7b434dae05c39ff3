"""Defects found by attacking the merged work on issue 10, pinned as strict xfails until fixed.

Each test states a promise of README.md or docs/CLI.md that a hostile use breaks today;
remove its ``xfail`` mark with the fix.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator

from typedstore import StoreConfig, TypedStore
from typedstore.__main__ import main


def _signal_on_call(handler: Any, function: str, module: str) -> None:
    """Arrange for SIGALRM, handled by ``handler``, to arrive as ``module.function`` is called.

    A trace function sends the signal on entering it: the handler runs at that instant,
    as a real signal arriving there would.
    """
    signal.signal(signal.SIGALRM, handler)

    def tracer(frame: FrameType, event: str, arg: object) -> None:
        code = frame.f_code
        if event == "call" and code.co_name == function and code.co_filename.endswith(module):
            sys.settrace(None)
            os.kill(os.getpid(), signal.SIGALRM)

    sys.settrace(tracer)


def _signal_inside_table_put(handler: Any) -> None:
    """Signal as memory applies a record: the instant after the record reached the log."""
    _signal_on_call(handler, "put", "_table.py")


class TestWriteInterruptedBySignal:
    """A signal handler's refused write must leave memory equal to what a reopen replays."""

    @pytest.mark.xfail(strict=True, reason="attack: refused handler write splits log and memory")
    def test_write_refused_in_a_handler_leaves_memory_equal_to_a_reopen(
        self, tmp_path: Path
    ) -> None:
        """A handler's RuntimeError raised mid-append does not leave a record only on disk."""
        path = tmp_path / "sig.log"
        store = TypedStore.open(path, str, int)

        def beat(signum: int, frame: FrameType | None) -> None:
            store["beat"] = 1  # refused with RuntimeError, raised into the interrupted write

        previous = signal.getsignal(signal.SIGALRM)
        try:
            _signal_inside_table_put(beat)
            with pytest.raises(RuntimeError, match="inside one of its writes"):
                store["a"] = 1
        finally:
            sys.settrace(None)
            signal.signal(signal.SIGALRM, previous)
        in_memory = dict(store.items())
        store.close()
        with TypedStore.open(path, str, int, readonly=True) as reopened:
            assert dict(reopened.items()) == in_memory

    @pytest.mark.xfail(strict=True, reason="attack: Ctrl-C mid-append splits log and memory")
    def test_keyboard_interrupt_mid_append_leaves_memory_equal_to_a_reopen(
        self, tmp_path: Path
    ) -> None:
        """A KeyboardInterrupt arriving just after the append does not lose the entry in memory."""
        path = tmp_path / "int.log"
        store = TypedStore.open(path, str, int)
        previous = signal.getsignal(signal.SIGALRM)
        try:
            _signal_inside_table_put(signal.default_int_handler)
            with pytest.raises(KeyboardInterrupt):
                store["a"] = 1
        finally:
            sys.settrace(None)
            signal.signal(signal.SIGALRM, previous)
        in_memory = dict(store.items())
        store.close()
        with TypedStore.open(path, str, int, readonly=True) as reopened:
            assert dict(reopened.items()) == in_memory


class TestWriteFromHandlerDuringMaintenance:
    """A handler's write during flush() or compact() is refused or kept, never silently lost."""

    @staticmethod
    def _beat_during(store: TypedStore[str, int], function: str) -> dict[str, int]:
        """Run ``store.flush()`` or ``compact()`` with a handler writing as ``function`` starts."""

        def beat(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(RuntimeError):  # a refusal is a correct outcome
                store["beat"] = 1

        previous = signal.getsignal(signal.SIGALRM)
        try:
            _signal_on_call(beat, function, "_fs.py")
            store.flush() if function == "append" else store.compact()
        finally:
            sys.settrace(None)
            signal.signal(signal.SIGALRM, previous)
        in_memory = dict(store.items())
        store.close()
        return in_memory

    @pytest.mark.xfail(strict=True, reason="attack: handler write during flush() is lost")
    def test_write_from_a_handler_during_flush_is_not_lost(self, tmp_path: Path) -> None:
        """A buffered store's flush() does not drop a record a handler wrote meanwhile."""
        path = tmp_path / "flush.log"
        store = TypedStore.open(path, str, int, config=StoreConfig(write_through=False))
        store["a"] = 1
        in_memory = self._beat_during(store, "append")  # the flush's drain of the buffer
        with TypedStore.open(path, str, int, readonly=True) as reopened:
            assert dict(reopened.items()) == in_memory

    @pytest.mark.xfail(strict=True, reason="attack: handler write during compact() is lost")
    def test_write_from_a_handler_during_compact_is_not_lost(self, tmp_path: Path) -> None:
        """compact() does not swap in a log lacking a record a handler wrote meanwhile."""
        path = tmp_path / "compact.log"
        store = TypedStore.open(path, str, int)
        store["a"] = 1
        in_memory = self._beat_during(store, "sync")  # the fsync of the new log
        with TypedStore.open(path, str, int, readonly=True) as reopened:
            assert dict(reopened.items()) == in_memory


def _run_to_closed_stdout(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m typedstore argv`` with a stdout whose reader has gone away."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "typedstore", *map(str, argv)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


class TestCliBrokenPipe:
    """A broken pipe on stdout prints no traceback and keeps a failing command's status."""

    @pytest.mark.xfail(strict=True, reason="attack: --json error to a closed pipe: traceback")
    def test_json_error_to_a_closed_stdout_prints_no_traceback(self, tmp_path: Path) -> None:
        """`info --json` of a missing log, stdout closed, exits 3 without a traceback."""
        done = _run_to_closed_stdout("info", "--json", tmp_path / "missing.log")
        assert "Traceback" not in done.stderr
        assert done.returncode == 3

    @pytest.mark.xfail(strict=True, reason="attack: broken pipe turns a failed verify into 0")
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
        done = _run_to_closed_stdout("verify", "--json", path)
        assert done.returncode != 0


class TestCliJsonUsageErrors:
    """With --json, stdout holds one JSON object on every error path."""

    @pytest.mark.xfail(strict=True, reason="attack: --json usage error prints no JSON object")
    def test_usage_error_with_json_prints_one_object(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`repair --json LOG` without --mode prints one error object and exits 64."""
        code = main(["repair", "--json", "some.log"])
        out = capsys.readouterr().out
        assert code == 64
        assert out.lstrip().startswith("{")


class TestTornTailBound:
    """What one buffered write leaves after a crash is a torn tail, as README promises."""

    @pytest.mark.xfail(strict=True, reason="attack: one drain can exceed buf_capacity")
    def test_zeroed_last_buffered_write_is_a_torn_tail(self, tmp_path: Path) -> None:
        """A crash zero-filling the whole last drain of the buffer does not refuse the open."""
        path = tmp_path / "buffered.log"
        config = StoreConfig(write_through=False, buf_capacity=4096)
        with TypedStore.open(path, str, bytes, config=config) as store:
            store.flush()
            before = path.stat().st_size
            for i in range(3):  # the third record takes the buffer past 4096: one drain
                store[f"k{i}"] = b"x" * 1500
            after = path.stat().st_size
        assert after - before > config.buf_capacity  # what one buffered write wrote
        with path.open("r+b") as file:  # what a crash during that write may leave
            file.seek(before)
            file.write(bytes(after - before))
        with TypedStore.open(path, str, bytes, config=config) as reopened:
            assert reopened.recovery is not None
            assert reopened.recovery.kind == "torn_tail"


class TestUserErrorsAtOpen:
    """An exception from user code at open reaches the caller as it was raised."""

    @pytest.mark.xfail(strict=True, reason="attack: add_note fails on a non-list __notes__")
    def test_validator_error_with_tuple_notes_reaches_the_caller(self, tmp_path: Path) -> None:
        """A validator's exception whose __notes__ is not a list is not replaced by TypeError."""
        path = tmp_path / "notes.log"

        class Refused(Exception):
            """An application's error, carrying its notes as a tuple."""

        armed: list[bool] = []

        def check(value: int) -> int:
            if armed:
                error = Refused("no")
                vars(error)["__notes__"] = ("from the application",)  # a tuple, not a list
                raise error
            return value

        value_type = Annotated[int, AfterValidator(check)]
        with TypedStore.open(path, str, value_type) as store:
            store["a"] = 1
        armed.append(True)
        with pytest.raises(Refused, match="no"):
            TypedStore.open(path, str, value_type)
