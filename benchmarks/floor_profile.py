"""Instructions per operation for typedstore and the floor, and what typedstore's extra is.

Run from ``benchmarks/``: ``python floor_profile.py [--n 2000] [--ablate NAME ...]``.
Needs ``valgrind``. For each workload of ``floor_ab.py`` (insert, get, modify and remove
of the benchmark's ``User``; the Rust crate's ``int`` and ``str`` scenarios, each at
``n`` operations), it counts with callgrind the instructions one operation takes, for
typedstore and for the floor, as ``instructions_ab.py`` counts them (its
``instructions``: a fresh process, ``PYTHONHASHSEED=0``, a run doing nothing
subtracted), and prints them and their ratio. Beside them, the Python bytecodes per
operation (``write_calls.counted``'s opcode trace, in this process) and the functions of
typedstore that run the most of them, which say where its extra is.

``--ablate`` names checks to take out, one at a time, from a scratch copy of ``src/``
(never the library: ``ABLATIONS`` below holds each edit, and one that no longer
matches the source is reported, not run); each prints the instructions per operation it
saves on the workloads it applies to, and ``all`` takes out every one at once. An
ablated store breaks the promise its check keeps: this measures what each costs, it
does not propose removing it. ``docs/BENCHMARKS.md`` ("what bounds each remaining gap")
ties each to the promise it serves.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import instructions_ab
from bench_floor import FloorStore
from bench_model import User, records
from write_calls import counted

Opener = Callable[[Path, type[Any], type[Any]], Any]
WORKLOADS = (
    "insert",
    "get",
    "modify",
    "remove",
    "insert_10k_ints",
    "modify_10k",
    "lookup_100k",
    "reopen_10k",
    "insert_2k_strings",
)
ROOT = Path(__file__).resolve().parent.parent


def _opener(subject: str) -> Opener:
    if subject == "floor":
        return lambda path, key, value: FloorStore(path, key, value)
    from typedstore import TypedStore  # the tree PYTHONPATH names, in a worker

    return lambda path, key, value: TypedStore.open(path, key, value)


def _birthday(user: User) -> User:
    user.age += 1
    return user


def _plus_one(value: int) -> int:
    return value + 1


def prepare(
    subject: str, workload: str, directory: Path, n: int, do: bool = True
) -> Callable[[], None]:
    """Make ``workload``'s store in ``directory`` as ``floor_ab.py`` does before timing
    it; return what does the ``n`` operations it times (none unless ``do``), then closes
    the store: so a run doing none differs from one doing them by those alone."""
    open_store = _opener(subject)
    if workload in ("insert", "get", "modify", "remove"):
        pairs = records(n)
        keys = [key for key, _ in pairs]
        random.Random(7).shuffle(keys)
        store = open_store(directory / "users.log", str, User)
        if workload != "insert":
            for key, user in pairs:
                store[key] = user

        def users() -> None:
            if not do:
                pass
            elif workload == "insert":
                for key, user in pairs:
                    store[key] = user
            elif workload == "get":
                for key in keys:
                    store.get(key)
            elif workload == "modify":
                for key in keys:
                    store.modify(key, _birthday)
            else:
                for key in keys:
                    del store[key]
            store.close()

        return users
    if workload == "insert_2k_strings":
        strings = open_store(directory / "strings.log", str, str)

        def insert_strings() -> None:
            for index in range(n if do else 0):
                strings[f"key:{index:06d}"] = f"value-{index}-{index:06d}"
            strings.close()

        return insert_strings
    path = directory / "ints.log"
    ints = open_store(path, int, int)
    if workload != "insert_10k_ints":
        for index in range(n):
            ints[index] = 7 * index
    if workload == "reopen_10k":
        ints.close()
        return lambda: open_store(path, int, int).close() if do else None

    def on_ints() -> None:
        if not do:
            pass
        elif workload == "insert_10k_ints":
            for index in range(n):
                ints[index] = 7 * index
        elif workload == "modify_10k":
            for index in range(n):
                ints.modify(index, _plus_one)
        else:
            for index in range(n):
                ints.get(index)
        ints.close()

    return on_ints


def run_worker(subject: str, workload: str, n: int) -> None:
    """Prepare ``workload`` and do its ``n`` operations, or none for "none:WORKLOAD"."""
    idle = workload.startswith("none:")
    with tempfile.TemporaryDirectory() as scratch:
        prepare(subject, workload.removeprefix("none:"), Path(scratch), n, not idle)()


def instructions(src: Path, subject: str, workload: str, n: int) -> float:
    """Return the instructions per operation of ``workload`` (callgrind, a fresh process
    each, the run doing none subtracted), with typedstore imported from ``src``."""
    count = instructions_ab.instructions
    busy = count(src, f"{subject}:{workload}", n, __file__)
    idle = count(src, f"{subject}:none:{workload}", n, __file__)
    return (busy - idle) / n


# -- ablations: each takes one named check out of a scratch copy of src/ ------------------

Edit = tuple[str, str, str, int]
"""A file under ``src/typedstore``, the text to replace, its replacement, and how many
times the text occurs (each replaced)."""

_PHASE_CHECK = "                or self._phase is not _IDLE\n"
ABLATIONS: dict[str, tuple[tuple[str, ...], list[Edit]]] = {
    # Collection.get: the unlocked read's seqlock (Core.writing read before and after
    # the lookup) and its closed check; the lookup alone remains.
    "get_seqlock_closed": (
        ("get", "lookup_100k"),
        [
            (
                "_collection.py",
                """        core = self._core
        seen = core.writing
        entries = self._table.entries  # before the closed check: close() replaces the table
        unlocked = not seen & 1 and type(key) in self._unlocked_keys and not self._is_closed
        if unlocked:  # see UNLOCKED_KEYS
            stored = entries.get(key, MISSING)
            unlocked = core.writing == seen
        if not unlocked:
            with self._lock:
                if self._is_closed:  # _check_open, inlined in the hottest reads
                    self._check_open()
                stored = self._table.entries.get(key, MISSING)
