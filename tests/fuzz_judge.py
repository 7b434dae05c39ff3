"""The fuzz harness's judge (see ``tests/test_fuzz.py`` and README, "Fuzzing").

It runs each reader under a time limit and a cap on the address space: any input must
give a clean result, a ``StoreError``, a pydantic ``ValidationError`` or an ``OSError``;
never another exception, a hang or a memory blow-up. Failures being fixed on other
branches are accepted only for the inputs that show them (``KNOWN_BUGS``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from unittest import mock

import pydantic

from typedstore import StoreError, _cli

FUZZ_SEED = int(os.environ.get("TYPEDSTORE_FUZZ_SEED", "20261207"))
"""Hypothesis seed of the fuzz tests: fixed, so a CI run is repeatable."""
FUZZ_EXAMPLES = int(os.environ.get("TYPEDSTORE_FUZZ_EXAMPLES", "0"))
"""Examples per fuzz test for a long run; 0 keeps each test's CI budget."""
TIME_LIMIT = float(os.environ.get("TYPEDSTORE_FUZZ_TIME_LIMIT", "5"))
"""Seconds of CPU time one reader may take on one input (inputs are a few hundred KiB at most)."""
WALL_FACTOR = 10
"""A reader may take ``WALL_FACTOR * TIME_LIMIT`` seconds on the clock (a blocked read)."""
MEMORY_LIMIT = 512 * 1024 * 1024
"""Bytes of address space one reader may add (inputs are small: a blow-up goes far beyond)."""
ALLOWED: tuple[type[BaseException], ...] = (StoreError, pydantic.ValidationError, OSError)
"""What a reader may raise on any input."""


@dataclass(frozen=True)
class Case:
    """One fuzz input: the bytes of a log file."""

    buf: bytes

    def describe(self) -> str:
        """Return what a report needs to reproduce the case."""
        shown = self.buf if len(self.buf) <= 600 else self.buf[:600] + b"..."
        return (
            f"{len(self.buf)} bytes, nesting depth {nesting_depth(self.buf)}, fuzz seed "
            f"{FUZZ_SEED} (TYPEDSTORE_FUZZ_SEED={FUZZ_SEED} repeats it): {shown!r}"
        )


class Hang(BaseException):
    """Raised by the per-call timers; a BaseException so ``except Exception`` cannot eat it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


@contextlib.contextmanager
def _memory_capped(headroom: int) -> Iterator[None]:
    """Make allocations beyond ``headroom`` more bytes of address space fail (MemoryError)."""
    previous = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + headroom, previous[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, previous)


@contextlib.contextmanager
def _timed(limit: float) -> Iterator[None]:
    """Raise ``Hang`` in the block after ``limit`` seconds of CPU time, or ``WALL_FACTOR``
    times that on the clock (a blocked read uses no CPU); on the main thread only.

    CPU time, not the clock, is the main limit: on a loaded machine a process may wait
    seconds for a core, which is no fault of the reader.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _on_alarm) for number in _TIMERS.values()}
    signal.setitimer(signal.ITIMER_PROF, limit)
    signal.setitimer(signal.ITIMER_REAL, limit * WALL_FACTOR)
    try:
        yield
    finally:
        for timer, number in _TIMERS.items():
            signal.setitimer(timer, 0)
            signal.signal(number, previous[number])


_TIMERS = {signal.ITIMER_PROF: signal.SIGPROF, signal.ITIMER_REAL: signal.SIGALRM}


@contextlib.contextmanager
def bounded(
    case: Case, what: str, limit: float = TIME_LIMIT, headroom: int = MEMORY_LIMIT
) -> Iterator[None]:
    """Fail if the block runs past ``limit`` seconds or allocates ``headroom`` bytes more.

    An allocation past the cap raises ``MemoryError`` inside the reader, which
    :func:`attempt` reports as a forbidden exception.
    """
    start = time.process_time()
    try:
        with _memory_capped(headroom), _timed(limit):
            yield
    except Hang:
        raise AssertionError(f"{what} ran past {limit} s on {case.describe()}") from None
    elapsed = time.process_time() - start
    assert elapsed <= limit, f"{what} took {elapsed:.1f} s on {case.describe()}"


@dataclass(frozen=True)
class Outcome:
    """What one reader gave: a value, or an allowed (or known-bug) exception."""

    value: object = None
    error: BaseException | None = None


def attempt(
    case: Case, what: str, reader: Callable[[], object], limit: float = TIME_LIMIT
) -> Outcome:
    """Run ``reader`` on ``case`` under :func:`bounded`; fail on a forbidden exception."""
    with bounded(case, what, limit):
        try:
            return Outcome(reader())
        except ALLOWED as exc:
            return Outcome(error=exc)
        except Exception as exc:
            raise AssertionError(
                f"{what} raised {type(exc).__name__}: {str(exc)[:300]} on {case.describe()}"
            ) from exc


def shown(items: object) -> str | None:
    """Return ``repr(items)`` to compare two reads (NaN equals NaN), None if too deep."""
    try:
        return repr(items)
    except RecursionError:
        return None


_build_parser = _cli.build_parser


@cache
def _parser() -> argparse.ArgumentParser:
    return _build_parser()


def run_cli(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run the ``typedstore`` command in-process; return its status, stdout and stderr.

    The parser is built once: building it (gettext, package metadata) costs ten times
    what reading a small log does, and a parser parses any number of command lines.
    """
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(_cli, "build_parser", _parser),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = _cli.run(argv)
    return code, out.getvalue(), err.getvalue()


# -- known bugs -----------------------------------------------------------------------------


def nesting_depth(buf: bytes) -> int:
    """Return the longest run of one-element msgpack arrays or maps in ``buf``."""
    runs = [(rb"\x91+", 1), (rb"\x81+", 1), (rb"(?:\x81\xa1k)+", 3)]
    return max(
        (len(m.group()) // width for run, width in runs for m in re.finditer(run, buf)),
        default=0,
    )
