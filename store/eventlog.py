"""The append-only event log: the source of truth for every derived state.

One SQLite file (``data_dir/events.db``, WAL). One writer, the daemon: ``stage`` builds a
whole group of events into rows on the caller's thread (the event loop), ``commit`` writes
them in one transaction on the writer thread and returns once it is durable
(``synchronous=FULL`` by default): group commit. Readers (``scan``) use their own
connection and may run concurrently with the writer.

Where the time goes (measured here, 1,000-row groups of the bench workload): SQLite's own
work inserting a row (the record, the table and the ``msg_id`` index) is about 3 us of CPU,
the fsync about 1 us per row; building a row in Python well under 1 us. So the inserts run
on the writer thread as multi-row ``INSERT ... VALUES (...), (...)`` statements of up to
2,048 rows: each is one ``sqlite3_step``, run with the GIL released, so the event loop keeps
decoding the next requests on the other core meanwhile. ``executemany`` on that thread would
take and release the GIL once per row and queue behind the busy loop for each (measured:
60 us a row instead of 10), which is why it is not used there.

Deduplication by ``msg_id`` is checked in memory against the groups staged before, and
against the log either by a lookup before staging (``look_up``) or, cheaper, by the log's
unique ``msg_id`` index during the commit itself (``assume_new``): the INSERTs maintain that
index anyway, so a group whose msg_ids are all new costs no lookup at all (measured: the
lookup was 0.6 us of CPU an event, 1,000-event groups). One that is not commits nothing and
raises ``SeenBefore``; the caller looks its msg_ids up and stages it again.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from actors.records import Ack, NewEvent, Row
from segd.clock import Clock
from segd.errors import StoreError
from store import schema


class SeenBefore(StoreError):
    """The commit of a group staged with ``assume_new`` met a msg_id already in the log.
    Nothing of the group is written (the transaction is rolled back, the group dropped):
    stage it again after ``look_up``, and the groups staged on top of it too."""


class Appended(NamedTuple):
    """What ``stage`` did: one Ack per input event, and the new rows in log order."""

    acks: list[Ack]
    rows: list[Row]


_COLUMNS = ("seq", "user", "type", "event", "ts", "clock", "props", "traits", "msg_id", "context")
_WIDTH = len(_COLUMNS)
#: Rows per INSERT statement at most: 20,480 parameters, below SQLite's limit of 32,766.
#: Few statements per group, because the writer thread waits for the GIL after each one
#: (measured with a busy event loop: 512-row statements 25 us a row, 2,048-row ones 11-18).
#: A statement of 2,048 rows takes 16 ms to compile, once: the connection caches it.
CHUNK = 2048


#: Below this many rows a group's last statement has exactly its rows (one statement for a
#: small group: each statement is a GIL round trip for the writer); above, powers of two.
EXACT = 64


def _chunks(n: int) -> Iterator[int]:
    """The row counts of the statements that insert ``n`` rows: powers of two from 64 to
    CHUNK, then what is left (under 64) in one. At most 6 + 63 + 1 = 70 distinct statements
    exist, all kept compiled by the connection's cache (128)."""
    while n >= EXACT:
        k = min(CHUNK, 1 << (n.bit_length() - 1))
        yield k
        n -= k
    if n:
        yield n


@functools.cache
def _insert(rows: int) -> str:
    """``INSERT INTO events ... VALUES`` with ``rows`` rows of parameters (see ``_chunks``)."""
    marks = "(" + ", ".join("?" * _WIDTH) + ")"
    return f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES " + ", ".join([marks] * rows)


@dataclass(slots=True)
class _Staged:
    """A staged group: its parameters (``_WIDTH`` per row, flat), where the log will end
    with it, and its rows' msg_ids (for the dedupe of a group staged on top of it)."""

    params: list[Any]
    rows: int
    seq: int
    clock: float
    ids: dict[str, int]
    assumed: bool  # msg_ids taken for new without a lookup: the unique index checks them


@dataclass(slots=True)
class Lookup:
    """The msg_ids of a group about to be staged (see ``EventLog.prepare``): those found in
    the groups staged before it or in the log (``known``: msg_id -> seq), those still to be
    looked up in the log (``unseen``), and the groups staged before it (``before``)."""

    before: list[_Staged]
    known: dict[str, int]
    unseen: list[str]
    assumed: bool = False  # ``assume_new``: the unseen ones are taken for new


_SELECT = "SELECT seq, user, type, event, ts, clock, coalesce(props, traits), context FROM events"


