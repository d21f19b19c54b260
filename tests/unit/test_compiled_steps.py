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


# ---------------------------------------------------------------------- deadlines after a fold
# An in-order append leaves a window's next change where it was (or later) unless its count
# crosses a mark: the event functions then skip recomputing it (gen_events.emit_moved). Each
# case folds the same rows on both engines and compares every transition, ``at`` included.

_DAY = 86400.0
_T0 = 1_700_000_000.0


_AGGS = {
    "views_7d": {"kind": "count", "event": "view", "within": "7d"},
    "cats_7d": {"kind": "distinct", "event": "view", "of": "props.cat", "within": "7d"},
    "last_view_7d": {"kind": "last_time", "event": "view", "within": "7d"},
}


def _both(agg: str, when: str, rows: list) -> list:
    """(segment, kind, at) of every transition, the same from both engines (ids too)."""
    from actors.shard.core import ShardCore

    config = {"aggregates": {agg: _AGGS[agg]}, "segments": {"s": {"when": when}}}
    model = Model.compile(parse_config(config, label="steps.toml"))
    got = []
    for reference in (True, False):
        shard = ShardCore(model, reference=reference)
        out = [t for row in rows for t in shard.apply_batch([row])]
        out += shard.advance(_T0 + 30 * _DAY)
        got.append([(t.id, t.kind, t.at, t.seq) for t in out])
    assert got[0] == got[1]
    return [(kind, at) for _, kind, at, _ in got[1]]


def _view(seq: int, at: float, cat: str):
    import msgpack

    from actors.records import Row

    return Row(seq, "ann", "track", "view", at, at, msgpack.packb({"cat": cat}))


@pytest.mark.parametrize(("agg", "when"), [("views_7d", "views_7d >= 3"), ("cats_7d", "cats_7d >= 3")])
def test_an_append_that_crosses_a_mark_moves_the_deadline_earlier(agg, when):
    # views on days 0, 1, 2 (values a, b, c): in at 2, out at 7 when day 0 expires; the
    # deadline is then day 2's expiry (9, the window empties). The view at 7.5 crosses
    # >= 3 again: out at 8, when day 1 expires, not at 9.
    days, cats = [0, 1, 2, 7.5], "abcd"
    rows = [_view(i + 1, _T0 + d * _DAY, c) for i, (d, c) in enumerate(zip(days, cats, strict=True))]
    expected = [("enter", 2), ("exit", 7), ("enter", 7.5), ("exit", 8)]
    assert _both(agg, when, rows) == [(kind, _T0 + d * _DAY) for kind, d in expected]


@pytest.mark.parametrize(
    ("agg", "when", "days"),
    [
        ("views_7d", "views_7d >= 2 and views_7d < 5", [0.5, 2, 8.5, 10]),
        ("cats_7d", "cats_7d >= 2", [0.5, 10]),
        ("last_view_7d", "exists(last_view_7d)", [0, 10.5]),
    ],
)
def test_appends_that_cross_nothing_and_moved_values_keep_the_reference_deadlines(agg, when, days):
    # views every half day, values a b c b a b a b: appends past marks, values moved to the end
    rows = [_view(i + 1, _T0 + i * _DAY / 2, cat) for i, cat in enumerate("abcbabab")]
    got = _both(agg, when, rows)
    assert got == [
        (kind, _T0 + d * _DAY) for kind, d in zip(["enter", "exit"] * (len(days) // 2), days, strict=True)
    ]
