"""Hostile review of the index and fast-path work (attack4): each test is a defect found,
kept so it stays fixed, or a promise attacked that held.

Each compares what a store holds, and its indexes, with a fresh open of its log or a
brute-force scan of the same data."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
