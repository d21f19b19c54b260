"""``segd replay``'s fold: the whole log through fresh shards, as fast as the cores allow.

The live router (``segd.daemon.router``) serves a daemon: queued rows, ticks, barriers,
subscribers. A replay needs none of that, so it has its own loop, built to keep per-event
Python off the driver:

- A reader thread scans the log as plain SQLite tuples (``EventLog.scan_tuples``: Row's
  fields in order, so a list of them encodes to the very bytes of a ``list[Row]``), splits
  each chunk by shard (``shard_of``, the one per-row call), encodes each shard's part with
  msgspec and picks the campaign goal events; it stays READ_AHEAD chunks ahead of the shards,
  and it starts before the workers are up, so the first chunks are ready when they are.
- The event loop only sends each shard its bytes (``Runtime.apply_encoded``), PIPELINE
  chunks in flight per shard (Ray runs one submitter's calls to an actor in order), and
  hands each settled chunk's transitions, contexts and goals to the router's ``Recorder``
  (segment managers and dispatcher, in log order, in the background, one call per round).
- A shard Ray restarted refuses a call (its applied seq is not the expected one) and is
  brought back by ``Recovery`` from the log, exactly as the router does; its transitions are
  recorded again, idempotently by id.

Exactness: the shards fold the same rows in the same order as live and as the router's
replay (each shard gets its users' rows in log order, advanced to each chunk's last clock),
so transitions keep their ids, ``at`` and ``seq``; the dispatcher dedupes by message id.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from actors.placement import shard_of
from actors.records import GoalEvent, ShardReply, encode
from segd.config import CampaignConfig
from segd.daemon.batches import Effects
from segd.daemon.recorder import Recorder
from segd.daemon.recovery import Recovery
from segd.daemon.runtime import Runtime
from segd.daemon.stores import Stores
from store.eventlog import EventLog
from store.outbox import decided_messages
from store.snapshots import Snapshot, SnapshotStore

log = structlog.get_logger("segd.daemon.replay")

CHUNK = 40_000  # log rows read, split and sent per round
READ_AHEAD = 3  # chunks the reader prepares ahead of the shards
PIPELINE = 2  # chunks whose shard calls may be in flight at once


@dataclass(slots=True)
class Chunk:
    """One chunk of the log, ready to send: per shard its rows encoded as ``list[Row]`` (None:
    no rows for it) and the seq of its last row; the chunk's last seq and clock; its goals."""

    parts: list[bytes | None]
    last: list[int]
    upto: int
    clock: float
    rows: int
    goals: list[GoalEvent] = field(default_factory=list)


def split(rows: list[tuple[Any, ...]], shards: int, goal_events: frozenset[str]) -> Chunk:
    """``rows`` (``EventLog.scan_tuples``, in log order) as a ``Chunk`` for ``shards`` shards:
    each shard's rows in log order, encoded; the track rows named as a campaign goal."""
    parts: list[list[tuple[Any, ...]]] = [[] for _ in range(shards)]
    if shards == 1:
        parts[0] = rows
    else:
        for r in rows:
            parts[shard_of(r[1], shards)].append(r)
    goals = (
        [GoalEvent(user=r[1], event=r[3], ts=r[4], seq=r[0]) for r in rows if r[3] in goal_events]
        if goal_events
        else []
    )
    return Chunk(
        [encode(p) if p else None for p in parts],
        [p[-1][0] if p else 0 for p in parts],
        rows[-1][0],
        rows[-1][5],
        len(rows),
        goals,
    )


