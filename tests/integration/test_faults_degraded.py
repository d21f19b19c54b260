"""A derived store that fails heals by itself (issue 16, item 1, the router's part): only
``segments.db`` lives on a real 16 MiB tmpfs that the test fills and frees. While its commits
fail the daemon keeps logging and acknowledging, says it is degraded (``stats``, ``/readyz``
503, one ``store_degraded`` log event), and once space is back it applies everything by
itself: applied_seq catches up with the log, and segments.db holds exactly the transitions
and members a fresh replay of the log gives. Real ``segd run`` processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.faults import Acked, Daemon, SmallFs, cannot_create, fault_config, views
from tests.helpers import wait_until
from tests.http_helpers import free_port

MIB = 1 << 20


@pytest.fixture
def small_fs(tmp_path):
    fs = SmallFs(tmp_path / "small", 16 * MIB)
    yield fs
    fs.close()


def _new_users(k: int) -> list[dict]:
    """Views by 20 users never seen before (batch ``k``): each enters a segment."""
    return [
        {"type": "track", "user": f"n{k}-{i}", "event": "view", "msg_id": f"new{k}-{i}"} for i in range(20)
    ]


def _readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _derived(data_dir: Path) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """segments.db's transitions (id, segment, user, kind, seq) and members (segment, user)."""
    conn = sqlite3.connect(f"file:{data_dir / 'segments.db'}?mode=ro", uri=True)
    try:
        transitions = set(conn.execute("SELECT id, segment, user, kind, seq FROM transitions"))
        members = set(conn.execute("SELECT segment, user FROM members"))
    finally:
        conn.close()
    return transitions, members


def _fresh_replay(tmp_path: Path, log_dir: Path) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """What a daemon that has only the log derives from it."""
    data = tmp_path / "replayed" / "data"
    data.mkdir(parents=True)
    for name in ("events.db", "events.db-wal"):
        if (log_dir / name).exists():
            shutil.copy2(log_dir / name, data / name)
    d = Daemon(fault_config(tmp_path / "replayed", data_dir=data, own_ray=False))
    try:
        d.wait_ready()
        with d.client(timeout=120) as c:
            c.sync()
        os.kill(d.pid, signal.SIGTERM)
        assert d.proc.wait(120) == 0, d.tail()
    finally:
        d.stop_now()
    return _derived(data)


def test_a_segment_store_that_fails_is_retried_and_catches_up_once_space_is_back(tmp_path, small_fs):
    data = tmp_path / "data"
    data.mkdir()
    (data / "segments.db").symlink_to(small_fs.path / "segments.db")
    port = free_port()
    http = f'\n[http]\nlisten = "127.0.0.1:{port}"\nwrite_keys = ["k"]\n'
    d = Daemon(fault_config(tmp_path, data_dir=data, daemon=http, own_ray=False))
    acked = Acked()
    try:
        d.wait_ready()
        with d.client() as c:
            acked.send(c, views("warm", 200, users=50))
            c.sync()
        assert _readyz(port)[0] == 200
        small_fs.fill()
        with d.client() as c:
            for k in range(20):  # new users enter segments: segments.db must grow, and cannot
                acked.send(c, _new_users(k))

            def store_failed() -> bool:
                return any("database or disk is full" in str(e) for e in d.events())

            try:
                wait_until(store_failed, 60, what="segments.db to fail to commit")
            except AssertionError:
                cannot_create("a segment store that cannot commit", "no commit failed:\n" + d.tail(1500))
            degraded = c.stats()["degraded"]
            assert [f["store"] for f in degraded] == ["segments.db"]
            failing = degraded[0]
            assert "database or disk is full" in failing["reason"]
            status, ready = _readyz(port)
            assert status == 503 and ready["status"] == "degraded"
            assert ready["degraded"][0]["store"] == "segments.db"
            # The log still takes events while the derived store fails.
            acked.send(c, views("while-degraded", 40, users=50))
            stats = c.stats()
            assert stats["last_seq"] == max(acked.seqs.values())
            assert stats["applied_seq"] < stats["last_seq"]
        small_fs.free()
        with d.client(timeout=120) as c:
            assert c.sync()["seq"] == max(acked.seqs.values())
            stats = c.stats()
            assert stats["degraded"] == []
            assert stats["applied_seq"] == stats["last_seq"] == max(acked.seqs.values())
        assert _readyz(port)[0] == 200
        os.kill(d.pid, signal.SIGTERM)
        assert d.proc.wait(120) == 0, d.tail()
    finally:
        d.stop_now()
    events = [e for e in d.events() if e["event"] in ("store_degraded", "store_recovered")]
    assert [(e["event"], e["store"]) for e in events] == [
        ("store_degraded", "segments.db"),
        ("store_recovered", "segments.db"),
    ]
    assert "router_failed" not in [e["event"] for e in d.events()]
    assert acked.missing_from(data) == []
    transitions, members = _derived(data)
    assert len(members) == 2 * 50 + 20 * 20  # the warm users are viewers and regulars, the new viewers
    assert (transitions, members) == _fresh_replay(tmp_path, data)


def test_sigterm_while_degraded_exits_0_and_the_next_start_applies_the_rest(tmp_path, small_fs):
    data = tmp_path / "data"
    data.mkdir()
    (data / "segments.db").symlink_to(small_fs.path / "segments.db")
    config = fault_config(tmp_path, data_dir=data, own_ray=False)
    d = Daemon(config)
    acked = Acked()
    try:
        d.wait_ready()
        with d.client() as c:
            acked.send(c, views("warm", 200, users=50))
            c.sync()
        small_fs.fill()
        with d.client() as c:
            for k in range(20):
                acked.send(c, _new_users(k))
            try:
                wait_until(lambda: bool(c.stats()["degraded"]), 60, what="a degraded segment store")
            except AssertionError:
                cannot_create("a segment store that cannot commit", "never degraded:\n" + d.tail(1500))
        os.kill(d.pid, signal.SIGTERM)
        assert d.proc.wait(120) == 0, d.tail()
    finally:
        d.stop_now()
    names = [e["event"] for e in d.events()]
    assert names.index("store_degraded") < names.index("daemon_stopping") < names.index("daemon_stopped")
    assert "router_stop_failed" in names  # the store still failed: logged, the stop went on
    assert acked.missing_from(data) == []
    small_fs.free()
    again = Daemon(config)
    try:
        again.wait_ready()
        with again.client(timeout=120) as c:
            assert c.sync()["seq"] == max(acked.seqs.values())
            stats = c.stats()
            assert stats["applied_seq"] == max(acked.seqs.values()) and stats["degraded"] == []
        os.kill(again.pid, signal.SIGTERM)
        assert again.proc.wait(120) == 0, again.tail()
    finally:
        again.stop_now()
    assert len(_derived(data)[1]) == 2 * 50 + 20 * 20
