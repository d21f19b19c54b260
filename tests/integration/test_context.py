"""An event's ``context`` end to end: a real daemon, the socket client, the CLI, the log file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import msgpack

from segd.wire.client import Client

CONFIG = """
[aggregates.views_fr]
kind = "count"
event = "view"
where = "context.locale == 'fr-FR'"

[segments.french]
when = "views_fr >= 2"
"""


def test_context_is_logged_and_read_by_where(daemon_factory):
    d = daemon_factory(CONFIG)
    with Client(d.socket) as c:
        c.track("alice", "view", context={"locale": "fr-FR", "ip": "10.1.2.3"})
        c.batch(
            [
                {"type": "track", "user": "alice", "event": "view", "context": {"locale": "fr-FR"}},
                {"type": "track", "user": "alice", "event": "view", "context": {"locale": "en-GB"}},
                {"type": "track", "user": "alice", "event": "view"},
            ]
        )
        c.identify("alice", {"plan": "pro"}, context={"library": "tests"})
        c.sync()
        user = c.user("alice")
        members = c.segment("french")["members"]
    assert user["aggregates"] == {"views_fr": 2}
    assert members == ["alice"]
    assert "10.1.2.3" not in repr(user)  # the context is kept with the event, not in answers
    log = sqlite3.connect(d.config.daemon.data_dir / "events.db")
    stored = [
        msgpack.unpackb(c) if c else None for (c,) in log.execute("SELECT context FROM events ORDER BY seq")
    ]
    assert stored == [
        {"locale": "fr-FR", "ip": "10.1.2.3"},
        {"locale": "fr-FR"},
        {"locale": "en-GB"},
        None,
        {"library": "tests"},
    ]


def test_segd_send_takes_context_pairs(daemon_factory, tmp_path):
    d = daemon_factory(CONFIG)
    for _ in range(2):
        r = subprocess.run(
            [sys.executable, "-m", "segd", "send", "view", "--user", "bob", "--context", "locale=fr-FR",
             "--socket", str(d.socket)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    with Client(d.socket) as c:
        c.sync()
        assert c.user("bob")["aggregates"] == {"views_fr": 2}
