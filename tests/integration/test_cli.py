"""The segd command line, run as a real subprocess against a real daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from segd.config import load_config
from tests.helpers import VIEWS_3D, split_daemon, start_subprocess_daemon, wait_until, write_config

ROOT = Path(__file__).resolve().parents[2]


def segd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segd", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_check_accepts_the_default_config():
    r = segd("check", "--config", str(ROOT / "config.toml"))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_check_reports_every_error_as_file_table_message(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[daemon]\ntikc = "1s"\n\n[aggregates.v]\nkind = "count"\nwithin = "7x"\n')
    r = segd("check", "--config", str(cfg))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert f"{cfg}: daemon: unknown key 'tikc' (did you mean 'tick'?)" in lines[0]
    assert lines[1].startswith(f"{cfg}: aggregates.v: 'within': expected a duration")


def test_bad_arguments_exit_1():
    assert segd("send").returncode == 1


def test_client_commands_exit_2_without_a_daemon(tmp_path):
    r = segd("stats", "--socket", str(tmp_path / "none.sock"))
    assert r.returncode == 2 and "cannot connect" in r.stderr


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One ``segd run`` for the module: of the tests on it only test_send_identify_and_stats
    logs events (the bad input is refused, a reload logs none), so its seq and counts hold
    in any order."""
    cfg = write_config(tmp_path_factory.mktemp("running"))
    sock = load_config(cfg).daemon.socket
    proc = start_subprocess_daemon(cfg, sock)
    yield cfg
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_send_identify_and_stats(running):
    cfg = str(running)
    r = segd(
        "send",
        "view",
        "--user",
        "alice",
        "--prop",
        "category=electronics",
        "--prop",
        "price=12.5",
        "--config",
        cfg,
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"seq": 1}
    r = segd("identify", "--user", "alice", "first_name=Alice", "vip=true", "--config", cfg)
    assert r.returncode == 0 and r.stdout.strip() == "seq 2"
    r = segd("stats", "--config", cfg, "--json")
    assert json.loads(r.stdout)["events"] == 2
    r = segd("stats", "--config", cfg)
    rows = dict(line.split("│")[1:3] for line in r.stdout.splitlines() if line.count("│") == 3)
    assert {k.strip(): v.strip() for k, v in rows.items()}["events"] == "2"
    assert "messages.sent" in r.stdout


def test_sighup_reloads_and_keeps_serving(running):
    proc_log = running.parent / "daemon.log"
    pid = int((load_config(running).daemon.data_dir / "segd.lock").read_text().split()[0])
    os.kill(pid, signal.SIGHUP)  # the default action would kill a process without a handler
    r = segd("stats", "--config", str(running), "--json")
    assert r.returncode == 0, r.stderr
    wait_until(
        lambda: "reload_nothing_to_apply" in proc_log.read_text(),
        30,
        what=lambda: "reload_nothing_to_apply in the daemon log:\n" + proc_log.read_text()[-2000:],
    )


def test_send_with_bad_input_exits_1_with_the_field(running):
    r = segd("send", "view", "--user", "u" * 300, "--config", str(running))
    assert r.returncode == 1 and "'user'" in r.stderr


def test_sigterm_drains_and_exits_0(tmp_path):
    cfg = write_config(tmp_path)
    sock = load_config(cfg).daemon.socket
    proc = start_subprocess_daemon(cfg, sock)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert not sock.exists()
    log = (tmp_path / "daemon.log").read_text()
    assert "daemon_stopped" in log


COUNTING = (
    VIEWS_3D
    + """
[segments.regulars]
description = "Two or more views in three days"
when = "views_3d >= 2"
"""
)


T0 = 1_700_000_000.0
# 30 users in turn, one view every 7,000 s: each user's views are 210,000 s (2.43 days) apart.
COUNTED = [
    {"type": "track", "user": f"u{i % 30}", "event": "view", "ts": T0 + i * 7000.0} for i in range(400)
]


def start_counting(tmp_path: Path) -> tuple[Path, Path, subprocess.Popen]:
    tail, keys = split_daemon(COUNTING)
    cfg = write_config(tmp_path, tail, daemon=keys)
    sock = load_config(cfg).daemon.socket
    return cfg, sock, start_subprocess_daemon(cfg, sock)


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(60)


@pytest.fixture(scope="module")
def counted(tmp_path_factory, ray_session):
    """A running daemon holding COUNTED, shared by the read-only query tests:
    (config path, the members of ``regulars``)."""
    from segd.wire.client import Client

    cfg, sock, proc = start_counting(tmp_path_factory.mktemp("counted"))
    try:
        with Client(sock) as c:
            c.send_events(COUNTED)
            c.sync()
            members = c.segment("regulars", limit=1000)["members"]
        yield str(cfg), members
    finally:
        assert stop(proc) == 0


