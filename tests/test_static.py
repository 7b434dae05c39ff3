"""Static checks run as tests: mypy --strict, the typing pins, and ruff."""

from __future__ import annotations

import ast
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
REJECTED = TYPING / "reject_wrong_value.py"


def run(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <args>`` from the project's root and return what it did."""
    command = [sys.executable, "-m", *args]
    if cache is not None:
        # A private mypy cache: helpers and the lead may run mypy at the same time.
        command += ["--cache-dir", str(cache)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def expected_errors() -> set[tuple[int, str]]:
    """Return the ``(line, error code)`` pairs marked ``# E: code, ...`` in the rejected file."""
    expected = set()
    for number, line in enumerate(REJECTED.read_text().splitlines(), start=1):
        marker = re.search(r"# E: (.+)$", line)
        if marker:
            expected |= {(number, code.strip()) for code in marker.group(1).split(",")}
    return expected


@pytest.mark.slow
def test_mypy_strict_passes(tmp_path: Path) -> None:
    """mypy --strict, configured by mypy.ini, finds no error in src, tests and examples."""
    result = run("mypy", cache=tmp_path / "mypy-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


@pytest.mark.slow
def test_mypy_rejects_wrong_key_and_value_types(tmp_path: Path) -> None:
    """mypy reports exactly the misuses marked in reject_wrong_value.py, and nothing else."""
    result = run("mypy", str(REJECTED.relative_to(ROOT)), cache=tmp_path / "mypy-cache")
    assert result.returncode == 1, result.stdout + result.stderr
    found = {
        (int(line), code)
        for line, code in re.findall(
            r"reject_wrong_value\.py:(\d+): error: .*\[([a-z-]+)\]$",
            result.stdout,
            flags=re.MULTILINE,
        )
    }
    assert found == expected_errors(), result.stdout
    assert (
        'Argument 2 to "insert" of "TypedStore" has incompatible type "int"; expected "User"'
        in result.stdout
    )


def test_typing_pins_run(tmp_path: Path) -> None:
    """Every call pinned in tests/typing/check_api.py also works at runtime."""
    namespace = runpy.run_path(str(TYPING / "check_api.py"))
    check_api = cast(Callable[[Path], None], namespace["check_api"])
    check_api(tmp_path)
    assert sorted(path.name for path in tmp_path.glob("*.log")) == [
        "declarative.log",
        "functional.log",
        "keys.log",
        "lists.log",
        "optional.log",
        "shop.log",
        "transaction.log",
        "tuples.log",
    ]


def test_ruff_check_passes() -> None:
    """ruff check finds no lint error in src, tests, examples and benchmarks."""
    result = run("ruff", "check", "--no-cache", "src", "tests", "examples", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied() -> None:
    """ruff format would change no file in src, tests, examples and benchmarks."""
    result = run(
        "ruff", "format", "--check", "--no-cache", "src", "tests", "examples", "benchmarks"
    )
    assert result.returncode == 0, result.stdout + result.stderr


BENCHMARK_ONLY = {"lmdb", "diskcache", "sqlitedict", "sqlmodel", "sqlalchemy", "matplotlib"}
"""The benchmark's peers (the extra ``bench``), which the library and the tests never need."""


def imported_modules(path: Path) -> set[str]:
    """Return the top-level names of the modules a Python file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("folder", ["src", "tests", "examples"])
def test_library_and_tests_never_import_the_benchmark(folder: str) -> None:
    """No file outside benchmarks/ imports a benchmark module or one of its peers."""
    benchmark_modules = {path.stem for path in (ROOT / "benchmarks").glob("*.py")}
    offenders = {
        str(path.relative_to(ROOT)): sorted(found)
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (found := imported_modules(path) & (BENCHMARK_ONLY | benchmark_modules))
    }
    assert offenders == {}
