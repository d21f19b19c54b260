"""Shard snapshots (``data_dir/snapshots.db``): the latest state blob of each shard.

A snapshot records the log position it includes (``seq``), the shard count and the model
fingerprint it was taken with; recovery = snapshot + replay of the log after ``seq``. A
snapshot taken with another shard count or model is unusable and ignored.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import NamedTuple

from store import schema


class Snapshot(NamedTuple):
    shard: int
    shards: int
    fingerprint: str
    seq: int
    state: bytes


class SnapshotStore:
    """One row per shard, replaced by each new snapshot. Safe to share between threads
    (shards are snapshotted and restored in parallel): one lock serializes the connection."""

    def __init__(self, data_dir: Path) -> None:
        self._lock = threading.Lock()
        self.path = Path(data_dir) / schema.SNAPSHOTS_FILE
        # NORMAL is enough: a lost snapshot only means a longer replay, never lost data.
        self.db = schema.open_store(self.path, schema.create_snapshots, synchronous="normal")
        self.conn = self.db.conn

    def put(self, snap: Snapshot) -> None:
        """Replace ``snap.shard``'s snapshot. Raises StoreError if the write fails."""
        with self._lock, schema.transaction(self.conn, "snapshot write") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (shard, shards, fingerprint, seq, taken, state) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (snap.shard, snap.shards, snap.fingerprint, snap.seq, time.time(), snap.state),
            )

    def get(self, shard: int, shards: int, fingerprint: str) -> Snapshot | None:
        """The latest usable snapshot of ``shard``, or None."""
        with self._lock:
            row = self.conn.execute(
                "SELECT shard, shards, fingerprint, seq, state FROM snapshots "
                "WHERE shard = ? AND shards = ? AND fingerprint = ?",
                (shard, shards, fingerprint),
            ).fetchone()
        return Snapshot(*row) if row else None

    def delete(self, shard: int) -> None:
        """Drop ``shard``'s snapshot (zeroed on disk, WAL truncated): after ``forget`` it may
        hold the erased user's state."""
        with self._lock:
            with schema.transaction(self.conn, "snapshot delete") as conn:
                conn.execute("DELETE FROM snapshots WHERE shard = ?", (shard,))
            schema.checkpoint(self.conn)

    def clear(self) -> None:
        """Drop every snapshot (``segd replay`` rebuilds them)."""
        with self._lock, schema.transaction(self.conn, "snapshot clear") as conn:
            conn.execute("DELETE FROM snapshots")

    def close(self) -> None:
        self.conn.close()
