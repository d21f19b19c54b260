"""Where a user or a segment lives: pure functions every layer may call.

Stable across processes and machines (CRC-32, not ``hash()``, which is salted per process),
so the daemon, a replay and a dispatcher on another node agree on every placement.
"""

from __future__ import annotations

import zlib

#: Segment-manager actors. One SQLite writer for membership and history is plenty for the
#: transition rates segd sees (transitions are much rarer than events).
MANAGERS = 1


def shard_of(user: str, shards: int) -> int:
    """The shard (0 .. shards-1) hosting ``user``."""
    return zlib.crc32(user.encode()) % shards


def manager_of(segment: str) -> int:
    """The segment manager (0 .. MANAGERS-1) keeping ``segment``."""
    return zlib.crc32(segment.encode()) % MANAGERS
