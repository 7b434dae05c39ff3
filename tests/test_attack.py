"""Defects found by attacking the merged work on issue 10, pinned as strict xfails until fixed.

Each test states a promise of README.md or docs/CLI.md that a hostile use breaks today;
remove its ``xfail`` mark with the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import AfterValidator

from typedstore import NotAStoreError, TypedStore


class TestPathSwappedDuringOpen:
    """The file a store appends to is the regular file it replayed, never what the path became."""

    @pytest.mark.xfail(strict=True, reason="attack: log reopened by name after replay")
    def test_log_swapped_for_a_device_during_replay_is_not_written_to(self, tmp_path: Path) -> None:
        """A log replaced by a link to /dev/null while replaying is refused, or its inode kept."""
        path = tmp_path / "swap.log"
        moved = tmp_path / "moved.log"
        armed: list[bool] = []

        def swap(value: int) -> int:
            if armed:
                armed.clear()
                path.rename(moved)
                path.symlink_to("/dev/null")
            return value

        value_type = Annotated[int, AfterValidator(swap)]
        with TypedStore.open(path, str, value_type) as store:
            store["a"] = 1
        armed.append(True)
        try:
            store = TypedStore.open(path, str, value_type)
        except NotAStoreError:
            return  # refused: the fix may take this way
        store["b"] = 2
        store.close()  # today: OSError (EINVAL), the fsync of /dev/null; "b" went nowhere
        with TypedStore.open(moved, str, int, readonly=True) as original:
            assert dict(original.items()) == {"a": 1, "b": 2}


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
