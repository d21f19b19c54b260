"""Bad input over HTTP: every refusal is JSON {code, message} naming the message and field,
and nothing of a refused request is logged (all or nothing). Slow clients are cut off
without holding up others."""

from __future__ import annotations

import gzip
import json
import resource
import socket
import threading
import time
import zlib

import pytest
import requests

from tests.http_helpers import WRITE_KEY, log_count, start_http_daemon

AUTH = (WRITE_KEY, "")
GOOD = {"type": "track", "userId": "good", "event": "view"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, ray_session):
    d, url = start_http_daemon(tmp_path_factory.mktemp("http-bad"), extra='client_timeout = "1s"')
    yield d, url
    d.stop()


@pytest.fixture
def url(served):
    return served[1]


def refused(served, resp: requests.Response, before: int) -> tuple[int, str, str]:
    """(status, code, message) of a refusal, after checking nothing was logged."""
    assert log_count(served[0]) == before, "a refused request logged events"
    body = resp.json()
    assert set(body) == {"code", "message"}
    return resp.status_code, body["code"], body["message"]


def post(url: str, data: bytes, path: str = "/v1/batch", **headers: str) -> requests.Response:
    return requests.post(f"{url}{path}", data=data, auth=AUTH, timeout=30,
                         headers={"Content-Type": "application/json", **headers})  # fmt: skip


def test_malformed_json_is_400(served, url):
    before = log_count(served[0])
    status, code, message = refused(served, post(url, b'{"batch": [{"type": "track",'), before)
    assert (status, code) == (400, "bad_request") and "not valid JSON" in message


def test_body_that_is_not_an_object_is_400(served, url):
    before = log_count(served[0])
    status, _, message = refused(served, post(url, b"[1, 2]"), before)
    assert status == 400 and "JSON object" in message


def test_batch_that_is_not_a_list_is_400(served, url):
    before = log_count(served[0])
    status, _, message = refused(served, post(url, b'{"batch": {"type": "track"}}'), before)
    assert status == 400 and "'batch' must be a list" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("userId", {"a": 1}, "'batch[1].userId' must be a string"),
        ("anonymousId", [1], "'batch[1].anonymousId' must be a string"),
        ("messageId", 5, "'batch[1].messageId' must be a string"),
        ("timestamp", "yesterday", "'batch[1].timestamp' must be an ISO 8601 date-time"),
        ("timestamp", 1700000000, "'batch[1].timestamp' must be an ISO 8601 date-time"),
        ("sentAt", True, "'batch[1].sentAt' must be an ISO 8601 date-time"),
        ("event", 7, "'batch[1].event' must be a string"),
        ("event", "", "'batch[1].event' must be 1-128 characters"),
        ("properties", "cheap", "'batch[1].properties' must be an object"),
        ("context", 3, "'batch[1].context' must be an object"),
        ("type", "purchase", "'batch[1].type' must be one of"),
    ],
)
def test_a_field_with_a_wrong_type_is_400_naming_message_and_field(served, url, field, value, expected):
    bad = {**GOOD, "userId": "bad1", field: value}
    before = log_count(served[0])
    status, code, message = refused(served, post(url, json.dumps({"batch": [GOOD, bad]}).encode()), before)
    assert (status, code) == (400, "bad_request") and expected in message, message


def test_identify_traits_with_a_wrong_type_is_400(served, url):
    body = {"batch": [{"type": "identify", "userId": "bad2", "traits": ["plan"]}]}
    before = log_count(served[0])
    _, _, message = refused(served, post(url, json.dumps(body).encode()), before)
    assert "'batch[0].traits' must be an object" in message


def test_group_without_group_id_is_400(served, url):
    body = {"batch": [{"type": "group", "userId": "bad3", "traits": {}}]}
    before = log_count(served[0])
    _, _, message = refused(served, post(url, json.dumps(body).encode()), before)
    assert "'batch[0].groupId'" in message


def test_alias_without_previous_id_is_400(served, url):
    body = {"batch": [{"type": "alias", "userId": "bad4"}]}
    before = log_count(served[0])
    _, _, message = refused(served, post(url, json.dumps(body).encode()), before)
    assert "'batch[0].previousId'" in message


