"""The deadlines of a shard's users, fired in (deadline, user) order (DESIGN "Shape": timers).

``Timers`` replaces a heap of ``(deadline, user)`` tuples: a user's deadline is filed under
its bucket of ``WIDTH`` seconds (a dict of lists of user ids, 8 bytes an entry, instead of a
56-byte tuple), and only the buckets that come due are ordered, in a small heap of their
own. Entries go stale when a user's deadline moves (the user is filed again under the new
one) or the user is forgotten; a stale entry is recognised and dropped when its bucket comes
due, and ``compact`` rebuilds everything when stale entries pile up.

The order of ``due`` is exactly that of the heap it replaces: by deadline, then user id, and
a deadline that firing sets inside the same pass is fired in that order too.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

__all__ = ["Timers", "WIDTH"]

#: Seconds of engine time per bucket.
WIDTH = 60.0


class _HasDeadline(Protocol):
    deadline: float | None


class Timers:
    """Users' deadlines by bucket; see the module docstring. ``entries`` counts filed
    entries, stale ones included."""

    __slots__ = ("_buckets", "_keys", "entries")

    def __init__(self) -> None:
        self._buckets: dict[int, list[str]] = {}
        self._keys: list[int] = []  # heap of the bucket numbers in _buckets
        self.entries = 0

    def push(self, deadline: float, user: str) -> None:
        """File ``user`` under ``deadline`` (its current one)."""
        b = int(deadline // WIDTH)
        lst = self._buckets.get(b)
        if lst is None:
            lst = self._buckets[b] = []
            heapq.heappush(self._keys, b)
        lst.append(user)
        self.entries += 1

    def due(
        self, clock: float, users: Mapping[str, _HasDeadline], fire: Callable[[str, float], float | None]
    ) -> None:
        """Call ``fire(user, deadline)`` for every user whose current deadline is <= clock,
        in (deadline, user) order; ``fire`` returns the user's new deadline (or None)."""
        keys, buckets = self._keys, self._buckets
        while keys and keys[0] * WIDTH <= clock:
            b = keys[0]
            lst = buckets[b]
            seen: set[str] = set()
            heap: list[tuple[float, str]] = []
            for user in lst:
                if user in seen:
                    continue
                seen.add(user)
                actor = users.get(user)
                d = None if actor is None else actor.deadline
                if d is not None and int(d // WIDTH) == b:
                    heap.append((d, user))
            self.entries -= len(lst)
            heapq.heapify(heap)
            while heap and heap[0][0] <= clock:
                d, user = heapq.heappop(heap)
                actor = users.get(user)
                if actor is None or actor.deadline != d:
                    continue
                nd = fire(user, d)
                if nd is not None:
                    if int(nd // WIDTH) == b:
                        heapq.heappush(heap, (nd, user))
                    else:
                        self.push(nd, user)
            if heap:  # the rest of this bucket is not due yet
                buckets[b] = [user for _, user in heap]
                self.entries += len(heap)
                return
            del buckets[b]
            heapq.heappop(keys)

    def compact(self, deadlines: Iterable[tuple[float, str]]) -> None:
        """Refile exactly the given (deadline, user) pairs, dropping every stale entry."""
        self._buckets, self._keys, self.entries = {}, [], 0
        for d, user in deadlines:
            self.push(d, user)

    def __len__(self) -> int:
        return self.entries
