"""The append-only event log: the source of truth for every derived state.

One SQLite file (``data_dir/events.db``, WAL). One writer, the daemon's commit thread:
``append`` writes a whole group of events in one transaction (group commit) and returns
only after the commit is durable (``synchronous=FULL`` by default). Readers (``scan``) use
their own connection and may run concurrently with the writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from actors.records import Ack, NewEvent, Row
from segd.clock import Clock
from segd.errors import StoreError
from store import schema


class Appended(NamedTuple):
    """What ``stage`` did: one Ack per input event, and the new rows in log order."""

    acks: list[Ack]
    rows: list[Row]


_INSERT = (
    "INSERT INTO events (seq, user, type, event, ts, clock, props, traits, msg_id, context) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT = "SELECT seq, user, type, event, ts, clock, coalesce(props, traits), context FROM events"


class EventLog:
    """The event log file. Not thread-safe: one thread appends, each reader scans its own."""

    def __init__(self, data_dir: Path, *, synchronous: str = "full") -> None:
        self.path = Path(data_dir) / schema.EVENTS_FILE
        self.db = schema.open_store(self.path, schema.create_events, synchronous=synchronous)
        self.conn = self.db.conn
        seq, clock = self.conn.execute(
            "SELECT seq, clock FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone() or (0, 0.0)
        self.last_seq: int = seq
        self.last_clock: float = clock
        forgotten = self.conn.execute("SELECT value FROM meta WHERE key = 'forgotten'").fetchone()
        self.forgotten = int(forgotten[0]) if forgotten else 0
        self._staged: tuple[int, float] | None = None  # (seq, clock) of a staged transaction

    @property
    def count(self) -> int:
        """Events in the log (appended minus erased by ``forget``)."""
        return self.last_seq - self.forgotten

    def stage(self, events: Sequence[NewEvent], clock: Clock) -> Appended:
        """Write ``events`` in an open transaction that ``commit`` then makes durable (or
        rolls back); dedupe by ``msg_id``. A ``msg_id`` seen before (in the log or earlier in
        this group) is not written again: its Ack is the original seq with ``duplicate``.
        Raises StoreError (nothing staged) if the writes fail. Nothing is acknowledged-to-be until
        ``commit`` returns; ``last_seq`` moves only then. The daemon stages on its event-loop
        thread and commits on the writer thread: the fsync releases the GIL once, whereas
        row inserts on a second thread would fight the event loop for it row by row."""
        known = self._known_msg_ids([e.msg_id for e in events if e.msg_id])
        acks: list[Ack] = []
        rows: list[Row] = []
        params = []
        seq = self.last_seq
        with clock.stamping() as stamp:
            for e in events:
                if e.msg_id is not None and e.msg_id in known:
                    acks.append(Ack(seq=known[e.msg_id], duplicate=True))
                    continue
                seq += 1
                ts, at = stamp(e.ts, e.wall)
                track = e.type == "track"
                params.append(
                    (
                        seq,
                        e.user,
                        e.type,
                        e.event,
                        ts,
                        at,
                        e.body if track else None,
                        None if track else e.body,
                        e.msg_id,
                        e.context,
                    )
                )
                rows.append(
                    Row(
                        seq=seq,
                        user=e.user,
                        type=e.type,
                        event=e.event,
                        ts=ts,
                        clock=at,
                        body=e.body,
                        context=e.context,
                    )
                )
                acks.append(Ack(seq=seq, duplicate=False))
                if e.msg_id is not None:
                    known[e.msg_id] = seq
        self._staged = None
        if params:
            try:
                self.conn.execute("BEGIN")
                self.conn.executemany(_INSERT, params)
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise StoreError(f"event log commit failed: {exc}") from exc
            self._staged = (seq, rows[-1].clock)
        return Appended(acks, rows)

    def commit(self) -> None:
        """Make the staged transaction durable (see ``stage``); no-op if nothing is staged.
        Raises StoreError, after a rollback, if the commit fails."""
        if self._staged is None:
            return
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise StoreError(f"event log commit failed: {exc}") from exc
        finally:
            staged, self._staged = self._staged, None
        self.last_seq, self.last_clock = staged

    def forget(self, user: str) -> int:
        """Erase every event of ``user`` (the one exception to append-only); returns how many.

        Deleted content is zeroed (``secure_delete``) and the WAL truncated. Only the writer
        thread may call this, between appends.
        """
        with schema.transaction(self.conn, "event log forget") as conn:
            n = conn.execute("DELETE FROM events WHERE user = ?", (user,)).rowcount
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('forgotten', ?)", (str(self.forgotten + n),)
            )
        self.forgotten += n
        schema.checkpoint(self.conn)
        return n

    def _known_msg_ids(self, ids: list[str]) -> dict[str, int]:
        found = schema.select_in(self.conn, "SELECT msg_id, seq FROM events WHERE msg_id IN ({marks})", ids)
        return dict(found)

    def scan(self, after: int = 0, until: int | None = None, *, batch: int = 10_000) -> Iterator[list[Row]]:
        """Rows with ``after < seq <= until`` in log order, in lists of at most ``batch``.

        Uses a fresh read-only connection, so it may run in another thread while the writer
        appends; it sees the log as of each batch's read.
        """
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            limit = until if until is not None else (1 << 62)
            while after < limit:
                chunk = conn.execute(
                    f"{_SELECT} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?", (after, limit, batch)
                ).fetchall()
                if not chunk:
                    return
                yield [Row(*r) for r in chunk]  # _SELECT lists Row's fields in order
                after = chunk[-1][0]
        finally:
            conn.close()

    def close(self) -> None:
        """Close the writer connection (checkpointing the WAL)."""
        self.conn.close()


def decode(body: bytes | None) -> dict[str, Any]:
    """A row's props or traits as a dict."""
    data: dict[str, Any] = msgpack.unpackb(body, raw=False) if body else {}
    return data
