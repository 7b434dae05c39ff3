"""The types index users see, pinned with ``assert_type``: mypy --strict checks them.

The host is the test host of ``tests/index_host.py`` until indexes are wired into
``Collection`` and ``TypedStore``; ``tests/test_index_typing.py`` also runs
:func:`check_index` so that every call here works at runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import assert_type

from tests.index_host import Host, Member

from typedstore._index import Index, IndexView


def age_of(member: Member) -> int:
    """Return the member's age: a typed function gives the index its key type."""
    return member.age


def tags_of(member: Member) -> list[str]:
    """Return the member's tags, for a multi index of str."""
    return member.tags


class Members(Host[str, Member]):
    """Each typed way to declare an index."""

    by_email: Index[Member, str] = Index(lambda m: m.email, unique=True)  # annotated lambda
    by_age = Index(age_of, ordered=True)  # a typed function
    by_tag = Index(tags_of, multi=True)  # a typed function, multi
    by_name = Index[Member, str](lambda m: m.name)  # explicit type arguments


def check_index() -> None:
    """Pin the types of index declarations and lookups."""
    assert_type(Members.by_email, Index[Member, str])
    assert_type(Members.by_age, Index[Member, int])
    assert_type(Members.by_tag, Index[Member, str])
    assert_type(Members.by_name, Index[Member, str])
    members = Members()
    members["ada"] = Member(name="Ada", email="ada@x", age=36, tags=["admin"])
    assert_type(members.by_email, IndexView[str, Member, str])
    assert_type(members.by_age, IndexView[str, Member, int])
    assert_type(members.by_email.get("ada@x"), tuple[str, Member] | None)
    assert_type(members.by_tag.find("admin"), list[tuple[str, Member]])
    assert_type(members.by_name.count("Ada"), int)
    assert_type("ada@x" in members.by_email, bool)
    assert_type(members.by_age.range(18, 65), list[tuple[str, Member]])
    assert_type(
        members.by_age.range(65, None, reverse=True, limit=10, offset=0), list[tuple[str, Member]]
    )
    assert_type(iter(members.by_age), Iterator[tuple[str, Member]])
    for key, value in members.by_age:
        assert_type(key, str)
        assert_type(value, Member)
    found = members.by_email.get("ada@x")
    assert found is not None
    assert found[1].age == 36
    assert members.by_age.range(18, 65) == [("ada", found[1])]
