"""Hostile review of the index and fast-path work (attack4): each test is a defect found,
kept so it stays fixed, or a promise attacked that held.

Each compares what a store holds, and its indexes, with a fresh open of its log or a
brute-force scan of the same data."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from typedstore import Collection, Database, Index

_THREADED_PLAIN_WRITES = textwrap.dedent(
    """
    import sys, threading
    import msgpack
    from typedstore import TypedStore

    assert msgpack.Packer.__module__ == "msgpack.fallback", msgpack.Packer
    sys.setswitchinterval(1e-6)
    path = sys.argv[1]
    store = TypedStore.open(path, str, str)

    def value(key):
        return f"value-{key}" * (1 + int(key.split("-")[1]) % 5)

    def write(thread):
        for step in range(1500):
            key = f"{thread}-{step}"
            store[key] = value(key)

    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    with TypedStore.open(path, str, str) as reopened:
        assert len(reopened) == 6000, len(reopened)
        assert all(stored == value(key) for key, stored in reopened.items())
    print("ok")
    """
)


@pytest.mark.slow
def test_threads_writing_plain_data_with_msgpacks_pure_python_packer_keep_the_log_readable(
    tmp_path: Path,
) -> None:
    """msgpack's pure-Python fallback (PyPy, or ``MSGPACK_PUREPYTHON``) runs Python code
    while it packs, where another thread may enter the same packer: threads writing plain
    keys and values through the packer all threads shared wrote checksum-valid records
    holding another write's bytes, and the next open refused the log (CorruptLogError,
    'undecodable record: unpack(b) received extra data')."""
    env = {**os.environ, "MSGPACK_PUREPYTHON": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _THREADED_PLAIN_WRITES, str(tmp_path / "plain.log")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


class Reading(BaseModel):
    """A measurement: its value, ordered."""

    value: float


class Readings(Collection[str, Reading]):
    by_value: Index[Reading, float] = Index(lambda reading: reading.value, ordered=True)


class Lab(Database):
    readings: Readings


@pytest.mark.parametrize(
    ("low", "high"),
    [(math.nan, None), (math.nan, 5.0), (math.nan, math.nan), (None, math.nan), (3.0, math.nan)],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_a_nan_bound_of_a_range_holds_nothing(
    log_path: Path, low: float | None, high: float | None, reverse: bool
) -> None:
    """``range(lo, hi)`` lists the entries with ``lo <= index key < hi``: with a NaN bound,
    none (NaN orders with nothing), as a scan finds, in a transaction's view too. A NaN
    low bound listed every entry below the high one (the sorted keys bisected it to 0)."""
    with Lab.open(log_path) as lab:
        for number in range(10):
            lab.readings[f"k{number}"] = Reading(value=float(number))

        def scan(items: list[tuple[str, Reading]]) -> list[tuple[str, Reading]]:
            found = sorted(
                (
                    (key, reading)
                    for key, reading in items
                    if (low is None or low <= reading.value)
                    and (high is None or reading.value < high)
                ),
                key=lambda pair: pair[1].value,
            )
            return found[::-1] if reverse else found

        assert lab.readings.by_value.range(low, high, reverse=reverse) == scan(
            list(lab.readings.items())
        )
        with lab.transaction() as txn:
            txn.readings["k3"] = Reading(value=30.0)
            txn.readings["new"] = Reading(value=4.5)
            assert txn.readings.by_value.range(low, high, reverse=reverse) == scan(
                list(txn.readings.items())
            )
