"""actors.compiled.steps: which readers a count's step of one may leave unevaluated."""

from __future__ import annotations

import pytest

from actors.compiled.steps import _crossings, step_plan
from actors.model import Model
from segd.config import parse_config


@pytest.mark.parametrize(
    ("op", "k", "crossing"),
    [
        (">=", 3.0, {2}),
        ("<", 3.0, {2}),
        (">", 3.0, {3}),
        ("<=", 3.0, {3}),
        ("==", 3.0, {2, 3}),
        ("!=", 3.0, {2, 3}),
        ("==", 2.5, set()),
        (">=", 2.5, {2}),
        (">=", 0.0, set()),
        ("<", -1.0, set()),
    ],
)
def test_crossings_are_the_counts_whose_step_changes_the_comparison(op, k, crossing):
    assert _crossings(op, k) == crossing


def _model(segments: dict[str, dict]) -> Model:
    aggs = {
        "views": {"kind": "count", "event": "view"},
        "seen": {"kind": "last_time", "event": "*"},
    }
    return Model.compile(parse_config({"aggregates": aggs, "segments": segments}, label="steps.toml"))


def test_time_independent_readers_are_skippable_and_time_dependent_ones_kept():
    model = _model(
        {
            "many": {"when": "views >= 10"},
            "some": {"when": "views > 2 and views != 5"},
            "idle": {"when": "views >= 1 and hours_since(seen) >= 1"},
        }
    )
    step = step_plan(model, model.agg_by_name["views"])
    assert step is not None
    bits = {name: model.seg_by_name[name].bit for name in ("many", "some", "idle")}
    assert step.keep == bits["idle"]
    assert step.skip == bits["many"] | bits["some"]
    assert step.crossing == {9, 2, 4, 5}  # idle's threshold is not among them: idle is kept


def test_a_reader_using_the_count_other_than_against_a_constant_means_no_plan():
    model = _model({"many": {"when": "views >= 10"}, "odd": {"when": "views + 1 >= 3"}})
    assert step_plan(model, model.agg_by_name["views"]) is None


def test_a_count_read_only_by_time_dependent_segments_has_no_plan():
    model = _model({"idle": {"when": "views >= 1 and hours_since(seen) >= 1"}})
    assert step_plan(model, model.agg_by_name["views"]) is None
