"""The HTTP server: one aiohttp application in the daemon's event loop (SPEC section 8).

``HttpFace`` is built by the daemon with its op handlers and its committer (see
``Handler`` and ``Submitter``), started once the daemon has recovered, and stopped first
when it drains. Every answer is JSON; every error is ``{"code", "message"}`` with SPEC
section 2's code and a fitting status, unknown paths and wrong methods included.

Slow clients: aiohttp closes a connection that has not delivered a whole request head
within ``keepalive_timeout`` of connecting (or of its previous answer), so a client sending
its headers byte by byte is cut off after ``[http] client_timeout``; a body is read under
the same bound. Neither costs other clients anything: each connection is its own task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
import structlog
from aiohttp import web

from actors.records import Ack, NewEvent
from segd.config import HttpConfig
from segd.config.values import parse_address
from segd.console.routes import add_routes as add_console_routes
from segd.errors import ProtocolError, SegdError, Unavailable
from segd.http import api, auth, ingest
from segd.http.body import MAX_BODY
from segd.http.errors import HttpError
from segd.http.openapi import document
from segd.wire import protocol

log = structlog.get_logger("segd.http")

#: Seconds the server waits for in-flight requests when it stops.
SHUTDOWN_TIMEOUT = 10.0
#: What a 429 asks the client to wait; the SDKs honour integer seconds.
RETRY_AFTER = 1
INGEST_PATHS = ("batch", *ingest.TYPES)


class Handler(Protocol):
    """The daemon's op handlers (``segd.daemon.ops.Ops``), as the socket server sees them."""

    draining: bool

    def handle(self, req: Any, conn: Any) -> object:
        """Answer one validated ``segd.wire.protocol.Request`` (a map, an awaitable of one, or
        a stream for ``subscribe``); raises ProtocolError or Unavailable."""
        ...

    def readiness(self) -> dict[str, Any]:
        """``{"ready": bool, "status": ..., ...}`` for /readyz."""
        ...


class Submitter(Protocol):
    """The daemon's group committer (``segd.daemon.ingest.Committer``)."""

    async def submit(self, events: list[NewEvent]) -> list[Ack]:
        """Log ``events`` durably; raises ProtocolError ``overloaded``/``unavailable``/``internal``."""
        ...


