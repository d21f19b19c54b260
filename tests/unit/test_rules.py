"""segd.rules: the expression language, example by example (SPEC section 4, "Expressions")."""

from __future__ import annotations

import math
import pickle

import pytest

from segd.errors import SegdError
from segd.rules import (
    WHEN,
    WHERE,
    Binary,
    Compiled,
    Context,
    Names,
    RuleError,
    Unary,
    compile_expr,
    parse,
    segment_order,
    timing,
)

NAMES = Names(
    aggregates=frozenset({"views_7d", "purchases", "last_seen", "x", "y", "big"}),
    segments=frozenset({"vip", "lapsed"}),
)
DAY = 86400.0
INF = math.inf


def comp(text: str, scope: str = WHERE) -> Compiled:
    return compile_expr(text, scope=scope, names=NAMES, table="segments.s", key="when")


def ev(text: str, scope: str = WHERE, **ctx):
    return comp(text, scope).fn(Context(**ctx))


def err(text: str, scope: str = WHEN) -> RuleError:
    with pytest.raises(RuleError) as info:
        comp(text, scope)
    return info.value


# ----------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("2.5", 2.5),
        ("1e3", 1000.0),
        ("1.5E-2", 0.015),
        ("0", 0),
        ("'hi'", "hi"),
        ('"hi"', "hi"),
        ("''", ""),
        (r"'it\'s'", "it's"),
        (r'"say \"x\""', 'say "x"'),
        (r"'a\\b'", "a\\b"),
        (r"'a\nb\tc'", "a\nb\tc"),
        ("'say \"x\"'", 'say "x"'),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[]", []),
        ("[1, 'a', true, null, 2.5]", [1, "a", True, None, 2.5]),
        ("[[1], []]", [[1], []]),
    ],
)
def test_literal_evaluates_to_its_value(text, value):
    result = ev(text)
    assert result == value and type(result) is type(value)


def test_integer_literal_stays_an_int_and_decimal_a_float():
    assert type(ev("3")) is int
    assert type(ev("3.0")) is float


def test_list_literal_evaluates_its_elements():
    assert ev("[views_7d, traits.plan]", aggs={"views_7d": 2}, traits={"plan": "pro"}) == [2, "pro"]


# ----------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("12 / 3 / 2", 2.0),
        ("2 * 3 - 4 / 2", 4.0),
        ("-2 * 3", -6),
        ("- -3", 3),
        ("2 - -3", 5),
        ("-(1 + 2)", -3),
        ("1 + 2 == 3", True),
        ("1 + 2 * 3 == 7 and 2 > 1", True),
        ("true or false and false", True),
        ("(true or false) and false", False),
        ("not true or true", True),
        ("not (true or true)", False),
        ("not 1 == 2", True),
        ("not not true", True),
        ("false and true or true", True),
        ("1 < 2 and 2 < 3", True),
        ("'b' in 'abc' and 1 not in [2]", True),
    ],
)
def test_operator_precedence(text, value):
    assert ev(text) == value


def test_parse_builds_left_associative_binary_nodes():
    node = parse("a - b - c")
    assert isinstance(node, Binary) and node.op == "-"
    assert isinstance(node.left, Binary) and node.left.op == "-"


def test_parse_not_binds_looser_than_comparison():
    node = parse("not a == b")
    assert isinstance(node, Unary) and node.op == "not"
    assert isinstance(node.operand, Binary) and node.operand.op == "=="


# ----------------------------------------------------------------------------- null and types


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
@pytest.mark.parametrize(
    ("left", "right"),
    [("null", "1"), ("1", "null"), ("null", "null"), ("traits.missing", "'a'"), ("null", "[null]")],
)
def test_every_comparison_with_null_is_false(op, left, right):
    assert ev(f"{left} {op} {right}") is False


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true == 1", False),
        ("true != 1", True),
        ("1 == 1.0", True),
        ("'1' == 1", False),
        ("'1' != 1", True),
        ("false == 0", False),
        ("true == true", True),
        ("true != false", True),
        ("'a' < 1", False),
        ("1 < 'a'", False),
        ("true < 2", False),
        ("'a' < 'b'", True),
        ("2.5 >= 2", True),
        ("[1, 2] == [1, 2.0]", True),
        ("[1, 2] == [2, 1]", False),
        ("[1] == [1, 1]", False),
        ("[[1, 'a']] == [[1, 'a']]", True),
        ("[1, null] == [1, null]", False),
        ("[1] != [2]", True),
        ("[true] == [1]", False),
        ("[1] < [2]", False),
        ("[] == []", True),
        ("[] != 0", True),
    ],
)
def test_comparison_type_rules(text, value):
    assert ev(text) is value


