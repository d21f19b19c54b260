"""The wire protocol, sans-IO: framing and request validation over bytes and dicts.

A frame is a 4-byte big-endian length N, then N bytes holding one msgpack map. Nothing here
touches a socket (h11's model): ``FrameDecoder.feed`` takes bytes, returns what they held;
``parse_request`` turns a decoded map into a validated ``Request`` or raises ProtocolError
with the SPEC's error code and a message naming the field.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

import msgpack

from segd.errors import ProtocolError

HEADER = struct.Struct(">I")
MAX_BATCH = 10_000
MAX_USER = 256
MAX_EVENT = 128
MAX_MSG_ID = 128
MAX_DEPTH = 8  # nesting of maps/lists inside props, traits and context
MAX_KEY = 256  # characters in a prop or trait name
MAX_STRING = 65_536  # characters in a prop or trait string value
MAX_SEGMENT_PAGE = 100_000
MAX_HISTORY = 100_000  # transitions per ``history`` answer (default 10,000)
MAX_POINTS = 10_000  # points per ``sizes`` answer
MAX_EXPRESSION = 65_536  # characters in a ``preview`` expression

ERROR_CODES = frozenset(
    {
        "bad_frame",
        "frame_too_large",
        "bad_request",
        "unknown_op",
        "unauthorized",
        "not_found",
        "overloaded",
        "unavailable",
        "internal",
    }
)
OPS = frozenset(
    {
        "ping",
        "auth",
        "track",
        "identify",
        "batch",
        "sync",
        "user",
        "segments",
        "segment",
        "history",
        "sizes",
        "preview",
        "subscribe",
        "forget",
        "stats",
        "campaigns",
    }
)


def encode(message: dict[str, Any]) -> bytes:
    """One frame holding ``message``."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Incremental frame splitter. Feed it bytes in any chunking; it returns whole frames.

    ``feed`` returns a list whose items are decoded maps (dict) or ``ProtocolError`` values
    for frames whose body is not a msgpack map (``bad_frame``: the stream is still in sync,
    so the connection stays usable). A length above ``max_frame`` raises ProtocolError
    ``frame_too_large``: the stream cannot be trusted after it, the caller closes.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[str, Any] | ProtocolError]:
        """The frames completed by ``data``, in order: maps, or ``bad_frame`` errors as values.

        Raises ProtocolError ``frame_too_large`` for a length above ``max_frame``: the stream is
        out of sync and the caller closes (frames completed earlier in this call are dropped).
        """
        self._buf += data
        out: list[dict[str, Any] | ProtocolError] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = HEADER.unpack_from(buf, pos)
            if n > self.max_frame:
                del buf[:pos]
                raise ProtocolError(
                    "frame_too_large", f"frame of {n} bytes exceeds max_frame ({self.max_frame} bytes)"
                )
            if len(buf) - pos - 4 < n:
                break
            body = bytes(buf[pos + 4 : pos + 4 + n])
            pos += 4 + n
            out.append(_decode_body(body))
        del buf[:pos]
        return out


def _decode_body(body: bytes) -> dict[str, Any] | ProtocolError:
    try:
        value = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        return ProtocolError("bad_frame", f"frame body is not valid msgpack: {exc}")
    if not isinstance(value, dict):
        return ProtocolError("bad_frame", f"frame body must be a msgpack map, got {_kind(value)}")
    return value


# ------------------------------------------------------------------ requests


@dataclass(slots=True)
class EventIn:
    """A validated ``track`` or ``identify`` body. ``data`` is props or traits; ``context``
    (where the event came from) is None when the client sent none."""

    type: str
    user: str
    event: str | None
    data: dict[str, Any]
    ts: float | None
    msg_id: str | None
    context: dict[str, Any] | None = None


@dataclass(slots=True)
class Request:
    """A validated request. ``args`` holds the op's fields, already type-checked."""

    op: str
    id: Any
    args: dict[str, Any]


_SCALARS = (str, int, float, bool, bytes, type(None))


def request_id(frame: dict[str, Any]) -> Any:
    """The ``id`` to echo in a response, even for a request that fails validation."""
    rid = frame.get("id")
    return rid if isinstance(rid, _SCALARS) else None


