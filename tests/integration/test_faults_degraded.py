"""A derived store that fails heals by itself (issue 16, item 1, the router's part): only
``segments.db`` lives on a real 16 MiB tmpfs that the test fills and frees. While its commits
fail the daemon keeps logging and acknowledging, says it is degraded (``stats``, ``/readyz``
503, one ``store_degraded`` log event), and once space is back it applies everything by
itself: applied_seq catches up with the log, and segments.db holds exactly the transitions
and members a fresh replay of the log gives. Real ``segd run`` processes."""

from __future__ import annotations

import json
import shutil
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.faults import Acked, Daemon, fault_config, fill_until_the_store_fails, segments_on, views, warm
from tests.helpers import wait_until
from tests.http_helpers import free_port


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
        d.terminate()
    finally:
        d.stop_now()
    return _derived(data)


def test_a_segment_store_that_fails_is_retried_and_catches_up_once_space_is_back(tmp_path, small_fs):
    data = segments_on(tmp_path, small_fs)
    port = free_port()
    http = f'\n[http]\nlisten = "127.0.0.1:{port}"\nwrite_keys = ["k"]\n'
    d = Daemon(fault_config(tmp_path, data_dir=data, daemon=http, own_ray=False))
    acked = Acked()
    try:
        d.wait_ready()
        warm(d, acked)
        assert _readyz(port)[0] == 200
        with d.client() as c:
            fill_until_the_store_fails(d, c, acked, small_fs)
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
        d.terminate()
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
    data = segments_on(tmp_path, small_fs)
    config = fault_config(tmp_path, data_dir=data, own_ray=False)
    d = Daemon(config)
    acked = Acked()
    try:
        d.wait_ready()
        warm(d, acked)
        with d.client() as c:
            fill_until_the_store_fails(d, c, acked, small_fs)
            wait_until(lambda: bool(c.stats()["degraded"]), 60, what="a degraded segment store")
        d.terminate()
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
        again.terminate()
    finally:
        again.stop_now()
    assert len(_derived(data)[1]) == 2 * 50 + 20 * 20
