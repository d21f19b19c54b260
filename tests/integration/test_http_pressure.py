"""Back-pressure and draining over HTTP: 429 with Retry-After, 503 while stopping, and
/readyz saying so; nothing of a refused request is logged."""

from __future__ import annotations

import asyncio

import requests

from tests.helpers import wait_until
from tests.http_helpers import WRITE_KEY, CommitGate, fill_pending, log_count, start_http_daemon

AUTH = (WRITE_KEY, "")
MAX_PENDING = 10


def test_back_pressure_is_429_with_retry_after_and_logs_nothing(tmp_path):
    d, url = start_http_daemon(tmp_path, daemon=f"max_pending = {MAX_PENDING}")
    try:
        gate = CommitGate(d)
        filler = fill_pending(d, MAX_PENDING)
        before = log_count(d)
        resp = requests.post(
            f"{url}/v1/track", json={"userId": "bp1", "event": "view"}, auth=AUTH, timeout=30
        )
        gate.release()
        filler.join(30)
        assert (resp.status_code, resp.json()["code"], resp.headers["Retry-After"]) == (
            429,
            "overloaded",
            "1",
        )
        assert log_count(d) == before + MAX_PENDING  # the fillers, not the refused request
    finally:
        d.stop()


def draining(d):
    """Start stopping the daemon while a gate holds its committer: the daemon is draining
    until the gate is released."""
    gate = CommitGate(d)
    stopping = asyncio.run_coroutine_threadsafe(d.daemon.stop(), d.loop)
    wait_until(lambda: d.daemon.ops.draining, 10, what="the daemon to start draining")
    return gate, stopping


def test_ingest_while_draining_is_503(tmp_path):
    d, url = start_http_daemon(tmp_path)
    gate, stopping = draining(d)
    try:
        resp = requests.post(
            f"{url}/v1/track", json={"userId": "dr1", "event": "view"}, auth=AUTH, timeout=30
        )
        assert (resp.status_code, resp.json()["code"]) == (503, "unavailable")
    finally:
        gate.release()
        stopping.result(60)
        d.stop()


def test_readyz_while_draining_is_503(tmp_path):
    d, url = start_http_daemon(tmp_path)
    gate, stopping = draining(d)
    try:
        resp = requests.get(f"{url}/readyz", timeout=30)
        assert (resp.status_code, resp.json()["status"]) == (503, "draining")
    finally:
        gate.release()
        stopping.result(60)
        d.stop()


def test_readyz_is_200_once_recovered(tmp_path):
    d, url = start_http_daemon(tmp_path)
    try:
        resp = requests.get(f"{url}/readyz", timeout=30)
        assert (resp.status_code, resp.json()["ready"]) == (200, True)
    finally:
        d.stop()


def test_healthz_answers_alive(tmp_path):
    d, url = start_http_daemon(tmp_path)
    try:
        assert requests.get(f"{url}/healthz", timeout=30).json() == {"status": "alive"}
    finally:
        d.stop()


def test_health_probes_answer_head(tmp_path):
    d, url = start_http_daemon(tmp_path)
    try:
        codes = [requests.head(f"{url}{path}", timeout=30).status_code for path in ("/healthz", "/readyz")]
        assert codes == [200, 200]
    finally:
        d.stop()
