"""The daemon: wires the event log, the clock, group commit, the server and the actor runtime,
and gives each op of SPEC section 2 its meaning.

Lifecycle: ``start`` (lock data_dir, open the log, start listening), ``stop`` (stop
accepting, commit everything acknowledged-to-be, answer, close). ``run_daemon`` is the
foreground ``segd run`` with SIGINT/SIGTERM draining.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from typing import Any

import msgpack
import structlog

from segd import __version__
from segd.clock import Clock
from segd.config import Config
from segd.errors import ProtocolError, SegdError
from segd.ingest import Committer
from segd.protocol import EventIn, Request
from segd.server import Connection, Server
from store.eventlog import EventLog, NewEvent

log = structlog.get_logger("segd.daemon")


class Daemon:
    """One segd daemon over one ``data_dir``. Use ``async with Daemon(cfg):`` or start/stop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.time()
        self.eventlog: EventLog | None = None
        self.clock: Clock | None = None
        self.committer: Committer | None = None
        self.server: Server | None = None
        self._lock_fd: int | None = None
        self._stopping = False

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the stores and listen. Raises SegdError if data_dir is locked by another daemon."""
        cfg = self.config.daemon
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        self.eventlog = EventLog(cfg.data_dir, synchronous=cfg.synchronous)
        self.clock = Clock(cfg.clock, start=self.eventlog.last_clock)
        self.committer = Committer(self.eventlog, self.clock, max_pending=cfg.max_pending)
        self.committer.start()
        self.server = Server(self, socket_path=cfg.socket, tcp=cfg.tcp, token=cfg.token,
                             max_frame=cfg.max_frame, max_connections=cfg.max_connections)
        await self.server.start()
        log.info("daemon_started", version=__version__, data_dir=str(cfg.data_dir),
                 events=self.eventlog.count, last_seq=self.eventlog.last_seq, clock=cfg.clock)

    async def stop(self) -> None:
        """Drain: stop accepting, commit and answer what was submitted, close everything."""
        if self._stopping:
            return
        self._stopping = True
        log.info("daemon_stopping")
        if self.server is not None:
            await self.server.stop_accepting()
        if self.committer is not None:
            await self.committer.close()
        if self.server is not None:
            await self.server.close_connections()
        if self.eventlog is not None:
            self.eventlog.close()
        self._unlock_data_dir()
        log.info("daemon_stopped", last_seq=self.eventlog.last_seq if self.eventlog else 0)

    def _lock_data_dir(self) -> None:
        path = self.config.daemon.data_dir / "segd.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise SegdError(f"{self.config.daemon.data_dir} is in use by another segd "
                            f"(lock {path} is held)") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock_data_dir(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---------------------------------------------------------------- ops

    def handle(self, req: Request, conn: Connection) -> dict[str, Any] | Any:
        """Dispatch one validated request (see ``segd.server.Handler``)."""
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

    def op_stats(self, req: Request, conn: Connection) -> dict[str, Any]:
        el, cm = self.eventlog, self.committer
        return {
            "events": el.count,
            "last_seq": el.last_seq,
            "users": None,
            "applied_seq": 0,
            "lag": el.last_seq,
            "segments": {},
            "messages": {},
            "pending": cm.pending,
            "commits": cm.commits,
            "commit_ms_avg": round(cm.commit_seconds * 1000 / cm.commits, 3) if cm.commits else 0.0,
            "connections": len(self.server.connections),
            "clock": self.clock.value,
            "uptime": round(time.time() - self.started, 3),
        }


def _new_event(ev: EventIn, wall: float) -> NewEvent:
    return NewEvent(ev.user, ev.type, ev.event, ev.ts, msgpack.packb(ev.data, use_bin_type=True),
                    ev.msg_id, wall)


def run_daemon(config: Config) -> int:
    """``segd run``: serve until SIGINT/SIGTERM, then drain. Returns the exit code."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Daemon(config):
            await stop.wait()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    asyncio.run(main())
    return 0
