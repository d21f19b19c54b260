"""Retrying the derived stores (issue 16, item 1): segments.db, snapshots.db and outbox.db.

The log is the source of truth; the other stores are derived from it. A write to one that
fails with a StoreError (a full disk, a read-only remount, an I/O error) is retried with
backoff (BACKOFF_FIRST doubling to BACKOFF_MAX) instead of stopping the router for good,
and the daemon is *degraded* meanwhile: ``store_degraded`` is logged once when a store
starts failing, ``store_recovered`` once when it works again, and ``Stores.degraded`` is
what ``stats`` and the readiness probe show. Every retried call is idempotent (the
segment managers record by transition id, the dispatcher by message id, a snapshot
replaces the one before), so nothing is applied twice, and nothing is lost: the router
applies nothing past what it cannot record (it waits, the log keeps the rows).

Stopping: ``close`` makes every retry give up after its next failed attempt (at once, not
after the backoff), so a daemon told to stop while degraded drains what it can and stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from segd.errors import StoreError

log = structlog.get_logger("segd.router")

T = TypeVar("T")

BACKOFF_FIRST = 0.1  # seconds before the first retry of a failed store write
BACKOFF_MAX = 5.0  # the backoff doubles up to this


@dataclass(slots=True)
class Failing:
    """A derived store whose writes fail: since when (``time.monotonic``), why, how often."""

    since: float
    reason: str
    attempts: int


class Stores:
    """The derived stores' health and the retry loop around their writes."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX) -> None:
        self.first = first
        self.cap = cap
        self.failing: dict[str, Failing] = {}  # store name -> why its writes fail
        self._closing = asyncio.Event()

    @property
    def degraded(self) -> list[dict[str, Any]]:
        """The failing stores (``store``, ``reason``, ``since_s``, ``attempts``); [] when healthy."""
        now = time.monotonic()
        return [
            {"store": name, "reason": f.reason, "since_s": round(now - f.since, 3), "attempts": f.attempts}
            for name, f in sorted(self.failing.items())
        ]

    def close(self) -> None:
        """Stopping: a failing write is tried once more, then its StoreError propagates."""
        self._closing.set()

    async def persist(self, store: str, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await call(*args)``, again after each StoreError, with backoff, until it succeeds
        (or, once ``close`` was called, fails again: that error propagates). ``call`` must be
        idempotent. Other errors propagate at once."""
        delay = self.first
        while True:
            try:
                result = await call(*args)
            except StoreError as exc:
                if self._closing.is_set():
                    raise
                self._failed(store, exc, delay)
                try:
                    await asyncio.wait_for(self._closing.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, self.cap)
                continue
            if store in self.failing:
                self._recovered(store)
            return result

    def _failed(self, store: str, exc: StoreError, delay: float) -> None:
        reason = _reason(exc)
        failing = self.failing.get(store)
        if failing is None:
            self.failing[store] = Failing(time.monotonic(), reason, 1)
            log.error(
                "store_degraded",
                store=store,
                reason=reason,
                retry_in=delay,
                action="applying waits, the log keeps every event; retrying with backoff",
            )
        else:
            failing.attempts += 1
            failing.reason = reason

    def _recovered(self, store: str) -> None:
        failing = self.failing.pop(store)
        log.warning(
            "store_recovered",
            store=store,
            seconds=round(time.monotonic() - failing.since, 3),
            attempts=failing.attempts,
        )


def _reason(exc: StoreError) -> str:
    """The store's own message: a StoreError raised in an actor arrives wrapped by Ray,
    whose str() holds a traceback; its last line is the message."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return last.split("StoreError: ", 1)[-1]
