"""The router's snapshots, off the path of the next events (see segd.daemon.router).

A snapshot of shard ``i`` is begun right behind the calls already sent to it (Ray runs one
submitter's calls to an actor in order), so the state it holds is the shard's after every
batch sent so far, ``expect`` being its applied seq then; no batch needs to be settled
first. The shard serialises it in steps of a few milliseconds (``actors.shard.stepsnap``),
one ``snapshot_step`` call after another, and the batches the router sends meanwhile run
between them: a live event waits for one step, not for the whole state. Its bytes are stored (snapshots.db, retried while that fails: ``segd.daemon.stores``)
only once the recorder has recorded every effect of the log up to the router's ``sent_seq``
at the request: a stored snapshot never covers a transition that is not recorded, as before.
At most one snapshot per shard is pending; ``settle`` waits for them all
(``sync``, ``forget``, a reload and stopping do, so they see it stored).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from actors.records import ShardSnapshot
from segd.daemon.stores import Stores
from store.schema import SNAPSHOTS_FILE
from store.snapshots import Snapshot, SnapshotStore

log = structlog.get_logger("segd.router")


class Shards(Protocol):
    """The calls to the shards a Snapshotter makes (``segd.daemon.runtime.Runtime``'s)."""

    async def snapshot(self, i: int, expect: int) -> ShardSnapshot | None: ...
    async def snapshot_begin(self, i: int, expect: int) -> bool: ...
    async def snapshot_step(self, i: int) -> ShardSnapshot | bool: ...


class Snapshotter:
    """Takes shard snapshots in the background and stores each once its effects are recorded."""

    def __init__(
        self,
        shards_: Shards,
        snapshots: SnapshotStore,
        stores: Stores,
        recorded: Callable[[int], Awaitable[None]],
        *,
        shards: int,
        fingerprint: str,
    ) -> None:
        """``shards_`` are asked for the states; ``recorded(seq)`` returns once every effect up to ``seq`` is
        recorded (``Recorder.recorded``)."""
        self._shards = shards_
        self.snapshots = snapshots
        self.stores = stores
        self._recorded = recorded
        self.shards = shards
        self.fingerprint = fingerprint
        self._pending: dict[int, asyncio.Task[bool]] = {}

    def pending(self, i: int) -> bool:
        """A snapshot of shard ``i`` is being taken or stored."""
        task = self._pending.get(i)
        return task is not None and not task.done()

    def later(self, i: int, expect: int, upto: int) -> asyncio.Task[bool]:
        """Ask shard ``i`` for its state now (behind the calls sent to it, at ``expect``) and
        store it once everything up to ``upto`` is recorded. The task returns False if the
        shard skipped it (restarting or not at ``expect``). Call with nothing pending for ``i``."""
        assert not self.pending(i), f"a snapshot of shard {i} is pending"
        # The Ray call is made when the task first runs: tasks start in creation order, so
        # before any shard call created after this one.
        task = asyncio.get_running_loop().create_task(self._store(i, expect, upto), name=f"segd-snapshot-{i}")
        self._pending[i] = task
        return task

    async def now(self, i: int, expect: int) -> bool:
        """Take and store shard ``i``'s snapshot now, in one call (nothing in flight,
        everything recorded: stopping, ``forget``)."""
        return await self._put(i, await self._shards.snapshot(i, expect), None)

    async def settle(self) -> None:
        """Wait for every pending snapshot; raises what one raised."""
        while self._pending:
            i, task = next(iter(self._pending.items()))
            try:
                await task
            finally:
                if self._pending.get(i) is task:
                    del self._pending[i]

    def raise_failed(self) -> None:
        """Raise what a finished snapshot raised (an unexpected error stops the router)."""
        for i, task in list(self._pending.items()):
            if task.done():
                del self._pending[i]
                task.result()

    def cancel(self) -> None:
        """The router failed: stop."""
        for task in self._pending.values():
            task.cancel()
        self._pending.clear()

    async def _store(self, i: int, expect: int, upto: int) -> bool:
        snap: ShardSnapshot | None = None
        if await self._shards.snapshot_begin(i, expect):
            while (step := await self._shards.snapshot_step(i)) is True:
                pass
            snap = step if isinstance(step, ShardSnapshot) else None
        return await self._put(i, snap, upto)

    async def _put(self, i: int, snap: ShardSnapshot | None, upto: int | None) -> bool:
        if snap is None:
            log.warning("snapshot_skipped", shard=i, reason="shard restarting or restarted")
            return False
        if upto is not None:
            await self._recorded(upto)
        await self.stores.persist(
            SNAPSHOTS_FILE,
            asyncio.to_thread,
            self.snapshots.put,
            Snapshot(i, self.shards, self.fingerprint, snap.applied_seq, snap.state),
        )
        log.info("snapshot_taken", shard=i, seq=snap.applied_seq, bytes=len(snap.state))
        return True
