"""``segd replay`` killed with -9, then a second replay at once (issue 16 item 5).

The first replay's Ray workers (shards, segment managers) outlive its driver for a while;
the second must still leave exactly what a clean replay leaves, and the first's workers must
end. Their commits, if any land after the second took the data-dir lock, are refused by the
fence (tests/unit/test_fencing.py shows the refusal itself).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgpack
from ray._private import state  # GCS tables directly: the test Ray runs without a dashboard

from actors.records import NewEvent
from segd.clock import Clock
from store.eventlog import EventLog
from tests.helpers import wait_until, write_config

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0
EVENTS = 40_000
BODY = """
[aggregates.views_7d]
kind = "count"
event = "view"
within = "7d"

[aggregates.last_view]
kind = "last_time"
event = "view"

[segments.browsers]
when = "views_7d >= 3"

[segments.lapsed]
when = "exists(last_view) and days_since(last_view) >= 3"
"""


def write_log(data_dir: Path) -> None:
    """EVENTS views from 2,000 users over 30 days of event time."""
    rng = random.Random(7)
    log, clock = EventLog(data_dir), Clock("event")
    ts, batch = T0, []
    for _ in range(EVENTS):
        ts += rng.expovariate(EVENTS / (30 * 86400.0))
        user = f"u{rng.randrange(2000)}"
        batch.append(
            NewEvent(
                user=user, type="track", event="view", ts=ts, body=msgpack.packb({}), msg_id=None, wall=ts
            )
        )
        if len(batch) == 5000:
            log.stage(batch, clock)
            log.commit()
            batch = []
    log.close()


def segments_db(data_dir: Path) -> tuple[list[tuple], list[tuple]]:
    conn = sqlite3.connect(data_dir / "segments.db")
    try:
        history = conn.execute(
            "SELECT id, segment, user, kind, at, seq FROM transitions ORDER BY id"
        ).fetchall()
        members = conn.execute("SELECT segment, user FROM members ORDER BY segment, user").fetchall()
    finally:
        conn.close()
    return history, members


def replay(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segd", "replay", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def job_of(pid: int) -> str | None:
    return next((j["JobID"] for j in state.jobs() if int(j["DriverPid"] or 0) == pid), None)


def alive_actors(job: str) -> list[str]:
    return [
        a["ActorClassName"] for a in state.actors().values() if a["JobID"] == job and a["State"] != "DEAD"
    ]


def test_a_replay_killed_9_then_a_second_leaves_a_clean_replays_result_and_its_workers_end(tmp_path):
    clean_dir, dirty_dir = tmp_path / "clean", tmp_path / "dirty"
    clean = write_config(clean_dir, BODY, daemon='clock = "event"\n')
    write_log(clean_dir / "data")
    shutil.copytree(clean_dir / "data", dirty_dir / "data")
    dirty = write_config(dirty_dir, BODY, daemon='clock = "event"\n')

    r = replay(clean)
    assert r.returncode == 0, r.stderr[-3000:]
    expected = segments_db(clean_dir / "data")
    assert expected[0] and expected[1]

    err = dirty_dir / "first.log"
    with err.open("w") as stderr:
        first = subprocess.Popen(
            [sys.executable, "-m", "segd", "replay", "--config", str(dirty)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
        )
    try:
        wait_until(
            lambda: "recovery_started" in err.read_text(),
            300,
            what=lambda: f"the first replay routing the log: {err.read_text()[-2000:]}",
        )
        job = wait_until(lambda: job_of(first.pid), 30, what="the first replay's Ray job")
        assert alive_actors(job), "the first replay's workers are up while it routes"
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()

    second = replay(dirty)
    assert second.returncode == 0, second.stderr[-3000:]
    assert '"replayed": 40000' in second.stdout
    assert segments_db(dirty_dir / "data") == expected

    wait_until(
        lambda: not alive_actors(job),
        180,
        what=lambda: f"the killed replay's workers to end (alive: {alive_actors(job)})",
    )
    assert segments_db(dirty_dir / "data") == expected  # nothing of theirs landed after
