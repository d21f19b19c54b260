"""The event log on a real SQLite file (no Ray, no sockets)."""

import sqlite3

import msgpack
import sqlite_utils

from actors.records import NewEvent
from segd.clock import Clock
from store.eventlog import Appended, EventLog, decode


def ev(user="u", event="view", ts=None, msg_id=None, wall=100.0, props=None, type_="track"):
    return NewEvent(
        user=user,
        type=type_,
        event=event if type_ == "track" else None,
        ts=ts,
        body=msgpack.packb(props or {}),
        msg_id=msg_id,
        wall=wall,
    )


class _Appended:
    """``stage`` + ``commit`` of one group, with its acks as ``(seq, duplicate)`` pairs."""

    def __init__(self, done: Appended) -> None:
        self.results = [(a.seq, a.duplicate) for a in done.acks]
        self.rows = done.rows


def append(log: EventLog, events: list[NewEvent], clock: Clock) -> _Appended:
    done = log.stage(events, clock)
    log.commit()
    return _Appended(done)


def test_append_assigns_consecutive_seqs(tmp_path):
    log = EventLog(tmp_path)
    r = append(log, [ev(), ev(), ev()], Clock("wall"))
    assert r.results == [(1, False), (2, False), (3, False)]


def test_seqs_go_on_after_a_reopen(tmp_path):
    log = EventLog(tmp_path)
    append(log, [ev(), ev(), ev()], Clock("wall"))
    log.close()
    log = EventLog(tmp_path)
    assert (log.last_seq, log.count) == (3, 3)
    assert append(log, [ev()], Clock("wall")).results == [(4, False)]


def test_duplicate_msg_id_returns_original_seq_within_and_across_groups(tmp_path):
    log = EventLog(tmp_path)
    clock = Clock("wall")
    assert append(log, [ev(msg_id="a"), ev(msg_id="a"), ev(msg_id="b")], clock).results == [
        (1, False),
        (1, True),
        (2, False),
    ]
    assert append(log, [ev(msg_id="b"), ev()], clock).results == [(2, True), (3, False)]
    log.close()
    assert append(EventLog(tmp_path), [ev(msg_id="a")], clock).results == [(1, True)]


def test_wall_clock_never_goes_backwards_and_defaults_ts_to_receive_time(tmp_path):
    log = EventLog(tmp_path)
    clock = Clock("wall")
    rows = append(log, [ev(wall=50.0), ev(wall=40.0, ts=7.0)], clock).rows
    assert [(r.ts, r.clock) for r in rows] == [(50.0, 50.0), (7.0, 50.0)]


def test_event_clock_is_the_watermark_of_event_times(tmp_path):
    log = EventLog(tmp_path)
    clock = Clock("event")
    rows = append(log, [ev(ts=10.0), ev(ts=5.0), ev(ts=None), ev(ts=20.0)], clock).rows
    assert [(r.ts, r.clock) for r in rows] == [(10.0, 10.0), (5.0, 10.0), (10.0, 10.0), (20.0, 20.0)]


def test_scan_returns_rows_in_order_with_bounds(tmp_path):
    log = EventLog(tmp_path)
    append(log, [ev(user=f"u{i}", props={"i": i}) for i in range(25)], Clock("wall"))
    rows = [r for chunk in log.scan(after=3, until=20, batch=7) for r in chunk]
    assert [r.seq for r in rows] == list(range(4, 21))
    assert decode(rows[0].body) == {"i": 3}


def test_identify_stores_traits_and_track_stores_props(tmp_path):
    log = EventLog(tmp_path)
    append(log, [ev(props={"p": 1}), ev(type_="identify", props={"t": 2})], Clock("wall"))
    db = sqlite_utils.Database(tmp_path / "events.db")
    rows = list(db["events"].rows)
    assert msgpack.unpackb(rows[0]["props"]) == {"p": 1} and rows[0]["traits"] is None
    assert msgpack.unpackb(rows[1]["traits"]) == {"t": 2} and rows[1]["props"] is None
    assert rows[1]["event"] is None


def test_log_is_wal_and_durable(tmp_path):
    log = EventLog(tmp_path)
    assert log.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_log_refuses_a_newer_schema(tmp_path):
    EventLog(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "events.db")
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    import pytest

    from segd.errors import StoreError

    with pytest.raises(StoreError, match="upgrade segd"):
        EventLog(tmp_path)


def test_a_group_larger_than_one_insert_statement_is_logged_whole_and_in_order(tmp_path):
    from store.eventlog import CHUNK

    log = EventLog(tmp_path)
    n = 2 * CHUNK + 37  # several statements of several sizes
    append(log, [ev(user=f"u{i}", props={"i": i}, msg_id=f"m{i}") for i in range(n)], Clock("wall"))
    stored = log.conn.execute("SELECT seq, user, props, msg_id FROM events ORDER BY seq").fetchall()
    assert [(s, u, msgpack.unpackb(p), m) for s, u, p, m in stored] == [
        (i + 1, f"u{i}", {"i": i}, f"m{i}") for i in range(n)
    ]
    assert log.last_seq == n


