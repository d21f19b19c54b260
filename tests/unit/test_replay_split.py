"""``segd replay``'s reader on a real log file: the tuples it scans and the per-shard bytes
it sends are exactly the rows the live path's scan gives (no Ray: the split is pure)."""

import msgpack

from actors.placement import shard_of
from actors.records import GoalEvent, NewEvent, Row, decoder
from segd.clock import Clock
from segd.daemon.rebuild import split
from store.eventlog import EventLog

_ROWS = decoder(list[Row])


def _log(tmp_path, n=60):
    log = EventLog(tmp_path)
    events = [
        NewEvent(
            user=f"user{i % 7}",
            type="identify" if i % 5 == 0 else "track",
            event=None if i % 5 == 0 else ("buy" if i % 3 == 0 else "view"),
            ts=1000.0 + i,
            body=msgpack.packb({"n": i}),
            msg_id=None,
            wall=2000.0 + i,
            context=msgpack.packb({"ip": "1.2.3.4"}) if i % 4 == 0 else None,
        )
        for i in range(n)
    ]
    log.stage(events, Clock("wall"))
    log.commit()
    return log


def test_scan_tuples_pages_the_same_rows_as_scan(tmp_path):
    log = _log(tmp_path)
    pages = list(log.scan(after=3, until=50, batch=16))
    tuples = list(log.scan_tuples(after=3, until=50, batch=16))
    assert [[Row(*t) for t in page] for page in tuples] == pages
    assert [len(p) for p in tuples] == [16, 16, 15]


def test_each_shards_bytes_decode_to_its_rows_in_log_order(tmp_path):
    log = _log(tmp_path)
    (rows,) = log.scan_tuples(batch=1000)
    chunk = split(rows, 3, frozenset())
    everything = [Row(*t) for t in rows]
    for i, part in enumerate(chunk.parts):
        mine = [r for r in everything if shard_of(r.user, 3) == i]
        assert part is not None and _ROWS.decode(part) == mine
        assert chunk.last[i] == mine[-1].seq
    assert (chunk.upto, chunk.clock, chunk.rows) == (60, everything[-1].clock, 60)


def test_a_shard_without_rows_gets_nothing(tmp_path):
    log = _log(tmp_path, n=1)
    (rows,) = log.scan_tuples()
    chunk = split(rows, 4, frozenset())
    assert [p is not None for p in chunk.parts].count(True) == 1
    assert chunk.last[shard_of("user0", 4)] == 1


def test_the_goal_events_are_the_rows_named_as_a_goal(tmp_path):
    log = _log(tmp_path)
    (rows,) = log.scan_tuples(batch=1000)
    chunk = split(rows, 2, frozenset({"buy"}))
    assert chunk.goals == [
        GoalEvent(user=r.user, event="buy", ts=r.ts, seq=r.seq)
        for r in (Row(*t) for t in rows)
        if r.event == "buy"
    ]
    assert chunk.goals
