"""Schemas of segd's SQLite files, created and migrated with sqlite-utils.

Every store lives under ``data_dir`` as a plain SQLite file that ``sqlite-utils`` and the
``sqlite3`` shell can open. ``SCHEMA_VERSION`` is recorded in each file's ``meta`` table;
opening a file written by a newer segd is refused rather than misread.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlite_utils

from segd.errors import StoreError

#: 2: the event log has a ``context`` column (version 1 files gain it when opened).
SCHEMA_VERSION = 2

EVENTS_FILE = "events.db"


def open_db(path: Path, *, synchronous: str = "full") -> sqlite_utils.Database:
    """Open (creating if needed) a WAL-mode SQLite file with the given durability.

    The raw connection has ``isolation_level=None``: callers issue BEGIN/COMMIT themselves,
    so one group commit is exactly one transaction and one fsync.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        conn.execute("PRAGMA busy_timeout=10000")
        # Deleted content is overwritten with zeros, not left in free pages: `forget` must
        # leave no trace of a user's data in any file.
        conn.execute("PRAGMA secure_delete=ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    return sqlite_utils.Database(conn)


@contextmanager
def transaction(conn: sqlite3.Connection, what: str) -> Iterator[sqlite3.Connection]:
    """One explicit transaction: BEGIN, then COMMIT, or ROLLBACK if the body raises.

    The connection must have ``isolation_level=None`` (``open_db``). SQLite errors, the
    COMMIT's included (a full disk shows there), become StoreError naming ``what``; nothing
    of the transaction is then in the file.
    """
    try:
        conn.execute("BEGIN")
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            with suppress(sqlite3.Error):  # keep the error that made us roll back
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{what} failed: {exc}") from exc
        raise


#: Values per ``IN (...)`` lookup: far below SQLite's variable limit (32,766 since 3.32).
IN_CHUNK = 500


def select_in(conn: sqlite3.Connection, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (a query with one ``IN ({marks})``) for every value, in chunks."""
    out: list[tuple[Any, ...]] = []
    for i in range(0, len(values), IN_CHUNK):
        chunk = values[i : i + IN_CHUNK]
        out += conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk).fetchall()
    return out


def open_store(
    path: Path, create: Callable[[sqlite_utils.Database], None], *, synchronous: str = "full"
) -> sqlite_utils.Database:
    """``open_db``, then (in one transaction) check the schema version and ``create`` the
    store's tables if they are missing. Every store under ``data_dir`` opens this way."""
    db = open_db(path, synchronous=synchronous)
    with transaction(db.conn, f"opening {path}"):
        ensure_meta(db, path)
        create(db)
    return db


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database file and truncate it (after ``forget``: the WAL may
    still hold old page images with the erased data). Best effort while readers are active."""
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def ensure_meta(db: sqlite_utils.Database, path: Path) -> None:
    """Create the ``meta`` table, record the schema version, refuse newer files. An older
    file is recorded as current: the ``create_*`` function that runs next in the same
    transaction migrates it."""
    if "meta" not in db.table_names():
        db.table("meta").create({"key": str, "value": str}, pk="key")
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    elif int(row[0]) > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {row[0]}; this segd understands up to {SCHEMA_VERSION}: upgrade segd"
        )
    elif int(row[0]) < SCHEMA_VERSION:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])


def create_events(db: sqlite_utils.Database) -> None:
    """The event log: one row per acknowledged event, ``seq`` is the log position."""
    if "events" in db.table_names():
        if "context" not in db.table("events").columns_dict:  # a version 1 file
            db.execute("ALTER TABLE events ADD COLUMN context BLOB")
        return
    db.table("events").create(
        {
            "seq": int,  # log position, 1, 2, 3... (gaps only after `forget`)
            "user": str,
            "type": str,  # "track" | "identify"
            "event": str,  # event name; NULL for identify
            "ts": float,  # event time, seconds since the epoch, UTC
            "clock": float,  # the engine clock when the event was appended
            "props": bytes,  # msgpack map, track only
            "traits": bytes,  # msgpack map, identify only
            "msg_id": str,  # client idempotency key, or NULL
            "context": bytes,  # msgpack map: where the event came from (SPEC section 2), or NULL
        },
        pk="seq",
        not_null={"user", "type", "ts", "clock"},
    )
    # Partial index: idempotency lookups without paying for rows that carry no msg_id.
    db.execute("CREATE UNIQUE INDEX events_msg_id ON events (msg_id) WHERE msg_id IS NOT NULL")


SEGMENTS_FILE = "segments.db"
SNAPSHOTS_FILE = "snapshots.db"
OUTBOX_FILE = "outbox.db"


def create_segments(db: sqlite_utils.Database) -> None:
    """Segment membership and the transition history (derived from the log, rebuildable).

    Besides SPEC's fields, each transition row carries the history index that answers
    ``segment at=T`` and ``sizes`` (see store/segments.py): ``size``, the segment's size right
    after it in history order (at, seq, user, id); on an enter row, ``until``, the ``at`` of
    the same user's next transition in the segment (NULL while the user is still a member),
    and ``span``, the power-of-two class of the stay ``until - at``. A file written before
    these columns existed is migrated in place, computing them from the rows it holds.
    """
    if "transitions" in db.table_names() and "size" not in db.table("transitions").columns_dict:
        _migrate_transitions(db)
    if "transitions" not in db.table_names():
        _create_transitions(db, "transitions")
        _index_transitions(db)
    if "members" not in db.table_names():
        # WITHOUT ROWID: the (segment, user) key is the row, so paging a segment is a range scan.
        db.execute(
            "CREATE TABLE members (segment TEXT NOT NULL, user TEXT NOT NULL, "
            "PRIMARY KEY (segment, user)) WITHOUT ROWID"
        )
    if "segment_versions" not in db.table_names():
        db.table("segment_versions").create({"segment": str, "fingerprint": str}, pk="segment")


def _create_transitions(db: sqlite_utils.Database, name: str) -> None:
    db.execute(
        f"CREATE TABLE {name} (id TEXT PRIMARY KEY, segment TEXT NOT NULL, user TEXT NOT NULL, "
        "kind TEXT NOT NULL, at FLOAT NOT NULL, seq INTEGER NOT NULL, "
        "size INTEGER NOT NULL, until FLOAT, span INTEGER)"
    )


def _index_transitions(db: sqlite_utils.Database) -> None:
    # History order of one segment; also the size-at-T seek and the forget/out-of-order fix-ups.
    db.execute("CREATE INDEX transitions_segment_at ON transitions (segment, at, seq, user, id)")
    # A user's history (and forget).
    db.execute("CREATE INDEX transitions_user ON transitions (user, at, seq, id)")
    # Members at T, walking users in order: one enter row per stay, with its end.
    db.execute("CREATE INDEX transitions_walk ON transitions (segment, user, at, until) WHERE kind = 'enter'")
    # Members at T, stabbing stays: a stay of span s containing T began within 2**s before T.
    db.execute(
        "CREATE INDEX transitions_stab ON transitions (segment, span, at, until, user) WHERE kind = 'enter'"
    )


def stay_span(duration: float) -> int:
    """The class of a stay of ``duration`` seconds in a segment: the smallest ``s >= 0`` with
    ``duration <= 2**s``, or -1 for an empty stay (enter and exit at the same instant)."""
    if duration <= 0:
        return -1
    if duration <= 1:
        return 0
    mantissa, exponent = math.frexp(duration)  # duration = mantissa * 2**exponent, 0.5 <= mantissa < 1
    return exponent - 1 if mantissa == 0.5 else exponent


def _migrate_transitions(db: sqlite_utils.Database) -> None:
    """Add the history index to a transitions table of an older segd, from its own rows
    (window functions: no replay of the log is needed)."""
    db.execute("DROP TABLE IF EXISTS transitions_migrating")
    _create_transitions(db, "transitions_migrating")
    db.execute(
        "INSERT INTO transitions_migrating (id, segment, user, kind, at, seq, size, until) "
        "SELECT id, segment, user, kind, at, seq, "
        "sum(CASE kind WHEN 'enter' THEN 1 ELSE -1 END) OVER ("
        "PARTITION BY segment ORDER BY at, seq, user, id ROWS UNBOUNDED PRECEDING), "
        "CASE kind WHEN 'enter' THEN lead(at) OVER (PARTITION BY segment, user ORDER BY at, seq, id) END "
        "FROM transitions ORDER BY segment, at, seq, user, id"
    )
    spans = [
        (stay_span(until - at), rowid)
        for rowid, at, until in db.execute(
            "SELECT rowid, at, until FROM transitions_migrating WHERE until IS NOT NULL"
        )
    ]
    db.conn.executemany("UPDATE transitions_migrating SET span = ? WHERE rowid = ?", spans)
    db.execute("DROP TABLE transitions")
    db.execute("ALTER TABLE transitions_migrating RENAME TO transitions")
    _index_transitions(db)


def create_snapshots(db: sqlite_utils.Database) -> None:
    """Shard snapshots: the latest blob per shard, with the log position it includes."""
    if "snapshots" in db.table_names():
        return
    db.table("snapshots").create(
        {"shard": int, "shards": int, "fingerprint": str, "seq": int, "taken": float, "state": bytes},
        pk="shard",
    )


def create_outbox(db: sqlite_utils.Database) -> None:
    """The durable outbox: every dispatch decision, delivery state, dead letters, conversions.

    Not derived: it records effects on the outside world, so ``segd replay`` keeps it.
    """
    if "messages" not in db.table_names():
        db.table("messages").create(
            {
                "id": str,  # message id: a function of (campaign, transition id)
                "campaign": str,
                "variant": str,  # "" without variants; "holdout" for the holdout group
                "segment": str,
                "user": str,
                "transition": str,  # transition id
                "at": float,  # the transition's logical time
                "decided": float,  # engine clock at the decision
                "due": float,  # engine clock from which it may be delivered (quiet hours)
                "channel": str,  # "" when none could be used
                "priority": int,
                "status": str,  # pending | claimed | sent | suppressed | holdout | dead
                "reason": str,  # why suppressed, or "quiet_hours" for a deferred message
                "attempts": int,
                "next_try": float,  # wall time of the next attempt (retries)
                "sent_at": float,  # engine clock at delivery
                "last_error": str,
                "payload": bytes,  # msgpack {body, subject, to, fields}; erased by forget
            },
            pk="id",
            not_null={"campaign", "user", "status"},
        )
        db.execute("CREATE INDEX messages_due ON messages (status, channel, due) WHERE status = 'pending'")
        db.execute("CREATE INDEX messages_user ON messages (user, due)")
        db.execute("CREATE INDEX messages_campaign ON messages (campaign, variant, status)")
    if "dead_letters" not in db.table_names():
        db.table("dead_letters").create(
            {
                "id": str,
                "campaign": str,
                "user": str,
                "channel": str,
                "attempts": int,
                "error": str,
                "at": float,
                "payload": bytes,
            },
            pk="id",
        )
    if "campaigns" not in db.table_names():
        # When each campaign (with its segment's definition) first appeared: no message for
        # transitions before that.
        db.table("campaigns").create({"name": str, "key": str, "activated": float}, pk="name")
    if "conversions" not in db.table_names():
        db.table("conversions").create(
            {"message": str, "campaign": str, "variant": str, "user": str, "ts": float, "seq": int},
            pk="message",
        )