def test_segments_lists_the_segments(counted):
    cfg, _ = counted
    r = segd("segments", "--config", cfg)
    assert r.returncode == 0 and "regulars" in r.stdout


def test_segment_prints_the_members_as_json(counted):
    cfg, members = counted
    r = segd("segment", "regulars", "--config", cfg, "--json")
    assert json.loads(r.stdout)["members"] == members


def test_user_prints_the_aggregates_as_json(counted):
    cfg, _ = counted
    r = segd("user", "u3", "--config", cfg, "--json")
    # The clock is the last view's time (i = 399); of u3's views (i = 3, 33, ..., 393) only
    # i = 363 and i = 393 lie within the 3 days before it.
    assert json.loads(r.stdout)["aggregates"]["views_3d"] == 2


def test_an_unknown_user_exits_1_with_not_found(counted):
    cfg, _ = counted
    r = segd("user", "nobody", "--config", cfg)
    assert r.returncode == 1 and "not_found" in r.stderr


def test_replay_rebuilds_the_same_history_in_full_or_up_to_a_seq(tmp_path):
    from segd.wire.client import Client

    cfg, sock, proc = start_counting(tmp_path)
    try:
        with Client(sock) as c:
            c.send_events(COUNTED)
            c.sync()
            before = c.history("regulars", 0)["transitions"]
    finally:
        assert stop(proc) == 0
    assert before

    r = segd("replay", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["replayed"] == 400

    r = segd("replay", "--until", "100", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    import sqlite3

    conn = sqlite3.connect(tmp_path / "data" / "segments.db")
    assert conn.execute("SELECT max(seq) FROM transitions").fetchone()[0] <= 100
    conn.close()

    proc = start_subprocess_daemon(cfg, sock)  # resumes from the --until snapshots + the tail
    try:
        with Client(sock) as c:
            c.sync()
            assert c.history("regulars", 0)["transitions"] == before
    finally:
        assert stop(proc) == 0


def test_subscribe_prints_transitions_as_json_lines(tmp_path):
    from segd.wire.client import Client

    tail, keys = split_daemon(COUNTING)
    cfg = write_config(tmp_path, tail, daemon=keys)
    sock = load_config(cfg).daemon.socket
    daemon = start_subprocess_daemon(cfg, sock)
    sub = subprocess.Popen(
        [sys.executable, "-m", "segd", "subscribe", "regulars", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with Client(sock) as c:
            wait_until(lambda: c.stats()["subscribers"] >= 1, 30, what="segd subscribe to be subscribed")
            c.track("zed", "view", ts=1_700_000_000.0)
            c.track("zed", "view", ts=1_700_000_100.0)
            c.sync()
        line = json.loads(sub.stdout.readline())
        assert (line["segment"], line["user"], line["kind"], line["at"], line["seq"]) == (
            "regulars",
            "zed",
            "enter",
            1_700_000_100.0,
            2,
        )
    finally:
        sub.terminate()
        sub.wait(30)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)


def test_check_reports_a_bad_expression_with_table_and_column(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[aggregates.views_7d]\nkind = "count"\nevent = "view"\nwithin = "7d"\n\n'
        '[segments.fans]\nwhen = "views_7d >= "\n\n[segments.typo]\nwhen = "vews_7d > 1"\n'
    )
    r = segd("check", "--config", str(cfg))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert any(line.startswith(f"{cfg}: segments.fans: 'when' at column 13:") for line in lines), lines
    assert any("segments.typo" in line and "unknown aggregate 'vews_7d'" in line for line in lines), lines


def test_demo_streams_the_default_config_and_its_campaigns_deliver(tmp_path):
    import re

    env_ray = os.environ["SEGD_TEST_RAY_ADDRESS"]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "segd",
            "demo",
            "--seconds",
            "8",
            "--rate",
            "500",
            "--config",
            str(ROOT / "config.toml"),
            "--ray-address",
            env_ray,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = re.search(
        r"([\d,]+) events from ([\d,]+) users, ([\d,]+) transitions; messages: ([\d,]+) sent", r.stdout
    )
    assert m, r.stdout[-2000:]
    events, users, transitions, sent = (int(g.replace(",", "")) for g in m.groups())
    assert events == 4000 and users > 100 and transitions > 0 and sent > 0
    assert "latest messages" in r.stdout and not list(tmp_path.iterdir())  # nothing left behind
