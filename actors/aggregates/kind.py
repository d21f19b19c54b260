"""The aggregate-kind contract and the value rules every kind shares.

``AggKind`` is the interface each kind implements; the helpers are the semantics common to
lifetime and windowed kinds: which values are numbers, distinct keys, exact sums, min/max
ties, and the exact snapshot encoding of big ints and float arrays. The kinds themselves are in
``actors.aggregates.lifetime`` and ``actors.aggregates.window``; the full contract and
semantics in ``actors.aggregates``.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable
from typing import Any, TypeAlias, TypeGuard

import msgpack

__all__ = [
    "AggKind",
    "DistinctKey",
    "better",
    "distinct_key",
    "extreme",
    "grow",
    "int_in",
    "int_out",
    "is_number",
    "pack_arr",
    "SHARED_KEY_MAX",
    "SHARED_TRAIT_MAX",
    "shared",
    "unpack_arr",
    "window_sum",
]

_LITTLE = sys.byteorder == "little"
# The one place that decides which strings users share (``sys.intern``). Interning pays for a
# value many users hold and costs an interned-table slot for a value only one user holds, so
# the limit depends on what the strings are. Distinct keys (categories, products) repeat by
# design. Trait values repeat when short (plan, country, first names) and rarely when long
# (emails): interning trait values up to 64 characters took bench_core from 1,362 to 1,458
# bytes per user. Restored state uses the same limits, so it shares exactly the strings that
# state built event by event shares.
SHARED_KEY_MAX = 64
SHARED_TRAIT_MAX = 16

#: What ``distinct_key`` returns: hashable and msgpack-able. (``distinct_key`` itself says
#: Any: it tells the types apart by a type() kept in a local, which mypy does not follow.)
DistinctKey: TypeAlias = str | int | float | bytes


def is_number(v: Any) -> TypeGuard[int | float]:
    """True for the values sum/avg/min/max aggregate: int (not bool) and finite float."""
    t = type(v)
    return t is int or (t is float and math.isfinite(v))


def shared(v: Any, limit: int = SHARED_KEY_MAX) -> Any:
    """``v`` interned if it is a string of at most ``limit`` characters (so every user holding
    it shares one copy); anything else unchanged."""
    return sys.intern(v) if type(v) is str and len(v) <= limit else v


def distinct_key(v: Any) -> Any:
    """A ``DistinctKey`` such that equal values (per the rule language) map equal.

    str, int and float are their own key (so 1 and 1.0 are one value); everything else
    (bool, bytes, list, map) becomes ``b"\\x01" + msgpack`` of a canonical form (maps sorted by
    key), which cannot collide with a str/int/float key.
    """
    t = type(v)
    if t is str:
        return sys.intern(v) if len(v) <= SHARED_KEY_MAX else v  # shared(v), inlined: per event
    if t is int or t is float:
        return v
    return b"\x01" + msgpack.packb(_canonical(v), use_bin_type=True)


def _canonical(v: Any) -> Any:
    if isinstance(v, dict):
        items = [(msgpack.packb(_canonical(k), use_bin_type=True), _canonical(x)) for k, x in v.items()]
        items.sort(key=lambda kv: kv[0])
        return {"\x00map": [[k, x] for k, x in items]}
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if type(v) is float and v.is_integer() and abs(v) < 2**63:
        return int(v)  # [1.0] == [1] in the rule language
    return v


def pack_arr(a: array[float]) -> bytes:
    """An ``array('d')`` as little-endian bytes (the snapshot encoding of window times)."""
    if not _LITTLE:  # pragma: no cover - snapshots are little-endian everywhere
        a = array("d", a)
        a.byteswap()
    return a.tobytes()


_ZERO = array("d", (0.0,))


def unpack_arr(b: bytes) -> array[float]:
    """Inverse of ``pack_arr``: an array of exactly that many items (``frombytes`` would
    over-allocate by a sixteenth, and a restored shard must not be bigger than a live one).
    Raises ValueError if ``b`` is not a whole number of doubles."""
    if len(b) % 8:
        raise ValueError(f"{len(b)} bytes are not a whole number of doubles")
    a = _ZERO * (len(b) // 8)
    if b:
        with memoryview(a) as view, view.cast("B") as raw:
            raw[:] = b
    if not _LITTLE:  # pragma: no cover
        a.byteswap()
    return a


def better(new: float, cur: float, lower: bool) -> bool:
    """Is ``new`` a strictly better min (lower=True) / max than ``cur``? 1 == 1.0: float wins."""
    if new == cur:
        return type(new) is float and type(cur) is not float
    return new < cur if lower else new > cur


def extreme(values: Iterable[float], lower: bool) -> float | None:
    """The min (lower=True) or max of ``values`` with ``better``'s tie rule; None if empty."""
    best: float | None = None
    for v in values:
        if best is None or better(v, best, lower):
            best = v
    return best


def grow(partials: tuple[float, ...], x: float) -> tuple[float, ...]:
    """Shewchuk: add x to non-overlapping partials exactly (the math.fsum algorithm)."""
    out: list[float] = []
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            out.append(lo)
        x = hi
    out.append(x)
    return tuple(out)


def int_out(n: int) -> int | str:
    """An exact int for a snapshot: itself, or its decimal string outside msgpack's range."""
    # msgpack carries 64-bit ints only; an exact sum may outgrow that.
    return n if -(1 << 63) <= n < (1 << 64) else str(n)


def int_in(v: int | str) -> int:
    """Inverse of ``int_out``."""
    return int(v) if isinstance(v, str) else v


def window_sum(values: list[float]) -> float:
    """The exact sum of ``values``: an int for ints only, else ``math.fsum`` (rounded once)."""
    for v in values:
        if type(v) is float:
            return math.fsum(values)
    return sum(values)


class AggKind:
    """Logic of one aggregate kind; stateless and shared by every user (see ``actors.aggregates``)."""

    __slots__ = ("kind", "within")

    def __init__(self, kind: str, within: float | None) -> None:
        self.kind = kind
        self.within = within

    @property
    def windowed(self) -> bool:
        """True for sliding-window kinds, whose value changes with time alone."""
        return self.within is not None

    def fold(self, state: Any, ts: float, value: Any, now: float) -> Any:
        """Add one matching event (log order); return the new state."""
        raise NotImplementedError

    def value(self, state: Any, now: float) -> Any:
        """The aggregate's value at ``now``."""
        raise NotImplementedError

    def next_change(self, state: Any, now: float) -> float | None:
        """Smallest t > now at which the value may change with time alone; None if never."""
        return None

    def prune(self, state: Any, now: float) -> Any:
        """Drop what can never count again at or after ``now``; return the new state."""
        return state

    def to_msgpack(self, state: Any) -> Any:
        """State -> a msgpack-able value (exact)."""
        return state

    def from_msgpack(self, obj: Any) -> Any:
        """Inverse of ``to_msgpack``."""
        return obj

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r}, within={self.within!r})"
