"""The router: the one submitter that feeds the shards, in log order.

Everything that changes shard state goes through one queue of typed items, processed by one
task: rows committed to the log (coalesced into batches, one Ray call per shard with rows per
batch), clock ticks, ``sync`` barriers, ``forget``, config reloads. Per batch: apply on the
shards, the next batch being sent while the shards work on this one (PIPELINE batches in
flight; Ray runs one submitter's calls to an actor in order); hand each shard's transitions
to ``on_transitions`` as soon as it answers (subscribers: transitions are derived, replay
gives the same ids, so they may go out before the segment managers commit them); then
record them at the segment managers and hand the campaign triggers and goal events to the
dispatcher, and begin the snapshots that are due. Once recorded the batch is *routed*:
``routed_seq`` is the log position up to which every effect is recorded.

Recording runs in the background, in log order, while the next batches are applied: one
recorder task takes every batch applied since its last round and records them in one call
to each manager and to the dispatcher. So neither a manager's commit nor the dispatcher's
is in the way of the next event's transitions, and when they are slower than the shards
their commits cover more batches instead of falling behind. What needs everything recorded
first (``sync``, ``forget``, a reload, stopping) waits for it (``_drain``), and so does the
next batch when MAX_UNRECORDED transitions wait (``segd.daemon.recorder``; the queue items
and batch records are in ``segd.daemon.batches``). Snapshots are off this path too
(``segd.daemon.snapshotter``): begun behind the calls sent so far, serialised by the shard
in steps between the next batches, stored once their effects are recorded.

Recovery: every shard call carries the applied seq the router expects the shard to be at.
A shard that Ray restarted refuses it (``ShardReply.ok`` False), and ``segd.daemon.recovery``
brings it back from its snapshot and the log before the batch goes on; what the replay
produces again reaches subscribers only if the managers had not recorded it.

Derived stores: a write to segments.db, snapshots.db or outbox.db that fails is retried with
backoff (``segd.daemon.stores``) and the daemon is degraded meanwhile; the recorder waits, so
the router applies at most MAX_UNRECORDED transitions past what is recorded, and rows go on
being logged and acknowledged (past ``max_queued`` they are read back from the log later).

Time: shards are never advanced past the clock of a row that is stamped but not yet here
(``horizon``, the committer's), so a timer never fires live ahead of an event that replay
applies before it.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from actors.placement import MANAGERS, shard_of
from actors.records import Row, ShardReply, Transition
from segd.clock import Clock
from segd.daemon.batches import (
    Barrier,
    Between,
    Effects,
    Forget,
    InFlight,
    Item,
    Rows,
    Stop,
    Tick,
    Trace,
)
from segd.daemon.recorder import Recorder
from segd.daemon.recovery import SCAN_BATCH, Recovery
from segd.daemon.runtime import ActorDown, Runtime, retrying
from segd.daemon.snapshotter import Snapshotter
from segd.daemon.stores import Stores
from store.eventlog import EventLog
from store.schema import OUTBOX_FILE, SEGMENTS_FILE, SNAPSHOTS_FILE
from store.snapshots import SnapshotStore

log = structlog.get_logger("segd.router")

MAX_BATCH = 20_000  # rows per routed batch
MAX_QUEUED = 200_000  # rows held in memory; past this the router reads them back from the log
PIPELINE = 2  # batches whose shard calls may be in flight at once


class RouterFailed(Exception):
    """The router stopped on an unexpected error; the daemon cannot apply events."""


class Router:
    """Feeds committed rows to the shards and their transitions to the segment managers."""

    def __init__(
        self,
        runtime: Runtime,
        eventlog: EventLog,
        snapshots: SnapshotStore,
        clock: Clock,
        *,
        fingerprint: str,
        snapshot_every: int,
        max_queued: int = MAX_QUEUED,
        on_transitions: Callable[[list[Transition]], None] | None = None,
        horizon: Callable[[], float] | None = None,
    ) -> None:
        """``on_transitions`` gets new transitions (subscribers); ``horizon()`` bounds how far
        ticks and barriers advance the shards: the clock of the earliest row stamped but not
        yet handed to ``submit_rows`` (the committer's ``horizon``; +inf when none)."""
        self.runtime = runtime
        self.eventlog = eventlog
        self.snapshots = snapshots
        self.clock = clock
        self.fingerprint = fingerprint
        self.snapshot_every = snapshot_every
        self.max_queued = max_queued
        self.on_transitions = on_transitions
        self.horizon = horizon
        self.recovery = Recovery(runtime, eventlog, snapshots, fingerprint=fingerprint)
        self.n = runtime.n
        self.applied = [0] * self.n  # each shard's applied seq, as it last reported
        self.expected = [0] * self.n  # ... once the calls in flight are applied
        self.since_snapshot = [0] * self.n  # rows applied by each shard since its snapshot
        self.sent_seq = 0  # the log up to here is applied at the shards (recorded or not yet)
        self.advanced = float("-inf")  # the largest clock a shard was advanced to
        self.catch_ups = 0  # times rows were read back from the log
        self.failed: BaseException | None = None
        self.stores = Stores()  # the derived stores' writes, retried while they fail
        self._queue: deque[Item] = deque()
        self._queued = 0  # rows in _queue
        self._behind = False  # rows were left in the log: catch up from disk
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: deque[InFlight] = deque()  # batches sent to the shards, in log order
        self.recorder = Recorder(runtime, self.stores, on_transitions)  # effects, in the background
        self._record_later = self.recorder.later
        self._drain = self.recorder.drain
        self.snapshotter = Snapshotter(
            runtime,
            snapshots,
            self.stores,
            self.recorder.recorded,
            shards=self.n,
            fingerprint=fingerprint,
        )
        self._tick_pending = False

    @property
    def recoveries(self) -> int:
        """Shards recovered after a failure."""
        return self.recovery.count

    @property
    def routed_seq(self) -> int:
        """Every effect of the log up to here is recorded."""
        return self.recorder.routed_seq

    @routed_seq.setter
    def routed_seq(self, seq: int) -> None:
        self.recorder.routed_seq = seq

    @property
    def transitions(self) -> int:
        """New transitions recorded."""
        return self.recorder.transitions

    @property
    def lag(self) -> int:
        """Events logged but not yet routed."""
        return self.eventlog.last_seq - self.routed_seq

    # ------------------------------------------------------------------ intake

    def submit_rows(self, rows: list[Row]) -> None:
        """Called by the committer, in log order, right after each commit.

        Memory stays bounded when ingest outpaces the shards: past ``max_queued`` rows they are
        not queued, and the router reads them back from the log when it gets to them.
        """
        if self._queued + len(rows) > self.max_queued:
            if not self._behind:
                log.warning("routing_behind", queued=self._queued, action="reading back from the log")
            self._behind = True
        else:
            self._put(Rows(rows, time.monotonic()))
            self._queued += len(rows)

    def now(self) -> float:
        """The clock shards may be advanced to now: the engine clock, but never past a row
        stamped and not yet submitted (its events would then be applied after timers that
        replay fires after them). Rows committed before this call are queued already."""
        clock = self.clock.now(time.time())
        return min(clock, self.horizon()) if self.horizon is not None else clock

    def tick(self) -> None:
        """Ask for an advance of every shard to the current clock (timers), unless one is queued."""
        if not self._tick_pending:
            self._tick_pending = True
            self._put(Tick(self.now()))

    async def sync(self) -> int:
        """Wait until everything queued before this call is routed and due timers have fired."""
        clock = self.now()
        seq: int = await self._ask(lambda done: Barrier(clock, done))
        return seq

    async def forget(self, user: str) -> int:
        """Erase ``user`` from its shard, the segment managers and the outbox, in log order
        (after every row queued before the call); returns the segments the user left.

        The user's exits reach subscribers but no history and no dispatcher. The shard's
        snapshot, which held the user's state, is replaced. The caller erases the log rows.
        """
        left: int = await self._ask(lambda done: Forget(user, done))
        return left

    async def between_batches(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn()`` in the router's loop, after everything queued before (config reload)."""
        return await self._ask(lambda done: Between(fn, done))

    def _put(self, item: Item) -> None:
        self._queue.append(item)
        self._wake.set()

    async def _ask(self, make: Callable[[asyncio.Future[Any]], Item]) -> Any:
        if self.failed is not None:
            raise RouterFailed(f"event routing stopped: {self.failed!r}")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(make(done))
        return await done

    # ------------------------------------------------------------------ start-up and shutdown

    async def recover(
        self, until: int | None = None, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Start-up: restore every shard from its snapshot, replay the log after it to each.

        ``until`` stops the replay at that log position (default: the end of the log), and
        time then stands at that position's clock; ``progress(done, total)`` is called per batch.
        """
        started = time.monotonic()
        self.applied = list(await asyncio.gather(*(self.recovery.restore(i) for i in range(self.n))))
        self.expected = list(self.applied)
        self.routed_seq = self.sent_seq = min(self.applied, default=0)
        until = self.eventlog.last_seq if until is None else min(until, self.eventlog.last_seq)
        log.info("recovery_started", snapshots=self.applied, replay_from=self.routed_seq, until=until)
        replayed, clock = await self._route_from_log(until, progress)
        await self._advance_all(
            max(clock, self.advanced) if until < self.eventlog.last_seq else self.clock.value
        )
        await self._drain()
        self.routed_seq = self.sent_seq = max(until, self.routed_seq)
        log.info(
            "recovery_done",
            replayed=replayed,
            seconds=round(time.monotonic() - started, 3),
            routed_seq=self.routed_seq,
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="segd-router")

    async def close(self, *, snapshot: bool = True) -> None:
        """Route everything queued, snapshot every shard (unless ``snapshot`` is False), stop.
        A derived store that still fails is tried once more, then its error is raised."""
        self.stores.close()
        if self._task is not None:
            self._put(Stop())
            await self._task
        if snapshot and self.failed is None:
            await self.snapshotter.settle()
            await asyncio.gather(*(self._snapshot(i) for i in range(self.n)))

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        item: Item | None = None
        try:
            while True:
                if self._behind:
                    await self._catch_up()
                if not self._queue:
                    self._wake.clear()
                    if self._inflight:  # settle the oldest batch once answered, or route more
                        arrived = asyncio.ensure_future(self._wake.wait())
                        oldest = self._inflight[0].answered
                        await asyncio.wait((oldest, arrived), return_when=asyncio.FIRST_COMPLETED)
                        arrived.cancel()
                        if oldest.done():
                            await self._settle()
                    else:
                        await self._wake.wait()
                    continue
                item = self._queue.popleft()
                match item:
                    case Rows(rows, at):
                        await self._route_queued(rows, at)
                    case Tick(clock):
                        self._tick_pending = False
                        await self._advance_all(clock)
                    case Barrier(clock, done):
                        await self._advance_all(clock)
                        await self._drain()
                        await self.snapshotter.settle()
                        done.set_result(self.routed_seq)
                    case Forget(user, done):
                        await self._quiesce()
                        await _answer(done, self._forget(user), ActorDown)  # an actor gone for good
                    case Between(fn, done):
                        await self._quiesce()
                        await _answer(done, fn(), Exception)  # a failed reload changes nothing
                    case Stop():
                        await self._quiesce()
                        return
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("router_failed")
            self.failed = exc
            self.recorder.cancel()
            self.snapshotter.cancel()
            for batch in self._inflight:
                batch.answered.cancel()
                for _, call in batch.calls:
                    call.cancel()
            for waiting in [item, *self._queue] if item is not None else self._queue:
                if isinstance(waiting, (Barrier, Forget, Between)) and not waiting.done.done():
                    waiting.done.set_exception(RouterFailed(f"event routing stopped: {exc!r}"))
            raise

    async def _route_queued(self, rows: list[Row], at: float) -> None:
        """Route ``rows`` and the rows queued right behind them (up to MAX_BATCH) as one batch."""
        queue = self._queue
        if queue and isinstance(queue[0], Rows) and len(rows) < MAX_BATCH:
            rows = list(rows)  # one list grown in place, not one copy per group joined
            while queue and isinstance(queue[0], Rows) and len(rows) < MAX_BATCH:
                more = queue.popleft()
                assert isinstance(more, Rows)
                rows += more.rows
        self._queued -= len(rows)
        if rows[-1].seq <= self.sent_seq:
            return  # already routed by a catch-up from the log
        if rows[0].seq <= self.sent_seq:
            rows = [r for r in rows if r.seq > self.sent_seq]
        await self._route(rows, rows[-1].clock, Trace(rows[0].seq, rows[-1].seq, at, time.monotonic()))

    async def _catch_up(self) -> None:
        """Route everything committed so far, reading it from the log (after falling behind)."""
        self._behind = False
        self.catch_ups += 1
        await self._route_from_log(self.eventlog.last_seq)
        log.info("routing_caught_up", routed_seq=self.routed_seq)

    async def _route_from_log(
        self, until: int, progress: Callable[[int, int], None] | None = None
    ) -> tuple[int, float]:
        """Route the log after ``sent_seq`` up to ``until``, read back from disk.

        Returns the rows read and the clock of the last one (-inf if none).
        """
        done, total, clock = 0, max(until - self.sent_seq, 0), float("-inf")
        scan = self.eventlog.scan(after=self.sent_seq, until=until, batch=SCAN_BATCH)
        ahead = asyncio.ensure_future(asyncio.to_thread(next, scan, None))
        try:
            while chunk := await ahead:
                # read the next chunk while the shards fold this one
                ahead = asyncio.ensure_future(asyncio.to_thread(next, scan, None))
                clock = chunk[-1].clock
                read = time.monotonic()
                await self._route(chunk, clock, Trace(chunk[0].seq, chunk[-1].seq, read, read))
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            await self._settle_all()
        finally:
            if not ahead.done():
                await asyncio.wait([ahead])  # the read in flight ends before the scan is dropped
        return done, clock

    async def _route(self, rows: list[Row], clock: float, trace: Trace) -> None:
        """Send rows (those a shard has not applied yet) to the shards that have any; their
        transitions go to subscribers as each shard answers. Up to PIPELINE batches are in
        flight (Ray runs one submitter's calls to an actor in order), so the next batch is
        sent while the shards work on this one; a batch is settled (recovery if refused,
        recording, snapshots) once answered, in order."""
        n = self.n
        if n == 1:
            slices = [rows]
        else:
            slices = [[] for _ in range(n)]
            crc = zlib.crc32  # shard_of, inlined: this loop runs once per event
            for r in rows:
                slices[crc(r.user.encode()) % n].append(r)
        expected = self.expected
        for i, s in enumerate(slices):
            if s and s[0].seq <= expected[i]:  # start-up replay: the shard's snapshot has these
                slices[i] = [r for r in s if r.seq > expected[i]]
        # A shard without rows is not called: ticks advance its timers (every `tick`), and
        # transition ids and times do not depend on when a deadline is fired.
        calls: list[tuple[int, asyncio.Task[ShardReply]]] = []
        expects: dict[int, int] = {}
        loop = asyncio.get_running_loop()
        for i in range(n):
            if slices[i]:
                expects[i] = expected[i]
                calls.append((i, loop.create_task(self._call(i, slices[i], clock, expected[i]))))
                expected[i] = slices[i][-1].seq  # a shard's applied seq is the last row it applied
        answered = asyncio.gather(*(call for _, call in calls)) if calls else loop.create_future()
        if not calls:
            answered.set_result([])
        self.sent_seq = rows[-1].seq
        self._inflight.append(
            InFlight(
                calls,
                answered,
                expects,
                {i: len(slices[i]) for i in expects},
                rows,
                clock,
                rows[-1].seq,
                trace,
            )
        )
        if len(self._inflight) >= PIPELINE:
            await self._settle()

    async def _call(self, i: int, rows: list[Row], clock: float, expect: int) -> ShardReply:
        reply = await self.runtime.apply(i, rows, clock, expect)
        if reply.ok:
            self._publish(reply)
        return reply

    async def _settle(self) -> None:
        """Settle the oldest batch in flight: a shard that refused it is recovered up to the
        batch; its effects go to the recorder; snapshots that are due are taken."""
        batch = self._inflight.popleft()
        replies: list[tuple[ShardReply, bool]] = []
        for (i, _), reply in zip(batch.calls, await batch.answered, strict=True):
            if reply.ok:
                self.applied[i] = reply.applied_seq
                replies.append((reply, False))
            else:
                log.warning("shard_recovering", shard=i, expected=batch.expects[i], found=reply.applied_seq)
                replies.append((await self._recover(i, batch.upto, batch.clock), True))
        batch.trace.applied = time.monotonic()
        if batch.clock > self.advanced:
            self.advanced = batch.clock
        effects = self._effects(replies)
        await self._record_later(
            effects, batch.clock, self.runtime.policy.goals_of(batch.rows), batch.upto, batch.trace
        )
        self.snapshotter.raise_failed()
        for i, size in batch.sizes.items():
            self.since_snapshot[i] += size
            if self.since_snapshot[i] >= self.snapshot_every and not self.snapshotter.pending(i):
                # Behind the calls sent so far (see segd.daemon.snapshotter): stored once
                # their effects are recorded, while the next batches go on.
                self.since_snapshot[i] = 0
                self.snapshotter.later(i, self.expected[i], self.sent_seq)

    async def _settle_all(self) -> None:
        while self._inflight:
            await self._settle()

    async def _quiesce(self) -> None:
        """Nothing in flight, every effect recorded, every pending snapshot stored."""
        await self._settle_all()
        await self._drain()
        await self.snapshotter.settle()

    @staticmethod
    def _effects(replies: list[tuple[ShardReply, bool]]) -> Effects:
        """Collect the shards' replies (``(reply, replayed)``, in shard order)."""
        effects = Effects()
        for reply, replayed in replies:
            effects.add(reply, replayed=replayed)
        return effects

    def _publish(self, reply: ShardReply) -> None:
        """A shard's fresh transitions go to subscribers as soon as it answers: an event on
        one shard does not wait for the other shards' answers."""
        if reply.transitions and self.on_transitions is not None:
            self.on_transitions(reply.transitions)

    async def _advance_all(self, clock: float) -> None:
        await self._settle_all()
        effects = self._effects(await asyncio.gather(*(self._advance(i, clock) for i in range(self.n))))
        if clock > self.advanced:
            self.advanced = clock
        await self._record_later(effects, clock, [], self.sent_seq, None)

    async def _advance(self, i: int, clock: float) -> tuple[ShardReply, bool]:
        reply = await self.runtime.advance(i, clock, self.applied[i])
        if reply.ok:
            self._publish(reply)
            return reply, False
        return await self._recover(i, self.sent_seq, clock), True

    async def _recover(self, i: int, upto: int, clock: float) -> ShardReply:
        """Bring shard ``i`` back to the log up to ``upto``. A batch still in flight to it
        was sent before the recovery began, so the restarted shard refuses it too, and its
        settling recovers the shard again, up to that batch."""
        reply = await self.recovery.recover(i, upto, max(clock, self.advanced))
        self.applied[i] = reply.applied_seq
        if not any(i == j for batch in self._inflight for j, _ in batch.calls):
            self.expected[i] = reply.applied_seq
        self.since_snapshot[i] = 0
        return reply

    async def _forget(self, user: str) -> int:
        i = shard_of(user, self.n)
        while not (reply := await self.runtime.forget(i, user, self.applied[i])).ok:
            await self._recover(i, self.sent_seq, self.advanced)  # its transitions were recorded before
        # The old snapshot holds the user's state: drop it before anything else can read it.
        persist = self.stores.persist
        await persist(SNAPSHOTS_FILE, asyncio.to_thread, self.snapshots.delete, i)
        for m in range(MANAGERS):
            await persist(SEGMENTS_FILE, retrying, f"manager {m}", self.runtime.forget_at_manager, m, user)
        if self.runtime.dispatcher is not None:
            await persist(OUTBOX_FILE, retrying, "dispatcher", self.runtime.forget_messages, user)
        await self._snapshot(i)
        exits = reply.transitions
        if exits and self.on_transitions is not None:
            self.on_transitions(exits)
        log.info("user_forgotten", shard=i, segments_left=len(exits))
        return len(exits)

    async def _snapshot(self, i: int) -> None:
        """Store shard ``i``'s state. A shard that is restarting is skipped: nothing changes,
        and the next call to it finds the restart and recovers it."""
        if await self.snapshotter.now(i, self.applied[i]):
            self.since_snapshot[i] = 0


async def _answer(done: asyncio.Future[Any], work: Awaitable[Any], expected: type[Exception]) -> None:
    """Settle ``done`` with what ``work`` returns, or with an ``expected`` error it raises;
    any other error propagates and stops the router."""
    try:
        done.set_result(await work)
    except expected as exc:
        done.set_exception(exc)
