"""Integration fixtures: real daemons on temp data dirs, real sockets, real SQLite files."""

from __future__ import annotations

import pytest

from tests.helpers import DaemonThread, make_config


@pytest.fixture
def daemon_factory(tmp_path):
    """Start daemons (in-process, own loop thread) from config text; stopped at teardown."""
    started: list[DaemonThread] = []

    def start(body: str = "", *, daemon: str = "", sub: str = "") -> DaemonThread:
        d = DaemonThread(make_config(tmp_path / sub if sub else tmp_path, body, daemon=daemon)).start()
        started.append(d)
        return d

    yield start
    for d in reversed(started):
        d.stop()


@pytest.fixture
def daemon(daemon_factory):
    """A daemon with the embedded defaults (no segments)."""
    return daemon_factory()
