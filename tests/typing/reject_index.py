"""Index misuses mypy must reject; tests/test_index_typing.py expects exactly the ``# E:`` marks.

Excluded from the project's mypy run (mypy.ini) because it is meant to fail.
"""

from __future__ import annotations

from tests.index_host import Host, Member
from tests.models import Point

from typedstore._index import Index


class Members(Host[str, Member]):
    """Indexes declared wrongly, and rightly to be misused below."""

    by_bare = Index(lambda m: m.email, unique=True)  # E: var-annotated
    by_wrong_type: Index[Member, int] = Index(lambda m: m.email)  # E: arg-type, return-value
    by_email: Index[Member, str] = Index(lambda m: m.email, unique=True)
    by_age: Index[Member, int] = Index(lambda m: m.age, ordered=True)


class Points(Host[str, Point]):
    """A host of points carrying an index of members."""

    by_email: Index[Member, str] = Index(lambda m: m.email)


def misuse() -> None:
    """Look up with index keys and results of the wrong types."""
    members = Members()
    members.by_email.get(3)  # E: arg-type
    members.by_age.range("a", None)  # E: arg-type
    found: tuple[int, Member] | None = members.by_email.get("a@x")  # E: assignment
    Points().by_email.find("a@x")  # E: arg-type
    print(found)
