"""Compare typedstore's own speed at two commits, side by side, in one run.

Run from the project's root: ``python benchmarks/compare_commits.py BASE [--reps 7]
[--n 50000]``. It exports ``BASE``'s ``src/`` into a temporary directory, then runs the
same workload (``--worker``) alternately against that ``src/`` and this tree's, each
run in a fresh process, and prints the median microseconds per operation and their
ratio. The time is the worker's CPU time (user and system), not the wall clock: on a
machine shared with other work, the wall clock counts whatever else ran meanwhile.
Stdlib and typedstore only: no extra needed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = ("insert", "get", "modify", "del", "reopen", "compact")


def run_workload(n: int) -> dict[str, float]:
    """Time each operation on ``n`` records of one model; return µs per operation."""
    from pydantic import BaseModel

    from typedstore import TypedStore

    class User(BaseModel):
        name: str
        email: str
        age: int
        tags: list[str]
        created: datetime.datetime

    rng = random.Random(1)
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    users = [
        (
            f"user:{index:07d}",
            User(
                name=f"n{index}",
                email=f"u{index}@example.com",
                age=rng.randint(1, 90),
                tags=["a", "bb", "ccc"][: index % 4],
                created=start + datetime.timedelta(seconds=index),
            ),
        )
        for index in range(n)
    ]
    keys = [key for key, _ in users]
    rng.shuffle(keys)
    sample = keys[: n // 10]
    result: dict[str, float] = {}

    def timed(name: str, action: Callable[[], object], count: int) -> None:
        began = time.process_time()
        action()
        result[name] = (time.process_time() - began) / count * 1e6

    def birthday(user: User) -> User:
        return user.model_copy(update={"age": user.age + 1})

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "users.log"
        store = TypedStore.open(path, str, User)

        def insert_all() -> None:
            for key, user in users:
                store[key] = user
            store.flush()

        timed("insert", insert_all, n)

        def get_all() -> None:
            for key in keys:  # nothing kept: a list of copies would time the collector
                store.get(key)

        def modify_sample() -> None:
            for key in sample:
                store.modify(key, birthday)

        timed("get", get_all, n)
        timed("modify", modify_sample, len(sample))

        def delete_sample() -> None:
            for key in sample:
                del store[key]

        timed("del", delete_sample, len(sample))
        store.close()
        timed("reopen", lambda: TypedStore.open(path, str, User).close(), n)
        with TypedStore.open(path, str, User) as store:
            timed("compact", store.compact, len(store))
    return result


def _export(commit: str, directory: Path) -> None:
    """Write ``commit``'s ``src/`` into ``directory`` with ``git archive``.

    Not a git worktree: that would register itself in the repository, which other
    worktrees share, and outlive a run that is killed.
    """
    directory.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "src"], cwd=ROOT, check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)


def source_trees(base: str, scratch: Path) -> dict[str, Path]:
    """Return the ``src/`` directories to compare: ``base``'s, exported into ``scratch``
    (see :func:`_export`), and this tree's."""
    exported = scratch / "base"
    _export(base, exported)
    return {"base": exported / "src", "this": ROOT / "src"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("base", nargs="?", help="the commit to compare this tree with")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--worker", action="store_true", help="run the workload once")
    args = parser.parse_args(argv)
    if args.worker:
        json.dump(run_workload(args.n), sys.stdout)
        return 0
    if args.base is None:
        parser.error("give the commit to compare with")
    with tempfile.TemporaryDirectory() as scratch:
        trees = source_trees(args.base, Path(scratch))
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for rep in range(args.reps):
            order = list(trees) if rep % 2 == 0 else list(trees)[::-1]
            for name in order:
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", "--n", str(args.n)],
                    env=dict(os.environ, PYTHONPATH=str(trees[name])),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[name].append(json.loads(done.stdout))
    print(f"CPU µs per operation, median of {args.reps}, n={args.n:,}: {args.base} against this")
    for operation in OPERATIONS:
        base = statistics.median(run[operation] for run in runs["base"])
        this = statistics.median(run[operation] for run in runs["this"])
        print(f"{operation:8} {base:9.2f} {this:9.2f}   this / base {this / base:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
