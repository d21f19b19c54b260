"""segd.rules and time: now(), days_since, hours_since, and next_change, the exact float at
which a value next changes while only time passes (SPEC section 4)."""

from __future__ import annotations

import math

import pytest

from segd.rules import WHEN, Compiled, Context, forms
from tests.unit.rules_helpers import comp, ev

DAY = 86400.0
INF = math.inf


# ----------------------------------------------------------------------------- functions


def test_now_is_the_context_time():
    assert ev("now()", now=123.5) == 123.5


def test_days_since_counts_days():
    assert ev("days_since(last_seen)", now=3 * DAY, aggs={"last_seen": DAY}) == 2.0


def test_hours_since_counts_hours():
    assert ev("hours_since(last_seen)", now=7200.0, aggs={"last_seen": 0}) == 2.0


def test_days_since_and_hours_since_of_a_non_number_are_null():
    assert ev("days_since(last_seen)", now=5.0, aggs={"last_seen": None}) is None
    assert ev("days_since('yesterday')", now=5.0) is None
    assert ev("hours_since(true)", now=5.0) is None


# ----------------------------------------------------------------------------- next_change


def at(c: Compiled, ctx: Context, t: float):
    return c.fn(Context(t, ctx.aggs, ctx.traits, ctx.props, ctx.event, ctx.segments))


def assert_exact(c: Compiled, ctx: Context) -> float:
    """next_change is > now, the value holds just below it and differs at it."""
    t = c.next_change(ctx)
    assert t is not None and t > ctx.now
    v0 = c.fn(ctx)
    below = math.nextafter(t, -INF)
    if below > ctx.now:
        assert at(c, ctx, below) == v0
    assert at(c, ctx, t) != v0
    return t


def test_not_time_dependent_never_changes():
    c = comp("views_7d >= 3", WHEN)
    assert c.time_dependent is False
    assert c.next_change(Context(now=5.0, aggs={"views_7d": 1})) is None


def test_days_since_at_least_14_flips_at_the_first_float_where_it_holds():
    c = comp("days_since(last_seen) >= 14", WHEN)
    ctx = Context(now=1000.0, aggs={"last_seen": 1000.0})
    t = assert_exact(c, ctx)
    assert (t - 1000.0) / 86400.0 >= 14 and not (math.nextafter(t, -INF) - 1000.0) / 86400.0 >= 14


def test_days_since_greater_than_14_flips_just_after_the_crossing():
    c = comp("days_since(last_seen) > 14", WHEN)
    ctx = Context(now=1000.0, aggs={"last_seen": 1000.0})
    t = assert_exact(c, ctx)
    assert t > 1000.0 + 14 * DAY


def test_days_since_below_1_flips_to_false():
    c = comp("days_since(last_seen) < 1", WHEN)
    ctx = Context(now=1.7e9, aggs={"last_seen": 1.7e9 - 3600})
    assert c.fn(ctx) is True
    t = assert_exact(c, ctx)
    assert abs(t - (1.7e9 - 3600 + DAY)) < 1e-5


def test_linear_arithmetic_over_hours_since():
    c = comp("hours_since(last_seen) * 2 + 1 >= 7", WHEN)
    ctx = Context(now=1.7e9 + 0.3, aggs={"last_seen": 1.7e9})
    t = assert_exact(c, ctx)
    assert abs(t - (1.7e9 + 3 * 3600)) < 1e-5


def test_now_compared_with_a_constant():
    c = comp("now() > 1700000000", WHEN)
    ctx = Context(now=1.6e9)
    t = assert_exact(c, ctx)
    assert t == math.nextafter(1700000000.0, INF)


def test_now_compared_with_a_constant_never_changes_once_past_it():
    c = comp("now() > 1700000000", WHEN)
    assert c.next_change(Context(now=1.8e9)) is None


