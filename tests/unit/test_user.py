"""The user actor: folds, exact time-caused transitions, groups, references, compile errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.user import Model, Transition, UserActor
from segd.config import load_config, parse_config
from segd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0
T0 = 1_700_000_000.0


def model(aggregates=None, segments=None) -> Model:
    return Model.compile(
        parse_config(
            {"aggregates": aggregates or {}, "segments": segments or {}},
            label="test.toml",
            path=Path("test.toml"),
        )
    )


def kinds(transitions):
    return [(t.segment, t.kind) for t in transitions]


class Feed:
    """Drives one actor with increasing seqs."""

    def __init__(self, m: Model, user: str = "u1") -> None:
        self.actor = UserActor(m, user)
        self.seq = 0

    def track(self, event, clock, ts=None, **props):
        self.seq += 1
        return self.actor.apply(self.seq, "track", event, clock if ts is None else ts, clock, props)

    def identify(self, clock, **traits):
        self.seq += 1
        return self.actor.apply(self.seq, "identify", None, clock, clock, traits)


VIEWS = {"views_7d": {"kind": "count", "event": "view", "within": "7d"}}


# ------------------------------------------------------------------ compile


def test_default_config_compiles():
    m = Model.compile(load_config(ROOT / "config.toml"))
    assert {s.name for s in m.segs} == {s.name for s in m.config.segments}
    order = [s.name for s in m.segs]
    lifecycle = [i for i, s in enumerate(m.segs) if s.config.group == "lifecycle"]
    assert order.index("vip_at_risk") > max(lifecycle)  # after the whole group it references
    assert len(m.fingerprint) == 32 and set(m.segment_fingerprints) == set(order)


def test_bad_expressions_list_every_problem_with_table_and_column():
    with pytest.raises(ConfigError) as exc:
        model(
            {"n": {"kind": "count", "where": "props.x >"}},
            {"a": {"when": "n >= 1 and"}, "b": {"when": "nope > 1"}, "c": {"when": "props.x == 1"}},
        )
    problems = exc.value.problems
    tables = sorted(t for _, t, _ in problems)
    assert tables == ["aggregates.n", "segments.a", "segments.b", "segments.c"]
    assert all(f == "test.toml" for f, _, _ in problems)
    by_table = {t: msg for _, t, msg in problems}
    assert by_table["segments.b"].startswith("'when' at column 1:")
    assert "'where' at column" in by_table["aggregates.n"]
    assert "test.toml: segments.a: 'when' at column" in str(exc.value)


def test_segment_cycle_is_a_config_error():
    with pytest.raises(ConfigError, match="cycle"):
        model(segments={"a": {"when": "segment('b')"}, "b": {"when": "segment('a')"}})


def test_fingerprint_tracks_definitions_not_descriptions():
    a = model(VIEWS, {"s": {"when": "views_7d >= 1", "description": "x"}})
    b = model(VIEWS, {"s": {"when": "views_7d >= 1", "description": "y"}})
    c = model(VIEWS, {"s": {"when": "views_7d >= 2"}})
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_segment_fingerprint_changes_only_for_affected_segments():
    aggs = {**VIEWS, "buys": {"kind": "count", "event": "buy"}}
    a = model(
        aggs, {"s": {"when": "views_7d >= 1"}, "t": {"when": "buys >= 1"}, "u": {"when": "segment('s')"}}
    )
    b = model(
        aggs, {"s": {"when": "views_7d >= 3"}, "t": {"when": "buys >= 1"}, "u": {"when": "segment('s')"}}
    )
    fa, fb = a.segment_fingerprints, b.segment_fingerprints
    assert fa["t"] == fb["t"]
    assert fa["s"] != fb["s"] and fa["u"] != fb["u"]


# ------------------------------------------------------------------ folding and membership


def test_enter_on_event_with_event_clock_and_seq():
    f = Feed(model(VIEWS, {"active": {"when": "views_7d >= 1"}}))
    (t,) = f.track("view", T0)
    assert (t.segment, t.kind, t.at, t.seq, t.user) == ("active", "enter", T0, 1, "u1")
    assert f.actor.deadline == T0 + 7 * DAY


def test_window_exit_at_exact_deadline_with_last_seq():
    f = Feed(model(VIEWS, {"active": {"when": "views_7d >= 1"}}))
    f.track("view", T0)
    f.track("click", T0 + 3600)
    assert f.actor.advance(T0 + 7 * DAY - 0.001) == []
    (t,) = f.actor.advance(T0 + 30 * DAY)
    assert (t.kind, t.at, t.seq) == ("exit", T0 + 7 * DAY, 2)
    assert f.actor.deadline is None


def test_days_since_enters_at_exactly_fourteen_days():
    f = Feed(
        model(
            {"last_seen": {"kind": "last_time"}},
            {"dormant": {"when": "exists(last_seen) and days_since(last_seen) >= 14"}},
        )
    )
    assert f.track("open", T0) == []
    f.track("open", T0 + DAY)
    # the deadline may stay early (T0 + 14d: a no-op evaluation), never late
    assert T0 + 14 * DAY <= f.actor.deadline <= T0 + 15 * DAY
    assert f.actor.advance(T0 + 15 * DAY - 0.001) == []
    assert f.actor.deadline == T0 + 15 * DAY
    (t,) = f.actor.advance(T0 + 100 * DAY)
    assert (t.segment, t.kind, t.at, t.seq) == ("dormant", "enter", T0 + 15 * DAY, 2)


def test_due_deadlines_fire_before_the_event_that_passes_them():
    f = Feed(model(VIEWS, {"active": {"when": "views_7d >= 1"}}))
    f.track("view", T0)
    out = f.track("view", T0 + 8 * DAY)
    assert [(t.kind, t.at, t.seq) for t in out] == [("exit", T0 + 7 * DAY, 1), ("enter", T0 + 8 * DAY, 2)]


def test_deadline_at_the_event_clock_fires_first():
    f = Feed(model(VIEWS, {"active": {"when": "views_7d >= 1"}}))
    f.track("view", T0)
    out = f.track("view", T0 + 7 * DAY)
    assert [(t.kind, t.at, t.seq) for t in out] == [("exit", T0 + 7 * DAY, 1), ("enter", T0 + 7 * DAY, 2)]
    assert out[0].id != out[1].id


def test_future_event_time_enters_when_its_time_comes():
    f = Feed(model(VIEWS, {"active": {"when": "views_7d >= 1"}}))
    assert f.track("view", T0, ts=T0 + 3600) == []
    assert f.actor.deadline == T0 + 3600
    (t,) = f.actor.advance(T0 + DAY)
    assert (t.kind, t.at) == ("enter", T0 + 3600)
    assert f.actor.deadline == T0 + 3600 + 7 * DAY


def test_late_event_counts_for_lifetime_not_window():
    f = Feed(
        model(
            {**VIEWS, "views": {"kind": "count", "event": "view"}},
            {"active": {"when": "views_7d >= 1"}, "any": {"when": "views >= 1"}},
        )
    )
    out = f.track("view", T0, ts=T0 - 8 * DAY)
    assert kinds(out) == [("any", "enter")]
    assert f.actor.view(T0).aggregates == {"views_7d": 0, "views": 1}


def test_out_of_order_event_expires_by_its_own_time():
    f = Feed(model(VIEWS, {"two": {"when": "views_7d >= 2"}}))
    f.track("view", T0)
    (t,) = f.track("view", T0 + DAY, ts=T0 - DAY)
    assert t.kind == "enter"
    (t,) = f.actor.advance(T0 + 30 * DAY)
    assert (t.kind, t.at, t.seq) == ("exit", T0 + 6 * DAY, 2)


def test_every_kind_through_the_actor():
    aggs = {
        k: {
            "kind": k,
            "event": "buy",
            **({"of": "props.price"} if k not in ("count", "first_time", "last_time") else {}),
        }
        for k in ("count", "sum", "min", "max", "avg", "first", "last", "first_time", "last_time", "distinct")
    }
    aggs["w_sum"] = {"kind": "sum", "event": "buy", "of": "props.price", "within": "1d"}
    f = Feed(model(aggs))
    f.track("buy", T0, price=10)
    f.track("buy", T0 + 10, ts=T0 - 5, price=4)
    f.track("buy", T0 + 20, price=10)
    f.track("view", T0 + 30, price=99)
    view = f.actor.view(T0 + 30)
    assert view.aggregates == {
        "count": 3,
        "sum": 24,
        "min": 4,
        "max": 10,
        "avg": 8.0,
        "first": 4,
        "last": 10,
        "first_time": T0 - 5,
        "last_time": T0 + 20,
        "distinct": 2,
        "w_sum": 24,
    }
    assert f.actor.view(T0 + DAY).aggregates["w_sum"] == 10


def test_where_sees_props_event_and_pre_event_aggregates():
    f = Feed(
        model(
            {
                "n": {"kind": "count", "event": "*"},
                "firsts": {"kind": "count", "where": "n == 0 and event == 'a'"},
                "big": {"kind": "count", "where": "props.x > 5"},
            }
        )
    )
    f.track("a", T0, x=9)
    f.track("a", T0 + 1, x=1)
    assert f.actor.view(T0 + 1).aggregates == {"n": 2, "firsts": 1, "big": 1}


def test_identify_merges_key_by_key_and_null_removes():
    f = Feed(model(segments={"mailable": {"when": "exists(traits.email)"}}))
    assert kinds(f.identify(T0, email="a@x", name="A")) == [("mailable", "enter")]
    f.identify(T0 + 1, name="B", plan="pro")
    assert f.actor.view(T0).traits == {"email": "a@x", "name": "B", "plan": "pro"}
    assert f.identify(T0 + 1, name="C") == []  # a trait no segment reads still changes
    assert f.actor.view(T0).traits == {"email": "a@x", "name": "C", "plan": "pro"}
    assert kinds(f.identify(T0 + 2, email=None)) == [("mailable", "exit")]
    f.identify(T0 + 3, name=None, plan=None)
    assert f.actor.traits is None and f.actor.view(T0).traits == {}


def test_first_event_evaluates_every_segment():
    f = Feed(model(segments={"anonymous": {"when": "not exists(traits.email)"}}))
    assert kinds(f.track("view", T0)) == [("anonymous", "enter")]


def test_only_segments_whose_inputs_changed_are_evaluated():
    m = model(
        {"views": {"kind": "count", "event": "view"}, "buys": {"kind": "count", "event": "buy"}},
        {
            "viewer": {"when": "views >= 1"},
            "buyer": {"when": "buys >= 1"},
            "pro": {"when": "traits.plan == 'pro'"},
        },
    )
    calls = []
    for s in m.segs:
        s.fn = (lambda fn, name: lambda ctx: calls.append(name) or fn(ctx))(s.fn, s.name)
    f = Feed(m)
    f.track("view", T0)
    assert sorted(calls) == ["buyer", "pro", "viewer"]
    calls.clear()
    f.track("buy", T0 + 1)
    assert calls == ["buyer"]
    calls.clear()
    f.identify(T0 + 2, plan="pro")
    f.track("other", T0 + 3)
    assert calls == ["pro"]


# ------------------------------------------------------------------ groups and references

STAGES = {
    "gold": {"when": "spend >= 100", "group": "tier", "priority": 0},
    "silver": {"when": "spend >= 10", "group": "tier", "priority": 1},
    "bronze": {"when": "spend >= 1", "group": "tier", "priority": 1},
    "any_tier": {"when": "segment('silver') or segment('gold') or segment('bronze')"},
    "not_gold": {"when": "segment('silver') and not segment('gold')"},
}
SPEND = {"spend": {"kind": "sum", "event": "buy", "of": "props.amount"}}


def test_group_keeps_only_the_lowest_priority_and_switch_exits_then_enters():
    f = Feed(model(SPEND, STAGES))
    # bronze and silver both hold at 10; same priority -> the name breaks the tie
    assert kinds(f.track("buy", T0, amount=10)) == [("bronze", "enter"), ("any_tier", "enter")]
    out = f.track("buy", T0 + 1, amount=95)
    assert kinds(out) == [("bronze", "exit"), ("gold", "enter")]
    assert f.actor.segments() == ["any_tier", "gold"]


def test_segment_reference_sees_post_group_membership():
    m = model(SPEND, {**STAGES, "bronze": {"when": "spend >= 1000", "group": "tier", "priority": 1}})
    f = Feed(m)
    assert kinds(f.track("buy", T0, amount=10)) == [
        ("silver", "enter"),
        ("any_tier", "enter"),
        ("not_gold", "enter"),
    ]
    assert kinds(f.track("buy", T0 + 1, amount=100)) == [
        ("silver", "exit"),
        ("gold", "enter"),
        ("not_gold", "exit"),
    ]


def test_time_caused_group_switch():
    m = model(
        {
            "buys_1d": {"kind": "count", "event": "buy", "within": "1d"},
            "buys": {"kind": "count", "event": "buy"},
        },
        {
            "hot": {"when": "buys_1d >= 1", "group": "g", "priority": 0},
            "cold": {"when": "buys >= 1", "group": "g", "priority": 1},
        },
    )
    f = Feed(m)
    assert kinds(f.track("buy", T0)) == [("hot", "enter")]
    out = f.actor.advance(T0 + 2 * DAY)
    assert [(t.segment, t.kind, t.at, t.seq) for t in out] == [
        ("hot", "exit", T0 + DAY, 1),
        ("cold", "enter", T0 + DAY, 1),
    ]


# ------------------------------------------------------------------ ids, views, snapshots


def run_script(m):
    f = Feed(m)
    out = f.track("view", T0) + f.track("buy", T0 + 5, amount=50) + f.identify(T0 + 6, plan="pro")
    return out + f.actor.advance(T0 + 90 * DAY)


def test_transition_ids_are_equal_across_independent_runs():
    m1 = model({**VIEWS, **SPEND}, {**STAGES, "active": {"when": "views_7d >= 1"}})
    m2 = model({**VIEWS, **SPEND}, {**STAGES, "active": {"when": "views_7d >= 1"}})
    a, b = run_script(m1), run_script(m2)
    assert a == b and len({t.id for t in a}) == len(a)


def test_transition_map():
    t = Transition("x", "s", "u", "enter", 1.5, 3)
    assert t.to_map() == {"id": "x", "segment": "s", "user": "u", "kind": "enter", "at": 1.5, "seq": 3}


def test_snapshot_restore_continues_identically():
    m = model({**VIEWS, **SPEND}, {**STAGES, "active": {"when": "views_7d >= 1"}})
    f = Feed(m)
    f.track("view", T0)
    f.identify(T0 + 1, name="Ann")
    f.track("buy", T0 + 2, amount=5)
    blob = f.actor.snapshot()
    restored = UserActor.restore(m, "u1", blob)
    assert restored.view(T0 + 3) == f.actor.view(T0 + 3)
    assert restored.deadline == f.actor.deadline
    assert restored.apply(9, "track", "buy", T0 + 8 * DAY, T0 + 8 * DAY, {"amount": 500}) == f.actor.apply(
        9, "track", "buy", T0 + 8 * DAY, T0 + 8 * DAY, {"amount": 500}
    )
    assert len(blob) < 200


def test_unknown_event_type_is_rejected():
    f = Feed(model(VIEWS))
    with pytest.raises(ValueError, match="unknown event type"):
        f.actor.apply(1, "alias", None, T0, T0, {})
