"""The segd command line, run as a real subprocess against a real daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from segd.config import load_config
from tests.helpers import start_subprocess_daemon, write_config

ROOT = Path(__file__).resolve().parents[2]


def segd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segd", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


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


@pytest.fixture
def running(tmp_path):
    cfg = write_config(tmp_path)
    sock = load_config(cfg).daemon.socket
    proc = start_subprocess_daemon(cfg, sock)
    yield cfg
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_send_identify_and_stats(running):
    cfg = str(running)
    r = segd("send", "view", "--user", "alice", "--prop", "category=electronics", "--prop", "price=12.5",
             "--config", cfg, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"seq": 1}
    r = segd("identify", "--user", "alice", "first_name=Alice", "vip=true", "--config", cfg)
    assert r.returncode == 0 and r.stdout.strip() == "seq 2"
    r = segd("stats", "--config", cfg, "--json")
    assert json.loads(r.stdout)["events"] == 2


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
