"""segd.rules syntax, example by example: literals, precedence, the AST, and errors that
name the column and what was expected (SPEC section 4, "Expressions")."""

from __future__ import annotations

import pickle

import pytest

from segd.errors import SegdError
from segd.rules import WHEN, WHERE, Binary, RuleError, Unary, parse
from tests.unit.rules_helpers import comp, ev


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


def test_integer_literal_stays_an_int():
    assert type(ev("3")) is int


def test_decimal_literal_is_a_float():
    assert type(ev("3.0")) is float


# ----------------------------------------------------------------------------- precedence and the AST


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


def test_keywords_are_allowed_after_a_dot():
    assert ev("traits.event", traits={"event": 1}) == 1
    assert ev("props.in", props={"in": 2}) == 2


def test_parse_does_not_check_names():
    assert parse("nope(1) and props.x") is not None


# ----------------------------------------------------------------------------- errors


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


def test_deep_parenthesis_nesting_is_an_error_not_a_crash():
    with pytest.raises(RuleError, match="nests too deeply"):
        comp("(" * 500 + "1" + ")" * 500)


def test_a_long_operator_chain_is_an_error_not_a_crash():
    with pytest.raises(RuleError, match="nests too deeply"):
        comp(" + ".join(["1"] * 500))
