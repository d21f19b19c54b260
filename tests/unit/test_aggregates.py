"""Aggregate kinds (SPEC section 4): values, exact window edges, order independence, snapshots."""

from __future__ import annotations

import math
import sys
from array import array

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.aggregates import distinct_key, make_kind
from actors.aggregates.kind import pack_arr, unpack_arr

DAY = 86400.0
KINDS = ("count", "sum", "min", "max", "avg", "first", "last", "first_time", "last_time", "distinct")


def fold_all(kind, events, now, within=None):
    """events: (ts, value) in log order, each folded at engine time ``now``."""
    k = make_kind(kind, within)
    state = None
    for ts, value in events:
        state = k.fold(state, float(ts), value, now)
    return k, state


def roundtrip(k, state):
    return k.from_msgpack(msgpack.unpackb(msgpack.packb(k.to_msgpack(state)), raw=False))


EVENTS = [(10, 5), (20, 2.5), (30, "x"), (40, None), (50, 7), (60, True)]


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("count", 6),
        ("sum", 14.5),
        ("min", 2.5),
        ("max", 7),
        ("avg", 14.5 / 3),
        ("first", 5),
        ("last", True),
        ("first_time", 10.0),
        ("last_time", 60.0),
        ("distinct", 5),
    ],
)
def test_lifetime_values(kind, expected):
    k, state = fold_all(kind, EVENTS, now=100)
    assert k.value(state, 100) == expected
    assert k.next_change(state, 100) is None
    assert k.value(roundtrip(k, state), 100) == expected


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("count", 4),
        ("sum", 7),
        ("min", 7),
        ("max", 7),
        ("avg", 7.0),
        ("first", "x"),
        ("last", True),
        ("first_time", 30.0),
        ("last_time", 60.0),
        ("distinct", 3),
    ],
)
def test_windowed_values(kind, expected):
    # at now=75 with a 50 s window the live events are ts in (25, 75]
    k, state = fold_all(kind, EVENTS, now=60, within=50)
    assert k.value(state, 75) == expected
    assert k.value(roundtrip(k, state), 75) == expected


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("within", [None, 60.0])
def test_empty_is_null_except_count_distinct_sum(kind, within):
    k = make_kind(kind, within)
    expected = 0 if kind in ("count", "distinct", "sum") else None
    assert k.value(None, 0.0) == expected
    assert k.next_change(None, 0.0) is None
    assert roundtrip(k, None) is None


@pytest.mark.parametrize("kind", KINDS)
def test_window_that_emptied_is_null_except_count_distinct_sum(kind):
    k, state = fold_all(kind, [(0, 3)], now=0, within=10)
    expected = 0 if kind in ("count", "distinct", "sum") else None
    assert k.value(state, 10.0) == expected
    assert k.prune(state, 10.0) is None


def test_event_exactly_within_old_does_not_count():
    k, state = fold_all("count", [(100, None)], now=100, within=7 * DAY)
    assert k.value(state, 100 + 7 * DAY - 0.001) == 1
    assert k.value(state, 100 + 7 * DAY) == 0
    assert k.next_change(state, 100) == 100 + 7 * DAY


def test_expiry_instant_is_exact_with_inexact_floats():
    # 0.1 + 0.2 is not 0.3: the reported deadline must still be the first instant it is gone
    k, state = fold_all("count", [(0.1, None)], now=0.1, within=0.2)
    t = k.next_change(state, 0.1)
    assert t == 0.1 + 0.2
    assert k.value(state, t) == 0
    assert k.value(state, math.nextafter(t, 0)) == 1


def test_future_event_counts_from_its_time():
    k, state = fold_all("count", [(50, None)], now=10, within=100)
    assert k.value(state, 10) == 0
    assert k.next_change(state, 10) == 50
    assert k.value(state, 50) == 1
    assert k.next_change(state, 50) == 150


def test_future_event_in_value_window():
    k, state = fold_all("sum", [(5, 1), (50, 10)], now=10, within=100)
    assert k.value(state, 10) == 1
    assert k.next_change(state, 10) == 50
    assert k.value(state, 50) == 11


def test_late_event_older_than_window_never_counts():
    k, state = fold_all("count", [(1000, None), (100, None)], now=1000, within=500)
    assert k.value(state, 1000) == 1


def test_late_event_counts_for_a_lifetime_aggregate():
    k2, state2 = fold_all("count", [(1000, None), (100, None)], now=1000)
    assert k2.value(state2, 1000) == 2


def test_out_of_order_event_inside_window_counts_and_expires_in_ts_order():
    k, state = fold_all("count", [(100, None), (90, None), (95, None)], now=100, within=50)
    assert k.value(state, 100) == 3
    assert k.next_change(state, 100) == 140
    assert k.value(state, 140) == 2
    assert k.next_change(state, 140) == 145
    assert k.value(state, 145) == 1


def test_next_change_picks_future_before_expiry():
    k, state = fold_all("count", [(0, None), (30, None)], now=10, within=100)
    assert k.next_change(state, 10) == 30
    assert k.next_change(state, 30) == 100


