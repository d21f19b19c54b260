"""The daemon's lifecycle: start the parts in order, stop them in reverse, reload on SIGHUP.

``Daemon.start`` locks ``data_dir``, opens the log, starts (or joins) Ray and the actors,
recovers every shard, starts group commit and the router, then listens; it builds the
``Ops`` that give each op its meaning. Every part started registers how it stops on one
exit stack, so ``stop`` (and a start that fails half way) undoes exactly what was done, in
reverse order: stop accepting, drain what was submitted, route it, snapshot, answer, close.
``run_daemon`` is the foreground ``segd run`` with SIGINT/SIGTERM draining.

Stopping never fails half way: a router that failed, or that cannot finish routing within
``ROUTER_DRAIN_TIMEOUT``, is logged and left behind (every acknowledged event is in the log,
and the next start replays what it did not route). Shutdown snapshots are taken only by a
daemon that started completely: a start that fails takes none, so it cannot replace good
snapshots with the state of a half-done recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import signal
import threading
import time

import structlog

from actors.model import Model
from segd import __version__
from segd.clock import Clock
from segd.config import Config, load_config
from segd.daemon import runtime
from segd.daemon.ingest import Committer
from segd.daemon.metrics import MetricsServer
from segd.daemon.ops import Ops
from segd.daemon.router import Router
from segd.daemon.server import Server
from segd.daemon.subscriptions import Hub
from segd.errors import ConfigError
from segd.http.app import HttpFace
from store.datadir import DataDirLock
from store.eventlog import EventLog
from store.snapshots import SnapshotStore

log = structlog.get_logger("segd.daemon")

ROUTER_DRAIN_TIMEOUT = 60.0  # seconds the router may take to route what is queued at stop


class Daemon:
    """One segd daemon over one ``data_dir``. Use ``async with Daemon(cfg):`` or start/stop.

    The parts (``eventlog``, ``clock``, ``runtime``, ``router``, ``committer``, ``server``,
    ``ops``, ``metrics``) exist from ``start`` on; ``hub`` (subscribers) from construction.
    """

    eventlog: EventLog
    clock: Clock
    snapshots: SnapshotStore
    runtime: runtime.Runtime
    router: Router
    committer: Committer
    server: Server
    ops: Ops
    metrics: MetricsServer | None
    http: HttpFace | None = None  # [http] listen set: the HTTP face (SPEC section 8)

    def __init__(self, config: Config) -> None:
        self.config = config
        self.model = Model.compile(config)  # ConfigError before anything is opened
        self.hub = Hub()
        self._stack = contextlib.AsyncExitStack()
        self._stopping = False
        self._serving = False  # start() completed: stopping takes the shutdown snapshots

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the stores, recover, listen. Raises SegdError if data_dir is locked by another
        daemon; on any failure, what was started is stopped again."""
        try:
            await self._start(self._stack)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        cfg = self.config.daemon
        started = time.time()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        lock = stack.enter_context(DataDirLock(cfg.data_dir))
        self.eventlog = EventLog(cfg.data_dir, synchronous=cfg.synchronous)
        stack.callback(self.eventlog.close)
        self.snapshots = SnapshotStore(cfg.data_dir)
        stack.callback(self.snapshots.close)
        self.clock = Clock(cfg.clock, start=self.eventlog.last_clock)
        ray_started = await asyncio.to_thread(runtime.init_ray, self.config)
        _reclaim_signals()
        stack.callback(runtime.shutdown_ray, ray_started)
        descriptions = {
            s.name: (s.description, self.model.segment_fingerprints[s.name]) for s in self.config.segments
        }
        self.runtime = runtime.Runtime(
            self.config, descriptions, start_clock=self.clock.now(time.time()), owner=lock.token
        )
        stack.callback(self.runtime.close)
        stack.push_async_callback(self.runtime.close_dispatcher)
        if rebuilt := await self.runtime.reset_segments():
            log.info("segments_rebuilding", segments=rebuilt, reason="new or changed since the last run")
            self.snapshots.clear()  # the shards replay the whole log, or a deleted segments.db stays empty
        self.router = Router(
            self.runtime,
            self.eventlog,
            self.snapshots,
            self.clock,
            fingerprint=self.model.fingerprint,
            snapshot_every=cfg.snapshot_every,
            on_transitions=self.hub.publish,
        )
        self.committer = Committer(
            self.eventlog, self.clock, max_pending=cfg.max_pending, on_commit=self.router.submit_rows
        )
        self.router.horizon = self.committer.horizon
        self.ops = Ops(
            config=self.config,
            eventlog=self.eventlog,
            clock=self.clock,
            committer=self.committer,
            router=self.router,
            runtime=self.runtime,
            hub=self.hub,
            connections=lambda: len(self.server.connections),
            started=started,
        )
        self.server = Server(
            self.ops,
            socket_path=cfg.socket,
            tcp=cfg.tcp,
            token=cfg.token,
            max_frame=cfg.max_frame,
            max_connections=cfg.max_connections,
            backlog=cfg.backlog,
        )
        await self.router.recover()
        # Stopping runs these in reverse: stop accepting, drain the log, route it, then
        # flush the answers owed to clients. HTTP stops last: it answers 503 meanwhile.
        stack.push_async_callback(self._stop_http)
        stack.push_async_callback(self.server.close_connections)
        self.router.start()
        stack.push_async_callback(self._close_router)
        self.committer.start()
        stack.push_async_callback(self.committer.close)
        if cfg.clock == "wall":
            ticker = asyncio.get_running_loop().create_task(self._tick(cfg.tick), name="segd-tick")
            stack.callback(ticker.cancel)
        await self.server.start()
        stack.push_async_callback(self.server.stop_accepting)
        if self.config.http.listen:
            self.http = HttpFace(self.config.http, self.ops, self.committer)
            await self.http.start()
        self.metrics = None
        if cfg.metrics:
            self.metrics = MetricsServer(cfg.metrics, self.ops.stats)
            self.metrics.start()
            stack.callback(self.metrics.close)
        # What start-up left (modules, Ray's client, the recovered router) lives as long as
        # the daemon: out of the collector's generations, a full collection no longer walks
        # it. Measured at flat-out ingest: one full collection every ~300,000 events, 67 ms
        # of the event loop each (0.22 us an event, and a 67 ms stall of every answer).
        gc.collect()
        gc.freeze()
        self._serving = True
        log.info(
            "daemon_started",
            version=__version__,
            data_dir=str(cfg.data_dir),
            events=self.eventlog.count,
            last_seq=self.eventlog.last_seq,
            clock=cfg.clock,
            shards=self.runtime.n,
            segments=len(self.config.segments),
        )

    async def _close_router(self) -> None:
        """Route what is queued, then snapshot (only if the start completed). Never raises:
        what the router could not do is logged, and the log still holds every event."""
        try:
            await asyncio.wait_for(self.router.close(snapshot=self._serving), ROUTER_DRAIN_TIMEOUT)
        except TimeoutError:
            log.error(
                "drain_timed_out",
                seconds=ROUTER_DRAIN_TIMEOUT,
                routed_seq=self.router.routed_seq,
                last_seq=self.eventlog.last_seq,
                action="stopping anyway; the next start replays the rest of the log",
            )
        except Exception as exc:
            log.error(
                "router_stop_failed",
                error=repr(self.router.failed or exc),
                routed_seq=self.router.routed_seq,
                last_seq=self.eventlog.last_seq,
                action="stopping anyway; the next start replays the rest of the log",
                exc_info=self.router.failed is None,  # a failed router logged its traceback already
            )

    async def _stop_http(self) -> None:
        if self.http is not None:
            await self.http.stop()

    async def reload(self) -> bool:
        """SIGHUP: re-read the config file and apply ``[campaigns]``, ``[channels]`` and
        ``[throttle]`` without a restart. Other changes need a restart and the log says so;
        a config with errors changes nothing. Returns whether anything was applied."""
        if self.config.path is None or self._stopping:
            return False
        try:
            new = await asyncio.to_thread(load_config, self.config.path)
        except ConfigError as exc:
            log.error("reload_refused", path=str(self.config.path), problems=exc.problems)
            return False
        old = self.config
        needs_restart = [
            name
            for name in ("daemon", "ray", "aggregates", "segments")
            if getattr(new, name) != getattr(old, name)
        ]
        if needs_restart:
            log.warning(
                "reload_needs_restart",
                sections=needs_restart,
                action="kept the running ones; restart segd to apply them",
            )
        if (new.campaigns, new.channels, new.throttle) == (old.campaigns, old.channels, old.throttle):
            log.info("reload_nothing_to_apply")
            return False
        config = dataclasses.replace(
            old, campaigns=new.campaigns, channels=new.channels, throttle=new.throttle
        )
        fingerprints = dict(self.model.segment_fingerprints)
        clock = self.clock.now(time.time())
        await self.router.between_batches(lambda: self.runtime.reload_campaigns(config, fingerprints, clock))
        self.config = self.ops.config = config
        log.info("reloaded", campaigns=len(config.campaigns), channels=len(config.channels))
        return True

    async def _tick(self, every: float) -> None:
        """Wall mode: advance every shard's timers each ``tick`` without new events."""
        while True:
            await asyncio.sleep(every)
            self.router.tick()

    async def stop(self) -> None:
        """Drain: stop accepting, commit and answer what was submitted, close everything."""
        if self._stopping:
            return
        self._stopping = True
        log.info("daemon_stopping")
        if hasattr(self, "ops"):
            self.ops.draining = True
        await self._stack.aclose()
        log.info("daemon_stopped", last_seq=self.eventlog.last_seq if hasattr(self, "eventlog") else 0)


