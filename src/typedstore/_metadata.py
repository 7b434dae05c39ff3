"""What the log's header says about a store's types, and how two such accounts differ.

A header records the key and value types by name and JSON schema, and a fingerprint of
both (docs/FORMAT.md, "Header"). Opening compares fingerprints to tell whether
the types changed, and this module words the change and finds the fields it lost.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
import typing
from collections.abc import Iterator
from typing import Any, cast

import pydantic


def describe(
    key_type: object,
    value_type: object,
    keys: pydantic.TypeAdapter[Any],
    values: pydantic.TypeAdapter[Any],
) -> dict[str, object]:
    """Return the type names and JSON schemas of a key and a value type and their adapters."""
    return {
        "key_type": type_name(key_type),
        "value_type": type_name(value_type),
        "key_schema": _json_schema(keys),
        "value_schema": _json_schema(values),
    }


def fingerprint(description: dict[str, object]) -> str:
    """Return a digest of a :func:`describe` map: equal fingerprints mean unchanged types."""
    text = json.dumps(description, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def type_name(tp: object) -> str:
    """Return a readable, qualified name for a type."""
    if isinstance(tp, type) and not typing.get_args(tp):
        module = tp.__module__
        return tp.__qualname__ if module == "builtins" else f"{module}.{tp.__qualname__}"
    return repr(tp)


def _json_schema(adapter: pydantic.TypeAdapter[Any]) -> object:
    try:
        return adapter.json_schema()
    except pydantic.PydanticUserError:  # types with no JSON schema are still storable
        return None


def describe_changes(old: dict[str, object], new: dict[str, object]) -> str:
    """Return a one-line account of how the value type changed between two metadata maps.

    ``old`` comes from a log's header, so it may hold anything msgpack decodes, nested
    as deep as msgpack allows: it is shown shortened, never compared or printed whole.
    """
    old_fields = _properties(old.get("value_schema"))
    new_fields = _properties(new.get("value_schema"))
    if old_fields is None or new_fields is None:
        return f"value type {_shown(old.get('value_type'))} is now {_shown(new.get('value_type'))}"
    added = sorted(map(_shown, new_fields.keys() - old_fields.keys()))
    removed = sorted(map(_shown, old_fields.keys() - new_fields.keys()))
    kept = old_fields.keys() & new_fields.keys()
    changed = sorted(_shown(name) for name in kept if _differ(old_fields[name], new_fields[name]))
    labelled = (("added", added), ("removed", removed), ("changed", changed))
    parts = [f"{label}: {', '.join(names)}" for label, names in labelled if names]
    return "; ".join(parts) or "the JSON schema changed, not its fields"


def _shown(item: object) -> str:
    """Return ``item`` as text, shortened (``reprlib``) unless it is a string already."""
    return item if isinstance(item, str) else reprlib.repr(item)


def _differ(old: object, new: object) -> bool:
    try:
        return old != new
    except RecursionError:  # too deep for Python to compare: it is not what was written
        return True


def _properties(schema: object) -> dict[object, object] | None:
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        return cast(dict[object, object], schema["properties"])
    return None


def missing_paths(data: object, dumped: object) -> Iterator[str]:
    """Yield the paths of the fields ``data`` holds and ``dumped`` does not.

    Paths are dotted, with ``[]`` for list items: ``address.zip``, ``items[].sku``. The
    walk keeps its own stack rather than recursing: ``data`` may nest as deep as msgpack
    allows, deeper than Python's recursion limit.
    """
    pending = [(data, dumped, "")]
    while pending:
        data, dumped, prefix = pending.pop()
        if isinstance(data, dict) and isinstance(dumped, dict):
            for key, item in data.items():
                path = f"{prefix}.{_shown(key)}" if prefix else _shown(key)
                if key not in dumped:
                    yield path
                else:
                    pending.append((item, dumped[key], path))
        elif isinstance(data, (list, tuple)) and isinstance(dumped, (list, tuple)):
            pending.extend(
                (item, dumped_item, f"{prefix}[]")
                for item, dumped_item in zip(data, dumped, strict=False)
            )