def test_traits_maps_compare_only_with_their_own_type():
    t = {"m": {"a": 1}, "n": {"a": 1}}
    assert ev("traits.m == traits.n", traits=t) is True
    assert ev("traits.m == [1]", traits=t) is False
    assert ev("traits.m != 'x'", traits=t) is True


def test_number_excludes_bool_when_compared_with_a_number_constant():
    assert ev("traits.flag == 1", traits={"flag": True}) is False
    assert ev("traits.flag >= 1", traits={"flag": True}) is False
    assert ev("traits.flag != 1", traits={"flag": True}) is True


# ----------------------------------------------------------------------------- in / not in


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2 in [1, 2]", True),
        ("2.0 in [1, 2]", True),
        ("3 in [1, 2]", False),
        ("true in [1]", False),
        ("1 in [true]", False),
        ("'a' in ['a', 'b']", True),
        ("[1] in [[1], 2]", True),
        ("null in [null]", False),
        ("'ab' in 'cabd'", True),
        ("'x' in 'abc'", False),
        ("1 in 'a1'", False),
        ("1 in 5", False),
        ("1 not in [2]", True),
        ("2 not in [2]", False),
        ("'x' not in 'abc'", True),
        ("1 not in 'abc'", True),
        ("1 not in 5", False),
        ("1 not in traits.m", False),
        ("'a' in traits.m", False),
        ("1 in []", False),
        ("1 not in []", True),
    ],
)
def test_in_and_not_in(text, value):
    assert ev(text, traits={"m": {"a": 1}}) is value


@pytest.mark.parametrize("elems", [[1, 2.5, "x"], ["a", "b"], [1, True], [None, 1], [[1], 1]])
def test_in_with_a_variable_matches_equality(elems):
    lit = (
        "["
        + ", ".join(
            "null" if e is None else repr(e).lower() if isinstance(e, bool) else repr(e) for e in elems
        )
        + "]"
    )
    for v in [1, 1.0, 2.5, "x", "a", True, None, [1], "nope"]:
        expected = v is not None and any(
            (type(v) in (int, float) and type(e) in (int, float) and v == e)
            or (type(v) is type(e) and v == e)
            for e in elems
        )
        assert ev(f"traits.v in {lit}", traits={"v": v}) is expected, (v, elems)
        assert ev(f"traits.v not in {lit}", traits={"v": v}) is (v is not None and not expected), (v, elems)


# ----------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("7 / 2", 3.5),
        ("6 / 3", 2.0),
        ("2 * 2.5", 5.0),
        ("'a' + 'b'", "ab"),
        ("1 + 'a'", None),
        ("'a' * 2", None),
        ("'a' - 'a'", None),
        ("true + 1", None),
        ("1 + null", None),
        ("1 / 0", None),
        ("1.5 / 0.0", None),
        ("0 / 0", None),
        ("-'a'", None),
        ("-true", None),
        ("-null", None),
        ("[1] + [2]", None),
        ("-2.5", -2.5),
    ],
)
def test_arithmetic(text, value):
    result = ev(text)
    assert result == value and type(result) is type(value)


def test_arithmetic_beyond_float_range_is_null():
    assert ev("big / 3", aggs={"big": 10**400}) is None
    assert ev("big + 0.5", aggs={"big": 10**400}) is None
    assert ev("big * 2 > 0", aggs={"big": 10**400}) is True  # ints do not overflow


def test_arithmetic_on_aggregate_values():
    assert ev("views_7d * 2 + purchases", aggs={"views_7d": 3, "purchases": 1}) == 7
    assert ev("views_7d / purchases", aggs={"views_7d": 3, "purchases": 0}) is None


