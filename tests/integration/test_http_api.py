"""The JSON API (SPEC section 8) answers what the socket ops answer, for the same daemon;
SSE delivers transitions in order; the Bearer token guards /api/ when set."""

from __future__ import annotations

import json

import pytest
import requests

from segd.errors import RemoteError
from segd.wire.client import Client
from tests.helpers import wait_until
from tests.http_helpers import MODEL, start_http_daemon

CAMPAIGN = """
[channels.outbox]
kind = "file"
path = "outbox.jsonl"

[campaigns.welcome]
segment = "viewers"
channel = "outbox"
template = "Hi {user}"
"""
USERS = [f"api{i}" for i in range(6)]


@pytest.fixture(scope="module")
def served(tmp_path_factory, ray_session):
    d, url = start_http_daemon(tmp_path_factory.mktemp("http-api"), model=MODEL + CAMPAIGN)
    with Client(d.socket) as c:
        for i, user in enumerate(USERS):
            c.identify(user, {"plan": "pro" if i % 2 else "free"})
            for _ in range(i % 3 + 1):
                c.track(user, "view", {"price": 10 * i})
        c.sync()
        # the welcome messages go out in the background: compare answers once they are sent
        wait_until(lambda: c.stats()["messages"]["pending"] == 0, 60, what="the welcome messages sent")
        yield d, url, c
    d.stop()


def get(served, path: str, **params) -> requests.Response:
    return requests.get(served[1] + path, params=params, timeout=30)


def socket_error(c: Client, op: str, **fields) -> tuple[str, str]:
    with pytest.raises(RemoteError) as exc:
        c.call(op, **fields)
    return exc.value.code, exc.value.message


def test_segments_equal_the_socket_op(served):
    assert get(served, "/api/segments").json() == served[2].segments()


def test_segment_page_equals_the_socket_op(served):
    assert get(served, "/api/segments/viewers", limit=1, after="api1").json() == served[2].segment(
        "viewers", limit=1, after="api1"
    )


def test_segment_history_equals_the_socket_op(served):
    assert get(served, "/api/segments/viewers/history", since=0).json() == served[2].history("viewers", 0)


def test_user_equals_the_socket_op(served):
    assert get(served, "/api/users/api2").json() == served[2].user("api2")


def test_campaigns_equal_the_socket_op(served):
    assert get(served, "/api/campaigns").json() == served[2].campaigns()


def test_stats_answer_the_socket_fields(served):
    over_http = get(served, "/api/stats").json()
    assert set(over_http) == set(served[2].stats()) and over_http["events"] == served[2].stats()["events"]


def test_unknown_user_is_404_with_the_socket_message(served):
    resp = get(served, "/api/users/nobody")
    assert resp.status_code == 404 and (resp.json()["code"], resp.json()["message"]) == socket_error(
        served[2], "user", user="nobody"
    )


def test_unknown_segment_is_404(served):
    resp = get(served, "/api/segments/nothing")
    assert (resp.status_code, resp.json()["code"]) == (404, "not_found")


def test_bad_request_has_the_socket_code_and_message(served):
    resp = get(served, "/api/segments/viewers", limit=0)
    assert resp.status_code == 400 and (resp.json()["code"], resp.json()["message"]) == socket_error(
        served[2], "segment", name="viewers", limit=0
    )


def test_query_parameter_of_the_wrong_type_is_400_naming_it(served):
    resp = get(served, "/api/segments/viewers", limit="many")
    assert resp.status_code == 400 and "'limit' must be an integer" in resp.json()["message"]


def test_unknown_query_parameter_is_400_naming_it(served):
    resp = get(served, "/api/segments/viewers", limt=5)
    assert resp.status_code == 400 and "unknown query parameter 'limt'" in resp.json()["message"]


# ---------------------------------------------------------------- SSE


def read_events(lines, n: int) -> list[dict]:
    """The next ``n`` transition events from an SSE response's lines (each read bounded by
    the response's timeout)."""
    events: list[dict] = []
    current: dict[str, str] = {}
    for line in lines:
        if line == "":
            if current.get("event") == "transition":
                events.append({"id": current["id"], **json.loads(current["data"])})
                if len(events) == n:
                    return events
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value
    raise AssertionError(f"the stream ended after {len(events)} of {n} events")


def open_stream(served, **params):
    """(response, its lines) once the subscription is live."""
    resp = requests.get(served[1] + "/api/subscribe", params=params, stream=True, timeout=(5, 20))
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    lines = resp.iter_lines(chunk_size=1, decode_unicode=True)
    assert next(lines) == ": subscribed"
    return resp, lines


def test_sse_delivers_transitions_in_order(served):
    c = served[2]
    resp, lines = open_stream(served, segments="viewers")
    with resp:
        since = c.ping()["clock"]
        for user in ("sse1", "sse2", "sse3"):
            c.track(user, "view")
            c.track(user, "view")
        c.sync()
        got = read_events(lines, 3)
    history = [t for t in c.history("viewers", since)["transitions"] if t["user"].startswith("sse")]
    assert got == history and [t["user"] for t in got] == ["sse1", "sse2", "sse3"]


def test_sse_for_an_unknown_segment_is_404(served):
    resp = requests.get(served[1] + "/api/subscribe", params={"segments": "viewers,nothing"}, timeout=30)
    assert (resp.status_code, resp.json()["code"]) == (404, "not_found")


# ---------------------------------------------------------------- query ops of issue 14 part A


def test_segment_at_a_past_time_equals_the_socket_op(served):
    at = served[2].ping()["clock"]
    assert get(served, "/api/segments/viewers", at=at).json() == served[2].call(
        "segment", name="viewers", at=at
    )


def test_user_history_equals_the_socket_op(served):
    assert get(served, "/api/users/api2/history").json() == served[2].call("history", user="api2")


def test_sizes_equal_the_socket_op(served):
    now = served[2].ping()["clock"]
    fields = {"since": now - 60, "until": now, "step": 10}
    assert get(served, "/api/segments/viewers/sizes", **fields).json() == served[2].call(
        "sizes", segment="viewers", **fields
    )


def test_preview_equals_the_socket_op(served):
    when = "views >= 1 and traits.plan == 'pro'"
    resp = requests.post(served[1] + "/api/preview", json={"when": when}, timeout=30)
    assert resp.json() == served[2].call("preview", when=when)


def test_preview_of_a_bad_expression_is_400_with_its_position(served):
    resp = requests.post(served[1] + "/api/preview", json={"when": "views >= "}, timeout=30)
    assert resp.status_code == 400 and (resp.json()["code"], resp.json()["message"]) == socket_error(
        served[2], "preview", when="views >= "
    )


# ---------------------------------------------------------------- token


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, ray_session):
    d, url = start_http_daemon(tmp_path_factory.mktemp("http-token"), token="s3cret")
    yield url
    d.stop()


def test_api_without_the_token_is_401(guarded):
    resp = requests.get(guarded + "/api/segments", timeout=30)
    assert (resp.status_code, resp.json()["code"]) == (401, "unauthorized")


def test_api_with_a_wrong_token_is_401(guarded):
    resp = requests.get(guarded + "/api/segments", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert resp.status_code == 401


def test_api_with_the_token_answers(guarded):
    resp = requests.get(guarded + "/api/segments", headers={"Authorization": "Bearer s3cret"}, timeout=30)
    assert resp.status_code == 200


def test_health_needs_no_token(guarded):
    assert requests.get(guarded + "/healthz", timeout=30).status_code == 200
