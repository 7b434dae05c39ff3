"""The benchmark still runs against the library as it is: a quick run of typedstore alone.

It runs as a separate process, as users run it: the tests never import it, and its
peers (the extra ``bench``) are not installed where the tests run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_quick_benchmark_of_typedstore_alone_runs(tmp_path: Path) -> None:
    """``bench.py --quick`` on typedstore alone exits 0 and reports its medians and targets."""
    command = [sys.executable, "benchmarks/bench.py", "--quick", "--subjects", "typedstore"]
    command += ["--no-scaling", "--tmp", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "| `typedstore` |" in result.stdout
    assert "Reads of an immutable (frozen) value type cost no copy" in result.stdout
    assert "`get` returns the stored object" in result.stdout
