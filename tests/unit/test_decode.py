"""The typed decode of the write ops (segd.wire.decode) against the dict-level reference
(segd.wire.protocol): same requests, same events, same errors, byte for byte."""

from __future__ import annotations

import math
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segd.errors import ProtocolError
from segd.wire import protocol
from segd.wire.decode import IdentifyItem, Refused, TrackItem, parse_frame
from tests.unit.wire_helpers import MIXED_EVENTS


def reference(body: bytes):
    """What the dict path answers for ``body``: the server's behaviour before the typed path."""
    frame = protocol.decode_body(body)
    if isinstance(frame, ProtocolError):
        return ("refused", None, frame.code, frame.message)
    try:
        req = protocol.parse_request(frame)
    except ProtocolError as exc:
        return ("refused", protocol.request_id(frame), exc.code, exc.message)
    return outcome(req)


def fast(body: bytes):
    got = parse_frame(body)
    if isinstance(got, Refused):
        return ("refused", got.id, got.error.code, got.error.message)
    return outcome(got)


def outcome(req):
    """A request as what it means: op, id, and each event as it would be logged."""
    if req.op in ("track", "identify"):
        return ("ok", req.op, _same_id(req.id), _logged(req.args["event"]))
    if req.op == "batch":
        return ("ok", req.op, _same_id(req.id), [_logged(e) for e in req.args["events"]])
    return ("ok", req.op, _same_id(req.id), req.args)


def _same_id(rid):
    return ("nan",) if isinstance(rid, float) and math.isnan(rid) else (type(rid), rid)


def _logged(ev):
    if isinstance(ev, ProtocolError):
        return ("error", ev.code, ev.message)
    e = ev.new_event(1.0)
    return (
        e.user,
        e.type,
        e.event,
        e.ts,
        _canonical(e.body),
        None if e.context is None else _canonical(e.context),
        e.msg_id,
        e.wall,
    )


def _canonical(body: bytes) -> bytes:
    """A map's meaning as bytes: decoded and packed again (so NaN equals NaN, -0.0 is kept)."""
    return packed(msgpack.unpackb(body, raw=False))


def packed(frame) -> bytes:
    return msgpack.packb(frame, use_bin_type=True)


def deep(levels: int) -> dict:
    node: dict = {"leaf": 1}
    for _ in range(levels - 1):
        node = {"x": node}
    return node


TRACK = {"op": "track", "user": "u", "event": "view"}
IDENTIFY = {"op": "identify", "user": "u", "traits": {"plan": "pro"}}
VALID = [
    {**TRACK, "id": 7, "props": {"price": 3, "tags": ["a", {"b": None}]}, "ts": 10, "msg_id": "m"},
    {**TRACK, "ts": 1.5, "context": {"locale": "fr-FR", "device": {"os": "ios"}}},
    {**TRACK, "context": {}},
    {**TRACK, "props": {}, "msg_id": None, "ts": None},
    {**TRACK, "id": "abc", "props": {"k" * protocol.MAX_KEY: "x" * protocol.MAX_STRING}},
    {**TRACK, "user": "é" * protocol.MAX_USER, "event": "ü" * protocol.MAX_EVENT},
    {**TRACK, "props": {"n": 2**64 - 1, "m": -(2**63), "f": float("nan"), "g": -0.0, "t": True}},
    {**TRACK, "props": deep(protocol.MAX_DEPTH)},
    {**TRACK, "id": b"\x00bin", "ts": 2**64 - 1},
    {**IDENTIFY, "id": 1.25},
    {
        **IDENTIFY,
        "traits": {"gone": None},
        "context": {"ip": "10.0.0.1"},
        "msg_id": "i" * protocol.MAX_MSG_ID,
    },
    {"op": "batch", "id": 9, "events": [{"type": "track", "user": "a", "event": "v"}] * 3},
    {
        "op": "batch",
        "events": [
            {"type": "identify", "user": "b", "traits": {"x": None}, "ts": -1},
            {"type": "track", "user": "a", "event": "v", "props": {"p": [1, 2]}, "context": {"l": "de"}},
        ],
    },
    {"op": "batch", "events": []},
]
INVALID = [
    {"op": "track", "event": "view"},
    {**TRACK, "user": ""},
    {**TRACK, "user": "u" * (protocol.MAX_USER + 1)},
    {**TRACK, "user": 5},
    {**TRACK, "user": None},
    {"op": "track", "user": "u"},
    {**TRACK, "event": "e" * (protocol.MAX_EVENT + 1)},
    {**TRACK, "props": [1]},
    {**TRACK, "props": {1: 2}},
    {**TRACK, "props": {"b": b"x"}},
    {**TRACK, "props": {"e": msgpack.ExtType(3, b"x")}},
    {**TRACK, "props": {"t": msgpack.Timestamp(1, 0)}},
    {**TRACK, "props": {"note": "x" * (protocol.MAX_STRING + 1)}},
    {**TRACK, "props": {"k" * (protocol.MAX_KEY + 1): 1}},
    {**TRACK, "props": deep(protocol.MAX_DEPTH + 1)},
    {**TRACK, "props": {"l": [[[[[[[[[1]]]]]]]]]}},
    {**TRACK, "props": None},
    {**TRACK, "ts": "yesterday"},
    {**TRACK, "ts": True},
    {**TRACK, "ts": float("nan")},
    {**TRACK, "ts": float("inf")},
    {**TRACK, "ts": float("-inf")},
    {**TRACK, "msg_id": "m" * (protocol.MAX_MSG_ID + 1)},
    {**TRACK, "msg_id": ""},
    {**TRACK, "msg_id": 3},
    {**TRACK, "prop": {}},
    {**TRACK, "traits": {}},
    {**TRACK, "type": "track"},
    {**TRACK, "context": "fr"},
    {**TRACK, "context": None},
    {**TRACK, "context": {"a": b"\x00"}},
    {**TRACK, "context": {"k" * 257: 1}},
    {**TRACK, "context": deep(protocol.MAX_DEPTH + 1)},
    {**TRACK, "id": [1]},
    {**TRACK, "id": {"no": 1}},
    {**TRACK, "id": msgpack.ExtType(1, b"")},
    {"op": "identify", "user": "u"},
    {"op": "identify", "user": "u", "traits": "x"},
    {"op": "identify", "user": "u", "traits": None},
    {"op": "identify", "user": "u", "traits": {}, "event": "x"},
    {"op": "batch"},
    {"op": "batch", "events": {}},
    {"op": "batch", "events": [{}] * (protocol.MAX_BATCH + 1)},
    {"op": "batch", "events": [{"type": "track", "user": "a", "event": "v"}], "extra": 1},
    {
        "op": "batch",
        "events": [
            *MIXED_EVENTS,
            {"type": "track", "user": "a", "event": "v", "context": [1]},
            {"type": "track", "user": "a", "event": "v", "props": {"b": b""}},
            {"user": "a", "event": "v"},
        ],
    },
    {"op": "auth"},
    {"op": "segment", "name": "s", "limit": 0},
    {"op": "history", "segment": "s"},
    {"op": "subscribe", "segments": "all"},
    {"op": 3},
    {},
    {"op": "teleport"},
    {"op": "ping", "id": [1]},
    {"op": "ping", "id": 4},
    {b"op": "track", "user": "u", "event": "v"},
    [1, 2, 3],
    "a string",
]


