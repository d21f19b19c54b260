"""Shared by the ShardCore tests (test_shard*.py): the model they fold."""

from __future__ import annotations

from typing import Any

#: A windowed count and a last-seen, read by an ``active`` and a ``vip`` segment.
CONFIG: dict[str, Any] = {
    "aggregates": {
        "views_7d": {"kind": "count", "event": "view", "within": "7d"},
        "last_seen": {"kind": "last_time"},
    },
    "segments": {
        "active": {"when": "views_7d >= 1"},
        "vip": {"when": "traits.plan == 'vip'"},
    },
}
