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


SABOTAGED_WORKER = """
import runpy, sys
sys.path.insert(0, "benchmarks")
import bench_subjects

subject = bench_subjects.TypedStoreSubject
real_get = subject.get
if sys.argv[2] == "wrong-value":
    def get(self, key):
        user = real_get(self, key)
        return None if user is None else user.model_copy(update={"age": user.age + 1})
    subject.get = get
else:
    subject.remove = lambda self, key: None
sys.argv = ["bench_worker.py", "run", "--subject", "typedstore", "--n", "200", "--dir", sys.argv[1]]
runpy.run_path("benchmarks/bench_worker.py", run_name="__main__")
"""
"""Runs the benchmark's worker on a typedstore subject that answers wrongly."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sabotage", "phase"), [("wrong-value", "insert"), ("remove-ignored", "remove")]
)
def test_benchmark_worker_fails_loudly_on_a_wrong_answer(
    tmp_path: Path, sabotage: str, phase: str
) -> None:
    """A subject that returns a wrong value, or keeps a removed key, stops the worker."""
    command = [sys.executable, "-c", SABOTAGED_WORKER, str(tmp_path / "data"), sabotage]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr
    assert "read-back mismatch: subject=typedstore" in result.stderr
    assert f"phase={phase}" in result.stderr
