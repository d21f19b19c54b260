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


@pytest.mark.parametrize("seed", range(6))
def test_stage_acks_duplicates_in_event_order(tmp_path, seed):
    """Duplicates within a group, of a group staged before and of the log, interleaved with
    new events: every ack is the one a plain walk over the events gives."""
    rng = random.Random(seed)
    log = EventLog(tmp_path)
    clock = Clock("wall")
    seen: dict[str, int] = {}
    seq = 0

    def batch(n: int) -> list[NewEvent]:
        pool = [f"m{rng.randrange(60)}" for _ in range(n)]
        return [NewEvent("u", "track", "v", None, b"\x80", rng.choice([None, *pool]), 1.0) for _ in range(n)]

    def expect(events: list[NewEvent]) -> list[tuple[int, bool]]:
        nonlocal seq
        out = []
        for e in events:
            if e.msg_id is not None and e.msg_id in seen:
                out.append((seen[e.msg_id], True))
                continue
            seq += 1
            if e.msg_id is not None:
                seen[e.msg_id] = seq
            out.append((seq, False))
        return out

    first = batch(40)
    want = expect(first)
    assert [(a.seq, a.duplicate) for a in log.stage(first, clock).acks] == want
    log.commit()  # in the log now: the next groups look its msg_ids up
    for _ in range(3):  # staged on top of one another, none committed
        events = batch(rng.randrange(1, 50))
        want = expect(events)
        assert [(a.seq, a.duplicate) for a in log.stage(events, clock).acks] == want
