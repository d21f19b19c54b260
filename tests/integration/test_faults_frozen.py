"""A frozen shard (issue 16, item 4): with one shard's worker stopped by SIGSTOP, ``stats``
and ``/metrics`` still answer, from the daemon's own counters, with the shard ``stalled`` and
the lag growing; after SIGCONT everything is applied and nothing acknowledged is lost. The
worker is a real Ray worker process, found through Ray's actor table."""

from __future__ import annotations

import os
import signal
import threading
import urllib.request

import ray

from segd.daemon.health import STALLED_AFTER
from segd.errors import ConnectError, RemoteError
from tests.faults import MODEL, Acked, views
from tests.helpers import wait_until

STATS_TIMEOUT = 5.0  # a client timeout, not a measurement: a hanging stats fails the test


def _worker_pid(handle) -> int:
    """The pid of the process hosting an actor, from the GCS actor table (Ray's state API
    proper, ``ray.util.state``, needs the dashboard, which the test session does not run)."""
    info = ray._private.state.actors(handle._actor_id.hex())
    assert info["State"] == "ALIVE", info
    return int(info["Pid"])


def test_stats_and_metrics_answer_while_a_shard_is_frozen(daemon_factory):
    ray_table = f'\n[ray]\naddress = "{os.environ["SEGD_TEST_RAY_ADDRESS"]}"\nshards = 2\n'
    d = daemon_factory(MODEL + ray_table, daemon='metrics = "127.0.0.1:0"\n')
    acked = Acked()
    with _client(d) as c:
        acked.send(c, views("warm", 2000))
        c.sync()
    pid = _worker_pid(d.daemon.runtime.shards[0])
    stop_ingest = threading.Event()

    def ingest() -> None:
        try:
            with _client(d) as c:
                k = 0
                while not stop_ingest.is_set():
                    acked.send(c, views(f"frozen{k}", 200))
                    k += 1
        except (ConnectError, RemoteError, OSError) as exc:  # pragma: no cover - reported below
            raise AssertionError(f"ingest failed while a shard was frozen: {exc}") from exc

    os.kill(pid, signal.SIGSTOP)
    t = threading.Thread(target=ingest)
    try:
        t.start()
        with _client(d, timeout=STATS_TIMEOUT) as c:
            first = c.stats()

            def stalled() -> dict | None:
                s = c.stats()
                return s if s["shards"][0]["state"] == "stalled" else None

            frozen = wait_until(stalled, 4 * STALLED_AFTER, what="shard 0 to show as stalled in stats")
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{d.daemon.metrics.port}/metrics", timeout=STATS_TIMEOUT)
            .read()
            .decode()
        )
    finally:
        os.kill(pid, signal.SIGCONT)
        stop_ingest.set()
        t.join(60)

    assert frozen["shards"][0]["waiting_s"] > STALLED_AFTER
    assert frozen["shards"][1]["state"] == "ok"
    assert "shards.0" in frozen["stale"] and "shards.1" not in frozen["stale"]
    assert frozen["lag"] > first["lag"] >= 0
    assert 'segd_shard_state{shard="0",state="stalled"} 1.0' in metrics
    with _client(d) as c:
        c.sync()
        # the stats call left queued at the frozen shard answers too, soon after the rows
        after = wait_until(
            lambda: (s := c.stats())["stale"] == [] and s, 30, what="stats without stale parts"
        )
    assert after["lag"] == 0
    assert [s["state"] for s in after["shards"]] == ["ok", "ok"]
    assert acked.missing_from(d.config.daemon.data_dir) == []


def _client(d, timeout: float = 30):
    from segd.wire.client import Client

    return Client(d.socket, timeout=timeout)
