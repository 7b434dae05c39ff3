"""Typed application settings: defaults on the first run, validated updates, kept across runs.

A declarative store class binds the types once, like a table class:
``class SettingsStore(TypedStore[str, Settings])``. Each "run" below opens the store,
reads the profile's settings (writing the defaults the first time) and closes it.

Run it with ``python examples/settings.py [LOG]``. The log defaults to
``./data/settings.log`` under the current directory; an old one is removed first.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from typedstore import StoreConfig, TypedStore

DEFAULT_LOG = Path("data") / "settings.log"


class Settings(BaseModel):
    """One profile's settings; the defaults are what a first run gets."""

    theme: Literal["light", "dark"] = "light"
    font_size: int = Field(default=12, ge=6, le=72)
    recent_files: list[str] = []


class SettingsStore(TypedStore[str, Settings]):
    """Settings per profile name; the types are bound here, so ``open`` takes only a path."""


def load(store: SettingsStore, profile: str) -> Settings:
    """Return the profile's settings, storing the defaults if it has none yet."""
    settings = store.get(profile)
    if settings is None:
        settings = Settings()
        store[profile] = settings
        print(f"first run: stored defaults for {profile!r}")
    return settings


def show(label: str, settings: Settings) -> None:
    """Print the settings on one line."""
    recent = ", ".join(settings.recent_files) or "-"
    print(f"{label}: theme={settings.theme} font_size={settings.font_size} recent={recent}")


def open_file(settings: Settings, name: str) -> Settings:
    """Return ``settings`` with ``name`` first in the recent files (at most three)."""
    recent = [name, *(f for f in settings.recent_files if f != name)][:3]
    return settings.model_copy(update={"recent_files": recent})


def first_run(path: Path) -> None:
    """Get the defaults, switch to the dark theme and open two files."""
    with SettingsStore.open(path, config=StoreConfig(sync_on_write=True)) as store:
        show("defaults", load(store, "default"))
        store.modify("default", lambda s: s.model_copy(update={"theme": "dark"}))
        store.modify("default", lambda s: open_file(s, "notes.md"))
        store.modify("default", lambda s: open_file(s, "todo.txt"))
        try:
            # model_copy skips validation; the store validates and refuses it.
            store.modify("default", lambda s: s.model_copy(update={"font_size": 500}))
        except ValidationError as exc:
            print(f"rejected font_size=500: {exc.errors()[0]['msg']}")
        show("after updates", store["default"])


def second_run(path: Path) -> None:
    """Reopen the store: the settings are the ones the first run left."""
    with SettingsStore.open(path, config=StoreConfig(sync_on_write=True)) as store:
        show("second run", load(store, "default"))


def main(argv: list[str]) -> None:
    """Simulate two runs of an application against the log named in ``argv``."""
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_LOG
    path.unlink(missing_ok=True)
    first_run(path)
    second_run(path)


if __name__ == "__main__":
    main(sys.argv)
