"""What the daemon itself knows of its actors' health, for ``stats`` and ``/metrics``.

``stats`` must answer while a shard is frozen or restarting, so it never waits on an actor
for longer than a bound: ``ShardWatch`` records, from the daemon's own calls, when each shard
last answered and how long its oldest outstanding call has waited; ``Probe`` keeps the last
value of a remote read (a shard's user count, the segment sizes) and refreshes it with at
most one call in flight, so a frozen actor is asked once, not once per ``stats``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from segd.errors import Unavailable

log = structlog.get_logger("segd.daemon.health")

T = TypeVar("T")

#: A call outstanding for longer than this marks its shard ``stalled`` (seconds). A routed
#: batch of 20,000 rows takes about 1.5 s on a busy 2-core machine; five is well past that.
STALLED_AFTER = 5.0

#: A shard's states, worst first: ``recovering`` (being restored from its snapshot and the
#: log), ``unreachable`` (its last call failed: Ray is restarting it or its node is gone),
#: ``stalled`` (a call has waited longer than STALLED_AFTER), ``ok``.
STATES = ("recovering", "unreachable", "stalled", "ok")


@dataclass(frozen=True, slots=True)
class ShardHealth:
    """One shard as the daemon sees it. Ages are seconds; ``last_reply_s`` is None before
    the shard first answered a call."""

    state: str
    last_reply_s: float | None
    waiting_s: float


class ShardWatch:
    """The daemon's record of its calls to each of ``n`` shards (see the module docstring)."""

    def __init__(self, n: int) -> None:
        self.last_reply: list[float | None] = [None] * n  # monotonic time of the last answer
        self.unreachable = [False] * n
        self.recovering = [False] * n
        self._outstanding: list[dict[int, float]] = [{} for _ in range(n)]
        self._tokens = itertools.count()

    def sent(self, i: int) -> int:
        """A call to shard ``i`` leaves now; the token to settle it with."""
        token = next(self._tokens)
        self._outstanding[i][token] = time.monotonic()
        return token

    def settled(self, i: int, token: int, *, answered: bool) -> None:
        """The call ``token`` to shard ``i`` is over: ``answered``, or failed (actor down)."""
        self._outstanding[i].pop(token, None)
        if answered:
            self.last_reply[i] = time.monotonic()
        self.unreachable[i] = not answered

    def health(self, i: int) -> ShardHealth:
        """Shard ``i``'s state and ages, now."""
        now = time.monotonic()
        oldest = min(self._outstanding[i].values(), default=now)
        waiting = now - oldest
        last = self.last_reply[i]
        if self.recovering[i]:
            state = "recovering"
        elif self.unreachable[i]:
            state = "unreachable"
        elif waiting > STALLED_AFTER:
            state = "stalled"
        else:
            state = "ok"
        return ShardHealth(
            state=state,
            last_reply_s=None if last is None else round(now - last, 3),
            # rounded up, so a stalled shard never reports a wait of exactly STALLED_AFTER
            waiting_s=math.ceil(waiting * 1000) / 1000,
        )


class Probe(Generic[T]):
    """The last known value of a remote read (``fetch``), starting at ``initial``."""

    def __init__(self, what: str, fetch: Callable[[], Awaitable[T]], initial: T) -> None:
        self.what = what
        self.value = initial
        self._fetch = fetch
        self._pending: asyncio.Future[T] | None = None

    async def read(self, bound: float) -> bool:
        """Refresh ``value`` if the target answers within ``bound`` seconds; whether it did.

        While a call from an earlier read is still unanswered, no other is sent and the
        answer is the last known value at once: the target has already kept a call waiting
        past the bound, and a frozen actor must not pile up one call per ``stats``. The late
        answer, when it comes, becomes the last known value.
        """
        if self._pending is not None:
            return False
        pending = self._pending = asyncio.ensure_future(self._fetch())
        pending.add_done_callback(self._settle)
        await asyncio.wait({pending}, timeout=bound)
        return pending.done() and not pending.cancelled() and pending.exception() is None

    def _settle(self, done: asyncio.Future[T]) -> None:
        self._pending = None
        if done.cancelled():
            return
        exc = done.exception()
        if exc is None:
            self.value = done.result()
        elif isinstance(exc, Unavailable):
            log.info("stats_probe_unavailable", part=self.what, error=str(exc))
        else:
            log.error("stats_probe_failed", part=self.what, exc_info=exc)
