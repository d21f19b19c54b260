"""The query commands of SPEC section 6 (``segment --at``, ``history``, ``sizes``,
``preview``), run as real subprocesses against a real ``segd run``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from segd.config import load_config
from segd.wire.client import Client
from tests.helpers import VIEWS_3D, split_daemon, start_subprocess_daemon, write_config

DAY = 86400.0
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z

CONFIG = (
    VIEWS_3D
    + """
[segments.viewers]
description = "Viewed in the last three days"
when = "views_3d >= 1"
"""
)
# a views at T0, b at T0 + 1 d, c at T0 + 2 d; zz at T0 + 10 d moves the clock past every window
EVENTS = [
    {"type": "track", "user": u, "event": "view", "ts": T0 + i * DAY} for i, u in enumerate(["a", "b", "c"])
] + [{"type": "track", "user": "zz", "event": "view", "ts": T0 + 10 * DAY}]


def segd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segd", *args], capture_output=True, text=True, timeout=120)


def sizes(cfg: str, days: int, step: str, *more: str) -> subprocess.CompletedProcess:
    """``segd sizes viewers`` from T0 to ``days`` days later by ``step``."""
    return segd(
        "sizes",
        "viewers",
        "--since",
        str(T0),
        "--until",
        str(T0 + days * DAY),
        "--step",
        step,
        "--config",
        cfg,
        *more,
    )


def start(tmp_path):
    tail, keys = split_daemon(CONFIG)
    cfg = write_config(tmp_path, tail, daemon=keys)
    sock = load_config(cfg).daemon.socket
    proc = start_subprocess_daemon(cfg, sock)
    with Client(sock) as c:
        c.send_events(EVENTS)
        c.sync()
    return str(cfg), proc


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(60)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, ray_session):
    path, proc = start(tmp_path_factory.mktemp("cliq"))
    yield path
    assert stop(proc) == 0


def test_segment_at_a_past_time_prints_its_members(cfg):
    r = segd("segment", "viewers", "--at", str(T0 + 1.5 * DAY), "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["viewers at 2023-11-16T10:13:20Z: 2 members", "a", "b"]


def test_segment_at_takes_an_iso_time(cfg):
    r = segd("segment", "viewers", "--at", "2023-11-17T00:00:00Z", "--config", cfg, "--json")
    assert json.loads(r.stdout) == {"size": 3, "members": ["a", "b", "c"], "next": None}


def test_segment_at_a_time_that_is_no_time_exits_1(cfg):
    r = segd("segment", "viewers", "--at", "last tuesday", "--config", cfg)
    assert r.returncode == 1 and "ISO 8601" in r.stderr


def test_history_by_user_prints_one_line_per_transition(cfg):
    r = segd("history", "--user", "b", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "2023-11-15T22:13:20Z  enter  viewers  b  (seq 2)",
        "2023-11-18T22:13:20Z  exit   viewers  b  (seq 2)",
    ]


def test_history_between_two_times_as_json(cfg):
    r = segd(
        "history",
        "--segment",
        "viewers",
        "--since",
        str(T0 + 2 * DAY),
        "--until",
        str(T0 + 3 * DAY),
        "--config",
        cfg,
        "--json",
    )
    assert [(t["user"], t["kind"]) for t in json.loads(r.stdout)["transitions"]] == [
        ("c", "enter"),
        ("a", "exit"),
    ]


def test_history_without_segment_or_user_exits_1(cfg):
    r = segd("history", "--config", cfg)
    assert r.returncode == 1 and "--segment" in r.stderr


def test_sizes_prints_the_size_at_each_step(cfg):
    r = sizes(cfg, 4, "1d", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["points"] == [[T0 + k * DAY, n] for k, n in enumerate([1, 2, 3, 2, 1])]


def test_sizes_shows_bars_for_a_person(cfg):
    r = sizes(cfg, 2, "86400")
    assert r.stdout.splitlines()[2] == "2023-11-16T22:13:20Z  3  " + "█" * 40


def test_sizes_with_too_many_points_exits_1_naming_the_step(cfg):
    r = sizes(cfg, 1, "1s")
    assert r.returncode == 1 and "'step'" in r.stderr


def test_sizes_of_an_unknown_segment_exits_1(cfg):
    r = segd("sizes", "nope", "--since", "0", "--until", "10", "--step", "1", "--config", cfg)
    assert r.returncode == 1 and "not_found" in r.stderr


def test_preview_prints_size_sample_and_overlap(cfg):
    r = segd("preview", "exists(traits.x) or views_3d == 0", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "3 users match",
        "sample: a, b, c",
        "overlap with segments:",
        "  viewers          0",
    ]


def test_preview_of_an_invalid_expression_exits_1_with_a_caret_under_the_column(cfg):
    r = segd("preview", "views_3d >= ", "--config", cfg)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "  views_3d >= ",
        "              ^",
        "segd: bad_request: 'when' at column 13: expected an expression but found end of expression",
    ]


def test_replay_rebuilds_past_membership_and_sizes(tmp_path):
    cfg, proc = start(tmp_path)
    queries = [
        ("segment", "viewers", "--at", str(T0 + 1.5 * DAY)),
        ("sizes", "viewers", "--since", str(T0 - DAY), "--until", str(T0 + 6 * DAY), "--step", "3h"),
    ]
    try:
        before = [segd(*q, "--config", cfg, "--json").stdout for q in queries]
    finally:
        assert stop(proc) == 0
    r = segd("replay", "--config", cfg)
    assert r.returncode == 0, r.stderr
    proc = start_subprocess_daemon(Path(cfg), load_config(cfg).daemon.socket)
    try:
        assert [segd(*q, "--config", cfg, "--json").stdout for q in queries] == before
    finally:
        assert stop(proc) == 0