def decided_by_shard(
    messages: Iterable[tuple[str, str, str, str]], campaigns: Sequence[CampaignConfig], shards: int
) -> list[frozenset[str]]:
    """Per shard, the ids of the transitions whose messages are all in the outbox already:
    ``messages`` holds one ``(transition, segment, user, campaign)`` for every campaign that
    fires on the transition's (segment, kind). The dispatcher drops such a trigger as a
    duplicate before any decision, so its context is never read (``actors.shard.skipping``).
    A campaign's activation is not checked: a transition it would skip still needs every
    campaign of its (segment, kind) recorded, so no context that a decision reads is left out."""
    on = {c.name: (c.segment, c.on) for c in campaigns}
    firing: dict[tuple[str, str], set[str]] = {}
    for c in campaigns:
        firing.setdefault((c.segment, c.on), set()).add(c.name)
    found: dict[str, tuple[str, set[str], tuple[str, str]]] = {}  # transition -> (user, campaigns, trigger)
    for transition, segment, user, campaign in messages:
        key = on.get(campaign)
        if key is None or key[0] != segment:  # a campaign no longer configured (or moved)
            continue
        found.setdefault(transition, (user, set(), key))[1].add(campaign)
    out: list[set[str]] = [set() for _ in range(shards)]
    for transition, (user, names, key) in found.items():
        if names >= firing[key]:
            out[shard_of(user, shards)].add(transition)
    return [frozenset(x) for x in out]


