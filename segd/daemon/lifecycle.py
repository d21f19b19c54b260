"""The daemon: wires the event log, the clock, group commit, the server and the actor runtime,
and gives each op of SPEC section 2 its meaning.

Lifecycle: ``start`` (lock data_dir, open the log, start listening), ``stop`` (stop
accepting, commit everything acknowledged-to-be, answer, close). ``run_daemon`` is the
foreground ``segd run`` with SIGINT/SIGTERM draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgpack
import structlog

from actors.model import Model
from segd import __version__
from segd.clock import Clock
from segd.config import Config, load_config
from segd.daemon import runtime
from segd.daemon.ingest import Committer
from segd.daemon.metrics import MetricsServer
from segd.daemon.router import Router, RouterFailed
from segd.daemon.server import Connection, Server, Streaming
from segd.daemon.subscriptions import Hub
from segd.errors import ConfigError, ProtocolError, SegdError
from segd.wire.protocol import EventIn, Request
from store.eventlog import EventLog, NewEvent
from store.snapshots import SnapshotStore

log = structlog.get_logger("segd.daemon.lifecycle")


class DataDirLock:
    """An exclusive lock on ``data_dir`` (``segd.lock``): one daemon or replay at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "segd.lock"
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        """Take the lock or raise SegdError naming the holder's lock file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise SegdError(
                f"{self.path.parent} is in use by another segd (lock {self.path} is held)"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class Daemon:
    """One segd daemon over one ``data_dir``. Use ``async with Daemon(cfg):`` or start/stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.time()
        self.model = Model.compile(config)  # ConfigError before anything is opened
        self.eventlog: EventLog | None = None
        self.clock: Clock | None = None
        self.committer: Committer | None = None
        self.server: Server | None = None
        self.runtime: runtime.Runtime | None = None
        self.router: Router | None = None
        self.snapshots: SnapshotStore | None = None
        self.hub = Hub()
        self.metrics: MetricsServer | None = None
        self._ray_started = False
        self._ticker: asyncio.Task | None = None
        self._lock: DataDirLock | None = None
        self._stopping = False

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the stores, recover, listen. Raises SegdError if data_dir is locked by another
        daemon; on any failure, what was started is stopped again."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        cfg = self.config.daemon
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = DataDirLock(cfg.data_dir).acquire()
        self.eventlog = EventLog(cfg.data_dir, synchronous=cfg.synchronous)
        self.clock = Clock(cfg.clock, start=self.eventlog.last_clock)
        self.snapshots = SnapshotStore(cfg.data_dir)
        self._ray_started = await asyncio.to_thread(runtime.init_ray, self.config)
        self.runtime = runtime.Runtime(
            self.config,
            {s.name: (s.description, self.model.segment_fingerprints[s.name]) for s in self.config.segments},
            start_clock=self.clock.now(time.time()),
        )
        rebuilt = [name for m in range(runtime.MANAGERS) for name in await self.runtime.reset_segments(m)]
        if rebuilt:
            log.info("segments_rebuilding", segments=rebuilt, reason="new or changed since the last run")
        self.router = Router(
            self.runtime,
            self.eventlog,
            self.snapshots,
            self.clock,
            fingerprint=self.model.fingerprint,
            snapshot_every=cfg.snapshot_every,
            on_transitions=self.hub.publish,
        )
        await self.router.recover()
        self.router.start()
        self.committer = Committer(
            self.eventlog, self.clock, max_pending=cfg.max_pending, on_commit=self.router.submit_rows
        )
        self.committer.start()
        if cfg.clock == "wall":
            self._ticker = asyncio.get_running_loop().create_task(self._tick(cfg.tick), name="segd-tick")
        self.server = Server(
            self,
            socket_path=cfg.socket,
            tcp=cfg.tcp,
            token=cfg.token,
            max_frame=cfg.max_frame,
            max_connections=cfg.max_connections,
        )
        await self.server.start()
        if cfg.metrics:
            self.metrics = MetricsServer(cfg.metrics, self.stats)
            self.metrics.start()
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

    async def reload(self) -> bool:
        """SIGHUP: re-read the config file and apply ``[campaigns]``, ``[channels]`` and
        ``[throttle]`` without a restart. Other changes need a restart and the log says so;
        a config with errors changes nothing. Returns whether anything was applied."""
        if self.config.path is None or self.router is None:
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
        self.config = config
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
        if self.metrics is not None:
            self.metrics.close()
        if self.server is not None:
            await self.server.stop_accepting()
        if self._ticker is not None:
            self._ticker.cancel()
        if self.committer is not None:
            await self.committer.close()
        if self.router is not None:
            await self.router.close()
        if self.server is not None:
            await self.server.close_connections()
        if self.runtime is not None:
            await self.runtime.close_dispatcher()
            self.runtime.close()
        runtime.shutdown_ray(self._ray_started)
        for store in (self.eventlog, self.snapshots):
            if store is not None:
                store.close()
        if self._lock is not None:
            self._lock.release()
        log.info("daemon_stopped", last_seq=self.eventlog.last_seq if self.eventlog else 0)

    # ---------------------------------------------------------------- ops

    def handle(self, req: Request, conn: Connection) -> dict[str, Any] | Any:
        """Dispatch one validated request (see ``segd.daemon.server.Handler``)."""
        if self._stopping:
            raise ProtocolError("unavailable", "segd is shutting down")
        op = getattr(self, f"op_{req.op}", None)
        if op is None:
            raise ProtocolError("unknown_op", f"op {req.op!r} is not available in this segd yet")
        return op(req, conn)

    def op_ping(self, req: Request, conn: Connection) -> dict[str, Any]:
        wall = time.time()
        return {"version": __version__, "time": wall, "clock": self.clock.now(wall)}

    def op_track(self, req: Request, conn: Connection) -> Any:
        return self._log_one(req.args["event"])

    op_identify = op_track

    async def _log_one(self, ev: EventIn) -> dict[str, Any]:
        [(seq, dup)] = await self.committer.submit([_new_event(ev, time.time())])
        return {"seq": seq, "duplicate": True} if dup else {"seq": seq}

    async def op_batch(self, req: Request, conn: Connection) -> dict[str, Any]:
        items = req.args["events"]
        wall = time.time()
        valid = [_new_event(it, wall) for it in items if isinstance(it, EventIn)]
        results = iter(await self.committer.submit(valid) if valid else [])
        out = []
        for it in items:
            if isinstance(it, ProtocolError):
                out.append({"error": {"code": it.code, "message": it.message}})
            else:
                seq, dup = next(results)
                out.append({"seq": seq, "duplicate": True} if dup else {"seq": seq})
        return {"results": out}

    async def op_sync(self, req: Request, conn: Connection) -> dict[str, Any]:
        try:
            return {"seq": await self.router.sync()}
        except RouterFailed as exc:
            raise ProtocolError("internal", str(exc)) from exc

    async def op_forget(self, req: Request, conn: Connection) -> dict[str, Any]:
        """Erase a user everywhere (SPEC ``forget``). Runs between two commits, so no event of
        the user can be appended while it is erased: the router first applies everything
        logged before, then the user leaves its shard, the segment managers (no history,
        no message) and the outbox; last, the log rows go."""
        user = req.args["user"]

        async def erase() -> dict[str, Any]:
            try:
                left = await self.router.forget(user)
            except RouterFailed as exc:
                raise ProtocolError("internal", str(exc)) from exc
            except Exception as exc:
                if runtime.is_actor_failure(exc):
                    raise ProtocolError("unavailable", "an actor is restarting; retry the forget") from exc
                raise
            events = await self.committer.in_writer(self.eventlog.forget, user)
            log.info("user_forgotten", events=events, segments_left=left)
            return {"seq": self.eventlog.last_seq, "events": events, "segments": left}

        return await self.committer.exclusive(erase)

    async def _ask(self, call: Any) -> Any:
        """Await a query to an actor; one that is being restarted answers `unavailable`."""
        try:
            return await call
        except Exception as exc:
            if runtime.is_actor_failure(exc):
                raise ProtocolError("unavailable", "an actor is restarting; retry shortly") from exc
            raise

    async def op_user(self, req: Request, conn: Connection) -> dict[str, Any]:
        view = await self._ask(self.runtime.user(req.args["user"]))
        if view is None:
            raise ProtocolError("not_found", f"user {req.args['user']!r} has never been seen")
        return view

    async def op_segments(self, req: Request, conn: Connection) -> dict[str, Any]:
        sizes = await self._sizes()
        return {
            "segments": [
                {"name": s.name, "size": sizes.get(s.name, 0), "description": s.description}
                for s in sorted(self.config.segments, key=lambda s: s.name)
            ]
        }

    async def op_segment(self, req: Request, conn: Connection) -> dict[str, Any]:
        a = req.args
        page = await self._ask(self.runtime.page(a["name"], a["after"], a["limit"]))
        if page is None:
            raise ProtocolError("not_found", f"unknown segment {a['name']!r}")
        return page

    async def op_history(self, req: Request, conn: Connection) -> dict[str, Any]:
        a = req.args
        rows = await self._ask(self.runtime.history(a["segment"], a["since"], a["until"]))
        if rows is None:
            raise ProtocolError("not_found", f"unknown segment {a['segment']!r}")
        return {"transitions": [dict(zip(_TRANSITION, r, strict=True)) for r in rows]}

    def op_subscribe(self, req: Request, conn: Connection) -> Streaming:
        names = req.args["segments"]
        if names != "*":
            known = {s.name for s in self.config.segments}
            if unknown := [n for n in names if n not in known]:
                raise ProtocolError("not_found", f"unknown segments: {', '.join(unknown)}")
        sub = self.hub.add(names, conn.peer)
        return Streaming({}, sub.run)

    async def op_campaigns(self, req: Request, conn: Connection) -> dict[str, Any]:
        """Per campaign and variant: assigned, sent, pending, suppressed by reason, dead,
        conversions and conversion rate (an extension of SPEC's ops)."""
        return {"campaigns": await self._ask(self.runtime.campaign_report())}

    async def _sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for m in range(runtime.MANAGERS):
            sizes.update(await self._ask(self.runtime.sizes(m)))
        return sizes

    async def op_stats(self, req: Request, conn: Connection) -> dict[str, Any]:
        return await self.stats()

    async def stats(self) -> dict[str, Any]:
        """The ``stats`` op's answer; also what the Prometheus endpoint exports."""
        el, cm, rt = self.eventlog, self.committer, self.router
        shards = await self._ask(
            asyncio.gather(*(self.runtime.shard_stats(i) for i in range(self.runtime.n)))
        )
        return {
            "events": el.count,
            "last_seq": el.last_seq,
            "users": sum(s["users"] for s in shards),
            "applied_seq": rt.routed_seq,
            "lag": rt.lag,
            "segments": await self._sizes(),
            "messages": await self._ask(self.runtime.message_stats()),
            "transitions": rt.transitions,
            "shards": [{"users": s["users"], "applied_seq": s["applied_seq"]} for s in shards],
            "recoveries": rt.recoveries,
            "catch_ups": rt.catch_ups,
            "subscribers": len(self.hub.subscribers),
            "pending": cm.pending,
            "commits": cm.commits,
            "commit_ms_avg": round(cm.commit_seconds * 1000 / cm.commits, 3) if cm.commits else 0.0,
            "commit_seconds": round(cm.commit_seconds, 6),
            "connections": len(self.server.connections),
            "clock": self.clock.value,
            "uptime": round(time.time() - self.started, 3),
        }


_TRANSITION = ("id", "segment", "user", "kind", "at", "seq")


def _new_event(ev: EventIn, wall: float) -> NewEvent:
    return NewEvent(
        ev.user, ev.type, ev.event, ev.ts, msgpack.packb(ev.data, use_bin_type=True), ev.msg_id, wall
    )


def run_daemon(config: Config) -> int:
    """``segd run``: serve until SIGINT/SIGTERM, then drain. Returns the exit code."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Daemon(config) as daemon:
            reloads: set[asyncio.Task] = set()

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
