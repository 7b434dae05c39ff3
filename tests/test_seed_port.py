"""The Rust crate indexmap_store's integration tests (tests/integration.rs), ported one by one.

Each test names its original. Where the seed relied on Rust specifics the port says how it
maps them: ``u32`` arithmetic wraps explicitly, ``std::mem::forget`` becomes a child process
that dies without closing, and "0 bytes" after a full drain becomes "only the header".
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from typedstore import StoreConfig, TypedStore
from typedstore._format import decode_header, read_frame

SEED_COMPACTION = StoreConfig(compact_ratio=2.0, min_compact_bytes=0, buf_capacity=4096)
"""The seed's compaction tests' config: compact as soon as the policy allows."""


def _header_end(path: Path) -> int:
    """Return the byte length of the log's header, decoded from the file itself."""
    _, end = decode_header(path.read_bytes())
    return end


def _frame_ends(path: Path) -> list[int]:
    """Return the end offset of every valid frame after the header, stopping at the first gap."""
    buf = path.read_bytes()
    offset = _header_end(path)
    ends = []
    while (end := read_frame(buf, offset)) != -1:
        ends.append(end)
        offset = end
    return ends


def _write_a_b(path: Path) -> None:
    """Write the seed's two-record log (a=1, b=2), flushed and closed."""
    with TypedStore.open(path, str, int) as store:
        store.insert("a", 1)
        store.insert("b", 2)
        store.flush()


def test_basic_insert_get(log_path: Path) -> None:
    """basic_insert_get: inserted values are readable, counted and kept in insertion order."""
    with TypedStore.open(log_path, str, int) as store:
        store.insert("a", 1)
        store.insert("b", 2)
        store.insert("c", 3)
        assert store.get("a") == 1
        assert store.get("b") == 2
        assert len(store) == 3
        assert list(store.keys()) == ["a", "b", "c"]


def test_modify_edits_in_place(log_path: Path) -> None:
    """modify_edits_in_place: modify replaces the value by what fn returns and returns it."""
    with TypedStore.open(log_path, str, list[int]) as store:
        store.insert("xs", [1, 2, 3])

        def push_four(xs: list[int]) -> list[int]:
            xs.append(4)
            return xs

        assert store.modify("xs", push_four) == [1, 2, 3, 4]
        assert store.get("xs") == [1, 2, 3, 4]
    with TypedStore.open(log_path, str, list[int], readonly=True) as reopened:
        assert reopened.get("xs") == [1, 2, 3, 4]


def test_persistence_across_reopen(log_path: Path) -> None:
    """persistence_across_reopen: inserts, a modify and a remove all survive close and reopen."""
    with TypedStore.open(log_path, str, int) as store:
        store.insert("a", 1)
        store.insert("b", 2)
        store.insert("c", 3)
        store.modify("b", lambda _: 22)
        store.remove("a")
        store.flush()
    with TypedStore.open(log_path, str, int) as reopened:
        assert len(reopened) == 2
        assert reopened.get("a") is None
        assert reopened.get("b") == 22
        assert reopened.get("c") == 3
        assert list(reopened.keys()) == ["b", "c"]


@pytest.mark.slow
def test_compaction_shrinks_log(log_path: Path) -> None:
    """compaction_shrinks_log: 1000 overwrites of one key compact down to header + one record."""
    with TypedStore.open(log_path, int, int, config=SEED_COMPACTION) as store:
        for _ in range(1000):
            store.insert(1, 1)
        store.flush()
        assert _frame_ends(log_path) == [log_path.stat().st_size]
        single = log_path.with_name("single.log")
        with TypedStore.open(single, int, int) as one_insert:
            one_insert.insert(1, 1)
        assert log_path.stat().st_size == single.stat().st_size
        with TypedStore.open(log_path, int, int, config=SEED_COMPACTION, readonly=True) as reader:
            assert len(reader) == 1
            assert reader.get(1) == 1


def test_recovers_from_torn_tail(log_path: Path) -> None:
    """recovers_from_torn_tail: garbage appended after the last record is dropped on reopen."""
    _write_a_b(log_path)
    size = log_path.stat().st_size
    with log_path.open("ab") as file:
        file.write(b"\xff\xff\xff\xff\xde\xad")
    with TypedStore.open(log_path, str, int) as reopened:
        assert len(reopened) == 2
        assert reopened.get("a") == 1
        assert reopened.get("b") == 2
        assert reopened.recovery is not None
        assert reopened.recovery.kind == "torn_tail"
    assert log_path.stat().st_size == size


