"""Models shared by the tests and by the child processes the crash tests start."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class User(BaseModel):
    """A mutable model: the store hands out copies of it."""

    name: str
    age: int
    tags: list[str] = []


class Point(BaseModel):
    """A frozen model of immutable fields: the store hands it out as it is."""

    model_config = ConfigDict(frozen=True)

    x: int
    y: int


class Account(BaseModel):
    """A bank account, for transfers that must keep the total constant."""

    owner: str
    balance: int
