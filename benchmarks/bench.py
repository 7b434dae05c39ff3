"""Side-by-side benchmark of typedstore against the stores a Python user would otherwise pick.

Run from the project's root, with the ``bench`` extra installed::

    python benchmarks/bench.py --out docs/BENCHMARKS.md    # full run, under ten minutes
    python benchmarks/bench.py --quick                     # smoke run, under one minute

Each subject runs in its own process (``bench_worker.py``), repetitions rotate the order
of the subjects, and the report gives medians and time ratios against typedstore. Every
phase reads a sample back; a wrong answer, or a failing worker, stops the run with a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_report import machine_info, render_markdown, write_report
from bench_subjects import FSYNC, SUBJECTS, make

HERE = Path(__file__).resolve().parent
WORKER = HERE / "bench_worker.py"
BASELINE = "typedstore-baseline"
FULL_SCALING = (10_000, 100_000, 1_000_000)


class BenchError(Exception):
    """A worker failed or returned a wrong answer."""


def run_worker(mode: str, n: int, seed: int, root: Path, subject: str = "") -> dict[str, Any]:
    """Run one worker process and return the JSON object it printed."""
    directory = Path(tempfile.mkdtemp(prefix=f"{subject or mode}-", dir=root))
    command = [sys.executable, str(WORKER), mode, "--n", str(n), "--seed", str(seed)]
    command += ["--dir", str(directory / "data")]
    if subject:
        command += ["--subject", subject]
    label = subject or mode
    print(f"  {label:<20} n={n:<8}", end="", file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    print(f" {time.perf_counter() - start:6.1f} s", file=sys.stderr, flush=True)
    shutil.rmtree(directory, ignore_errors=True)
    if done.returncode != 0:
        raise BenchError(
            f"worker {label} (mode {mode}, n={n}) exited with status {done.returncode}:\n"
            f"{done.stderr.strip()}"
        )
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise BenchError(f"worker {label} printed no JSON: {error}: {done.stdout!r}") from error
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N=5000, 2 reps, scaling 10k")
    parser.add_argument("--n", type=int, help="records (default 50000, 5000 with --quick)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 2 with --quick)")
    parser.add_argument("--subjects", help="comma-separated subset, default all")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tmp", type=Path, help="where the stores are written (default: TMPDIR)")
    parser.add_argument("--out", type=Path, help="Markdown report (e.g. docs/BENCHMARKS.md)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    n: int = args.n if args.n is not None else (5_000 if args.quick else 50_000)
    reps: int = args.reps if args.reps is not None else (2 if args.quick else 3)
    if n < 100 or reps < 1:
        print("bench: --n must be at least 100 and --reps at least 1", file=sys.stderr)
        return 2
    sync_n = 100 if args.quick else max(1, n // 50)
    names = args.subjects.split(",") if args.subjects else list(SUBJECTS)
    unknown = [name for name in names if name not in SUBJECTS]
    if unknown:
        print(f"bench: unknown subject(s) {unknown}; known: {list(SUBJECTS)}", file=sys.stderr)
        return 2
    scaling_sizes: tuple[int, ...] = ()
    if not args.no_scaling:
        scaling_sizes = (10_000,) if args.quick else FULL_SCALING
    classes = {name: make(name).durability for name in names}
    rotation = [*names, BASELINE]
    root = Path(tempfile.mkdtemp(prefix="typedstore-bench-", dir=args.tmp))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in rotation}
    scaling: list[dict[str, Any]] = []
    traced: dict[str, Any] | None = None
    fsync_probe: dict[str, Any] | None = None
    try:
        for rep in range(reps):
            order = rotation[rep % len(rotation) :] + rotation[: rep % len(rotation)]
            print(f"repetition {rep + 1}/{reps}", file=sys.stderr)
            for name in order:
                if name == BASELINE:
                    runs[name].append(run_worker("baseline", n, args.seed, root))
                else:
                    size = sync_n if classes[name] == FSYNC else n
                    runs[name].append(run_worker("run", size, args.seed, root, name))
        print("typedstore only", file=sys.stderr)
        traced = run_worker("tracemalloc", n, args.seed, root)
        if FSYNC in classes.values():
            fsync_probe = run_worker("fsync-probe", sync_n, args.seed, root)
        for rep in range(reps if len(scaling_sizes) > 1 else 1):
            sizes = scaling_sizes if rep % 2 == 0 else scaling_sizes[::-1]
            for size in sizes:
                scaling.append(run_worker("scaling", size, args.seed, root))
    except BenchError as error:
        print(f"bench: FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    command = shlex.join(
        ["python", "benchmarks/bench.py", *(sys.argv[1:] if argv is None else argv)]
    )
    results: dict[str, Any] = {
        "meta": {
            **machine_info(args.tmp or Path(tempfile.gettempdir())),
            "command": command,
            "n": n,
            "sync_n": sync_n,
            "reps": reps,
            "seed": args.seed,
            "wall_seconds": elapsed,
        },
        "classes": classes,
        "runs": runs,
        "tracemalloc": traced,
        "fsync_probe": fsync_probe,
        "scaling": scaling,
    }
    print(f"done in {elapsed:.0f} s", file=sys.stderr)
    if args.out is not None:
        write_report(results, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(render_markdown(results, chart=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
