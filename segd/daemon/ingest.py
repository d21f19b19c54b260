"""Group commit: many concurrent requests, one durable transaction.

Requests ``submit`` their events and wait. One loop takes everything that arrived while the
previous commit ran, appends it in one transaction on the commit thread, then answers every
waiter and hands the new rows, in log order, to ``on_commit`` (the router to the shards).
The number of events waiting is bounded: past ``max_pending`` a submit fails with
``overloaded`` and nothing of it is logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import structlog

from segd.clock import Clock
from segd.errors import ProtocolError, StoreError
from store.eventlog import EventLog, NewEvent, Row

log = structlog.get_logger("segd.daemon.ingest")

T = TypeVar("T")


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
        self._queue: list[tuple[list[NewEvent], asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segd-commit")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="segd-commit")

    async def submit(self, events: list[NewEvent]) -> list[tuple[int, bool]]:
        """Log ``events`` durably; returns one ``(seq, duplicate)`` per event.

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
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((events, fut))
        self.pending += len(events)
        self._wake.set()
        return await fut

    async def exclusive(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` on the event loop between two commits: everything submitted before
        is committed (and handed to ``on_commit``) first, nothing after is committed until
        it returns. For ``forget``, which must not race with appends."""
        if self._closing:
            raise ProtocolError("unavailable", "segd is shutting down; retry on the next daemon")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((fn, fut))
        self._wake.set()
        return await fut

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
            groups: list = []
            for item in items:
                if callable(item[0]):
                    if groups:
                        await self._commit(groups)
                        groups = []
                    fn, fut = item
                    try:
                        fut.set_result(await fn())
                    except Exception as exc:
                        fut.set_exception(exc)
                else:
                    groups.append(item)
            if groups:
                await self._commit(groups)

    async def _commit(self, groups: list[tuple[list[NewEvent], asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        flat = [e for events, _ in groups for e in events]
        started = time.perf_counter()
        try:
            appended = self.eventlog.stage(flat, self.clock)
            await loop.run_in_executor(self._executor, self.eventlog.commit)
        except StoreError as exc:
            log.error("commit_failed", n=len(flat), error=str(exc))
            for _, fut in groups:
                if not fut.done():
                    fut.set_exception(
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
        results = appended.results
        i = 0
        for events, fut in groups:
            if not fut.done():
                fut.set_result(results[i : i + len(events)])
            i += len(events)
        if self.on_commit is not None and appended.rows:
            self.on_commit(appended.rows)
