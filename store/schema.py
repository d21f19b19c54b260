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

from segd.errors import Fenced, StoreError
from store.datadir import holder_token

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
def transaction(
    conn: sqlite3.Connection, what: str, owner: str | None = None
) -> Iterator[sqlite3.Connection]:
    """One explicit transaction: BEGIN, then COMMIT, or ROLLBACK if the body raises.

    The connection must have ``isolation_level=None`` (``open_db``). SQLite errors, the
    COMMIT's included (a full disk shows there), become StoreError naming ``what``; nothing
    of the transaction is then in the file.

    With ``owner`` (the data dir lock's token of the process this writer works for), the
    transaction takes the write lock first and raises Fenced, writing nothing, unless the
    file's recorded owner is still ``owner``: once a new lock holder has claimed the file
    (``claim``), no write of an earlier holder's workers can land after it.
    """
    try:
        if owner is None:
            conn.execute("BEGIN")
        else:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT value FROM meta WHERE key = 'owner'").fetchone()
            if row is None or row[0] != owner:
                raise Fenced(
                    f"{what} refused: the data dir now belongs to another segd (owner "
                    f"{row[0] if row else None!r}, this writer works for {owner!r}); stopping"
                )
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
    path: Path,
    create: Callable[[sqlite_utils.Database], None],
    *,
    synchronous: str = "full",
    owner: str | None = None,
) -> sqlite_utils.Database:
    """``open_db``, then (in one transaction) check the schema version and ``create`` the
    store's tables if they are missing. Every store under ``data_dir`` opens this way.

    ``owner`` (the lock token of the daemon or replay opening it) must be the token of the
    data dir lock's holder (else Fenced: a worker of a gone holder, restarted late); it is
    recorded as the file's owner in the same transaction, so from then on only writes made
    with that token land (``transaction(..., owner=)``) and a writer working for an earlier
    holder is fenced off."""
    if owner is not None and (holder := holder_token(path.parent)) != owner:
        raise Fenced(
            f"opening {path} refused: the data dir's lock is held by {holder!r}, not by {owner!r} "
            "whom this writer works for"
        )
    db = open_db(path, synchronous=synchronous)
    with transaction(db.conn, f"opening {path}"):
        ensure_meta(db, path)
        create(db)
        if owner is not None:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('owner', ?)", [owner])
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

    Besides SPEC's fields, the history carries the index that answers ``segment at=T`` and
    ``sizes`` (see store/segments.py): each transition's ``size``, the segment's size right
    after it in history order (at, seq, user, id); each member's ``since``, the time its
    current stay began; and ``stays``, one row per finished stay (at <= T < until) with the
    power-of-two class of its length, ``span``. A file written before the index existed is
    migrated in place, from the rows it holds.
    """
    tables = db.table_names()
    if "transitions" in tables and "size" not in db.table("transitions").columns_dict:
        _migrate_history(db)
        tables = db.table_names()
    if "transitions" not in tables:
        _create_transitions(db)
        _index_transitions(db)
    if "members" not in tables:
        _create_members(db, "members")
    if "stays" not in tables:
        _create_stays(db)
    if "segment_versions" not in tables:
        db.table("segment_versions").create({"segment": str, "fingerprint": str}, pk="segment")
    # A rebuild killed before its end (store.segbuild) left its staging table, and its
    # tables without their indexes (and no versions: every segment is reset at this open).
    db.execute(f"DROP TABLE IF EXISTS {STAGED_TRANSITIONS}")
    index_segments(db)


#: ``segd replay``'s staging table of new transitions (store.segbuild), gone after its end.
STAGED_TRANSITIONS = "rebuild_transitions"


def recreate_segments(db: sqlite_utils.Database) -> None:
    """Drop every segment's rows (tables and indexes) and create the tables empty, without
    their secondary indexes (``index_segments`` builds them once, over all the rows), plus
    the staging table of a rebuild. Inside the caller's transaction."""
    for table in ("transitions", "members", "stays", STAGED_TRANSITIONS):
        db.execute(f"DROP TABLE IF EXISTS {table}")
    db.execute("DELETE FROM segment_versions")
    _create_transitions(db)
    _create_members(db, "members")
    _create_stays(db, indexed=False)
    db.execute(
        f"CREATE TABLE {STAGED_TRANSITIONS} (id TEXT NOT NULL, segment TEXT NOT NULL, user TEXT NOT NULL, "
        "kind TEXT NOT NULL, at FLOAT NOT NULL, seq INTEGER NOT NULL)"
    )


