"""Compact, incremental windows for the compiled fold: the reference semantics, without the cost.

Same contract and results as ``actors.aggregates.window`` (the reference): an event counts at
``now`` iff ``ts <= now < ts + within``; ``next_change`` is the next instant at which the set
of live entries changes (the oldest live entry expires or the earliest future one starts);
distinct windows drop an older occurrence of a value when an accepted event is folded, exactly
when the reference's ``_dedupe`` does, so deadlines and snapshots mean the same. What differs
is the cost per event, which no longer grows with the window:

- time windows (count, first_time, last_time) are None | float | ``array('d')`` as in the
  reference (kept at their exact size: an array over-allocates as it grows, by up to seven
  slots, and ``del`` gives nothing back), growing into ``Chunks`` (``actors.compiled.sorted``)
  past ``BIG`` entries, so an out-of-order insert or an expiry moves at most a chunk;
- sum and avg keep an exact running sum of the live values (an int for ints, Shewchuk
  partials of every value as a float, updated by adding and removing values), so reading one
  is ``math.fsum`` of a handful of partials instead of the whole window;
- min and max keep a lazy heap of the started entries (expired ones drop off its top);
- first and last read the ends of the sorted entries;
- distinct keeps the last occurrence of each value in a dict once the window is large.

Reads of the value windows (``ValueWin.value``) first drop what expired and take in what
started by ``now``: that changes no answer, since ``now`` never goes back for a user and an
expired entry can never count again (see ``actors.compiled.engine`` for why the deadlines are
unaffected). Time windows are plain values handled by the ``tw_*`` functions.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from typing import Any

from actors.aggregates.window import _lo, _time_next  # the reference's own, shared
from actors.compiled.sorted import BIG, SMALL, Chunks

__all__ = [
    "count_deadline",
    "from_times",
    "tw_count",
    "tw_first",
    "tw_fold",
    "tw_last",
    "tw_next",
    "tw_prune",
    "tw_times",
]


# ---------------------------------------------------------------------- time windows
#
# State: None | float (one entry) | array('d') (sorted) | Chunks (sorted, large).


def tw_fold(st: Any, ts: float, within: float, now: float) -> Any:
    """Add an event at ``ts`` (the reference's ``TimeWindow.fold``); return the new state."""
    if ts + within <= now:
        return tw_prune(st, within, now)
    st = tw_prune(st, within, now)
    if st is None:
        return ts
    t = type(st)
    if t is float:
        return array("d", (st, ts) if ts >= st else (ts, st))
    if t is array:
        # a new array of the exact size: append and insert over-allocate, by up to 7 slots
        if ts >= st[-1]:
            st = st + array("d", (ts,))
        else:
            i = bisect_right(st, ts)
            st = st[:i] + array("d", (ts,)) + st[i:]
        if len(st) > BIG:
            return Chunks(st)
        return st
    st.insert(ts)
    return st


def tw_prune(st: Any, within: float, now: float) -> Any:
    """Drop the entries expired at ``now``; the new state (None when empty)."""
    if st is None:
        return None
    t = type(st)
    if t is float:
        return None if st + within <= now else st
    if t is array:
        lo = _lo(st, within, now)
        if lo:
            st = st[lo:]  # a new array: del keeps the old allocation
        n = len(st)
        if n > 1:
            return st
        return st[0] if n else None
    st.expire(within, now)
    if st.n < SMALL:
        return from_times(st.flat())
    return st


def from_times(a: array[float]) -> Any:
    """The time-window state holding the sorted times ``a``."""
    n = len(a)
    if n == 0:
        return None
    if n == 1:
        return a[0]
    return a if n <= BIG else Chunks(a)


def tw_count(st: Any, within: float, now: float) -> int:
    """Entries live at ``now``."""
    if st is None:
        return 0
    t = type(st)
    if t is float:
        return 1 if st <= now < st + within else 0
    if t is array:
        lo = _lo(st, within, now)
        return bisect_right(st, now, lo) - lo
    live: int = st.n - st.expired(within, now) - st.after(now)
    return live if live > 0 else 0


def _edge(st: Any, within: float, now: float, last: bool) -> float | None:
    """The earliest (or, with ``last``, the latest) entry live at ``now``, or None."""
    if st is None:
        return None
    t = type(st)
    if t is float:
        return st if st <= now < st + within else None
    if t is array:
        lo = _lo(st, within, now)
        hi = bisect_right(st, now, lo)
        if hi <= lo:
            return None
        edge: float = st[hi - 1] if last else st[lo]
        return edge
    lo, hi = st.expired(within, now), st.n - st.after(now)
    if hi <= lo:
        return None
    x: float = st.time(hi - 1 if last else lo)
    return x


def tw_first(st: Any, within: float, now: float) -> float | None:
    """The earliest live entry (``first_time``), or None."""
    return _edge(st, within, now, False)


def tw_last(st: Any, within: float, now: float) -> float | None:
    """The latest live entry (``last_time``), or None."""
    return _edge(st, within, now, True)


def tw_next(st: Any, within: float, now: float) -> float | None:
    """The next instant after ``now`` at which the live entries change, or None."""
    if st is None:
        return None
    t = type(st)
    if t is float:
        one: float = st
        if one > now:
            return one
        end = one + within
        return end if end > now else None
    if t is array:
        return _time_next(st, within, now)
    nc: float | None = st.next_change(within, now)
    return nc


def _steps(c: int, marks: tuple[tuple[str, float], ...]) -> int | None:
    """The fewest expiries after which ``c op k`` changes for some mark ``(op, k)``."""
    best = None
    for op, k in marks:
        if op in (">=", "<"):
            m = math.floor(c - k) + 1 if c >= k else None
        elif op in (">", "<="):
            m = math.ceil(c - k) if c > k else None
        elif c == k:
            m = 1
        else:  # == and != change only on reaching k
            m = int(c - k) if c > k and k == math.floor(k) else None
        if m is not None and (best is None or m < best):
            best = m
    return best


def count_deadline(st: Any, within: float, now: float, marks: tuple[tuple[str, float], ...]) -> float | None:
    """The first instant after ``now`` at which a count window read only through ``marks``
    (see ``actors.compiled.timing.count_marks``) may change a reader: its count crosses a
    mark, or the window empties; the next change of any kind while an entry has yet to start."""
    if st is None:
        return None
    t = type(st)
    if t is float:
        return tw_next(st, within, now)
    if t is array:
        if st[-1] > now:
            return _time_next(st, within, now)
        lo = _lo(st, within, now)
        n = len(st) - lo
        if n <= 0:
            return None
        m = _steps(n, marks)
        t_at: float = st[lo + (n if m is None or m > n else m) - 1]
        return t_at + within
    if st.after(now):
        nc: float | None = st.next_change(within, now)
        return nc
    lo = st.expired(within, now)
    n = st.n - lo
    if n <= 0:
        return None
    m = _steps(n, marks)
    end: float = st.time(lo + (n if m is None or m > n else m) - 1) + within
    return end


def tw_times(st: Any) -> array[float]:
    """Every stored time of a time-window state, sorted (for snapshots)."""
    if st is None:
        return array("d")
    t = type(st)
    if t is float:
        return array("d", (st,))
    if t is array:
        return array("d", st)
    flat: array[float] = st.flat()
    return flat
