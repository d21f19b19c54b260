"""ShardCore: batches, the deadline heap, queries, forget and snapshots."""

from __future__ import annotations

import msgpack
import pytest

from actors.records import Row
from actors.shard.core import ShardCore, SnapshotMismatch
from actors.user import Model
from segd.config import parse_config
from segd.errors import SegdError
from tests.unit.shard_helpers import CONFIG as BASE

DAY = 86400.0
T0 = 1_700_000_000.0

#: shard_helpers.CONFIG with a ``dormant`` segment (14 days unseen) between the two.
CONFIG = {
    **BASE,
    "segments": {
        "active": BASE["segments"]["active"],
        "dormant": {"when": "exists(last_seen) and days_since(last_seen) >= 14"},
        "vip": BASE["segments"]["vip"],
    },
}


@pytest.fixture
def m() -> Model:
    return Model.compile(parse_config(CONFIG, label="test.toml"))


def track(seq, user, event, clock, ts=None, **props):
    return Row(
        seq=seq,
        user=user,
        type="track",
        event=event,
        ts=clock if ts is None else ts,
        clock=clock,
        body=msgpack.packb(props),
    )


def identify(seq, user, clock, **traits):
    return Row(
        seq=seq, user=user, type="identify", event=None, ts=clock, clock=clock, body=msgpack.packb(traits)
    )


def members(shard: ShardCore, segment: str) -> list[str]:
    """Sorted ids of the shard's members of ``segment``."""
    return sorted(u for u in shard._users if segment in shard.user(u).segments)


ROWS = [track(1, "a", "view", T0), track(2, "b", "view", T0 + 1), identify(3, "a", T0 + 2, plan="vip")]


def applied(m: Model) -> tuple[ShardCore, list]:
    """A shard after one batch of ROWS, and the transitions that batch returned."""
    shard = ShardCore(m)
    return shard, shard.apply_batch(ROWS)


def test_apply_batch_returns_the_transitions_in_row_order(m):
    _, out = applied(m)
    assert [(t.user, t.segment, t.kind) for t in out] == [
        ("a", "active", "enter"),
        ("b", "active", "enter"),
        ("a", "vip", "enter"),
    ]


def test_apply_batch_creates_users_and_tracks_seq_and_clock(m):
    shard, _ = applied(m)
    assert (shard.users, shard.applied_seq, shard.clock) == (2, 3, T0 + 2)


def test_members_and_user_views_follow_the_batch(m):
    shard, _ = applied(m)
    assert members(shard, "active") == ["a", "b"]
    assert shard.user("a").traits == {"plan": "vip"}


def test_a_user_never_seen_has_no_view(m):
    shard, _ = applied(m)
    assert shard.user("nobody") is None


def test_empty_body_is_no_data(m):
    shard = ShardCore(m)
    shard.apply_batch(
        [
            Row(seq=1, user="a", type="track", event="view", ts=T0, clock=T0, body=None),
            Row(seq=2, user="a", type="identify", event=None, ts=T0, clock=T0, body=b""),
        ]
    )
    assert shard.user("a").aggregates["views_7d"] == 1


def test_batch_ends_by_advancing_every_user_to_the_largest_clock(m):
    shard = ShardCore(m)
    shard.apply_batch([track(1, "a", "view", T0)])
    out = shard.apply_batch([track(2, "b", "open", T0 + 8 * DAY)])
    assert [(t.user, t.segment, t.kind, t.at, t.seq) for t in out] == [
        ("a", "active", "exit", T0 + 7 * DAY, 1)
    ]


def test_advance_fires_in_deadline_then_user_order(m):
    shard = ShardCore(m)
    shard.apply_batch([track(1, "b", "view", T0), track(2, "a", "view", T0), track(3, "c", "view", T0 - DAY)])
    out = shard.advance(T0 + 30 * DAY)
    got = [(t.at, t.user, t.segment, t.kind) for t in out]
    assert got == sorted(got, key=lambda g: (g[0], g[1]))
    assert got[:3] == [
        (T0 + 6 * DAY, "c", "active", "exit"),
        (T0 + 7 * DAY, "a", "active", "exit"),
        (T0 + 7 * DAY, "b", "active", "exit"),
    ]
    assert members(shard, "dormant") == ["a", "b", "c"]
    assert shard.advance(T0 + 31 * DAY) == []


