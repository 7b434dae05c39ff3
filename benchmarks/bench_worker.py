"""Run one benchmark subject (or one typedstore-only measurement) in this process.

``bench.py`` spawns this script once per subject and repetition; it prints one JSON object
on stdout. Modes:

- ``run SUBJECT``: the workload phases, each followed by a read-back check, then the
  Rust crate's five scenarios (``bench_scenarios.py``) where the subject supports them.
- ``baseline``: decode+validate of the same records from in-memory lists, and read costs.
- ``tracemalloc``: the memory typedstore holds beyond a plain dict of the same values.
- ``scaling``: insert, reopen and compact of typedstore at one size.
- ``fsync-probe``: what a write plus fdatasync costs here, appending and overwriting.

Any wrong answer exits with status 2 and a message naming subject, phase, key, expected
and got.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import struct
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import msgpack

from bench_model import FrozenUser, User, iter_raw_records, records
from bench_scenarios import run_scenarios
from bench_subjects import FSYNC, Subject, disk_bytes, make
from typedstore import TypedStore

CHECK_SAMPLE = 200
EXT_DATETIME = 1


@dataclass(frozen=True)
class Plan:
    """Which keys each phase touches, the same for the same ``n`` and ``seed``."""

    keys: list[str]
    get_order: list[str]
    modified: list[str]
    removed: list[str]
    check: list[str]


def make_plan(keys: list[str], seed: int) -> Plan:
    """Draw the get order, the modify and remove samples and the read-back sample."""
    rng = random.Random(seed + 1)
    get_order = list(keys)
    rng.shuffle(get_order)
    tenth = max(1, len(keys) // 10)
    modified = rng.sample(keys, tenth)
    removed = rng.sample(keys, tenth)
    # The read-back sample always holds removed keys, modified keys and random others.
    wanted = removed[: CHECK_SAMPLE // 4] + modified[: CHECK_SAMPLE // 4]
    wanted += rng.sample(keys, min(len(keys), CHECK_SAMPLE))
    check = list(dict.fromkeys(wanted))[:CHECK_SAMPLE]
    return Plan(keys, get_order, modified, removed, check)


def fail(message: str) -> NoReturn:
    print(f"bench_worker: {message}", file=sys.stderr)
    sys.exit(2)


def check(
    subject: Subject, phase: str, keys: list[str], expected: dict[str, dict[str, Any]]
) -> None:
    """Read every key back and compare it with the expected plain dump."""
    for key in keys:
        got = subject.get(key)
        want = expected.get(key)
        got_dump = None if got is None else got.model_dump(mode="json")
        if got_dump != want:
            fail(
                f"read-back mismatch: subject={subject.name} phase={phase} key={key} "
                f"expected={want} got={got_dump}"
            )


def check_store(
    store: TypedStore[str, User], phase: str, sample: dict[str, dict[str, Any]], size: int
) -> None:
    """Check a typedstore-only run's store: its size, and a sample of its values."""
    if len(store) != size:
        fail(f"subject=typedstore phase={phase} expected {size} entries, got {len(store)}")
    for key, want in sample.items():
        got = store.get(key)
        got_dump = None if got is None else got.model_dump(mode="json")
        if got_dump != want:
            fail(f"subject=typedstore phase={phase} key={key} expected={want} got={got_dump}")


def maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_subject(name: str, n: int, seed: int, directory: Path) -> dict[str, Any]:
    """Run every phase of the workload on one subject and return its measurements."""
    subject = make(name)
    pairs = records(n, seed)
    keys = [key for key, _user in pairs]
    plan = make_plan(keys, seed)
    expected = {key: user.model_dump(mode="json") for key, user in pairs}
    to_remove = plan.removed[: subject.remove_cap]
    removed = set(to_remove)
    live_key = next(key for key in keys if key not in removed)
    phases: dict[str, dict[str, float]] = {}

    def record(phase: str, seconds: float, ops: int) -> None:
        phases[phase] = {"seconds": seconds, "ops": ops}
        check(subject, phase, plan.check, expected)

    directory.mkdir(parents=True, exist_ok=True)
    subject.prepare()
    gc.collect()
    rss_before = maxrss_kib()
    subject.open(directory)

    def insert_all() -> None:
        for key, user in pairs:
            subject.insert(key, user)
        subject.flush()

    record("insert", timed(insert_all), n)

    def get_all() -> None:
        get = subject.get
        for key in plan.get_order:
            if get(key) is None:
                fail(f"subject={name} phase=get key={key} expected a value, got None")

    record("get", timed(get_all), n)

    def modify_all() -> None:
        for key in plan.modified:
            subject.modify_age(key)

    seconds = timed(modify_all)
    for key in plan.modified:
        expected[key]["age"] += 1
    record("modify", seconds, len(plan.modified))

    def remove_all() -> None:
        for key in to_remove:
            subject.remove(key)

    seconds = timed(remove_all)
    for key in to_remove:
        del expected[key]
    record("remove", seconds, len(to_remove))

    def reopen() -> None:
        subject.open(directory)
        if subject.get(live_key) is None:
            fail(f"subject={name} phase=reopen key={live_key} expected a value, got None")

    phases["close"] = {"seconds": timed(subject.close), "ops": 1}
    record("reopen", timed(reopen), 1)
    disk_before = disk_bytes(directory)
    disk_after: int | None = None
    if subject.durability != FSYNC:
        compacted: list[bool] = []
        seconds = timed(lambda: compacted.append(subject.compact()))
        if compacted[0]:
            disk_after = disk_bytes(directory)
            record("compact", seconds, 1)
            subject.close()
            record("reopen_compacted", timed(reopen), 1)
    subject.close()
    rss_after = maxrss_kib()
    opener = subject.scenario_opener()
    scenarios = None
    if opener is not None and subject.durability != FSYNC:
        scenarios = run_scenarios(opener, directory / "scenarios", name)
    return {
        "mode": "run",
        "subject": name,
        "class": subject.durability,
        "n": n,
        "live": len(expected),
        "phases": phases,
        "disk_before_compact": disk_before,
        "disk_after_compact": disk_after,
        "maxrss_growth_kib": rss_after - rss_before,
        "settings": subject.settings,
        "scenarios": scenarios,
    }


def _encode_ext(value: object) -> msgpack.ExtType:
    if isinstance(value, datetime):
        return msgpack.ExtType(EXT_DATETIME, value.isoformat().encode())
    raise TypeError(f"cannot pack {type(value).__name__}")


def _decode_ext(code: int, data: bytes) -> object:
    if code == EXT_DATETIME:
        return datetime.fromisoformat(data.decode())
    return msgpack.ExtType(code, data)


def _pack(user: User) -> bytes:
    packed = msgpack.packb(user.model_dump(mode="python"), default=_encode_ext)
    assert isinstance(packed, bytes)
    return packed


# The model's validator itself, as typedstore calls it: ``User.model_validate`` adds a
# Python call around it, which would pad the baselines in typedstore's favour.
_validate_user = User.__pydantic_validator__.validate_python


def _decode_validate(blobs: list[bytes]) -> list[User]:
    return [_validate_user(msgpack.unpackb(blob, ext_hook=_decode_ext)) for blob in blobs]


def _decode_validate_tight(blobs: list[bytes]) -> None:
    """Decode and validate each blob, keeping nothing, with the cyclic collector paused.

    These are the conditions typedstore's replay runs under (it pauses the collector and
    keeps only the bytes of mutable values), so this is the baseline its target uses.
    """
    gc.disable()
    try:
        for blob in blobs:
            _validate_user(msgpack.unpackb(blob, ext_hook=_decode_ext))
    finally:
        gc.enable()


def _validate_json(texts: list[str]) -> list[User]:
    return [User.model_validate_json(text) for text in texts]


