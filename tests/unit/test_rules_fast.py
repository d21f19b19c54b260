"""segd.rules: the closed-form next_change of linear comparisons equals the generic analysis.

``compile_expr(..., fast=False)`` compiles the same closures without slopes, so every
next_change takes the generic path (forms, roots, ``first_true``). Both must return the
same float, bit for bit, or both None.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from segd.rules import WHEN, Context, Names, compile_expr

AGGS = ("a1", "a2", "a3")
NAMES = Names(aggregates=frozenset(AGGS), segments=frozenset())
DAY = 86400.0
NOW = 1.7e9

LEAVES = st.one_of(
    st.sampled_from(AGGS).map(lambda a: f"days_since({a})"),
    st.sampled_from(AGGS).map(lambda a: f"hours_since({a})"),
    st.sampled_from(["now()", "(now() - 1700000000)", "days_since(1699000000)"]),
)
CONSTANTS = st.one_of(
    st.integers(-100, 100).map(str),
    st.sampled_from(["0", "0.5", "2.5", "86400", "1e-300", "1e300", "1e999", "13.999", "14", "48", "60"]),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: f"({f!r})"),
)
SHAPES = [
    "{t}",
    "{t} + {k}",
    "{t} - {k}",
    "{k} - {t}",
    "{t} * {k}",
    "{k} * {t}",
    "{t} / {k}",
    "-{t}",
    "-({t} * {k})",
    "({t} + {k}) / {k}",
    "{k} / {t}",
]
LINEAR = st.builds(lambda t, k, shape: shape.format(t=t, k=k), LEAVES, CONSTANTS, st.sampled_from(SHAPES))
FIXED = st.one_of(CONSTANTS, st.sampled_from(["a1", "a2", "null", "'x'", "true", "a1 + 1"]))
OPS = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
COMPARISONS = st.one_of(
    st.builds(lambda a, op, b: f"{a} {op} {b}", LINEAR, OPS, FIXED),
    st.builds(lambda a, op, b: f"{b} {op} {a}", LINEAR, OPS, FIXED),
    LINEAR.map(lambda a: f"not ({a})"),
    LINEAR.map(lambda a: f"{a} in [1, 2.5, 14]"),
)
GUARDS = st.sampled_from(["a1 >= 1", "exists(a2)", "not exists(a3)", "a2 == null"])
EXPRESSIONS = st.recursive(
    st.one_of(COMPARISONS, GUARDS),
    lambda inner: st.one_of(
        st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(["and", "or"]), inner),
        inner.map(lambda a: f"not ({a})"),
    ),
    max_leaves=4,
)
VALUES = st.one_of(
    st.none(),
    st.floats(-40 * DAY, 40 * DAY).map(lambda o: NOW - o),
    st.integers(-40, 40).map(lambda d: int(NOW) - d * 86400),
    st.sampled_from(
        [
            NOW,
            NOW - 14 * DAY,
            NOW - 48 * 3600.0,
            0,
            1,
            2.5,
            -1e300,
            1e308,
            10**400,
            math.inf,
            -math.inf,
            math.nan,
            True,
            "x",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def contexts(draw: st.DrawFn) -> Context:
    now = draw(
        st.one_of(
            st.floats(-40 * DAY, 40 * DAY).map(lambda o: NOW + o),
            st.sampled_from([NOW, 0.0, 1.0, -5.0, 1e22, 5, 10**400 // 10**390]),
            st.floats(allow_nan=False, allow_infinity=False),
        )
    )
    # often exactly at a threshold: where a deadline fires, the next call starts at equality
    at_bound = st.builds(
        lambda m, unit: now - m * unit,
        st.sampled_from([0, 1, 2.5, 7, 14, 48, 60, -3]),
        st.sampled_from([DAY, 3600.0, 1.0]),
    )
    return Context(now=now, aggs={a: draw(st.one_of(VALUES, at_bound)) for a in AGGS})


def bits(t: Any) -> Any:
    return t if t is None else (t, math.copysign(1.0, t))


def assert_same_next_change(text: str, ctx: Context) -> None:
    fast = compile_expr(text, scope=WHEN, names=NAMES)
    slow = compile_expr(text, scope=WHEN, names=NAMES, fast=False)
    now = ctx.now
    got = fast.next_change(ctx)
    assert ctx.now is now  # restored after probing
    assert bits(got) == bits(slow.next_change(ctx)), text


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, contexts())
@example("exists(a1) and days_since(a1) >= 14", Context(now=NOW, aggs={"a1": NOW - 3 * DAY}))
@example("a1 >= 1 and days_since(a2) >= 60", Context(now=NOW, aggs={"a1": 2, "a2": NOW - 5 * DAY}))
@example(
    "a1 >= 1 and (not exists(a2) or hours_since(a2) >= 48)",
    Context(now=NOW, aggs={"a1": 1, "a2": NOW - 7 * 3600.3}),
)
@example("days_since(a1) <= 7", Context(now=NOW, aggs={"a1": NOW - 7 * DAY + 0.5}))
@example("days_since(a1) == 7", Context(now=NOW, aggs={"a1": NOW - 7 * DAY}))
@example("now() > 5", Context(now=5))
@example("a1 >= 1 and hours_since(a2) >= 48", Context(now=NOW, aggs={"a1": 1, "a2": NOW - 48 * 3600.0}))
@example("exists(a1) and days_since(a1) < 7", Context(now=NOW, aggs={"a1": NOW - 7 * DAY}))
def test_fast_next_change_equals_the_generic_one(text, ctx):
    assert_same_next_change(text, ctx)


def test_the_fast_path_restores_now_and_matches_on_the_bench_rules():
    rules = [
        "exists(a1) and days_since(a1) >= 14",
        "a1 >= 1 and days_since(a2) >= 60",
        "a1 >= 1 and (not exists(a2) or hours_since(a2) >= 48)",
    ]
    for text in rules:
        for days in (0.0, 1.5, 2.0, 7.0, 14.0, 59.999, 60.0, 61.0):
            ctx = Context(now=NOW, aggs={"a1": NOW - days * DAY, "a2": NOW - days * DAY})
            assert_same_next_change(text, ctx)
            assert ctx.now == NOW
