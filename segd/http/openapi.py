"""The OpenAPI 3.1 document served at /api/openapi.json: the JSON API and the ingest endpoints.

Written out by hand, not derived from the router, so that a test can hold the two against
each other (tests/integration/test_http_openapi.py: every route is documented and every
documented operation is routed) and schemathesis can hold the answers to the schemas.
"""

from __future__ import annotations

from typing import Any

from segd import __version__
from segd.http.body import MAX_BODY
from segd.http.errors import STATUS
from segd.http.ingest import MAX_MESSAGE, MAX_MESSAGES, TYPES

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    why = {
        400: "Bad request: the message names the field",
        401: "Missing or wrong credentials",
        404: "Unknown segment, user or path",
        408: "The request body took too long to arrive",
        413: "The request body exceeds 500 KiB (after decompression)",
        415: "Unsupported Content-Encoding",
        429: "Back-pressure: nothing was logged, retry after Retry-After seconds",
        503: "segd is shutting down or a part is restarting",
    }
    return {str(s): _json(_ref("Error"), why[s]) for s in statuses}


_NUMBER = {"type": "number"}
_API_ERRORS = (400, 401, 404, 503)
_INGEST_ERRORS = (400, 401, 408, 413, 415, 429, 503)


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _get(summary: str, answer: str, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": parameters or [],
            "responses": {
                "200": _json(_ref(answer), "The socket op's answer, as JSON"),
                **_errors(*_API_ERRORS),
            },
        }
    }


