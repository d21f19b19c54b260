"""The dispatch core without Ray: decisions, throttling, consent, variants, goals."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.dispatch.core import DispatchCore, message_id
from actors.dispatch.throttle import Caps, assign, quiet_until
from actors.records import Conversion, Exposure, GoalEvent, Transition, Trigger, UserContext
from segd.config import CampaignConfig, CapConfig, VariantConfig, parse_config

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
HOUR = 3600.0

BASE = {
    "aggregates": {"views": {"kind": "count", "event": "view"}},
    "segments": {"fans": {"when": "views >= 1"}, "vips": {"when": "views >= 2"}},
    "channels": {
        "out": {"kind": "file", "path": "m.jsonl"},
        "email": {"kind": "smtp", "host": "localhost", "sender": "shop@example.com"},
        "sms": {"kind": "http", "url": "http://localhost/sms", "body": {"to": "{to}", "text": "{body}"}},
    },
    "campaigns": {
        "welcome": {"segment": "fans", "channel": "out", "template": "Hi {traits.first_name}, {views} views"},
    },
}


def core(*, campaigns=None, throttle=None, activations=None, **more) -> DispatchCore:
    raw = {**BASE, **more}
    if campaigns is not None:
        raw["campaigns"] = campaigns
    if throttle is not None:
        raw["throttle"] = throttle
    config = parse_config(raw)
    return DispatchCore(config, activations or {})


def trigger(user="alice", segment="fans", kind="enter", at=T0, seq=1, traits=None, aggs=None, tid=None):
    ctx = UserContext(traits=traits or {}, aggregates=aggs if aggs is not None else {"views": 1})
    t = Transition(
        id=tid or f"t-{user}-{segment}-{kind}-{at}", segment=segment, user=user, kind=kind, at=at, seq=seq
    )
    return Trigger(transition=t, context=ctx)


def goal(user: str, event: str, ts: float, seq: int) -> GoalEvent:
    return GoalEvent(user=user, event=event, ts=ts, seq=seq)


def decide(c: DispatchCore, triggers, now=None):
    triggers = list(triggers)
    now = max(t.transition.at for t in triggers) if now is None else now
    return c.decide(c.candidates(triggers), now)


def payload(row) -> dict:
    return msgpack.unpackb(row.payload, raw=False)


def test_a_trigger_becomes_a_rendered_pending_message():
    [row] = decide(core(), [trigger(traits={"first_name": "Alice"}, aggs={"views": 3})])
    assert row.status == "pending" and row.channel == "out" and row.due == T0
    assert row.id == message_id("welcome", row.transition)
    assert payload(row)["body"] == "Hi Alice, 3 views"


def test_a_missing_field_renders_empty():
    [row] = decide(core(), [trigger(traits={}, aggs={})])
    assert payload(row)["body"] == "Hi ,  views"


def test_only_the_campaigns_segment_and_kind_fire():
    c = core()
    assert c.candidates([trigger(segment="vips"), trigger(kind="exit")]) == []


def test_transitions_before_activation_fire_nothing():
    c = core(activations={"welcome": T0})
    assert c.candidates([trigger(at=T0 - 1)]) == []
    assert len(c.candidates([trigger(at=T0)])) == 1


def test_unsubscribed_users_get_nothing():
    [row] = decide(core(), [trigger(traits={"unsubscribed": True})])
    assert (row.status, row.reason, row.payload) == ("suppressed", "consent", None)


def test_opt_out_of_the_campaigns_channel_is_consent():
    [row] = decide(core(), [trigger(traits={"opt_out": ["out"]})])
    assert (row.status, row.reason) == ("suppressed", "consent")


PREFERRED = {
    "welcome": {
        "segment": "fans",
        "channel": "preferred",
        "fallback": ["email", "out"],
        "template": "Hi",
        "subject": "Welcome {traits.first_name}",
    }
}


def decide_preferred(user: str, **traits):
    """The one message a "preferred" campaign (fallback email, then out) decides for a user."""
    [row] = decide(core(campaigns=PREFERRED), [trigger(user, traits=traits)])
    return row


def test_preferred_channel_is_used_when_it_has_an_address():
    a = decide_preferred("a", preferred_channel="sms", phone="+331234")
    assert a.channel == "sms" and payload(a)["fields"] == {"to": "+331234", "text": "Hi"}


def test_a_preferred_channel_without_an_address_falls_back_to_one_with_an_address():
    b = decide_preferred("b", preferred_channel="sms")  # no phone: fall back
    assert b.channel == "out"  # email has no address for b either


def test_the_fallback_skips_a_channel_the_user_opted_out_of():
    c = decide_preferred("c", preferred_channel="sms", opt_out=["email"], email="c@x")
    assert c.channel == "out"


def test_opting_out_of_every_fallback_is_consent():
    d = decide_preferred("d", opt_out=["email", "out"], email="d@x")
    assert (d.status, d.reason) == ("suppressed", "consent")


def test_without_a_preferred_channel_the_first_fallback_is_used_with_its_subject():
    e = decide_preferred("e", email="e@x", first_name="Eve")
    assert e.channel == "email" and payload(e)["to"] == "e@x"
    assert payload(e)["subject"] == "Welcome Eve"


def test_a_channel_that_needs_an_address_without_one_suppresses():
    campaigns = {"mail": {"segment": "fans", "channel": "email", "template": "Hi"}}
    [row] = decide(core(campaigns=campaigns), [trigger()])
    assert (row.status, row.reason) == ("suppressed", "no_address")


def test_stale_triggers_are_suppressed():
    campaigns = {"welcome": {"segment": "fans", "channel": "out", "template": "Hi", "stale_after": "1h"}}
    c = core(campaigns=campaigns)
    [fresh] = decide(c, [trigger("a", at=T0)], now=T0 + HOUR)
    [stale] = decide(c, [trigger("b", at=T0)], now=T0 + HOUR + 1)
    assert fresh.status == "pending"
    assert (stale.status, stale.reason) == ("suppressed", "stale")


def test_caps_suppress_and_lower_priority_wins_a_short_budget():
    campaigns = {
        "low": {"segment": "fans", "channel": "out", "template": "low", "priority": 5},
        "high": {"segment": "fans", "channel": "out", "template": "high", "priority": 1},
        "mid": {"segment": "fans", "channel": "out", "template": "mid", "priority": 3},
    }
    c = core(campaigns=campaigns, throttle={"per_user": [{"max": 2, "per": "1h"}, {"max": 3, "per": "1d"}]})
    rows = decide(c, [trigger()])
    status = {r.campaign: (r.status, r.reason) for r in rows}
    assert status == {"high": ("pending", ""), "mid": ("pending", ""), "low": ("suppressed", "frequency_cap")}
    # the hourly cap frees up after an hour; the daily one then allows one more only
    later = decide(c, [trigger(at=T0 + HOUR + 1, tid="t2")])
    assert sorted(r.status for r in later) == ["pending", "suppressed", "suppressed"]
    assert [r.campaign for r in later if r.status == "pending"] == ["high"]


PARIS = ZoneInfo("Europe/Paris")
LATE_IN_PARIS = datetime(2026, 6, 1, 23, 30, tzinfo=PARIS).timestamp()


def quiet_core() -> DispatchCore:
    return core(throttle={"quiet_hours": {"start": "21:00", "end": "08:00"}})


def test_quiet_hours_defer_to_their_end_in_the_users_timezone():
    [row] = decide(quiet_core(), [trigger(at=LATE_IN_PARIS, traits={"timezone": "Europe/Paris"})])
    assert (row.status, row.reason) == ("pending", "quiet_hours")
    assert row.due == datetime(2026, 6, 2, 8, 0, tzinfo=PARIS).timestamp()


def test_quiet_hours_in_one_timezone_do_not_defer_a_user_in_another():
    # the same instant is 17:30 in New York: not quiet there
    at = LATE_IN_PARIS
    [ny] = decide(quiet_core(), [trigger("bob", at=at, traits={"timezone": "America/New_York"})])
    assert (ny.due, ny.reason) == (at, "")


def test_quiet_hours_end_at_local_time_on_the_short_night_of_spring():
    paris = ZoneInfo("Europe/Paris")
    # The night of 2026-03-28/29: clocks go from 02:00 to 03:00; the night is an hour shorter.
    evening = datetime(2026, 3, 28, 22, 0, tzinfo=paris).timestamp()
    end = quiet_until(evening, "Europe/Paris", 21 * 60, 8 * 60)
    assert end == datetime(2026, 3, 29, 8, 0, tzinfo=paris).timestamp()
    assert end - evening == 9 * HOUR


def test_quiet_hours_end_at_local_time_on_the_long_night_of_autumn():
    paris = ZoneInfo("Europe/Paris")
    autumn = datetime(2026, 10, 24, 22, 0, tzinfo=paris).timestamp()
    assert quiet_until(autumn, "Europe/Paris", 21 * 60, 8 * 60) - autumn == 11 * HOUR


@pytest.mark.parametrize(
    ("local", "quiet"),
    [("20:59", False), ("21:00", True), ("03:00", True), ("07:59", True), ("08:00", False), ("12:00", False)],
)
def test_quiet_hours_bounds(local, quiet):
    h, m = map(int, local.split(":"))
    t = datetime(2026, 6, 1, h, m, tzinfo=ZoneInfo("UTC")).timestamp()
    assert (quiet_until(t, None, 21 * 60, 8 * 60) is not None) == quiet


def test_an_unknown_timezone_means_utc():
    t = datetime(2026, 6, 1, 22, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert quiet_until(t, "Mars/Olympus", 21 * 60, 8 * 60) == quiet_until(t, "UTC", 21 * 60, 8 * 60)


def test_caps_count_deferred_messages_at_their_due_time():
    c = core(
        throttle={"per_user": [{"max": 1, "per": "1h"}], "quiet_hours": {"start": "21:00", "end": "08:00"}}
    )
    night = datetime(2026, 6, 1, 23, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    [first] = decide(c, [trigger(at=night, tid="a")])
    [second] = decide(c, [trigger(at=night + HOUR, tid="b")])
    assert first.reason == "quiet_hours" and (second.status, second.reason) == ("suppressed", "frequency_cap")


@given(st.lists(st.floats(0, 10 * HOUR), min_size=1, max_size=30))
def test_caps_never_let_a_window_hold_more_than_max(times):
    caps = Caps((CapConfig(max=2, per=HOUR),))
    kept = []
    for t in times:
        if caps.fits("u", t):
            caps.add("u", t)
            kept.append(t)
    kept.sort()
    for i, t in enumerate(kept):
        assert sum(1 for u in kept[i:] if u < t + HOUR) <= 2


def test_caps_prune_keeps_what_a_window_can_see():
    caps = Caps((CapConfig(max=1, per=HOUR),))
    caps.add("u", T0)
    caps.prune(T0 + HOUR - 1)
    assert not caps.fits("u", T0 + 10)
    caps.prune(T0 + HOUR)
    assert caps.fits("u", T0 + 10) and len(caps) == 0


def campaign(holdout=0.0, variants=()):
    return CampaignConfig(
        name="promo",
        segment="fans",
        channel="out",
        template="x",
        holdout=holdout,
        variants=tuple(VariantConfig(name=n, weight=w) for n, w in variants),
    )


def test_variants_split_by_weight_over_10000_users():
    c = campaign(holdout=0.1, variants=[("a", 1), ("b", 3)])
    counts = {"holdout": 0, "a": 0, "b": 0}
    for i in range(10_000):
        counts[assign(c, f"user-{i}")] += 1
    expected = {"holdout": 1000, "a": 2250, "b": 6750}
    for name, n in expected.items():
        sd = math.sqrt(10_000 * (n / 10_000) * (1 - n / 10_000))
        assert abs(counts[name] - n) < 4 * sd, (name, counts)


USERS = [f"u{i}" for i in range(200)]


def test_variant_assignment_is_stable():
    c = campaign(variants=[("a", 1), ("b", 1)])
    assert [assign(c, u) for u in USERS] == [assign(c, u) for u in USERS]


def test_variant_assignment_differs_between_campaigns():
    c = campaign(variants=[("a", 1), ("b", 1)])
    other = CampaignConfig(name="other", segment="fans", channel="out", template="x", variants=c.variants)
    assert [assign(c, u) for u in USERS] != [assign(other, u) for u in USERS]


def test_a_campaign_without_variants_assigns_no_variant():
    assert assign(campaign(), "u1") == ""


def test_holdout_is_recorded_and_never_rendered():
    c = core(campaigns={"promo": {"segment": "fans", "channel": "out", "template": "x", "holdout": 0.5}})
    rows = decide(c, [trigger(f"u{i}") for i in range(200)])
    held = [r for r in rows if r.status == "holdout"]
    assert 60 < len(held) < 140 and all(r.variant == "holdout" and r.payload is None for r in held)


def test_variant_templates_are_used():
    campaigns = {
        "promo": {
            "segment": "fans",
            "channel": "out",
            "template": "base",
            "variants": [{"name": "a", "template": "A {user}"}, {"name": "b"}],
        }
    }
    rows = decide(core(campaigns=campaigns), [trigger(f"u{i}") for i in range(40)])
    bodies = {r.variant: payload(r)["body"].split(" ")[0] for r in rows}
    assert bodies == {"a": "A", "b": "base"}


def test_goal_events_convert_once_within_the_window():
    campaigns = {
        "promo": {
            "segment": "fans",
            "channel": "out",
            "template": "x",
            "holdout": 0.5,
            "goal": {"event": "purchase", "within": "1d"},
        }
    }
    c = core(campaigns=campaigns)
    rows = decide(c, [trigger(f"u{i}") for i in range(20)])
    users = [r.user for r in rows]
    events = [goal(u, "purchase", T0 + 10, 100 + i) for i, u in enumerate(users[:10])]
    events += [
        goal(users[10], "view", T0 + 10, 200),
        goal(users[11], "purchase", T0 + 86400 + 1, 201),
        goal(users[12], "purchase", T0 - 1, 202),
        goal(users[0], "purchase", T0 + 20, 203),
    ]
    got = c.convert(events)
    assert sorted(g.user for g in got) == sorted(users[:10])
    by_id = {r.id: r for r in rows}
    assert all(by_id[g.message].variant == g.variant for g in got)


def loaded_core() -> DispatchCore:
    """A core with a goal and an hourly cap of 1 that loaded alice's message at T0 (caps) and
    bob's exposure to promo as m1 (goals)."""
    campaigns = {
        "promo": {
            "segment": "fans",
            "channel": "out",
            "template": "x",
            "goal": {"event": "purchase", "within": "1d"},
        }
    }
    c = core(campaigns=campaigns, throttle={"per_user": [{"max": 1, "per": "1h"}]})
    c.load([("alice", T0)], [Exposure(user="bob", campaign="promo", message="m1", variant="", at=T0)])
    return c


def test_load_restores_caps():
    [row] = decide(loaded_core(), [trigger("alice", at=T0 + 60)])
    assert row.reason == "frequency_cap"


def test_load_restores_exposures():
    c = loaded_core()
    assert c.convert([goal("bob", "purchase", T0 + 5, 9)]) == [
        Conversion(message="m1", campaign="promo", variant="", user="bob", ts=T0 + 5, seq=9)
    ]
