"""StoreConfig: README's defaults, validation at construction, frozen and keyword-only."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from typedstore import StoreConfig, TypedStore

MIB = 1024 * 1024


def test_defaults_match_spec() -> None:
    """The defaults are those of README's configuration table, with strict recovery."""
    config = StoreConfig()
    assert config.sync_on_write is False
    assert config.write_through is True
    assert config.min_compact_bytes == MIB
    assert config.compact_ratio == 2.0
    assert config.buf_capacity == MIB
    assert config.recovery == "strict"


def test_valid_settings_are_kept() -> None:
    """Valid settings at their limits are accepted and kept as given."""
    config = StoreConfig(
        sync_on_write=True,
        write_through=True,
        min_compact_bytes=0,
        compact_ratio=1.0001,
        buf_capacity=1,
        recovery="skip",
    )
    assert config.sync_on_write is True
    assert config.min_compact_bytes == 0
    assert config.compact_ratio == 1.0001
    assert config.buf_capacity == 1
    assert config.recovery == "skip"


@pytest.mark.parametrize("recovery", ["strict", "truncate", "skip"])
def test_every_recovery_mode_is_accepted(recovery: Any) -> None:
    """Each documented recovery mode is a valid setting."""
    assert StoreConfig(recovery=recovery).recovery == recovery


_BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "ratio_one": ({"compact_ratio": 1.0}, "compact_ratio must be above 1"),
    "ratio_int_one": ({"compact_ratio": 1}, "compact_ratio must be above 1"),
    "ratio_below_one": ({"compact_ratio": 0.5}, "compact_ratio must be above 1"),
    "ratio_negative": ({"compact_ratio": -2.0}, "compact_ratio must be above 1"),
    "ratio_nan": ({"compact_ratio": math.nan}, "compact_ratio must be above 1"),
    "min_compact_negative": ({"min_compact_bytes": -1}, "min_compact_bytes must be at least 0"),
    "buf_negative": ({"buf_capacity": -1}, "buf_capacity must be at least 1"),
    "buf_zero": ({"buf_capacity": 0}, "buf_capacity must be at least 1"),
    "recovery_unknown": ({"recovery": "repair"}, "recovery must be one of"),
    "recovery_case": ({"recovery": "Strict"}, "recovery must be one of"),
    "sync_without_write_through": (
        {"sync_on_write": True, "write_through": False},
        "sync_on_write=True needs write_through=True",
    ),
}


@pytest.mark.parametrize(("kwargs", "message"), _BAD_VALUES.values(), ids=_BAD_VALUES.keys())
def test_impossible_values_raise_valueerror(kwargs: dict[str, Any], message: str) -> None:
    """An impossible setting raises ValueError at construction, naming the field."""
    with pytest.raises(ValueError, match=message):
        StoreConfig(**kwargs)


_BAD_TYPES: dict[str, tuple[dict[str, Any], str]] = {
    "sync_int": ({"sync_on_write": 1}, "sync_on_write must be a bool"),
    "sync_none": ({"sync_on_write": None}, "sync_on_write must be a bool"),
    "write_through_str": ({"write_through": "yes"}, "write_through must be a bool"),
    "min_compact_float": ({"min_compact_bytes": 1.5}, "min_compact_bytes must be an int"),
    "min_compact_bool": ({"min_compact_bytes": True}, "min_compact_bytes must be an int"),
    "buf_str": ({"buf_capacity": "4096"}, "buf_capacity must be an int"),
    "buf_bool": ({"buf_capacity": True}, "buf_capacity must be an int"),
    "ratio_str": ({"compact_ratio": "2.0"}, "compact_ratio must be a number"),
    "ratio_bool": ({"compact_ratio": True}, "compact_ratio must be a number"),
    "ratio_none": ({"compact_ratio": None}, "compact_ratio must be a number"),
}


@pytest.mark.parametrize(("kwargs", "message"), _BAD_TYPES.values(), ids=_BAD_TYPES.keys())
def test_wrong_types_raise_typeerror(kwargs: dict[str, Any], message: str) -> None:
    """A setting of the wrong type, including a bool where an int is due, raises TypeError."""
    with pytest.raises(TypeError, match=message):
        StoreConfig(**kwargs)


def test_is_frozen() -> None:
    """Assigning to a field of a StoreConfig raises FrozenInstanceError."""
    config = StoreConfig()
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign"):
        config.compact_ratio = 3.0  # type: ignore[misc]  # the assignment is what is tested
    assert config.compact_ratio == 2.0


def test_is_keyword_only() -> None:
    """Positional arguments are refused: every setting is passed by name."""
    positional: tuple[Any, ...] = (True,)
    with pytest.raises(TypeError, match="positional"):
        StoreConfig(*positional)


def test_replace_is_validated_too() -> None:
    """dataclasses.replace checks the new settings like construction does."""
    with pytest.raises(ValueError, match="compact_ratio must be above 1"):
        dataclasses.replace(StoreConfig(), compact_ratio=1.0)


def test_equal_settings_compare_equal() -> None:
    """Two configs with the same settings are equal and hash alike."""
    assert StoreConfig(buf_capacity=10) == StoreConfig(buf_capacity=10)
    assert hash(StoreConfig(buf_capacity=10)) == hash(StoreConfig(buf_capacity=10))
    assert StoreConfig(buf_capacity=10) != StoreConfig(buf_capacity=11)


def test_open_rejects_non_config(log_path: Path) -> None:
    """Passing something other than a StoreConfig as config raises TypeError and creates nothing."""
    bad: Any = {"sync_on_write": True}
    with pytest.raises(TypeError, match="config must be a StoreConfig"):
        TypedStore.open(log_path, str, int, config=bad)
    assert not log_path.exists()


def test_store_reports_its_config(log_path: Path) -> None:
    """An open store exposes the config it was opened with, or the defaults."""
    config = StoreConfig(write_through=False, buf_capacity=128)
    with TypedStore.open(log_path, str, int, config=config) as store:
        assert store.config == config
    with TypedStore.open(log_path, str, int) as store:
        assert store.config == StoreConfig()
