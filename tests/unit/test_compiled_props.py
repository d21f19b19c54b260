"""The compiled fold (actors.compiled) holds to the reference (actors.user + segd.rules).

Over random configs (tests/unit/compiled_helpers.py: every aggregate kind, windows, time
rules, groups, nested segment(), nulls, type mismatches) and random out-of-order logs, a
compiled ShardCore and a reference one fed the same rows, in the same batches, with the same
advance calls in between, must give the same transitions in the same order (ids, ``at``,
``seq``), the same views, and user states that mean the same (traits, membership, lifetime
aggregates, live window entries; not the deadlines, which may differ where the compiled fold
skips evaluations that change nothing); and each must go on from the other's snapshot as if
uninterrupted.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.shard.core import ShardCore
from tests.unit.compiled_helpers import canonical, configs, logs, same, threshold_configs

# SEGD_PROPS_EXAMPLES=2000 for a long local run; CI runs the default.
EXAMPLES = int(os.environ.get("SEGD_PROPS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _batches(data, rows):
    """Random batch ends, and an advance time (or None) after each batch."""
    out, i = [], 0
    while i < len(rows):
        j = data.draw(st.integers(i + 1, len(rows)), label="batch end")
        adv = None
        if j < len(rows) and data.draw(st.booleans(), label="advance"):
            adv = data.draw(st.floats(rows[j - 1].clock, rows[j].clock), label="advance to")
        out.append((rows[i:j], adv))
        i = j
    return out


def _run(shard, plan, end):
    out = []
    for rows, adv in plan:
        out += shard.apply_batch(rows)
        if adv is not None:
            out += shard.advance(adv)
    out += shard.advance(end)
    return out


def assert_same_users(model, a: ShardCore, b: ShardCore) -> None:
    assert sorted(a._users) == sorted(b._users)
    for user in sorted(a._users):
        x, y = a._users[user], b._users[user]
        at = a.clock
        assert same(canonical(model, x.to_state(), at), canonical(model, y.to_state(), at)), user
        assert same(a.user(user), b.user(user)), user


@SETTINGS
@given(cfg=configs(), rows=logs(), data=st.data())
def test_compiled_and_reference_give_the_same_transitions_views_and_states(cfg, rows, data):
    _, model = cfg
    plan = _batches(data, rows)
    end = rows[-1].clock + 40 * 3600
    ref, fast = ShardCore(model, reference=True), ShardCore(model)
    assert _run(fast, plan, end) == _run(ref, plan, end)
    assert_same_users(model, fast, ref)


@SETTINGS
@given(cfg=configs(), rows=logs(), data=st.data())
def test_each_engine_goes_on_from_the_others_snapshot(cfg, rows, data):
    _, model = cfg
    k = data.draw(st.integers(0, len(rows)), label="snapshot after")
    end = rows[-1].clock + 40 * 3600
    whole = ShardCore(model, reference=True)
    expected = whole.apply_batch(rows) + whole.advance(end)
    for first_ref in (True, False):
        first = ShardCore(model, reference=first_ref)
        out = first.apply_batch(rows[:k])
        second = ShardCore.restore(model, first.snapshot(), reference=not first_ref)
        out += second.apply_batch(rows[k:]) + second.advance(end)
        # another batching may interleave users differently; each user's are in order
        assert Counter(out) == Counter(expected)
        assert _per_user(out) == _per_user(expected)
        assert_same_users(model, second, whole)


def _per_user(transitions):
    out: dict = {}
    for t in transitions:
        out.setdefault(t.user, []).append(t)
    return out


@SETTINGS
@given(cfg=threshold_configs(), rows=logs(), data=st.data())
def test_skipping_expiries_that_cross_no_threshold_changes_no_transition(cfg, rows, data):
    test_compiled_and_reference_give_the_same_transitions_views_and_states.hypothesis.inner_test(
        cfg=cfg, rows=rows, data=data
    )