class EventLog:
    """The event log file. One thread stages (the event loop), one commits (the writer),
    each reader scans on its own connection."""

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
        # Groups staged and not yet committed, oldest first: the one the writer thread is
        # committing and the one the event loop staged meanwhile. The writer pops its group
        # once it is durable (deque operations are atomic).
        self._staged: deque[_Staged] = deque()
        # msg_id lookups run on their own connection: the writer's may be mid-transaction
        # on the other thread. It sees what is committed; staged groups are checked in memory.
        self._reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    @property
    def staged(self) -> int:
        """Groups staged and not yet committed: the one being committed, and the next."""
        return len(self._staged)

    @property
    def count(self) -> int:
        """Events in the log (appended minus erased by ``forget``)."""
        return self.last_seq - self.forgotten

    def prepare(self, events: Sequence[NewEvent]) -> Lookup:
        """The first half of ``stage``: check ``events``' msg_ids against the groups staged
        so far, in memory; what is left is to be looked up in the log (``look_up``)."""
        before = list(self._staged)  # a snapshot: the writer may pop the oldest meanwhile
        known: dict[str, int] = {}
        ids = [e.msg_id for e in events if e.msg_id is not None]
        if not ids:
            return Lookup(before, known, [])
        for group in before:  # at most two: the group committing, and the one after it
            for key in group.ids.keys() & ids:
                known[key] = group.ids[key]
        return Lookup(before, known, [key for key in ids if key not in known] if known else ids)

    def look_up(self, lookup: Lookup) -> None:
        """Find ``lookup``'s unseen msg_ids in the log (what is committed: the groups staged
        before it were checked in memory). On its own connection, so it may run on another
        thread than the writer's and the event loop's, one call at a time. Raises StoreError."""
        if lookup.unseen:
            lookup.known.update(self._known_msg_ids(lookup.unseen))
            lookup.unseen = []

    def assume_new(self, lookup: Lookup) -> None:
        """Take ``lookup``'s unseen msg_ids for new without looking them up: the group's
        ``commit`` then checks them against the log's unique index, and raises SeenBefore
        (writing nothing) if one is there."""
        if lookup.unseen:
            lookup.unseen = []
            lookup.assumed = True

    def stage(self, events: Sequence[NewEvent], clock: Clock, lookup: Lookup | None = None) -> Appended:
        """Number and stamp ``events`` for a ``commit``; dedupe by ``msg_id``. A ``msg_id``
        seen before (in the log, in a group staged before, or earlier in this group) is not
        written again: its Ack is the original seq with ``duplicate``. Writes nothing: nothing
        is acknowledged-to-be until its ``commit`` returns, and ``last_seq`` moves only then.
        Raises StoreError if the ``msg_id`` lookup fails.

        ``lookup`` is ``prepare(events)`` after ``look_up`` or ``assume_new``, done by the
        caller (the lookup may then run on another thread while the loop does other work;
        nothing may be staged in between); without it, both ``prepare`` and ``look_up`` run
        here.

        A group may be staged while the one before it is being committed (the writer thread
        commits one while the event loop stages the next); it continues that group's seqs and
        sees its msg_ids. If that commit fails, this group assumed it: ``discard`` and stage
        its events again."""
        if lookup is None:
            lookup = self.prepare(events)
            self.look_up(lookup)
        assert not lookup.unseen, "stage() needs look_up() or assume_new() first"
        before, known = lookup.before, lookup.known
        seq = first = before[-1].seq if before else self.last_seq
        # ``mine``: the msg_ids this group logs first. ``known`` holds them too (a msg_id
        # twice in the group is a duplicate the second time); when it starts empty (no msg_id
        # of the group seen before: the usual case) the two are the same dict.
        alone = not known
        mine: dict[str, int] = known if alone else {}
        # Acks of duplicates only; the others are made at the end, in one go when there are
        # none (``map`` over the seqs, no Python frame per event).
        dup_acks: list[tuple[int, Ack]] = []
        rows: list[Row] = []
        params: list[Any] = []
        add, row = params.extend, rows.append
        # The events of one request share one ``wall`` object and most have no ``ts``: the
        # stamp of (None, wall) right after a stamp of (None, wall) is that one again (it
        # moved the clock to at least wall, or, in event mode, did not move it), so it is
        # reused, and the clock is called once per request, not per event.
        last_wall: object = None
        ts = at = 0.0
        with clock.stamping() as stamp:
            for e in events:
                msg_id = e.msg_id
                if msg_id is not None:
                    if msg_id in known:
                        dup_acks.append((seq - first + len(dup_acks), Ack(known[msg_id], True)))
                        continue
                    if alone:
                        known[msg_id] = seq + 1
                    else:
                        known[msg_id] = mine[msg_id] = seq + 1
                seq += 1
                if e.ts is not None:
                    ts, at = stamp(e.ts, e.wall)
                    last_wall = None
                elif e.wall is not last_wall:
                    last_wall = e.wall
                    ts, at = stamp(None, last_wall)
                user, kind, name, body, context = e.user, e.type, e.event, e.body, e.context
                if kind == "track":
                    add((seq, user, kind, name, ts, at, body, None, msg_id, context))
                else:
                    add((seq, user, kind, name, ts, at, None, body, msg_id, context))
                row(Row(seq, user, kind, name, ts, at, body, context))
        acks = list(map(Ack, range(first + 1, seq + 1)))
        if dup_acks:  # merge, in event order: each index is the duplicate's in ``events``
            new, acks = iter(acks), []
            for i, dup in dup_acks:
                acks.extend(itertools.islice(new, i - len(acks)))
                acks.append(dup)
            acks.extend(new)
        if rows:
            self._staged.append(_Staged(params, len(rows), seq, rows[-1].clock, mine, lookup.assumed))
        return Appended(acks, rows)

    def commit(self) -> None:
        """Write the oldest staged group in one transaction and make it durable (see
        ``stage``); no-op if nothing is staged. Runs on the writer thread, one at a time.
        Raises StoreError, after a rollback (nothing of the group is in the log), if a write
        or the commit fails, and SeenBefore if a msg_id ``assume_new`` took for new is in the
        log; the group is dropped either way."""
        if not self._staged:
            return
        staged = self._staged[0]
        conn, params = self.conn, staged.params
        try:
            conn.execute("BEGIN")
            done = 0
            for k in _chunks(staged.rows):
                conn.execute(_insert(k), params[done * _WIDTH : (done + k) * _WIDTH])
                done += k
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._staged.popleft()
            if staged.assumed and isinstance(exc, sqlite3.IntegrityError) and "events.msg_id" in str(exc):
                raise SeenBefore(f"a msg_id of the group is in the log already: {exc}") from exc
            raise StoreError(f"event log commit failed: {exc}") from exc
        # last_seq first: a stage that no longer sees this group must see it in last_seq.
        self.last_seq, self.last_clock = staged.seq, staged.clock
        self._staged.popleft()

    def discard(self) -> None:
        """Drop every staged group (after a failed commit, the ones staged on top of it).
        Only while no commit runs."""
        self._staged.clear()

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
        try:
            found = schema.select_in(
                self._reader, "SELECT msg_id, seq FROM events WHERE msg_id IN ({marks})", ids
            )
        except sqlite3.Error as exc:
            raise StoreError(f"event log msg_id lookup failed: {exc}") from exc
        return dict(found)

    def scan(self, after: int = 0, until: int | None = None, *, batch: int = 10_000) -> Iterator[list[Row]]:
        """Rows with ``after < seq <= until`` in log order, in lists of at most ``batch``.

        Uses a fresh read-only connection, so it may run in another thread while the writer
        appends; it sees the log as of each batch's read.
        """
        for chunk in self.scan_tuples(after, until, batch=batch):
            yield [Row(*r) for r in chunk]  # _SELECT lists Row's fields in order

    def scan_tuples(
        self, after: int = 0, until: int | None = None, *, batch: int = 10_000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """``scan``'s rows as the plain tuples SQLite returns (Row's fields in order: one
        encodes to the same msgpack array as the Row), with no object built per row: the
        replay's reader partitions and encodes them as they are."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            limit = until if until is not None else (1 << 62)
            while after < limit:
                chunk = conn.execute(
                    f"{_SELECT} WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?", (after, limit, batch)
                ).fetchall()
                if not chunk:
                    return
                yield chunk
                after = chunk[-1][0]
        finally:
            conn.close()

    def close(self) -> None:
        """Close the connections (the writer's last, checkpointing the WAL)."""
        self._reader.close()
        self.conn.close()


def decode(body: bytes | None) -> dict[str, Any]:
    """A row's props or traits as a dict."""
    data: dict[str, Any] = msgpack.unpackb(body, raw=False) if body else {}
    return data
