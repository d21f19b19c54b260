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
        self.db = schema.open_db(self.path, synchronous="normal")
        with self.db.atomic():
            schema.ensure_meta(self.db, self.path)
            schema.create_snapshots(self.db)

    def put(self, snap: Snapshot) -> None:
        with self._lock, self.db.atomic():
            self.db.execute(
                "INSERT OR REPLACE INTO snapshots (shard, shards, fingerprint, seq, taken, state) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [snap.shard, snap.shards, snap.fingerprint, snap.seq, time.time(), snap.state],
            )

    def get(self, shard: int, shards: int, fingerprint: str) -> Snapshot | None:
        """The latest usable snapshot of ``shard``, or None."""
        with self._lock:
            row = self.db.execute(
                "SELECT shard, shards, fingerprint, seq, state FROM snapshots "
                "WHERE shard = ? AND shards = ? AND fingerprint = ?",
                [shard, shards, fingerprint],
            ).fetchone()
        return Snapshot(*row) if row else None

    def delete(self, shard: int) -> None:
        """Drop ``shard``'s snapshot (zeroed on disk, WAL truncated): after ``forget`` it may
        hold the erased user's state."""
        with self._lock:
            with self.db.atomic():
                self.db.execute("DELETE FROM snapshots WHERE shard = ?", [shard])
            schema.checkpoint(self.db.conn)

    def clear(self) -> None:
        with self._lock, self.db.atomic():
            self.db.execute("DELETE FROM snapshots")

    def close(self) -> None:
        self.db.conn.close()
