"""Segment-compatible ingest over HTTP (SPEC section 8): the mapping, auth, and durability.

One real daemon per module (real Ray, real SQLite, real aiohttp server on a loopback port);
each test uses its own user ids, and checks what the socket ops and the log file say.
"""

from __future__ import annotations

import base64
import gzip
import time

import pytest
import requests

from segd.wire.client import Client
from tests.http_helpers import WRITE_KEY, log_count, log_rows, start_http_daemon

AUTH = (WRITE_KEY, "")


@pytest.fixture(scope="module")
def served(tmp_path_factory, ray_session):
    d, url = start_http_daemon(tmp_path_factory.mktemp("http-ingest"))
    yield d, url
    d.stop()


@pytest.fixture
def url(served):
    return served[1]


@pytest.fixture
def client(served):
    with Client(served[0].socket) as c:
        yield c


def send(url: str, batch: list[dict], **kw) -> requests.Response:
    return requests.post(f"{url}/v1/batch", json={"batch": batch, **kw}, auth=AUTH, timeout=30)


def user_of(client: Client, user: str) -> dict:
    client.sync()
    return client.user(user)


def row_of(served, msg_id: str) -> dict:
    [row] = [r for r in log_rows(served[0]) if r["msg_id"] == msg_id]
    return row


def test_batch_answers_success(url):
    resp = send(url, [{"type": "track", "userId": "ok1", "event": "view"}])
    assert (resp.status_code, resp.json()) == (200, {"success": True})


def test_acknowledged_batch_is_in_the_log(served, url):
    send(
        url,
        [{"type": "track", "userId": "dur1", "event": "view", "messageId": f"dur1-{i}"} for i in range(3)],
    )
    assert {r["msg_id"] for r in log_rows(served[0]) if r["user"] == "dur1"} == {"dur1-0", "dur1-1", "dur1-2"}


def test_track_properties_are_props(url, client):
    send(url, [{"type": "track", "userId": "t1", "event": "view", "properties": {"price": 42}}])
    assert user_of(client, "t1")["aggregates"]["last_price"] == 42


def test_identify_traits_are_traits(url, client):
    send(url, [{"type": "identify", "userId": "i1", "traits": {"plan": "pro", "email": "i1@example.com"}}])
    assert user_of(client, "i1")["traits"] == {"plan": "pro", "email": "i1@example.com"}


def test_identify_traits_in_context_are_traits(url, client):
    """RudderStack's SDKs send identify traits as context.traits only."""
    send(url, [{"type": "identify", "userId": "i2", "context": {"traits": {"plan": "free"}}}])
    assert user_of(client, "i2")["traits"] == {"plan": "free"}


def test_page_is_a_track_event_with_name_and_category(served, url):
    send(url, [{"type": "page", "userId": "p1", "name": "Home", "category": "Docs", "messageId": "p1-0",
                "properties": {"path": "/"}}])  # fmt: skip
    row = row_of(served, "p1-0")
    assert (row["type"], row["event"], row["props"]) == (
        "track",
        "page",
        {"path": "/", "name": "Home", "category": "Docs"},
    )


def test_screen_is_a_track_event_named_screen(url, client):
    send(url, [{"type": "screen", "userId": "s1", "name": "Cart"}])
    assert user_of(client, "s1")["aggregates"]["screens"] == 1


def test_group_sets_group_id_and_group_traits(url, client):
    send(url, [{"type": "group", "userId": "g1", "groupId": "acme", "traits": {"seats": 12}}])
    u = user_of(client, "g1")
    assert (u["traits"], u["segments"]) == ({"group_id": "acme", "group": {"seats": 12}}, ["in_group"])


def test_alias_is_a_track_event_with_previous_id(url, client):
    send(url, [{"type": "alias", "userId": "a1", "previousId": "anon-7"}])
    assert user_of(client, "a1")["aggregates"]["aliases"] == "anon-7"


def test_anonymous_id_is_the_user_without_user_id(url, client):
    send(url, [{"type": "track", "anonymousId": "anon-1", "event": "view"}])
    assert user_of(client, "anon-1")["aggregates"]["views"] == 1


def test_user_id_wins_over_anonymous_id(url, client):
    send(url, [{"type": "track", "userId": "both1", "anonymousId": "anon-both", "event": "view"}])
    assert user_of(client, "both1")["aggregates"]["views"] == 1


def test_users_enter_segments(url, client):
    send(url, [{"type": "track", "userId": "seg1", "event": "view"} for _ in range(2)])
    assert user_of(client, "seg1")["segments"] == ["viewers"]


def test_resent_message_ids_log_nothing_new(served, url):
    batch = [{"type": "track", "userId": "dup1", "event": "view", "messageId": f"dup1-{i}"} for i in range(5)]
    send(url, batch)
    before = log_count(served[0])
    assert send(url, batch).status_code == 200
    assert log_count(served[0]) == before


