"""The durable outbox (``data_dir/outbox.db``): exactly-once message decisions and deliveries.

Every campaign trigger becomes one ``messages`` row, keyed by the message id (a function of
campaign and transition id), whatever the dispatcher decided: pending, suppressed (with its
reason), holdout. ``record`` inserts each id once, so a replay, a restart or a shard recovery
that produces the same transition again decides nothing new.

Delivery is claim-then-send: ``claim`` moves due messages to ``claimed`` in a committed
transaction before any channel sees them, and ``sent`` marks them after. A crash between
the two leaves ``claimed`` rows, which ``release_claims`` turns back into pending at the next
start: the same message (same id, which channels get as an idempotency key) is retried, never
re-created. Failures go back to pending with a later ``next_try``; the last failure moves
the message to ``dead`` and into ``dead_letters`` with its error.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from actors.records import Conversion, Decision, DueMessage, Exposure
from store import schema

#: Statuses that hold (or held) a place in the user's frequency caps.
CAPPED = ("pending", "claimed", "sent")


_DECISION = Decision.__struct_fields__
_DUE = DueMessage.__struct_fields__
_INSERT = (
    f"INSERT INTO messages ({', '.join(_DECISION)}, attempts) VALUES ({', '.join('?' * len(_DECISION))}, 0) "
    "ON CONFLICT (id) DO NOTHING"
)
_CONVERSION = Conversion.__struct_fields__


class OutboxStore:
    """The outbox of one daemon. Thread-safe: one lock serializes the connection."""

    def __init__(self, data_dir: Path, *, synchronous: str = "full", owner: str | None = None) -> None:
        """``owner``: the data dir lock's token of the daemon or replay this store writes for;
        it claims the file, and every write is fenced by it (``schema.transaction``)."""
        self.path = Path(data_dir) / schema.OUTBOX_FILE
        self.owner = owner
        self.db = schema.open_store(self.path, schema.create_outbox, synchronous=synchronous, owner=owner)
        self.conn = self.db.conn
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction under the lock (rolled back on error); SQLite errors
        become StoreError."""
        with self._lock, schema.transaction(self.conn, "outbox write", self.owner) as conn:
            yield conn

    def _write(self, sql: str, params: Iterable[Any] = (), many: bool = False) -> int:
        with self._transaction() as conn:
            return (conn.executemany(sql, params) if many else conn.execute(sql, tuple(params))).rowcount

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    # ------------------------------------------------------------------ campaigns

    def activations(self, keys: dict[str, str], now: float) -> dict[str, float]:
        """Activation time of each campaign (name -> key): kept while its key is unchanged,
        ``now`` for a new or changed one. Campaigns no longer configured are forgotten."""
        with self._transaction() as conn:
            old = {n: (k, a) for n, k, a in conn.execute("SELECT name, key, activated FROM campaigns")}
            out = {}
            for name, key in keys.items():
                if old.get(name, (None,))[0] == key:
                    out[name] = old[name][1]
                else:
                    out[name] = now
                    conn.execute(
                        "INSERT OR REPLACE INTO campaigns (name, key, activated) VALUES (?, ?, ?)",
                        (name, key, now),
                    )
            for name in set(old) - set(keys):
                conn.execute("DELETE FROM campaigns WHERE name = ?", (name,))
        return out

    # ------------------------------------------------------------------ decisions

    def record(self, rows: list[Decision]) -> list[Decision]:
        """Insert decisions in one transaction; returns those whose id was new, in order."""
        astuple = msgspec.structs.astuple
        with self._transaction() as conn:
            return [r for r in rows if conn.execute(_INSERT, astuple(r)).rowcount == 1]

    def known(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are already recorded."""
        with self._lock:
            found = schema.select_in(self.conn, "SELECT id FROM messages WHERE id IN ({marks})", ids)
        return {r[0] for r in found}

    def capped_since(self, since: float) -> list[tuple[str, float]]:
        """``(user, due)`` of messages holding a cap place with ``due > since`` (start-up)."""
        return self._read(
            f"SELECT user, due FROM messages WHERE due > ? AND status IN {CAPPED} ORDER BY due", (since,)
        )

    def exposures_since(self, since: float) -> list[Exposure]:
        """Sent, pending or holdout messages with ``at > since``: the ones a goal event may
        still convert (start-up)."""
        rows = self._read(
            "SELECT user, campaign, id, variant, at FROM messages WHERE at > ? AND status IN "
            "('pending', 'claimed', 'sent', 'holdout') ORDER BY at",
            (since,),
        )
        return [Exposure(user=u, campaign=c, message=m, variant=v, at=a) for u, c, m, v, a in rows]

    # ------------------------------------------------------------------ delivery

    def claimed(self) -> list[tuple[str, str]]:
        """``(id, channel)`` of messages claimed and not marked sent (before ``release_claims``)."""
        return self._read("SELECT id, channel FROM messages WHERE status = 'claimed'")

    def release_claims(self) -> int:
        """Start-up: messages claimed but not marked sent (a crash mid-delivery) become
        pending again, to be retried under the same id."""
        return self._write("UPDATE messages SET status = 'pending' WHERE status = 'claimed'")

    def due(self, channel: str, clock: float, wall: float, limit: int) -> list[DueMessage]:
        """Pending messages of ``channel`` due at engine ``clock`` and ready at ``wall`` time."""
        columns = ", ".join("coalesce(reason, '')" if f == "reason" else f for f in _DUE)
        rows = self._read(
            f"SELECT {columns} "
            "FROM messages WHERE status = 'pending' AND channel = ? AND due <= ? AND coalesce(next_try, 0) <= ? "
            "ORDER BY due, priority, id LIMIT ?",
            (channel, clock, wall, limit),
        )
        return [DueMessage(**dict(zip(_DUE, r, strict=True))) for r in rows]

    def next_retry(self, channel: str, clock: float) -> float | None:
        """The earliest wall time at which a due pending message of ``channel`` may be retried."""
        row = self._read(
            "SELECT min(next_try) FROM messages WHERE status = 'pending' AND channel = ? AND due <= ?",
            (channel, clock),
        )
        return row[0][0] if row else None

    def claim(self, ids: list[str]) -> None:
        """Durably mark messages as being delivered (before any channel sees them)."""
        self._write(
            "UPDATE messages SET status = 'claimed', attempts = attempts + 1 "
            "WHERE id = ? AND status = 'pending'",
            [(i,) for i in ids],
            many=True,
        )

    def sent(self, ids: list[tuple[str, float]]) -> None:
        """``(id, engine clock)`` of delivered messages."""
        self._write(
            "UPDATE messages SET status = 'sent', sent_at = ?, last_error = NULL WHERE id = ?",
            [(at, i) for i, at in ids],
            many=True,
        )

    def retry(self, id: str, next_try: float, error: str) -> None:
        self._write(
            "UPDATE messages SET status = 'pending', next_try = ?, last_error = ? WHERE id = ?",
            (next_try, error, id),
        )

    def suppress(self, id: str, reason: str) -> None:
        """A pending message that may no longer go out (``stale`` at delivery time)."""
        self._write("UPDATE messages SET status = 'suppressed', reason = ? WHERE id = ?", (reason, id))

    def dead(self, id: str, error: str, at: float) -> None:
        """Give up on a message: status ``dead``, and a ``dead_letters`` row with the error."""
        with self._transaction() as conn:
            conn.execute("UPDATE messages SET status = 'dead', last_error = ? WHERE id = ?", (error, id))
            conn.execute(
                "INSERT OR REPLACE INTO dead_letters (id, campaign, user, channel, attempts, error, at, "
                "payload) SELECT id, campaign, user, channel, attempts, ?, ?, payload FROM messages "
                "WHERE id = ?",
                (error, at, id),
            )

    # ------------------------------------------------------------------ conversions and reports

    def convert(self, rows: list[Conversion]) -> int:
        """Record conversions, once per message."""
        return self._write(
            f"INSERT OR IGNORE INTO conversions ({', '.join(_CONVERSION)}) VALUES ({', '.join('?' * len(_CONVERSION))})",
            [msgspec.structs.astuple(r) for r in rows],
            many=True,
        )

    def counts(self) -> dict[tuple[str, str], int]:
        """Messages per ``(status, reason)``."""
        return {
            (s, r or ""): n
            for s, r, n in self._read("SELECT status, reason, count(*) FROM messages GROUP BY status, reason")
        }

    def report(self) -> list[tuple[str, str, str, str, int]]:
        """``(campaign, variant, status, reason, count)`` for every group of messages."""
        return self._read(
            "SELECT campaign, variant, status, coalesce(reason, ''), count(*) FROM messages "
            "GROUP BY campaign, variant, status, reason ORDER BY campaign, variant"
        )

    def conversions(self) -> dict[tuple[str, str], int]:
        """Conversions per ``(campaign, variant)``."""
        return {
            (c, v): n
            for c, v, n in self._read(
                "SELECT campaign, variant, count(*) FROM conversions GROUP BY campaign, variant"
            )
        }

    def forget(self, user: str) -> int:
        """Erase every message, dead letter and conversion of ``user``; returns the messages."""
        with self._transaction() as conn:
            n = conn.execute("DELETE FROM messages WHERE user = ?", (user,)).rowcount
            conn.execute("DELETE FROM dead_letters WHERE user = ?", (user,))
            conn.execute("DELETE FROM conversions WHERE user = ?", (user,))
        with self._lock:
            schema.checkpoint(self.conn)
        return n

    def close(self) -> None:
        self.conn.close()


def decided_messages(data_dir: Path) -> list[tuple[str, str, str, str]]:
    """``(transition, segment, user, campaign)`` of every message recorded in
    ``data_dir``'s outbox (none without one), read on a read-only connection of its own:
    ``segd replay`` reads them before its dispatcher starts."""
    path = Path(data_dir) / schema.OUTBOX_FILE
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT transition, segment, user, campaign FROM messages").fetchall()
    except sqlite3.Error:  # a file without the table yet: nothing decided
        return []
    finally:
        conn.close()