# ----------------------------------------------------------------------------- and / or / not


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1 and 'x'", True),
        ("0 or ''", False),
        ("null or 1", True),
        ("not null", True),
        ("not []", True),
        ("not [0]", False),
        ("null and true", False),
        ("'' or []", False),
        ("2.5 and -1", True),
    ],
)
def test_logic_uses_truthiness_and_returns_bools(text, value):
    assert ev(text) is value


class _Exploding(dict):
    def __getitem__(self, key):
        raise AssertionError(f"evaluated {key} despite short-circuit")


def test_and_or_short_circuit():
    aggs = _Exploding()
    assert ev("false and views_7d > 1", aggs=aggs) is False
    assert ev("true or views_7d > 1", aggs=aggs) is True


# ----------------------------------------------------------------------------- names


def test_nested_trait_path_looks_into_maps():
    traits = {"address": {"city": "Oslo", "geo": {"lat": 59.9}}, "plan": "pro"}
    assert ev("traits.address.city == 'Oslo'", traits=traits) is True
    assert ev("traits.address.geo.lat", traits=traits) == 59.9
    assert ev("traits.plan.city", traits=traits) is None
    assert ev("traits.nope.city", traits=traits) is None
    assert ev("traits.address.zip", traits=traits) is None


def test_props_and_event_in_where_scope():
    assert ev("props.price * 2", props={"price": 5}) == 10
    assert ev("props.item.sku", props={"item": {"sku": "A1"}}) == "A1"
    assert ev("props.missing") is None  # no props at all
    assert ev("event == 'view'", event="view") is True
    assert ev("event") is None


def test_aggregate_reads_the_context_mapping():
    assert ev("views_7d", aggs={"views_7d": 4}) == 4
    assert ev("views_7d >= 3", aggs={"views_7d": None}) is False


def test_keywords_are_allowed_after_a_dot():
    assert ev("traits.event", traits={"event": 1}) == 1
    assert ev("props.in", props={"in": 2}) == 2


# ----------------------------------------------------------------------------- functions


def test_now_is_the_context_time():
    assert ev("now()", now=123.5) == 123.5


def test_days_since_and_hours_since():
    assert ev("days_since(last_seen)", now=3 * DAY, aggs={"last_seen": DAY}) == 2.0
    assert ev("hours_since(last_seen)", now=7200.0, aggs={"last_seen": 0}) == 2.0
    assert ev("days_since(last_seen)", now=5.0, aggs={"last_seen": None}) is None
    assert ev("days_since('yesterday')", now=5.0) is None
    assert ev("hours_since(true)", now=5.0) is None


def test_exists():
    assert ev("exists(traits.email)", traits={"email": "a@b"}) is True
    assert ev("exists(traits.email)") is False
    assert ev("exists(false)") is True
    assert ev("not exists(null)") is True


def test_segment_membership():
    assert ev("segment('vip')", scope=WHEN, segments={"vip"}) is True
    assert ev("segment('vip')", scope=WHEN, segments=frozenset()) is False


# ----------------------------------------------------------------------------- compiled metadata


def test_compiled_lists_what_it_references():
    c = comp(
        "views_7d > 1 and traits.address.city == 'x' and segment('vip') and days_since(last_seen) > 1",
        scope=WHEN,
    )
    assert c.aggregates == {"views_7d", "last_seen"}
    assert c.traits == {"address"}
    assert c.segments == {"vip"}
    assert c.uses_props is False
    assert c.time_dependent is True
    assert c.text.startswith("views_7d")


def test_compiled_flags_props_and_event_use():
    assert comp("props.a == 1").uses_props is True
    assert comp("event == 'x'").uses_props is True
    assert comp("traits.a == 1").uses_props is False


def test_not_time_dependent_never_changes():
    c = comp("views_7d >= 3", WHEN)
    assert c.time_dependent is False
    assert c.next_change(Context(now=5.0, aggs={"views_7d": 1})) is None


def test_constant_expression_is_folded_but_still_checked():
    assert comp("1 + 2 * 3").fn(Context()) == 7
    with pytest.raises(RuleError):
        comp("1 + nope")


# ----------------------------------------------------------------------------- check-time errors