def _probe(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A health probe: GET, and HEAD for load balancers that probe with it."""
    head = {code: {"description": r["description"]} for code, r in responses.items()}
    return {
        "get": {"summary": summary, "responses": responses},
        "head": {"summary": summary, "responses": head},
    }


_SINCE = _query("since", _NUMBER, "Earliest logical time (seconds since the epoch)")
_UNTIL = _query("until", _NUMBER, "Latest logical time (seconds since the epoch)")
_LIMIT = _query("limit", {"type": "integer", "minimum": 1}, "At most this many items")


def _ingest(kind: str) -> dict[str, Any]:
    body = _ref("Batch") if kind == "batch" else _ref("Message")
    return {
        "post": {
            "summary": "Segment-compatible ingest: "
            + ("a batch of messages" if kind == "batch" else f"one {kind}"),
            "security": [{"writeKeyBasic": []}, {"writeKeyHeader": []}, {}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": _json(_ref("Success"), "Every message is durable in the log"),
                **_errors(*_INGEST_ERRORS),
            },
        }
    }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """The schema of a JSON object whose ``properties`` are all required."""
    return {"type": "object", "required": list(properties), "properties": properties}


def _schemas() -> dict[str, Any]:
    string = {"type": "string"}
    strings = {"type": "array", "items": string}
    nullable_string = {"type": ["string", "null"]}
    obj = {"type": "object"}
    transition = _object(
        {
            "id": string,
            "segment": string,
            "user": string,
            "kind": {"enum": ["enter", "exit"]},
            "at": _NUMBER,
            "seq": {"type": "integer"},
        }
    )
    identifier = {"type": ["string", "integer", "null"]}
    time = {"type": ["string", "null"], "description": "ISO 8601 date-time"}
    return {
        "Error": _object({"code": {"enum": sorted(STATUS)}, "message": string}),
        "Success": _object({"success": {"const": True}}),
        "Message": {
            "type": "object",
            "description": f"A Segment Tracking API message, at most {MAX_MESSAGE} bytes of JSON",
            "properties": {
                "type": {"enum": list(TYPES)},
                "userId": identifier,
                "anonymousId": identifier,
                "messageId": nullable_string,
                "timestamp": time,
                "originalTimestamp": time,
                "sentAt": time,
                "event": nullable_string,
                "name": nullable_string,
                "category": nullable_string,
                "groupId": identifier,
                "previousId": identifier,
                "properties": {"type": ["object", "null"]},
                "traits": {"type": ["object", "null"]},
                "context": {"type": ["object", "null"]},
                "writeKey": nullable_string,
            },
        },
        "Batch": {
            "type": "object",
            "description": f"At most {MAX_BODY} bytes after decompression",
            "required": ["batch"],
            "properties": {
                "batch": {"type": "array", "maxItems": MAX_MESSAGES, "items": _ref("Message")},
                "sentAt": time,
                "writeKey": nullable_string,
                "context": {"type": ["object", "null"]},
            },
        },
        "Transition": transition,
        "Segments": _object(
            {
                "segments": {
                    "type": "array",
                    "items": _object(
                        {
                            "name": string,
                            "size": {"type": "integer"},
                            "description": string,
                            "when": string,
                        }
                    ),
                }
            }
        ),
        "SegmentPage": _object({"size": {"type": "integer"}, "members": strings, "next": nullable_string}),
        "History": _object({"transitions": {"type": "array", "items": _ref("Transition")}}),
        "Sizes": _object(
            {
                "points": {
                    "type": "array",
                    # [t, size]: both numbers (schemathesis rewrites 3.1's prefixItems into a list-valued
                    # items that its own validator then refuses, so the pair is two numbers here)
                    "items": {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2},
                }
            }
        ),
        "User": _object(
            {
                "user": string,
                "traits": obj,
                "aggregates": obj,
                "segments": strings,
                "last_seq": {"type": "integer"},
            }
        ),
        "Campaigns": _object({"campaigns": {"type": "array"}}),
        "Stats": _object(
            {
                "events": {"type": "integer"},
                "users": {"type": "integer"},
                "applied_seq": {"type": "integer"},
                "lag": {"type": "integer"},
                "segments": obj,
                "messages": obj,
            }
        ),
        "Preview": _object({"size": {"type": "integer"}, "sample": strings, "overlap": obj}),
        "Health": _object({"status": string}),
        "Ready": _object({"ready": {"type": "boolean"}, "status": string}),
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI document (a fresh dict each call)."""
    name = _path("name", "Segment name")
    uid = _path("id", "User id")
    paths: dict[str, Any] = {f"/v1/{kind}": _ingest(kind) for kind in ("batch", *TYPES)}
    paths.update(
        {
            "/api/segments": _get("Every segment with its size", "Segments"),
            "/api/segments/{name}": _get(
                "A segment's members, paged; with `at`, as they were at that logical time",
                "SegmentPage",
                [
                    name,
                    _query("at", _NUMBER, "Membership as it was at this logical time"),
                    _query("after", {"type": "string"}, "Cursor: the last user id of the previous page"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100_000}, "Page size"),
                ],
            ),
            "/api/segments/{name}/history": _get(
                "A segment's transitions, in order", "History", [name, _SINCE, _UNTIL, _LIMIT]
            ),
            "/api/segments/{name}/sizes": _get(
                "A segment's size at since + k * step",
                "Sizes",
                [
                    name,
                    {**_SINCE, "required": True},
                    {**_UNTIL, "required": True},
                    _query("step", {"type": "number", "minimum": 1}, "Seconds between points", required=True),
                ],
            ),
            "/api/users/{id}": _get("A user's traits, aggregates and segments", "User", [uid]),
            "/api/users/{id}/history": _get(
                "A user's transitions, in order", "History", [uid, _SINCE, _UNTIL, _LIMIT]
            ),
            "/api/campaigns": _get("Per campaign and variant: sent, suppressed, conversions", "Campaigns"),
            "/api/stats": _get("Counters of the running daemon", "Stats"),
            "/api/preview": {
                "post": {
                    "summary": "How many users an expression matches now, a sample and the overlap with each segment",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["when"],
                                    "properties": {"when": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {"200": _json(_ref("Preview"), "The preview"), **_errors(*_API_ERRORS)},
                }
            },
            "/api/subscribe": {
                "get": {
                    "summary": "Transitions as Server-Sent Events (event `transition`, id = transition id)",
                    "security": [{"bearer": []}],
                    "parameters": [
                        _query(
                            "segments",
                            {"type": "string"},
                            "Comma-separated segment names; absent or * for all",
                        )
                    ],
                    "responses": {
                        "200": {
                            "description": "An endless event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors(*_API_ERRORS),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
                }
            },
            "/healthz": _probe("Alive", {"200": _json(_ref("Health"), "The daemon's loop answers")}),
            "/readyz": _probe(
                "Recovered and applying events",
                {
                    "200": _json(_ref("Ready"), "Ready"),
                    "503": _json(
                        _ref("Ready"),
                        "Not ready: draining, event routing stopped, or a derived store failing",
                    ),
                },
            ),
            "/": {
                "get": {
                    "summary": "The web console (a placeholder page for now)",
                    "responses": {
                        "200": {
                            "description": "HTML",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "segd",
            "version": __version__,
            "description": "Segment-compatible ingest and the JSON API of segd (SPEC section 8)",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "[http] token, when set"},
                "writeKeyBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "A write key as the user name",
                },
                "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
            },
        },
    }