@pytest.mark.parametrize("frame", VALID, ids=range(len(VALID)))
def test_a_valid_write_takes_the_typed_path(frame):
    req = parse_frame(packed(frame))
    events = req.args["events"] if req.op == "batch" else [req.args["event"]]
    assert all(isinstance(e, (TrackItem, IdentifyItem)) for e in events)


@pytest.mark.parametrize("frame", VALID + INVALID, ids=range(len(VALID + INVALID)))
def test_the_typed_path_answers_what_the_dict_path_answers(frame):
    body = packed(frame)
    assert fast(body) == reference(body)


def test_the_typed_path_keeps_the_clients_bytes_of_the_maps():
    props = b"\xde\x00\x01\xa5price\xcb@\x08\x00\x00\x00\x00\x00\x00"  # map16, float64: not packb's form
    body = b"\x84" + packed("op") + packed("track") + packed("user") + packed("u")
    body += packed("event") + packed("v") + packed("props") + props
    [e] = [parse_frame(body).args["event"]]
    assert e.new_event(0.0).body == props


def test_an_event_without_props_is_logged_with_an_empty_map():
    e = parse_frame(packed(TRACK)).args["event"]
    assert e.new_event(0.0).body == packed({})


def test_an_empty_context_in_any_encoding_is_logged_as_none():
    for empty in (b"\x80", b"\xde\x00\x00", b"\xdf\x00\x00\x00\x00"):
        body = b"\x84" + b"".join(packed(x) for x in ("op", "track", "user", "u", "event", "v", "context"))
        e = parse_frame(body + empty).args["event"]
        assert e.new_event(0.0).context is None


def raw_map(*pairs: tuple[bytes, bytes]) -> bytes:
    """A msgpack map from already-encoded keys and values (duplicates allowed)."""
    return struct.pack(">BH", 0xDE, len(pairs)) + b"".join(k + v for k, v in pairs)


def kv(key, value) -> tuple[bytes, bytes]:
    return packed(key), packed(value)


