"""The JSON API under /api/ (SPEC section 8): one route per query op of SPEC section 2.

Each route turns its path and query parameters into the socket op's fields and calls the
same handler through the same validation (``HttpFace.call``), so an answer over HTTP is
the socket's answer as JSON, and a refusal has the socket's code and message. Query values
arrive as text and are converted by the route's table; an unknown parameter is refused by
name, as the socket refuses an unknown field.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from segd.http import auth, sse
from segd.http.body import BodyLimit
from segd.http.errors import HttpError

if TYPE_CHECKING:
    from segd.http.app import HttpFace


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise HttpError("bad_request", f"query parameter '{name}' must be a number, got {text!r}")
    return value


def _integer(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise HttpError("bad_request", f"query parameter '{name}' must be an integer, got {text!r}") from None


def _text(name: str, text: str) -> str:
    return text


Convert = Callable[[str, str], Any]
_PAGE: dict[str, Convert] = {"at": _number, "after": _text, "limit": _integer}
_SPAN: dict[str, Convert] = {"since": _number, "until": _number, "limit": _integer}
_SIZES: dict[str, Convert] = {"since": _number, "until": _number, "step": _number}


@dataclass(frozen=True)
class Route:
    """``GET path`` answering socket op ``op``; ``path_fields`` maps path parameters to op
    fields, ``query`` the accepted query parameters to their converters."""

    path: str
    op: str
    path_fields: dict[str, str] = field(default_factory=dict)
    query: dict[str, Convert] = field(default_factory=dict)


ROUTES = (
    Route("/api/segments", "segments"),
    Route("/api/segments/{name}", "segment", {"name": "name"}, _PAGE),
    Route("/api/segments/{name}/history", "history", {"name": "segment"}, _SPAN),
    Route("/api/segments/{name}/sizes", "sizes", {"name": "segment"}, _SIZES),
    Route("/api/users/{id}", "user", {"id": "user"}),
    Route("/api/users/{id}/history", "history", {"id": "user"}, _SPAN),
    Route("/api/campaigns", "campaigns"),
    Route("/api/stats", "stats"),
)


def add_routes(router: web.UrlDispatcher, face: HttpFace) -> None:
    """Register every JSON API route of ``face`` (the OpenAPI document lists the same)."""
    for route in ROUTES:
        router.add_get(route.path, _handler(face, route), allow_head=False)
    router.add_post("/api/preview", _preview(face))
    router.add_get("/api/subscribe", _subscribe(face), allow_head=False)


def check_token(face: HttpFace, request: web.Request) -> None:
    """401 unless the request carries ``[http] token`` as a Bearer token (when one is set)."""
    if not auth.bearer_accepted(request.headers.get("Authorization", ""), face.config.token):
        raise HttpError("unauthorized", "send the [http] token as 'Authorization: Bearer TOKEN'")


def _peer(request: web.Request) -> str:
    return str(request.remote or "unknown")


def _handler(face: HttpFace, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        check_token(face, request)
        fields: dict[str, Any] = {
            op_field: request.match_info[p] for p, op_field in route.path_fields.items()
        }
        for name, text in request.query.items():
            convert = route.query.get(name)
            if convert is None:
                expected = ", ".join(sorted(route.query)) or "none"
                raise HttpError("bad_request", f"unknown query parameter '{name}' (expected: {expected})")
            fields[name] = convert(name, text)
        return _answer(await face.call(route.op, fields, _peer(request)))

    return handle


def _preview(face: HttpFace) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        check_token(face, request)
        body = await read_body(request, face.config.client_timeout)
        try:
            fields = msgspec.json.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise HttpError("bad_request", f"the body is not valid JSON: {exc}") from exc
        if not isinstance(fields, dict):
            raise HttpError("bad_request", 'the body must be a JSON object such as {"when": "..."}')
        return _answer(await face.call("preview", fields, _peer(request)))

    return handle


def _subscribe(face: HttpFace) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        check_token(face, request)
        unknown = [k for k in request.query if k != "segments"]
        if unknown:
            raise HttpError("bad_request", f"unknown query parameter '{unknown[0]}' (expected: segments)")
        text = request.query.get("segments", "*").strip()
        names: list[str] | str = (
            "*" if text in ("", "*") else [n.strip() for n in text.split(",") if n.strip()]
        )
        stream = await face.call("subscribe", {"segments": names}, _peer(request))
        return await sse.serve(request, stream, face.closing)

    return handle


async def read_body(request: web.Request, timeout: float) -> bytes:
    """The request's body, decompressed, within ``body.MAX_BODY`` and ``timeout`` seconds.
    Raises HttpError 413 (too large), 400 (corrupt gzip), 408 (too slow), 415 (encoding)."""
    limit = BodyLimit(request.headers.get("Content-Encoding", ""))
    length = request.content_length
    if length is not None and not request.headers.get("Content-Encoding") and length > limit.limit:
        raise HttpError("bad_request", f"the request body is {length} bytes; at most {limit.limit}", 413)
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_any():
                limit.feed(chunk)
    except TimeoutError as exc:
        raise HttpError("bad_request", f"the request body took longer than {timeout:g} s", 408) from exc
    return limit.finish()


def _answer(result: object) -> web.Response:
    if not isinstance(result, dict):
        raise HttpError("internal", f"the op answered {type(result).__name__}, not a map")
    return web.Response(body=msgspec.json.encode(result), content_type="application/json")
