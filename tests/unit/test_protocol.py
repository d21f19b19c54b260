"""Framing and request validation, sans-IO."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segd.errors import ProtocolError
from segd.wire import protocol
from segd.wire.protocol import EventIn, FrameDecoder, encode, parse_request
from tests.unit.wire_helpers import MIXED_EVENTS


def frames(*messages):
    return b"".join(encode(m) for m in messages)


def test_decoder_reassembles_frames_split_at_every_byte():
    data = frames({"op": "ping", "id": 1}, {"op": "stats", "id": 2})
    dec = FrameDecoder(1024)
    out = []
    for i in range(len(data)):
        out += dec.feed(data[i : i + 1])
    assert out == [{"op": "ping", "id": 1}, {"op": "stats", "id": 2}]
    assert dec.buffered == 0


def test_decoder_splits_coalesced_frames():
    msgs = [{"op": "ping", "id": i} for i in range(100)]
    assert FrameDecoder(1024).feed(frames(*msgs)) == msgs


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.text(max_size=5), st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20), max_size=4
        ),
        max_size=10,
    ),
    st.lists(st.integers(min_value=1, max_value=50), max_size=20),
)
def test_decoder_is_independent_of_chunking(msgs, cuts):
    data = frames(*msgs)
    dec = FrameDecoder(1 << 20)
    out, pos = [], 0
    for cut in cuts:
        out += dec.feed(data[pos : pos + cut])
        pos += cut
    out += dec.feed(data[pos:])
    assert out == msgs


def test_garbage_body_is_bad_frame_and_stream_stays_in_sync():
    garbage = b"\xc1\xc1\xc1"  # 0xc1 is never valid msgpack
    data = protocol.HEADER.pack(len(garbage)) + garbage + encode({"op": "ping"})
    out = FrameDecoder(1024).feed(data)
    assert isinstance(out[0], ProtocolError) and out[0].code == "bad_frame"
    assert out[1] == {"op": "ping"}


def test_non_map_body_is_bad_frame():
    body = msgpack.packb([1, 2, 3])
    [err] = FrameDecoder(1024).feed(protocol.HEADER.pack(len(body)) + body)
    assert err.code == "bad_frame" and "map" in err.message and "list" in err.message


def test_oversized_frame_is_refused_from_its_header_alone():
    dec = FrameDecoder(100)
    with pytest.raises(ProtocolError) as exc:
        dec.feed(protocol.HEADER.pack(101))
    assert exc.value.code == "frame_too_large" and "101" in exc.value.message


def test_frame_of_exactly_max_frame_is_accepted():
    body = msgpack.packb({"op": "x" * 90})
    assert FrameDecoder(len(body)).feed(protocol.HEADER.pack(len(body)) + body) == [{"op": "x" * 90}]


def bad(frame):
    with pytest.raises(ProtocolError) as exc:
        parse_request(frame)
    return exc.value


def test_track_is_parsed_into_an_event():
    req = parse_request(
        {
            "op": "track",
            "id": 7,
            "user": "u1",
            "event": "view",
            "props": {"price": 3},
            "ts": 10,
            "msg_id": "m",
        }
    )
    assert req.id == 7
    assert req.args["event"] == EventIn("track", "u1", "view", {"price": 3}, 10.0, "m")


@pytest.mark.parametrize(
    "frame, field",
    [
        ({"op": "track", "event": "view"}, "user"),
        ({"op": "track", "user": "", "event": "view"}, "user"),
        ({"op": "track", "user": "u" * 257, "event": "view"}, "user"),
        ({"op": "track", "user": 5, "event": "view"}, "user"),
        ({"op": "track", "user": "u"}, "event"),
        ({"op": "track", "user": "u", "event": "e" * 129}, "event"),
        ({"op": "track", "user": "u", "event": "v", "props": [1]}, "props"),
        ({"op": "track", "user": "u", "event": "v", "props": {1: 2}}, "props"),
        ({"op": "track", "user": "u", "event": "v", "props": {"b": b"x"}}, "props.b"),
        ({"op": "track", "user": "u", "event": "v", "ts": "yesterday"}, "ts"),
        ({"op": "track", "user": "u", "event": "v", "ts": True}, "ts"),
        ({"op": "track", "user": "u", "event": "v", "ts": float("nan")}, "ts"),
        ({"op": "track", "user": "u", "event": "v", "msg_id": "m" * 129}, "msg_id"),
        ({"op": "track", "user": "u", "event": "v", "msg_id": 3}, "msg_id"),
        ({"op": "track", "user": "u", "event": "v", "prop": {}}, "prop"),
        ({"op": "identify", "user": "u"}, "traits"),
        ({"op": "identify", "user": "u", "traits": "x"}, "traits"),
        ({"op": "identify", "user": "u", "traits": {}, "event": "x"}, "event"),
        ({"op": "batch"}, "events"),
        ({"op": "batch", "events": {}}, "events"),
        ({"op": "auth"}, "token"),
        ({"op": "segment", "name": "s", "limit": 0}, "limit"),
        ({"op": "segment", "name": "s", "limit": 100_001}, "limit"),
        ({"op": "history", "since": 0}, "segment"),  # since is optional now (SPEC); segment or user is not
        ({"op": "subscribe", "segments": "all"}, "segments"),
        ({"op": 3}, "op"),
        ({}, "op"),
        ({"op": "ping", "id": [1]}, "id"),
    ],
)
def test_bad_request_names_the_field(frame, field):
    err = bad(frame)
    assert err.code == "bad_request"
    assert f"'{field}'" in err.message


def test_unknown_op():
    err = bad({"op": "teleport"})
    assert err.code == "unknown_op" and "teleport" in err.message


def test_props_nesting_is_limited():
    deep: dict = {}
    node = deep
    for _ in range(protocol.MAX_DEPTH + 1):
        node["x"] = {}
        node = node["x"]
    err = bad({"op": "track", "user": "u", "event": "v", "props": deep})
    assert err.code == "bad_request" and "nested deeper" in err.message


def test_batch_keeps_valid_items_and_reports_bad_ones_by_index():
    req = parse_request(
        {
            "op": "batch",
            "events": MIXED_EVENTS,
        }
    )
    items = req.args["events"]
    assert isinstance(items[0], EventIn) and isinstance(items[4], EventIn)
    assert "'events[1].event'" in items[1].message
    assert "'events[2].type'" in items[2].message
    assert "'events[3]'" in items[3].message


def test_batch_over_the_limit_is_refused():
    err = bad({"op": "batch", "events": [{}] * (protocol.MAX_BATCH + 1)})
    assert "10000" in err.message


def test_request_id_survives_a_bad_request():
    assert protocol.request_id({"op": "track", "id": "abc"}) == "abc"


def test_a_request_id_that_is_not_a_scalar_is_dropped():
    assert protocol.request_id({"id": {"no": 1}}) is None


def test_a_long_string_in_props_is_refused_naming_the_field():
    with pytest.raises(ProtocolError, match=r"'props.note' is a string of 65537 characters; at most 65536"):
        parse_request(
            {"op": "track", "user": "u", "event": "e", "props": {"note": "x" * (protocol.MAX_STRING + 1)}}
        )


def test_a_long_key_in_traits_is_refused_naming_the_field():
    with pytest.raises(ProtocolError, match=r"'traits' has a key of 257 characters; at most 256"):
        parse_request({"op": "identify", "user": "u", "traits": {"k" * (protocol.MAX_KEY + 1): 1}})


def test_strings_and_keys_at_the_limits_are_accepted():
    assert parse_request(
        {
            "op": "track",
            "user": "u",
            "event": "e",
            "props": {"k" * protocol.MAX_KEY: "x" * protocol.MAX_STRING},
        }
    )
