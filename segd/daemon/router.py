"""The router: the one submitter that feeds the shards, in log order.

Everything that changes shard state goes through one queue of typed items, processed by one
task: rows committed to the log (coalesced into batches, one Ray call per shard per batch),
clock ticks, ``sync`` barriers, ``forget``, config reloads. Per batch: apply on every shard,
record the resulting transitions at the segment managers, hand the new ones to
``on_transitions`` (subscribers) and the campaign triggers and goal events to the
dispatcher, and take the snapshots that are due. Only then is the batch *routed*:
``routed_seq`` is the log position up to which every effect is recorded.

Recovery: every shard call carries the applied seq the router expects the shard to be at.
A shard that Ray restarted refuses it (``ShardReply.ok`` False), and ``segd.daemon.recovery``
brings it back from its snapshot and the log before the batch goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from actors.placement import MANAGERS, manager_of, shard_of
from actors.records import GoalEvent, Row, ShardReply, Transition, UserContext
from segd.clock import Clock
from segd.daemon.recovery import SCAN_BATCH, Recovery
from segd.daemon.runtime import ActorDown, Runtime, retrying
from store.eventlog import EventLog
from store.snapshots import Snapshot, SnapshotStore

log = structlog.get_logger("segd.router")

MAX_BATCH = 20_000  # rows per routed batch
MAX_QUEUED = 200_000  # rows held in memory; past this the router reads them back from the log


class RouterFailed(Exception):
    """The router stopped on an unexpected error; the daemon cannot apply events."""


# ---------------------------------------------------------------------- queue items


@dataclass(slots=True)
class Rows:
    """Rows just committed to the log, in log order."""

    rows: list[Row]


@dataclass(slots=True)
class Tick:
    """Advance every shard to the current clock (wall-mode timers)."""


@dataclass(slots=True)
class Barrier:
    """``sync``: answered with ``routed_seq`` once everything queued before is routed."""

    done: asyncio.Future[int]


@dataclass(slots=True)
class Forget:
    """Erase ``user`` from the shards, managers and outbox; answered with segments left."""

    user: str
    done: asyncio.Future[int]


@dataclass(slots=True)
class Between:
    """Run ``fn()`` between two batches (config reload); answered with its result."""

    fn: Callable[[], Awaitable[Any]]
    done: asyncio.Future[Any]


@dataclass(slots=True)
class Stop:
    """Route what is queued before this, then stop."""


Item = Rows | Tick | Barrier | Forget | Between | Stop


@dataclass(slots=True)
class Effects:
    """What applying a batch produced on the shards, to be recorded."""

    transitions: list[Transition] = field(default_factory=list)
    contexts: dict[str, UserContext] = field(default_factory=dict)

    def add(self, reply: ShardReply) -> None:
        self.transitions += reply.transitions
        self.contexts.update(reply.contexts)


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
    ) -> None:
        self.runtime = runtime
        self.eventlog = eventlog
        self.snapshots = snapshots
        self.clock = clock
        self.fingerprint = fingerprint
        self.snapshot_every = snapshot_every
        self.max_queued = max_queued
        self.on_transitions = on_transitions
        self.recovery = Recovery(runtime, eventlog, snapshots, fingerprint=fingerprint)
        self.n = runtime.n
        self.applied = [0] * self.n  # each shard's applied seq, as it last reported
        self.since_snapshot = [0] * self.n  # rows applied by each shard since its snapshot
        self.routed_seq = 0
        self.advanced = float("-inf")  # the last clock every shard was advanced to
        self.dispatched_clock = float("-inf")  # the last clock passed to the dispatcher
        self.transitions = 0  # new transitions recorded
        self.catch_ups = 0  # times rows were read back from the log
        self.failed: BaseException | None = None
        self._queue: deque[Item] = deque()
        self._queued = 0  # rows in _queue
        self._behind = False  # rows were left in the log: catch up from disk
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tick_pending = False

    @property
    def recoveries(self) -> int:
        """Shards recovered after a failure."""
        return self.recovery.count

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
            self._put(Rows(rows))
            self._queued += len(rows)

    def tick(self) -> None:
        """Ask for an advance of every shard to the current clock (timers), unless one is queued."""
        if not self._tick_pending:
            self._tick_pending = True
            self._put(Tick())

    async def sync(self) -> int:
        """Wait until everything queued before this call is routed and due timers have fired."""
        seq: int = await self._ask(lambda done: Barrier(done))
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
        self.routed_seq = min(self.applied, default=0)
        until = self.eventlog.last_seq if until is None else min(until, self.eventlog.last_seq)
        log.info("recovery_started", snapshots=self.applied, replay_from=self.routed_seq, until=until)
        replayed, clock = await self._route_from_log(until, progress)
        await self._advance_all(
            max(clock, self.advanced) if until < self.eventlog.last_seq else self.clock.value
        )
        self.routed_seq = max(until, self.routed_seq)
        log.info(
            "recovery_done",
            replayed=replayed,
            seconds=round(time.monotonic() - started, 3),
            routed_seq=self.routed_seq,
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="segd-router")

    async def close(self, *, snapshot: bool = True) -> None:
        """Route everything queued, snapshot every shard (unless ``snapshot`` is False), stop."""
        if self._task is not None:
            self._put(Stop())
            await self._task
        if snapshot and self.failed is None:
            await asyncio.gather(*(self._snapshot(i) for i in range(self.n)))

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        try:
            while True:
                if self._behind:
                    await self._catch_up()
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                match self._queue.popleft():
                    case Rows(rows):
                        await self._route_queued(rows)
                    case Tick():
                        self._tick_pending = False
                        await self._advance_all(self.clock.now(time.time()))
                    case Barrier(done):
                        await self._advance_all(self.clock.now(time.time()))
                        done.set_result(self.routed_seq)
                    case Forget(user, done):
                        await _answer(done, self._forget(user), ActorDown)  # an actor gone for good
                    case Between(fn, done):
                        await _answer(done, fn(), Exception)  # a failed reload changes nothing
                    case Stop():
                        return
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("router_failed")
            self.failed = exc
            for item in self._queue:
                if isinstance(item, (Barrier, Forget, Between)) and not item.done.done():
                    item.done.set_exception(RouterFailed(f"event routing stopped: {exc!r}"))
            raise

    async def _route_queued(self, rows: list[Row]) -> None:
        """Route ``rows`` and the rows queued right behind them (up to MAX_BATCH) as one batch."""
        queue = self._queue
        while queue and isinstance(queue[0], Rows) and len(rows) < MAX_BATCH:
            more = queue.popleft()
            assert isinstance(more, Rows)
            rows = rows + more.rows
        self._queued -= len(rows)
        if rows[-1].seq <= self.routed_seq:
            return  # already routed by a catch-up from the log
        if rows[0].seq <= self.routed_seq:
            rows = [r for r in rows if r.seq > self.routed_seq]
        await self._route(rows, rows[-1].clock)
        self.routed_seq = rows[-1].seq

    async def _catch_up(self) -> None:
        """Route everything committed so far, reading it from the log (after falling behind)."""
        self._behind = False
        self.catch_ups += 1
        await self._route_from_log(self.eventlog.last_seq)
        log.info("routing_caught_up", routed_seq=self.routed_seq)

    async def _route_from_log(
        self, until: int, progress: Callable[[int, int], None] | None = None
    ) -> tuple[int, float]:
        """Route the log after ``routed_seq`` up to ``until``, read back from disk.

        Returns the rows read and the clock of the last one (-inf if none).
        """
        done, total, clock = 0, max(until - self.routed_seq, 0), float("-inf")
        scan = self.eventlog.scan(after=self.routed_seq, until=until, batch=SCAN_BATCH)
        ahead = asyncio.ensure_future(asyncio.to_thread(next, scan, None))
        try:
            while chunk := await ahead:
                # read the next chunk while the shards fold this one
                ahead = asyncio.ensure_future(asyncio.to_thread(next, scan, None))
                clock = chunk[-1].clock
                await self._route(chunk, clock)
                self.routed_seq = chunk[-1].seq
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        finally:
            if not ahead.done():
                await asyncio.wait([ahead])  # the read in flight ends before the scan is dropped
        return done, clock

    async def _route(self, rows: list[Row], clock: float) -> None:
        """Apply rows (those a shard has not applied yet) on every shard, then record."""
        n = self.n
        slices: list[list[Row]] = [[] for _ in range(n)]
        for r in rows:
            slices[shard_of(r.user, n)].append(r)
        applied = self.applied
        for i, s in enumerate(slices):
            if s and s[0].seq <= applied[i]:  # start-up replay: the shard's snapshot has these
                slices[i] = [r for r in s if r.seq > applied[i]]
        upto = rows[-1].seq
        effects = Effects()
        for reply in await asyncio.gather(*(self._apply(i, slices[i], clock, upto) for i in range(n))):
            effects.add(reply)
        await self._record(effects, clock, self.runtime.policy.goals_of(rows))
        if clock > self.advanced:
            self.advanced = clock
        for i, s in enumerate(slices):
            self.since_snapshot[i] += len(s)
            if self.since_snapshot[i] >= self.snapshot_every:
                await self._snapshot(i)

    async def _apply(self, i: int, rows: list[Row], clock: float, upto: int) -> ShardReply:
        reply = await self.runtime.apply(i, rows, clock, self.applied[i])
        if reply.ok:
            self.applied[i] = reply.applied_seq
            return reply
        log.warning("shard_recovering", shard=i, expected=self.applied[i], found=reply.applied_seq)
        return await self._recover(i, upto, clock)

    async def _advance_all(self, clock: float) -> None:
        effects = Effects()
        for reply in await asyncio.gather(*(self._advance(i, clock) for i in range(self.n))):
            effects.add(reply)
        await self._record(effects, clock, [])
        if clock > self.advanced:
            self.advanced = clock

    async def _advance(self, i: int, clock: float) -> ShardReply:
        reply = await self.runtime.advance(i, clock, self.applied[i])
        return reply if reply.ok else await self._recover(i, self.routed_seq, clock)

    async def _recover(self, i: int, upto: int, clock: float) -> ShardReply:
        reply = await self.recovery.recover(i, upto, max(clock, self.advanced))
        self.applied[i] = reply.applied_seq
        self.since_snapshot[i] = 0
        return reply

    async def _forget(self, user: str) -> int:
        i = shard_of(user, self.n)
        while not (reply := await self.runtime.forget(i, user, self.applied[i])).ok:
            await self._recover(i, self.routed_seq, self.advanced)  # its transitions were recorded before
        # The old snapshot holds the user's state: drop it before anything else can read it.
        await asyncio.to_thread(self.snapshots.delete, i)
        for m in range(MANAGERS):
            await retrying(f"manager {m}", self.runtime.forget_at_manager, m, user)
        if self.runtime.dispatcher is not None:
            await retrying("dispatcher", self.runtime.forget_messages, user)
        await self._snapshot(i)
        exits = reply.transitions
        if exits and self.on_transitions is not None:
            self.on_transitions(exits)
        log.info("user_forgotten", shard=i, segments_left=len(exits))
        return len(exits)

    async def _snapshot(self, i: int) -> None:
        """Store shard ``i``'s state. A shard that is restarting is skipped: nothing changes,
        and the next call to it finds the restart and recovers it."""
        snap = await self.runtime.snapshot(i, self.applied[i])
        if snap is None:
            log.warning("snapshot_skipped", shard=i, reason="shard restarting or restarted")
            return
        await asyncio.to_thread(
            self.snapshots.put, Snapshot(i, self.n, self.fingerprint, snap.applied_seq, snap.state)
        )
        self.since_snapshot[i] = 0
        log.info("snapshot_taken", shard=i, seq=snap.applied_seq, bytes=len(snap.state))

    # ------------------------------------------------------------------ segment managers, dispatch

    async def _record(self, effects: Effects, clock: float, goals: list[GoalEvent]) -> None:
        """Record transitions at the managers and, at the same time, hand the dispatcher every
        campaign trigger (new or not: it dedupes by message id) with the batch's goal events;
        the new transitions go to ``on_transitions``. Both are done before this returns, so
        a snapshot taken after it never covers a transition that is not recorded."""
        calls: list[Awaitable[Any]] = []
        if effects.transitions:
            calls.append(self._record_at_managers(effects.transitions))
        if self.runtime.dispatcher is not None:
            triggers = self.runtime.policy.triggers_of(effects.transitions, effects.contexts)
            if triggers or goals or clock > self.dispatched_clock:
                calls.append(retrying("dispatcher", self.runtime.dispatch, triggers, goals, clock))
                self.dispatched_clock = max(clock, self.dispatched_clock)
        if calls:
            await asyncio.gather(*calls)

    async def _record_at_managers(self, transitions: list[Transition]) -> None:
        by_manager: list[list[Transition]] = [[] for _ in range(MANAGERS)]
        for t in transitions:
            by_manager[manager_of(t.segment)].append(t)
        new: list[Transition] = []
        for m, ts in enumerate(by_manager):
            if ts:
                new += await retrying(f"manager {m}", self.runtime.record, m, ts)
        self.transitions += len(new)
        if new and self.on_transitions is not None:
            self.on_transitions(new)


async def _answer(done: asyncio.Future[Any], work: Awaitable[Any], expected: type[Exception]) -> None:
    """Settle ``done`` with what ``work`` returns, or with an ``expected`` error it raises;
    any other error propagates and stops the router."""
    try:
        done.set_result(await work)
    except expected as exc:
        done.set_exception(exc)
