"""The real, unmodified @segment/analytics-node SDK (tests/node, installed by npm from its
committed lock file) pointed at segd's HTTP ingest by its ``host`` setting alone, with its
own batching (flushAt 15), retries and callbacks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tests.http_helpers import (
    WRITE_KEY,
    CommitGate,
    fill_pending,
    kill_9,
    log_count,
    log_rows,
    logged_msg_ids,
    served_with_client,
    start_http_daemon,
    start_subprocess_http_daemon,
)
from tests.sdk_plan import calls, expected_user, node_messages, view_calls

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
USERS = 30


@pytest.fixture(scope="session")
def node_sdk() -> Path:
    """tests/node with its node_modules (``npm ci`` from the lock file if missing; .ci/run
    installs it up front)."""
    node = shutil.which("node")
    assert node, "node is needed for the @segment/analytics-node tests (Debian package nodejs)"
    if not (NODE_DIR / "node_modules" / "@segment" / "analytics-node").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300)
    return NODE_DIR / "send.js"


def run_node(script: Path, tmp_path: Path, host: str, messages: list[dict], **settings) -> dict:
    """Send ``messages`` through the SDK; returns what it reported (errors, statuses, callbacks)."""
    plan = tmp_path / f"plan-{len(list(tmp_path.glob('plan-*')))}.json"
    plan.write_text(json.dumps({"host": host, "writeKey": WRITE_KEY, "messages": messages, **settings}))
    proc = subprocess.run(["node", str(script), str(plan)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["callbacks"] == len(messages), result
    return result


@pytest.fixture(scope="module")
def served(tmp_path_factory, ray_session):
    yield from served_with_client(tmp_path_factory.mktemp("sdk-node"))


def test_node_sdk_messages_reach_every_user(node_sdk, served, tmp_path):
    d, url, c = served
    result = run_node(node_sdk, tmp_path, url, node_messages(calls("node-", USERS)))
    c.sync()
    got = {i: {k: v for k, v in c.user(f"node-{i}").items() if k != "last_seq"} for i in range(USERS)}
    assert result["errors"] == [] and got == {i: expected_user("node-", i) for i in range(USERS)}


def test_node_sdk_resending_the_same_message_ids_logs_nothing_new(node_sdk, served, tmp_path):
    d, url, _ = served
    plan = node_messages(view_calls("node-dup", 20))
    assert run_node(node_sdk, tmp_path, url, plan)["errors"] == []
    after_first = log_count(d)
    assert run_node(node_sdk, tmp_path, url, plan)["errors"] == []
    assert log_count(d) == after_first


def test_node_sdk_error_callback_sees_401_for_a_wrong_write_key(node_sdk, served, tmp_path):
    _, url, _ = served
    result = run_node(node_sdk, tmp_path, url, node_messages(calls("node-badkey-", 1)), writeKey="not-a-key")
    assert result["errors"] and all("401" in e for e in result["errors"]) and set(result["statuses"]) == {401}


def test_node_sdk_retries_under_back_pressure_and_loses_nothing(node_sdk, tmp_path):
    d, url = start_http_daemon(tmp_path, daemon="max_pending = 200")
    try:
        gate = CommitGate(d)
        filler = fill_pending(d, 200)
        plan = node_messages(view_calls("node-bp", 50))
        results: list[dict] = []
        sender = threading.Thread(target=lambda: results.append(run_node(node_sdk, tmp_path, url, plan)))
        sender.start()
        wait_until(lambda: d.daemon.http.refused >= 1, 30, what="a 429 to the SDK")
        gate.release()
        filler.join(30)
        sender.join(120)
        [result] = results
        assert result["errors"] == [] and 429 in result["statuses"]
        logged = {r["msg_id"] for r in log_rows(d) if r["user"] == "node-bp"}
        assert logged == {f"node-bp-{i}" for i in range(50)}
    finally:
        d.stop()


def test_node_sdk_flushed_messages_survive_kill_9(node_sdk, tmp_path):
    proc, url = start_subprocess_http_daemon(tmp_path)
    try:
        plan = node_messages(view_calls("node-k", 500, users=7))
        result = run_node(node_sdk, tmp_path, url, plan)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert result["errors"] == []
    finally:
        kill_9(proc)
    assert {m["params"]["messageId"] for m in plan} <= logged_msg_ids(tmp_path / "data")
