"""segd.rules compile_expr: what a Compiled records besides its closure, constant folding,
and the scope argument (SPEC section 4)."""

from __future__ import annotations

import pytest

from segd.rules import WHEN, Context, RuleError, compile_expr
from tests.unit.rules_helpers import NAMES, comp

REFERENCING = "views_7d > 1 and traits.address.city == 'x' and segment('vip') and days_since(last_seen) > 1"


def test_compiled_lists_what_it_references():
    c = comp(REFERENCING, scope=WHEN)
    assert c.aggregates == {"views_7d", "last_seen"}
    assert c.traits == {"address"}
    assert c.segments == {"vip"}
    assert c.uses_props is False


def test_compiled_is_time_dependent_when_it_reads_the_clock():
    c = comp(REFERENCING, scope=WHEN)
    assert c.time_dependent is True


def test_compiled_keeps_its_text():
    c = comp(REFERENCING, scope=WHEN)
    assert c.text.startswith("views_7d")


def test_compiled_flags_props_and_event_use():
    assert comp("props.a == 1").uses_props is True
    assert comp("event == 'x'").uses_props is True
    assert comp("traits.a == 1").uses_props is False


def test_constant_expression_is_folded():
    assert comp("1 + 2 * 3").fn(Context()) == 7


def test_constant_expression_is_still_checked():
    with pytest.raises(RuleError):
        comp("1 + nope")


def test_unknown_scope_is_a_programming_error():
    with pytest.raises(ValueError):
        compile_expr("1", scope="of", names=NAMES)
