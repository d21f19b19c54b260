"""``new_events`` (a batch's events built inline) and ``EventLog.stage``'s stamp reuse give
exactly what the per-item ``new_event`` and a per-event clock stamp give."""

from __future__ import annotations

import random

import msgpack
import pytest

from actors.records import NewEvent
from segd.clock import Clock
from segd.wire import protocol
from segd.wire.decode import Request, new_events, parse_frame
from store.eventlog import EventLog


def _items(frame: dict) -> list:
    req = parse_frame(msgpack.packb(frame))
    assert isinstance(req, Request)
    return req.args["events"]


BATCH = [
    {"type": "track", "user": "a", "event": "view"},
    {"type": "track", "user": "a", "event": "view", "props": {"p": 1}, "ts": 5.0, "msg_id": "m"},
    {"type": "track", "user": "b", "event": "buy", "props": {}, "context": {"locale": "fr"}},
    {"type": "track", "user": "b", "event": "buy", "context": {}},
    {"type": "identify", "user": "c", "traits": {"plan": "pro"}, "context": {"ip": "x"}},
    {"type": "identify", "user": "c", "traits": {}, "ts": 3.0, "msg_id": "i"},
]


@pytest.mark.parametrize("bad", [False, True])
def test_new_events_is_each_items_new_event(bad):
    # With a bad item the dict path decodes the batch: EventIn items and a ProtocolError.
    events = BATCH + ([{"type": "track", "user": "", "event": "v"}] if bad else [])
    items = _items({"op": "batch", "id": 1, "events": events})
    assert any(isinstance(it, protocol.ProtocolError) for it in items) == bad
    want = [it.new_event(7.5) for it in items if not isinstance(it, protocol.ProtocolError)]
    assert new_events(items, 7.5) == want
    assert len(want) == len(BATCH)


@pytest.mark.parametrize("mode", ["wall", "event"])
def test_stage_stamps_as_one_stamp_per_event(tmp_path, mode):
    rng = random.Random(4)
    walls = [float(w) for w in (10, 12, 11, 12, 15, 9)]  # a wall clock that may step back
    events: list[NewEvent] = []
    for k in range(300):
        wall = walls[k // 50]  # runs of events sharing one wall object, as a request's do
        ts = rng.choice([None, None, None, rng.uniform(0, 20)])
        events.append(NewEvent(f"u{k % 7}", "track", "v", ts, b"\x80", None, wall))
    appended = EventLog(tmp_path).stage(events, Clock(mode, 11.0))
    reference = Clock(mode, 11.0)
    with reference.stamping() as stamp:
        want = [stamp(e.ts, e.wall) for e in events]
    assert [(r.ts, r.clock) for r in appended.rows] == want
