"""Segment membership and transition history on disk (``data_dir/segments.db``).

Idempotent by transition id: ``apply`` inserts each transition once (the primary key is the
id) and changes membership only for transitions it had not seen, so re-sending transitions
after a shard recovery or a restart changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from actors.records import Transition
from store import schema

_INSERT = (
    "INSERT INTO transitions (id, segment, user, kind, at, seq) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
_COLUMNS = "id, segment, user, kind, at, seq"


def _open() -> None:
    """No fence: every commit goes through."""


class SegmentStore:
    """Membership (``members``) and history (``transitions``) of every segment."""

    def __init__(
        self, data_dir: Path, *, synchronous: str = "full", fence: Callable[[], None] | None = None
    ) -> None:
        """``fence``, if given, runs inside every write transaction before its COMMIT and
        raises to refuse it (``store.datadir.fence``)."""
        self.fence = fence or _open
        self.path = Path(data_dir) / schema.SEGMENTS_FILE
        self.db = schema.open_store(self.path, schema.create_segments, synchronous=synchronous)
        self.conn = self.db.conn

    def apply(self, transitions: Iterable[Transition]) -> list[Transition]:
        """Record transitions in one transaction; return those not seen before, in input
        order (only they change membership). Raises StoreError if the commit fails."""
        new = []
        with schema.transaction(self.conn, "segment store commit") as conn:
            for t in transitions:
                if conn.execute(_INSERT, (t.id, t.segment, t.user, t.kind, t.at, t.seq)).rowcount != 1:
                    continue
                if t.kind == "enter":
                    conn.execute(
                        "INSERT OR IGNORE INTO members (segment, user) VALUES (?, ?)", (t.segment, t.user)
                    )
                else:
                    conn.execute("DELETE FROM members WHERE segment = ? AND user = ?", (t.segment, t.user))
                new.append(t)
            self.fence()
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

    def history(self, segment: str, since: float, until: float | None) -> list[Transition]:
        """Transitions of ``segment`` with ``since <= at`` (and ``at <= until``), in order."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM transitions WHERE segment = ? AND at >= ? "
            "AND at <= ? ORDER BY at, seq, user, id",
            (segment, since, until if until is not None else float("inf")),
        )
        return [Transition(id=i, segment=s, user=u, kind=k, at=a, seq=q) for i, s, u, k, a, q in rows]

    def forget(self, user: str) -> list[str]:
        """Erase ``user``'s membership and history; returns the segments it was a member of."""
        with schema.transaction(self.conn, "segment store forget") as conn:
            left = [r[0] for r in conn.execute("SELECT segment FROM members WHERE user = ?", (user,))]
            conn.execute("DELETE FROM members WHERE user = ?", (user,))
            conn.execute("DELETE FROM transitions WHERE user = ?", (user,))
            self.fence()
        schema.checkpoint(self.conn)
        return left

    def versions(self) -> dict[str, str]:
        """The fingerprint each segment's rows were computed with."""
        return dict(self.conn.execute("SELECT segment, fingerprint FROM segment_versions"))

    def reset(self, segments: Iterable[str], versions: dict[str, str]) -> None:
        """Drop the rows of ``segments`` (to be rebuilt from the log) and record ``versions``."""
        with schema.transaction(self.conn, "segment store reset") as conn:
            for s in segments:
                conn.execute("DELETE FROM transitions WHERE segment = ?", (s,))
                conn.execute("DELETE FROM members WHERE segment = ?", (s,))
            conn.execute("DELETE FROM segment_versions")
            conn.executemany(
                "INSERT INTO segment_versions (segment, fingerprint) VALUES (?, ?)", list(versions.items())
            )
            self.fence()

    def close(self) -> None:
        self.conn.close()
