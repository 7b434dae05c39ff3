"""The benchmark still runs against the library as it is: a quick run of typedstore alone.

It runs as a separate process, as users run it: the tests never import it, and its
peers (the extra ``bench``) are not installed where the tests run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of ``bench.py --quick`` on typedstore and the floor, which need no extra."""
    tmp = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "benchmarks/bench.py", "--quick", "--subjects", "typedstore,floor"]
    command += ["--no-scaling", "--tmp", str(tmp)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_quick_benchmark_of_typedstore_alone_runs(quick_report: str) -> None:
    """``bench.py --quick`` without the extra exits 0 and reports typedstore's numbers."""
    assert "| `typedstore` |" in quick_report
    assert "Reads of an immutable (frozen) value type cost no copy" in quick_report
    assert "`get` returns the stored object" in quick_report


@pytest.mark.slow
def test_quick_benchmark_runs_the_floor(quick_report: str) -> None:
    """The quick run measures the floor beside typedstore, in every workload."""
    assert re.search(
        r"^\| `floor` (\| [0-9.,]+ \([0-9.]+\u00d7\) ){6}\|$", quick_report, re.MULTILINE
    )


@pytest.mark.slow
def test_quick_benchmark_runs_the_crate_scenarios_for_the_floor(quick_report: str) -> None:
    """The quick run times the Rust crate's five scenarios for the floor beside typedstore."""
    scenarios = quick_report.split("### The Rust crate's scenarios", 1)[1]
    assert re.search(r"^\| `floor` (\| [0-9.,]+ \([0-9.]+\u00d7\) ){5}\|$", scenarios, re.MULTILINE)


@pytest.mark.slow
def test_quick_benchmark_marks_each_issue_11_target(quick_report: str) -> None:
    """Every workload and scenario gets typedstore ÷ floor, marked met or not met."""
    section = quick_report.split("### Targets (issue 11)", 1)[1]
    for workload in ("insert", "get", "modify", "remove", "reopen", "compact", "`modify_10k`"):
        assert re.search(
            rf"^\| {workload} \| (µs/op|ms) \| [0-9.,]+ \| [0-9.,]+ "
            r"\| [0-9.]+\u00d7 (met|NOT MET) \|",
            section,
            flags=re.MULTILINE,
        ), workload


@pytest.mark.slow
def test_quick_benchmark_counts_no_floor_as_a_peer(quick_report: str) -> None:
    """The floor is not a peer: with typedstore and the floor alone, no peer's disk is compared."""
    assert (
        "| Disk after compaction ≤ the smallest peer (after its compaction) | not measured |"
        in quick_report
    )


SABOTAGED_WORKER = """
import runpy, sys
sys.path.insert(0, "benchmarks")
import bench_floor, bench_subjects

directory, sabotage, name = sys.argv[1:4]
classes = {"typedstore": bench_subjects.TypedStoreSubject, "floor": bench_subjects.FloorSubject}
subject = classes[name]
real_get = subject.get
if sabotage == "wrong-value":
    def get(self, key):
        user = real_get(self, key)
        return None if user is None else user.model_copy(update={"age": user.age + 1})
    subject.get = get
elif sabotage == "remove-ignored":
    subject.remove = lambda self, key: None
else:
    real_set = bench_floor.FloorStore.__setitem__
    def setitem(self, key, value):
        real_set(self, key, value + 1 if type(key) is int else value)
    bench_floor.FloorStore.__setitem__ = setitem
sys.argv = ["bench_worker.py", "run", "--subject", name, "--n", "200", "--dir", directory]
runpy.run_path("benchmarks/bench_worker.py", run_name="__main__")
"""
"""Runs the benchmark's worker on a subject (argv[3]) that answers wrongly (argv[2])."""


@pytest.mark.slow
@pytest.mark.parametrize("subject", ["typedstore", "floor"])
@pytest.mark.parametrize(
    ("sabotage", "phase"), [("wrong-value", "insert"), ("remove-ignored", "remove")]
)
def test_benchmark_worker_fails_loudly_on_a_wrong_answer(
    tmp_path: Path, subject: str, sabotage: str, phase: str
) -> None:
    """A subject that returns a wrong value, or keeps a removed key, stops the worker."""
    command = [sys.executable, "-c", SABOTAGED_WORKER, str(tmp_path / "data"), sabotage, subject]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr
    assert f"read-back mismatch: subject={subject}" in result.stderr
    assert f"phase={phase}" in result.stderr


@pytest.mark.slow
def test_benchmark_worker_checks_the_crate_scenarios(tmp_path: Path) -> None:
    """A store that answers the scenarios' int keys wrongly stops the worker at the first one."""
    command = [sys.executable, "-c", SABOTAGED_WORKER, str(tmp_path / "data"), "ints", "floor"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr
    assert "read-back mismatch: subject=floor phase=insert_10k_ints key=0" in result.stderr


TORN_FLOOR = """
import os, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from bench_floor import FloorStore

path = Path(sys.argv[1])
store = FloorStore(path, str, int)
for i in range(50):
    store[f"k{i}"] = i
del store["k7"]
store.modify("k8", lambda v: v * 100)
store.close()
whole = path.stat().st_size
with path.open("ab") as log:
    log.write(bytes.fromhex("10000000") + b"half a frame")
store = FloorStore(path, str, int)
print(len(store), store.get("k7"), store.get("k8"), store.get("k49"), path.stat().st_size == whole)
"""
"""Writes a floor log, appends half a frame, and reopens it."""


def test_floor_replays_its_log_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    """Reopening the floor gives back every acknowledged write and cuts the torn frame after."""
    command = [sys.executable, "-c", TORN_FLOOR, str(tmp_path / "floor.log")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["49", "None", "800", "49", "True"]
