"""Rendering for the command line: msgpack data as JSON, and a progress line on a terminal."""

from __future__ import annotations

import base64
import datetime
import math
import time
from collections.abc import Callable
from typing import TextIO

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]
"""What ``json.dumps`` writes without help."""

TAGS = frozenset({"$bytes", "$float", "$map", "$ext", "$timestamp", "$datetime", "$time", "$repr"})
"""One-key objects that stand for values JSON cannot hold; documented in ``docs/CLI.md``."""


def to_json(data: object) -> JSONValue:
    """Return decoded msgpack ``data`` as JSON data, tagging what JSON cannot hold."""
    if data is None or isinstance(data, (bool, int, str)):
        return data
    if isinstance(data, float):
        return data if math.isfinite(data) else {"$float": repr(data)}
    if isinstance(data, bytes):
        return {"$bytes": base64.b64encode(data).decode("ascii")}
    if isinstance(data, dict):
        return _map_to_json(data)
    if isinstance(data, datetime.datetime):  # the log's own extension types (see _codec)
        return {"$datetime": data.isoformat()}
    if isinstance(data, datetime.time):
        return {"$time": data.isoformat()}
    if isinstance(data, tuple) and getattr(data, "_fields", None) == ("code", "data"):
        code, blob = data  # msgpack's ExtType, a named tuple
        return {"$ext": {"code": to_json(code), "data": to_json(blob)}}
    if type(data).__name__ == "Timestamp" and hasattr(data, "nanoseconds"):
        seconds, nanoseconds = getattr(data, "seconds", None), getattr(data, "nanoseconds", None)
        return {"$timestamp": {"seconds": to_json(seconds), "nanoseconds": to_json(nanoseconds)}}
    if isinstance(data, (list, tuple)):
        return [to_json(item) for item in data]
    return {"$repr": repr(data)}


def _map_to_json(data: dict[object, object]) -> JSONValue:
    keys = list(data)
    if all(isinstance(key, str) for key in keys) and not (len(keys) == 1 and keys[0] in TAGS):
        return {str(key): to_json(value) for key, value in data.items()}
    return {"$map": [[to_json(key), to_json(value)] for key, value in data.items()]}


# -- progress -------------------------------------------------------------------------------


class Progress:
    """A progress line on ``stream`` for runs past ``delay`` seconds, only on a terminal."""

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

    def finish(self) -> None:
        """Erase the progress line, if one was shown."""
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
