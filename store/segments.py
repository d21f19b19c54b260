"""Segment membership and transition history on disk (``data_dir/segments.db``).

Idempotent by transition id: ``apply`` inserts each transition once (the primary key is the
id) and changes membership only for transitions it had not seen, so re-sending transitions
after a shard recovery or a restart changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from segd.errors import StoreError
from store import schema

_INSERT = (
    "INSERT INTO transitions (id, segment, user, kind, at, seq) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)


class SegmentStore:
    """Membership (``members``) and history (``transitions``) of every segment."""

    def __init__(self, data_dir: Path, *, synchronous: str = "full") -> None:
        self.path = Path(data_dir) / schema.SEGMENTS_FILE
        self.db = schema.open_db(self.path, synchronous=synchronous)
        with self.db.atomic():
            schema.ensure_meta(self.db, self.path)
            schema.create_segments(self.db)
        self.conn = self.db.conn

    def apply(self, transitions: Iterable[Sequence[Any]]) -> list[tuple]:
        """Record transitions ``(id, segment, user, kind, at, seq)`` in one transaction.

        Returns those not seen before, in input order; only they change membership.
        """
        new = []
        conn = self.conn
        try:
            conn.execute("BEGIN")
            for t in transitions:
                segment, user, kind = t[1], t[2], t[3]
                if conn.execute(_INSERT, tuple(t[:6])).rowcount != 1:
                    continue
                if kind == "enter":
                    conn.execute(
                        "INSERT OR IGNORE INTO members (segment, user) VALUES (?, ?)", (segment, user)
                    )
                else:
                    conn.execute("DELETE FROM members WHERE segment = ? AND user = ?", (segment, user))
                new.append(t)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"segment store commit failed: {exc}") from exc
        return new

    def sizes(self) -> dict[str, int]:
        """Members per segment (segments with no member are absent)."""
        return dict(self.conn.execute("SELECT segment, count(*) FROM members GROUP BY segment"))

    def page(self, segment: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` members of ``segment`` sorted by user id, after the ``after`` cursor."""
        rows = self.conn.execute(
            "SELECT user FROM members WHERE segment = ? AND user > ? ORDER BY user LIMIT ?",
            (segment, after or "", limit),
        )
        return [r[0] for r in rows]

    def history(self, segment: str, since: float, until: float | None) -> list[tuple]:
        """Transitions of ``segment`` with ``since <= at`` (and ``at <= until``), in order."""
        rows = self.conn.execute(
            "SELECT id, segment, user, kind, at, seq FROM transitions WHERE segment = ? AND at >= ? "
            "AND at <= ? ORDER BY at, seq, user, id",
            (segment, since, until if until is not None else float("inf")),
        )
        return rows.fetchall()

    def forget(self, user: str) -> dict[str, int]:
        """Erase ``user``'s membership and history; returns the segments it was a member of
        (name -> 1), for the sizes."""
        with self.db.atomic():
            left = dict(self.conn.execute("SELECT segment, 1 FROM members WHERE user = ?", (user,)))
            self.conn.execute("DELETE FROM members WHERE user = ?", (user,))
            self.conn.execute("DELETE FROM transitions WHERE user = ?", (user,))
        schema.checkpoint(self.conn)
        return left

    def versions(self) -> dict[str, str]:
        """The fingerprint each segment's rows were computed with."""
        return dict(self.conn.execute("SELECT segment, fingerprint FROM segment_versions"))

    def reset(self, segments: Iterable[str], versions: dict[str, str]) -> None:
        """Drop the rows of ``segments`` (to be rebuilt from the log) and record ``versions``."""
        with self.db.atomic():
            for s in segments:
                self.conn.execute("DELETE FROM transitions WHERE segment = ?", (s,))
                self.conn.execute("DELETE FROM members WHERE segment = ?", (s,))
            self.conn.execute("DELETE FROM segment_versions")
            self.conn.executemany(
                "INSERT INTO segment_versions (segment, fingerprint) VALUES (?, ?)", list(versions.items())
            )

    def close(self) -> None:
        self.conn.close()
