"""Integration fixtures: one real local Ray per session, real daemons on temp data dirs,
real sockets, real SQLite files."""

from __future__ import annotations

import os

import pytest
import ray

from tests.helpers import DaemonThread, make_config


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """A local Ray for the whole session; subprocess daemons join it by its address."""
    ray.init(
        address="local",  # a new Ray, never one found in /tmp/ray/ray_current_cluster
        num_cpus=2,
        include_dashboard=False,
        namespace="segd-tests",
        logging_level="WARNING",
        runtime_env={"worker_process_setup_hook": "segd.logs.worker_setup"},
    )
    os.environ["SEGD_TEST_RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    yield
    ray.shutdown()


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
    """A daemon with the embedded defaults (no segments) and one shard: protocol tests need
    no more, and each Ray actor costs a worker process start."""
    return daemon_factory(f'[ray]\naddress = "{os.environ["SEGD_TEST_RAY_ADDRESS"]}"\nshards = 1\n')