def test_a_failed_commit_logs_nothing_of_the_group_and_the_next_one_starts_where_it_would_have(tmp_path):
    import pytest

    from segd.errors import StoreError

    log = EventLog(tmp_path)
    clock = Clock("wall")
    append(log, [ev()], clock)
    log.conn.execute("PRAGMA busy_timeout=0")
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: our writes fail
    log.stage([ev(msg_id=f"m{i}") for i in range(700)], clock)
    with pytest.raises(StoreError, match="event log commit failed"):
        log.commit()
    blocker.execute("ROLLBACK")
    assert (log.last_seq, log.conn.execute("SELECT count(*) FROM events").fetchone()[0]) == (1, 1)
    assert append(log, [ev(msg_id="m0")], clock).results == [(2, False)]


def test_a_group_staged_before_the_last_one_commits_goes_on_from_its_seqs_and_msg_ids(tmp_path):
    log = EventLog(tmp_path)
    clock = Clock("wall")
    first = log.stage([ev(msg_id="a"), ev()], clock)
    second = log.stage([ev(msg_id="a"), ev(msg_id="b")], clock)  # the writer is still on `first`
    log.commit()
    log.commit()
    assert [(a.seq, a.duplicate) for a in first.acks + second.acks] == [
        (1, False),
        (2, False),
        (1, True),
        (3, False),
    ]
    assert [s for (s,) in log.conn.execute("SELECT seq FROM events ORDER BY seq")] == [1, 2, 3]


def test_a_discarded_group_is_staged_again_from_the_log_as_committed(tmp_path):
    import pytest

    from segd.errors import StoreError

    log = EventLog(tmp_path)
    clock = Clock("wall")
    append(log, [ev()], clock)
    log.conn.execute("PRAGMA busy_timeout=0")
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    log.stage([ev(msg_id="a")], clock)
    log.stage([ev(msg_id="a"), ev()], clock)  # assumes the first group: "a" is its duplicate
    with pytest.raises(StoreError):
        log.commit()
    blocker.execute("ROLLBACK")
    log.discard()
    again = append(log, [ev(msg_id="a"), ev()], clock)
    assert again.results == [(2, False), (3, False)]


def test_a_group_prepared_before_the_last_one_commits_and_looked_up_after_dedupes_against_both(tmp_path):
    # The committer prepares a group (msg_ids checked in memory against the staged groups),
    # looks the rest up in the log on another thread while the writer may commit, then stages.
    log = EventLog(tmp_path)
    clock = Clock("wall")
    log.stage([ev(msg_id="old")], clock)
    log.commit()
    first = log.stage([ev(msg_id="a")], clock)
    events = [ev(msg_id="a"), ev(msg_id="old"), ev(msg_id="new")]
    lookup = log.prepare(events)
    assert lookup.unseen == ["old", "new"]  # "a" is known from the staged group
    log.commit()  # `first` commits between the check in memory and the lookup in the log
    log.look_up(lookup)
    second = log.stage(events, clock, lookup)
    log.commit()
    assert [(a.seq, a.duplicate) for a in first.acks + second.acks] == [
        (2, False),
        (2, True),
        (1, True),
        (3, False),
    ]
    assert [m for (m,) in log.conn.execute("SELECT msg_id FROM events ORDER BY seq")] == ["old", "a", "new"]


def test_a_group_assumed_new_commits_nothing_when_a_msg_id_is_in_the_log(tmp_path):
    import pytest

    from store.eventlog import SeenBefore

    log = EventLog(tmp_path)
    clock = Clock("wall")
    append(log, [ev(msg_id="old")], clock)
    events = [ev(msg_id="new"), ev(msg_id="old"), ev()]
    lookup = log.prepare(events)
    log.assume_new(lookup)
    assert [(a.seq, a.duplicate) for a in log.stage(events, clock, lookup).acks] == [
        (2, False),
        (3, False),
        (4, False),
    ]
    with pytest.raises(SeenBefore):
        log.commit()
    assert (log.last_seq, log.staged) == (1, 0)
    assert log.conn.execute("SELECT seq, msg_id FROM events").fetchall() == [(1, "old")]
    assert append(log, events, clock).results == [(2, False), (1, True), (3, False)]


def test_a_group_assumed_new_with_new_msg_ids_commits_without_a_lookup(tmp_path):
    log = EventLog(tmp_path)
    clock = Clock("wall")
    append(log, [ev(msg_id="a")], clock)
    events = [ev(msg_id="b"), ev(msg_id="b"), ev(msg_id="c")]
    lookup = log.prepare(events)
    log.assume_new(lookup)
    assert (lookup.unseen, lookup.assumed) == ([], True)
    done = log.stage(events, clock, lookup)
    log.commit()
    assert [(a.seq, a.duplicate) for a in done.acks] == [(2, False), (2, True), (3, False)]
    assert log.conn.execute("SELECT seq, msg_id FROM events ORDER BY seq").fetchall() == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]