def parse_request(frame: dict[str, Any]) -> Request:
    """Validate a decoded frame against its op's schema.

    Raises ProtocolError ``bad_request`` (the message names the field) or ``unknown_op``.
    """
    rid = frame.get("id")
    if not isinstance(rid, _SCALARS):
        raise ProtocolError(
            "bad_request", f"'id' must be a scalar (string, number, boolean, nil), got {_kind(rid)}"
        )
    op = frame.get("op")
    if not isinstance(op, str):
        raise ProtocolError(
            "bad_request",
            f"'op' must be a string, got {_kind(op)}" if "op" in frame else "missing field 'op'",
        )
    schema = _SCHEMAS.get(op)
    if schema is None:
        raise ProtocolError("unknown_op", f"unknown op {op!r}; known ops: {', '.join(sorted(OPS))}")
    fields = {k: v for k, v in frame.items() if k not in ("op", "id")}
    return Request(op, rid, schema(fields))


def parse_event(fields: dict[str, Any], type_: str, where: str = "") -> EventIn:
    """Validate one ``track`` or ``identify`` body (``where`` prefixes field names in errors)."""
    allowed = _TRACK_FIELDS if type_ == "track" else _IDENTIFY_FIELDS
    _only(fields, allowed, where)
    user = _string(fields, "user", where, 1, MAX_USER, required=True)
    ts = fields.get("ts")
    if ts is not None:
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise ProtocolError(
                "bad_request",
                f"'{where}ts' must be a finite number of seconds since the epoch, got {_kind(ts)}",
            )
        ts = float(ts)
    msg_id = _string(fields, "msg_id", where, 1, MAX_MSG_ID)
    if type_ == "track":
        event = _string(fields, "event", where, 1, MAX_EVENT, required=True)
        data = _map(fields, "props", where, required=False)
    else:
        event = None
        data = _map(fields, "traits", where, required=True)
    context = _map(fields, "context", where, required=False) if fields.get("context") is not None else None
    return EventIn(type_, user, event, data, ts, msg_id, context)


def parse_batch_item(item: Any, index: int) -> EventIn:
    """One item of a ``batch``: a track or identify body plus ``type``."""
    where = f"events[{index}]."
    if not isinstance(item, dict):
        raise ProtocolError("bad_request", f"'events[{index}]' must be a map, got {_kind(item)}")
    type_ = item.get("type")
    if type_ not in ("track", "identify"):
        raise ProtocolError("bad_request", f"'{where}type' must be 'track' or 'identify', got {type_!r}")
    return parse_event({k: v for k, v in item.items() if k != "type"}, type_, where)


# ------------------------------------------------------------------ per-op schemas

_TRACK_FIELDS = frozenset({"user", "event", "props", "ts", "msg_id", "context"})
_IDENTIFY_FIELDS = frozenset({"user", "traits", "ts", "msg_id", "context"})


def _none(f: dict[str, Any]) -> dict[str, Any]:
    _only(f, frozenset())
    return {}


def _auth(f: dict[str, Any]) -> dict[str, Any]:
    _only(f, frozenset({"token"}))
    return {"token": _string(f, "token", "", 0, 4096, required=True)}


def _track(f: dict[str, Any]) -> dict[str, Any]:
    return {"event": parse_event(f, "track")}


def _identify(f: dict[str, Any]) -> dict[str, Any]:
    return {"event": parse_event(f, "identify")}


def _batch(f: dict[str, Any]) -> dict[str, Any]:
    _only(f, frozenset({"events"}))
    if "events" not in f:
        raise ProtocolError("bad_request", "missing field 'events' (a list of track/identify maps)")
    events = f["events"]
    if not isinstance(events, list):
        raise ProtocolError("bad_request", f"'events' must be a list, got {_kind(events)}")
    if len(events) > MAX_BATCH:
        raise ProtocolError("bad_request", f"'events' holds {len(events)} items; at most {MAX_BATCH}")
    items: list[EventIn | ProtocolError] = []
    for i, item in enumerate(events):
        try:
            items.append(parse_batch_item(item, i))
        except ProtocolError as exc:
            items.append(exc)
    return {"events": items}


