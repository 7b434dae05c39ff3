"""Shared fixtures: a fresh log path per test, a seeded random generator, Hypothesis profiles."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from typedstore import TypedStore
from typedstore._format import read_frame

S = TypeVar("S", bound="TypedStore[Any, Any]")

pytest_plugins = ["tests.pg"]  # the PostgreSQL server and schema fixtures

settings.register_profile(
    "default",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SEED = int(os.environ.get("TYPEDSTORE_TEST_SEED", random.randrange(2**32)))


class Settle(Protocol):
    """Return the store to assert on: the same one, or its log closed and opened again."""

    def __call__(self, store: S, /) -> S: ...


@pytest.fixture(params=["fresh", "reopened"])
def settle(request: pytest.FixtureRequest) -> Settle:
    """Run the test on the store as written and on a reopened one."""

    def same(store: S, /) -> S:
        return store

    def reopen(store: S, /) -> S:
        store.close()
        return type(store).open(store.path, config=store.config)

    return same if request.param == "fresh" else reopen


def frames_after(path: Path, offset: int) -> list[tuple[int, int]]:
    """Return ``(start, end)`` of each valid frame from ``offset`` to the end of the file."""
    buf = path.read_bytes()
    frames = []
    while offset < len(buf):
        end = read_frame(buf, offset)
        assert end != -1, f"no valid frame at offset {offset}"
        frames.append((offset, end))
        offset = end
    return frames


def pytest_report_header() -> str:
    return f"typedstore random seed: {SEED} (set TYPEDSTORE_TEST_SEED={SEED} to repeat)"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A random generator seeded from the run's printed seed and the test's name."""
    return random.Random(f"{SEED}:{request.node.nodeid}")


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """A path for a store's log in a fresh folder."""
    return tmp_path / "store.log"