def test_no_further_change_after_the_flip():
    c = comp("days_since(last_seen) >= 14", WHEN)
    assert c.next_change(Context(now=1000.0 + 20 * DAY, aggs={"last_seen": 1000.0})) is None


def test_null_time_inputs_never_change():
    c = comp("days_since(last_seen) >= 14", WHEN)
    assert c.next_change(Context(now=5.0, aggs={"last_seen": None})) is None
    assert c.next_change(Context(now=5.0, aggs={"last_seen": "x"})) is None


def test_time_dependent_number_compared_with_a_string_never_changes():
    c2 = comp("days_since(last_seen) == 'x'", WHEN)
    assert c2.next_change(Context(now=5.0, aggs={"last_seen": 1.0})) is None


@pytest.mark.parametrize(
    ("text", "when_true"),
    [
        ("views_7d >= 1 and days_since(last_seen) >= 14", 14),
        ("views_7d >= 5 or days_since(last_seen) >= 3", 3),
        ("not days_since(last_seen) < 2", 2),
        ("not (views_7d >= 5 or days_since(last_seen) < 2)", 2),
        ("exists(last_seen) and days_since(last_seen) >= 14", 14),
    ],
)
def test_combinations_with_and_or_not(text, when_true):
    c = comp(text, WHEN)
    ctx = Context(now=1.7e9, aggs={"views_7d": 1, "last_seen": 1.7e9})
    t = assert_exact(c, ctx)
    assert abs(t - (1.7e9 + when_true * DAY)) < 1e-4


def test_a_static_false_operand_of_and_freezes_it():
    ctx = Context(now=1.7e9, aggs={"views_7d": 0, "last_seen": 1.7e9})
    assert comp("views_7d >= 1 and days_since(last_seen) >= 14", WHEN).next_change(ctx) is None


def test_a_static_true_operand_of_or_freezes_it():
    ctx = Context(now=1.7e9, aggs={"views_7d": 9, "last_seen": 1.7e9})
    assert comp("views_7d >= 5 or days_since(last_seen) >= 3", WHEN).next_change(ctx) is None


def test_both_time_dependent_operands_flip_the_whole_when_the_later_one_does():
    c = comp("days_since(x) >= 3 and hours_since(y) >= 2", WHEN)
    ctx = Context(now=1.7e9, aggs={"x": 1.7e9, "y": 1.7e9})
    t = assert_exact(c, ctx)
    assert abs(t - (1.7e9 + 3 * DAY)) < 1e-4


def test_both_time_dependent_operands_flip_the_whole_when_the_earlier_one_does():
    c = comp("days_since(x) >= 3 or hours_since(y) >= 2", WHEN)
    ctx = Context(now=1.7e9, aggs={"x": 1.7e9, "y": 1.7e9})
    t = assert_exact(c, ctx)
    assert abs(t - (1.7e9 + 2 * 3600)) < 1e-5


def test_two_time_dependent_sides_cross_once():
    c = comp("days_since(x) > hours_since(y)", WHEN)
    # true now; hours_since(y) grows 24 times faster: t / 86400 = (t - 999) / 3600 at t = 1042.43...
    ctx = Context(now=1000.0, aggs={"x": 0.0, "y": 999.0})
    assert c.fn(ctx) is True
    t = assert_exact(c, ctx)
    assert abs(t - 86400 * 999 / 82800) < 1e-9


def test_difference_of_two_days_since_is_constant():
    c = comp("days_since(x) - days_since(y) > 1", WHEN)
    assert c.next_change(Context(now=5e5, aggs={"x": 0.0, "y": 1.0})) is None


def test_equality_with_a_time_dependent_side_starts_at_the_value():
    c = comp("now() == 2000", WHEN)
    ctx = Context(now=1000.0)
    t = assert_exact(c, ctx)
    assert t == 2000.0


def test_equality_with_a_time_dependent_side_ends_one_float_later():
    c = comp("now() == 2000", WHEN)
    t2 = assert_exact(c, Context(now=2000.0))
    assert t2 == math.nextafter(2000.0, INF)


