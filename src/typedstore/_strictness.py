"""Strict validation of instances that pydantic accepts as they are, built without validation.

pydantic takes a model instance as valid without looking at its fields, so one built by
``model_construct``, ``model_copy(update=...)`` or attribute assignment reaches the codec
unchecked, and the codec validates its data by field name in lax mode: a strict ``int``
field holding ``"5"`` would be read back as ``5``. For a type with a strict rule anywhere
(``strict=True`` in a model's config or on a field, ``Strict*`` types, ``Annotated[int,
Strict()]``), :func:`check_strictly` and :func:`check_dumped` refuse such an instance
(README, "From ``indexmap_store`` to typedstore"). Types with no strict rule never pay.
"""

from __future__ import annotations

from typing import Any

import pydantic

from ._errors import EncodingError
from ._packing import ENCODE_FAILURES, packb


def has_strict_rules(schema: object) -> bool:
    """Return whether the pydantic core ``schema`` holds ``strict=True`` anywhere."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("strict") is True:
                return True
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return False


def check_strictly(adapter: pydantic.TypeAdapter[Any], validated: object) -> None:
    """Raise ``pydantic.ValidationError`` if ``validated`` breaks a strict rule of its type.

    The dump is validated as decoded data is (by field name, lax), then checked by
    :func:`check_dumped`. Values that cannot be dumped, packed or validated so are left
    to the write, which reports them.
    """
    try:
        data = adapter.serializer.to_python(validated, **_DUMP)
        blob = packb(data)
    except (EncodingError, *ENCODE_FAILURES):
        return
    try:
        value = adapter.validator.validate_python(data, strict=False, by_alias=False, by_name=True)
    except pydantic.ValidationError:  # refused in lax mode: the write reports it
        return
    check_dumped(adapter, data, blob, value)


def check_dumped(
    adapter: pydantic.TypeAdapter[Any], data: object, blob: bytes, value: object
) -> None:
    """Raise ``pydantic.ValidationError`` if the dump ``data`` breaks a strict rule.

    ``blob`` is ``data`` packed and ``value`` what ``data`` validates to in lax mode.
    A value that validation built dumps to the same bytes as the value its dump
    validates to. One that does not (``"5"`` where the validated form has ``5``, or
    ``True`` for ``1``) was built without validation, so its dump is validated with the
    type's strict rules, as the instance would have been. Comparing first keeps valid
    values that strict validation of their dump would falsely refuse (an enum field
    with ``use_enum_values``) from being checked that way.
    """
    try:
        if packb(adapter.serializer.to_python(value, **_DUMP)) == blob:
            return
    except (EncodingError, *ENCODE_FAILURES):
        pass
    _validate_strictly(adapter, data)


_DUMP: dict[str, Any] = {"by_alias": False, "round_trip": True, "warnings": False}


def _validate_strictly(adapter: pydantic.TypeAdapter[Any], data: object) -> None:
    adapter.validator.validate_python(data, strict=True, by_alias=False, by_name=True)
