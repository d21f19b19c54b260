"""Acknowledged means durable: kill -9 of a daemon under load loses no acknowledged event."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading

from segd.errors import ConnectError, RemoteError
from segd.wire.client import Client
from tests.helpers import start_subprocess_daemon, write_config


def test_kill_9_under_load_loses_no_acknowledged_event(tmp_path):
    cfg = write_config(tmp_path)
    from segd.config import load_config

    sock = load_config(cfg).daemon.socket
    proc = start_subprocess_daemon(cfg, sock)
    acked: dict[str, int] = {}
    lock = threading.Lock()
    total_per_client, n_clients = 50_000, 2  # 100,000 events offered in batches
    half_acked = threading.Event()

    def client(k: int) -> None:
        try:
            with Client(sock) as c:
                for b in range(0, total_per_client, 500):
                    events = [
                        {
                            "type": "track",
                            "user": f"u{(k * 7 + i) % 1000}",
                            "event": "view",
                            "msg_id": f"{k}-{b + i}",
                            "props": {"i": b + i},
                        }
                        for i in range(500)
                    ]
                    results = c.batch(events)["results"]
                    with lock:
                        for e, r in zip(events, results, strict=True):
                            acked[e["msg_id"]] = r["seq"]
                        if len(acked) >= 50_000:
                            half_acked.set()
        except (ConnectError, RemoteError, OSError):
            return  # the daemon was killed under us: expected

    threads = [threading.Thread(target=client, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    assert half_acked.wait(120), "daemon did not acknowledge 50,000 events in 120 s"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    for t in threads:
        t.join(60)

    conn = sqlite3.connect(tmp_path / "data" / "events.db")
    rows = dict(conn.execute("SELECT msg_id, seq FROM events").fetchall())
    conn.close()
    assert len(acked) >= 50_000
    missing = [m for m, seq in acked.items() if rows.get(m) != seq]
    assert missing == [], f"{len(missing)} acknowledged events lost or renumbered"

    # Restart: the log is usable, resends of acknowledged events are duplicates.
    proc = start_subprocess_daemon(cfg, sock)
    try:
        with Client(sock) as c:
            some = next(iter(acked))
            k, i = some.split("-")
            r = c.track(f"u{(int(k) * 7 + int(i)) % 1000}", "view", {"i": int(i)}, msg_id=some)
            assert r == {"seq": acked[some], "duplicate": True}
            assert c.track("new", "view")["seq"] > max(rows.values())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