def _time_per_call(action: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``calls`` calls made by ``action``: the best of three runs.

    Each run starts from a collected heap, so that no measurement pays for a garbage
    collection of what an earlier one left behind.
    """
    best = float("inf")
    for _ in range(3):
        gc.collect()
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best / calls


_HEADER_FIXED = struct.Struct("<8sHHI")  # docs/FORMAT.md: magic, version, flags, meta length
_FRAME_HEAD = struct.Struct("<III")  # head checksum, body length, body checksum
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _walk_frames(buf: bytes) -> int:
    """Check every frame's two checksums and split its body, as docs/FORMAT.md lays it out.

    The part of a replay that is neither decoding nor validation: a lower bound on what
    reading a checksummed log costs in Python. Returns how many frames it walked.
    """
    _magic, _version, _flags, meta_length = _HEADER_FIXED.unpack_from(buf, 0)
    offset = _HEADER_FIXED.size + meta_length + 4
    view = memoryview(buf)
    frames = 0
    while offset < len(buf):
        head_crc, length, body_crc = _FRAME_HEAD.unpack_from(buf, offset)
        seed = zlib.crc32(_U64.pack(offset))
        if zlib.crc32(view[offset + 4 : offset + 12], seed) != head_crc:
            fail(f"phase=frame-walk: bad head checksum at {offset}")
        end = offset + 12 + length
        if zlib.crc32(view[offset + 12 : end]) != body_crc:
            fail(f"phase=frame-walk: bad body checksum at {offset}")
        (key_length,) = _U32.unpack_from(buf, offset + 13)
        _key, _value = (
            buf[offset + 17 : offset + 17 + key_length],
            buf[offset + 17 + key_length : end],
        )
        frames += 1
        offset = end
    return frames


def _compacted_log(users: list[User], directory: Path) -> bytes:
    """Return the bytes of a compacted typedstore log holding ``users``."""
    path = directory / "walked.log"
    with TypedStore.open(path, str, User) as store:
        for index, user in enumerate(users):
            store[f"user:{index:07d}"] = user
        store.compact()
    return path.read_bytes()


def run_baseline(n: int, seed: int, directory: Path) -> dict[str, Any]:
    """Decode+validate the records a reopen replays, from in-memory lists; read costs."""
    pairs = records(n, seed)
    keys = [key for key, _user in pairs]
    plan = make_plan(keys, seed)
    values = dict(pairs)
    log_values = [user for _key, user in pairs]  # every value record the log holds
    for key in plan.modified:
        values[key] = values[key].model_copy(update={"age": values[key].age + 1})
        log_values.append(values[key])
    for key in plan.removed:
        values.pop(key, None)
    live = list(values.values())
    live_blobs = [_pack(user) for user in live]
    log_blobs = [_pack(user) for user in log_values]
    live_json = [user.model_dump_json() for user in live]
    _decode_validate(live_blobs[:100])
    _validate_json(live_json[:100])
    gc.collect()
    decode_live = timed(lambda: _decode_validate_tight(live_blobs))
    gc.collect()
    decode_log = timed(lambda: _decode_validate_tight(log_blobs))
    gc.collect()
    kept_live = timed(lambda: _decode_validate(live_blobs))
    gc.collect()
    json_live = timed(lambda: _validate_json(live_json))
    log = _compacted_log(live, directory)
    walked = _walk_frames(log)
    if walked != len(live):
        fail(f"phase=frame-walk: walked {walked} frames, expected {len(live)}")
    walk_live = timed(lambda: _walk_frames(log))
    return {
        "mode": "baseline",
        "n": n,
        "live_records": len(live_blobs),
        "log_value_records": len(log_blobs),
        "decode_validate_live_s": decode_live,
        "decode_validate_log_s": decode_log,
        "decode_validate_live_kept_s": kept_live,
        "validate_json_live_s": json_live,
        "frame_walk_live_s": walk_live,
        **read_costs(min(n, 20_000), seed, directory),
    }


def read_costs(n: int, seed: int, directory: Path) -> dict[str, Any]:
    """What one typedstore read costs for a mutable and for a frozen value type."""
    raw = [(key, fields) for key, fields in itertools.islice(iter_raw_records(n, seed), n)]
    mutable = TypedStore.open(directory / "mutable.log", str, User)
    frozen = TypedStore.open(directory / "frozen.log", str, FrozenUser)
    try:
        for key, fields in raw:
            mutable[key] = User.model_validate(fields)
            frozen[key] = FrozenUser.model_validate(fields)
        keys = [key for key, _fields in raw]
        sample = keys[0]
        frozen_shared = frozen[sample] is frozen[sample]
        mutable_copied = mutable[sample] is not mutable[sample]
        get_mutable = _time_per_call(lambda: [mutable[key] for key in keys], n)
        get_frozen = _time_per_call(lambda: [frozen[key] for key in keys], n)
        dumps = [user.model_dump() for user in (mutable[key] for key in keys)]
        validate_dump = _time_per_call(lambda: [_validate_user(d) for d in dumps], n)
        blobs = [_pack(mutable[key]) for key in keys]
        decode_validate = _time_per_call(lambda: _decode_validate(blobs), n)
        copies = [mutable[key] for key in keys]
        deep_copy = _time_per_call(lambda: [u.model_copy(deep=True) for u in copies], n)
    finally:
        mutable.close()
        frozen.close()
    return {
        "reads_n": n,
        "get_mutable_s": get_mutable,
        "get_frozen_s": get_frozen,
        "validate_cached_dump_s": validate_dump,
        "decode_validate_cached_bytes_s": decode_validate,
        "deep_copy_s": deep_copy,
        "frozen_read_is_shared": frozen_shared,
        "mutable_read_is_copy": mutable_copied,
    }


def run_tracemalloc(n: int, seed: int, directory: Path) -> dict[str, Any]:
    """Traced bytes of a plain dict of N Users (V) and of a store holding them (S)."""
    texts = [
        (key, User.model_validate(fields).model_dump_json())
        for key, fields in iter_raw_records(n, seed)
    ]
    tracemalloc.start()
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    # Fresh strings, lists and datetimes: nothing in V is shared with ``texts``.
    plain = {str(key.encode(), "ascii"): User.model_validate_json(text) for key, text in texts}
    gc.collect()
    values_bytes = tracemalloc.get_traced_memory()[0] - start
    del plain
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    store = TypedStore.open(directory / "traced.log", str, User)
    for key, text in texts:
        store.insert(str(key.encode(), "ascii"), User.model_validate_json(text))
    gc.collect()
    store_bytes = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    sample = {key: json.loads(text) for key, text in texts[:: max(1, n // CHECK_SAMPLE)]}
    check_store(store, "tracemalloc", sample, n)
    store.close()
    return {
        "mode": "tracemalloc",
        "n": n,
        "values_bytes": values_bytes,
        "store_bytes": store_bytes,
        "overhead": (store_bytes - values_bytes) / values_bytes,
    }


def _chunks(n: int, seed: int, size: int) -> Iterator[list[tuple[str, User]]]:
    raw = iter_raw_records(n, seed)
    while chunk := list(itertools.islice(raw, size)):
        yield [(key, User.model_validate(fields)) for key, fields in chunk]


def run_scaling(n: int, seed: int, directory: Path) -> dict[str, Any]:
    """Insert n records (generated in chunks, outside the timer), reopen, compact."""
    gc.collect()
    rss_before = maxrss_kib()
    path = directory / "scaling.log"
    store = TypedStore.open(path, str, User)
    insert_s = 0.0
    last = ""
    sample: dict[str, dict[str, Any]] = {}  # every 997th record, to read back
    for chunk in _chunks(n, seed, 10_000):
        start = time.perf_counter()
        for key, user in chunk:
            store[key] = user
        insert_s += time.perf_counter() - start
        last = chunk[-1][0]
        sample |= {key: user.model_dump(mode="json") for key, user in chunk[::997]}
        del chunk
    insert_s += timed(store.flush)
    store.close()
    start = time.perf_counter()
    store = TypedStore.open(path, str, User)
    if store.get(last) is None:
        fail(f"subject=typedstore phase=scaling-reopen key={last} expected a value, got None")
    reopen_s = time.perf_counter() - start
    check_store(store, "scaling-reopen", sample, n)
    compact_s = timed(store.compact)
    check_store(store, "scaling-compact", sample, n)
    disk = disk_bytes(directory)
    store.close()
    return {
        "mode": "scaling",
        "n": n,
        "insert_s": insert_s,
        "reopen_s": reopen_s,
        "compact_s": compact_s,
        "disk_bytes": disk,
        "maxrss_growth_kib": maxrss_kib() - rss_before,
    }


def run_fsync_probe(n: int, directory: Path) -> dict[str, Any]:
    """What one 110-byte write plus fdatasync costs here, appending versus overwriting.

    An append grows the file, so each fdatasync must also commit the new file size to the
    file system's journal; an overwrite inside a file already that long does not. Medians
    of ``n`` writes each, alternating the two files.
    """
    directory.mkdir(parents=True, exist_ok=True)
    record = b"r" * 110
    appended = os.open(directory / "appended", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    overwritten = os.open(directory / "overwritten", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(overwritten, bytes(len(record) * n), 0)
        os.fsync(overwritten)
        times: dict[str, list[float]] = {"append": [], "overwrite": []}
        for index in range(n):
            for name, fd in (("append", appended), ("overwrite", overwritten)):
                start = time.perf_counter()
                os.pwrite(fd, record, index * len(record))
                os.fdatasync(fd)
                times[name].append(time.perf_counter() - start)
    finally:
        os.close(appended)
        os.close(overwritten)
    return {
        "mode": "fsync-probe",
        "n": n,
        "append_fdatasync_s": statistics.median(times["append"]),
        "overwrite_fdatasync_s": statistics.median(times["overwrite"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "mode", choices=["run", "baseline", "tracemalloc", "scaling", "fsync-probe"]
    )
    parser.add_argument("--subject", default="typedstore")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    directory: Path = args.dir
    try:
        if args.mode == "run":
            result = run_subject(args.subject, args.n, args.seed, directory)
        elif args.mode == "baseline":
            result = run_baseline(args.n, args.seed, directory)
        elif args.mode == "tracemalloc":
            result = run_tracemalloc(args.n, args.seed, directory)
        elif args.mode == "fsync-probe":
            result = run_fsync_probe(args.n, directory)
        else:
            result = run_scaling(args.n, args.seed, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