@pytest.mark.parametrize(
    "body",
    [
        raw_map(kv("op", "track"), kv("user", 5), kv("user", "ok"), kv("event", "v")),
        raw_map(kv("op", "track"), kv("user", "ok"), kv("user", 5), kv("event", "v")),
        raw_map(kv("op", "track"), kv("user", "a"), kv("user", "b"), kv("event", "v")),
        raw_map(kv("op", "track"), kv("op", "identify"), kv("user", "u"), kv("traits", {})),
        raw_map(kv("user", "u"), kv("event", "v"), kv("op", "track")),
        raw_map(kv("op", "track"), kv("user", "u"), kv("event", "v"), kv("props", {"a": 1})) + b"\x00",
        raw_map(
            kv("op", "track"), kv("user", "u"), kv("event", "v"), (packed("props"), b"\x81\xa1a\xa2\xff\xfe")
        ),
        raw_map(kv("op", "track"), kv("user", "u"), (packed("event"), b"\xa2\xc3\x28")),
        raw_map(kv("op", "track"), kv("user", "u"), kv("event", "v"), (packed("props"), b"\x81\xa1a")),
        packed({"op": "track", "user": "u", "event": "v"})[:-2],
        b"\xc1",
        b"",
    ],
)
def test_hand_made_bodies_get_the_reference_answer(body):
    assert fast(body) == reference(body)


# ---------------------------------------------------------------------- property test

_LENGTHS = [0, 1, 2, 127, 128, 129, 255, 256, 257]
_texts = st.sampled_from(_LENGTHS).flatmap(lambda n: st.sampled_from(["x" * n, "é" * n, "😀" * n]))
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | _texts
    | st.binary(max_size=3)
    | st.builds(msgpack.ExtType, st.integers(0, 5), st.binary(max_size=2))
)
_keys = st.text(max_size=4) | _texts | st.integers(-2, 2) | st.binary(max_size=2)


def _nested(leaf):
    return st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
        max_leaves=12,
    )


_values = _nested(_scalars)
_maps = st.dictionaries(st.text(max_size=4) | _texts, _values, max_size=4) | st.sampled_from(
    [
        deep(8),
        deep(9),
        {"l": [[[[[[[1]]]]]]]},
        {"l": [[[[[[[[1]]]]]]]]},
        {"s": "x" * 65_536},
        {"s": "é" * 65_537},
    ]
)
_ok_texts = st.sampled_from([1, 2, 127, 128]).flatmap(lambda n: st.sampled_from(["x" * n, "é" * n]))
_ok_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
_ok_maps = st.dictionaries(
    st.text(max_size=4),
    st.recursive(
        _ok_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=8,
    ),
    max_size=4,
) | st.sampled_from([deep(8), {"l": [[[[[[[1]]]]]]]}, {"s": "x" * 65_536}])
# Per field: a valid value (most draws), or anything (a field gone wrong).
_FIELDS = {
    "user": (_ok_texts, _texts | _scalars),
    "event": (_ok_texts, _texts | _scalars),
    "props": (_ok_maps, _maps | _values),
    "traits": (_ok_maps, _maps | _values),
    "context": (_ok_maps | st.none(), _maps | _values),
    "ts": (st.floats(allow_nan=False, allow_infinity=False) | st.integers(0, 2**40) | st.none(), _scalars),
    "msg_id": (_ok_texts | st.none(), _texts | _scalars),
    "id": (_ok_scalars, _scalars | _values),
}
_SHAPES = {
    "track": ("user", "event", "props", "ts", "msg_id", "context"),
    "identify": ("user", "traits", "ts", "msg_id", "context"),
}


@st.composite
def _event(draw, kind: str):
    """A track or identify body: each field present or not, mostly valid, now and then not."""
    body = {}
    for key in _SHAPES[kind]:
        required = key in ("user", "event", "traits")
        if required or draw(st.booleans()):
            ok, anything = _FIELDS[key]
            body[key] = draw(anything if draw(st.integers(0, 9)) == 0 else ok)
    if draw(st.integers(0, 15)) == 0:
        body.pop(draw(st.sampled_from(sorted(body))), None)
    if draw(st.integers(0, 15)) == 0:
        body[draw(st.sampled_from(["prop", "type", "op", "traits", "event", "id"]))] = draw(_scalars)
    return body


@st.composite
def _bodies(draw):
    op = draw(st.sampled_from(["track", "identify", "batch", "batch", "ping"]))
    if op == "batch":
        items = []
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["track", "identify"]))
            item = {**draw(_event(kind)), "type": kind if draw(st.integers(0, 15)) else draw(_scalars)}
            items.append(item if draw(st.integers(0, 30)) else draw(_scalars))
        frame = {"op": "batch", "events": items}
    else:
        frame = {"op": op, **draw(_event("track" if op == "ping" else op))}
    if draw(st.booleans()):
        frame["id"] = draw(_FIELDS["id"][0] if draw(st.integers(0, 5)) else _FIELDS["id"][1])
    return frame


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies())
def test_random_frames_get_the_reference_answer(frame):
    body = packed(frame)
    assert fast(body) == reference(body)


# ---------------------------------------------------------------------- the encoder

_json_like = _nested(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=300)
    | st.binary(max_size=300)
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _json_like, max_size=5))
def test_frames_are_encoded_byte_for_byte_as_msgpack_packs_them(message):
    assert protocol.encode(message) == protocol.HEADER.pack(len(packed(message))) + packed(message)
