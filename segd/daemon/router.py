"""The router: the one submitter that feeds the shards, in log order.

Everything that changes shard state goes through one queue, processed by one task: rows
committed to the log (coalesced into batches, one Ray call per shard per batch), clock ticks,
``sync`` barriers. Per batch: apply on every shard, record the resulting transitions at the
segment managers, hand the new ones to ``on_transitions`` (subscribers, dispatch), and take
the snapshots that are due. Only then is the batch *routed*: ``routed_seq`` is the log
position up to which every effect is recorded.

Recovery: every shard call carries the applied seq the router expects the shard to be at.
A shard restarted by Ray comes back empty and refuses such a call (or the call fails while
it restarts); the router then restores the shard's latest snapshot and re-sends its part
of the log after it. Transitions are idempotent by id, so what is produced twice is
recorded once, and the outcome equals a run without the failure.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from segd.clock import Clock
from segd.daemon.runtime import MANAGERS, Runtime, is_actor_failure, manager_of, shard_of
from store.eventlog import EventLog, Row
from store.snapshots import Snapshot, SnapshotStore

log = structlog.get_logger("segd.daemon.router")

MAX_BATCH = 20_000  # rows per routed batch
MAX_QUEUED = 200_000  # rows held in memory; past this the router reads them back from the log
RECOVERY_TIMEOUT = 120.0  # seconds to wait for Ray to bring a shard back
_SYNC, _TICK, _FORGET, _CALL = "sync", "tick", "forget", "call"


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
        on_transitions: Callable[[list[tuple]], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.eventlog = eventlog
        self.snapshots = snapshots
        self.clock = clock
        self.fingerprint = fingerprint
        self.snapshot_every = snapshot_every
        self.max_queued = max_queued
        self.on_transitions = on_transitions
        self.n = runtime.n
        self.applied = [0] * self.n  # each shard's applied seq, as it last reported
        self.since_snapshot = [0] * self.n  # rows applied by each shard since its snapshot
        self.routed_seq = 0
        self.advanced = float("-inf")  # the last clock every shard was advanced to
        self.dispatched_clock = float("-inf")  # the last clock passed to the dispatcher
        self.transitions = 0  # new transitions recorded
        self.recoveries = 0
        self.catch_ups = 0  # times rows were read back from the log
        self.failed: BaseException | None = None
        self._queue: deque = deque()
        self._queued = 0  # rows in _queue
        self._behind = False  # rows were left in the log: catch up from disk
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._tick_pending = False

    # ------------------------------------------------------------------ intake

    def submit_rows(self, rows: list[Row]) -> None:
        """Called by the committer, in log order, right after each commit.

        Memory stays bounded when ingest outpaces the shards: past ``max_queued`` rows they are
        not queued, and the router reads them back from the log when it gets to them.
        ``max_queued`` (default MAX_QUEUED) is that bound.
        """
        if self._queued + len(rows) > self.max_queued:
            if not self._behind:
                log.warning("routing_behind", queued=self._queued, action="reading back from the log")
            self._behind = True
        else:
            self._queue.append(rows)
            self._queued += len(rows)
        self._wake.set()

    def tick(self) -> None:
        """Ask for an advance of every shard to the current clock (timers), unless one is queued."""
        if not self._tick_pending:
            self._tick_pending = True
            self._queue.append(_TICK)
            self._wake.set()

    async def sync(self) -> int:
        """Wait until everything queued before this call is routed and due timers have fired."""
        self._check()
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((_SYNC, fut))
        self._wake.set()
        return await fut

    async def forget(self, user: str) -> int:
        """Erase ``user`` from its shard, the segment managers and the outbox, in log order
        (after every row queued before the call); returns the segments the user left.

        The user's exits reach subscribers but no history and no dispatcher. The shard's
        snapshot, which held the user's state, is replaced. The caller erases the log rows.
        """
        self._check()
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((_FORGET, user, fut))
        self._wake.set()
        return await fut

    async def between_batches(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn()`` in the router's loop, after everything queued before (config reload)."""
        self._check()
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((_CALL, fn, fut))
        self._wake.set()
        return await fut

    @property
    def lag(self) -> int:
        return self.eventlog.last_seq - self.routed_seq

    def _check(self) -> None:
        if self.failed is not None:
            raise RouterFailed(f"event routing stopped: {self.failed!r}")

    # ------------------------------------------------------------------ start-up and shutdown

    async def recover(
        self, until: int | None = None, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Start-up: restore every shard from its snapshot, replay the log after it to each.

        ``until`` stops the replay at that log position (default: the end of the log), and
        time then stands at that position's clock; ``progress(done, total)`` is called per batch.
        """
        started = time.monotonic()
        restored = await asyncio.gather(*(self._restore(i) for i in range(self.n)))
        self.applied = list(restored)
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

    async def close(self) -> None:
        """Route everything queued, snapshot every shard, stop."""
        if self._task is not None:
            self._queue.append(None)
            self._wake.set()
            await self._task
        if self.failed is None:
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
                item = self._queue.popleft()
                if item is None:
                    return
                if item == _TICK:
                    self._tick_pending = False
                    await self._advance_all(self.clock.now(time.time()))
                elif isinstance(item, tuple) and item[0] == _CALL:
                    try:
                        item[2].set_result(await item[1]())
                    except Exception as exc:
                        item[2].set_exception(exc)
                elif isinstance(item, tuple) and item[0] == _FORGET:
                    try:
                        item[2].set_result(await self._forget(item[1]))
                    except Exception as exc:
                        if is_actor_failure(exc):
                            item[2].set_exception(exc)
                        else:
                            raise
                elif isinstance(item, tuple):
                    await self._advance_all(self.clock.now(time.time()))
                    item[1].set_result(self.routed_seq)
                else:
                    rows = item
                    while self._queue and isinstance(self._queue[0], list) and len(rows) < MAX_BATCH:
                        rows = rows + self._queue.popleft()
                    self._queued -= len(rows)
                    if rows[-1].seq <= self.routed_seq:
                        continue  # already routed by a catch-up from the log
                    if rows[0].seq <= self.routed_seq:
                        rows = [r for r in rows if r.seq > self.routed_seq]
                    await self._route(rows, rows[-1].clock)
                    self.routed_seq = rows[-1].seq
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("router_failed")
            self.failed = exc
            for item in self._queue:
                if isinstance(item, tuple) and not item[-1].done():
                    item[-1].set_exception(RouterFailed(f"event routing stopped: {exc!r}"))
            raise

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
        scan = self.eventlog.scan(after=self.routed_seq, until=until, batch=MAX_BATCH)
        while chunk := await asyncio.to_thread(next, scan, None):
            clock = chunk[-1].clock
            await self._route(chunk, clock)
            self.routed_seq = chunk[-1].seq
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        return done, clock

    async def _route(self, rows: list[Row], clock: float) -> None:
        """Apply rows (those a shard has not applied yet) on every shard, then record."""
        slices: list[list[Row]] = [[] for _ in range(self.n)]
        n = self.n
        for r in rows:
            slices[shard_of(r.user, n)].append(r)
        applied = self.applied
        for i, s in enumerate(slices):
            if s and s[0].seq <= applied[i]:  # start-up replay: the shard's snapshot has these
                slices[i] = [r for r in s if r.seq > applied[i]]
        upto = rows[-1].seq
        results = await asyncio.gather(*(self._apply(i, slices[i], clock, upto) for i in range(n)))
        goals = self.runtime.goal_events
        await self._record(
            [t for ts in results for t in ts],
            clock,
            [(r.user, r.event, r.ts, r.seq) for r in rows if r.event in goals] if goals else [],
        )
        if clock > self.advanced:
            self.advanced = clock
        for i, s in enumerate(slices):
            self.since_snapshot[i] += len(s)
            if self.since_snapshot[i] >= self.snapshot_every:
                await self._snapshot(i)

    async def _apply(self, i: int, rows: list[Row], clock: float, upto: int) -> list:
        try:
            ok, applied, transitions = await self.runtime.apply(i, rows, clock, self.applied[i])
        except Exception as exc:
            if not is_actor_failure(exc):
                raise
            log.warning("shard_failed", shard=i, error=type(exc).__name__)
            return await self._recover(i, upto, clock)
        if not ok:
            log.warning("shard_restarted", shard=i, expected=self.applied[i], found=applied)
            return await self._recover(i, upto, clock)
        self.applied[i] = applied
        return transitions

    async def _advance_all(self, clock: float) -> None:
        results = await asyncio.gather(*(self._advance(i, clock) for i in range(self.n)))
        await self._record([t for ts in results for t in ts], clock)
        if clock > self.advanced:
            self.advanced = clock

    async def _advance(self, i: int, clock: float) -> list:
        try:
            ok, applied, transitions = await self.runtime.advance(i, clock, self.applied[i])
        except Exception as exc:
            if not is_actor_failure(exc):
                raise
            return await self._recover(i, self.routed_seq, clock)
        if not ok:
            return await self._recover(i, self.routed_seq, clock)
        return transitions

    async def _forget(self, user: str) -> int:
        i = shard_of(user, self.n)
        while True:
            try:
                ok, _, exits = await self.runtime.forget(i, user, self.applied[i])
            except Exception as exc:
                if not is_actor_failure(exc):
                    raise
                ok = False
            if ok:
                break
            await self._recover(i, self.routed_seq, self.advanced)  # transitions were recorded before
        # The old snapshot holds the user's state: drop it before anything else can read it.
        await asyncio.to_thread(self.snapshots.delete, i)
        for m in range(MANAGERS):
            await self._retry(f"manager {m}", self.runtime.forget_at_manager, m, user)
        if self.runtime.dispatcher is not None:
            await self._retry("dispatcher", self.runtime.forget_messages, user)
        await self._snapshot(i)
        if exits and self.on_transitions is not None:
            self.on_transitions([tuple(t[:6]) for t in exits])
        log.info("user_forgotten", shard=i, segments_left=len(exits))
        return len(exits)

    # ------------------------------------------------------------------ recovery

    async def _recover(self, i: int, upto: int, clock: float) -> list:
        """Bring shard ``i`` back to the state after log position ``upto`` and clock ``clock``."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while True:
            try:
                self.applied[i] = await self._restore(i)
                out = []
                scan = self.eventlog.scan(after=self.applied[i], until=upto, batch=MAX_BATCH)
                while chunk := await asyncio.to_thread(next, scan, None):
                    mine = [r for r in chunk if shard_of(r.user, self.n) == i]
                    ok, applied, ts = await self.runtime.apply(i, mine, chunk[-1].clock, self.applied[i])
                    if not ok:
                        raise RuntimeError("shard restarted again during recovery")
                    self.applied[i] = applied
                    out += ts
                ok, _, ts = await self.runtime.advance(i, max(clock, self.advanced), self.applied[i])
                if not ok:
                    raise RuntimeError("shard restarted again during recovery")
                self.recoveries += 1
                self.since_snapshot[i] = 0
                log.info("shard_recovered", shard=i, applied_seq=self.applied[i])
                return out + ts
            except Exception as exc:
                if (
                    not (is_actor_failure(exc) or isinstance(exc, RuntimeError))
                    or time.monotonic() > deadline
                ):
                    raise
                log.info("shard_recovery_retry", shard=i, error=type(exc).__name__)
                await asyncio.sleep(0.2)

    async def _restore(self, i: int) -> int:
        """Load shard ``i``'s latest usable snapshot into it (or reset it); its applied seq."""
        snap = await asyncio.to_thread(self.snapshots.get, i, self.n, self.fingerprint)
        return await self.runtime.restore(i, snap.state if snap else None)

    async def _snapshot(self, i: int) -> None:
        """Store shard ``i``'s state. A shard that is restarting is skipped: nothing changes,
        and the next call to it finds the restart and recovers it."""
        try:
            got = await self.runtime.snapshot(i, self.applied[i])
        except Exception as exc:
            if not is_actor_failure(exc):
                raise
            got = None
        if got is None:
            log.warning("snapshot_skipped", shard=i, reason="shard restarting or restarted")
            return
        applied, state = got
        await asyncio.to_thread(self.snapshots.put, Snapshot(i, self.n, self.fingerprint, applied, state))
        self.since_snapshot[i] = 0
        log.info("snapshot_taken", shard=i, seq=applied, bytes=len(state))

    # ------------------------------------------------------------------ segment managers, dispatch

    async def _record(self, transitions: list, clock: float, goals: list | None = None) -> None:
        """Record transitions at the managers and, at the same time, hand the dispatcher every
        campaign trigger (new or not: it dedupes by message id) with the batch's goal events;
        the new transitions go to ``on_transitions``. Both are done before this returns, so
        a snapshot taken after it never covers a transition that is not recorded."""
        calls = []
        if transitions:
            calls.append(self._record_at_managers(transitions))
        if self.runtime.dispatcher is not None:
            keys = self.runtime.triggers
            triggers = [t for t in transitions if (t[1], t[3]) in keys] if keys else []
            if triggers or goals or clock > self.dispatched_clock:
                calls.append(self._retry("dispatcher", self.runtime.dispatch, triggers, goals or [], clock))
                self.dispatched_clock = max(clock, self.dispatched_clock)
        if calls:
            await asyncio.gather(*calls)

    async def _record_at_managers(self, transitions: list) -> None:
        by_manager: list[list[tuple]] = [[] for _ in range(MANAGERS)]
        for t in transitions:
            by_manager[manager_of(t[1])].append(tuple(t[:6]))
        new: list[tuple] = []
        for m, ts in enumerate(by_manager):
            if ts:
                new += await self._retry(f"manager {m}", self.runtime.record, m, ts)
        self.transitions += len(new)
        if new and self.on_transitions is not None:
            self.on_transitions(new)

    async def _retry(self, what: str, call: Callable, *args: object) -> Any:
        """Await ``call(*args)``, retrying while the actor is being restarted by Ray (the
        managers and the dispatcher are idempotent, so a repeated call is harmless)."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while True:
            try:
                return await call(*args)
            except Exception as exc:
                if not is_actor_failure(exc) or time.monotonic() > deadline:
                    raise
                log.warning("actor_retry", actor=what, error=type(exc).__name__)
                await asyncio.sleep(0.2)
