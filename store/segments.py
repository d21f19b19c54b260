"""Segment membership and transition history on disk (``data_dir/segments.db``).

Idempotent by transition id: ``apply`` inserts each transition once (the primary key is the
id) and changes membership only for transitions it had not seen, so re-sending transitions
after a shard recovery or a restart changes nothing.

**History order and "at time T"**: a segment's history is ordered by (at, seq, user, id).
The membership at logical time T is the result of applying, in that order, every transition
with ``at <= T``: a user who enters at exactly T is a member at T, one who leaves at exactly T
is not. ``size_at``, ``members_at`` and ``size_points`` all follow this rule.

**The history index** (``store.schema.create_segments``), chosen by measuring the
alternatives on 10^6 transitions (README, "Membership at a past time"):

- ``size`` on every transition, the segment's size right after it: the size at T is one
  index seek to the last row with ``at <= T`` (a sum over the history took 13-130 ms,
  checkpoints every 1,000 rows 0.1 ms, this 0.01 ms), and ``sizes`` is one seek per point.
- Members at T are the finished stays with ``at <= T < until`` (table ``stays``) plus the
  current members whose stay began by T (``members.since``). Two plans find them and the
  cheaper one runs: *walk* both in user order (cost ~ stays / fraction of them around T:
  good when members are many) or *stab*: a stay of span s (``until - at <= 2**s``) that
  contains T began within 2**s before T, so one index range per span in use finds the stays
  around T plus a few that ended just before (cost ~ members at T: good when they are few).

Invariant the index relies on: per (segment, user) transitions arrive in history order
(one shard hosts the user and emits them in order). Across users they may arrive out of
order; then the sizes of the rows after the new ones are fixed up (rare, and only the tail).
"""

from __future__ import annotations

import math
import operator
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from actors.records import SegmentPage, Transition
from segd.errors import StoreError
from store import schema
from store.segbuild import SegmentBuild

_COLUMNS = "id, segment, user, kind, at, seq"
_ORDER = "at, seq, user, id"
_INSERT = f"INSERT INTO transitions ({_COLUMNS}, size) VALUES (?, ?, ?, ?, ?, ?, ?)"
_SIZE_AT = (
    "SELECT size FROM transitions WHERE segment = ? AND at <= ? "
    "ORDER BY at DESC, seq DESC, user DESC, id DESC LIMIT 1"
)
_WALK = (
    "SELECT user FROM stays WHERE segment = :segment AND user > :after "
    "AND at <= :at AND until > :at UNION ALL "
    "SELECT user FROM members WHERE segment = :segment AND user > :after AND since <= :at "
    "ORDER BY user LIMIT :limit"
)
#: A stabbed row costs ~4 walked rows (measured: 0.4 us against 0.1 us per row here).
_STAB_COST = 4
CACHE_KIB = 64 << 10  # SQLite page cache of the segment store
WAL_PAGES = 10_000  # pages in the WAL before it is checkpointed (SQLite's default: 1,000)
_MAX_SPAN = 1024  # 2.0**1024 overflows: stays that long are always candidates


#: History order of a transition: (at, seq, user, id).
_key = operator.attrgetter("at", "seq", "user", "id")


def _transition(row: Sequence[Any]) -> Transition:
    i, s, u, k, a, q = row
    return Transition(id=i, segment=s, user=u, kind=k, at=a, seq=q)