@pytest.mark.parametrize("within", [None, 1000.0])
def test_first_last_order_by_ts_then_seq(within):
    events = [(20, "b"), (10, "a"), (20, "c"), (10, "d")]
    k_first, s_first = fold_all("first", events, now=20, within=within)
    k_last, s_last = fold_all("last", events, now=20, within=within)
    assert k_first.value(s_first, 20) == "a"  # smallest ts, earliest seq among ties
    assert k_last.value(s_last, 20) == "c"  # largest ts, latest seq among ties
    k_t, s_t = fold_all("last_time", events, now=20, within=within)
    assert k_t.value(s_t, 20) == 20.0


def test_sum_ignores_non_numbers():
    k, state = fold_all("sum", [(1, True), (2, "3"), (3, None), (4, float("nan")), (5, [1]), (6, 2)], now=9)
    assert k.value(state, 9) == 2


def test_sum_of_ints_is_an_int():
    k, state = fold_all("sum", [(1, 2), (2, 3)], now=9)
    assert k.value(state, 9) == 5 and type(k.value(state, 9)) is int


def test_sum_of_floats_is_exact():
    k, state = fold_all("sum", [(i, 0.1) for i in range(10)], now=99)
    assert k.value(state, 99) == math.fsum([0.1] * 10) == 1.0


def test_avg_and_min_max_ignore_non_numbers():
    events = [(1, "a"), (2, 4), (3, False), (4, 1)]
    assert fold_all("avg", events, now=9)[0].value(fold_all("avg", events, now=9)[1], 9) == 2.5
    k, s = fold_all("min", events, now=9)
    assert k.value(s, 9) == 1
    k, s = fold_all("max", events, now=9)
    assert k.value(s, 9) == 4


def test_min_tie_between_int_and_float_is_order_independent():
    a = fold_all("min", [(1, 1), (2, 1.0)], now=9)
    b = fold_all("min", [(1, 1.0), (2, 1)], now=9)
    assert type(a[0].value(a[1], 9)) is type(b[0].value(b[1], 9))


def test_distinct_canonical_values():
    events = [
        (1, [1, 2]),
        (2, [1, 2]),
        (3, {"a": 1, "b": 2}),
        (4, {"b": 2, "a": 1}),
        (5, 1),
        (6, 1.0),
        (7, True),
        (8, "1"),
        (9, None),
    ]
    k, state = fold_all("distinct", events, now=10)
    assert k.value(state, 10) == 5  # [1,2], {a,b}, 1, True, "1"
    k, state = fold_all("distinct", events, now=10, within=100)
    assert k.value(state, 10) == 5
    assert k.value(roundtrip(k, state), 10) == 5


def test_distinct_grows_past_tuple_size():
    k, state = fold_all("distinct", [(i, f"v{i % 20}") for i in range(100)], now=100)
    assert k.value(state, 100) == 20
    assert k.value(roundtrip(k, state), 100) == 20


def test_distinct_key_separates_types():
    assert distinct_key(1) == distinct_key(1.0)
    assert distinct_key(True) != distinct_key(1)
    assert distinct_key(b"a") != distinct_key("a")
    assert distinct_key([1, {"a": 2.0}]) == distinct_key([1.0, {"a": 2}])


def test_huge_int_sum_survives_snapshot():
    k, state = fold_all("sum", [(1, 2**63), (2, 2**63), (3, 2**63)], now=9)
    assert k.value(roundtrip(k, state), 9) == 3 * 2**63


def test_prune_keeps_only_live_and_future():
    k, state = fold_all("count", [(0, None), (10, None), (20, None), (500, None)], now=20, within=100)
    state = k.prune(state, 115)
    assert k.value(state, 115) == 1
    assert k.to_msgpack(state) is not None
    state = k.prune(state, 600)
    assert state is None


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown aggregate kind"):
        make_kind("median", None)


def test_a_window_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="positive"):
        make_kind("count", 0)


# ---- order independence: the value depends on the multiset of events, not arrival order

_values = st.one_of(
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(["a", "b", "c"]),
    st.none(),
)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    within=st.sampled_from([None, 30.0]),
    events=st.lists(st.tuples(st.integers(0, 100), _values), max_size=12, unique_by=lambda e: e[0]),
    data=st.data(),
)
def test_value_does_not_depend_on_arrival_order(kind, within, events, data):
    shuffled = data.draw(st.permutations(events))
    now = 100.0
    k1, s1 = fold_all(kind, events, now=now, within=within)
    k2, s2 = fold_all(kind, shuffled, now=now, within=within)
    for t in (now, now + 5, now + 20, now + 31):
        v1, v2 = k1.value(s1, t), k2.value(s2, t)
        assert v1 == v2 and type(v1) is type(v2)
        assert k1.next_change(s1, t) == k2.next_change(s2, t)
    s3 = roundtrip(k1, s1)
    assert k1.value(s3, now) == k1.value(s1, now)


@given(st.lists(st.floats(allow_nan=False), max_size=200))
def test_window_times_restore_to_an_array_of_exactly_their_size(times):
    packed = array("d", times)
    restored = unpack_arr(pack_arr(packed))
    assert restored == packed
    assert sys.getsizeof(restored) == sys.getsizeof(array("d", [0.0]) * len(times))


def test_window_times_that_are_not_whole_doubles_are_refused():
    with pytest.raises(ValueError, match="12 bytes are not a whole number of doubles"):
        unpack_arr(b"\x00" * 12)
