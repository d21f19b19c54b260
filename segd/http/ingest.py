"""Segment Tracking API messages -> segd events (SPEC section 8 "Mapping"), sans-IO.

``parse`` takes a request body (already decompressed and within 500 KiB) and the path's
kind (``"batch"`` or one message type), and returns a ``Parsed``: the body's ``writeKey``
(the caller checks it) and a ``map`` function giving one ``NewEvent`` per message. Every
check happens before anything is submitted, so a request is all or nothing: the first bad
message raises HttpError 400 whose message names the message index and the field in the
client's own terms (``batch[3].properties.price``).

The mapping: ``userId`` (else ``anonymousId``) is the user; ``messageId`` is the
``msg_id``; the event time is ``timestamp`` (else ``originalTimestamp``) shifted by
``received - sentAt`` when ``sentAt`` is given (the client's clock skew, as Segment does),
else the daemon's receive time. ``track`` -> track (``properties`` -> props); ``identify``
-> identify (``traits``; RudderStack's SDKs send them as ``context.traits``); ``page`` and
``screen`` -> track events ``page``/``screen`` with ``name`` and ``category`` merged into the
props; ``group`` -> identify with traits ``group_id`` and ``group`` (the group's traits);
``alias`` -> track ``alias`` with ``previous_id`` in props. The batch's ``context`` is merged
under each message's ``context``, which is kept with the event. Fields segd does not use
(``integrations``, ``_metadata``, ``channel``...) are ignored, as Segment does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack
import msgspec

from actors.records import NewEvent
from segd.http.errors import HttpError
from segd.wire.protocol import MAX_DEPTH, MAX_EVENT, MAX_KEY, MAX_MSG_ID, MAX_STRING, MAX_USER

MAX_MESSAGE = 32 * 1024  # bytes of JSON per message (Segment's limit)
MAX_MESSAGES = 2_500  # messages per batch
TYPES = ("track", "identify", "page", "screen", "group", "alias")
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgpack (and so the log) can hold


@dataclass(frozen=True, slots=True)
class Parsed:
    """A decoded request: its ``writeKey`` (None when absent) and its messages, unmapped."""

    write_key: str | None
    messages: list[tuple[dict[str, Any], str]]  # (message, its label in errors: "batch[3]." or "")
    sent_at: float | None  # the batch's sentAt
    context: dict[str, Any]  # the batch's context

    def map(self, received: float) -> list[NewEvent]:
        """One NewEvent per message, in order; ``received`` is the wall-clock receive time.
        Raises HttpError 400 naming the first bad message and field."""
        return [to_event(m, where, self, received) for m, where in self.messages]


def parse(kind: str, body: bytes) -> Parsed:
    """Decode a request body for ``kind`` (``"batch"`` or one of ``TYPES``).

    Raises HttpError 400 for bad JSON, a body that is not an object, a ``batch`` that is not
    a list or holds more than 2,500 messages, a message over 32 KiB or not an object.
    """
    try:
        top = msgspec.json.decode(body, type=dict[str, msgspec.Raw])
    except msgspec.ValidationError as exc:
        raise HttpError("bad_request", f"the body must be a JSON object ({exc})") from exc
    except msgspec.DecodeError as exc:
        raise HttpError("bad_request", f"the body is not valid JSON: {exc}") from exc
    fields = {k: _json(v, k) for k, v in top.items() if kind != "batch" or k != "batch"}
    write_key = fields.get("writeKey")
    if write_key is not None and not isinstance(write_key, str):
        raise HttpError("bad_request", f"'writeKey' must be a string, got {_kind(write_key)}")
    if kind != "batch":
        if len(body) > MAX_MESSAGE:
            raise HttpError("bad_request", f"the message is {len(body)} bytes; at most {MAX_MESSAGE}")
        declared = fields.get("type", kind)
        if declared != kind:
            raise HttpError(
                "bad_request", f"'type' is {declared!r} but this endpoint takes {kind!r} messages"
            )
        fields["type"] = kind
        return Parsed(write_key, [(fields, "")], None, {})
    if "batch" not in top:
        raise HttpError("bad_request", "missing field 'batch' (a list of messages)")
    try:
        raws = msgspec.json.decode(top["batch"], type=list[msgspec.Raw])
    except msgspec.ValidationError as exc:
        got = _kind(_json(top["batch"], "batch"))
        raise HttpError("bad_request", f"'batch' must be a list of messages, got {got}") from exc
    if len(raws) > MAX_MESSAGES:
        raise HttpError("bad_request", f"'batch' holds {len(raws)} messages; at most {MAX_MESSAGES}")
    messages: list[tuple[dict[str, Any], str]] = []
    for i, raw in enumerate(raws):
        if len(raw) > MAX_MESSAGE:
            raise HttpError("bad_request", f"'batch[{i}]' is {len(raw)} bytes; at most {MAX_MESSAGE}")
        msg = _json(raw, f"batch[{i}]")
        if not isinstance(msg, dict):
            raise HttpError("bad_request", f"'batch[{i}]' must be an object, got {_kind(msg)}")
        messages.append((msg, f"batch[{i}]."))
    sent_at = _time(fields, "sentAt", "")
    context = _object(fields, "context", "", 0)
    return Parsed(write_key, messages, sent_at, context)


def to_event(msg: dict[str, Any], where: str, batch: Parsed, received: float) -> NewEvent:
    """Map one message (see the module's doc). Raises HttpError 400 naming ``where`` + field."""
    kind = msg.get("type")
    if kind not in TYPES:
        raise HttpError("bad_request", f"'{where}type' must be one of {', '.join(TYPES)}, got {kind!r}")
    user_id, anonymous_id = _id(msg, "userId", where), _id(msg, "anonymousId", where)
    user = user_id or anonymous_id
    if user is None:
        raise HttpError("bad_request", f"'{where}userId' or '{where}anonymousId' is required")
    msg_id = _string(msg, "messageId", where, MAX_MSG_ID)
    ts, original = _time(msg, "timestamp", where), _time(msg, "originalTimestamp", where)
    sent_at = _time(msg, "sentAt", where)
    sent_at = batch.sent_at if sent_at is None else sent_at
    ts = original if ts is None else ts
    if ts is not None:
        if sent_at is not None:
            ts += received - sent_at
        if not math.isfinite(ts):
            raise HttpError("bad_request", f"'{where}timestamp' is out of range")
    context = _object(msg, "context", where, 0)
    if batch.context:
        context = {**batch.context, **context}
    event: str | None
    if kind == "track":
        event = _string(msg, "event", where, MAX_EVENT, required=True)
        data = _object(msg, "properties", where, 0)
    elif kind in ("page", "screen"):
        event = kind
        data = dict(_object(msg, "properties", where, 0))
        for key in ("name", "category"):
            value = _string(msg, key, where, MAX_STRING)
            if value is not None:
                data[key] = value
    elif kind == "alias":
        event = "alias"
        previous = _id(msg, "previousId", where)
        if previous is None:
            raise HttpError("bad_request", f"missing field '{where}previousId' (the user's previous id)")
        data = {"previous_id": previous}
    elif kind == "group":
        event = None
        group = _id(msg, "groupId", where)
        if group is None:
            raise HttpError("bad_request", f"missing field '{where}groupId' (the group's id)")
        data = {"group_id": group, "group": _object(msg, "traits", where, 1)}
    else:  # identify
        event = None
        if msg.get("traits") is None and isinstance(context.get("traits"), dict):
            data = context["traits"]  # RudderStack sends identify traits in the context only
        else:
            data = _object(msg, "traits", where, 0)
    return NewEvent(
        user=user,
        type="identify" if event is None else "track",
        event=event,
        ts=ts,
        body=msgpack.packb(data, use_bin_type=True),
        msg_id=msg_id,
        wall=received,
        context=msgpack.packb(context, use_bin_type=True) if context else None,
    )


# ------------------------------------------------------------------ field helpers


def _json(raw: msgspec.Raw, label: str) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.ValidationError as exc:  # numbers beyond a float's range
        raise HttpError("bad_request", f"'{label}' holds a number out of range ({exc})") from exc


def _id(msg: dict[str, Any], key: str, where: str) -> str | None:
    """An id field: a string of 1-256 characters or an integer (as its decimal string);
    absent, null or "" is None."""
    value = msg.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise HttpError("bad_request", f"'{where}{key}' must be a string, got {_kind(value)}")
    if len(value) > MAX_USER:
        raise HttpError("bad_request", f"'{where}{key}' must be 1-{MAX_USER} characters, got {len(value)}")
    return value


def _string(msg: dict[str, Any], key: str, where: str, hi: int, required: bool = False) -> str | None:
    value = msg.get(key)
    if value is None:
        if required:
            raise HttpError("bad_request", f"missing field '{where}{key}' (a string of 1-{hi} characters)")
        return None
    if not isinstance(value, str):
        raise HttpError("bad_request", f"'{where}{key}' must be a string, got {_kind(value)}")
    if not 1 <= len(value) <= hi:
        raise HttpError("bad_request", f"'{where}{key}' must be 1-{hi} characters, got {len(value)}")
    return value


def _time(msg: dict[str, Any], key: str, where: str) -> float | None:
    """An ISO 8601 date-time as seconds since the epoch (no zone: UTC); None when absent."""
    value = msg.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    raise HttpError(
        "bad_request",
        f"'{where}{key}' must be an ISO 8601 date-time such as '2024-05-01T12:00:00.000Z', got {_show(value)}",
    )


def _object(msg: dict[str, Any], key: str, where: str, depth: int) -> dict[str, Any]:
    """A map field (absent or null: empty), checked as the socket checks props and traits."""
    value = msg.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HttpError("bad_request", f"'{where}{key}' must be an object, got {_kind(value)}")
    _check(value, f"{where}{key}", depth)
    return value


def _check(value: Any, path: str, depth: int) -> None:
    """The socket's rules for props, traits and context (README "Limits"), over JSON values:
    nesting at most MAX_DEPTH, keys at most MAX_KEY characters, strings at most MAX_STRING,
    integers that fit the log's 64 bits. Scalars are checked in the loop of their container
    and a value's path is only spelled out for an error (the profile's hot spot)."""
    if depth >= MAX_DEPTH:
        raise HttpError("bad_request", f"'{path}' is nested deeper than {MAX_DEPTH} levels")
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        if type(k) is str and len(k) > MAX_KEY:
            raise HttpError("bad_request", f"'{path}' has a key of {len(k)} characters; at most {MAX_KEY}")
        t = type(v)
        if t is str:
            if len(v) > MAX_STRING:
                raise HttpError(
                    "bad_request",
                    f"'{_at(path, k)}' is a string of {len(v)} characters; at most {MAX_STRING}",
                )
        elif t is int:
            if not _INT_MIN <= v <= _INT_MAX:
                raise HttpError("bad_request", f"'{_at(path, k)}' is an integer beyond 64 bits")
        elif t is dict or t is list:
            _check(v, _at(path, k), depth + 1)
        # float, bool and null need no check: JSON has no other value


def _at(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if type(key) is int else f"{path}.{key}"


def _kind(value: Any) -> str:
    names: dict[type, str] = {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) and len(value) <= 64 else _kind(value)
