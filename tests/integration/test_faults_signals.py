"""Stop signals (issue 16, item 3): SIGTERM or SIGINT, to the daemon's pid or to its whole
process group (``kill -TERM -PGID``), or to every process of its control group as systemd's
default ``KillMode=control-group`` does: each drains, takes the shutdown snapshots, exits 0
and loses nothing acknowledged. Real ``segd run`` processes with their own local Ray."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from segd.errors import ConnectError, RemoteError
from tests.faults import Acked, ControlGroup, Daemon, fault_config, last_seq_per_shard, snapshots, views
from tests.helpers import wait_until


def _load_then_stop(d: Daemon, stop) -> tuple[Acked, float]:
    """Acknowledge a first load, then keep ingesting from another thread while ``stop()``
    signals, so the drain has rows in flight. Returns what was acknowledged and when the
    signal went."""
    acked = Acked()
    with d.client() as c:
        acked.send(c, views("warm", 3000))
        c.sync()
    more = threading.Event()

    def ingest() -> None:
        try:
            with d.client() as c:
                for k in range(200):
                    acked.send(c, views(f"late{k}", 500))
                    more.set()
        except (ConnectError, RemoteError, OSError):
            return  # the daemon stopped accepting: expected

    t = threading.Thread(target=ingest)
    t.start()
    assert more.wait(60), "no batch acknowledged while ingesting"
    signalled = time.time()
    stop()
    t.join(120)
    return acked, signalled


def _assert_stopped_cleanly(d: Daemon, acked: Acked, signalled: float) -> None:
    code = d.proc.wait(120)
    assert code == 0, f"segd run exited {code}:\n{d.tail()}"
    assert acked.missing_from(d.data_dir) == []
    snaps = snapshots(d.data_dir)
    due = last_seq_per_shard(d.data_dir, 2)
    assert {s: seq for s, (seq, _, _) in snaps.items()} == due, "shutdown snapshots missing or behind"
    assert all(taken >= signalled for _, taken, _ in snaps.values()), "snapshots older than the stop"
    names = [e["event"] for e in d.events()]
    assert "daemon_stopped" in names and "router_stop_failed" not in names
    wait_until(
        lambda: not d.session_processes(), 30, what=lambda: f"Ray's processes to end: {d.session_processes()}"
    )


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [
        (signal.SIGTERM, True),
        (signal.SIGINT, True),
        (signal.SIGTERM, False),
        (signal.SIGINT, False),
    ],
    ids=["SIGTERM-group", "SIGINT-group", "SIGTERM-pid", "SIGINT-pid"],
)
def test_a_stop_signal_drains_snapshots_and_exits_0(tmp_path, sig, to_group):
    d = Daemon(fault_config(tmp_path))
    try:
        d.wait_ready()
        pgid = os.getpgid(d.pid)
        assert pgid == d.pid  # its own group, as a shell or systemd starts it

        def stop() -> None:
            if to_group:
                os.killpg(pgid, sig)
            else:
                os.kill(d.pid, sig)

        acked, signalled = _load_then_stop(d, stop)
        _assert_stopped_cleanly(d, acked, signalled)
    finally:
        d.stop_now()


def test_systemd_stop_sigterm_to_the_whole_control_group_drains_and_exits_0(tmp_path):
    """The README unit's stop: systemd (KillMode=control-group, its default) sends SIGTERM to
    every process of the service's cgroup at once, Ray's included."""
    group = ControlGroup()
    try:
        d = Daemon(fault_config(tmp_path), preexec=group.join)
        try:
            d.wait_ready()
            assert len(group.pids()) > 3, "Ray's processes are not in the daemon's control group"

            def stop() -> None:
                assert group.signal_all(signal.SIGTERM) > 3

            acked, signalled = _load_then_stop(d, stop)
            _assert_stopped_cleanly(d, acked, signalled)
            wait_until(
                lambda: not group.pids(), 30, what=lambda: f"the control group to empty: {group.pids()}"
            )
        finally:
            d.stop_now()
    finally:
        group.close()


def test_sighup_to_the_whole_process_group_reloads_and_leaves_ray_running(tmp_path):
    d = Daemon(fault_config(tmp_path))
    try:
        d.wait_ready()
        ray_processes = _ray_core(d)
        assert len(ray_processes) >= 4, ray_processes  # GCS, raylet, 2 shards, the manager
        os.killpg(d.pid, signal.SIGHUP)
        wait_until(
            lambda: "reload_nothing_to_apply" in [e["event"] for e in d.events()], 30, what="the reload"
        )
        acked = Acked()
        with d.client() as c:
            acked.send(c, views("after-hup", 100))
            assert c.sync()["seq"] == max(acked.seqs.values())
            assert c.segment("viewers")["size"] == 100
        assert _ray_core(d) == ray_processes, "a Ray process died of SIGHUP"
        d.terminate()
    finally:
        d.stop_now()


def _ray_core(d: Daemon) -> set[int]:
    """The pids of Ray's GCS and raylet and of the workers hosting segd's actors (idle
    workers come and go as Ray pleases)."""
    core = set()
    for p in d.session_processes():
        cmd = " ".join(p.cmdline())
        if (
            "gcs_server" in cmd
            or "/raylet" in cmd
            or cmd.startswith(("ray::UserShard", "ray::SegmentManager"))
        ):
            core.add(p.pid)
    return core


def test_sigterm_while_starting_finishes_the_start_then_stops_with_0(tmp_path):
    d = Daemon(fault_config(tmp_path))
    try:
        wait_until(
            lambda: "ray_ready" in [e["event"] for e in d.events()] or d.proc.poll() is not None,
            120,
            what="Ray to be up",
        )
        d.terminate()  # recovery, the actors and the socket are still to come
    finally:
        d.stop_now()
    names = [e["event"] for e in d.events()]
    assert names.index("daemon_started") < names.index("daemon_stopping") < names.index("daemon_stopped")
