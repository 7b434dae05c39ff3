"""Rendering for the command line: msgpack data as JSON, stdout and stderr, a progress line.

Every line the ``typedstore`` command prints goes through here: results to stdout
through :data:`STDOUT`, which outlives its reader; warnings and errors to stderr; a
progress line on a terminal.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TextIO

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]
"""What ``json.dumps`` writes without help."""

TAGS = frozenset({"$bytes", "$float", "$map", "$ext", "$timestamp", "$datetime", "$time", "$repr"})
"""One-key objects that stand for values JSON cannot hold; documented in ``docs/CLI.md``."""


def to_json(data: object) -> JSONValue:
    """Return decoded msgpack ``data`` as JSON data, tagging what JSON cannot hold.

    Iterative, not recursive: the store accepts values nested about a thousand levels
    deep, past Python's recursion limit for a function that calls itself per level.
    """
    root: list[JSONValue] = [None]
    pending: list[tuple[object, Any, int | str]] = [(data, root, 0)]
    while pending:
        item, target, slot = pending.pop()
        target[slot] = _convert(item, pending)
    return root[0]


def _convert(data: object, pending: list[tuple[object, Any, int | str]]) -> JSONValue:
    """Return ``data`` as JSON data; a container's items are added to ``pending``.

    Each entry of ``pending`` is an item to convert and the slot it fills: a list and
    an index, or a dict and a key.
    """
    if data is None or isinstance(data, (bool, int, str)):
        return data
    if isinstance(data, float):
        return data if math.isfinite(data) else {"$float": repr(data)}
    if isinstance(data, bytes):
        return {"$bytes": base64.b64encode(data).decode("ascii")}
    if isinstance(data, dict):
        return _map_to_json(data, pending)
    if isinstance(data, datetime.datetime):  # the log's own extension types (see _codec)
        return {"$datetime": data.isoformat()}
    if isinstance(data, datetime.time):
        return {"$time": data.isoformat()}
    if isinstance(data, tuple) and getattr(data, "_fields", None) == ("code", "data"):
        code, blob = data  # msgpack's ExtType, a named tuple of an int and bytes
        return {"$ext": {"code": to_json(code), "data": to_json(blob)}}
    if type(data).__name__ == "Timestamp" and hasattr(data, "nanoseconds"):
        seconds, nanoseconds = getattr(data, "seconds", None), getattr(data, "nanoseconds", None)
        return {"$timestamp": {"seconds": to_json(seconds), "nanoseconds": to_json(nanoseconds)}}
    if isinstance(data, (list, tuple)):
        items: list[JSONValue] = [None] * len(data)
        pending.extend((item, items, index) for index, item in enumerate(data))
        return items
    return {"$repr": repr(data)}


def _map_to_json(
    data: dict[object, object], pending: list[tuple[object, Any, int | str]]
) -> JSONValue:
    keys = list(data)
    if all(isinstance(key, str) for key in keys) and not (len(keys) == 1 and keys[0] in TAGS):
        fields: dict[str, JSONValue] = dict.fromkeys(map(str, keys))  # keeps the map's order
        pending.extend((value, fields, str(key)) for key, value in data.items())
        return fields
    pairs: list[JSONValue] = []
    for key, value in data.items():
        pair: list[JSONValue] = [None, None]
        pending.extend(((key, pair, 0), (value, pair, 1)))
        pairs.append(pair)
    return {"$map": pairs}


def dumps(data: JSONValue, *, indent: int | None = None) -> str:
    """Return ``data`` as JSON text, as ``json.dumps`` writes it, however deep it is nested.

    ``json.dumps`` recurses once per level and fails near a thousand levels; only
    then is the text built here, iteratively (the common case keeps C's speed).
    """
    try:
        return json.dumps(data, indent=indent)
    except RecursionError:
        return "".join(_json_parts(data, indent))


def _json_parts(data: JSONValue, indent: int | None) -> Iterator[str]:
    """Yield the JSON text of ``data`` in pieces, keeping a stack instead of recursing."""
    pending: list[tuple[JSONValue, int] | str] = [(data, 0)]
    while pending:
        item = pending.pop()
        if isinstance(item, str):  # text of a container's punctuation
            yield item
            continue
        value, depth = item
        if not value or not isinstance(value, (list, dict)):
            yield json.dumps(value)  # a scalar, "[]" or "{}"
            continue
        pairs = value.items() if isinstance(value, dict) else ((None, item) for item in value)
        yield "{" if isinstance(value, dict) else "["
        newline = "" if indent is None else "\n" + " " * (indent * (depth + 1))
        children: list[tuple[JSONValue, int] | str] = []
        for number, (key, child) in enumerate(pairs):
            separator = (", " if indent is None else ",") if number else ""
            label = "" if key is None else json.dumps(key) + ": "
            children.extend((separator + newline + label, (child, depth + 1)))
        closing = "" if indent is None else "\n" + " " * (indent * depth)
        children.append(closing + ("}" if isinstance(value, dict) else "]"))
        pending.extend(reversed(children))


# -- output ---------------------------------------------------------------------------------


class Stdout:
    """The command's stdout, which outlives its reader.

    When the reader goes away (``typedstore dump LOG | head``), writing raises
    ``BrokenPipeError``. Losing the output is not the command's failure: what it does
    and the status it ends with stay its own, so the rest of its output goes nowhere
    and ``broken`` tells ``_cli.run`` to end with ``BROKEN_PIPE`` if nothing else failed.
    """

    def __init__(self) -> None:
        self.broken = False

    def print(self, line: str) -> None:
        """Print ``line``, unless the reader has gone away."""
        if not self.broken:
            try:
                print(line)
            except BrokenPipeError:
                self._lose()

    def print_json(self, data: JSONValue, *, indent: int | None = None) -> None:
        """Print ``data`` as JSON text, as :func:`dumps` writes it."""
        self.print(dumps(data, indent=indent))

    def print_json_lines(self, lines: Iterable[JSONValue]) -> None:
        """Print each of ``lines`` as one JSON line, and stop rendering once no one reads them."""
        for line in lines:
            if self.broken:
                return
            self.print_json(line)

    def flush(self) -> None:
        """Write what is buffered, before the status that depends on it is decided."""
        if not self.broken:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                self._lose()

    def _lose(self) -> None:
        """Point stdout at the null device, so no later write or flush at exit fails."""
        self.broken = True
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, sys.stdout.fileno())
            finally:
                os.close(null)


STDOUT = Stdout()
"""The one stdout of the process, shared by the command and the error report."""


def warn(message: str) -> None:
    """Print a warning line on stderr; the command goes on."""
    print(f"typedstore: {message}", file=sys.stderr)


def error(message: str) -> None:
    """Print the error line on stderr that ends a failed command."""
    print(f"typedstore: error: {message}", file=sys.stderr)


# -- progress -------------------------------------------------------------------------------


class Progress:
    """A progress line on ``stream`` for runs past ``delay`` seconds, only on a terminal.

    As a context manager, it erases its line on the way out, an error included.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        delay: float = 1.0,
    ) -> None:
        self._label = label
        self._stream = stream
        self._clock = clock
        self._is_enabled = stream.isatty()
        self._start = clock()
        self._delay = delay
        self._last = -math.inf
        self._width = 0

    def __call__(self, done: int, total: int) -> None:
        if not self._is_enabled:
            return
        now = self._clock()
        if now - self._start < self._delay or now - self._last < 0.1:
            return
        self._last = now
        line = f"{self._label}: {100 * done // max(total, 1):3d}% of {total:,} bytes"
        self._width = max(self._width, len(line))
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish()

    def finish(self) -> None:
        """Erase the progress line, if one was shown."""
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