def test_recovers_from_truncated_payload(log_path: Path) -> None:
    """recovers_from_truncated_payload: a last record cut short is dropped and truncated away."""
    _write_a_b(log_path)
    original_size = log_path.stat().st_size
    with log_path.open("r+b") as file:
        file.truncate(original_size - 2)
    with TypedStore.open(log_path, str, int) as reopened:
        assert len(reopened) == 1
        assert reopened.get("a") == 1
        assert "b" not in reopened
    assert log_path.stat().st_size < original_size - 2


def test_remove_preserves_remaining_order(log_path: Path) -> None:
    """remove_preserves_remaining_order: removing a middle key keeps the others' order."""
    with TypedStore.open(log_path, int, int) as store:
        for i in range(5):
            store.insert(i, i * 10)
        store.remove(2)
        assert list(store.keys()) == [0, 1, 3, 4]
    with TypedStore.open(log_path, int, int) as reopened:
        assert list(reopened.keys()) == [0, 1, 3, 4]


def test_update_keeps_position(log_path: Path) -> None:
    """update_keeps_position: overwriting a key changes its value but not its position."""
    expected = [(10, 100), (20, 999), (30, 300)]
    with TypedStore.open(log_path, int, int) as store:
        store.insert(10, 100)
        store.insert(20, 200)
        store.insert(30, 300)
        store.insert(20, 999)
        assert list(store.items()) == expected
    with TypedStore.open(log_path, int, int) as reopened:
        assert list(reopened.items()) == expected


_DIE_WITHOUT_CLOSE = textwrap.dedent(
    """
    import os, sys
    from typedstore import StoreConfig, TypedStore

    store = TypedStore.open(sys.argv[1], int, int, config=StoreConfig(sync_on_write=True))
    store.insert(1, 1)
    store.insert(2, 2)
    os._exit(0)  # no close, no flush, no finalizers: the process just ends
    """
)


def test_sync_on_write_durable(log_path: Path) -> None:
    """sync_on_write_durable: with sync_on_write, a writer that dies without close loses nothing."""
    result = subprocess.run(
        [sys.executable, "-c", _DIE_WITHOUT_CLOSE, os.fspath(log_path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    config = StoreConfig(sync_on_write=True)
    with TypedStore.open(log_path, int, int, config=config) as reopened:
        assert reopened.get(1) == 1
        assert reopened.get(2) == 2
        assert reopened.recovery is None


def test_empty_after_full_delete_compacts(log_path: Path) -> None:
    """empty_after_full_delete_compacts: a fully drained store compacts to its header alone."""
    with TypedStore.open(log_path, int, int, config=SEED_COMPACTION) as store:
        for i in range(100):
            store.insert(i, i)
        for i in range(100):
            store.remove(i)
        store.flush()
        assert log_path.stat().st_size == _header_end(log_path)
    with TypedStore.open(log_path, int, int) as reopened:
        assert len(reopened) == 0


def test_many_inserts_and_iter(log_path: Path) -> None:
    """many_inserts_and_iter: 10,000 inserts are all counted and iterated, also after reopen."""
    expected_sum = sum((i * 3) % 2**32 for i in range(10_000))
    with TypedStore.open(log_path, int, int) as store:
        for i in range(10_000):
            store.insert(i, (i * 3) % 2**32)
        store.flush()
        assert len(store) == 10_000
        assert sum(store.values()) == expected_sum
    with TypedStore.open(log_path, int, int, readonly=True) as reopened:
        assert len(reopened) == 10_000
        assert sum(reopened.values()) == expected_sum
        assert list(reopened) == list(range(10_000))


def test_modify_missing(log_path: Path) -> None:
    """modify_missing_returns_none: modify of a missing key raises KeyError and writes nothing."""
    with TypedStore.open(log_path, str, int) as store:
        size = log_path.stat().st_size
        with pytest.raises(KeyError, match="missing"):
            store.modify("missing", lambda value: value)
        assert log_path.stat().st_size == size
        assert len(store) == 0
