"""Quick start: write typed records, close the store, reopen it and see what was recovered.

It also prints the log's size before and after ``compact()``, which rewrites the log
to one record per live entry.

Run it with ``python examples/quickstart.py [LOG]``. The log defaults to
``./data/quickstart.log`` under the current directory; an old one is removed first,
so every run starts from an empty store.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

from typedstore import TypedStore

DEFAULT_LOG = Path("data") / "quickstart.log"


class User(BaseModel):
    """A user record: every value written to the store is validated against it."""

    name: str
    age: int
    tags: list[str] = []


def birthday(user: User) -> User:
    """Return ``user`` one year older (``modify`` passes a private copy)."""
    return user.model_copy(update={"age": user.age + 1})


def write(path: Path) -> None:
    """Insert, modify and remove users, then flush and close the store."""
    with TypedStore.open(path, str, User) as users:
        users.insert("alice", User(name="Alice", age=30, tags=["admin"]))
        users["bob"] = User(name="Bob", age=25)
        users["carol"] = User(name="Carol", age=41, tags=["ops", "oncall"])
        users.modify("alice", birthday)
        users.remove("bob")
        users.flush()
        print(f"wrote {len(users)} users to {path}")


def read_back(path: Path) -> None:
    """Reopen the store, print every user the log replays to in order, then compact it."""
    with TypedStore.open(path, str, User) as users:
        print(f"recovered {len(users)} users after reopening:")
        for key, user in users.items():
            tags = ", ".join(user.tags) or "-"
            print(f"  {key}: name={user.name} age={user.age} tags={tags}")
        print(f"bob present: {'bob' in users}")
        print(f"log file size: {path.stat().st_size} bytes")
        users.compact()
        print(f"after compact(): {path.stat().st_size} bytes, one record per live user")


def main(argv: list[str]) -> None:
    """Run the quick start on the log named in ``argv`` (or the default one)."""
    path = Path(argv[1]) if len(argv) > 1 else DEFAULT_LOG
    path.unlink(missing_ok=True)
    write(path)
    read_back(path)


if __name__ == "__main__":
    main(sys.argv)
