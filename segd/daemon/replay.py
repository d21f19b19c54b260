"""``segd replay``: rebuild every derived store from the event log alone, offline.

Drops the shard snapshots and the segment membership and history, replays the log (up to
``--until``) through fresh shards on a local (or the configured) Ray, and leaves new
snapshots behind, so the next ``segd run`` starts from them. Transition ids are a pure
function of the log, so the rebuilt history is identical to the one it replaces.

The summary's ``phases`` says where the command's time went, in seconds: ``compile`` (the
model), ``ray`` (start or join Ray), ``actors`` (the shard workers up: each process imports
segd and compiles the model; the log's first chunks are read meanwhile, and the segment
manager and the dispatcher go on starting during the route), ``route`` (the log read in
chunks of ``rebuild.CHUNK`` rows, folded by every shard in parallel, transitions recorded,
timers fired: ``segd.daemon.rebuild``), ``snapshot`` (the managers write the rebuilt tables
and make them durable while every shard serialises its state; the snapshots are stored
after) and ``shutdown``. Nothing is fsynced per event group: the log is only
read, the managers commit a rebuild with ``synchronous=normal`` and checkpoint once at the
end, snapshots use ``synchronous=NORMAL``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any

import structlog

from actors.model import Model
from segd.config import Config
from segd.daemon import runtime
from segd.daemon.rebuild import Rebuild
from store.datadir import DataDirLock
from store.eventlog import EventLog
from store.snapshots import SnapshotStore

log = structlog.get_logger("segd.daemon.replay")


def replay(
    config: Config,
    *,
    until: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    dispatch: bool = True,
) -> dict[str, Any]:
    """Rebuild from the log; returns a summary (events replayed, segment sizes, seconds).

    With ``dispatch``, campaign triggers go to the dispatcher as in a live run, which records
    a decision only for a message id it has never seen (none, unless a crash lost it) and
    sends nothing: the next ``segd run`` delivers what is pending.
    """
    return asyncio.run(_replay(config, until, progress, dispatch))


async def _replay(
    config: Config, until: int | None, progress: Callable[[int, int], None] | None, dispatch: bool
) -> dict[str, Any]:
    started = time.monotonic()
    phases = _Phases(started)
    model = Model.compile(config)
    phases.mark("compile")
    cfg = config.daemon
    with DataDirLock(cfg.data_dir) as lock:
        eventlog = EventLog(cfg.data_dir, synchronous=cfg.synchronous)
        snapshots = SnapshotStore(cfg.data_dir)
        snapshots.clear()
        # Unshielded: a signal ends the replay anyway (nothing to drain), and shielded
        # processes each take ray.shutdown's whole grace second (runtime.init_ray).
        ray_started = await asyncio.to_thread(functools.partial(runtime.init_ray, config, shield=False))
        phases.mark("ray")
        upto = eventlog.last_seq if until is None else min(until, eventlog.last_seq)
        # Time stands at the log's last clock after a whole replay, at the last row's with --until.
        final_clock = eventlog.last_clock if upto >= eventlog.last_seq else None
        rt = runtime.Runtime(
            config,
            {s.name: (s.description, model.segment_fingerprints[s.name]) for s in config.segments},
            rebuild=True,
            dispatch=dispatch,
            deliver=False,
            start_clock=eventlog.last_clock,
            owner=lock.token,
        )
        rebuild: Rebuild | None = None
        try:
            # The reader starts at once: the first chunks are split and encoded while the
            # workers start (each process imports segd and compiles the model).
            rebuild = Rebuild(rt, eventlog, snapshots, fingerprint=model.fingerprint, until=upto)
            # The shards up; the manager and the dispatcher go on starting while they fold
            # (their first calls wait in Ray until they are): on 2 cores every process's
            # start-up is CPU time taken from the fold, so nothing waits for it needlessly.
            await asyncio.gather(*(rt.shard_stats(i) for i in range(rt.n)))
            phases.mark("actors")
            log.info("recovery_started", replay_from=0, until=upto, shards=rt.n)
            replayed = await rebuild.fold(progress, final_clock)
            log.info("recovery_done", replayed=replayed, routed_seq=upto)
            phases.mark("route")
            # The managers' store durable before the snapshots that say it is all recorded
            # are stored; the shards serialise theirs meanwhile.
            await rebuild.snapshot_all(rt.checkpoint_managers())
            await rt.close_dispatcher()
            sizes = await rt.sizes()
            phases.mark("snapshot")
        finally:
            if rebuild is not None:
                rebuild.reader.close()  # a failure before the fold: the reader stops too
            rt.close()
            runtime.shutdown_ray(ray_started)
            eventlog.close()
            snapshots.close()
    phases.mark("shutdown")
    summary = {
        "replayed": upto,
        "transitions": rebuild.transitions,
        "segments": sizes,
        "seconds": round(time.monotonic() - started, 3),
        "phases": phases.seconds,
    }
    log.info("replay_done", **summary)
    return summary


class _Phases:
    """Seconds per phase of the command, each from the end of the one before."""

    def __init__(self, started: float) -> None:
        self._last = started
        self.seconds: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self._last, 3)
        self._last = now