@pytest.mark.parametrize(
    ("text", "scope", "column", "fragments"),
    [
        (
            "vews_7d > 1",
            WHEN,
            1,
            ["unknown aggregate 'vews_7d'", "known: big, last_seen", "did you mean 'views_7d'"],
        ),
        ("1 + foo(1)", WHEN, 5, ["unknown function 'foo'", "days_since"]),
        ("days_since()", WHEN, 1, ["expected 1 argument for days_since()", "found 0"]),
        ("now(1)", WHEN, 1, ["expected 0 arguments for now()", "found 1"]),
        ("exists(1, 2)", WHEN, 1, ["expected 1 argument for exists()", "found 2"]),
        ("x > 1 and props.price > 3", WHEN, 11, ["props.* is only allowed in 'where' and 'of' expressions"]),
        ("event == 'view'", WHEN, 1, ["'event' is only allowed in 'where' and 'of' expressions"]),
        ("segment('vip')", WHERE, 1, ["segment() is only allowed in 'when' expressions"]),
        ("segment('nope')", WHEN, 9, ["unknown segment 'nope'", "known: lapsed, vip"]),
        ("segment(x)", WHEN, 9, ["expected a string literal naming a segment", "found name 'x'"]),
        ("segment('v' + 'ip')", WHEN, 13, ["expected a string literal", "found an expression"]),
        ("x >", WHEN, 4, ["expected an expression but found end of expression"]),
        ("(x > 1", WHEN, 7, ["expected ')'", "but found end of expression"]),
        ("x > 1)", WHEN, 6, ["expected an operator or end of expression but found ')'"]),
        ("x y", WHEN, 3, ["found name 'y'"]),
        ("[1, 2", WHEN, 6, ["expected ']' or ','", "found end of expression"]),
        ("[1, ]", WHEN, 5, ["expected an expression but found ']'"]),
        ("x < y < 3", WHEN, 7, ["comparisons do not chain", "found a second '<'"]),
        ("x == y in [1]", WHEN, 8, ["comparisons do not chain", "'in'"]),
        ("x not y", WHEN, 7, ["expected 'in' after 'not' but found name 'y'"]),
        ("x = 1", WHEN, 3, ["unexpected character '='", "'=='"]),
        ("x ! 1", WHEN, 3, ["unexpected character '!'", "'!='"]),
        ("x > $", WHEN, 5, ["unexpected character '$'"]),
        ("'abc", WHEN, 1, ["unterminated string", "end of expression"]),
        (r"'a\qb'", WHEN, 3, ["unknown escape '\\q'"]),
        ("3abc > 1", WHEN, 1, ["malformed number '3abc'"]),
        ("traits > 1", WHEN, 8, ["expected '.' and a name after 'traits' but found '>'"]),
        ("traits.", WHEN, 8, ["expected a name after '.' but found end of expression"]),
        ("traits.1", WHEN, 8, ["expected a name after '.'", "number 1"]),
        ("now > 1", WHEN, 5, ["expected '(' after function 'now'"]),
        ("and", WHEN, 1, ["expected an expression but found 'and'"]),
        ("", WHEN, 1, ["expected an expression but found end of expression"]),
        ("x == not y", WHEN, 6, ["expected an expression but found 'not'"]),
        ("days_since(x", WHEN, 13, ["expected ')' or ','", "call to days_since()"]),
    ],
)
def test_check_errors_name_the_column_and_what_was_expected(text, scope, column, fragments):
    e = err(text, scope)
    assert e.column == column, str(e)
    for fragment in fragments:
        assert fragment in e.message, str(e)


def test_rule_error_str_and_attributes():
    e = err("vews_7d > 1")
    assert isinstance(e, SegdError)
    assert (e.table, e.key, e.column) == ("segments.s", "when", 1)
    assert str(e) == f"segments.s: 'when' at column 1: {e.message}"


def test_rule_error_pickles():
    e = err("x >")
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and back.column == e.column


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(RuleError, match="nests too deeply"):
        comp("(" * 500 + "1" + ")" * 500)
    with pytest.raises(RuleError, match="nests too deeply"):
        comp(" + ".join(["1"] * 500))


