"""Per-user aggregates (SPEC section 4): the logic, shared; the state, per user and tiny.

Every aggregate of the config gets one stateless *kind* object (``make_kind(kind, within)``)
shared by all users. A user only keeps one small plain value per aggregate (``None`` when
empty, an int, a float, a short tuple, an ``array('d')``...) and hands it to the kind:

- ``fold(state, ts, value, now) -> state``: add one matching event (event time ``ts``, the
  aggregated ``value`` of its ``of`` expression or None) at engine time ``now``. Events must be
  folded in log order (increasing seq) — ties on ``ts`` are then broken by seq for free, so no
  seq is stored. ``fold`` may mutate ``state`` in place; always keep the returned value.
- ``value(state, now)``: the aggregate at ``now`` (``now`` never before the last fold/prune).
- ``next_change(state, now)``: the smallest time ``t > now`` at which the value may change with
  time alone, or None (lifetime kinds, empty windows). Conservative for value kinds (an
  expiring event may leave e.g. ``max`` unchanged).
- ``prune(state, now)``: drop window entries that can never count again.
- ``to_msgpack(state)`` / ``from_msgpack(obj)``: compact, exact snapshot round-trip.

Semantics shared by all kinds:

- Windows are exact: an event counts at ``now`` iff ``ts <= now < ts + within`` — the same as
  SPEC's ``now - within < ts <= now``, but written so that the expiry instant reported by
  ``next_change`` (``ts + within``, one float addition) is exactly the first instant at which
  the event no longer counts. An event from the future counts from ``now == ts``. A late event
  already out of the window is never stored.
- Lifetime kinds count every matching event at once, whatever its ``ts`` (a future ``ts`` is
  not held back: that would need the event stored, and lifetime state must stay O(1)).
- Over no events the value is None, except count, distinct and sum (0).
- Value kinds ignore a None ``of`` value. sum/avg/min/max consider only numbers: int (not
  bool) and finite float; anything else is ignored. distinct counts distinct values, with
  lists/maps/bools/bytes compared canonically (via msgpack), and 1 == 1.0 as in the rule
  language.
- Results do not depend on the order in which events arrived or expired (replay determinism):
  sums are exact (ints exactly; floats as Shewchuk partials, rounded once with ``math.fsum``),
  and min/max break ``1 == 1.0`` ties by type.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right

from actors.aggregates.kind import (
    AggKind,
    _better,
    _extreme,
    _grow,
    _int_in,
    _int_out,
    _pack_arr,
    _unpack_arr,
    _window_sum,
    distinct_key,
    is_number,
    shared,
)

__all__ = ["AggKind", "make_kind", "is_number", "distinct_key"]

# Tuples grow to sets past this many distinct values: below it a tuple is 4x smaller.
_DISTINCT_TUPLE_MAX = 8


# ------------------------------------------------------------------ lifetime kinds


class _Count(AggKind):
    __slots__ = ()

    def fold(self, state, ts, value, now):
        return 1 if state is None else state + 1

    def value(self, state, now):
        return state or 0


class _Sum(AggKind):
    """State: None | int (ints only) | float (one float, no ints: the common price case) |
    (int_total, *float_partials)."""

    __slots__ = ()
    takes_value = True

    def fold(self, state, ts, value, now):
        t = type(value)
        st = type(state)
        if t is int:
            if state is None or st is int:
                return value if state is None else state + value
            if st is float:
                return (value, state)
            return (state[0] + value,) + state[1:]
        if t is float and math.isfinite(value):
            if state is None:
                return value
            if st is int:
                return (state, value)
            if st is float:
                partials = _grow((state,), value)
                return partials[0] if len(partials) == 1 else (0, *partials)
            return (state[0],) + _grow(state[1:], value)
        return state

    def value(self, state, now):
        if state is None:
            return 0
        if type(state) is tuple:
            return math.fsum(state)
        return state

    def to_msgpack(self, state):
        if type(state) is tuple:
            return [_int_out(state[0]), *state[1:]]
        return _int_out(state) if type(state) is int else state

    def from_msgpack(self, obj):
        if isinstance(obj, list):
            return (_int_in(obj[0]), *obj[1:])
        return _int_in(obj) if isinstance(obj, str) else obj


class _Avg(AggKind):
    """State: None | (n, int_total, *float_partials)."""

    __slots__ = ()
    takes_value = True

    def fold(self, state, ts, value, now):
        t = type(value)
        if t is int:
            if state is None:
                return (1, value)
            return (state[0] + 1, state[1] + value) + state[2:]
        if t is float and math.isfinite(value):
            if state is None:
                return (1, 0, value)
            return (state[0] + 1, state[1]) + _grow(state[2:], value)
        return state

    def value(self, state, now):
        if state is None:
            return None
        total = math.fsum(state[1:]) if len(state) > 2 else state[1]
        return total / state[0]

    def to_msgpack(self, state):
        return None if state is None else [state[0], _int_out(state[1]), *state[2:]]

    def from_msgpack(self, obj):
        return None if obj is None else (obj[0], _int_in(obj[1]), *obj[2:])


class _Extreme(AggKind):
    __slots__ = ("lower",)
    takes_value = True

    def __init__(self, kind, within):
        super().__init__(kind, within)
        self.lower = kind == "min"

    def fold(self, state, ts, value, now):
        if is_number(value) and (state is None or _better(value, state, self.lower)):
            return value
        return state

    def value(self, state, now):
        return state


class _FirstLast(AggKind):
    """State: None | (ts, value). Ties on ts: first keeps the earlier seq, last takes the later."""

    __slots__ = ("last",)
    takes_value = True

    def __init__(self, kind, within):
        super().__init__(kind, within)
        self.last = kind == "last"

    def fold(self, state, ts, value, now):
        if value is None:
            return state
        if state is None or (ts >= state[0] if self.last else ts < state[0]):
            return (ts, value)
        return state

    def value(self, state, now):
        return None if state is None else state[1]

    def to_msgpack(self, state):
        return None if state is None else list(state)

    def from_msgpack(self, obj):
        return None if obj is None else tuple(obj)


class _Time(AggKind):
    """first_time / last_time: state None | float."""

    __slots__ = ("last",)

    def __init__(self, kind, within):
        super().__init__(kind, within)
        self.last = kind == "last_time"

    def fold(self, state, ts, value, now):
        if state is None or (ts > state if self.last else ts < state):
            return ts
        return state

    def value(self, state, now):
        return state


class _Distinct(AggKind):
    """State: None | tuple of keys (small) | set of keys."""

    __slots__ = ()
    takes_value = True

    def fold(self, state, ts, value, now):
        if value is None:
            return state
        key = distinct_key(value)
        if state is None:
            return (key,)
        if type(state) is tuple:
            if key in state:
                return state
            if len(state) < _DISTINCT_TUPLE_MAX:
                return state + (key,)
            state = set(state)
        state.add(key)
        return state

    def value(self, state, now):
        return 0 if state is None else len(state)

    def to_msgpack(self, state):
        return None if state is None else list(state)

    def from_msgpack(self, obj):
        if obj is None:
            return None
        keys = [shared(k) for k in obj]
        return tuple(keys) if len(keys) <= _DISTINCT_TUPLE_MAX else set(keys)


# ------------------------------------------------------------------ windowed kinds
#
# Time-only kinds (count, first_time, last_time) keep the event times of the window sorted:
# None | float (one event: 24 bytes instead of an 88-byte array) | array('d').
# Value kinds keep None | (array('d') of times, list of values), sorted by time, ties in seq
# order (bisect_right inserts after equal times, and folds come in seq order).


def _lo(ts: array, within: float, now: float) -> int:
    """Index of the first entry not yet expired at now (ts + within > now)."""
    if not ts or ts[0] + within > now:
        return 0
    return bisect_right(ts, now, key=lambda t: t + within)


def _insert(ts: array, t: float) -> int:
    """Insert t after equal times; return its index."""
    if not ts or t >= ts[-1]:
        ts.append(t)
        return len(ts) - 1
    i = bisect_right(ts, t)
    ts.insert(i, t)
    return i


def _time_next(times: array, within: float, now: float) -> float | None:
    """Next instant after now at which the set of live entries changes: the oldest live
    entry expires, or the earliest future entry starts to count."""
    lo = _lo(times, within, now)
    if lo == len(times):
        return None
    end = times[lo] + within
    hi = bisect_right(times, now, lo)
    if hi < len(times) and times[hi] < end:
        return times[hi]
    return end


class _TimeWindow(AggKind):
    """count / first_time / last_time over a window: state None | float | array('d')."""

    __slots__ = ("mode",)

    def __init__(self, kind, within):
        super().__init__(kind, within)
        self.mode = kind

    def fold(self, state, ts, value, now):
        within = self.within
        if ts + within <= now:
            return self.prune(state, now)
        state = self.prune(state, now)
        if state is None:
            return ts
        if type(state) is float:
            return array("d", (state, ts) if ts >= state else (ts, state))
        _insert(state, ts)
        return state

    def prune(self, state, now):
        if state is None:
            return None
        if type(state) is float:
            return None if state + self.within <= now else state
        lo = _lo(state, self.within, now)
        if lo:
            del state[:lo]
        n = len(state)
        if n > 1:
            return state
        return state[0] if n else None

    def value(self, state, now):
        mode = self.mode
        if state is None:
            return 0 if mode == "count" else None
        within = self.within
        if type(state) is float:
            live = state <= now < state + within
            if mode == "count":
                return 1 if live else 0
            return state if live else None
        lo = _lo(state, within, now)
        hi = bisect_right(state, now, lo)
        if mode == "count":
            return hi - lo
        if hi <= lo:
            return None
        return state[hi - 1] if mode == "last_time" else state[lo]

    def next_change(self, state, now):
        if state is None:
            return None
        within = self.within
        if type(state) is float:
            if state > now:
                return state
            end = state + within
            return end if end > now else None
        return _time_next(state, within, now)

    def to_msgpack(self, state):
        if state is None or type(state) is float:
            return state
        return _pack_arr(state)

    def from_msgpack(self, obj):
        if obj is None or type(obj) is float:
            return obj
        a = _unpack_arr(obj)
        return a if len(a) > 1 else (a[0] if a else None)


def _dedupe(times: array, values: list, now: float) -> None:
    """Drop distinct-window entries that can never matter: of two occurrences of a value at
    ts1 <= ts2 <= now, the older one is live only while the newer one is. Keeps the window at
    most one entry per value (plus future ones), whatever the event rate."""
    hi = bisect_right(times, now)
    seen = set()
    drop = []
    for i in range(hi - 1, -1, -1):
        v = values[i]
        if v in seen:
            drop.append(i)
        else:
            seen.add(v)
    for i in drop:  # descending, so indexes stay valid
        del times[i]
        del values[i]


class _ValueWindow(AggKind):
    """Value kinds over a window: state None | (array('d') times, list values)."""

    __slots__ = ("mode", "accept")

    def __init__(self, kind, within):
        super().__init__(kind, within)
        self.mode = kind
        numeric = kind in ("sum", "avg", "min", "max")
        self.accept = is_number if numeric else (lambda v: v is not None)

    def fold(self, state, ts, value, now):
        state = self.prune(state, now)
        if ts + self.within <= now or not self.accept(value):
            return state
        if self.mode == "distinct":
            value = distinct_key(value)
        if state is None:
            return (array("d", (ts,)), [value])
        times, values = state
        values.insert(_insert(times, ts), value)
        if self.mode == "distinct":
            _dedupe(times, values, now)
        return state

    def prune(self, state, now):
        if state is None:
            return None
        times, values = state
        lo = _lo(times, self.within, now)
        if lo:
            if lo == len(times):
                return None
            del times[:lo]
            del values[:lo]
        return state

    def value(self, state, now):
        mode = self.mode
        if state is None:
            return 0 if mode in ("sum", "distinct") else None
        times, values = state
        lo = _lo(times, self.within, now)
        hi = bisect_right(times, now, lo)
        if hi <= lo:
            return 0 if mode in ("sum", "distinct") else None
        if mode == "first":
            return values[lo]
        if mode == "last":
            return values[hi - 1]
        live = values[lo:hi]
        if mode == "distinct":
            return len(set(live))
        if mode == "sum":
            return _window_sum(live)
        if mode == "avg":
            return math.fsum(live) / len(live)
        return _extreme(live, mode == "min")

    def next_change(self, state, now):
        return None if state is None else _time_next(state[0], self.within, now)

    def to_msgpack(self, state):
        if state is None:
            return None
        values = state[1]
        if self.mode == "sum":
            values = [_int_out(v) if type(v) is int else v for v in values]
        return [_pack_arr(state[0]), list(values)]

    def from_msgpack(self, obj):
        if obj is None:
            return None
        values = obj[1]
        if self.mode == "sum":
            values = [_int_in(v) for v in values]
        elif self.mode == "distinct":
            values = [shared(v) for v in values]
        return (_unpack_arr(obj[0]), values)


_LIFETIME = {
    "count": _Count,
    "sum": _Sum,
    "avg": _Avg,
    "min": _Extreme,
    "max": _Extreme,
    "first": _FirstLast,
    "last": _FirstLast,
    "first_time": _Time,
    "last_time": _Time,
    "distinct": _Distinct,
}
_TIME_ONLY = frozenset({"count", "first_time", "last_time"})


def make_kind(kind: str, within: float | None) -> AggKind:
    """The shared logic object for an aggregate ``kind`` (SPEC section 4), lifetime when
    ``within`` is None, else a sliding window of ``within`` seconds (> 0).

    Raises ValueError for an unknown kind or a non-positive window.
    """
    if kind not in _LIFETIME:
        raise ValueError(f"unknown aggregate kind {kind!r}; expected one of {', '.join(_LIFETIME)}")
    if within is None:
        return _LIFETIME[kind](kind, None)
    within = float(within)
    if not (within > 0 and math.isfinite(within)):
        raise ValueError(f"window must be a positive number of seconds, got {within!r}")
    if kind in _TIME_ONLY:
        return _TimeWindow(kind, within)
    return _ValueWindow(kind, within)
