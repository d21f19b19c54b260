"""Smoke tests of the workload (segd.demo.workload) and scripts/loadgen.py: its CLI against a real daemon, its files.

No timings here; ``scripts/bench.py --quick`` is run by hand (it ran clean at this stop), not in CI.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import msgpack
import pytest

from segd.demo import workload as loadgen
from segd.wire.client import Client
from segd.wire.protocol import parse_batch_item

ROOT = Path(__file__).resolve().parents[2]
LOADGEN = ROOT / "scripts" / "loadgen.py"


def default_rules() -> str:
    """The default config.toml's aggregates and segments (the daemon fixture adds the rest)."""
    blocks = re.split(r"(?m)^(?=\[)", (ROOT / "config.toml").read_text())
    return "".join(b for b in blocks if re.match(r"\[(aggregates|segments)\.", b))


def run_loadgen(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(LOADGEN), *args, "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def items() -> list[dict]:
    """Seed 5's live workload: 300 users, 3,000 items."""
    return list(loadgen.workload(5, 300, 3000))


def test_workload_is_deterministic_by_seed(items):
    assert items == list(loadgen.workload(5, 300, 3000))
    assert items != list(loadgen.workload(6, 300, 3000))


def test_every_workload_item_is_a_valid_batch_item_without_a_time(items):
    assert len(items) == 3000
    for i, item in enumerate(items):
        parse_batch_item(item, i)  # raises on anything the batch op would refuse
        assert "ts" not in item  # start_ts=None: live traffic, stamped by the daemon


def test_workload_msg_ids_are_unique(items):
    assert len({it["msg_id"] for it in items}) == 3000


def test_workload_has_every_event_the_default_aggregates_count(items):
    names = {it["event"] for it in items if it["type"] == "track"}
    assert names <= set(loadgen.EVENTS)
    read = set(re.findall(r'(?m)^event = "(\w+)"', (ROOT / "config.toml").read_text()))
    assert read and read <= names  # every event the default aggregates count does occur


def test_workload_identifies_carry_a_full_profile_with_a_real_timezone(items):
    traits = [it["traits"] for it in items if it["type"] == "identify" and "email" in it["traits"]]
    assert traits
    for t in traits:
        assert set(t) == {"country", "device", "timezone", "first_name", "email", "plan"}
        ZoneInfo(t["timezone"])


def test_workload_spreads_over_several_users_within_the_bound(items):
    users = {it["user"] for it in items}
    assert 1 < len(users) <= 300


def test_a_timed_workload_is_sorted_and_bounded_from_start_ts():
    timed = list(loadgen.workload(5, 300, 1000, 1_700_000_000.0, span=86400.0))
    ts = [it["ts"] for it in timed]
    assert ts == sorted(ts) and ts[0] >= 1_700_000_000.0 and ts[-1] < 1_700_000_000.0 + 3 * 86400


def test_loadgen_cli_streams_to_a_daemon_whose_stats_show_every_event(daemon_factory):
    d = daemon_factory(default_rules())
    summary = run_loadgen(
        "--socket",
        str(d.socket),
        "--users",
        "300",
        "--events",
        "3000",
        "--connections",
        "3",
        "--batch",
        "200",
        "--seed",
        "5",
    )
    assert (summary["sent"], summary["errors"], summary["duplicates"]) == (3000, 0, 0)
    items = list(loadgen.workload(5, 300, 3000))
    with Client(d.socket) as c:
        assert c.sync()["seq"] == 3000
        stats = c.stats()
        assert stats["events"] == 3000 and stats["applied_seq"] == 3000 and stats["lag"] == 0
        assert stats["users"] == len({it["user"] for it in items})
        assert stats["segments"]["new_visitor"] > 0  # live events fill the wall-clock segments
        first = next(it for it in items if it["type"] == "identify")
        view = c.user(first["user"])
        assert view["traits"]["timezone"] == first["traits"]["timezone"]


def write_workload(path: Path) -> dict:
    return run_loadgen("--out", str(path), "--users", "100", "--events", "1000", "--seed", "9")


def test_out_writes_the_seeds_workload_to_a_file(tmp_path):
    path = tmp_path / "workload.jsonl"
    assert write_workload(path)["written"] == 1000
    items = list(loadgen.workload(9, 100, 1000))
    assert list(loadgen.read_items(path)) == items


def test_from_logs_the_files_items_and_a_second_send_is_all_duplicates(daemon_factory, tmp_path):
    path = tmp_path / "workload.jsonl"
    write_workload(path)
    items = list(loadgen.workload(9, 100, 1000))

    d = daemon_factory(default_rules())
    first = run_loadgen("--socket", str(d.socket), "--from", str(path), "--connections", "2", "--batch", "64")
    assert (first["sent"], first["duplicates"], first["errors"]) == (1000, 0, 0)
    again = run_loadgen("--socket", str(d.socket), "--from", str(path))
    assert (again["sent"], again["duplicates"]) == (1000, 1000)  # msg_ids make a re-send idempotent
    with Client(d.socket) as c:
        assert c.stats()["events"] == 1000

    db = sqlite3.connect(d.config.daemon.data_dir / "events.db")
    logged = {
        mid: (user, type_, event, msgpack.unpackb(body, raw=False))
        for mid, user, type_, event, body in db.execute(
            "SELECT msg_id, user, type, event, coalesce(props, traits) FROM events"
        )
    }
    db.close()
    assert logged == {
        it["msg_id"]: (it["user"], it["type"], it.get("event"), it.get("props", it.get("traits")))
        for it in items
    }
