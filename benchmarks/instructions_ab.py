"""Compare the instructions typedstore runs per operation at two commits (callgrind).

Run from the project's root: ``python benchmarks/instructions_ab.py BASE [--n 2000]``.
Needs ``valgrind``. On a machine whose neighbours make CPU time swing by half from one
run to the next (docs/BENCHMARKS.md, "Issue 11"), a count of instructions does not
swing: with the hash seed fixed (``PYTHONHASHSEED=0``, so that dicts and sets are laid
out alike), it is the same from run to run to a few hundred instructions. Without it a
`get` moved by 4 % between two runs of the same code. It leaves out
what instructions do not show (cache misses, system calls' time in the kernel), so it
ranks two versions of the same code, and the CPU-time benchmarks
(``compare_commits.py``, ``floor_ab.py``) still give the ratios the targets name.

Each operation runs in a fresh process under callgrind twice, on the same store of
``n`` ``User`` entries: once doing nothing, once doing ``n`` of the operation; the
difference, divided by ``n``, is the instructions per operation. The same model and
store as ``compare_commits.py``'s workload.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from compare_commits import source_trees

OPERATIONS = ("insert", "get", "modify", "del")


def run_worker(operation: str, n: int) -> None:
    """Fill a store with ``n`` users, then do ``n`` of ``operation`` (none for "none")."""
    from pydantic import BaseModel

    from typedstore import TypedStore

    class User(BaseModel):
        name: str
        email: str
        age: int
        tags: list[str]
        created: datetime.datetime

    def birthday(user: User) -> User:
        user.age += 1
        return user

    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    users = [
        User(
            name=f"n{index}",
            email=f"u{index}@example.com",
            age=index % 90,
            tags=["a", "bb", "ccc"][: index % 4],
            created=start + datetime.timedelta(seconds=index),
        )
        for index in range(n)
    ]
    with tempfile.TemporaryDirectory() as directory:
        store = TypedStore.open(Path(directory) / "users.log", str, User)
        for index, user in enumerate(users):
            store[f"user:{index:07d}"] = user
        if operation == "insert":
            for index, user in enumerate(users):
                store[f"more:{index:07d}"] = user
        elif operation == "get":
            for index in range(n):
                store.get(f"user:{index:07d}")
        elif operation == "modify":
            for index in range(n):
                store.modify(f"user:{index:07d}", birthday)
        elif operation == "del":
            for index in range(n):
                del store[f"user:{index:07d}"]
        store.close()


def instructions(src: Path, operation: str, n: int, script: str = __file__) -> int:
    """Return the instructions callgrind counts in one worker process run on ``src``:
    ``script --worker operation --n n`` (this file's own worker unless told)."""
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={scratch}/out",
                sys.executable,
                script,
                "--worker",
                operation,
                "--n",
                str(n),
            ],
            env=dict(
                os.environ,
                PYTHONPATH=f"{src}{os.pathsep}{Path(script).parent}",
                PYTHONHASHSEED="0",  # the same dicts and sets, run after run
            ),
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no count:\n{done.stderr}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("base", nargs="?", help="the commit to compare this tree with")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--worker", metavar="OPERATION", help="run one worker")
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.n)
        return 0
    if args.base is None:
        parser.error("give the commit to compare with")
    with tempfile.TemporaryDirectory() as scratch:
        trees = source_trees(args.base, Path(scratch))
        for src in trees.values():  # compiled once, so that no count includes it
            instructions(src, "none", 1)
        per_op: dict[str, dict[str, float]] = {}
        for name, src in trees.items():
            idle = instructions(src, "none", args.n)
            per_op[name] = {
                op: (instructions(src, op, args.n) - idle) / args.n for op in OPERATIONS
            }
    print(f"instructions per operation (callgrind), n={args.n:,}: {args.base} against this")
    for op in OPERATIONS:
        base, this = per_op["base"][op], per_op["this"][op]
        print(f"{op:8} {base:10,.0f} {this:10,.0f}   this / base {this / base:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
