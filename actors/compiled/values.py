"""Value windows of the compiled fold (sum, avg, min, max, first, last; distinct when large).

The reference semantics (``actors.aggregates.window.ValueWindow``) at a cost that does not grow
with the window; see ``actors.compiled.windows`` for the shared contract. Each class keeps its
entries sorted (``array('d')`` times and a list of values, or ``Chunks`` past ``BIG``) plus
what its kind needs to answer at once: an exact running sum, a heap.
"""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_right
from typing import Any

from actors.aggregates.kind import distinct_key, grow, is_number, window_sum
from actors.aggregates.window import _time_next
from actors.compiled.sorted import BIG, SMALL, Chunks

__all__ = ["EndWin", "ExtremeWin", "SumWin", "ValueWin", "accepts", "keyed", "new_value_win"]


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


def accepts(kind: str) -> Any:
    """The reference's test for an ``of`` value a value window counts at all."""
    return is_number if kind in ("sum", "avg", "min", "max") else (lambda v: v is not None)


def keyed(kind: str, v: Any) -> Any:
    """The stored form of an accepted value (``distinct_key`` for distinct)."""
    return distinct_key(v) if kind == "distinct" else v


def new_value_win(kind: str, within: float) -> ValueWin:
    """An empty window for a value kind (sum avg min max first last; distinct windows are
    ``actors.compiled.distinct``'s)."""
    if kind in ("sum", "avg"):
        return SumWin(within, kind == "avg")
    if kind in ("min", "max"):
        return ExtremeWin(within, kind == "min")
    if kind in ("first", "last"):
        return EndWin(within, kind == "last")
    raise ValueError(f"not a value kind: {kind!r}")