class SegmentStore:
    """Membership (``members``), history (``transitions``) and the history index of every
    segment. One writer (the segment manager); not thread-safe."""

    def __init__(self, data_dir: Path, *, synchronous: str = "full", owner: str | None = None) -> None:
        """``owner``: the data dir lock's token of the daemon or replay this store writes for;
        it claims the file, and every write is fenced by it (``schema.transaction``)."""
        self.path = Path(data_dir) / schema.SEGMENTS_FILE
        self.owner = owner
        self.db = schema.open_store(self.path, schema.create_segments, synchronous=synchronous, owner=owner)
        self.conn = self.db.conn
        # The indexes keyed by transition id and by user take writes at random places: a page
        # cache that holds them, and a WAL that takes many commits before it is copied back,
        # save rewriting the same pages at every commit (measured: 1.3x less CPU per transition
        # at 4 * 10^5 transitions).
        self.conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        self._build: SegmentBuild | None = None  # a rebuild from empty (``rebuild``) until its end
        self._count()

    def _count(self) -> None:
        # Per segment: stays and current members (the walk's cost), spans in use (the stab's).
        self._stays: dict[str, int] = {}
        self._spans: dict[str, set[int]] = {}
        for segment, span, n in self.conn.execute(
            "SELECT segment, span, count(*) FROM stays GROUP BY segment, span"
        ):
            self._stays[segment] = self._stays.get(segment, 0) + n
            self._spans.setdefault(segment, set()).add(span)
        self._open = self.sizes()

    def rebuild(self, versions: dict[str, str]) -> None:
        """Drop every segment's rows and fill the store again through the bulk write path
        (``store.segbuild``, ``segd replay``): ``apply`` behaves the same, the tables and
        ``versions`` are written by ``checkpoint``; queries see an empty store until then."""
        build = SegmentBuild(self.db, self.owner, versions)
        build.begin()
        self._build = build
        self._count()

    # ------------------------------------------------------------------ writes

    def apply(self, transitions: Iterable[Transition]) -> list[Transition]:
        """Record transitions in one transaction; return those not seen before, in input
        order (only they change membership). Raises StoreError if the commit fails."""
        if self._build is not None:
            return self._build.apply(transitions)
        batch = list(transitions)
        if not batch:
            return []
        new: list[Transition] = []
        done: list[tuple[str, int, int, list[int]]] = []
        with schema.transaction(self.conn, "segment store commit", self.owner) as conn:
            known = {
                r[0]
                for r in schema.select_in(
                    conn, "SELECT id FROM transitions WHERE id IN ({marks})", [t.id for t in batch]
                )
            }
            by_segment: dict[str, list[Transition]] = {}
            for t in batch:
                if t.id not in known:
                    known.add(t.id)
                    new.append(t)
                    by_segment.setdefault(t.segment, []).append(t)
            for segment, rows in by_segment.items():
                rows.sort(key=_key)
                done.append((segment, *self._insert(conn, segment, rows)))
        for segment, opened, closed, spans in done:  # only once committed
            self._open[segment] = self._open.get(segment, 0) + opened
            self._stays[segment] = self._stays.get(segment, 0) + closed
            self._spans.setdefault(segment, set()).update(spans)
        return new

    def _insert(
        self, conn: sqlite3.Connection, segment: str, rows: list[Transition]
    ) -> tuple[int, int, list[int]]:
        """Record one segment's new transitions (sorted in history order); returns (members
        added minus removed, stays finished, their spans)."""
        self._insert_sized(conn, segment, rows)
        return self._move_members(conn, segment, rows)

    @staticmethod
    def _insert_sized(conn: sqlite3.Connection, segment: str, rows: list[Transition]) -> None:
        """Insert the transitions with their running sizes; fix the sizes of stored rows that
        come after the first of them in history order (transitions that arrived late)."""
        first = _key(rows[0])
        before = conn.execute(
            "SELECT size FROM transitions WHERE segment = ? AND (at, seq, user, id) < (?, ?, ?, ?) "
            "ORDER BY at DESC, seq DESC, user DESC, id DESC LIMIT 1",
            (segment, *first),
        ).fetchone()
        size = before[0] if before else 0
        tail = conn.execute(
            f"SELECT rowid, {_ORDER}, kind, size FROM transitions "
            f"WHERE segment = ? AND (at, seq, user, id) > (?, ?, ?, ?) ORDER BY {_ORDER}",
            (segment, *first),
        ).fetchall()
        sized: list[tuple[str, str, str, str, float, int, int]] = []
        fixes: list[tuple[int, int]] = []
        i = 0
        for t in rows:
            if tail:
                k = _key(t)
                while i < len(tail) and tuple(tail[i][1:5]) < k:  # stored rows before t
                    size += 1 if tail[i][5] == "enter" else -1
                    if tail[i][6] != size:
                        fixes.append((size, tail[i][0]))
                    i += 1
            size += 1 if t.kind == "enter" else -1
            sized.append((t.id, segment, t.user, t.kind, t.at, t.seq, size))
        for rowid, _, _, _, _, kind, old in tail[i:]:
            size += 1 if kind == "enter" else -1
            if old != size:
                fixes.append((size, rowid))
        conn.executemany("UPDATE transitions SET size = ? WHERE rowid = ?", fixes)
        conn.executemany(_INSERT, sized)

    @staticmethod
    def _move_members(
        conn: sqlite3.Connection, segment: str, rows: list[Transition]
    ) -> tuple[int, int, list[int]]:
        """Apply the transitions to ``members`` (an enter opens a stay, recorded with its
        start; an exit closes it into ``stays``), reading each user's stored stay once."""
        users = sorted({t.user for t in rows})
        stored: dict[str, float] = {}
        for n in range(0, len(users), schema.IN_CHUNK):
            chunk = users[n : n + schema.IN_CHUNK]
            stored.update(
                conn.execute(
                    f"SELECT user, since FROM members WHERE segment = ? AND user IN ({','.join('?' * len(chunk))})",
                    (segment, *chunk),
                )
            )
        since = dict(stored)
        final: dict[str, float | None] = {}  # users whose membership changed: since, or None
        stays: list[tuple[str, str, float, float, int]] = []
        for t in rows:
            if t.kind == "enter":
                if t.user not in since:  # (entering twice would keep the first stay)
                    since[t.user] = final[t.user] = t.at
            elif (began := since.pop(t.user, None)) is not None:
                final[t.user] = None
                if t.at > began:  # an empty stay (enter and exit at one instant) holds no T
                    stays.append((segment, t.user, began, t.at, schema.stay_span(t.at - began)))
        conn.executemany(
            "DELETE FROM members WHERE segment = ? AND user = ?",
            [(segment, u) for u, s in final.items() if s is None and u in stored],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO members (segment, user, since) VALUES (?, ?, ?)",
            [(segment, u, s) for u, s in final.items() if s is not None],
        )
        conn.executemany("INSERT INTO stays (segment, user, at, until, span) VALUES (?, ?, ?, ?, ?)", stays)
        return len(since) - len(stored), len(stays), [x[4] for x in stays]

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and sync it: with ``synchronous="normal"``
        (a rebuild) what is committed is durable once this returns. A rebuild's tables
        are written first (``SegmentBuild.finish``)."""
        if self._build is not None:
            self._build.finish()
            self._build = None
            self._count()
        schema.checkpoint(self.conn)

    def forget(self, user: str) -> list[str]:
        """Erase ``user``'s membership and history, and their part of every size recorded
        during their stays; returns the segments it was a member of. Costs one row update
        per transition of the segment during the user's stays."""
        if self._build is not None:
            raise StoreError(f"forget refused: {self.path} is being rebuilt (segd replay)")
        with schema.transaction(self.conn, "segment store forget", self.owner) as conn:
            left = [r[0] for r in conn.execute("SELECT segment FROM members WHERE user = ?", (user,))]
            rows = conn.execute(
                f"SELECT segment, kind, {_ORDER} FROM transitions WHERE user = ? ORDER BY segment, {_ORDER}",
                (user,),
            ).fetchall()
            periods: list[tuple[str, tuple[Any, ...], tuple[Any, ...]]] = []
            entered: dict[str, tuple[Any, ...]] = {}
            for segment, kind, *key in rows:
                if kind == "enter":
                    entered[segment] = tuple(key)
                elif segment in entered:
                    periods.append((segment, entered.pop(segment), tuple(key)))
            periods += ((segment, key, (math.inf, 0, "", "")) for segment, key in entered.items())
            for segment, start, end in periods:  # the rows between an enter and its exit counted the user
                conn.execute(
                    "UPDATE transitions SET size = size - 1 WHERE segment = ? "
                    "AND (at, seq, user, id) > (?, ?, ?, ?) AND (at, seq, user, id) < (?, ?, ?, ?)",
                    (segment, *start, *end),
                )
            gone: dict[str, int] = {}
            for segment in {r[0] for r in rows}:
                gone[segment] = conn.execute(
                    "DELETE FROM stays WHERE segment = ? AND user = ?", (segment, user)
                ).rowcount
            conn.executemany("DELETE FROM members WHERE segment = ? AND user = ?", [(s, user) for s in left])
            conn.execute("DELETE FROM transitions WHERE user = ?", (user,))
        for segment, n in gone.items():
            self._stays[segment] = self._stays.get(segment, 0) - n
        for segment in left:
            self._open[segment] = self._open.get(segment, 0) - 1
        schema.checkpoint(self.conn)
        return left

    def reset(self, segments: Iterable[str], versions: dict[str, str]) -> None:
        """Drop the rows of ``segments`` (to be rebuilt from the log) and record ``versions``."""
        dropped = list(segments)
        with schema.transaction(self.conn, "segment store reset", self.owner) as conn:
            for s in dropped:
                conn.execute("DELETE FROM transitions WHERE segment = ?", (s,))
                conn.execute("DELETE FROM members WHERE segment = ?", (s,))
                conn.execute("DELETE FROM stays WHERE segment = ?", (s,))
            conn.execute("DELETE FROM segment_versions")
            conn.executemany(
                "INSERT INTO segment_versions (segment, fingerprint) VALUES (?, ?)", list(versions.items())
            )
        for s in dropped:
            self._stays.pop(s, None)
            self._open.pop(s, None)
            self._spans.pop(s, None)

    # ------------------------------------------------------------------ membership now

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

    def versions(self) -> dict[str, str]:
        """The fingerprint each segment's rows were computed with."""
        return dict(self.conn.execute("SELECT segment, fingerprint FROM segment_versions"))

    # ------------------------------------------------------------------ history

    def history(
        self,
        segments: Sequence[str],
        user: str | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> list[Transition]:
        """Transitions of ``segments`` (and of ``user`` if given) with ``since <= at <= until``
        (each bound optional), in history order (at, seq, user, id), at most ``limit``."""
        if not segments:
            return []
        where = [f"segment IN ({','.join('?' * len(segments))})"]
        args: list[Any] = list(segments)
        for cond, value in (("user = ?", user), ("at >= ?", since), ("at <= ?", until)):
            if value is not None:
                where.append(cond)
                args.append(value)
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM transitions WHERE {' AND '.join(where)} ORDER BY {_ORDER} LIMIT ?",
            (*args, limit),
        )
        return [_transition(r) for r in rows]

    def size_at(self, segment: str, at: float) -> int:
        """The segment's size at logical time ``at`` (every transition with ``at <= T``)."""
        row = self.conn.execute(_SIZE_AT, (segment, at)).fetchone()
        return int(row[0]) if row else 0

    def size_points(self, segment: str, since: float, step: float, count: int) -> list[tuple[float, int]]:
        """``(t, size_at(t))`` for ``t = since + k*step``, k = 0 .. count-1: one index seek per
        point, in one statement (SQLite computes t with the same IEEE double arithmetic)."""
        rows = self.conn.execute(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < ? - 1) "
            "SELECT i, (SELECT size FROM transitions WHERE segment = ? AND at <= ? + k.i * ? "
            "ORDER BY at DESC, seq DESC, user DESC, id DESC LIMIT 1) FROM k",
            (count, segment, since, step),
        )
        return [(since + i * step, size or 0) for i, size in rows]

    def members_at(self, segment: str, at: float, after: str | None, limit: int) -> SegmentPage:
        """One page of the members at logical time ``at``, sorted by user id, after the
        ``after`` cursor; ``size`` is the size at ``at``. Runs the cheaper of the two plans
        (module docstring)."""
        size = self.size_at(segment, at)
        if size == 0:
            return SegmentPage(size=0, members=[], next=None)
        stays, now = self._stays.get(segment, 0), self._open.get(segment, 0)
        walk = (stays + now) * min(1.0, (limit + 1) / size)  # rows visited, in walked-row units
        stab = _STAB_COST * size + now  # every current member is read to find those begun by T
        plan = self.walk if walk <= stab else self.stab
        members = plan(segment, at, after or "", limit + 1)
        more = len(members) > limit
        del members[limit:]
        return SegmentPage(size=size, members=members, next=members[-1] if more else None)

    def walk(self, segment: str, at: float, after: str, limit: int) -> list[str]:
        """Members at ``at`` after ``after``, at most ``limit``, by walking users in order."""
        args = {"segment": segment, "after": after, "at": at, "limit": limit}
        return [r[0] for r in self.conn.execute(_WALK, args)]

    def stab(self, segment: str, at: float, after: str, limit: int) -> list[str]:
        """The same as ``walk``, by one index range per span of stay in use."""
        parts = [  # current members whose stay began by T (each contains T): a scan of them
            "SELECT user FROM members WHERE segment = :segment AND since <= :at AND user > :after"
        ]
        args: dict[str, Any] = {"segment": segment, "after": after, "at": at, "limit": limit}
        for i, span in enumerate(sorted(self._spans.get(segment, ()))):
            parts.append(
                "SELECT user FROM stays INDEXED BY stays_stab WHERE segment = :segment "
                f"AND span = :s{i} AND at >= :lo{i} AND at <= :at AND until > :at AND user > :after"
            )
            args[f"s{i}"] = span
            # one float below at - 2**span: rounding never drops a stay that began just inside
            args[f"lo{i}"] = -math.inf if span >= _MAX_SPAN else math.nextafter(at - 2.0**span, -math.inf)
        rows = self.conn.execute(" UNION ALL ".join(parts) + " ORDER BY user LIMIT :limit", args)
        return [r[0] for r in rows]

    def close(self) -> None:
        self.conn.close()