def test_equality_with_a_time_dependent_side_never_changes_once_past():
    c = comp("now() == 2000", WHEN)
    assert c.next_change(Context(now=2000.5)) is None


def test_in_a_list_of_times():
    c = comp("now() in [1500, 3000]", WHEN)
    assert c.next_change(Context(now=1000.0)) == 1500.0


def test_not_in_a_list_holding_an_aggregate_time():
    c2 = comp("now() not in [x, 1500]", WHEN)
    assert c2.next_change(Context(now=1000.0, aggs={"x": 1200.0})) == 1200.0


def test_in_a_list_valued_aggregate():
    c = comp("now() in x", WHEN)
    assert c.next_change(Context(now=1000.0, aggs={"x": [900, 1800, "a", 1200]})) == 1200.0


def test_in_a_string_valued_aggregate_never_changes():
    c = comp("now() in x", WHEN)
    assert c.next_change(Context(now=1000.0, aggs={"x": "abc"})) is None


def test_quadratic_is_solved_exactly():
    c = comp("days_since(x) * days_since(y) > 3", WHEN)
    ctx = Context(now=1.7e9, aggs={"x": 1.7e9 - DAY, "y": 1.7e9})
    t = assert_exact(c, ctx)
    # (1 + u)u = 3 -> u = (-1 + sqrt(13)) / 2 days
    assert abs(t - (1.7e9 + (math.sqrt(13) - 1) / 2 * DAY)) < 1e-4


def test_unsolved_shapes_fall_back_to_a_bounded_step():
    c = comp("1 / days_since(x) < 0.5", WHEN)
    ctx = Context(now=1000.0, aggs={"x": 1000.0 - DAY})
    t = c.next_change(ctx)
    assert t == 1000.0 + forms.FALLBACK_STEP


def test_unsolved_shapes_find_a_flip_within_one_step_exactly():
    c = comp("1 / days_since(x) < 0.5", WHEN)
    # within one step the flip is found exactly by bisection
    near = Context(now=1000.0 + DAY - 30, aggs={"x": 1000.0 - DAY})
    assert_exact(c, near)


def test_time_dependent_number_changes_at_the_next_float():
    c = comp("days_since(x)", WHEN)
    ctx = Context(now=1.7e9, aggs={"x": 1.0})
    t = assert_exact(c, ctx)
    assert t <= 1.7e9 + 1e-3


def test_number_compared_with_a_time_dependent_bool_never_changes():
    c = comp("(now() > 5) == 3", WHEN)
    assert c.next_change(Context(now=1.0)) is None


def test_bool_compared_with_a_time_dependent_bool():
    c = comp("(now() > 5) == true", WHEN)
    assert assert_exact(c, Context(now=1.0)) == math.nextafter(5.0, INF)


def test_exists_of_a_time_dependent_value_never_changes():
    c = comp("exists(days_since(x))", WHEN)
    assert c.time_dependent is True
    assert c.next_change(Context(now=1.0, aggs={"x": 0.0})) is None


def test_truthiness_of_a_time_dependent_number():
    c = comp("not (now() - 1500)", WHEN)
    assert c.next_change(Context(now=1000.0)) == 1500.0


def test_a_bound_below_the_forms_rounding_is_found_at_its_first_float():
    # Found by hypothesis: the polynomial form rounds `(x - k)^2 - 1e-12` to a double root, but
    # the closures see the square below 1e-12 for 0.17 s around the vertex.
    c = comp(
        "((now() - 1700000000) / 86400 - 86400) * ((now() - 1700000000) / 86400 - 86400) < (1e-12)", WHEN
    )
    now = 1_700_000_000.0
    t = c.next_change(Context(now=now))
    assert c.fn(Context(now=t)) is True
    assert c.fn(Context(now=math.nextafter(t, -math.inf))) is False
