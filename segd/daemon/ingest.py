"""Group commit: many concurrent requests, one durable transaction.

Requests ``submit`` their events and wait. One loop takes everything that arrived while the
previous commit ran and stages it as the next group (numbered and stamped, on the event
loop), while the writer thread may still be committing the group before; once that one is
durable, it answers its waiters, hands its rows, in log order, to ``on_commit`` (the router
to the shards) and starts committing the next. So staging overlaps the writer's inserts and
fsync instead of following them. A commit that fails answers ``internal`` to its waiters
and the group staged on top of it is staged again (it assumed the failed one's seqs).
The number of events waiting is bounded: past ``max_pending`` a submit fails with
``overloaded`` and nothing of it is logged.

Deduplication: msg_ids are checked in memory against the groups staged before; against the
log, a group's msg_ids are taken for new and the commit checks them (the log's unique index,
``EventLog.assume_new``), so a group of new events costs no lookup. A commit that meets a
msg_id already logged writes nothing (``SeenBefore``): the group is looked up and staged
again at once, the one staged on top of it too, and the next LOOK_UP_AFTER_SEEN groups look
their msg_ids up before staging (clients retrying after a restart send runs of them).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from actors.records import Ack, NewEvent, Row
from segd.clock import Clock
from segd.errors import ProtocolError, StoreError
from store.eventlog import Appended, EventLog, SeenBefore

log = structlog.get_logger("segd.daemon.ingest")

SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the GIL while another waits for it
#: A group with at least this many msg_ids not in memory looks them up in the log on a
#: thread of its own (SQLite releases the GIL), so the event loop decodes the next requests
#: meanwhile; a smaller group looks them up inline, cheaper than the thread hop.
LOOKUP_OFF_LOOP = 256
#: After a commit met a msg_id already in the log, this many groups look theirs up first.
LOOK_UP_AFTER_SEEN = 64

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


@dataclass(slots=True)
class _Committing:
    """A group whose commit runs on the writer thread (``done``)."""

    group: list[Append]
    appended: Appended
    events: int
    staging: float  # seconds its stage took
    started: float  # perf_counter when its commit started
    done: asyncio.Future[None]


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
        self._stamped: deque[float] = deque()  # first clock of each staged group, oldest first
        self._look_ups = 0  # groups still to look their msg_ids up before staging

    def horizon(self) -> float:
        """The clock of the earliest row stamped but not yet handed to ``on_commit`` (+inf if
        none). The router advances shards no further (``Router.horizon``): a timer must not
        fire live ahead of an event that replay applies before it."""
        return self._stamped[0] if self._stamped else math.inf

    def start(self) -> None:
        """Start the commit loop on the running event loop. Also shortens the interpreter's
        GIL switch interval (process-wide) to SWITCH_INTERVAL: the writer thread takes the GIL
        back after each INSERT and the fsync, and with the default 5 ms it queued that long
        behind the busy event loop each time (measured: ingest 35-50k/s -> 66-93k/s with
        2,048-row statements)."""
        sys.setswitchinterval(SWITCH_INTERVAL)
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
        committing: _Committing | None = None
        while True:
            if not self._queue:
                if committing is not None:
                    # Stage what arrives while the writer commits; answer once it is done.
                    if not committing.done.done():
                        self._wake.clear()
                        arrived = asyncio.ensure_future(self._wake.wait())
                        await asyncio.wait((committing.done, arrived), return_when=asyncio.FIRST_COMPLETED)
                        arrived.cancel()
                    if committing.done.done():
                        await self._finish(committing)
                        committing = None
                    continue
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
                            committing = await self._next(committing, group)
                            group = []
                        if committing is not None:
                            await self._finish(committing)
                            committing = None
                        try:
                            done.set_result(await fn())
                        except Exception as exc:
                            done.set_exception(exc)
            if group:
                committing = await self._next(committing, group)

    async def _next(self, committing: _Committing | None, group: list[Append]) -> _Committing | None:
        """Stage ``group`` while ``committing`` commits; once that is done, start committing
        ``group``. Returns what is committing now (None if ``group`` could not be staged)."""
        staged = await self._stage(group)
        if committing is not None and not await self._finish(committing) and staged is not None:
            self.eventlog.discard()  # staged on top of the group that failed: stage it again
            self._stamped.clear()
            staged = await self._stage(group)
        if staged is None:
            return None
        appended, seconds = staged
        done = asyncio.get_running_loop().run_in_executor(self._executor, self.eventlog.commit)
        n = sum(len(a.events) for a in group)
        return _Committing(group, appended, n, seconds, time.perf_counter(), done)

    async def _stage(self, group: list[Append], *, look_up: bool = False) -> tuple[Appended, float] | None:
        """Number and stamp ``group`` (see ``EventLog.stage``); None, with its waiters answered
        ``internal``, if that fails. Its msg_ids are taken for new unless ``look_up`` or a
        recent duplicate says to look them up; a large lookup runs on another thread."""
        started = time.perf_counter()
        events = [e for a in group for e in a.events]
        try:
            lookup = self.eventlog.prepare(events)
            if not lookup.unseen:
                pass
            elif not look_up and self._look_ups == 0:
                self.eventlog.assume_new(lookup)
            else:
                self._look_ups = max(self._look_ups - 1, 0)
                if len(lookup.unseen) >= LOOKUP_OFF_LOOP:
                    await asyncio.get_running_loop().run_in_executor(None, self.eventlog.look_up, lookup)
                else:
                    self.eventlog.look_up(lookup)
            appended = self.eventlog.stage(events, self.clock, lookup)
        except StoreError as exc:
            self._failed(group, exc)
            return None
        if appended.rows:
            self._stamped.append(appended.rows[0].clock)  # clocks only grow within a group
        return appended, time.perf_counter() - started

    async def _finish(self, c: _Committing) -> bool:
        """Wait for ``c``'s commit; answer its waiters, hand its rows on. False if what was
        staged on top of it must be staged again: ``c`` failed, or met a msg_id already in
        the log and was staged and committed again itself."""
        again = False
        while True:
            try:
                await c.done
                break
            except SeenBefore:
                # Nothing of it is written. Stage it again after a lookup, and the group
                # staged on top of it after that (which continued its seqs).
                self._look_ups = LOOK_UP_AFTER_SEEN
                self.eventlog.discard()
                self._stamped.clear()
                again = True
                staged = await self._stage(c.group, look_up=True)
                if staged is None:
                    return False
                c.appended, seconds = staged
                c.staging += seconds
                c.done = asyncio.get_running_loop().run_in_executor(self._executor, self.eventlog.commit)
            except StoreError as exc:
                if c.appended.rows:
                    self._stamped.popleft()
                self._failed(c.group, exc)
                return False
        if c.appended.rows:
            self._stamped.popleft()
        elapsed = time.perf_counter() - c.started + c.staging
        self.pending -= c.events
        self.commits += 1
        self.commit_seconds += elapsed
        log.debug(
            "batch_committed",
            n=c.events,
            seq=c.appended.rows[-1].seq if c.appended.rows else self.eventlog.last_seq,
            ms=round(elapsed * 1000, 3),
            at=round(time.monotonic(), 6),
        )
        acks = c.appended.acks
        i = 0
        for a in c.group:
            if not a.done.done():
                a.done.set_result(acks[i : i + len(a.events)])
            i += len(a.events)
        if self.on_commit is not None and c.appended.rows:
            self.on_commit(c.appended.rows)
        return not again

    def _failed(self, group: list[Append], exc: StoreError) -> None:
        n = sum(len(a.events) for a in group)
        self.pending -= n
        log.error("commit_failed", n=n, error=str(exc))
        for a in group:
            if not a.done.done():
                a.done.set_exception(
                    ProtocolError(
                        "internal", "the event log could not commit; nothing of this request was logged"
                    )
                )
