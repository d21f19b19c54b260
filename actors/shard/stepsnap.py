"""A shard snapshot taken in steps, so live events do not wait behind it.

``ShardCore.snapshot`` serialises every user in one go (about 15 us a user with the bench
model: over a second for 100,000 users), and the shard applies nothing meanwhile. A
``StepSnapshot`` holds the same point-in-time state, built over several calls: ``begin``
notes the users, the applied seq and the clock (no user is serialised yet); ``step`` then
serialises users for up to a time budget per call, while the shard applies batches between
the steps. A user that is about to change before its turn is serialised first, as it was
at the start (copy on write, one user at a time): ``before`` is called with every batch and
clock the shard is about to apply, and takes the users of those rows and those whose
deadline the clock reaches (their timers would fire; a user not yet serialised has not
changed since ``begin``, so its deadline then is its deadline now).

Both write through ``actors.shard.snapshot.Writer``: the bytes are those of
``ShardCore.snapshot`` but for the users' order, so ``ShardCore.restore`` reads them the
same way.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable
from typing import Any

from actors.records import Row, ShardSnapshot
from actors.shard.core import ShardCore
from actors.shard.snapshot import Head, Writer

#: Seconds of serialising per ``step`` call: a live batch behind it waits at most this long.
STEP_SECONDS = 0.004
_CHECK_EVERY = 64  # users serialised between two looks at the clock


class StepSnapshot:
    """One snapshot of ``core`` in progress (see the module docstring)."""

    def __init__(self, core: ShardCore) -> None:
        """``begin``: the state of ``core`` now; nothing is serialised yet."""
        started = time.perf_counter()
        users: dict[str, Any] = core._users
        self.applied_seq = core.applied_seq
        self.clock = core.clock
        self._head = Head(fingerprint=core.model.fingerprint, applied_seq=core.applied_seq, clock=core.clock)
        self.count = len(users)
        self._pending: dict[str, Any] = dict(users)  # not serialised yet, unchanged since begin
        self._order = iter(list(self._pending))  # the order users are serialised in
        deadlines = [(a.deadline, u) for u, a in users.items() if a.deadline is not None]
        heapq.heapify(deadlines)
        self._deadlines = deadlines  # of the pending users, as at begin
        self._writer = Writer()
        self._parts: list[bytes] = []
        self.steps = 0  # step calls so far
        self.early = 0  # users serialised by ``before``, ahead of their turn
        self.seconds = 0.0  # spent serialising, in ``step`` and ``before``
        self.longest = 0.0  # the longest ``step``
        self.begin_seconds = time.perf_counter() - started  # noting the users, their deadlines

    def before(self, rows: Iterable[Row], clock: float) -> None:
        """The shard is about to apply ``rows`` and advance to ``clock`` (or further, to the
        rows' clocks): serialise, as they are now, the users this may change."""
        pending, take = self._pending, self._take
        started, had = time.perf_counter(), len(pending)
        top = clock
        for r in rows:
            if r.user in pending:
                take(r.user)
            if r.clock > top:
                top = r.clock
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= top:
            _, user = heapq.heappop(deadlines)
            if user in pending:
                take(user)
        if len(pending) != had:
            self.early += had - len(pending)
            self.seconds += time.perf_counter() - started

    def step(self, budget: float = STEP_SECONDS) -> ShardSnapshot | None:
        """Serialise users for about ``budget`` seconds; the finished snapshot once every
        user is, else None."""
        pending, take = self._pending, self._take
        started = time.perf_counter()
        end = started + budget
        self.steps += 1
        n = 0
        try:
            for user in self._order:
                if user in pending:
                    take(user)
                    n += 1
                    if n % _CHECK_EVERY == 0 and time.perf_counter() >= end:
                        return None
            return self._finish()
        finally:
            took = time.perf_counter() - started
            self.seconds += took
            self.longest = max(self.longest, took)

    def _take(self, user: str) -> None:
        actor = self._pending.pop(user)
        self._parts.append(self._writer.user(user, actor.to_state()))

    def _finish(self) -> ShardSnapshot:
        assert len(self._parts) == self.count, (len(self._parts), self.count)
        return ShardSnapshot(applied_seq=self.applied_seq, state=self._writer.join(self._head, self._parts))
