"""The public API: exactly the names in typedstore.__all__, and one root for its errors."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import typedstore

PUBLIC_NAMES = [
    "Collection",
    "CorruptLogError",
    "Database",
    "DatabaseTransaction",
    "EncodingError",
    "Index",
    "NotAStoreError",
    "PostgresEngine",
    "Recovery",
    "RecoveryMode",
    "SchemaMismatchError",
    "StoreClosedError",
    "StoreConfig",
    "StoreError",
    "StoreFailedError",
    "StoreLockedError",
    "StoreReadOnlyError",
    "Transaction",
    "TypedStore",
    "UniqueViolationError",
]

PUBLIC_ERRORS = [
    name
    for name in PUBLIC_NAMES
    if isinstance(getattr(typedstore, name, None), type)
    and issubclass(getattr(typedstore, name), BaseException)
]


def test_all_is_pinned() -> None:
    """typedstore.__all__ lists exactly the pinned public names: growing the API is a decision."""
    assert typedstore.__all__ == PUBLIC_NAMES


def test_all_is_sorted() -> None:
    """typedstore.__all__ is kept sorted."""
    assert typedstore.__all__ == sorted(typedstore.__all__)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_is_importable(name: str) -> None:
    """Each public name can be imported from typedstore itself."""
    module = importlib.import_module("typedstore")
    assert getattr(module, name) is getattr(typedstore, name)
    namespace: dict[str, object] = {}
    exec(f"from typedstore import {name}", namespace)
    assert namespace[name] is getattr(typedstore, name)


def test_star_import_gives_the_public_names() -> None:
    """``from typedstore import *`` binds exactly the public names."""
    namespace: dict[str, object] = {}
    exec("from typedstore import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == PUBLIC_NAMES


def test_errors_are_found() -> None:
    """The public errors are the names ending in Error, so the root check below covers them all."""
    assert [name for name in PUBLIC_NAMES if name.endswith("Error")] == PUBLIC_ERRORS


@pytest.mark.parametrize("name", PUBLIC_ERRORS)
def test_public_error_derives_from_store_error(name: str) -> None:
    """Every public exception is a StoreError, so one except clause catches the store's errors."""
    assert issubclass(getattr(typedstore, name), typedstore.StoreError)


@pytest.mark.slow
def test_mypy_strict_passes_without_the_projects_config(tmp_path: Path) -> None:
    """mypy --strict -p typedstore, run as a user's CI runs it (no mypy.ini), finds no error."""
    cache = ["--cache-dir", str(tmp_path / "mypy-cache")]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file=", "-p", "typedstore", *cache],
        cwd=tmp_path,  # outside the repository: none of its configuration is found
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
