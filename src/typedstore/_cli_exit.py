"""How a ``typedstore`` command ends: its exit codes, and the failure it reports.

The codes are documented in ``--help`` and ``docs/CLI.md``. A command ends with
:class:`CommandFailed` when it knows why it failed; ``_cli`` maps every other
exception to a :class:`Failure` and prints it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


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


def os_reason(exc: OSError) -> str:
    """Return why ``exc`` happened, in lower case, after the file it names, if any."""
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return where + (exc.strerror or str(exc)).lower()
