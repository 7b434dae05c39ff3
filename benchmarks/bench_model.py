"""The record every benchmark subject stores, and its deterministic generator.

``records(n, seed)`` returns the same ``n`` (key, User) pairs for the same arguments in any
process, so every subject of ``bench.py`` stores exactly the same data.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict


class User(BaseModel):
    """The benchmark's value type: a plain mutable pydantic model."""

    name: str
    email: str
    age: int
    tags: list[str]
    created: AwareDatetime


class FrozenUser(BaseModel):
    """The same fields, frozen and immutable, to measure what a read of such a value costs."""

    model_config = ConfigDict(frozen=True)

    name: str
    email: str
    age: int
    tags: tuple[str, ...]
    created: AwareDatetime


_FIRST_NAMES = """
Ada Alan Barbara Brian Chen Claude Dana Dennis Edsger Elena Farah Grace Hedy Ivan Jean John
Karen Ken Leslie Linus Margaret Maria Niklaus Noor Olga Pat Radia Rasmus Sophie Tim Ursula Vint
Wei Xavier Yukihiro Zoe
"""
_LAST_NAMES = """
Lovelace Turing Liskov Kernighan Shannon Ritchie Dijkstra Hopper Lamarr Sutherland Allen
Thompson Lamport Torvalds Hamilton Wirth Perlman Lerdorf Wilson Cerf Matsumoto Okafor Nakamura
Haddad Kowalski Moreau Rossi Novak Silva Jensen
"""
_TAG_WORDS = """
admin staff ops oncall beta billing support sales eng design research legal vip trial churned
emea apac amer
"""
FIRST = tuple(_FIRST_NAMES.split())
LAST = tuple(_LAST_NAMES.split())
DOMAINS = ("example.org", "mail.example.com", "corp.example.net", "uni.example.edu", "x.io")
TAGS = tuple(_TAG_WORDS.split())
OFFSETS = tuple(
    timezone(timedelta(minutes=minutes)) for minutes in (0, 60, 120, -300, -480, 330, 540)
)
EPOCH = datetime(2012, 1, 1, tzinfo=UTC)
SPAN_SECONDS = 13 * 365 * 24 * 3600


def key_of(index: int) -> str:
    """Return the key of record ``index``: ``user:0000042``."""
    return f"user:{index:07d}"


def iter_raw_records(n: int, seed: int = 42) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``n`` (key, plain field dict) pairs, the same for the same ``n`` and ``seed``."""
    rng = random.Random(seed)
    for index in range(n):
        first = rng.choice(FIRST)
        last = rng.choice(LAST)
        middle = f" {rng.choice(FIRST)[0]}." if rng.random() < 0.3 else ""
        email = f"{first.lower()}.{last.lower()}{rng.randrange(1000)}@{rng.choice(DOMAINS)}"
        instant = EPOCH + timedelta(seconds=rng.randrange(SPAN_SECONDS))
        created = instant.astimezone(rng.choice(OFFSETS))
        fields: dict[str, Any] = {
            "name": f"{first}{middle} {last}",
            "email": email,
            "age": rng.randrange(16, 91),
            "tags": rng.sample(TAGS, rng.randrange(5)),
            "created": created,
        }
        yield key_of(index), fields


def records(n: int, seed: int = 42) -> list[tuple[str, User]]:
    """Return ``n`` validated (key, User) pairs, the same for the same ``n`` and ``seed``."""
    return [(key, User.model_validate(fields)) for key, fields in iter_raw_records(n, seed)]
