"""The real, unmodified Python SDKs (segment-analytics-python, rudder-sdk-python with its
gzip on by default) pointed at segd's HTTP ingest by their host setting alone, each with
its own batching, retries and error callback. What they sent is checked through the
socket ops and the log file."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

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
from tests.sdk_plan import calls, expected_user, view_calls

SDKS = {"segment": SegmentClient, "rudder": RudderClient}
USERS = 30


def sdk(name: str, host: str, write_key: str = WRITE_KEY, **kw):
    """An SDK client with its defaults (batching, gzip, retries), only the host changed."""
    errors: list[Exception] = []
    client = SDKS[name](write_key, host=host, on_error=lambda e, batch: errors.append(e), **kw)
    return client, errors


def send(client, plan) -> None:
    for method, kwargs in plan:
        getattr(client, method)(**kwargs)


@pytest.fixture(scope="module")
def served(tmp_path_factory, ray_session):
    yield from served_with_client(tmp_path_factory.mktemp("sdk-python"))


@pytest.mark.parametrize("name", SDKS)
def test_sdk_messages_reach_every_user(served, name):
    d, url, c = served
    client, errors = sdk(name, url)
    send(client, calls(f"{name}-", USERS))
    client.shutdown()
    c.sync()
    got = {i: {k: v for k, v in c.user(f"{name}-{i}").items() if k != "last_seq"} for i in range(USERS)}
    assert errors == [] and got == {i: expected_user(f"{name}-", i) for i in range(USERS)}


@pytest.mark.parametrize("name", SDKS)
def test_sdk_resending_the_same_message_ids_logs_nothing_new(served, name):
    d, url, _ = served
    plan = view_calls(f"{name}-dup", 20)
    for attempt in range(2):
        client, errors = sdk(name, url)
        send(client, plan)
        client.shutdown()
        assert errors == []
        if attempt == 0:
            after_first = log_count(d)
    assert log_count(d) == after_first


@pytest.mark.parametrize("name", SDKS)
def test_sdk_error_callback_sees_401_for_a_wrong_write_key(served, name):
    _, url, _ = served
    client, errors = sdk(name, url, write_key="not-a-key")
    send(client, calls(f"{name}-badkey-", 1))
    client.shutdown()
    assert errors and {getattr(e, "status", None) for e in errors} == {401}


@pytest.mark.parametrize("name", SDKS)
def test_sdk_retries_under_back_pressure_and_loses_nothing(tmp_path, name):
    """The committer holds while 200 socket events wait for the disk (max_pending 200): the
    SDK's batch is answered 429 + Retry-After, it retries by itself, and once the disk
    catches up every message is logged."""
    d, url = start_http_daemon(tmp_path, daemon="max_pending = 200")
    try:
        gate = CommitGate(d)
        filler = fill_pending(d, 200)
        client, errors = sdk(name, url)
        plan = view_calls(f"{name}-bp", 50)
        flushed = threading.Thread(target=lambda: (send(client, plan), client.shutdown()))
        flushed.start()
        wait_until(lambda: d.daemon.http.refused >= 1, 30, what="a 429 to the SDK")
        gate.release()
        filler.join(30)
        flushed.join(90)
        assert not flushed.is_alive() and errors == []
        logged = {r["msg_id"] for r in log_rows(d) if r["user"] == f"{name}-bp"}
        assert logged == {f"{name}-bp-{i}" for i in range(50)}
    finally:
        d.stop()


@pytest.mark.parametrize("name", SDKS)
def test_sdk_flushed_messages_survive_kill_9(tmp_path, name):
    """``segd run`` as a child; the SDK's flush returns (every batch answered 200); then
    kill -9: every flushed messageId is in the log file."""
    proc, url = start_subprocess_http_daemon(tmp_path)
    try:
        client, errors = sdk(name, url)
        plan = view_calls(f"{name}-k", 500, users=7)
        send(client, plan)
        client.flush()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert errors == []
    finally:
        kill_9(proc)
    assert {kw["message_id"] for _, kw in plan} <= logged_msg_ids(tmp_path / "data")