def _user(f: dict[str, Any]) -> dict[str, Any]:
    _only(f, frozenset({"user"}))
    return {"user": _string(f, "user", "", 1, MAX_USER, required=True)}


def _segment(f: dict[str, Any]) -> dict[str, Any]:
    _only(f, frozenset({"name", "limit", "after", "at"}))
    return {
        "name": _string(f, "name", "", 1, 256, required=True),
        "limit": _count(f, "limit", 1000, MAX_SEGMENT_PAGE),
        "after": _string(f, "after", "", 0, MAX_USER),
        "at": _time(f, "at"),
    }


def _history(f: dict[str, Any]) -> dict[str, Any]:
    _only(f, frozenset({"segment", "user", "since", "until", "limit"}))
    out = {
        "segment": _string(f, "segment", "", 1, 256),
        "user": _string(f, "user", "", 1, MAX_USER),
        "since": _time(f, "since"),
        "until": _time(f, "until"),
        "limit": _count(f, "limit", 10_000, MAX_HISTORY),
    }
    if out["segment"] is None and out["user"] is None:
        raise ProtocolError("bad_request", "missing field 'segment' or 'user' (at least one of them)")
    return out


def _sizes(f: dict[str, Any]) -> dict[str, Any]:
    _only(f, frozenset({"segment", "since", "until", "step"}))
    segment = _string(f, "segment", "", 1, 256, required=True)
    since = _time(f, "since", required=True)
    until = _time(f, "until", required=True)
    step = _time(f, "step", required=True, what="a number of seconds, at least 1")
    if step < 1:
        raise ProtocolError("bad_request", f"'step' must be at least 1 second, got {step!r}")
    if until < since:
        raise ProtocolError("bad_request", f"'until' ({until!r}) must not be before 'since' ({since!r})")
    # the points are since + k*step <= until, computed as the store computes them. The
    # estimate is refined by a step or two at most; bounded, since at magnitudes where adding
    # step no longer changes the float (since = 1e300) the sum stays <= until for every k.
    count = int((until - since) // step) + 1
    if count <= MAX_POINTS + 1:  # past that it is refused whatever the refinement gives
        while count <= MAX_POINTS and since + count * step <= until:
            count += 1
        while count > 1 and since + (count - 1) * step > until:
            count -= 1
    if count > MAX_POINTS:
        raise ProtocolError(
            "bad_request",
            f"'step' of {step:g} s from 'since' to 'until' gives {count:,} points; at most {MAX_POINTS:,} "
            f"(use a step of at least {math.ceil((until - since) / (MAX_POINTS - 1))} s)",
        )
    return {"segment": segment, "since": since, "until": until, "step": step, "count": count}


def _preview(f: dict[str, Any]) -> dict[str, Any]:
    _only(f, frozenset({"when"}))
    return {"when": _string(f, "when", "", 1, MAX_EXPRESSION, required=True)}


def _subscribe(f: dict[str, Any]) -> dict[str, Any]:
    _only(f, frozenset({"segments"}))
    segs = f.get("segments", "*")
    if segs != "*" and not (isinstance(segs, list) and all(isinstance(s, str) for s in segs)):
        raise ProtocolError(
            "bad_request", f"'segments' must be a list of segment names or '*', got {_kind(segs)}"
        )
    return {"segments": segs}


_Schema = Callable[[dict[str, Any]], dict[str, Any]]
_SCHEMAS: dict[str, _Schema] = {
    "ping": _none,
    "auth": _auth,
    "track": _track,
    "identify": _identify,
    "batch": _batch,
    "sync": _none,
    "user": _user,
    "segments": _none,
    "segment": _segment,
    "history": _history,
    "sizes": _sizes,
    "preview": _preview,
    "subscribe": _subscribe,
    "forget": _user,
    "stats": _none,
    "campaigns": _none,
}


# ------------------------------------------------------------------ field helpers


def _only(fields: dict[str, Any], allowed: frozenset[str], where: str = "") -> None:
    for key in fields:
        if key not in allowed:
            expected = ", ".join(sorted(allowed)) or "no fields"
            raise ProtocolError("bad_request", f"unknown field '{where}{key}' (expected: {expected})")


@overload
def _string(
    fields: dict[str, Any], key: str, where: str, lo: int, hi: int, required: Literal[True]
) -> str: ...
@overload
def _string(
    fields: dict[str, Any], key: str, where: str, lo: int, hi: int, required: bool = False
) -> str | None: ...
def _string(
    fields: dict[str, Any], key: str, where: str, lo: int, hi: int, required: bool = False
) -> str | None:
    value = fields.get(key)
    if value is None:
        if required:
            raise ProtocolError(
                "bad_request", f"missing field '{where}{key}' (a string of {lo}-{hi} characters)"
            )
        return None
    if not isinstance(value, str):
        raise ProtocolError("bad_request", f"'{where}{key}' must be a string, got {_kind(value)}")
    if not lo <= len(value) <= hi:
        raise ProtocolError("bad_request", f"'{where}{key}' must be {lo}-{hi} characters, got {len(value)}")
    return value


def _map(fields: dict[str, Any], key: str, where: str, required: bool) -> dict[str, Any]:
    value = fields.get(key)
    if value is None:
        if required:
            raise ProtocolError("bad_request", f"missing field '{where}{key}' (a map)")
        return {}
    if not isinstance(value, dict):
        raise ProtocolError("bad_request", f"'{where}{key}' must be a map, got {_kind(value)}")
    _check_value(value, f"{where}{key}", 0)
    return value


@overload
def _time(fields: dict[str, Any], key: str, required: Literal[True], what: str = ...) -> float: ...
@overload
def _time(fields: dict[str, Any], key: str, required: bool = False, what: str = ...) -> float | None: ...
def _time(
    fields: dict[str, Any], key: str, required: bool = False, what: str = "a time in seconds since the epoch"
) -> float | None:
    """A finite number (int or float, not boolean) as a float, or None when absent."""
    value = fields.get(key)
    if value is None:
        if required:
            raise ProtocolError("bad_request", f"missing field '{key}' ({what})")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        got = repr(value) if isinstance(value, float) else _kind(value)
        raise ProtocolError("bad_request", f"'{key}' must be {what}, got {got}")
    return float(value)


def _count(fields: dict[str, Any], key: str, default: int, hi: int) -> int:
    value = fields.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise ProtocolError("bad_request", f"'{key}' must be an integer from 1 to {hi}, got {value!r}")
    return value


def _check_value(value: Any, path: str, depth: int) -> None:
    """Props and traits hold JSON-like values only, nested at most MAX_DEPTH deep."""
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise ProtocolError("bad_request", f"'{path}' is nested deeper than {MAX_DEPTH} levels")
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError("bad_request", f"'{path}' has a non-string key {k!r}")
            if len(k) > MAX_KEY:
                raise ProtocolError(
                    "bad_request", f"'{path}' has a key of {len(k)} characters; at most {MAX_KEY}"
                )
            _check_value(v, f"{path}.{k}", depth + 1)
    elif isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise ProtocolError("bad_request", f"'{path}' is nested deeper than {MAX_DEPTH} levels")
        for i, v in enumerate(value):
            _check_value(v, f"{path}[{i}]", depth + 1)
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ProtocolError(
                "bad_request", f"'{path}' is a string of {len(value)} characters; at most {MAX_STRING}"
            )
    elif not isinstance(value, (int, float, bool, type(None))):
        raise ProtocolError(
            "bad_request",
            f"'{path}' has a value of unsupported type {_kind(value)} "
            "(expected string, number, boolean, nil, list or map)",
        )


def _kind(value: Any) -> str:
    names = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        bytes: "binary",
        list: "list",
        dict: "map",
        type(None): "nil",
    }
    return names.get(type(value), type(value).__name__)


# ------------------------------------------------------------------ responses


def ok(rid: Any, **fields: Any) -> dict[str, Any]:
    """A success response."""
    return {"id": rid, "ok": True, **fields}


def error(rid: Any, code: str, message: str) -> dict[str, Any]:
    """An error response with one of SPEC's codes."""
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}}
