"""``segd replay`` builds campaign contexts only where a decision may read them: the
transitions of a campaign's (segment, kind) whose messages are not all in the outbox."""

from __future__ import annotations

from actors.placement import shard_of
from actors.shard.core import ShardCore
from actors.shard.skipping import SkippingCore
from segd.config.model import CampaignConfig
from segd.daemon.rebuild import decided_by_shard
from tests.unit.test_shard import ROWS, T0, m, track  # noqa: F401  (m: the model fixture)


def campaign(name: str, segment: str, on: str = "enter") -> CampaignConfig:
    return CampaignConfig(name=name, segment=segment, channel="log", template="hi", on=on)


def test_a_transition_is_decided_only_when_every_campaign_of_its_trigger_has_its_message():
    campaigns = [campaign("a1", "active"), campaign("a2", "active"), campaign("v", "vip", on="exit")]
    messages = [
        ("t-both", "active", "u1", "a1"),
        ("t-both", "active", "u1", "a2"),
        ("t-one", "active", "u2", "a1"),  # a2's message missing: a2 would decide it
        ("t-vip", "vip", "u3", "v"),
        ("t-gone", "active", "u4", "removed"),  # a campaign no longer configured
    ]
    decided = decided_by_shard(messages, campaigns, 2)
    assert set().union(*decided) == {"t-both", "t-vip"}
    assert "t-both" in decided[shard_of("u1", 2)] and "t-vip" in decided[shard_of("u3", 2)]


def test_the_skipping_core_folds_the_same_and_keeps_only_the_contexts_a_decision_reads(m):  # noqa: F811
    rows = [*ROWS, track(4, "c", "view", T0 + 3), track(5, "a", "view", T0 + 10 * 86400.0)]
    notify = frozenset({"active", "vip"})
    plain = ShardCore(m, notify)
    out = plain.apply_batch(rows)
    everything = plain.take_contexts()
    enters = [t for t in out if t.segment == "active" and t.kind == "enter"]
    assert len(enters) == 4 and any(t.kind == "exit" for t in out)
    decided = frozenset({enters[0].id})
    skipping = SkippingCore(m, notify, decided, frozenset({("active", "enter")}))
    assert skipping.apply_batch(rows) == out
    kept = skipping.take_contexts()
    assert kept == {t.id: everything[t.id] for t in enters[1:]}
    assert skipping.snapshot() == plain.snapshot()
