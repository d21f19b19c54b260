"""The segment store's rebuild write path (``segd replay``): a fresh store filled in bulk.

``segd replay`` drops every segment's rows and records the whole history again. The live
write path (``SegmentStore.apply``) pays, per transition, an id look-up, inserts into the
primary key and two secondary indexes at random places, the size fix-up queries and a
members read-modify-write: about 16 us of SQLite work per transition, in the one serial
process of the replay. A store known to start empty needs none of it while it fills:

- the ids seen so far are a set in memory (idempotent by id exactly as the primary key is:
  a recovered shard's transitions, sent again, are not new);
- membership (``members``) is a dict in memory, moved by the very rule of
  ``SegmentStore._move_members`` (per call and segment, in history order), and the finished
  stays a list;
- new transitions are appended to a staging table without any index (one transaction per
  call, ``synchronous=normal``: no fsync);
- ``finish`` builds the tables once: ``transitions`` with each row's ``size`` as the running
  sum in history order (the window function ``schema._migrate_history`` uses: the sizes the
  live path keeps by fix-ups), then the members and the stays in key order, then the
  secondary indexes, then the segment versions, all in one transaction.

The segment versions are written only by ``finish``: a replay killed before it leaves none,
so the next open of the store resets every segment (and ``schema.create_segments`` drops
the staging table and builds the missing indexes).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import sqlite_utils

from actors.records import Transition
from store import schema

_key = operator.attrgetter("at", "seq", "user", "id")  # history order (store.segments)
_STAGE = (
    f"INSERT INTO {schema.STAGED_TRANSITIONS} (id, segment, user, kind, at, seq) VALUES (?, ?, ?, ?, ?, ?)"
)
_BUILD = (
    "INSERT INTO transitions (id, segment, user, kind, at, seq, size) "
    "SELECT id, segment, user, kind, at, seq, sum(CASE kind WHEN 'enter' THEN 1 ELSE -1 END) "
    "OVER (PARTITION BY segment ORDER BY at, seq, user, id ROWS UNBOUNDED PRECEDING) "
    f"FROM {schema.STAGED_TRANSITIONS}"  # in history order per segment: the indexes build from it cheaply
)


class SegmentBuild:
    """A rebuild of a segment store from empty. ``begin`` empties the store (fenced by
    ``owner``); ``apply`` records transitions as ``SegmentStore.apply`` does; ``finish``
    writes the tables and ``versions``. Not thread-safe (one writer, the segment manager)."""

    def __init__(self, db: sqlite_utils.Database, owner: str | None, versions: dict[str, str]) -> None:
        self.db = db
        self.owner = owner
        self.versions = dict(versions)
        self.seen: set[str] = set()  # every transition id recorded
        self.members: dict[str, dict[str, float]] = {}  # segment -> user -> since
        self.stays: list[tuple[str, str, float, float, int]] = []  # (segment, user, at, until, span)
        self.finished = False

    def begin(self) -> None:
        """Drop every segment's rows: the store is empty, without its secondary indexes."""
        with schema.transaction(self.db.conn, "segment store rebuild reset", self.owner):
            schema.recreate_segments(self.db)

    def apply(self, transitions: Iterable[Transition]) -> list[Transition]:
        """Record transitions; return those not seen before, in input order (only they move
        membership). One transaction; raises StoreError (nothing recorded) if it fails."""
        seen = self.seen
        new: list[Transition] = []
        for t in transitions:
            if t.id not in seen:
                seen.add(t.id)
                new.append(t)
        if not new:
            return []
        try:
            with schema.transaction(self.db.conn, "segment store commit", self.owner) as conn:
                conn.executemany(_STAGE, [(t.id, t.segment, t.user, t.kind, t.at, t.seq) for t in new])
        except BaseException:
            seen.difference_update(t.id for t in new)  # not recorded: new again when retried
            raise
        by_segment: dict[str, list[Transition]] = {}
        for t in new:
            by_segment.setdefault(t.segment, []).append(t)
        for segment, rows in by_segment.items():
            rows.sort(key=_key)
            self._move(segment, rows)
        return new

    def _move(self, segment: str, rows: list[Transition]) -> None:
        """``SegmentStore._move_members`` over the members in memory: an enter opens a stay
        (entering twice keeps the first), an exit closes it into the stays (an empty stay,
        enter and exit at one instant, holds no T and is not kept)."""
        since = self.members.setdefault(segment, {})
        stays = self.stays
        for t in rows:
            if t.kind == "enter":
                if t.user not in since:
                    since[t.user] = t.at
            elif (began := since.pop(t.user, None)) is not None and t.at > began:
                stays.append((segment, t.user, began, t.at, schema.stay_span(t.at - began)))

    def finish(self) -> None:
        """Write the history with its sizes, the members, the stays, the indexes and the
        segment versions in one transaction; the in-memory state is dropped after."""
        members = sorted((s, u, at) for s, users in self.members.items() for u, at in users.items())
        self.stays.sort(key=operator.itemgetter(0, 1, 2))
        with schema.transaction(self.db.conn, "segment store rebuild end", self.owner) as conn:
            conn.execute(_BUILD)
            conn.executemany("INSERT INTO members (segment, user, since) VALUES (?, ?, ?)", members)
            conn.executemany(
                "INSERT INTO stays (segment, user, at, until, span) VALUES (?, ?, ?, ?, ?)", self.stays
            )
            conn.execute(f"DROP TABLE {schema.STAGED_TRANSITIONS}")
            schema.index_segments(self.db)
            conn.executemany(
                "INSERT OR REPLACE INTO segment_versions (segment, fingerprint) VALUES (?, ?)",
                list(self.versions.items()),
            )
        self.finished = True
        self.seen, self.members, self.stays = set(), {}, []