def index_segments(db: sqlite_utils.Database) -> None:
    """The secondary indexes of the segment tables, where they are missing."""
    _index_transitions(db)
    _index_stays(db)


def _create_transitions(db: sqlite_utils.Database, name: str = "transitions") -> None:
    db.execute(
        f"CREATE TABLE {name} (id TEXT PRIMARY KEY, segment TEXT NOT NULL, user TEXT NOT NULL, "
        "kind TEXT NOT NULL, at FLOAT NOT NULL, seq INTEGER NOT NULL, size INTEGER NOT NULL)"
    )


def _index_transitions(db: sqlite_utils.Database) -> None:
    # History order of one segment; also the size-at-T seek and the forget/out-of-order fix-ups.
    db.execute(
        "CREATE INDEX IF NOT EXISTS transitions_segment_at ON transitions (segment, at, seq, user, id)"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS transitions_user ON transitions (user)"
    )  # a user's history; forget


def _create_members(db: sqlite_utils.Database, name: str) -> None:
    # WITHOUT ROWID: the (segment, user) key is the row, so paging a segment is a range scan.
    db.execute(
        f"CREATE TABLE {name} (segment TEXT NOT NULL, user TEXT NOT NULL, since FLOAT NOT NULL, "
        "PRIMARY KEY (segment, user)) WITHOUT ROWID"
    )


def _create_stays(db: sqlite_utils.Database, indexed: bool = True) -> None:
    # Keyed by (segment, user, at): the walk in user order reads the table itself.
    db.execute(
        "CREATE TABLE stays (segment TEXT NOT NULL, user TEXT NOT NULL, at FLOAT NOT NULL, "
        "until FLOAT NOT NULL, span INTEGER NOT NULL, PRIMARY KEY (segment, user, at)) WITHOUT ROWID"
    )
    if indexed:
        _index_stays(db)


def _index_stays(db: sqlite_utils.Database) -> None:
    # members at T by stabbing: a stay of span s that contains T began within 2**s before T
    db.execute("CREATE INDEX IF NOT EXISTS stays_stab ON stays (segment, span, at, until)")


def stay_span(duration: float) -> int:
    """The class of a stay of ``duration`` > 0 seconds: the smallest ``s >= 0`` with
    ``duration <= 2**s`` (at most 1024, for the longest finite durations)."""
    if duration <= 1:
        return 0
    mantissa, exponent = math.frexp(duration)  # duration = mantissa * 2**exponent, 0.5 <= mantissa < 1
    return exponent - 1 if mantissa == 0.5 else exponent


def _migrate_history(db: sqlite_utils.Database) -> None:
    """Build the history index of a segments.db of an older segd from its own rows (window
    functions: no replay of the log is needed)."""
    db.conn.create_function("segd_stay_span", 1, stay_span, deterministic=True)
    db.execute("ALTER TABLE transitions RENAME TO transitions_old")
    for index in ("transitions_segment_at", "transitions_user"):
        db.execute(f"DROP INDEX IF EXISTS {index}")
    _create_transitions(db)
    db.execute(
        "INSERT INTO transitions (id, segment, user, kind, at, seq, size) "
        "SELECT id, segment, user, kind, at, seq, sum(CASE kind WHEN 'enter' THEN 1 ELSE -1 END) "
        "OVER (PARTITION BY segment ORDER BY at, seq, user, id ROWS UNBOUNDED PRECEDING) "
        "FROM transitions_old ORDER BY segment, at, seq, user, id"
    )
    db.execute("DROP TABLE transitions_old")
    _index_transitions(db)
    _create_stays(db)
    db.execute(
        "INSERT INTO stays (segment, user, at, until, span) "
        "SELECT segment, user, at, next_at, segd_stay_span(next_at - at) FROM ("
        "SELECT segment, user, kind, at, "
        "lead(kind) OVER (PARTITION BY segment, user ORDER BY at, seq, id) AS next_kind, "
        "lead(at) OVER (PARTITION BY segment, user ORDER BY at, seq, id) AS next_at FROM transitions) "
        "WHERE kind = 'enter' AND next_kind = 'exit' AND next_at > at"
    )
    if "members" in db.table_names():
        _create_members(db, "members_new")
        db.execute(
            "INSERT INTO members_new (segment, user, since) SELECT m.segment, m.user, coalesce(("
            "SELECT max(t.at) FROM transitions t WHERE t.segment = m.segment AND t.user = m.user "
            "AND t.kind = 'enter'), -9e999) FROM members m"
        )
        db.execute("DROP TABLE members")
        db.execute("ALTER TABLE members_new RENAME TO members")


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