@pytest.mark.parametrize("reference", [False, True])
def test_notified_segments_keep_each_transitions_context_at_that_moment(m, reference):
    shard = ShardCore(m, notify=frozenset({"active", "dormant"}), reference=reference)
    out = shard.apply_batch([track(1, "a", "view", T0), identify(2, "a", T0 + 1, plan="vip")])
    out += shard.apply_batch([track(3, "b", "open", T0 + 30 * DAY)])  # a's exits fire on b's clock
    got = {t.id: (t.segment, t.kind, t.at) for t in out if t.user == "a"}
    contexts = shard.take_contexts()
    assert sorted(got.values()) == [
        ("active", "enter", T0),
        ("active", "exit", T0 + 7 * DAY),
        ("dormant", "enter", T0 + 14 * DAY),
        ("vip", "enter", T0 + 1),
    ]
    assert set(contexts) == {i for i, (seg, _, _) in got.items() if seg != "vip"}
    by = {(got[i][0], got[i][1]): c for i, c in contexts.items()}
    assert by["active", "enter"].traits == {} and by["active", "enter"].aggregates["views_7d"] == 1
    assert by["active", "exit"].traits == {"plan": "vip"}
    assert by["active", "exit"].aggregates["views_7d"] == 0
    assert by["dormant", "enter"].aggregates["last_seen"] == T0
    assert shard.take_contexts() == {}


def test_clock_never_goes_backwards(m):
    shard = ShardCore(m)
    shard.advance(T0 + 10)
    shard.advance(T0)
    assert shard.clock == T0 + 10


def forgotten(m: Model) -> tuple[ShardCore, list]:
    """A shard whose only user, a (active and vip), was forgotten, and what forget returned."""
    shard = ShardCore(m)
    shard.apply_batch([track(1, "a", "view", T0), identify(2, "a", T0 + 1, plan="vip")])
    return shard, shard.forget("a")


def test_forget_returns_an_exit_from_every_segment_of_the_user(m):
    _, out = forgotten(m)
    assert [(t.segment, t.kind, t.seq, t.at) for t in out] == [
        ("active", "exit", 2, T0 + 1),
        ("vip", "exit", 2, T0 + 1),
    ]


def test_forget_removes_the_user_and_its_deadline(m):
    shard, _ = forgotten(m)
    assert shard.user("a") is None and members(shard, "active") == [] and shard.users == 0
    assert shard.advance(T0 + 30 * DAY) == []  # its deadline went with it


def test_forgetting_a_forgotten_user_returns_nothing(m):
    shard, _ = forgotten(m)
    assert shard.forget("a") == []


def test_snapshot_restore_resumes_identically(m):
    rows = [
        track(1, "a", "view", T0),
        track(2, "b", "view", T0 + DAY),
        identify(3, "a", T0 + DAY, plan="vip"),
    ]
    live = ShardCore(m)
    live.apply_batch(rows)
    restored = ShardCore.restore(m, live.snapshot())
    assert (restored.applied_seq, restored.clock, restored.users) == (3, T0 + DAY, 2)
    assert restored.user("a") == live.user("a")
    tail = [track(4, "c", "view", T0 + 20 * DAY)]
    assert restored.apply_batch(tail) == live.apply_batch(tail)
    assert members(restored, "dormant") == members(live, "dormant") == ["a", "b"]


def test_restore_with_another_model_raises(m):
    blob = ShardCore(m).snapshot()
    other = Model.compile(parse_config({**CONFIG, "segments": {"active": {"when": "views_7d >= 2"}}}))
    with pytest.raises(SnapshotMismatch, match="fingerprint") as exc:
        ShardCore.restore(other, blob)
    assert isinstance(exc.value, SegdError)


@pytest.mark.parametrize("blob", [b"\xc1garbage", msgpack.packb([1, 2]), msgpack.packb({"format": 99})])
def test_restore_of_garbage_raises(m, blob):
    with pytest.raises(SnapshotMismatch):
        ShardCore.restore(m, blob)
