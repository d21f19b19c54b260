"""A sorted multiset of event times, in chunks: the large form of a window.

``Chunks`` keeps times sorted (ties in insertion order, as ``bisect_right`` inserts them) in
``array('d')`` chunks of at most ``2 * CHUNK`` entries, optionally with one payload per time
(a parallel list per chunk). Inserting anywhere, dropping the expired front and counting the
entries at either end cost O(log n + CHUNK) whatever the arrival order, where one flat array
would move every later entry: a window of 10^5 times filled out of order costs per event what a
window of 10 does. Windows below ``BIG`` entries stay a flat ``array('d')`` (smaller and
faster); see ``actors.compiled.windows``.

Expiry follows the windows' rule (``actors.aggregates``): an entry at ``t`` has expired at
``now`` iff ``t + within <= now`` (one float addition, monotone in ``t``).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["BIG", "CHUNK", "Chunks", "SMALL"]

#: Entries per chunk after a split (a chunk splits past twice this).
CHUNK = 256
#: A flat window array grows into ``Chunks`` past this many entries ...
BIG = 1024
#: ... and a ``Chunks`` shrinks back to a flat array below this many (hysteresis).
SMALL = 256


def _last(chunk: array[float]) -> float:
    return chunk[-1]


class Chunks:
    """Sorted times (and optional payloads) in chunks; see the module docstring.

    ``c`` holds the time chunks (never empty), ``p`` the payload chunks or None, ``n`` the
    number of entries. Not thread-safe.
    """

    __slots__ = ("c", "p", "n")

    def __init__(self, times: Iterable[float], payloads: Iterable[Any] | None = None) -> None:
        flat = array("d", times)
        vals = list(payloads) if payloads is not None else None
        self.n = len(flat)
        self.c = [flat[i : i + CHUNK] for i in range(0, len(flat), CHUNK)] or [array("d")]
        self.p = None if vals is None else [vals[i : i + CHUNK] for i in range(0, len(vals), CHUNK)] or [[]]

    # ------------------------------------------------------------------ changes

    def insert(self, t: float, v: Any = None) -> None:
        """Add ``t`` (with payload ``v``) after every entry <= t."""
        c = self.c
        i = len(c) - 1
        ch = c[i]
        if ch and t < ch[0]:
            i = bisect_right(c, t, key=_last)  # the first chunk ending after t
            ch = c[i]
        if not ch or t >= ch[-1]:
            j = len(ch)
            ch.append(t)
        else:
            j = bisect_right(ch, t)
            ch.insert(j, t)
        p = self.p
        if p is not None:
            p[i].insert(j, v)
        self.n += 1
        if len(ch) > 2 * CHUNK:
            c[i : i + 1] = [ch[:CHUNK], ch[CHUNK:]]
            if p is not None:
                pc = p[i]
                p[i : i + 1] = [pc[:CHUNK], pc[CHUNK:]]

    def expire(self, within: float, now: float) -> list[Any] | int:
        """Drop every entry with ``t + within <= now`` (a prefix). Returns the dropped
        payloads (with payloads) or how many were dropped."""
        c, p = self.c, self.p
        dropped: list[Any] = []
        count = 0
        while len(c) > 1 and c[0][-1] + within <= now:
            count += len(c[0])
            del c[0]
            if p is not None:
                dropped += p[0]
                del p[0]
        ch = c[0]
        if ch and ch[0] + within <= now:
            lo = bisect_right(ch, now, key=lambda t: t + within)
            count += lo
            del ch[:lo]
            if p is not None:
                dropped += p[0][:lo]
                del p[0][:lo]
        self.n -= count
        return dropped if p is not None else count

    def remove(self, t: float, v: Any) -> None:
        """Remove the first entry at time ``t`` whose payload is or equals ``v``. Raises
        KeyError if there is none."""
        c, p = self.c, self.p
        assert p is not None
        i = bisect_left(c, t, key=_last)  # the first chunk that can hold t
        while i < len(c) and c[i][0] <= t:
            ch, pc = c[i], p[i]
            for j in range(bisect_left(ch, t), bisect_right(ch, t)):
                if pc[j] is v or pc[j] == v:  # as a dict matches keys
                    del ch[j]
                    del pc[j]
                    self.n -= 1
                    if not ch and len(c) > 1:
                        del c[i]
                        del p[i]
                    return
            i += 1
        raise KeyError((t, v))

    # ------------------------------------------------------------------ reads

    def expired(self, within: float, now: float) -> int:
        """How many entries have ``t + within <= now`` (they form a prefix)."""
        n = 0
        for ch in self.c:
            if not ch or ch[-1] + within <= now:
                n += len(ch)
                continue
            if ch[0] + within <= now:
                n += bisect_right(ch, now, key=lambda t: t + within)
            return n
        return n

    def after(self, now: float) -> int:
        """How many entries have ``t > now`` (they form a suffix)."""
        n = 0
        for ch in reversed(self.c):
            if not ch or ch[0] > now:
                n += len(ch)
                continue
            return n + len(ch) - bisect_right(ch, now)
        return n

    def time(self, i: int) -> float:
        """The ``i``-th time (0-based; negative from the end)."""
        ch, j = self._locate(i)
        return self.c[ch][j]

    def payload(self, i: int) -> Any:
        """The ``i``-th payload (0-based; negative from the end)."""
        assert self.p is not None
        ch, j = self._locate(i)
        return self.p[ch][j]

    def _locate(self, i: int) -> tuple[int, int]:
        c = self.c
        if i < 0:
            i += self.n
        if i < 0 or i >= self.n:
            raise IndexError(i)
        if 2 * i < self.n:
            for k, ch in enumerate(c):
                if i < len(ch):
                    return k, i
                i -= len(ch)
        else:
            i = self.n - 1 - i  # from the end
            for k in range(len(c) - 1, -1, -1):
                m = len(c[k])
                if i < m:
                    return k, m - 1 - i
                i -= m
        raise IndexError(i)  # pragma: no cover - n and the chunks agree

    def next_change(self, within: float, now: float) -> float | None:
        """The next instant after ``now`` at which the set of live entries changes: the oldest
        live entry expires, or the earliest future entry starts (``_time_next`` of
        ``actors.aggregates.window``, on chunks)."""
        lo = self.expired(within, now)
        if lo == self.n:
            return None
        end = self.time(lo) + within
        fut = self.after(now)
        if fut and lo < self.n - fut:
            t = self.time(self.n - fut)
            if t < end:
                return t
        elif fut:  # every live entry is in the future
            t = self.time(lo)
            return t if t < end else end
        return end

    def items(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[float, Any]]:
        """``(time, payload)`` of entries ``start:stop`` in order (payload None without)."""
        stop = self.n if stop is None else stop
        i = 0
        p = self.p
        for k, ch in enumerate(self.c):
            m = len(ch)
            if i + m > start and i < stop:
                a, b = max(start - i, 0), min(stop - i, m)
                pc = p[k] if p is not None else None
                for j in range(a, b):
                    yield ch[j], (pc[j] if pc is not None else None)
            i += m
            if i >= stop:
                return

    def flat(self) -> array[float]:
        """Every time, in order, as one array."""
        out = array("d")
        for ch in self.c:
            out.extend(ch)
        return out

    def payloads(self) -> list[Any]:
        """Every payload, in order."""
        assert self.p is not None
        out: list[Any] = []
        for pc in self.p:
            out += pc
        return out

    def __len__(self) -> int:
        return self.n
