"""The windowed aggregate kinds: an event counts at ``now`` iff ``ts <= now < ts + within``.

Time-only kinds (count, first_time, last_time) keep the event times of the window sorted:
None | float (one event: 24 bytes instead of an 88-byte array) | array('d').
Value kinds keep None | (array('d') of times, list of values), sorted by time, ties in seq
order (bisect_right inserts after equal times, and folds come in seq order).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Callable
from typing import Any, TypeAlias

from actors.aggregates.kind import (
    AggKind,
    distinct_key,
    extreme,
    int_in,
    int_out,
    is_number,
    pack_arr,
    shared,
    unpack_arr,
    window_sum,
)

__all__ = ["TimeWindow", "ValueWindow"]

# The per-user states described above (strings: array is not subscriptable at run time).
# Where mypy cannot follow the code as written for speed (``type(state) is float`` does not
# narrow the other branch), a method takes or returns Any rather than pay for a cast or an
# isinstance per event.
_TimeState: TypeAlias = "float | array[float] | None"
_ValueState: TypeAlias = "tuple[array[float], list[Any]] | None"


def _lo(ts: array[float], within: float, now: float) -> int:
    """Index of the first entry not yet expired at now (ts + within > now)."""
    if not ts or ts[0] + within > now:
        return 0
    return bisect_right(ts, now, key=lambda t: t + within)


def _insert(ts: array[float], t: float) -> int:
    """Insert t after equal times; return its index."""
    if not ts or t >= ts[-1]:
        ts.append(t)
        return len(ts) - 1
    i = bisect_right(ts, t)
    ts.insert(i, t)
    return i


def _time_next(times: array[float], within: float, now: float) -> float | None:
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


class TimeWindow(AggKind):
    """count / first_time / last_time over a window: state None | float | array('d')."""

    __slots__ = ()
    within: float  # never None for a window

    def fold(self, state: Any, ts: float, value: Any, now: float) -> Any:
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

    def prune(self, state: Any, now: float) -> Any:
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

    def value(self, state: Any, now: float) -> Any:
        mode = self.kind
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

    def next_change(self, state: Any, now: float) -> Any:
        if state is None:
            return None
        within = self.within
        if type(state) is float:
            if state > now:
                return state
            end = state + within
            return end if end > now else None
        return _time_next(state, within, now)

    def to_msgpack(self, state: Any) -> Any:
        if state is None or type(state) is float:
            return state
        return pack_arr(state)

    def from_msgpack(self, obj: Any) -> _TimeState:
        if obj is None or type(obj) is float:
            return obj
        a = unpack_arr(obj)
        return a if len(a) > 1 else (a[0] if a else None)


def _dedupe(times: array[float], values: list[Any], now: float) -> None:
    """Drop distinct-window entries that can never matter: of two occurrences of a value at
    ts1 <= ts2 <= now, the older one is live only while the newer one is. Keeps the window at
    most one entry per value (plus future ones), whatever the event rate."""
    hi = bisect_right(times, now)
    seen: set[Any] = set()
    drop: list[int] = []
    for i in range(hi - 1, -1, -1):
        v = values[i]
        if v in seen:
            drop.append(i)
        else:
            seen.add(v)
    for i in drop:  # descending, so indexes stay valid
        del times[i]
        del values[i]


class ValueWindow(AggKind):
    """Value kinds over a window: state None | (array('d') times, list values)."""

    __slots__ = ("accept",)
    within: float  # never None for a window
    accept: Callable[[Any], bool]  # does an ``of`` value count at all

    def __init__(self, kind: str, within: float) -> None:
        super().__init__(kind, within)
        numeric = kind in ("sum", "avg", "min", "max")
        self.accept = is_number if numeric else (lambda v: v is not None)

    def fold(self, state: _ValueState, ts: float, value: Any, now: float) -> _ValueState:
        state = self.prune(state, now)
        if ts + self.within <= now or not self.accept(value):
            return state
        if self.kind == "distinct":
            value = distinct_key(value)
        if state is None:
            return (array("d", (ts,)), [value])
        times, values = state
        values.insert(_insert(times, ts), value)
        if self.kind == "distinct":
            _dedupe(times, values, now)
        return state

    def prune(self, state: _ValueState, now: float) -> _ValueState:
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

    def value(self, state: _ValueState, now: float) -> Any:
        mode = self.kind
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
            return window_sum(live)
        if mode == "avg":
            return math.fsum(live) / len(live)
        return extreme(live, mode == "min")

    def next_change(self, state: _ValueState, now: float) -> float | None:
        return None if state is None else _time_next(state[0], self.within, now)

    def to_msgpack(self, state: _ValueState) -> Any:
        if state is None:
            return None
        values = state[1]
        if self.kind == "sum":
            values = [int_out(v) if type(v) is int else v for v in values]
        return [pack_arr(state[0]), list(values)]

    def from_msgpack(self, obj: Any) -> _ValueState:
        if obj is None:
            return None
        values = obj[1]
        if self.kind == "sum":
            values = [int_in(v) for v in values]
        elif self.kind == "distinct":
            values = [shared(v) for v in values]
        return (unpack_arr(obj[0]), values)
