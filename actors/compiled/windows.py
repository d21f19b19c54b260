"""Compact, incremental windows for the compiled fold: the reference semantics, without the cost.

Same contract and results as ``actors.aggregates.window`` (the reference): an event counts at
``now`` iff ``ts <= now < ts + within``; ``next_change`` is the next instant at which the set
of live entries changes (the oldest live entry expires or the earliest future one starts);
distinct windows drop an older occurrence of a value when an accepted event is folded, exactly
when the reference's ``_dedupe`` does, so deadlines and snapshots mean the same. What differs
is the cost per event, which no longer grows with the window:

- time windows (count, first_time, last_time) are None | float | ``array('d')`` as in the
  reference, growing into ``Chunks`` (``actors.compiled.sorted``) past ``BIG`` entries, so
  an out-of-order insert or an expiry moves at most a chunk;
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

import heapq
import math
from array import array
from bisect import bisect_left, bisect_right
from typing import Any

from actors.aggregates.kind import distinct_key, grow, is_number, window_sum
from actors.compiled.sorted import BIG, SMALL, Chunks

__all__ = [
    "DistinctWin",
    "ExtremeWin",
    "EndWin",
    "SumWin",
    "ValueWin",
    "tw_count",
    "tw_first",
    "tw_fold",
    "tw_last",
    "tw_next",
    "tw_prune",
    "tw_times",
    "from_times",
]


def _lo(ts: array[float], within: float, now: float) -> int:
    """Index of the first entry not yet expired at ``now`` (``ts + within > now``)."""
    if not ts or ts[0] + within > now:
        return 0
    return bisect_right(ts, now, key=lambda t: t + within)


def _time_next(times: array[float], within: float, now: float) -> float | None:
    lo = _lo(times, within, now)
    if lo == len(times):
        return None
    end = times[lo] + within
    hi = bisect_right(times, now, lo)
    if hi < len(times) and times[hi] < end:
        return times[hi]
    return end


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
        if ts >= st[-1]:
            st.append(ts)
        else:
            st.insert(bisect_right(st, ts), ts)
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
            del st[:lo]
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


def tw_first(st: Any, within: float, now: float) -> float | None:
    """The earliest live entry (``first_time``), or None."""
    if st is None:
        return None
    t = type(st)
    if t is float:
        return st if st <= now < st + within else None
    if t is array:
        lo = _lo(st, within, now)
        return st[lo] if bisect_right(st, now, lo) > lo else None
    lo = st.expired(within, now)
    if lo < st.n:
        x: float = st.time(lo)
        if x <= now:
            return x
    return None


def tw_last(st: Any, within: float, now: float) -> float | None:
    """The latest live entry (``last_time``), or None."""
    if st is None:
        return None
    t = type(st)
    if t is float:
        return st if st <= now < st + within else None
    if t is array:
        lo = _lo(st, within, now)
        hi = bisect_right(st, now, lo)
        return st[hi - 1] if hi > lo else None
    hi = st.n - st.after(now)
    if hi > st.expired(within, now):
        x: float = st.time(hi - 1)
        return x
    return None


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


# ---------------------------------------------------------------------- value windows


class ValueWin:
    """Entries ``(ts, value)`` sorted by ts (ties in fold order) for a value kind.

    ``times`` is an ``array('d')`` (or ``Chunks`` holding the values too, past ``BIG``),
    ``vals`` the values in the same order (None with Chunks). ``synced`` is the time up to
    which started entries are taken into the kind's running result, ``future`` how many
    stored entries lie after it. Subclasses keep that result: ``_add``/``_drop`` are called
    exactly once for each entry as it starts and as it expires.
    """

    __slots__ = ("times", "vals", "synced", "future", "within")

    def __init__(self, within: float) -> None:
        self.times: Any = array("d")
        self.vals: list[Any] | None = []
        self.synced = -math.inf
        self.future = 0
        self.within = within

    # kind hooks
    def _add(self, ts: float, v: Any) -> None:
        raise NotImplementedError

    def _drop(self, values: list[Any]) -> None:
        raise NotImplementedError

    def result(self) -> Any:
        """The value over the live entries, once ``advance`` brought them to ``now``."""
        raise NotImplementedError

    # ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.times)

    def advance(self, now: float) -> None:
        """Take in the entries started by ``now`` and drop those expired at ``now``."""
        if now > self.synced:
            if self.future:
                n = len(self.times)
                after = self._after(now)
                for i in range(n - self.future, n - after):
                    self._add(self._time(i), self._val(i))
                self.future = after
            self.synced = now
        times, w = self.times, self.within
        if type(times) is array:
            if times and times[0] + w <= now:
                lo = bisect_right(times, now, key=lambda t: t + w)
                vals = self.vals
                assert vals is not None
                self._drop(vals[:lo])
                del times[:lo]
                del vals[:lo]
        elif times.c[0] and times.c[0][0] + w <= now:
            dropped = times.expire(w, now)
            self._drop(dropped)
            if times.n < SMALL:
                self.vals = times.payloads()
                self.times = times.flat()

    def fold(self, ts: float, v: Any, now: float) -> None:
        """Add an accepted event (``v`` already checked and keyed by the caller)."""
        self.advance(now)
        times = self.times
        if type(times) is array:
            vals = self.vals
            assert vals is not None
            if not times or ts >= times[-1]:
                times.append(ts)
                vals.append(v)
            else:
                i = bisect_right(times, ts)
                times.insert(i, ts)
                vals.insert(i, v)
            if len(times) > BIG:
                self.times = Chunks(times, vals)
                self.vals = None
        else:
            times.insert(ts, v)
        if ts <= now:
            self._add(ts, v)
        else:
            self.future += 1

    def next_change(self, now: float) -> float | None:
        times = self.times
        if type(times) is array:
            return _time_next(times, self.within, now)
        nc: float | None = times.next_change(self.within, now)
        return nc

    def value(self, now: float) -> Any:
        self.advance(now)
        return self.result()

    def _after(self, now: float) -> int:
        times = self.times
        if type(times) is array:
            return len(times) - bisect_right(times, now)
        n: int = times.after(now)
        return n

    def _time(self, i: int) -> float:
        times = self.times
        t: float = times[i] if type(times) is array else times.time(i)
        return t

    def _val(self, i: int) -> Any:
        if self.vals is not None:
            return self.vals[i]
        return self.times.payload(i)

    def entries(self) -> tuple[array[float], list[Any]]:
        """Every stored ``(times, values)``, in order (for snapshots)."""
        times = self.times
        if type(times) is array:
            assert self.vals is not None
            return array("d", times), list(self.vals)
        return times.flat(), times.payloads()

    def load(self, times: array[float], vals: list[Any], now: float) -> None:
        """Fill a new window with stored entries (a snapshot), as of ``now``."""
        if len(times) > BIG:
            self.times, self.vals = Chunks(times, vals), None
        else:
            self.times, self.vals = times, vals
        self.synced = now
        started = bisect_right(times, now)
        self.future = len(times) - started
        for i in range(started):
            self._add(times[i], vals[i])


class SumWin(ValueWin):
    """sum / avg: an exact running sum of the started, unexpired values.

    ``itot`` sums the int values exactly, ``nflt`` counts the float ones and ``part`` holds
    Shewchuk partials of every value as a float; so the sum is ``itot`` while there is no
    float and ``math.fsum(part)`` once there is one, which is ``math.fsum`` of the live
    values (exactly what the reference computes), whatever the order values came and went.
    ``exact`` turns False if a value cannot be a float (an int beyond float range): the
    result is then recomputed from the live values as the reference does.
    """

    __slots__ = ("avg", "itot", "nflt", "cnt", "part", "exact")

    def __init__(self, within: float, avg: bool) -> None:
        super().__init__(within)
        self.avg = avg
        self.itot = 0
        self.nflt = 0
        self.cnt = 0
        self.part: tuple[float, ...] = ()
        self.exact = True

    def _add(self, ts: float, v: Any) -> None:
        self.cnt += 1
        if type(v) is int:
            self.itot += v
        else:
            self.nflt += 1
        if self.exact:
            try:
                self.part = grow(self.part, float(v))
            except OverflowError:
                self.exact = False

    def _drop(self, values: list[Any]) -> None:
        for v in values:
            self.cnt -= 1
            if type(v) is int:
                self.itot -= v
            else:
                self.nflt -= 1
            if self.exact:
                self.part = grow(self.part, -float(v))
        if self.cnt == 0:  # start afresh: no partial noise can outlive the values
            self.itot = self.nflt = 0
            self.part = ()
            self.exact = True

    def result(self) -> Any:
        if self.cnt == 0:
            return None if self.avg else 0
        if not self.exact:
            live = self._live()
            return math.fsum(live) / len(live) if self.avg else window_sum(live)
        if self.avg:
            return math.fsum(self.part) / self.cnt
        return math.fsum(self.part) if self.nflt else self.itot

    def _live(self) -> list[Any]:
        n = len(self.times) - self.future
        return [self._val(i) for i in range(n)]


class ExtremeWin(ValueWin):
    """min / max: a heap of the started entries; expired ones are dropped from its top.

    Heap items are ``(key, is_int, ts, order, value)``: the best value first (``key`` is the
    value for min and its negation for max), a float before an equal int, then the earlier
    entry, as the reference's ``extreme`` picks among live values in time order.
    """

    __slots__ = ("lower", "heap", "order", "live")

    def __init__(self, within: float, lower: bool) -> None:
        super().__init__(within)
        self.lower = lower
        self.heap: list[tuple[Any, ...]] = []
        self.order = 0
        self.live = 0

    def _add(self, ts: float, v: Any) -> None:
        self.order += 1
        self.live += 1
        heapq.heappush(self.heap, (v if self.lower else -v, type(v) is int, ts, self.order, v))

    def _drop(self, values: list[Any]) -> None:
        self.live -= len(values)
        heap = self.heap
        if len(heap) > 2 * self.live + 16:  # expired entries sank below the top: rebuild
            w, now = self.within, self.synced
            self.heap = [e for e in heap if e[2] + w > now]
            heapq.heapify(self.heap)

    def result(self) -> Any:
        heap, w, now = self.heap, self.within, self.synced
        while heap and heap[0][2] + w <= now:
            heapq.heappop(heap)
        return heap[0][4] if heap else None


class EndWin(ValueWin):
    """first / last: the value of the earliest or the latest live entry."""

    __slots__ = ("last",)

    def __init__(self, within: float, last: bool) -> None:
        super().__init__(within)
        self.last = last

    def _add(self, ts: float, v: Any) -> None:
        pass

    def _drop(self, values: list[Any]) -> None:
        pass

    def result(self) -> Any:
        n = len(self.times) - self.future
        if n <= 0:
            return None
        return self._val(n - 1 if self.last else 0)


class DistinctWin(ValueWin):
    """distinct over a window, with the reference's deduplication (see the module docstring).

    Entries at or before ``resolved`` hold each key once (``current`` maps it to its time
    once the window is large: below ``_INDEX_AT`` entries a scan is cheaper than a dict).
    An accepted fold resolves every entry up to its ``now``: of two occurrences of a key the
    later one (in time, then fold order) stays. The value is the number of distinct keys live.
    """

    __slots__ = ("resolved", "current")

    _INDEX_AT = 64

    def __init__(self, within: float) -> None:
        super().__init__(within)
        self.resolved = -math.inf
        self.current: dict[Any, float] | None = None

    def _add(self, ts: float, v: Any) -> None:
        pass

    def _drop(self, values: list[Any]) -> None:
        pass  # see advance

    def advance(self, now: float) -> None:
        cur = self.current
        if cur is not None:
            times, w = self.times, self.within
            n = _lo(times, w, now) if type(times) is array else times.expired(w, now)
            for i in range(n):  # expiring resolved entries leave current with them
                t, k = self._time(i), self._val(i)
                if t <= self.resolved and cur.get(k) == t:
                    del cur[k]
        super().advance(now)

    def fold(self, ts: float, key: Any, now: float) -> None:
        """Add an accepted value (``key`` = its ``distinct_key``), then resolve up to now."""
        times, vals = self.times, self.vals
        if (
            vals is not None
            and self.current is None
            and not self.future
            and ts <= now
            and len(vals) < self._INDEX_AT - 1
            and (
                not times or (ts >= times[-1] and times[-1] <= self.resolved and times[0] + self.within > now)
            )
        ):
            # the usual case: nothing expires or starts, every entry is resolved and the new
            # one comes last, so it replaces its key's one occurrence (as _dedupe_scan would)
            if key in vals:
                i = vals.index(key)
                del times[i]
                del vals[i]
            times.append(ts)
            vals.append(key)
            self.synced = self.resolved = now
            return
        super().fold(ts, key, now)
        if len(self.times) >= self._INDEX_AT and self.current is None:
            self._index(now)
            return
        if self.current is None:
            self._dedupe_scan(now)
        else:
            self._dedupe_indexed(ts, key, now)

    def _dedupe_scan(self, now: float) -> None:
        """The reference's ``_dedupe``: keep the last occurrence of each key up to ``now``."""
        times, vals = self.times, self.vals
        assert type(times) is array and vals is not None
        hi = bisect_right(times, now)
        self.future = len(times) - hi  # entries after now are untouched
        seen: set[Any] = set()
        drop: list[int] = []
        for i in range(hi - 1, -1, -1):
            v = vals[i]
            if v in seen:
                drop.append(i)
            else:
                seen.add(v)
        for i in drop:
            del times[i]
            del vals[i]
        self.resolved = now

    def _index(self, now: float) -> None:
        """Build ``current`` by a full deduplication (once, when the window grows large)."""
        times, vals = self.entries()
        hi = bisect_right(times, now)
        keep_t, keep_v, cur = array("d"), [], {}
        seen: set[Any] = set()
        last_of: dict[Any, int] = {}
        for i in range(hi - 1, -1, -1):
            if vals[i] not in seen:
                seen.add(vals[i])
                last_of[vals[i]] = i
        for i in range(len(times)):
            if i >= hi or last_of.get(vals[i]) == i:
                keep_t.append(times[i])
                keep_v.append(vals[i])
                if i < hi:
                    cur[vals[i]] = times[i]
        self.times, self.vals = (Chunks(keep_t, keep_v), None) if len(keep_t) > BIG else (keep_t, keep_v)
        self.future = len(keep_t) - bisect_right(keep_t, now)
        self.current = cur
        self.resolved = now

    def _dedupe_indexed(self, ts: float, key: Any, now: float) -> None:
        cur = self.current
        assert cur is not None
        # candidates: the new entry if it is not in the future, then entries that started
        # since the last resolution (resolved < t <= now), in position order
        cands: list[tuple[float, Any, bool]] = []
        if ts <= self.resolved:
            cands.append((ts, key, True))
        if now > self.resolved:
            n = len(self.times)
            for i in range(n - self._after(self.resolved), n - self._after(now)):
                cands.append((self._time(i), self._val(i), False))
        for t, k, late in cands:
            old = cur.get(k)
            if old is None:
                cur[k] = t
            elif late and t < old:
                self._remove(t, k)  # the new, late entry is the older occurrence
            else:
                self._remove(old, k)
                cur[k] = t
        self.future = self._after(now)
        self.resolved = now

    def _remove(self, t: float, k: Any) -> None:
        """Remove the first entry at time ``t`` whose key is ``k``."""
        times = self.times
        if type(times) is array:
            vals = self.vals
            assert vals is not None
            i = bisect_left(times, t)
            while vals[i] != k:  # an entry (t, k) exists: the caller holds it in current
                i += 1
            del times[i]
            del vals[i]
        else:
            times.remove(t, k)

    def value(self, now: float) -> Any:
        times = self.times
        if (
            not self.future
            and self.current is None
            and type(times) is array
            and (not times or (times[0] + self.within > now and times[-1] <= self.resolved))
        ):
            if now > self.synced:
                self.synced = now
            return len(times)  # nothing expires or starts, every entry is resolved
        return super().value(now)

    def result(self) -> Any:
        n_live = len(self.times) - self.future
        if self.current is None:
            if self.resolved >= self.synced:
                return n_live
            return len({self._val(i) for i in range(n_live)})
        if self.resolved >= self.synced:
            return len(self.current)
        extra = {self._val(i) for i in range(len(self.times) - self._after(self.resolved), n_live)}
        return len(self.current) + len(extra - self.current.keys())

    def load(self, times: array[float], vals: list[Any], now: float) -> None:
        super().load(times, vals, now)
        # entries up to now that hold each key once count as resolved (see the module doc)
        hi = bisect_right(times, now)
        seen: dict[Any, float] = {}
        upto = -math.inf
        i = 0
        while i < hi:
            j = i
            while j < hi and times[j] == times[i]:
                j += 1
            group = vals[i:j]
            if len(set(group)) != len(group) or any(k in seen for k in group):
                break
            for k in group:
                seen[k] = times[i]
            upto = times[i]
            i = j
        else:
            upto = now
        self.resolved = upto
        if len(times) >= self._INDEX_AT:
            self.current = seen


def accepts(kind: str) -> Any:
    """The reference's test for an ``of`` value a value window counts at all."""
    return is_number if kind in ("sum", "avg", "min", "max") else (lambda v: v is not None)


def keyed(kind: str, v: Any) -> Any:
    """The stored form of an accepted value (``distinct_key`` for distinct)."""
    return distinct_key(v) if kind == "distinct" else v


def new_value_win(kind: str, within: float) -> ValueWin:
    """An empty window for a value kind (sum avg min max first last distinct)."""
    if kind in ("sum", "avg"):
        return SumWin(within, kind == "avg")
    if kind in ("min", "max"):
        return ExtremeWin(within, kind == "min")
    if kind in ("first", "last"):
        return EndWin(within, kind == "last")
    if kind == "distinct":
        return DistinctWin(within)
    raise ValueError(f"not a value kind: {kind!r}")
