"""Replay determinism (SPEC section 3): the transitions and final state depend only on the log.

For random logs (several users, out-of-order and future event times, identifies with nulls,
non-decreasing clocks) these must all agree:
- one ``apply_batch`` of the whole log vs. random batches with random ``advance`` calls between;
- an uninterrupted run vs. snapshot + restore at a random point + the rest;
- one shard vs. the log routed by user hash to N shards.
And at every stop, the incremental (dirty-only) evaluation must equal evaluating everything.
"""

from __future__ import annotations

import zlib
from collections import Counter

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.records import Row
from actors.shard.core import ShardCore
from actors.user import Model, UserActor
from segd.config import parse_config

HOUR = 3600.0
T0 = 1_700_000_000.0

CONFIG = {
    "aggregates": {
        "views_1h": {"kind": "count", "event": "view", "within": "1h"},
        "views": {"kind": "count", "event": "view"},
        "spend": {"kind": "sum", "event": "buy", "of": "props.amount"},
        "spend_1d": {"kind": "sum", "event": "buy", "of": "props.amount", "within": "1d"},
        "cats_3h": {"kind": "distinct", "event": "view", "of": "props.cat", "within": "3h"},
        "max_buy_1d": {"kind": "max", "event": "buy", "of": "props.amount", "within": "1d"},
        "first_cat_2h": {"kind": "first", "event": "view", "of": "props.cat", "within": "2h"},
        "avg_buy": {"kind": "avg", "event": "buy", "of": "props.amount"},
        "last_seen": {"kind": "last_time"},
        "last_buy_at": {"kind": "last_time", "event": "buy", "where": "props.amount > 0"},
    },
    "segments": {
        "browsing": {"when": "views_1h >= 2"},
        "dormant": {"when": "exists(last_seen) and days_since(last_seen) >= 0.2"},
        "whale": {"when": "spend_1d >= 100", "group": "tier", "priority": 0},
        "buyer": {"when": "spend >= 1", "group": "tier", "priority": 1},
        "lurker": {"when": "views >= 1", "group": "tier", "priority": 2},
        "curious": {"when": "cats_3h >= 2 and not segment('whale')"},
        "vip": {"when": "traits.plan == 'vip' and (segment('buyer') or segment('whale'))"},
        "recent_buyer": {"when": "exists(last_buy_at) and hours_since(last_buy_at) < 3"},
        "big_recent": {"when": "max_buy_1d >= 50 and first_cat_2h == 'a'"},
    },
}
MODEL = Model.compile(parse_config(CONFIG, label="props.toml"))


@st.composite
def logs(draw, max_rows=40):
    """Rows (seq, user, type, event, ts, clock, body) with non-decreasing clocks."""
    n = draw(st.integers(1, max_rows))
    clock = T0
    rows = []
    for seq in range(1, n + 1):
        clock += draw(st.one_of(st.just(0.0), st.floats(0, 2 * HOUR), st.floats(0, 12 * HOUR)))
        user = draw(st.sampled_from(["ann", "bob", "cyd", "dee"]))
        if draw(st.integers(0, 5)) == 0:
            traits = draw(
                st.dictionaries(
                    st.sampled_from(["plan", "name"]), st.sampled_from(["vip", "free", None]), max_size=2
                )
            )
            rows.append(Row(seq, user, "identify", None, clock, clock, msgpack.packb(traits)))
            continue
        event = draw(st.sampled_from(["view", "view", "buy", "open"]))
        jitter = draw(st.one_of(st.just(0.0), st.floats(-30 * HOUR, 2 * HOUR)))
        props = {
            "cat": draw(st.sampled_from(["a", "b", "c"])),
            "amount": draw(st.one_of(st.integers(-5, 120), st.floats(0, 80), st.none())),
        }
        rows.append(Row(seq, user, "track", event, clock + jitter, clock, msgpack.packb(props)))
    return rows


