"""ShardCore.preview: an ad-hoc ``when`` expression over every user's current state."""

from __future__ import annotations

import msgpack
import pytest

from actors.records import Row
from actors.shard.core import PREVIEW_SAMPLE, ShardCore
from actors.user import Model
from segd.config import parse_config
from segd.rules import RuleError
from tests.unit.shard_helpers import CONFIG

DAY = 86400.0
T0 = 1_700_000_000.0


def track(seq: int, user: str, clock: float) -> Row:
    return Row(seq=seq, user=user, type="track", event="view", ts=clock, clock=clock, body=msgpack.packb({}))


def identify(seq: int, user: str, clock: float, **traits: object) -> Row:
    return Row(
        seq=seq, user=user, type="identify", event=None, ts=clock, clock=clock, body=msgpack.packb(traits)
    )


@pytest.fixture
def shard() -> ShardCore:
    core = ShardCore(Model.compile(parse_config(CONFIG, label="test.toml")))
    core.apply_batch(
        [
            track(1, "carol", T0),
            track(2, "alice", T0),
            track(3, "alice", T0 + 1),
            identify(4, "bob", T0 + 2, plan="vip"),
            identify(5, "alice", T0 + 3, plan="vip"),
        ]
    )
    return core


def test_preview_counts_the_users_an_expression_holds_for_with_a_sorted_sample(shard):
    part = shard.preview("views_7d >= 1")
    assert (part.size, part.sample) == (2, ["alice", "carol"])


def test_preview_counts_how_many_of_those_users_are_in_each_segment(shard):
    assert shard.preview("traits.plan == 'vip'").overlap == {"active": 1, "vip": 2}


def test_preview_reads_segment_membership(shard):
    assert shard.preview("segment('vip') and not segment('active')").sample == ["bob"]


def test_preview_evaluates_time_at_the_shard_clock(shard):
    assert shard.preview("days_since(last_seen) >= 7").size == 0
    shard.advance(T0 + 8 * DAY)
    assert shard.preview("days_since(last_seen) >= 7").sample == ["alice", "carol"]  # bob never tracked
    assert shard.preview("views_7d >= 1").size == 0  # the window emptied at the shard clock


def test_preview_changes_nothing(shard):
    before = shard.snapshot()
    shard.preview("views_7d >= 1 or traits.plan == 'vip'")
    assert shard.snapshot() == before


def test_preview_samples_at_most_twenty_of_the_smallest_user_ids():
    core = ShardCore(Model.compile(parse_config(CONFIG, label="test.toml")))
    core.apply_batch([track(i + 1, f"u{99 - i:02d}", T0) for i in range(100)])
    part = core.preview("views_7d >= 1")
    assert part.size == 100
    assert part.sample == [f"u{i:02d}" for i in range(PREVIEW_SAMPLE)]


def test_preview_refuses_an_invalid_expression_with_its_column(shard):
    with pytest.raises(RuleError) as info:
        shard.preview("views_7d >= ")
    assert info.value.column == 13
