"""Which value types a write may prove read back from their dump alone (typedstore._plain_types).

A wrong True would let memory differ from a replay; a wrong False only costs a read-back.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Optional, Union

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field

from typedstore._plain_types import dumps_plain_data


class Plain(BaseModel):
    name: str
    age: Annotated[int, Field(ge=0)]
    tags: list[str] = []
    scores: dict[str, float] = {}
    created: pydantic.AwareDatetime | None = None
    parent: Plain | None = None


class Validated(BaseModel):
    name: str

    @pydantic.field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class Extra(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str


class Nested(BaseModel):
    inner: Validated


@pytest.mark.parametrize(
    "tp",
    [str, int, float, bool, bytes, datetime.datetime, list[int], dict[int, bytes], Plain],
    ids=repr,
)
def test_plain_data_types_are_recognised(tp: object) -> None:
    """Plain scalars, lists and dicts of them, and models of plain fields dump plain data."""
    assert dumps_plain_data(tp)


@pytest.mark.parametrize(
    "tp",
    [
        Any,
        object,
        tuple[int, ...],
        set[str],
        uuid.UUID,
        dict[tuple[int, int], int],
        Union[str, bytes],  # noqa: UP007 - the typing.Union form, as users write it
        Optional[Union[int, str]],  # noqa: UP045, UP007 - the same
        Annotated[str, pydantic.AfterValidator(str.strip)],
        Validated,
        Extra,
        Nested,
    ],
    ids=repr,
)
def test_other_types_take_the_read_back(tp: object) -> None:
    """Anything else, a validator or an extra field included, is not taken for plain data."""
    assert not dumps_plain_data(tp)
