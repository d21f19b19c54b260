"""Snapshots that cannot be used (issue 16, item 2): an unreadable snapshot is logged and its
shard rebuilt from the log with the same state, and a start that fails takes no snapshot.
Real ``segd run`` processes, real files."""

from __future__ import annotations

import os
import socket
import sqlite3

from tests.faults import Acked, Daemon, fault_config, snapshots, views

USERS = [f"u{i}" for i in range(0, 200, 7)]


def _state(d: Daemon) -> dict:
    """What the shards and managers hold: members of each segment, users' aggregates."""
    with d.client() as c:
        c.sync()
        members = {s: c.segment(s, limit=100_000)["members"] for s in ("viewers", "regulars")}
        users = {u: c.user(u)["aggregates"] for u in USERS}
        return {"members": members, "users": users, "stats_users": c.stats()["users"]}


def test_an_unreadable_snapshot_is_logged_and_its_shard_rebuilt_from_the_log(tmp_path):
    cfg = fault_config(tmp_path, own_ray=False)
    acked = Acked()
    d = Daemon(cfg)
    try:
        d.wait_ready()
        with d.client() as c:
            acked.send(c, views("a", 2000))
        before = _state(d)
        d.terminate()
    finally:
        d.stop_now()
    snapshots_db = d.data_dir / "snapshots.db"
    assert set(snapshots(d.data_dir)) == {0, 1}
    conn = sqlite3.connect(snapshots_db)
    with conn:
        conn.execute("UPDATE snapshots SET state = randomblob(length(state))")
    conn.close()

    d = Daemon(cfg)
    try:
        d.wait_ready()
        after = _state(d)
        unreadable = [e for e in d.events() if e["event"] == "snapshot_unreadable"]
    finally:
        d.stop_now()
    assert sorted(e["shard"] for e in unreadable) == [0, 1]
    assert all(e["file"] == str(snapshots_db) and e["reason"] for e in unreadable), unreadable
    assert after == before
    assert acked.missing_from(d.data_dir) == []


def test_a_start_that_fails_takes_no_snapshot(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    cfg = fault_config(tmp_path, own_ray=False)
    acked = Acked()
    d = Daemon(cfg)
    try:
        d.wait_ready()
        with d.client() as c:
            acked.send(c, views("a", 1000))
            c.sync()
        d.terminate()  # shutdown snapshots at the end of the log
        good = snapshots(d.data_dir)
        d = Daemon(cfg)
        d.wait_ready()
        with d.client() as c:
            acked.send(c, views("b", 1000))  # logged after the snapshots...
        d.proc.kill()  # ...and no shutdown snapshot covers them
        d.proc.wait(30)
    finally:
        d.stop_now()
    # The next start recovers (replaying "b"), then fails: the metrics port is taken.
    cfg.write_text(cfg.read_text().replace("[daemon]\n", f'[daemon]\nmetrics = "127.0.0.1:{port}"\n', 1))
    try:
        d = Daemon(cfg)
        code = d.exit_code()
    finally:
        busy.close()
    names = [e["event"] for e in d.events()]
    assert code == 3, d.tail()
    assert "recovery_done" in names and "snapshot_taken" not in names, names
    assert snapshots(d.data_dir) == good
    assert acked.missing_from(d.data_dir) == []


def test_a_garbage_event_log_is_refused_naming_the_file_and_left_untouched(tmp_path):
    cfg = fault_config(tmp_path, own_ray=False)
    data = tmp_path / "data"
    data.mkdir()
    garbage = os.urandom(64 * 1024)
    (data / "events.db").write_bytes(garbage)
    d = Daemon(cfg)
    code = d.exit_code()
    assert code == 3, d.tail()
    assert str(data / "events.db") in d.tail()
    assert (data / "events.db").read_bytes() == garbage
    assert not (data / "snapshots.db").exists()