class _Reader:
    """The reader thread: ``split`` chunks of the log, READ_AHEAD of them queued ahead."""

    def __init__(self, chunks: Iterator[Chunk]) -> None:
        self._chunks = chunks
        self._queue: queue.Queue[Chunk | BaseException | None] = queue.Queue(READ_AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="segd-replay-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                while not self._stop.is_set():
                    try:
                        self._queue.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(None)
        except BaseException as exc:  # handed to the loop, which raises it
            self._queue.put(exc)

    async def next(self) -> Chunk | None:
        """The next chunk, or None at the end; raises what the reader raised."""
        got = (
            self._queue.get_nowait() if not self._queue.empty() else await asyncio.to_thread(self._queue.get)
        )
        if isinstance(got, BaseException):
            raise got
        return got

    def close(self) -> None:
        """Stop the thread (after the end or an error) and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)


@dataclass(slots=True)
class _Sent:
    chunk: Chunk
    calls: list[tuple[int, asyncio.Task[ShardReply]]]


class Rebuild:
    """Folds the log up to ``until`` through ``runtime``'s fresh shards (no snapshot: replay
    cleared them), recording every effect; then snapshots every shard."""

    def __init__(
        self, runtime: Runtime, eventlog: EventLog, snapshots: SnapshotStore, *, fingerprint: str, until: int
    ) -> None:
        self.runtime = runtime
        self.eventlog = eventlog
        self.snapshots = snapshots
        self.fingerprint = fingerprint
        self.until = until
        self.n = runtime.n
        self.stores = Stores()  # derived stores' writes, retried while they fail
        self.recorder = Recorder(runtime, self.stores, None)
        self.recovery = Recovery(runtime, eventlog, snapshots, fingerprint=fingerprint)
        self.applied = [0] * self.n  # each shard's applied seq, as it last reported
        self.expected = [0] * self.n  # ... once the calls in flight are applied
        self.advanced = float("-inf")  # the largest clock the shards were advanced to
        goals = runtime.policy.goal_events
        n = self.n
        # Read before the dispatcher writes: which transitions' messages are all recorded.
        self.decided = decided_by_shard(
            decided_messages(runtime.config.daemon.data_dir), runtime.config.campaigns, n
        )
        scan = eventlog.scan_tuples(until=until, batch=CHUNK)
        self.reader = _Reader(split(rows, n, goals) for rows in scan)  # reads while workers start

    async def fold(self, progress: Callable[[int, int], None] | None, final_clock: float | None) -> int:
        """Route the whole log to the shards, then advance them to ``final_clock`` (None: the
        last row's clock); every effect is recorded when this returns. Returns the rows read."""
        loop = asyncio.get_running_loop()
        sent: deque[_Sent] = deque()
        done, total = 0, self.until
        # Before the first rows (one submitter: Ray runs these calls first): no contexts for
        # decided transitions, none at all without a dispatcher.
        await asyncio.gather(*(self.runtime.skip_contexts(i, self.decided[i]) for i in range(self.n)))
        try:
            while chunk := await self.reader.next():
                calls = []
                for i, part in enumerate(chunk.parts):
                    if part is not None:
                        task = loop.create_task(
                            self.runtime.apply_encoded(i, part, chunk.clock, self.expected[i])
                        )
                        calls.append((i, task))
                        self.expected[i] = chunk.last[i]
                sent.append(_Sent(chunk, calls))
                if len(sent) >= PIPELINE:
                    await self._settle(sent)
                done += chunk.rows
                if progress is not None:
                    progress(done, total)
            while sent:
                await self._settle(sent)
        finally:
            self.reader.close()
            for s in sent:
                for _, task in s.calls:
                    task.cancel()
        clock = final_clock if final_clock is not None else self.advanced
        await self._advance_all(clock)
        await self.recorder.drain()
        return done

    async def _settle(self, sent: deque[_Sent]) -> None:
        """The oldest chunk in flight: a shard that refused it is recovered up to the chunk;
        its effects go to the recorder, in log order."""
        s = sent.popleft()
        effects = Effects()
        for i, task in s.calls:
            reply = await task
            if reply.ok:
                self.applied[i] = reply.applied_seq
                effects.add(reply)
            else:
                log.warning("shard_recovering", shard=i, found=reply.applied_seq)
                effects.add(await self._recover(i, s.chunk.upto, s.chunk.clock, sent), replayed=True)
        if s.chunk.clock > self.advanced:
            self.advanced = s.chunk.clock
        await self.recorder.later(effects, s.chunk.clock, s.chunk.goals, s.chunk.upto, None)

    async def _recover(self, i: int, upto: int, clock: float, sent: deque[_Sent]) -> ShardReply:
        """Shard ``i`` back to the log up to ``upto`` (see ``Router._recover``): a call still in
        flight to it was sent before, so the restarted shard refuses it too and its settling
        recovers the shard again, up to that chunk."""
        reply = await self.recovery.recover(i, upto, max(clock, self.advanced))
        self.applied[i] = reply.applied_seq
        if not any(i == j for s in sent for j, _ in s.calls):
            self.expected[i] = reply.applied_seq
        return reply

    async def _advance_all(self, clock: float) -> None:
        """Fire every deadline up to ``clock`` on every shard; record what that produced."""

        async def one(i: int) -> tuple[ShardReply, bool]:
            reply = await self.runtime.advance(i, clock, self.applied[i])
            if reply.ok:
                return reply, False
            return await self._recover(i, self.until, clock, deque()), True

        effects = Effects()
        for reply, replayed in await asyncio.gather(*(one(i) for i in range(self.n))):
            effects.add(reply, replayed=replayed)
        self.advanced = max(self.advanced, clock)
        await self.recorder.later(effects, clock, [], self.until, None)

    async def snapshot_all(self, recorded: Awaitable[None]) -> None:
        """Store every shard's state once ``recorded`` (the segment managers' store made
        durable) is done, so no stored snapshot covers an unrecorded transition; the shards
        serialise their state meanwhile, in parallel with the managers' end of rebuild (a
        shard that is restarting is skipped and logged: the next ``segd run`` rebuilds it
        from the log)."""
        self.stores.close()
        taking = asyncio.gather(*(self.runtime.snapshot(i, self.applied[i]) for i in range(self.n)))
        try:
            await recorded
        except BaseException:
            taking.cancel()
            raise
        snaps = await taking
        for i, snap in enumerate(snaps):
            if snap is None:
                log.warning("snapshot_skipped", shard=i, reason="shard restarting or restarted")
                continue
            await asyncio.to_thread(
                self.snapshots.put, Snapshot(i, self.n, self.fingerprint, snap.applied_seq, snap.state)
            )
            log.info("snapshot_taken", shard=i, seq=snap.applied_seq, bytes=len(snap.state))

    @property
    def transitions(self) -> int:
        """New transitions recorded at the segment managers."""
        return self.recorder.transitions
