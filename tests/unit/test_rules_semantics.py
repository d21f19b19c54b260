"""segd.rules evaluation semantics, example by example: null, equality and ordering across
types, in / not in, arithmetic, and / or / not, names and functions (SPEC section 4)."""

from __future__ import annotations

import pytest

from segd.rules import WHEN
from tests.unit.rules_helpers import ev

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


def test_int_arithmetic_beyond_float_range_stays_an_int():
    assert ev("big * 2 > 0", aggs={"big": 10**400}) is True  # ints do not overflow


def test_arithmetic_on_aggregate_values():
    assert ev("views_7d * 2 + purchases", aggs={"views_7d": 3, "purchases": 1}) == 7


def test_division_by_a_zero_aggregate_is_null():
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


def test_and_short_circuits():
    aggs = _Exploding()
    assert ev("false and views_7d > 1", aggs=aggs) is False


def test_or_short_circuits():
    aggs = _Exploding()
    assert ev("true or views_7d > 1", aggs=aggs) is True


# ----------------------------------------------------------------------------- names


def test_nested_trait_path_looks_into_maps():
    traits = {"address": {"city": "Oslo", "geo": {"lat": 59.9}}, "plan": "pro"}
    assert ev("traits.address.city == 'Oslo'", traits=traits) is True
    assert ev("traits.address.geo.lat", traits=traits) == 59.9


def test_nested_trait_path_through_a_non_map_or_a_missing_key_is_null():
    traits = {"address": {"city": "Oslo", "geo": {"lat": 59.9}}, "plan": "pro"}
    assert ev("traits.plan.city", traits=traits) is None
    assert ev("traits.nope.city", traits=traits) is None
    assert ev("traits.address.zip", traits=traits) is None


def test_props_in_where_scope():
    assert ev("props.price * 2", props={"price": 5}) == 10
    assert ev("props.item.sku", props={"item": {"sku": "A1"}}) == "A1"
    assert ev("props.missing") is None  # no props at all


def test_event_in_where_scope():
    assert ev("event == 'view'", event="view") is True
    assert ev("event") is None


def test_aggregate_reads_the_context_mapping():
    assert ev("views_7d", aggs={"views_7d": 4}) == 4


def test_null_aggregate_compares_false():
    assert ev("views_7d >= 3", aggs={"views_7d": None}) is False


def test_list_literal_evaluates_its_elements():
    assert ev("[views_7d, traits.plan]", aggs={"views_7d": 2}, traits={"plan": "pro"}) == [2, "pro"]


# ----------------------------------------------------------------------------- functions


def test_exists():
    assert ev("exists(traits.email)", traits={"email": "a@b"}) is True
    assert ev("exists(traits.email)") is False
    assert ev("exists(false)") is True
    assert ev("not exists(null)") is True


def test_segment_membership():
    assert ev("segment('vip')", scope=WHEN, segments={"vip"}) is True
    assert ev("segment('vip')", scope=WHEN, segments=frozenset()) is False