def test_message_without_user_id_and_anonymous_id_is_400(served, url):
    body = {"batch": [GOOD, {"type": "track", "event": "view", "userId": None}]}
    before = log_count(served[0])
    status, _, message = refused(served, post(url, json.dumps(body).encode()), before)
    assert status == 400 and "'batch[1].userId' or 'batch[1].anonymousId' is required" in message


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}, "nested deeper than 8 levels"),
        ({"k" * 257: 1}, "has a key of 257 characters; at most 256"),
        ({"n": 2**70}, "'batch[0].properties.n' is an integer beyond 64 bits"),
    ],
)
def test_properties_follow_the_socket_limits(served, url, properties, expected):
    body = {"batch": [{**GOOD, "properties": properties}]}
    before = log_count(served[0])
    status, _, message = refused(served, post(url, json.dumps(body).encode()), before)
    assert status in (400, 413) and expected in message, message


def test_message_over_32_kib_is_400(served, url):
    body = {"batch": [GOOD, {**GOOD, "properties": {"blob": "x" * 33_000}}]}
    before = log_count(served[0])
    status, _, message = refused(served, post(url, json.dumps(body).encode()), before)
    assert status == 400 and "'batch[1]' is" in message and "at most 32768" in message


def test_batch_over_2500_messages_is_400(served, url):
    body = {"batch": [{"type": "track", "userId": "u", "event": "e"}] * 2501}
    before = log_count(served[0])
    status, _, message = refused(served, post(url, json.dumps(body).encode()), before)
    assert status == 400 and "at most 2500" in message


def test_body_over_500_kib_is_413(served, url):
    body = {"batch": [{**GOOD, "properties": {"blob": "x" * 30_000}}] * 20}
    before = log_count(served[0])
    status, _, message = refused(served, post(url, json.dumps(body).encode()), before)
    assert status == 413 and "at most 512000" in message


def test_gzip_body_over_500_kib_after_decompression_is_413(served, url):
    body = {"batch": [{**GOOD, "properties": {"blob": "x" * 30_000}}] * 20}
    data = gzip.compress(json.dumps(body).encode())
    assert len(data) < 20_000  # small on the wire, large inflated
    before = log_count(served[0])
    status, _, message = refused(served, post(url, data, **{"Content-Encoding": "gzip"}), before)
    assert status == 413 and "after decompression" in message


def test_gzip_bomb_is_refused_without_inflating_it(served, url):
    """2 GiB of zeros in about 2 MiB of gzip: refused as soon as 500 KiB have come out,
    so the daemon (this very process) does not grow by anything like the inflated size."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(packer.compress(chunk) for _ in range(2048)) + packer.flush()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    before = log_count(served[0])
    status, _, _ = refused(served, post(url, bomb, **{"Content-Encoding": "gzip"}), before)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert status == 413 and grown < 64 * 1024, f"peak RSS grew by {grown} KiB"


def test_corrupt_gzip_is_400(served, url):
    before = log_count(served[0])
    status, _, message = refused(
        served, post(url, b"\x1f\x8bnot gzip at all", **{"Content-Encoding": "gzip"}), before
    )
    assert status == 400 and "gzip" in message


def test_unsupported_content_encoding_is_415(served, url):
    before = log_count(served[0])
    status, _, _ = refused(served, post(url, b"{}", **{"Content-Encoding": "br"}), before)
    assert status == 415


def test_unknown_path_is_404_json(url):
    resp = requests.get(f"{url}/v2/nothing", timeout=30)
    assert (resp.status_code, resp.json()["code"]) == (404, "not_found")


def test_wrong_method_is_405_json(url):
    resp = requests.get(f"{url}/v1/batch", timeout=30)
    assert (resp.status_code, resp.json()["code"], resp.headers["Allow"]) == (405, "bad_request", "POST")


def test_client_sending_headers_byte_by_byte_is_cut_off_and_others_are_served(url):
    host, port = url.removeprefix("http://").split(":")
    slow = socket.create_connection((host, int(port)), timeout=10)
    closed_after: list[float] = []

    def dribble() -> None:
        started = time.monotonic()
        try:
            for byte in b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200:
                slow.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass
        closed_after.append(time.monotonic() - started)

    thread = threading.Thread(target=dribble)
    thread.start()
    resp = requests.post(f"{url}/v1/track", json={"userId": "fast1", "event": "view"}, auth=AUTH, timeout=5)
    assert resp.status_code == 200
    thread.join(20)
    slow.close()
    assert closed_after and closed_after[0] < 5, closed_after  # cut off after ~1 s, not after 12 s of headers


def test_client_sending_its_body_too_slowly_is_408(url):
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as slow:
        slow.sendall(
            b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Write-Key: " + WRITE_KEY.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
        )
        answer = slow.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") and b'"code":"bad_request"' in answer
