"""Bringing a shard back: restore its latest snapshot, then replay its part of the log.

A shard is recovered at start-up (every shard, in parallel) and whenever the router finds
that Ray restarted one (it comes back empty and refuses a call whose expected applied seq it
does not have, or the call fails while it restarts). Transitions are idempotent by id, so
what a recovery produces again is recorded once, and the outcome equals a run without the
failure.

A snapshot the shard cannot read (corrupt bytes, another format or model) is not fatal:
snapshots are derived, so recovery logs ``snapshot_unreadable`` (file, shard, reason) and
rebuilds that shard from the whole log, which gives the same state.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from actors.placement import shard_of
from actors.records import ShardReply, Transition, UserContext
from actors.shard.core import SnapshotMismatch
from segd.daemon.runtime import ActorDown, Runtime
from store.eventlog import EventLog
from store.snapshots import SnapshotStore

log = structlog.get_logger("segd.recovery")

RECOVERY_TIMEOUT = 120.0  # seconds to wait for Ray to bring a shard back
SCAN_BATCH = 20_000  # log rows read per chunk


class ShardGone(Exception):
    """The shard was restarted again while it was being recovered: start over."""


class Recovery:
    """Restores shards of ``runtime`` from ``snapshots`` and ``eventlog``."""

    def __init__(
        self, runtime: Runtime, eventlog: EventLog, snapshots: SnapshotStore, *, fingerprint: str
    ) -> None:
        self.runtime = runtime
        self.eventlog = eventlog
        self.snapshots = snapshots
        self.fingerprint = fingerprint
        self.count = 0  # shards recovered after a failure

    async def restore(self, i: int) -> int:
        """Load shard ``i``'s latest usable snapshot into it (or reset it); its applied seq.
        An unreadable snapshot is logged and the shard reset: the log rebuilds it."""
        snap = await asyncio.to_thread(self.snapshots.get, i, self.runtime.n, self.fingerprint)
        if snap is None:
            return await self.runtime.restore(i, None)
        try:
            return await self.runtime.restore(i, snap.state)
        except SnapshotMismatch as exc:
            log.warning(
                "snapshot_unreadable",
                file=str(self.snapshots.path),
                shard=i,
                seq=snap.seq,
                reason=_reason(exc),
                action="rebuilding this shard from the log",
            )
            return await self.runtime.restore(i, None)

    async def recover(self, i: int, upto: int, clock: float) -> ShardReply:
        """Bring shard ``i`` back to the state after log position ``upto``, advanced to
        ``clock``. Returns what it produced on the way (transitions and their contexts), to be
        recorded again; retries while Ray restarts it, for up to RECOVERY_TIMEOUT seconds."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        self.runtime.watch.recovering[i] = True
        try:
            while True:
                try:
                    reply = await self._replay(i, upto, clock)
                except (ActorDown, ShardGone) as exc:
                    if time.monotonic() > deadline:
                        raise
                    log.info("shard_recovery_retry", shard=i, error=type(exc).__name__)
                    await asyncio.sleep(0.2)
                    continue
                self.count += 1
                log.info("shard_recovered", shard=i, applied_seq=reply.applied_seq)
                return reply
        finally:
            self.runtime.watch.recovering[i] = False

    async def _replay(self, i: int, upto: int, clock: float) -> ShardReply:
        applied = await self.restore(i)
        n = self.runtime.n
        transitions: list[Transition] = []
        contexts: dict[str, UserContext] = {}
        scan = self.eventlog.scan(after=applied, until=upto, batch=SCAN_BATCH)
        while chunk := await asyncio.to_thread(next, scan, None):
            mine = [r for r in chunk if shard_of(r.user, n) == i]
            reply = await self.runtime.apply(i, mine, chunk[-1].clock, applied)
            if not reply.ok:
                raise ShardGone(f"shard {i} restarted again during recovery")
            applied = reply.applied_seq
            transitions += reply.transitions
            contexts.update(reply.contexts)
        reply = await self.runtime.advance(i, clock, applied)
        if not reply.ok:
            raise ShardGone(f"shard {i} restarted again during recovery")
        transitions += reply.transitions
        contexts.update(reply.contexts)
        return ShardReply(ok=True, applied_seq=applied, transitions=transitions, contexts=contexts)


def _reason(exc: SnapshotMismatch) -> str:
    """The shard's own message, without the traceback Ray wraps around a remote error."""
    cause = getattr(exc, "cause", None)  # set by Ray's RayTaskError on the original error
    origin = cause if isinstance(cause, SnapshotMismatch) else exc
    return str(origin.args[0]) if origin.args else str(origin)
