"""Shared by the request-decoding tests (test_protocol.py, test_decode.py)."""

from __future__ import annotations

from typing import Any

#: A batch's events, good and bad in turn: 0 and 4 are valid, 1 lacks its event, 2 has an
#: unknown type, 3 is not a map. Both decoders must keep 0 and 4 and refuse the rest by index.
MIXED_EVENTS: list[Any] = [
    {"type": "track", "user": "a", "event": "view"},
    {"type": "track", "user": "a"},
    {"type": "shout", "user": "a"},
    "not a map",
    {"type": "identify", "user": "b", "traits": {"x": None}},
]
