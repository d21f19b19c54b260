"""Config values: durations, sizes, clock times, addresses, and the wording of config errors.

The ``parse_*`` functions are pure and public (``segd.config`` re-exports them): each takes
a raw value and returns it converted, or raises ValueError saying what was expected.
``show``, ``known`` and ``closest`` word the problems the section readers report.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, NamedTuple

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
    """``"4MiB"``, ``"512KiB"``, ``"1GB"`` or a number of bytes -> bytes (int, > 0).

    Raises ValueError with what was expected.
    """
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
    """``"21:00"`` -> minutes after midnight (0 to 1439); raises ValueError otherwise."""
    if not isinstance(value, str) or not (m := _CLOCK_TIME.match(value)):
        raise ValueError(f"expected a time of day 'HH:MM' (00:00 to 23:59), got {value!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


class Address(NamedTuple):
    """A TCP endpoint; ``host`` is bare (an IPv6 literal without its brackets)."""

    host: str
    port: int


def parse_address(value: str, *, allow_port_zero: bool = False) -> Address:
    """``"127.0.0.1:7433"``, ``"[::1]:7433"`` or ``"localhost:7433"`` -> ``Address(host, port)``.

    The port is what follows the last ``:``: ASCII digits, 1 to 65535, or 0 to 65535 when
    ``allow_port_zero`` (port 0 asks the OS for a free one). The host must not be empty. An
    IPv6 host is written in brackets and returned without them; an unbracketed host that
    contains ``:`` is still split at the last one, as segd always has (``::1:7433``).
    Raises ValueError naming the value and what was expected.
    """
    host, colon, port = value.rpartition(":")
    if not colon or not host:
        raise ValueError(f"expected 'host:port' such as '127.0.0.1:7433', got {value!r}")
    if host.startswith("[") and host.endswith("]") and len(host) > 2:
        host = host[1:-1]
    if "[" in host or "]" in host:
        raise ValueError(f"expected an IPv6 host in brackets such as '[::1]:7433', got {value!r}")
    # isdigit() alone also admits digits such as '²' that int() rejects.
    if not (port.isascii() and port.isdigit()):
        raise ValueError(f"expected a port number after the last ':', got {value!r}")
    lowest = 0 if allow_port_zero else 1
    if not lowest <= int(port) <= 65535:
        raise ValueError(f"expected a port from {lowest} to 65535, got {value!r}")
    return Address(host, int(port))


def show(value: object) -> str:
    """Name a TOML value's type for a message: ``a string ('x')``, ``a table ({...})``."""
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def known(names: set[str]) -> str:
    """The names a reference could have used, as a message suffix."""
    return f" (known: {', '.join(sorted(names))})" if names else " (none defined)"


def closest(word: str, choices: set[str]) -> str | None:
    """The choice ``word`` was most likely a typo of, or None when none is close."""
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.7)
    return found[0] if found else None
