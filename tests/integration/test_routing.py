"""The event-to-transition path against a real daemon: what subscribers see and when timers
may fire relative to events still being committed."""

from __future__ import annotations

import sqlite3
import threading

from segd.wire.client import Client
from tests.helpers import split_daemon, wait_until

RECENT = """
[daemon]
clock = "event"

[aggregates.views_10s]
kind = "count"
event = "view"
within = "10s"

[segments.recent]
when = "views_10s >= 1"
"""
T0 = 1_700_000_000.0


def start(daemon_factory, config: str = RECENT):
    rest, keys = split_daemon(config)
    return daemon_factory(rest, daemon=keys)


def test_a_sync_during_a_commit_fires_no_timer_ahead_of_the_events_being_committed(daemon_factory):
    """x viewed at +100 (in ``recent`` until +110). A batch [x at +105, y at +200] is stamped
    (the watermark is +200) but its commit waits for a lock; a ``sync`` meanwhile must not
    advance the shards past +105: firing x's exit at +110 first, then applying x's view at
    +105, is not what a replay of the log does (x stays in until +115)."""
    d = start(daemon_factory)
    with Client(d.socket) as c:
        c.track("x", "view", ts=T0 + 100)
        c.sync()
        blocker = sqlite3.connect(d.config.daemon.data_dir / "events.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the daemon's commit waits for this lock
        acked: list[dict] = []

        def send() -> None:
            with Client(d.socket) as other:
                batch = [
                    {"type": "track", "user": "x", "event": "view", "ts": T0 + 105},
                    {"type": "track", "user": "y", "event": "view", "ts": T0 + 200},
                ]
                acked.extend(other.batch(batch)["results"])

        sender = threading.Thread(target=send)
        sender.start()
        try:
            wait_until(lambda: c.ping()["clock"] == T0 + 200, 10, what="the batch to be stamped")
            c.sync()  # while the batch is still being committed
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        sender.join(30)
        assert [r["seq"] for r in acked] == [2, 3]
        c.sync()
        got = [(t["kind"], t["at"]) for t in c.history("recent", 0)["transitions"] if t["user"] == "x"]
    assert got == [("enter", T0 + 100), ("exit", T0 + 115)]
