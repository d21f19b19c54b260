"""The deadlines of a shard's users, fired in (deadline, user) order (DESIGN "Shape": timers).

``Timers`` replaces a heap of ``(deadline, user)`` tuples: a user's deadline is filed under
its bucket of ``WIDTH`` seconds (a dict of lists of user ids, 8 bytes an entry, where a heap
entry took a 56-byte tuple), and only the bucket coming due is ordered, in a heap of its own
that it keeps while it is due in part (a tick in the middle of a bucket does not sort it
again). Entries go stale when a user's deadline moves (the user is filed again under the new
one) or the user is forgotten; a stale entry is recognised and dropped when its bucket comes
due, and ``compact`` rebuilds everything when stale entries pile up.

The order of ``due`` is exactly that of the heap it replaces: by deadline, then user id, and
a deadline that firing sets inside the same pass is fired in that order too.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

__all__ = ["Timers", "WIDTH"]

#: Seconds of engine time per bucket: wide enough that a bucket holds many users (a bucket
#: costs ~150 bytes), narrow enough that draining one orders few.
WIDTH = 3600.0


class _HasDeadline(Protocol):
    deadline: float | None


class Timers:
    """Users' deadlines by bucket; see the module docstring. ``entries`` counts filed
    entries, stale ones included."""

    __slots__ = ("_buckets", "_keys", "_hot", "_hot_bucket", "entries")

    def __init__(self) -> None:
        self._buckets: dict[int, list[str]] = {}
        self._keys: list[int] = []  # heap of the bucket numbers in _buckets
        self._hot: list[tuple[float, str]] = []  # the bucket due in part, as a heap
        self._hot_bucket: int | None = None
        self.entries = 0

    def push(self, deadline: float, user: str) -> None:
        """File ``user`` under ``deadline`` (its current one)."""
        b = int(deadline // WIDTH)
        self.entries += 1
        if b == self._hot_bucket:
            heapq.heappush(self._hot, (deadline, user))
            return
        lst = self._buckets.get(b)
        if lst is None:
            lst = self._buckets[b] = []
            heapq.heappush(self._keys, b)
        lst.append(user)

    def due(
        self,
        clock: float,
        users: Mapping[str, _HasDeadline],
        fire: Callable[[Any, float, list[Any]], float | None],
        out: list[Any],
    ) -> None:
        """Call ``fire(actor, deadline, out)`` for every user whose current deadline is <=
        clock, in (deadline, user) order (``actor`` is ``users[user]``; ``out`` is passed
        through); ``fire`` returns the user's new deadline (or None)."""
        keys, buckets = self._keys, self._buckets
        heappop, push = heapq.heappop, self.push
        while keys and keys[0] * WIDTH <= clock:
            b = keys[0]
            if b == self._hot_bucket:
                heap = self._hot
            else:
                heap = []
                get = users.get
                for user in buckets[b]:
                    # a user filed twice under its current deadline is popped twice: the
                    # second pop is stale (firing moved the deadline) and skipped below
                    actor = get(user)
                    d = None if actor is None else actor.deadline
                    if d is not None and int(d // WIDTH) == b:
                        heap.append((d, user))
                self.entries -= len(buckets[b]) - len(heap)
                buckets[b] = []
                heapq.heapify(heap)
                self._hot, self._hot_bucket = heap, b
            popped = 0
            while heap and heap[0][0] <= clock:
                d, user = heappop(heap)
                popped += 1
                actor = users.get(user)
                if actor is None or actor.deadline != d:
                    continue
                nd = fire(actor, d, out)
                if nd is not None:
                    push(nd, user)  # into this heap when it falls in this bucket
            self.entries -= popped
            if heap:  # the rest of this bucket is not due yet
                return
            del buckets[b]
            heapq.heappop(keys)
            self._hot, self._hot_bucket = [], None

    def compact(self, deadlines: Iterable[tuple[float, str]]) -> None:
        """Refile exactly the given (deadline, user) pairs, dropping every stale entry."""
        self._buckets, self._keys, self.entries = {}, [], 0
        self._hot, self._hot_bucket = [], None
        for d, user in deadlines:
            self.push(d, user)

    def __len__(self) -> int:
        return self.entries
