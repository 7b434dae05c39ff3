"""Indexes under mypy --strict: lookups are typed by the index key and the host's K, V."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

ROOT = Path(__file__).parents[1]
TYPING = ROOT / "tests" / "typing"
REJECTED = TYPING / "reject_index.py"


def test_index_typing_pins_run() -> None:
    """Every call pinned in tests/typing/check_index.py also works at runtime."""
    namespace = runpy.run_path(str(TYPING / "check_index.py"))
    check_index = cast(Callable[[], None], namespace["check_index"])
    check_index()
    assert namespace["Members"].by_age.spec.ordered


def marked_errors() -> set[tuple[int, str]]:
    """Return the ``(line, error code)`` pairs marked ``# E: code, ...`` in reject_index.py."""
    expected = set()
    for number, line in enumerate(REJECTED.read_text().splitlines(), start=1):
        marker = re.search(r"# E: (.+)$", line)
        if marker:
            expected |= {(number, code.strip()) for code in marker.group(1).split(",")}
    return expected


@pytest.mark.slow
def test_mypy_rejects_index_misuse(tmp_path: Path) -> None:
    """mypy reports exactly the index misuses marked in reject_index.py, and nothing else."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), str(REJECTED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    found = {
        (int(line), code)
        for line, code in re.findall(
            r"reject_index\.py:(\d+): error: .*\[([a-z-]+)\]$", result.stdout, flags=re.MULTILINE
        )
    }
    assert found == marked_errors(), result.stdout
    assert 'Argument 1 to "get" of "IndexView" has incompatible type "int"; expected "str"' in (
        result.stdout
    )