class HttpFace:
    """The HTTP server of one daemon. ``port`` is the bound port once ``start`` returned."""

    def __init__(self, config: HttpConfig, ops: Handler, committer: Submitter) -> None:
        self.config = config
        self.ops = ops
        self.committer = committer
        self.host, self.port = parse_address(config.listen, allow_port_zero=True)
        self.closing = asyncio.Event()  # set by `stop`: live streams end
        self.refused = 0  # ingest requests answered 429 (back-pressure), for tests and the log
        self._runner: web.AppRunner | None = None
        self.app = self._build()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8080``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _build(self) -> web.Application:
        app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
        r = app.router
        for kind in INGEST_PATHS:
            r.add_post(f"/v1/{kind}", self._ingest_handler(kind))
        api.add_routes(r, self)
        # HEAD too: some load balancers probe with it.
        r.add_get("/healthz", self._healthz)
        r.add_get("/readyz", self._readyz)
        r.add_get("/api/openapi.json", self._openapi, allow_head=False)
        add_console_routes(app)  # GET / and the console's static files (segd.console)
        return app

    async def start(self) -> None:
        """Bind and serve. Raises SegdError naming ``[http] listen`` if the address cannot be
        bound (in use, not this machine's)."""
        runner = web.AppRunner(
            self.app,
            access_log=None,
            keepalive_timeout=self.config.client_timeout,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            handle_signals=False,
            auto_decompress=False,  # we inflate ourselves, under the 500 KiB bound (body.py)
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=512)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SegdError(
                f"[http] listen = '{self.host}:{self.port}': cannot listen there: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # aiohttp exposes the bound sockets only here
        if isinstance(server, asyncio.base_events.Server) and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        log.info("http_listening", url=self.url, ingest=bool(self.config.write_keys))

    async def stop(self) -> None:
        """Stop listening, end live streams, let in-flight requests finish (bounded)."""
        self.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------- ingest

    def _ingest_handler(self, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            return await self._ingest(kind, request)

        return handle

    async def _ingest(self, kind: str, request: web.Request) -> web.Response:
        """One Segment-compatible request: 200 once every message is durable, else nothing of
        it is logged (401, 400, 413, 415, 429, 503)."""
        keys = self.config.write_keys
        if not keys:
            raise HttpError("unauthorized", "ingest over HTTP is off: no [http] write_keys are configured")
        header_key = auth.header_write_key(request.headers)
        if header_key is not None and not auth.key_accepted(header_key, keys):
            raise HttpError("unauthorized", "unknown write key")
        if self.ops.draining:
            raise HttpError("unavailable", "segd is shutting down; retry on the next daemon")
        body = await api.read_body(request, self.config.client_timeout)
        parsed = ingest.parse(kind, body)
        if header_key is None:
            if parsed.write_key is None:
                raise HttpError(
                    "unauthorized",
                    "a write key is required: HTTP Basic (key as user name), X-Write-Key or 'writeKey'",
                )
            if not auth.key_accepted(parsed.write_key, keys):
                raise HttpError("unauthorized", "unknown write key")
        events = parsed.map(time.time())
        if events:
            try:
                await self.committer.submit(events)
            except ProtocolError as exc:
                if exc.code == "overloaded":
                    self.refused += 1
                    raise HttpError(exc.code, exc.message) from exc
                raise HttpError(exc.code, exc.message) from exc
        return _json({"success": True})

    # ---------------------------------------------------------------- health, docs

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        state = self.ops.readiness()
        return _json(state, 200 if state.get("ready") else 503)

    async def _openapi(self, request: web.Request) -> web.Response:
        return _json(document())

    # ---------------------------------------------------------------- ops

    async def call(self, op: str, fields: dict[str, Any], peer: str) -> object:
        """Run socket op ``op`` with ``fields`` through the same validation and handlers as
        the socket. Returns the answer map (or the stream of ``subscribe``); raises HttpError."""
        try:
            req = protocol.parse_request({"op": op, **fields})
            result = self.ops.handle(req, HttpPeer(peer))
            if isinstance(result, Awaitable):
                result = await result
        except ProtocolError as exc:
            raise HttpError(exc.code, exc.message) from exc
        except Unavailable as exc:
            raise HttpError("unavailable", str(exc)) from exc
        return result


class HttpPeer:
    """What an op handler may read of the connection a request came on (``peer``)."""

    __slots__ = ("peer", "tcp", "authed")

    def __init__(self, peer: str) -> None:
        self.peer = f"http:{peer}"
        self.tcp = True
        self.authed = True


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The JSON error answer every path uses."""
    resp = _json({"code": code, "message": message}, status)
    if headers:
        resp.headers.update(headers)
    return resp


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure as JSON ``{"code", "message"}``: ours, aiohttp's (404, 405, 413) and bugs."""
    try:
        return await handler(request)
    except HttpError as exc:
        if exc.status >= 500 and exc.code == "internal":
            log.error("http_internal_error", path=request.path, message=exc.message)
        elif exc.code not in ("overloaded", "unavailable"):
            log.info("http_refused", path=request.path, status=exc.status, code=exc.code, message=exc.message)
        headers: dict[str, str] = {}
        if exc.status == 429:
            headers["Retry-After"] = str(RETRY_AFTER)
        elif exc.status == 401:
            headers["WWW-Authenticate"] = (
                'Bearer realm="segd"' if request.path.startswith("/api/") else 'Basic realm="segd"'
            )
        return error_response(exc.status, exc.code, exc.message, headers)
    except web.HTTPMethodNotAllowed as exc:
        return error_response(
            405,
            "bad_request",
            f"{request.method} is not allowed on {request.path}; allowed: {', '.join(sorted(exc.allowed_methods))}",
            {"Allow": ", ".join(sorted(exc.allowed_methods))},
        )
    except web.HTTPNotFound:
        return error_response(404, "not_found", f"no such path: {request.path}")
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "bad_request", exc.text or "the request body is too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, "bad_request", exc.reason)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("http_internal_error", path=request.path)
        return error_response(500, "internal", "internal error; see the daemon log")