def test_timestamp_is_corrected_for_client_clock_skew(served, url):
    """The client's clock runs 100 s fast: its timestamp and sentAt both read 100 s ahead."""
    now = time.time()
    ahead = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + 100))
    event_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + 100 - 30))
    send(url, [{"type": "track", "userId": "skew1", "event": "view", "messageId": "skew1", "timestamp": event_at}],
         sentAt=ahead + "Z")  # fmt: skip
    assert abs(row_of(served, "skew1")["ts"] - (now - 30)) < 5


def test_original_timestamp_is_the_event_time_without_timestamp(served, url):
    send(url, [{"type": "track", "userId": "ot1", "event": "view", "messageId": "ot1",
                "originalTimestamp": "2024-05-01T12:00:00Z"}])  # fmt: skip
    assert row_of(served, "ot1")["ts"] == 1714564800.0


def test_without_any_timestamp_the_event_time_is_the_receive_time(served, url):
    before = time.time()
    send(url, [{"type": "track", "userId": "rt1", "event": "view", "messageId": "rt1"}])
    assert before - 1 <= row_of(served, "rt1")["ts"] <= time.time() + 1


def test_batch_context_is_merged_under_the_message_context(served, url):
    send(url, [{"type": "track", "userId": "ctx1", "event": "view", "messageId": "ctx1",
                "context": {"locale": "fr-FR"}}],
         context={"locale": "en-US", "library": {"name": "raw"}})  # fmt: skip
    assert row_of(served, "ctx1")["context"] == {"locale": "fr-FR", "library": {"name": "raw"}}


@pytest.mark.parametrize("kind", ["track", "identify", "page", "screen", "group", "alias"])
def test_single_message_paths(served, url, kind):
    msg = {
        "userId": f"one-{kind}",
        "messageId": f"one-{kind}",
        "event": "view",
        "groupId": "g",
        "previousId": "p",
    }
    resp = requests.post(f"{url}/v1/{kind}", json=msg, auth=AUTH, timeout=30)
    assert resp.status_code == 200 and row_of(served, f"one-{kind}")["user"] == f"one-{kind}"


def test_gzip_body_is_accepted(served, url):
    body = gzip.compress(
        b'{"batch": [{"type": "track", "userId": "gz1", "event": "view", "messageId": "gz1"}]}'
    )
    resp = requests.post(
        f"{url}/v1/batch", data=body, auth=AUTH, headers={"Content-Encoding": "gzip"}, timeout=30
    )
    assert resp.status_code == 200 and row_of(served, "gz1")["user"] == "gz1"


# ---------------------------------------------------------------- write keys


def test_write_key_as_basic_auth_user(url):
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    resp = requests.post(f"{url}/v1/track", json={"userId": "k1", "event": "view"},
                         headers={"Authorization": f"Basic {token}"}, timeout=30)  # fmt: skip
    assert resp.status_code == 200


def test_write_key_as_header(url):
    resp = requests.post(f"{url}/v1/track", json={"userId": "k2", "event": "view"},
                         headers={"X-Write-Key": WRITE_KEY}, timeout=30)  # fmt: skip
    assert resp.status_code == 200


def test_write_key_in_the_body(url):
    resp = requests.post(f"{url}/v1/batch", json={"writeKey": WRITE_KEY,
                         "batch": [{"type": "track", "userId": "k3", "event": "view"}]}, timeout=30)  # fmt: skip
    assert resp.status_code == 200


def test_missing_write_key_is_401(served, url):
    before = log_count(served[0])
    resp = requests.post(f"{url}/v1/track", json={"userId": "k4", "event": "view"}, timeout=30)
    assert (resp.status_code, resp.json()["code"], log_count(served[0])) == (401, "unauthorized", before)


def test_unknown_write_key_is_401(url):
    resp = requests.post(
        f"{url}/v1/track", json={"userId": "k5", "event": "view"}, auth=("nope", ""), timeout=30
    )
    assert (resp.status_code, resp.json()["code"]) == (401, "unauthorized")


def test_unknown_body_write_key_is_401(url):
    resp = requests.post(f"{url}/v1/batch", json={"writeKey": "nope",
                         "batch": [{"type": "track", "userId": "k6", "event": "view"}]}, timeout=30)  # fmt: skip
    assert resp.status_code == 401


def test_without_write_keys_ingest_is_refused(tmp_path):
    d, url = start_http_daemon(tmp_path, write_keys=())
    try:
        resp = requests.post(f"{url}/v1/track", json={"userId": "k7", "event": "view"}, auth=AUTH, timeout=30)
        assert (resp.status_code, resp.json()["code"]) == (401, "unauthorized")
    finally:
        d.stop()