def final_clock(rows):
    return rows[-1].clock + 40 * HOUR


def assert_incremental_equals_full(shard: ShardCore) -> None:
    """Evaluating every segment of every user at the shard clock changes nothing."""
    for user in sorted(shard._users):
        clone = UserActor.restore(MODEL, user, shard._users[user].snapshot())
        out: list = []
        clone._evaluate(MODEL.all_mask, max(clone.now, shard.clock), clone.last_seq, "t", out)
        assert out == [], f"stale membership for {user}: {out}"


def run_whole(rows):
    shard = ShardCore(MODEL)
    out = shard.apply_batch(rows)
    out += shard.advance(final_clock(rows))
    assert_incremental_equals_full(shard)
    return out, shard


def views(shard):
    return {u: shard.user(u) for u in sorted(shard._users)}


def check_membership_follows_transitions(transitions, shard):
    """Per user and segment, transitions alternate enter/exit and end in the final state."""
    state: dict = {}
    for t in sorted(transitions, key=lambda t: (t.user, t.at, t.seq)):
        key = (t.user, t.segment)
        assert state.get(key, False) == (t.kind == "exit"), t
        state[key] = t.kind == "enter"
    for (user, seg), inside in state.items():
        assert (seg in shard.user(user).segments) == inside


@settings(max_examples=40, deadline=None)
@given(rows=logs(), data=st.data())
def test_advance_calls_between_batches_change_nothing(rows, data):
    whole, whole_shard = run_whole(rows)
    check_membership_follows_transitions(whole, whole_shard)
    shard = ShardCore(MODEL)
    out = []
    i = 0
    while i < len(rows):
        j = data.draw(st.integers(i + 1, len(rows)), label="batch end")
        out += shard.apply_batch(rows[i:j])
        if j < len(rows) and data.draw(st.booleans(), label="advance"):
            lo, hi = rows[j - 1].clock, rows[j].clock
            out += shard.advance(data.draw(st.floats(lo, hi), label="advance to"))
            assert_incremental_equals_full(shard)
        i = j
    out += shard.advance(final_clock(rows))
    assert Counter(out) == Counter(whole)
    assert len({t.id for t in whole}) == len(whole)
    assert views(shard) == views(whole_shard)


@settings(max_examples=40, deadline=None)
@given(rows=logs(), data=st.data())
def test_snapshot_restore_midway_equals_uninterrupted(rows, data):
    whole, whole_shard = run_whole(rows)
    k = data.draw(st.integers(0, len(rows)), label="snapshot after")
    first = ShardCore(MODEL)
    out = first.apply_batch(rows[:k])
    if k and data.draw(st.booleans(), label="advance before snapshot"):
        hi = rows[k].clock if k < len(rows) else final_clock(rows)
        out += first.advance(data.draw(st.floats(rows[k - 1].clock, hi)))
    second = ShardCore.restore(MODEL, first.snapshot())
    assert second.applied_seq == first.applied_seq and second.clock == first.clock
    out += second.apply_batch(rows[k:])
    out += second.advance(final_clock(rows))
    assert Counter(out) == Counter(whole)
    assert views(second) == views(whole_shard)


@settings(max_examples=30, deadline=None)
@given(rows=logs(), n=st.integers(2, 4))
def test_shard_count_does_not_change_transitions(rows, n):
    whole, whole_shard = run_whole(rows)
    shards = [ShardCore(MODEL) for _ in range(n)]
    routed: list[list] = [[] for _ in range(n)]
    for row in rows:
        routed[zlib.crc32(row.user.encode()) % n].append(row)
    out = []
    for shard, part in zip(shards, routed, strict=True):
        out += shard.apply_batch(part)
        out += shard.advance(final_clock(rows))
    assert Counter(out) == Counter(whole)
    merged = {u: s.user(u) for s in shards for u in s._users}
    assert {u: merged[u] for u in sorted(merged)} == views(whole_shard)