def test_unknown_scope_is_a_programming_error():
    with pytest.raises(ValueError):
        compile_expr("1", scope="of", names=NAMES)


def test_parse_does_not_check_names():
    assert parse("nope(1) and props.x") is not None


# ----------------------------------------------------------------------------- segment_order


def test_segment_order_puts_references_first_and_breaks_ties_by_name():
    order = segment_order({"c": [], "b": ["c"], "a": ["b"], "d": []}, {})
    assert order == ["c", "b", "a", "d"]


def test_segment_order_waits_for_every_member_of_a_referenced_group():
    refs = {"x": ["g1"], "g1": [], "g2": ["z"], "z": []}
    groups = {"g1": "G", "g2": "G", "x": "", "z": ""}
    order = segment_order(refs, groups)
    assert sorted(order) == ["g1", "g2", "x", "z"]
    assert order.index("x") > order.index("g1") and order.index("x") > order.index("g2")
    assert order.index("g2") > order.index("z")


def test_segment_order_is_deterministic():
    refs = {n: [] for n in "edcba"}
    assert segment_order(refs, {}) == ["a", "b", "c", "d", "e"]


def test_segment_order_rejects_a_direct_cycle():
    with pytest.raises(RuleError) as info:
        segment_order({"a": ["b"], "b": ["a"], "c": []}, {})
    e = info.value
    assert (e.table, e.key, e.column) == ("segments.a", "when", 1)
    assert e.message == "segment reference cycle: a -> b -> a"


def test_segment_order_rejects_a_self_reference():
    with pytest.raises(RuleError, match="segment reference cycle: a -> a"):
        segment_order({"a": ["a"]}, {})


def test_segment_order_rejects_a_cycle_through_a_group():
    refs = {"a": ["b"], "b": ["c"], "c": []}
    groups = {"a": "G", "c": "G", "b": ""}
    with pytest.raises(RuleError) as info:
        segment_order(refs, groups)
    assert info.value.message.startswith("segment reference cycle: a -> b -> a")
    assert "b references c, which is decided with a in group 'G'" in info.value.message


def test_segment_order_rejects_referencing_a_sibling_in_the_same_group():
    with pytest.raises(RuleError, match="cycle"):
        segment_order({"a": ["b"], "b": []}, {"a": "G", "b": "G"})


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
    assert c.next_change(Context(now=1.8e9)) is None


def test_no_further_change_after_the_flip():
    c = comp("days_since(last_seen) >= 14", WHEN)
    assert c.next_change(Context(now=1000.0 + 20 * DAY, aggs={"last_seen": 1000.0})) is None


def test_null_time_inputs_never_change():
    c = comp("days_since(last_seen) >= 14", WHEN)
    assert c.next_change(Context(now=5.0, aggs={"last_seen": None})) is None
    assert c.next_change(Context(now=5.0, aggs={"last_seen": "x"})) is None
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


def test_a_static_operand_that_decides_the_result_freezes_it():
    ctx = Context(now=1.7e9, aggs={"views_7d": 0, "last_seen": 1.7e9})
    assert comp("views_7d >= 1 and days_since(last_seen) >= 14", WHEN).next_change(ctx) is None
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


def test_equality_with_a_time_dependent_side():
    c = comp("now() == 2000", WHEN)
    ctx = Context(now=1000.0)
    t = assert_exact(c, ctx)
    assert t == 2000.0
    t2 = assert_exact(c, Context(now=2000.0))
    assert t2 == math.nextafter(2000.0, INF)
    assert c.next_change(Context(now=2000.5)) is None


def test_in_a_list_of_times():
    c = comp("now() in [1500, 3000]", WHEN)
    assert c.next_change(Context(now=1000.0)) == 1500.0
    c2 = comp("now() not in [x, 1500]", WHEN)
    assert c2.next_change(Context(now=1000.0, aggs={"x": 1200.0})) == 1200.0


def test_in_a_list_valued_aggregate():
    c = comp("now() in x", WHEN)
    assert c.next_change(Context(now=1000.0, aggs={"x": [900, 1800, "a", 1200]})) == 1200.0
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
    assert t == 1000.0 + timing.FALLBACK_STEP
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
