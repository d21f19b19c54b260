"""Distinct windows of the compiled fold: small ones as the reference keeps them, large ones indexed.

A distinct window below ``INDEX_AT`` entries is the reference's own state in two user slots
(``dw_*`` functions); past it, a ``DistinctWin`` that keeps the last occurrence of each value in
a dict, so a fold costs O(log n) however many values the window holds. Both drop an older
occurrence of a value exactly when the reference's ``_dedupe`` does (when an accepted event is
folded), so deadlines and snapshots mean the same.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from typing import Any

from actors.aggregates.window import _lo, _time_next
from actors.compiled.sorted import BIG, Chunks
from actors.compiled.values import ValueWin
from actors.compiled.windows import count_deadline, tw_next

__all__ = [
    "INDEX_AT",
    "DistinctWin",
    "dw_count",
    "dw_deadline",
    "dw_entries",
    "dw_fold",
    "dw_from",
    "dw_next",
    "dw_prune",
]


#
# A distinct window below INDEX_AT entries is the reference's own state, in two user slots:
# times None | float | array('d') (sorted, as a time window) and keys None | key | tuple
# (the distinct keys, in the same order). Its operations are the reference's, O(entries):
# bounded, since it grows into ``DistinctWin (below)`` (indexed) at INDEX_AT.
# A key is a str, int, float or bytes (``distinct_key``), never a tuple.

#: Entries at which a distinct window becomes a ``DistinctWin``.
INDEX_AT = 64


def _keys(k: Any) -> tuple[Any, ...] | list[Any]:
    return () if k is None else (k if type(k) is tuple or type(k) is list else (k,))


def _pack(times: array[float], keys: list[Any], now: float) -> tuple[Any, Any]:
    """The small state of sorted (times, keys), deduplicated up to ``now``. The keys are a
    tuple when *clean* (every entry started by ``now``, so each key is there once, and later
    folds may simply replace a key's one occurrence), a list while some entry is in the future
    (once it starts it may duplicate a key until the next fold deduplicates)."""
    n = len(times)
    if n == 0:
        return None, None
    if n == 1:
        return times[0], keys[0]
    return times, (tuple(keys) if times[-1] <= now else keys)


def dw_prune(t: Any, k: Any, within: float, now: float) -> tuple[Any, Any]:
    """Drop the entries expired at ``now``."""
    if t is None:
        return None, None
    tt = type(t)
    if tt is float:
        return (None, None) if t + within <= now else (t, k)
    if tt is not array:
        t.advance(now)
        return (t, None) if len(t) else (None, None)
    lo = _lo(t, within, now)
    if not lo:
        return t, k
    t = t[lo:]
    rest = k[lo:]
    n = len(t)
    if n > 1:
        return t, rest  # clean stays clean
    return (t[0], rest[0]) if n else (None, None)


def dw_fold(t: Any, k: Any, ts: float, key: Any, within: float, now: float) -> tuple[Any, Any]:
    """Fold an accepted value (``key`` = its ``distinct_key``) at ``ts``: the reference's
    prune, insert after equal times, then keep the last occurrence of each key up to now."""
    tt = type(t)
    if tt is array:
        if type(k) is tuple and ts >= t[-1] and ts <= now and t[0] + within > now and len(t) < INDEX_AT - 1:
            # clean, nothing expires, the new entry comes last: it replaces its key's one
            # occurrence, as the reference's _dedupe would
            for i, x in enumerate(k):
                if x is key or x == key:
                    t = t[:i] + t[i + 1 :]
                    k = k[:i] + k[i + 1 :]
                    break
            return t + array("d", (ts,)), k + (key,)  # exact sizes, as time windows
    elif tt is float:
        if t + within > now and t <= ts <= now:
            if k is key or k == key:
                return ts, key
            return array("d", (t, ts)), (k, key)
    elif t is not None:
        t.fold(ts, key, now)  # a DistinctWin
        return t, None
    t, k = dw_prune(t, k, within, now)
    if t is None:
        return ts, key
    times = array("d", (t,)) if type(t) is float else t
    keys = list(_keys(k))
    i = len(times) if ts >= times[-1] else bisect_right(times, ts)
    times.insert(i, ts)
    keys.insert(i, key)
    hi = bisect_right(times, now)
    seen: set[Any] = set()
    drop = []
    for j in range(hi - 1, -1, -1):
        if keys[j] in seen:
            drop.append(j)
        else:
            seen.add(keys[j])
    for j in drop:  # descending, so indexes stay valid
        del times[j]
        del keys[j]
    if len(times) >= INDEX_AT:
        win = DistinctWin(within)
        win.load(times, keys, now)
        return win, None
    return _pack(array("d", times), keys, now)


def dw_count(t: Any, k: Any, within: float, now: float) -> int:
    """Distinct keys among the entries live at ``now``."""
    if t is None:
        return 0
    tt = type(t)
    if tt is float:
        return 1 if t <= now < t + within else 0
    if tt is not array:
        n: int = t.value(now)
        return n
    lo = _lo(t, within, now)
    hi = bisect_right(t, now, lo)
    if type(k) is tuple:
        return hi - lo  # clean: each key once
    return len(set(k[lo:hi])) if hi > lo else 0


def dw_next(t: Any, within: float, now: float) -> float | None:
    """The next instant after ``now`` at which the live entries change."""
    if t is None or type(t) is float or type(t) is array:
        return tw_next(t, within, now)
    nc: float | None = t.next_change(now)
    return nc


def dw_deadline(
    t: Any, k: Any, within: float, now: float, marks: tuple[tuple[str, float], ...]
) -> float | None:
    """``count_deadline`` for a distinct window: while its keys are distinct and every entry
    has started, each expiry removes one value, as in a count window."""
    if t is None or type(t) is float:
        return tw_next(t, within, now)
    if type(t) is not array:
        nc: float | None = t.deadline(now, marks)
        return nc
    if type(k) is not tuple or t[-1] > now:
        return _time_next(t, within, now)
    return count_deadline(t, within, now, marks)


def dw_entries(t: Any, k: Any) -> tuple[array[float], list[Any]]:
    """Every stored (times, keys), in order (for snapshots)."""
    if t is None:
        return array("d"), []
    if type(t) is float:
        return array("d", (t,)), [k]
    if type(t) is array:
        return array("d", t), list(k)
    entries: tuple[array[float], list[Any]] = t.entries()
    return entries


def dw_from(times: array[float], keys: list[Any], within: float, now: float) -> tuple[Any, Any]:
    """The state holding stored (times, keys) (a snapshot's), as of ``now``."""
    if len(times) >= INDEX_AT:
        win = DistinctWin(within)
        win.load(times, keys, now)
        return win, None
    # a snapshot's keys: clean only if unique and started (a future may hide a duplicate)
    keys = list(keys)
    if len(times) > 1 and times[-1] <= now and len(set(keys)) == len(keys):
        return times, tuple(keys)
    return (times, keys) if len(times) > 1 else _pack(times, keys, now)


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
            # an entry (t, k) exists (the caller holds it in current); keys match as in a
            # dict: the same object or equal (a NaN key is only itself)
            while not (vals[i] is k or vals[i] == k):
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

    def deadline(self, now: float, marks: tuple[tuple[str, float], ...]) -> float | None:
        """``count_deadline`` for a distinct window: while every entry is resolved and
        started, each expiry removes one distinct value, as in a count window."""
        times = self.times
        if self.future or not len(times):
            return self.next_change(now)
        last = times[-1] if type(times) is array else times.time(-1)
        if last > self.resolved:
            return self.next_change(now)
        return count_deadline(times, self.within, now, marks)

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
