"""segd.rules segment_order: references first, groups decided as a whole, ties by name,
and cycles rejected with the path named (SPEC section 4, segment('name'))."""

from __future__ import annotations

import pytest

from segd.rules import RuleError, segment_order


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
