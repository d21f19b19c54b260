"""Group commit: many concurrent requests, one durable transaction.

Requests ``submit`` their events and wait. One loop takes everything that arrived while the
previous commit ran, appends it in one transaction on the commit thread, then answers every
waiter and hands the new rows, in log order, to ``on_commit`` (the router to the shards).
The number of events waiting is bounded: past ``max_pending`` a submit fails with
``overloaded`` and nothing of it is logged.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from actors.records import Ack, NewEvent, Row
from segd.clock import Clock
from segd.errors import ProtocolError, StoreError
from store.eventlog import EventLog

log = structlog.get_logger("segd.daemon.ingest")

T = TypeVar("T")


@dataclass(slots=True)
class Append:
    """Events to log in the next group commit; ``done`` gets one Ack per event."""

    events: list[NewEvent]
    done: asyncio.Future[list[Ack]]


@dataclass(slots=True)
class Exclusive:
    """Work to run between two commits; ``done`` gets its result."""

    fn: Callable[[], Awaitable[Any]]
    done: asyncio.Future[Any]


class Committer:
    """The single writer of the event log, driven from the event loop."""

    def __init__(
        self,
        eventlog: EventLog,
        clock: Clock,
        *,
        max_pending: int,
        on_commit: Callable[[list[Row]], None] | None = None,
    ) -> None:
        self.eventlog = eventlog
        self.clock = clock
        self.max_pending = max_pending
        self.on_commit = on_commit
        self.pending = 0  # events submitted and not yet committed
        self.commits = 0
        self.commit_seconds = 0.0  # total time spent in commits, for stats
        self._queue: list[Append | Exclusive] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segd-commit")
        self._task: asyncio.Task[None] | None = None
        self._stamped: float | None = None  # clock of the first row of the group in commit

    def horizon(self) -> float:
        """The clock of the earliest row stamped but not yet handed to ``on_commit`` (+inf if
        none). The router advances shards no further (``Router.horizon``): a timer must not
        fire live ahead of an event that replay applies before it."""
        return math.inf if self._stamped is None else self._stamped

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="segd-commit")

    async def submit(self, events: list[NewEvent]) -> list[Ack]:
        """Log ``events`` durably; returns one Ack per event, in order.

        Raises ProtocolError ``overloaded`` (nothing logged, retry later), ``unavailable``
        (shutting down) or ``internal`` (the commit failed; nothing of the group is logged).
        """
        if self._closing:
            raise ProtocolError("unavailable", "segd is shutting down; retry on the next daemon")
        if self.pending + len(events) > self.max_pending:
            raise ProtocolError(
                "overloaded",
                f"{self.pending} events are waiting for the disk; nothing was logged, retry later",
            )
        done: asyncio.Future[list[Ack]] = asyncio.get_running_loop().create_future()
        self._queue.append(Append(events, done))
        self.pending += len(events)
        self._wake.set()
        return await done

    async def exclusive(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` on the event loop between two commits: everything submitted before
        is committed (and handed to ``on_commit``) first, nothing after is committed until
        it returns. For ``forget``, which must not race with appends."""
        if self._closing:
            raise ProtocolError("unavailable", "segd is shutting down; retry on the next daemon")
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(Exclusive(fn, done))
        self._wake.set()
        return await done

    async def in_writer(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the writer thread (only from inside ``exclusive``)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        """Refuse new submits, commit everything already submitted, stop the loop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            items, self._queue = self._queue, []
            group: list[Append] = []
            for item in items:
                match item:
                    case Append():
                        group.append(item)
                    case Exclusive(fn, done):
                        if group:
                            await self._commit(group)
                            group = []
                        try:
                            done.set_result(await fn())
                        except Exception as exc:
                            done.set_exception(exc)
            if group:
                await self._commit(group)

    async def _commit(self, group: list[Append]) -> None:
        try:
            await self._commit_group(group)
        finally:
            self._stamped = None  # the group is handed to on_commit, or will never be

    async def _commit_group(self, group: list[Append]) -> None:
        loop = asyncio.get_running_loop()
        flat = [e for a in group for e in a.events]
        started = time.perf_counter()
        try:
            appended = self.eventlog.stage(flat, self.clock)
            if appended.rows:
                self._stamped = appended.rows[0].clock  # clocks only grow within a group
            await loop.run_in_executor(self._executor, self.eventlog.commit)
        except StoreError as exc:
            log.error("commit_failed", n=len(flat), error=str(exc))
            for a in group:
                if not a.done.done():
                    a.done.set_exception(
                        ProtocolError(
                            "internal", "the event log could not commit; nothing of this request was logged"
                        )
                    )
            return
        finally:
            self.pending -= len(flat)
        elapsed = time.perf_counter() - started
        self.commits += 1
        self.commit_seconds += elapsed
        log.debug("batch_committed", n=len(flat), seq=self.eventlog.last_seq, ms=round(elapsed * 1000, 3))
        acks = appended.acks
        i = 0
        for a in group:
            if not a.done.done():
                a.done.set_result(acks[i : i + len(a.events)])
            i += len(a.events)
        if self.on_commit is not None and appended.rows:
            self.on_commit(appended.rows)
