"""``kill -9`` of ``segd replay`` (issue 16, item 5): its Ray workers end with it, and while
any of them lingers it cannot write: a second replay started at once takes the data dir's
lock, claims the derived stores with its own token, and rebuilds exactly what a replay
alone builds. Real ``segd replay`` processes; the two that race each start their own local
Ray."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import psutil

from actors.records import NewEvent
from segd.clock import Clock
from store.eventlog import EventLog
from tests.faults import fault_config, session_processes
from tests.helpers import wait_until

EVENTS = 40_000
WORKERS = ("ray::SegmentManager", "ray::UserShard", "ray::Dispatcher")


def write_log(data_dir: Path) -> None:
    log = EventLog(data_dir)
    clock = Clock("event")
    for i in range(0, EVENTS, 2000):
        log.stage(
            [
                NewEvent(user=f"u{(i + k) % 3000}", type="track", event="view", ts=1_700_000_000.0 + i + k,
                         body=msgpack.packb({}), msg_id=None, wall=0.0)
                for k in range(2000)
            ],
            clock,
        )  # fmt: skip
        log.commit()
    log.close()


class Replay:
    """One ``segd replay`` child in a session of its own; its output goes to ``log``."""

    def __init__(self, config: Path, name: str) -> None:
        self.log = config.parent / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "segd", "replay", "--config", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def said(self, event: str) -> bool:
        return f'"event": "{event}"' in self.log.read_text(errors="replace")

    def workers(self) -> list[psutil.Process]:
        """The live processes of its session that hold segd's state (shards, managers)."""
        found = []
        for p in session_processes(self.proc.pid):
            try:
                if any(w in " ".join(p.cmdline()) for w in WORKERS):
                    found.append(p)
            except psutil.Error:
                continue
        return found

    def kill_session(self) -> None:
        for p in session_processes(self.proc.pid):
            try:
                p.kill()
            except psutil.Error:
                continue


def history(data_dir: Path) -> list[tuple]:
    with sqlite3.connect(data_dir / "segments.db") as db:
        return db.execute(
            "SELECT id, segment, user, kind, at, seq, size FROM transitions ORDER BY id"
        ).fetchall()


def test_kill_9_of_a_replay_then_a_second_replay_rebuilds_alone(tmp_path):
    config = fault_config(tmp_path)
    data = tmp_path / "data"
    write_log(data)
    # The reference needs no Ray of its own (what the killed replay leaves behind is the
    # point only of the two below): it joins the test session's, one Ray start less.
    alone = Replay(fault_config(tmp_path / "alone", data_dir=data, own_ray=False), "alone")
    assert alone.proc.wait(300) == 0, alone.log.read_text()[-3000:]
    expected = history(data)
    assert len(expected) > 3000  # every user entered viewers and regulars

    first = Replay(config, "first")
    try:
        wait_until(lambda: first.said("recovery_started"), 180, what="the first replay to start folding")
        workers = first.workers()
        assert workers, "no shard or manager process found in the first replay's session"
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(30) == -signal.SIGKILL
        second = Replay(config, "second")  # at once: the lock is free as soon as the kernel reaps it
        assert second.proc.wait(300) == 0, second.log.read_text()[-3000:]
        assert history(data) == expected
        gone = time.monotonic()
        wait_until(
            lambda: not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
            60,
            what=lambda: f"the first replay's workers to end: {[p.pid for p in workers if p.is_running()]}",
        )
        assert time.monotonic() - gone < 60
    finally:
        first.kill_session()
