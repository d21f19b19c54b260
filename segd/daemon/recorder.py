"""The router's recorder (see segd.daemon.router): the effects of applied batches recorded at
the segment managers (segments.db) and handed to the dispatcher (outbox.db), in log order,
in the background, every batch applied since its last round in one call to each; a derived
store that fails is retried (``segd.daemon.stores``). ``routed_seq`` is the log position up
to which every effect is recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from actors.placement import MANAGERS, manager_of
from actors.records import GoalEvent, Transition
from segd.daemon.batches import Effects, Trace, Unrecorded
from segd.daemon.runtime import Runtime, retrying
from segd.daemon.stores import Stores
from store.schema import OUTBOX_FILE, SEGMENTS_FILE

log = structlog.get_logger("segd.router")

CLOCK_EVERY = 1.0  # engine seconds between dispatcher calls that only pass the clock on
MAX_UNRECORDED = 100_000  # transitions applied and not yet recorded before the router waits


class Recorder:
    """Records applied batches' effects in the background, in log order."""

    def __init__(
        self,
        runtime: Runtime,
        stores: Stores,
        on_transitions: Callable[[list[Transition]], None] | None,
    ) -> None:
        """``on_transitions`` gets the new ones among a recovery's transitions (subscribers)."""
        self.runtime = runtime
        self.stores = stores
        self.on_transitions = on_transitions
        self.routed_seq = 0  # every effect of the log up to here is recorded
        self.transitions = 0  # new transitions recorded
        self.dispatched_clock = float("-inf")  # the last clock passed to the dispatcher
        self._unrecorded: list[Unrecorded] = []  # applied, in log order, waiting
        self._waiting_transitions = 0  # transitions in _unrecorded
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (seq, until routed_seq >= seq)

    def cancel(self) -> None:
        """The router failed: stop recording; whoever waits in ``recorded`` is cancelled."""
        if self._task is not None:
            self._task.cancel()
        for _, waiter in self._waiters:
            waiter.cancel()
        self._waiters = []

    async def recorded(self, seq: int) -> None:
        """Wait until ``routed_seq >= seq``: every effect handed over so far of the log up to
        ``seq`` is recorded (batches reach the recorder in log order). Only for a ``seq``
        whose batch is handed over or will be (the router's ``sent_seq``)."""
        if self.routed_seq >= seq:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, waiter))
        await waiter

    def _moved(self) -> None:
        """``routed_seq`` moved: wake the ``recorded`` waiters it satisfies."""
        if not self._waiters:
            return
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for seq, waiter in self._waiters:
            if waiter.done():
                continue
            if seq <= self.routed_seq:
                waiter.set_result(None)
            else:
                keep.append((seq, waiter))
        self._waiters = keep

    async def later(
        self, effects: Effects, clock: float, goals: list[GoalEvent], upto: int, trace: Trace | None
    ) -> None:
        """Hand a batch's effects to the recorder (see segd.daemon.router); ``routed_seq``
        moves to ``upto`` once they are recorded. Returns at once, unless too much waits."""
        if self._task is not None and self._task.done():
            await self.drain()  # a finished recorder: raise what it raised, if anything
        self._unrecorded.append(Unrecorded(effects, clock, goals, upto, trace))
        self._waiting_transitions += len(effects.transitions)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._record_all(), name="segd-record")
        if self._waiting_transitions > MAX_UNRECORDED:
            await self.drain()

    async def _record_all(self) -> None:
        """The recorder: record what waits, all of it in one round, until nothing does."""
        while self._unrecorded:
            batches, self._unrecorded = self._unrecorded, []
            self._waiting_transitions = 0
            effects = Effects()
            goals: list[GoalEvent] = []
            for b in batches:
                effects.transitions += b.effects.transitions
                effects.contexts.update(b.effects.contexts)
                effects.replayed |= b.effects.replayed
                goals += b.goals
            await self._record(effects, max(b.clock for b in batches), goals)
            self.routed_seq = max(self.routed_seq, batches[-1].upto)
            self._moved()
            recorded = round(time.monotonic(), 6)
            for b in batches:
                if b.trace is not None:
                    log.debug(
                        "batch_routed",
                        first_seq=b.trace.first_seq,
                        last_seq=b.trace.last_seq,
                        committed=round(b.trace.committed, 6),
                        started=round(b.trace.started, 6),
                        applied=round(b.trace.applied, 6),
                        recorded=recorded,
                        transitions=len(b.effects.transitions),
                        recorded_with=len(batches),
                    )

    async def drain(self) -> None:
        """Wait until the batches applied so far are recorded; raises what recording raised."""
        while (task := self._task) is not None:
            try:
                await task
            finally:
                if self._task is task and task.done():
                    self._task = None
            if self._unrecorded and self._task is None:  # added after its last round
                self._task = asyncio.get_running_loop().create_task(self._record_all(), name="segd-record")

    async def _record(self, effects: Effects, clock: float, goals: list[GoalEvent]) -> None:
        """Record transitions at the managers and, at the same time, hand the dispatcher every
        campaign trigger (new or not: it dedupes by message id) with the batch's goal events.
        Both are done before this returns, so a snapshot taken after it never covers a
        transition that is not recorded."""
        calls: list[Awaitable[Any]] = []
        if effects.transitions:
            calls.append(self._record_at_managers(effects))
        if self.runtime.dispatcher is not None:
            triggers = self.runtime.policy.triggers_of(effects.transitions, effects.contexts)
            # The clock alone (for deferred deliveries) needs no call per batch: once a second.
            if triggers or goals or clock >= self.dispatched_clock + CLOCK_EVERY:
                calls.append(
                    self.stores.persist(
                        OUTBOX_FILE, retrying, "dispatcher", self.runtime.dispatch, triggers, goals, clock
                    )
                )
                self.dispatched_clock = max(clock, self.dispatched_clock)
        if calls:
            await asyncio.gather(*calls)

    async def _record_at_managers(self, effects: Effects) -> None:
        if MANAGERS == 1:
            by_manager = [effects.transitions]
        else:
            by_manager = [[] for _ in range(MANAGERS)]
            for t in effects.transitions:
                by_manager[manager_of(t.segment)].append(t)
        new: list[Transition] = []
        for m, ts in enumerate(by_manager):
            if ts:
                new += await self.stores.persist(
                    SEGMENTS_FILE, retrying, f"manager {m}", self.runtime.record, m, ts
                )
        self.transitions += len(new)
        if effects.replayed and self.on_transitions is not None:
            # A recovery's transitions: the new ones are those subscribers have not seen.
            again = [t for t in new if t.id in effects.replayed]
            if again:
                self.on_transitions(again)