""",
                "        stored = self._table.entries.get(key, MISSING)\n",
                1,
            )
        ],
    ),
    # Memory keeps the dump (as the floor does) instead of its msgpack bytes: get and
    # modify validate it without unpacking first (but the first value written, which
    # takes encode_value's way, is kept as bytes still: a type test tells them apart).
    "unpack_on_read": (
        ("get", "modify"),
        [
            (
                "_codec.py",
                "                    return validated_key, key_bytes, blob, blob\n"
                "            blob = _read_back(values, validated, value, stable=False)[1]\n"
                "            return validated_key, key_bytes, blob, blob\n"
                "        validated, blob = self.encode_value(value)\n"
                "        return validated_key, key_bytes, blob if self.copies_values",
                "                    return validated_key, key_bytes, data, blob\n"
                "            blob = _read_back(values, validated, value, stable=False)[1]\n"
                "            return validated_key, key_bytes, blob, blob\n"
                "        validated, blob = self.encode_value(value)\n"
                "        return validated_key, key_bytes, blob if self.copies_values",
                1,
            ),
            (
                "_codec.py",
                "(self._bound_validate or self._bind_validate())(unpack(stored))",
                "(self._bound_validate or self._bind_validate())("
                "unpack(stored) if type(stored) is bytes else stored)",
                1,
            ),
            (
                "_codec.py",
                "data = unpack_or_raise(stored, strict_map_key=False, ext_hook=decode_ext)",
                "data = (stored if type(stored) is not bytes else unpack_or_raise("
                "stored, strict_map_key=False, ext_hook=decode_ext))",
                1,
            ),
        ],
    ),
    # The frame head's checksum over its offset, length and body checksum (a constant
    # head checksum instead; such a log no longer opens).
    "offset_crc": (
        ("insert", "modify", "remove", "insert_10k_ints", "modify_10k"),
        [
            (
                "_format.py",
                "return _pack_frame_head(_crc32(_pack_covered(offset, length, crc)), length, crc)",
                "return _pack_frame_head(0, length, crc)",
                1,
            )
        ],
    ),
    # The write's phase: a write from a signal handler, a finalizer or fn during a
    # write of the same store is refused (RuntimeError) rather than interleaved.
    "write_phase": (
        ("insert", "modify", "remove", "insert_10k_ints", "modify_10k"),
        [
            ("_core.py", _PHASE_CHECK, "", 2),
            (
                "_core.py",
                "            # From here to the end, a write from a signal handler is refused "
                "(_REENTERED).\n            self._phase = _APPENDING\n",
                "",
                1,
            ),
            (
                "_core.py",
                "            self._phase = _USER_CODE  # fn and validators may run: see _write\n",
                "",
                1,
            ),
            (
                "_core.py",
                "                self._phase = _APPENDING\n"
                "                # _append's single write, inlined, "
                "for an insert of a present key.\n",
                "",
                1,
            ),
            (
                "_core.py",
                "            finally:\n                self._phase = _IDLE\n\n"
                "    def _write_one_hooked",
                "            finally:\n                pass\n\n    def _write_one_hooked",
                1,
            ),
            (
                "_core.py",
                "            finally:\n                self._phase = _IDLE\n\n"
                "    def _write_one_general",
                "            finally:\n                pass\n\n    def _write_one_general",
                1,
            ),
        ],
    ),
    # What keeps memory equal to the log whatever interrupts a write (the core's
    # handler that applies a record the log holds, and the log's that counts it once
    # and cuts bytes it does not hold).
    "interrupt_handlers": (
        ("insert", "modify", "remove", "insert_10k_ints", "modify_10k"),
        [
            (
                "_core.py",
                """                records = log.total_records
                try:
                    size = log.append_operation(collection._head, named, blob)
                    previous = table.pop(key) if blob is None else table.put(key, named, stored)
                except BaseException:
                    if log.total_records != records:  # in the log: memory follows (_append)
                        table.settle((write,), (named,))
                    raise
