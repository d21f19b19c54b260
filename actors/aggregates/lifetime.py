"""The lifetime aggregate kinds: every matching event counts at once, whatever its ``ts``.

Each kind keeps O(1) state per user (the contract is in ``actors.aggregates``); ``LIFETIME``
maps each kind name to its class.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

from actors.aggregates.kind import (
    AggKind,
    DistinctKey,
    better,
    distinct_key,
    grow,
    int_in,
    int_out,
    is_number,
    shared,
)

__all__ = ["LIFETIME"]

# Tuples grow to sets past this many distinct values: below it a tuple is 4x smaller.
_DISTINCT_TUPLE_MAX = 8

# The per-user states, as each class's docstring describes them. Where mypy cannot follow the
# code as written for speed (a type() kept in a local, tuple slices concatenated), a method
# takes or returns Any rather than pay for a cast or an isinstance per event.
_SumState: TypeAlias = "int | float | tuple[int, *tuple[float, ...]] | None"
_AvgState: TypeAlias = "tuple[int, int, *tuple[float, ...]] | None"
_DistinctState: TypeAlias = "tuple[DistinctKey, ...] | set[DistinctKey] | None"


class _Count(AggKind):
    __slots__ = ()

    def fold(self, state: int | None, ts: float, value: Any, now: float) -> int:
        return 1 if state is None else state + 1

    def value(self, state: int | None, now: float) -> int:
        return state or 0


class _Sum(AggKind):
    """State: None | int (ints only) | float (one float, no ints: the common price case) |
    (int_total, *float_partials)."""

    __slots__ = ()

    def fold(self, state: Any, ts: float, value: Any, now: float) -> Any:
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
                partials = grow((state,), value)
                return partials[0] if len(partials) == 1 else (0, *partials)
            return (state[0],) + grow(state[1:], value)
        return state

    def value(self, state: Any, now: float) -> Any:
        if state is None:
            return 0
        if type(state) is tuple:
            return math.fsum(state)
        return state

    def to_msgpack(self, state: _SumState) -> Any:
        if type(state) is tuple:
            return [int_out(state[0]), *state[1:]]
        return int_out(state) if type(state) is int else state

    def from_msgpack(self, obj: Any) -> _SumState:
        if isinstance(obj, list):
            return (int_in(obj[0]), *obj[1:])
        return int_in(obj) if isinstance(obj, str) else obj


class _Avg(AggKind):
    """State: None | (n, int_total, *float_partials)."""

    __slots__ = ()

    def fold(self, state: _AvgState, ts: float, value: Any, now: float) -> Any:
        t = type(value)
        if t is int:
            if state is None:
                return (1, value)
            return (state[0] + 1, state[1] + value) + state[2:]
        if t is float and math.isfinite(value):
            if state is None:
                return (1, 0, value)
            return (state[0] + 1, state[1]) + grow(state[2:], value)
        return state

    def value(self, state: _AvgState, now: float) -> float | None:
        if state is None:
            return None
        total = math.fsum(state[1:]) if len(state) > 2 else state[1]
        return total / state[0]

    def to_msgpack(self, state: _AvgState) -> Any:
        return None if state is None else [state[0], int_out(state[1]), *state[2:]]

    def from_msgpack(self, obj: Any) -> _AvgState:
        return None if obj is None else (obj[0], int_in(obj[1]), *obj[2:])


class _Extreme(AggKind):
    __slots__ = ("lower",)

    def __init__(self, kind: str, within: float | None) -> None:
        super().__init__(kind, within)
        self.lower = kind == "min"

    def fold(self, state: float | None, ts: float, value: Any, now: float) -> float | None:
        if is_number(value) and (state is None or better(value, state, self.lower)):
            return value
        return state

    def value(self, state: float | None, now: float) -> float | None:
        return state


class _FirstLast(AggKind):
    """State: None | (ts, value). Ties on ts: first keeps the earlier seq, last takes the later."""

    __slots__ = ("last",)

    def __init__(self, kind: str, within: float | None) -> None:
        super().__init__(kind, within)
        self.last = kind == "last"

    def fold(
        self, state: tuple[float, Any] | None, ts: float, value: Any, now: float
    ) -> tuple[float, Any] | None:
        if value is None:
            return state
        if state is None or (ts >= state[0] if self.last else ts < state[0]):
            return (ts, value)
        return state

    def value(self, state: tuple[float, Any] | None, now: float) -> Any:
        return None if state is None else state[1]

    def to_msgpack(self, state: tuple[float, Any] | None) -> Any:
        return None if state is None else list(state)

    def from_msgpack(self, obj: Any) -> tuple[float, Any] | None:
        return None if obj is None else tuple(obj)


class _Time(AggKind):
    """first_time / last_time: state None | float."""

    __slots__ = ("last",)

    def __init__(self, kind: str, within: float | None) -> None:
        super().__init__(kind, within)
        self.last = kind == "last_time"

    def fold(self, state: float | None, ts: float, value: Any, now: float) -> float:
        if state is None or (ts > state if self.last else ts < state):
            return ts
        return state

    def value(self, state: float | None, now: float) -> float | None:
        return state


class _Distinct(AggKind):
    """State: None | tuple of keys (small) | set of keys."""

    __slots__ = ()

    def fold(self, state: Any, ts: float, value: Any, now: float) -> Any:
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

    def value(self, state: _DistinctState, now: float) -> int:
        return 0 if state is None else len(state)

    def to_msgpack(self, state: _DistinctState) -> Any:
        return None if state is None else list(state)

    def from_msgpack(self, obj: Any) -> _DistinctState:
        if obj is None:
            return None
        keys = [shared(k) for k in obj]
        return tuple(keys) if len(keys) <= _DISTINCT_TUPLE_MAX else set(keys)


LIFETIME: dict[str, type[AggKind]] = {
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
