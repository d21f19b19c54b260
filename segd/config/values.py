"""Config values: durations, sizes, clock times, and the wording of config errors.

Shared by ``segd.config`` and ``segd.config.dispatch``; no other module needs them.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*\Z")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*\Z")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
}
_CLOCK_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)\Z")


def parse_duration(value: Any) -> float:
    """``"7d"``, ``"1.5h"``, ``"250ms"`` or a number of seconds -> seconds (float, > 0).

    Raises ValueError with what was expected.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '30s', '7d' or a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(
            f"expected a duration such as '30s', '15m', '1h', '7d', '2w' or a number of seconds, "
            f"got {value!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return seconds


def parse_size(value: Any) -> int:
    """``"4MiB"``, ``"512KiB"``, ``"1GB"`` or a number of bytes -> bytes (int, > 0)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a size such as '4MiB', '512KiB' or a number of bytes, got {value!r}")
    if size <= 0:
        raise ValueError(f"expected a positive size, got {value!r}")
    return size


def parse_clock_time(value: Any) -> int:
    """``"21:00"`` -> minutes after midnight."""
    if not isinstance(value, str) or not (m := _CLOCK_TIME.match(value)):
        raise ValueError(f"expected a time of day 'HH:MM' (00:00 to 23:59), got {value!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def _tuple(kind: type | tuple) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _show(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def _known(names: set[str]) -> str:
    return f" (known: {', '.join(sorted(names))})" if names else " (none defined)"


def _closest(word: str, choices: set[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.7)
    return found[0] if found else None
