"""The compiled fold's windows (actors.compiled.windows) against the reference kinds.

For random sequences of folds, reads, next_change probes and prunes at non-decreasing times
(the order in which a user actor uses a window), every answer must be the reference's,
bit for bit: values (sums as ``math.fsum`` gives them, min/max ties by type and position),
next changes, and the stored entries after the last operation.
"""

from __future__ import annotations

import math
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.aggregates import make_kind
from actors.compiled import distinct as dw
from actors.compiled import sorted as chunked
from actors.compiled.values import accepts, keyed, new_value_win
from actors.compiled.windows import (
    tw_count,
    tw_first,
    tw_fold,
    tw_last,
    tw_next,
    tw_prune,
    tw_times,
)

WITHIN = 100.0
VALUE_KINDS = ["sum", "avg", "min", "max", "first", "last", "distinct"]
TIME_KINDS = ["count", "first_time", "last_time"]

values = st.one_of(
    st.sampled_from(["a", "b", "c", 1, 2.0]),
    st.integers(-5, 5),
    st.floats(-8, 8, allow_nan=False).map(lambda x: round(x, 1)),
    st.sampled_from([0.0, -0.0, 1, 1.0, 2, 2.0, None, "a", "b", True, [1], {"k": 1}, math.nan, math.inf]),
    st.floats(-1e18, 1e18, allow_nan=False, allow_infinity=False),
)


@st.composite
def ops(draw):
    """(op, dt, ts_offset, value): times only move forward; ts may be late or in the future."""
    out = []
    for _ in range(draw(st.integers(1, 60))):
        op = draw(st.sampled_from(["fold", "fold", "fold", "value", "next", "prune"]))
        dt = draw(st.one_of(st.just(0.0), st.floats(0, 60), st.sampled_from([WITHIN, 0.5, 1e-9])))
        off = draw(st.one_of(st.just(0.0), st.floats(-150, 30), st.sampled_from([-WITHIN, 5.0])))
        out.append((op, dt, off, draw(values)))
    return out


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return type(a) is type(b) and a == b


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    """Chunked forms from a handful of entries, so that short sequences exercise them."""
    import actors.compiled.values as v
    import actors.compiled.windows as w

    monkeypatch.setattr(chunked, "CHUNK", 2)
    for module in (w, v, dw):
        monkeypatch.setattr(module, "BIG", 6, raising=False)
        monkeypatch.setattr(module, "SMALL", 3, raising=False)
    monkeypatch.setattr(dw, "INDEX_AT", 5)
    monkeypatch.setattr(dw.DistinctWin, "_INDEX_AT", 4)


class _Distinct:
    """The small distinct form (two slots, dw_* functions) behind the ValueWin interface."""

    def __init__(self, within):
        self.t = self.k = None
        self.within = within

    def fold(self, ts, key, now):
        self.t, self.k = dw.dw_fold(self.t, self.k, ts, key, self.within, now)

    def advance(self, now):
        self.t, self.k = dw.dw_prune(self.t, self.k, self.within, now)

    def value(self, now):
        return dw.dw_count(self.t, self.k, self.within, now)

    def next_change(self, now):
        return dw.dw_next(self.t, self.within, now)

    def entries(self):
        return dw.dw_entries(self.t, self.k)

    def load(self, times, keys, now):
        self.t, self.k = dw.dw_from(times, keys, self.within, now)


def _window(kind):
    return _Distinct(WITHIN) if kind == "distinct" else new_value_win(kind, WITHIN)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(TIME_KINDS), seq=ops())
def test_time_windows_answer_as_the_reference(kind, seq):
    ref = make_kind(kind, WITHIN)
    read = {"count": tw_count, "first_time": tw_first, "last_time": tw_last}[kind]
    a = b = None
    now = 1000.0
    for op, dt, off, _ in seq:
        now += dt
        if op == "fold":
            a = ref.fold(a, now + off, None, now)
            b = tw_fold(b, now + off, WITHIN, now)
        elif op == "value":
            assert _same(read(b, WITHIN, now), ref.value(a, now))
        elif op == "next":
            assert tw_next(b, WITHIN, now) == ref.next_change(a, now)
        else:
            a = ref.prune(a, now)
            b = tw_prune(b, WITHIN, now)
    live_a = [t for t in tw_times(a if not isinstance(a, array) else a) if t + WITHIN > now]
    assert [t for t in tw_times(b) if t + WITHIN > now] == live_a


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(VALUE_KINDS), seq=ops())
def test_value_windows_answer_as_the_reference(kind, seq):
    ref = make_kind(kind, WITHIN)
    ok = accepts(kind)
    a = None
    win = _window(kind)
    now = 1000.0
    for op, dt, off, v in seq:
        now += dt
        if op == "fold":
            ts = now + off
            a = ref.fold(a, ts, v, now)
            if ts + WITHIN <= now or not ok(v):
                win.advance(now)
            else:
                win.fold(ts, keyed(kind, v), now)
        elif op == "value":
            assert _same(win.value(now), ref.value(a, now)), (kind, now)
        elif op == "next":
            assert win.next_change(now) == ref.next_change(a, now)
        else:
            a = ref.prune(a, now)
            win.advance(now)
    times, vals = win.entries()
    ref_times, ref_vals = a if a is not None else (array("d"), [])
    mine = [(t, v) for t, v in zip(times, vals, strict=True) if t + WITHIN > now]
    theirs = [(t, v) for t, v in zip(ref_times, ref_vals, strict=True) if t + WITHIN > now]
    assert len(mine) == len(theirs) and all(
        x[0] == y[0] and _same(x[1], y[1]) for x, y in zip(mine, theirs, strict=True)
    )


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(VALUE_KINDS), seq=ops(), cut=st.integers(0, 60))
def test_a_value_window_loaded_from_its_entries_goes_on_as_the_original(kind, seq, cut):
    ok = accepts(kind)
    win = _window(kind)
    now = 1000.0

    def step(w, op, dt_now, off, v):
        if op == "fold":
            ts = dt_now + off
            if ts + WITHIN <= dt_now or not ok(v):
                w.advance(dt_now)
            else:
                w.fold(ts, keyed(kind, v), dt_now)
        elif op == "value":
            return w.value(dt_now)
        elif op == "next":
            return w.next_change(dt_now)
        else:
            w.advance(dt_now)
        return None

    times = []
    for op, dt, off, v in seq[:cut]:
        now += dt
        times.append(now)
        step(win, op, now, off, v)
    clone = _window(kind)
    clone.load(*win.entries(), now)
    for op, dt, off, v in seq[cut:]:
        now += dt
        x, y = step(win, op, now, off, v), step(clone, op, now, off, v)
        assert _same(x, y) or x == y


@st.composite
def distinct_ops(draw):
    """Folds of a dozen keys, many late, so that occurrences replace each other in every way."""
    out = []
    for _ in range(draw(st.integers(1, 80))):
        op = draw(st.sampled_from(["fold"] * 6 + ["value", "next", "prune"]))
        dt = draw(st.one_of(st.just(0.0), st.floats(0, 20)))
        off = draw(st.one_of(st.just(0.0), st.floats(-90, 10), st.sampled_from([-1.0, 3.0])))
        out.append((op, dt, off, draw(st.sampled_from(list("abcdefghijkl")))))
    return out


@settings(max_examples=200, deadline=None)
@given(seq=distinct_ops())
def test_distinct_windows_replace_occurrences_as_the_reference(seq):
    test_value_windows_answer_as_the_reference.hypothesis.inner_test(kind="distinct", seq=seq)
