"""The Prometheus endpoint (``[daemon] metrics = "127.0.0.1:9464"``, off by default).

Metrics are read at scrape time from the same numbers as the ``stats`` op (one collector,
no counters kept twice): the scrape runs on prometheus_client's HTTP thread and asks the
daemon's event loop for a fresh ``stats``, which itself never waits on an actor for more
than ``segd.daemon.ops.STATS_BOUND`` (a frozen shard shows in ``segd_shard_state``), and
with a timeout so a stuck event loop shows as a failed scrape rather than a hung one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import start_http_server
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from segd.config.values import parse_address
from segd.daemon.health import STATES
from segd.errors import SegdError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = structlog.get_logger("segd.daemon.metrics")

SCRAPE_TIMEOUT = 5.0

#: The daemon's ``stats`` (``Ops.stats``): a coroutine function, as run_coroutine_threadsafe needs.
StatsFn = Callable[[], Coroutine[Any, Any, dict[str, Any]]]


class StatsCollector:
    """A prometheus_client collector over the daemon's ``stats``."""

    def __init__(self, stats: StatsFn, loop: asyncio.AbstractEventLoop) -> None:
        self.stats = stats
        self.loop = loop

    def collect(self) -> Iterator[Metric]:
        """Run ``stats`` on the daemon's loop and yield its metrics (called on the scrape thread).

        Raises TimeoutError if the loop does not answer within ``SCRAPE_TIMEOUT`` seconds.
        """
        s = asyncio.run_coroutine_threadsafe(self.stats(), self.loop).result(SCRAPE_TIMEOUT)
        yield from metrics_of(s)


def metrics_of(s: dict[str, Any]) -> Iterator[Metric]:
    """The metric families for one ``stats`` answer."""
    yield CounterMetricFamily(
        "segd_events_ingested", "Events appended to the log (log position)", value=s["last_seq"]
    )
    yield GaugeMetricFamily("segd_events_stored", "Events in the log (after forget)", value=s["events"])
    yield SummaryMetricFamily(
        "segd_commit_seconds",
        "Group commits of the event log and their duration",
        count_value=s["commits"],
        sum_value=s["commit_seconds"],
    )
    yield GaugeMetricFamily("segd_pending_events", "Events waiting for the disk", value=s["pending"])
    yield GaugeMetricFamily(
        "segd_lag_events", "Events logged but not yet applied by the user actors", value=s["lag"]
    )
    yield GaugeMetricFamily("segd_applied_seq", "Log position applied by every shard", value=s["applied_seq"])
    yield GaugeMetricFamily("segd_users", "Users hosted by the shards", value=s["users"])
    sizes = GaugeMetricFamily("segd_segment_size", "Members per segment", labels=["segment"])
    for name, size in sorted(s["segments"].items()):
        sizes.add_metric([name], size)
    yield sizes
    yield CounterMetricFamily(
        "segd_transitions", "Segment transitions recorded since start", value=s["transitions"]
    )
    msgs = GaugeMetricFamily(
        "segd_messages", "Messages in the outbox by outcome and reason", labels=["outcome", "reason"]
    )
    m = s["messages"]
    for outcome in ("sent", "pending", "holdout"):
        msgs.add_metric([outcome, ""], m.get(outcome, 0))
    msgs.add_metric(["pending", "quiet_hours"], m.get("deferred", 0))
    for reason, n in sorted(m.get("suppressed", {}).items()):
        msgs.add_metric(["suppressed", reason], n)
    for reason, n in sorted(m.get("failed", {}).items()):
        msgs.add_metric(["failed", reason], n)
    yield msgs
    yield CounterMetricFamily(
        "segd_actor_recoveries", "Shard actors restored after a restart", value=s["recoveries"]
    )
    yield CounterMetricFamily(
        "segd_catch_ups", "Times the router read rows back from the log", value=s["catch_ups"]
    )
    yield from shard_metrics(s["shards"])
    stale = GaugeMetricFamily(
        "segd_stats_stale", "1 for a part of stats answered from its last known value", labels=["part"]
    )
    for part in s["stale"]:
        stale.add_metric([part], 1)
    yield stale
    yield GaugeMetricFamily("segd_connections", "Open client connections", value=s["connections"])
    yield GaugeMetricFamily("segd_subscribers", "Transition subscribers", value=s["subscribers"])
    yield GaugeMetricFamily("segd_clock_seconds", "The engine clock", value=s["clock"])
    yield GaugeMetricFamily("segd_uptime_seconds", "Seconds since the daemon started", value=s["uptime"])


def shard_metrics(shards: list[dict[str, Any]]) -> Iterator[Metric]:
    """Per shard: its state (one series per state, 1 for the current one), the age of its
    last reply, how long its oldest call has waited, its users and applied seq."""
    state = GaugeMetricFamily(
        "segd_shard_state", "1 for the shard's current state", labels=["shard", "state"]
    )
    last = GaugeMetricFamily(
        "segd_shard_last_reply_seconds", "Seconds since the shard last answered a call", labels=["shard"]
    )
    waiting = GaugeMetricFamily(
        "segd_shard_waiting_seconds",
        "Seconds the shard's oldest outstanding call has waited",
        labels=["shard"],
    )
    users = GaugeMetricFamily("segd_shard_users", "Users hosted by the shard (last known)", labels=["shard"])
    applied = GaugeMetricFamily(
        "segd_shard_applied_seq", "Log position the shard has applied", labels=["shard"]
    )
    for sh in shards:
        label = str(sh["shard"])
        for name in STATES:
            state.add_metric([label, name], 1 if sh["state"] == name else 0)
        if sh["last_reply_s"] is not None:
            last.add_metric([label], sh["last_reply_s"])
        waiting.add_metric([label], sh["waiting_s"])
        users.add_metric([label], sh["users"])
        applied.add_metric([label], sh["applied_seq"])
    yield from (state, last, waiting, users, applied)


class MetricsServer:
    """The HTTP endpoint; ``address`` is ``host:port`` (port 0 picks a free one)."""

    def __init__(self, address: str, stats: StatsFn) -> None:
        self.host, self.port = parse_address(address, allow_port_zero=True)
        self.stats = stats
        self._server: WSGIServer | None = None

    def start(self) -> None:
        """Serve the endpoint from a prometheus_client thread; call it on the daemon's running
        loop, which scrapes then ask for ``stats``. ``port`` becomes the port actually bound;
        SegdError naming ``[daemon] metrics`` if the address cannot be bound."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsCollector(self.stats, asyncio.get_running_loop()))
        try:
            self._server, _ = start_http_server(self.port, addr=self.host, registry=registry)
        except OSError as exc:
            raise SegdError(
                f"[daemon] metrics = '{self.host}:{self.port}': cannot listen there: {exc.strerror or exc}"
            ) from exc
        self.port = self._server.server_port
        log.info("metrics_listening", address=f"{self.host}:{self.port}")

    def close(self) -> None:
        """Stop listening; a no-op before ``start``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
