"""segd.rules compile_expr: what a Compiled records besides its closure, constant folding,
and the scope argument (SPEC section 4)."""

from __future__ import annotations

import pytest

from segd.rules import WHEN, Context, RuleError, compile_expr
from tests.unit.rules_helpers import NAMES, comp


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


def test_constant_expression_is_folded_but_still_checked():
    assert comp("1 + 2 * 3").fn(Context()) == 7
    with pytest.raises(RuleError):
        comp("1 + nope")


def test_unknown_scope_is_a_programming_error():
    with pytest.raises(ValueError):
        compile_expr("1", scope="of", names=NAMES)