""",
                """                size = log.append_operation(collection._head, named, blob)
                previous = table.pop(key) if blob is None else table.put(key, named, stored)
""",
                1,
            ),
            (
                "_core.py",
                """                records = log.total_records
                try:
                    size = log.append_operation(collection._head, named, blob)
                    # table.put, inlined: the key is present (a write from fn is refused),
                    # so its position and key bytes stay as they are.
                    table.entries[stored_key] = kept
                except BaseException:
                    if log.total_records != records:  # in the log: memory follows (_append)
                        table.settle(((stored_key, given, kept, blob),), (named,))
                    raise
""",
                """                size = log.append_operation(collection._head, named, blob)
                table.entries[stored_key] = kept
""",
                1,
            ),
            (
                "_log.py",
                """        file = self.file
        before = file.size
        total = self.total_records + 1
        try:
            file.append(_operation_frame(head, key, value, before))
            self.total_records = total
        except BaseException:
            # As in append: in the log exactly when the file grew, and then counted.
            if file.size != before:
                self.total_records = total
            else:  # not in the log: cut bytes written but not yet counted by the file
                with contextlib.suppress(OSError):
                    file.truncate(before)
            raise
        return file.size
""",
                """        file = self.file
        file.append(_operation_frame(head, key, value, file.size))
        self.total_records += 1
        return file.size
""",
                1,
            ),
        ],
    ),
    # The datetime extension type: the hook that packs a datetime as its isoformat()
    # text (docs/FORMAT.md), replaced by the floor's way, pydantic's JSON-mode dump, in
    # which a datetime is already text (another format, and another text).
    "datetime_hook": (
        ("insert", "modify"),
        [
            (
                "_codec.py",
                "validated, by_alias=False, round_trip=True, warnings=False\n",
                'validated, by_alias=False, round_trip=True, warnings=False, mode="json"\n',
                4,
            )
        ],
    ),
    # The log's checks before its short path: buffered, a schema generation other than
    # 0, a schema record pending, a failed fsync, a large value.
    "log_checks": (
        ("insert", "modify", "remove", "insert_10k_ints", "modify_10k"),
        [
            (
                "_log.py",
                """        if (
            not self._direct
            or self.generation
            or self.pending_schema is not None
            or self.failure is not None
            or (value is not None and len(value) >= LARGE_BODY)
        ):
            self.append(operation_record(head, key, value), 1)""",
                """        if False:
            self.append(operation_record(head, key, value), 1)""",
                1,
            )
        ],
    ),
    # The core's state checks before a single write's short path: open, no log
    # failure, no transaction in another thread, no hooks (indexes).
    "core_checks": (
        ("insert", "modify", "remove", "insert_10k_ints", "modify_10k"),
        [
            (
                "_core.py",
                "                or self.is_closed\n                or log.failure is not None\n"
                "                or self._txn_thread is not None\n",
                "",
                2,
            ),
            ("_core.py", "                or collection._hooks\n", "", 1),
            (
                "_core.py",
                "            if collection._hooks:\n"
                "                return self._write_one_hooked("
                "log, collection, write, value, compact)\n",
                "",
                1,
            ),
        ],
    ),
    # The validation of the value given, before its dump is validated (the floor dumps
    # what it is given and validates the dump only).
    "validate_given": (
        ("insert", "modify"),
        [
            (
                "_codec.py",
                "validated = values.validator.validate_python(value)\n",
                "validated = value\n",
                3,
            )
        ],
    ),
}


def ablated_tree(names: list[str], scratch: Path) -> Path:
    """Return a copy of ``src/`` under ``scratch`` with ``names``' checks taken out."""
    src = scratch / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in names:
        for file, old, new, times in ABLATIONS[name][1]:
            path = src / "typedstore" / file
            text = path.read_text()
            if text.count(old) != times:
                raise LookupError(
                    f"{name}: {file} holds its text {text.count(old)} times, "
                    f"not {times}: the ablation is stale"
                )
            path.write_text(text.replace(old, new))
    return src


