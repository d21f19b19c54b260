"""What each op of SPEC section 2 means, over a running daemon's parts.

``Ops`` is built by ``segd.daemon.lifecycle.Daemon`` once every part is up, so nothing here
is ever missing. The socket server (and, through the same handlers, the HTTP face) calls
``handle``; each ``op_NAME`` validates nothing itself (``segd.wire.protocol`` did) and
answers a map of the op's response fields, or raises ProtocolError (its code and message
become the error frame) or Unavailable (an actor restarting: ``unavailable``).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog

from actors.dispatch.report import summarize
from actors.records import Ack, ShardStats
from actors.shard.core import PREVIEW_SAMPLE
from segd import __version__
from segd.clock import Clock
from segd.config import Config
from segd.daemon.health import Probe
from segd.daemon.ingest import Committer
from segd.daemon.router import Router, RouterFailed
from segd.daemon.runtime import Runtime
from segd.daemon.server import Connection, Streaming
from segd.daemon.subscriptions import Hub
from segd.errors import ProtocolError
from segd.rules import WHEN, Names, RuleError, compile_expr
from segd.wire.decode import new_events
from segd.wire.protocol import Request
from store.eventlog import EventLog

log = structlog.get_logger("segd.daemon")

STATS_BOUND = 2.0  # seconds ``stats`` waits for any actor before using its last known value


class Ops:
    """The op handlers of one running daemon (see ``segd.daemon.server.Handler``)."""

    def __init__(
        self,
        *,
        config: Config,
        eventlog: EventLog,
        clock: Clock,
        committer: Committer,
        router: Router,
        runtime: Runtime,
        hub: Hub,
        connections: Callable[[], int],
        started: float,
    ) -> None:
        self.config = config
        self.eventlog = eventlog
        self.clock = clock
        self.committer = committer
        self.router = router
        self.runtime = runtime
        self.hub = hub
        self.connections = connections  # open client connections, for stats
        self.started = started
        self.draining = False  # set when the daemon starts stopping: every op is `unavailable`
        self._probes = _Probes(runtime)  # stats' remote parts with their last known values
        self.previewing = False  # a preview reads every user of every shard: one at a time

    def handle(
        self, req: Request, conn: Connection
    ) -> dict[str, Any] | Awaitable[dict[str, Any]] | Streaming:
        """Dispatch one validated request."""
        if self.draining:
            raise ProtocolError("unavailable", "segd is shutting down")
        op = getattr(self, f"op_{req.op}", None)
        if op is None:
            raise ProtocolError("unknown_op", f"op {req.op!r} is not available in this segd yet")
        result: dict[str, Any] | Awaitable[dict[str, Any]] | Streaming = op(req, conn)
        return result

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` answers: ``ready`` and a ``status``. Ops exists only once the
        daemon has recovered, so it is ready while not draining and the router applies
        events: not while a derived store fails (``degraded``, see ``segd.daemon.stores``)."""
        if self.draining:
            return {"ready": False, "status": "draining"}
        if self.router.failed is not None:
            return {"ready": False, "status": "failed", "reason": repr(self.router.failed)}
        if degraded := self.router.stores.degraded:  # a derived store fails: applying waits
            return {"ready": False, "status": "degraded", "degraded": degraded}
        return {
            "ready": True,
            "status": "ready",
            "applied_seq": self.router.routed_seq,
            "lag": self.router.lag,
        }

    # ---------------------------------------------------------------- writes

    def op_ping(self, req: Request, conn: Connection) -> dict[str, Any]:
        wall = time.time()
        return {"version": __version__, "time": wall, "clock": self.clock.now(wall)}

    async def op_track(self, req: Request, conn: Connection) -> dict[str, Any]:
        [ack] = await self.committer.submit([req.args["event"].new_event(time.time())])
        return {"seq": ack.seq, "duplicate": True} if ack.duplicate else {"seq": ack.seq}

    op_identify = op_track

    async def op_batch(self, req: Request, conn: Connection) -> dict[str, Any]:
        """Log the valid items (one submit, so one group commit); answer every item in order.
        The events come typed from ``segd.wire.decode`` or, with refused items among them as
        ProtocolError values, from the dict schemas."""
        items = req.args["events"]
        valid = new_events(items, time.time())
        acks = await self.committer.submit(valid) if valid else []
        if len(acks) == len(items):  # the usual case: nothing refused
            # An Ack encodes as the answer's item ({"seq": N}, with "duplicate": true).
            return {"results": acks}
        out: list[Ack | dict[str, Any]] = []
        answers = iter(acks)
        for it in items:
            if isinstance(it, ProtocolError):
                out.append({"error": {"code": it.code, "message": it.message}})
            else:
                out.append(next(answers))
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
            events = await self.committer.in_writer(self.eventlog.forget, user)
            log.info("user_forgotten", events=events, segments_left=left)
            return {"seq": self.eventlog.last_seq, "events": events, "segments": left}

        return await self.committer.exclusive(erase)

    # ---------------------------------------------------------------- queries

    async def op_user(self, req: Request, conn: Connection) -> dict[str, Any]:
        view = await self.runtime.user(req.args["user"])
        if view is None:
            raise ProtocolError("not_found", f"user {req.args['user']!r} has never been seen")
        return msgspec.structs.asdict(view)

    async def op_segments(self, req: Request, conn: Connection) -> dict[str, Any]:
        sizes = await self.runtime.sizes()
        return {
            "segments": [
                {"name": s.name, "size": sizes.get(s.name, 0), "description": s.description, "when": s.when}
                for s in sorted(self.config.segments, key=lambda s: s.name)
            ]
        }

    async def op_segment(self, req: Request, conn: Connection) -> dict[str, Any]:
        """A page of members, now or (``at``) at a past logical time: every transition with
        ``at <= T`` applied (``store.segments``)."""
        a = req.args
        page = await self.runtime.page(a["name"], a["after"], a["limit"], a["at"])
        if page is None:
            raise ProtocolError("not_found", f"unknown segment {a['name']!r}")
        return msgspec.structs.asdict(page)

    async def op_history(self, req: Request, conn: Connection) -> dict[str, Any]:
        """Transitions of a segment and/or a user, in history order, at most ``limit``."""
        a = req.args
        rows = await self.runtime.history(a["segment"], a["user"], a["since"], a["until"], a["limit"])
        if rows is None:
            raise ProtocolError("not_found", f"unknown segment {a['segment']!r}")
        return {"transitions": [t.to_map() for t in rows]}

    async def op_sizes(self, req: Request, conn: Connection) -> dict[str, Any]:
        """A segment's size at ``since + k*step`` up to ``until`` (the protocol counted them)."""
        a = req.args
        points = await self.runtime.size_points(a["segment"], a["since"], a["step"], a["count"])
        if points is None:
            raise ProtocolError("not_found", f"unknown segment {a['segment']!r}")
        return {"points": [[t, size] for t, size in points]}

    async def op_preview(self, req: Request, conn: Connection) -> dict[str, Any]:
        """How many users an expression holds for now, a sample, and the overlap with each
        segment. The expression is checked here, so a bad one never reaches the shards."""
        when = req.args["when"]
        c = self.config
        names = Names(
            aggregates=frozenset(x.name for x in c.aggregates), segments=frozenset(x.name for x in c.segments)
        )
        try:
            compile_expr(when, scope=WHEN, names=names, table="preview", key="when")
        except RuleError as exc:
            raise ProtocolError("bad_request", f"'when' at column {exc.column}: {exc.message}") from exc
        if self.previewing:
            raise ProtocolError(
                "overloaded",
                "a preview is already running (previews run one at a time: each reads every user); retry",
            )
        self.previewing = True
        try:
            parts = await self.runtime.preview(when)
        finally:
            self.previewing = False
        overlap = dict.fromkeys(sorted(names.segments), 0)
        for part in parts:
            for name, n in part.overlap.items():
                overlap[name] += n
        return {
            "size": sum(p.size for p in parts),
            "sample": heapq.nsmallest(PREVIEW_SAMPLE, (u for p in parts for u in p.sample)),
            "overlap": overlap,
        }

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
        return {"campaigns": await self.runtime.campaign_report()}

    async def op_stats(self, req: Request, conn: Connection) -> dict[str, Any]:
        return await self.stats()

    async def stats(self) -> dict[str, Any]:
        """The ``stats`` op's answer; also what the Prometheus endpoint exports.

        Answers within about ``STATS_BOUND`` seconds whatever the actors do: the counters are
        the daemon's own, and each remote part (a shard's user count, the segment sizes, the
        message counts) is its last known value when the actor does not answer in time; those
        parts are listed in ``stale``. Each shard reports its ``state`` (``ok``, ``stalled``,
        ``unreachable``, ``recovering``), ``last_reply_s`` and ``waiting_s`` (see
        ``segd.daemon.health``).
        """
        el, cm, rt, runtime = self.eventlog, self.committer, self.router, self.runtime
        p = self._probes
        parts: list[Probe[Any]] = [*p.shards, p.sizes, p.messages]
        fresh = await asyncio.gather(*(part.read(STATS_BOUND) for part in parts))
        shards = []
        for i, probe in enumerate(p.shards):
            health = runtime.watch.health(i)
            shards.append(
                {
                    "shard": i,
                    "state": health.state,
                    "users": probe.value.users,
                    "applied_seq": rt.applied[i],
                    "last_reply_s": health.last_reply_s,
                    "waiting_s": health.waiting_s,
                }
            )
        return {
            "events": el.count,
            "last_seq": el.last_seq,
            "users": sum(s.value.users for s in p.shards),
            "applied_seq": rt.routed_seq,
            "lag": rt.lag,
            "segments": p.sizes.value,
            "messages": p.messages.value,
            "transitions": rt.transitions,
            "shards": shards,
            "stale": [part.what for part, ok in zip(parts, fresh, strict=True) if not ok],
            "degraded": rt.stores.degraded,
            "recoveries": rt.recoveries,
            "catch_ups": rt.catch_ups,
            "subscribers": len(self.hub.subscribers),
            "subscribers_dropped": self.hub.dropped,
            "pending": cm.pending,
            "commits": cm.commits,
            "commit_ms_avg": round(cm.commit_seconds * 1000 / cm.commits, 3) if cm.commits else 0.0,
            "commit_seconds": round(cm.commit_seconds, 6),
            "connections": self.connections(),
            "clock": self.clock.value,
            "uptime": round(time.time() - self.started, 3),
        }


class _Probes:
    """The remote parts of ``stats``, each with its last known value (see ``Probe``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.shards = [
            Probe(f"shards.{i}", functools.partial(runtime.shard_stats, i), ShardStats(0, 0, float("-inf")))
            for i in range(runtime.n)
        ]
        self.sizes: Probe[dict[str, int]] = Probe("segments", runtime.sizes, {})
        self.messages: Probe[dict[str, Any]] = Probe("messages", runtime.message_stats, summarize({}))
