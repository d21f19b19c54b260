"""``segd replay``: rebuild every derived store from the event log alone, offline.

Drops the shard snapshots and the segment membership and history, replays the log (up to
``--until``) through fresh shards on a local (or the configured) Ray, and leaves new
snapshots behind, so the next ``segd run`` starts from them. Transition ids are a pure
function of the log, so the rebuilt history is identical to the one it replaces.

The summary's ``phases`` says where the command's time went, in seconds: ``compile`` (the
model), ``ray`` (start or join Ray), ``actors`` (shard and segment-manager workers up: each
process imports segd and compiles the model), ``route`` (the log scanned in chunks of
``SCAN_BATCH`` rows, folded by every shard in parallel, transitions recorded, timers fired),
``snapshot`` (every shard's state stored) and ``shutdown``. Nothing is fsynced per event
group: the log is only read, the managers commit once per chunk, snapshots use
``synchronous=NORMAL``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from actors.model import Model
from segd.clock import Clock
from segd.config import Config
from segd.daemon import runtime
from segd.daemon.router import Router
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
        ray_started = await asyncio.to_thread(runtime.init_ray, config)
        phases.mark("ray")
        clock = Clock(cfg.clock, start=eventlog.last_clock)
        rt = runtime.Runtime(
            config,
            {s.name: (s.description, model.segment_fingerprints[s.name]) for s in config.segments},
            rebuild=True,
            dispatch=dispatch,
            deliver=False,
            start_clock=clock.value,
            owner=lock.token,
        )
        try:
            router = Router(
                rt, eventlog, snapshots, clock, fingerprint=model.fingerprint, snapshot_every=1 << 62
            )
            # every worker up (shards answer their stats, managers their sizes) before routing
            await asyncio.gather(rt.sizes(), *(rt.shard_stats(i) for i in range(rt.n)))
            phases.mark("actors")
            await router.recover(until=until, progress=progress)
            phases.mark("route")
            await router.close()
            await rt.close_dispatcher()
            sizes = await rt.sizes()
            phases.mark("snapshot")
        finally:
            rt.close()
            runtime.shutdown_ray(ray_started)
            eventlog.close()
            snapshots.close()
    phases.mark("shutdown")
    summary = {
        "replayed": router.routed_seq,
        "transitions": router.transitions,
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
