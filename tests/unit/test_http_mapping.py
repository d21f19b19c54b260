"""The HTTP face's pure parts: Segment message mapping, body limits (gzip), credentials."""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import msgpack
import pytest

from segd.http import auth, ingest
from segd.http.body import BodyLimit
from segd.http.errors import HttpError


def events(body: dict, kind: str = "batch", received: float = 1000.0):
    return ingest.parse(kind, json.dumps(body).encode()).map(received)


def one(msg: dict, **batch):
    [ev] = events({"batch": [msg], **batch})
    return ev


def test_track_maps_user_event_props_and_message_id():
    ev = one({"type": "track", "userId": "u", "event": "view", "properties": {"p": 1}, "messageId": "m"})
    assert (ev.user, ev.type, ev.event, msgpack.unpackb(ev.body), ev.msg_id) == (
        "u",
        "track",
        "view",
        {"p": 1},
        "m",
    )


def test_integer_user_id_is_its_decimal_string():
    assert one({"type": "track", "userId": 42, "event": "view"}).user == "42"


def test_empty_user_id_falls_back_to_anonymous_id():
    assert one({"type": "track", "userId": "", "anonymousId": "a", "event": "view"}).user == "a"


def test_timestamp_shifted_by_receive_minus_sent_at():
    ev = one({"type": "track", "userId": "u", "event": "e", "timestamp": "1970-01-01T00:10:00Z"},
             sentAt="1970-01-01T00:16:00Z")  # fmt: skip
    assert ev.ts == 600.0 + (1000.0 - 960.0)


def test_message_sent_at_wins_over_the_batch_sent_at():
    ev = one({"type": "track", "userId": "u", "event": "e", "timestamp": "1970-01-01T00:10:00Z",
              "sentAt": "1970-01-01T00:10:00Z"}, sentAt="1970-01-01T00:00:00Z")  # fmt: skip
    assert ev.ts == 1000.0


def test_timestamp_without_a_zone_is_utc():
    assert one({"type": "track", "userId": "u", "event": "e", "timestamp": "1970-01-01T00:10:00"}).ts == 600.0


def test_no_timestamp_leaves_the_time_to_the_daemon():
    assert one({"type": "track", "userId": "u", "event": "e"}).ts is None


def test_group_traits_nest_under_group():
    ev = one({"type": "group", "userId": "u", "groupId": 7, "traits": {"n": 1}})
    assert (ev.type, msgpack.unpackb(ev.body)) == ("identify", {"group_id": "7", "group": {"n": 1}})


def test_screen_props_carry_name_and_category():
    ev = one({"type": "screen", "userId": "u", "name": "Cart", "category": "Shop", "properties": {"x": 1}})
    assert (ev.event, msgpack.unpackb(ev.body)) == ("screen", {"x": 1, "name": "Cart", "category": "Shop"})


def test_message_context_wins_key_by_key_over_the_batch_context():
    ev = one({"type": "track", "userId": "u", "event": "e", "context": {"a": 1}}, context={"a": 0, "b": 2})
    assert msgpack.unpackb(ev.context) == {"a": 1, "b": 2}


def test_no_context_is_none():
    assert one({"type": "track", "userId": "u", "event": "e"}).context is None


def test_single_message_path_takes_its_type_from_the_path():
    [ev] = events({"userId": "u", "traits": {"a": 1}}, kind="identify")
    assert ev.type == "identify"


def test_single_message_path_refuses_another_type():
    with pytest.raises(HttpError, match="'type' is 'track' but this endpoint takes 'identify'"):
        events({"type": "track", "userId": "u", "event": "e"}, kind="identify")


def test_one_bad_message_refuses_the_whole_request():
    with pytest.raises(HttpError, match=r"'batch\[1\]\.event' must be a string"):
        events(
            {
                "batch": [
                    {"type": "track", "userId": "u", "event": "e"},
                    {"type": "track", "userId": "u", "event": 1},
                ]
            }
        )


def test_body_write_key_must_be_a_string():
    with pytest.raises(HttpError, match="'writeKey' must be a string"):
        ingest.parse("batch", b'{"writeKey": 5, "batch": []}')


def test_batch_level_time_with_a_wrong_type_is_refused():
    with pytest.raises(HttpError, match="'sentAt' must be an ISO 8601"):
        ingest.parse("batch", b'{"sentAt": 5, "batch": []}')


def test_number_beyond_a_float_is_refused_naming_the_message():
    with pytest.raises(HttpError, match=r"'batch\[0\]' holds a number out of range"):
        ingest.parse(
            "batch",
            b'{"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"x": 1e999}}]}',
        )


# ---------------------------------------------------------------- body limits


def test_plain_body_over_the_limit_stops_at_the_limit():
    body = BodyLimit("", limit=10)
    body.feed(b"x" * 10)
    with pytest.raises(HttpError) as exc:
        body.feed(b"y")
    assert exc.value.status == 413


def test_gzip_body_is_inflated():
    body = BodyLimit("gzip")
    data = gzip.compress(b'{"a": 1}')
    for i in range(len(data)):
        body.feed(data[i : i + 1])
    assert body.finish() == b'{"a": 1}'


def test_concatenated_gzip_members_are_one_body():
    body = BodyLimit("gzip")
    body.feed(gzip.compress(b"ab") + gzip.compress(b"cd"))
    assert body.finish() == b"abcd"


def test_gzip_bomb_holds_no_more_than_the_limit():
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = packer.compress(b"\0" * (64 << 20)) + packer.flush()
    body = BodyLimit("gzip", limit=1000)
    with pytest.raises(HttpError) as exc:
        body.feed(bomb)
    assert exc.value.status == 413 and len(body._out) <= 1001


def test_truncated_gzip_is_400():
    body = BodyLimit("gzip")
    body.feed(gzip.compress(b"x" * 1000)[:20])
    with pytest.raises(HttpError) as exc:
        body.finish()
    assert exc.value.status == 400


def test_unknown_encoding_is_415():
    with pytest.raises(HttpError) as exc:
        BodyLimit("br")
    assert exc.value.status == 415


# ---------------------------------------------------------------- credentials


def test_basic_user_is_the_write_key():
    header = "Basic " + base64.b64encode(b"key123:").decode()
    assert auth.header_write_key({"Authorization": header}) == "key123"


def test_bearer_header_is_no_write_key():
    assert auth.header_write_key({"Authorization": "Bearer x"}) is None


def test_key_accepted_only_when_configured():
    assert auth.key_accepted("b", ("a", "b")) and not auth.key_accepted("c", ("a", "b"))


def test_no_keys_accept_nothing():
    assert not auth.key_accepted("", ())


def test_bearer_must_match_the_token():
    assert auth.bearer_accepted("Bearer t", "t") and not auth.bearer_accepted("Bearer u", "t")


def test_no_token_accepts_every_request():
    assert auth.bearer_accepted("", "")
