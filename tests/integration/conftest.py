"""Integration fixtures: one real local Ray per session, real daemons on temp data dirs,
real sockets, real SQLite files."""

from __future__ import annotations

import os

import pytest
import ray

from tests.faults import SmallFs
from tests.helpers import DaemonThread, make_config, one_shard


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """A local Ray for the whole session; subprocess daemons join it by its address."""
    ray.init(
        address="local",  # a new Ray, never one found in /tmp/ray/ray_current_cluster
        num_cpus=2,
        include_dashboard=False,
        namespace="segd-tests",
        logging_level="WARNING",
        # The workers of the in-process daemons log at warning unless SEGD_LOG_LEVEL says
        # otherwise: Ray forwards their lines to this process, and one that arrives between
        # two tests (pytest's capture suspended) lands on the terminal as "(Dispatcher pid=…)".
        runtime_env={
            "worker_process_setup_hook": "segd.logs.worker_setup",
            "env_vars": {"SEGD_LOG_LEVEL": os.environ.get("SEGD_LOG_LEVEL", "warning")},
        },
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
    """A daemon with the embedded defaults (no segments) and one shard (``one_shard``)."""
    return daemon_factory(one_shard())


@pytest.fixture
def small_fs(tmp_path):
    """A real 16 MiB tmpfs under ``tmp_path`` that the fault tests fill and free (skips, or
    fails under SEGD_REQUIRE_FAULTS=1, where it cannot be mounted); unmounted at teardown."""
    fs = SmallFs(tmp_path / "small", 16 << 20)
    yield fs
    fs.close()