def python_profile(workload: str, n: int, top: int) -> dict[str, tuple[float, float, list[Any]]]:
    """Return, for each subject, Python function calls and bytecodes per operation, and
    its ``top`` functions by bytecodes (``write_calls.counted``, in this process)."""
    found: dict[str, tuple[float, float, list[Any]]] = {}
    for subject in ("typedstore", "floor"):
        with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
            profiled = prepare(subject, workload, Path(one), n)
            _, codes, most = counted(
                profiled, functools.partial(prepare, subject, workload, Path(two), n), n, top
            )
        with tempfile.TemporaryDirectory() as three:
            calls = _python_calls(prepare(subject, workload, Path(three), n)) / n
        found[subject] = (calls, codes, most)
    return found


def _python_calls(run: Callable[[], None]) -> int:
    """Return the calls of Python functions ``run`` makes (builtins not counted)."""
    made = 0

    def profiler(frame: FrameType, event: str, arg: object) -> None:
        nonlocal made
        made += event == "call"

    sys.setprofile(profiler)
    try:
        run()
    finally:
        sys.setprofile(None)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument(
        "--ablate", action="append", default=[], metavar="NAME", choices=[*ABLATIONS, "all"]
    )
    parser.add_argument("--jobs", type=int, default=1, help="callgrind processes at once")
    parser.add_argument("--no-bytecodes", action="store_true")
    parser.add_argument("--worker", metavar="SUBJECT:WORKLOAD", help="run one worker")
    args = parser.parse_args(argv)
    if args.worker:
        subject, workload = args.worker.split(":", 1)
        run_worker(subject, workload, args.n)
        return 0
    workloads = args.workloads.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"": ablated_tree([], Path(scratch) / "plain")}
        for name in args.ablate:
            try:
                trees[name] = ablated_tree(
                    list(ABLATIONS) if name == "all" else [name], Path(scratch) / name
                )
            except LookupError as exc:
                print(f"ablation {exc}")
        for src in trees.values():  # compiled once, so that no count includes it
            instructions_ab.instructions(src, "floor:none:get", 1, __file__)
        jobs = [
            (name, "typedstore", workload)
            for name in trees
            for workload in workloads
            if _applies(name, workload)
        ]
        jobs += [("", "floor", workload) for workload in workloads]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            counts = dict(
                zip(
                    jobs,
                    pool.map(lambda job: instructions(trees[job[0]], job[1], job[2], args.n), jobs),
                    strict=True,
                )
            )
    print(f"instructions per operation (callgrind), n={args.n:,}; bytecodes (opcode trace)")
    for workload in workloads:
        mine, floor = counts["", "typedstore", workload], counts["", "floor", workload]
        print(
            f"{workload:18} typedstore {mine:9,.0f}  floor {floor:9,.0f}  "
            f"ratio {mine / floor:5.2f}  extra {mine - floor:8,.0f}",
            flush=True,
        )
        if not args.no_bytecodes:
            profile = python_profile(workload, args.n, 8)
            (calls, codes, most), (floor_calls, floor_codes, _) = profile.values()
            where = ", ".join(f"{name} {count}" for name, count in most)
            print(
                f"{'':18} Python calls {calls:4.1f} against {floor_calls:4.1f}, "
                f"bytecodes {codes:4.0f} against {floor_codes:4.0f}: {where}",
                flush=True,
            )
    for name in trees:
        for workload in workloads:
            if name and _applies(name, workload):
                less = counts[name, "typedstore", workload]
                print(
                    f"without {name:20} {workload:18} {less:9,.0f}  "
                    f"saves {counts['', 'typedstore', workload] - less:8,.0f}"
                )
    return 0


def _applies(name: str, workload: str) -> bool:
    """Whether ablation ``name`` ("" for none) is measured on ``workload``."""
    if name == "":
        return True
    if name == "all":  # a log without head checksums does not reopen
        return workload != "reopen_10k"
    return workload in ABLATIONS[name][0]


if __name__ == "__main__":
    sys.exit(main())