def _reclaim_signals() -> None:
    """Put the Python handlers of the stop signals back in place after ``ray.init``.

    Ray's core worker installs absl's failure-signal handler for SIGTERM in the driver. On a
    SIGTERM it prints a stack trace, passes the signal on to the handler it replaced (ours),
    and arms a 3-second SIGALRM that aborts the process: a drain longer than that ended in
    exit -6. Re-installing our handlers takes SIGTERM back from it. Signal handlers can only
    be set from the main thread; elsewhere (a daemon embedded in a thread) there is nothing
    to reclaim, as ``run_daemon`` set none.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        handler = signal.getsignal(sig)
        if callable(handler):  # ours, set by run_daemon through the event loop
            signal.signal(sig, handler)
    # A SIGTERM that came while ray.init ran went through absl's handler, which armed its
    # abort alarm; segd sets no alarm of its own, so cancelling it loses nothing.
    signal.alarm(0)


def run_daemon(config: Config) -> int:
    """``segd run``: serve until SIGINT/SIGTERM, then drain. Returns the exit code."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Daemon(config) as daemon:
            reloads: set[asyncio.Task[bool]] = set()

            def hup() -> None:
                task = loop.create_task(daemon.reload())
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            loop.add_signal_handler(signal.SIGHUP, hup)
            await stop.wait()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    asyncio.run(main())
    return 0
