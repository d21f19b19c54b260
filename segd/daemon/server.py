"""The asyncio socket shell: accept connections, read frames, answer in request order.

The server knows framing, pipelining, authentication and back-pressure; what each op means
is the ``Handler``'s business (``segd.daemon.ops.Ops``). Requests on one connection are
dispatched as they arrive (so pipelined writes join the same group commit) and answered in
request order. A bad request gets an error frame and never closes the connection, except an
oversized frame (the stream cannot be resynchronised) and a wrong TCP token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

from segd.config.values import parse_address
from segd.daemon import flow
from segd.errors import ProtocolError, SegdError, Unavailable
from segd.wire import protocol
from segd.wire.protocol import Request

log = structlog.get_logger("segd.daemon.server")

READ_CHUNK = 256 * 1024
PIPELINE_DEPTH = 1024  # responses a connection may owe before we stop reading from it


class _Close:
    """The outbox's last item: close the connection once what was queued before is sent."""


_CLOSE = _Close()
#: A stream (``subscribe``) that takes over the connection's output.
Stream = Callable[[asyncio.StreamWriter], Awaitable[None]]
#: What a connection's outbox holds, in request order: an answer, a pending answer, a stream.
Outgoing = dict[str, Any] | asyncio.Future[dict[str, Any]] | Stream | _Close


class Connection:
    """Per-connection state shared by the server and the handler."""

    __slots__ = ("peer", "tcp", "authed", "outbox", "closing", "streaming", "reading")

    def __init__(self, peer: str, tcp: bool) -> None:
        self.peer = peer
        self.tcp = tcp
        self.authed = not tcp  # the Unix socket is protected by its file mode
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue(PIPELINE_DEPTH)
        self.closing = False
        self.streaming = False  # after `subscribe`: output is a stream of transitions
        self.reading: asyncio.Task[None] | None = None


class Streaming:
    """A handler result that acknowledges, then takes over the connection's output."""

    __slots__ = ("ack", "run")

    def __init__(self, ack: dict[str, Any], run: Stream) -> None:
        self.ack = ack
        self.run = run


class Handler(Protocol):
    """What the server dispatches to. ``handle`` returns the response fields of a success;
    it raises ProtocolError for an error response. It may return a coroutine for slow ops, or
    a ``Streaming`` that takes over the connection's output."""

    def handle(
        self, req: Request, conn: Connection
    ) -> dict[str, Any] | Awaitable[dict[str, Any]] | Streaming: ...


class Server:
    """Listens on the Unix socket (always, mode 0600) and on TCP when configured."""

    def __init__(
        self,
        handler: Handler,
        *,
        socket_path: Path,
        tcp: str = "",
        token: str = "",
        max_frame: int,
        max_connections: int,
        backlog: int = 1024,
    ) -> None:
        self.handler = handler
        # asyncio calls listen() again when serving starts, with its own default of 100
        # unless told: each listener gets this one (the kernel caps it at net.core.somaxconn).
        self.backlog = backlog
        self.socket_path = Path(socket_path)
        self.tcp = tcp
        self.token = token
        self.max_frame = max_frame
        self.max_connections = max_connections
        self.connections: dict[asyncio.Task[None], Connection] = {}
        self.accepting = True
        self._servers: list[asyncio.AbstractServer] = []

    async def start(self) -> None:
        """Bind the listeners. Raises SegdError if the socket is in use by a live daemon or the
        ``[daemon] tcp`` address cannot be bound."""
        self._servers.append(
            await asyncio.start_unix_server(
                lambda r, w: self._accept(r, w, authed=True), sock=self._bind_unix(), backlog=self.backlog
            )
        )
        log.info("listening", socket=str(self.socket_path))
        if self.tcp:
            host, port = parse_address(self.tcp)
            try:
                tcp = await asyncio.start_server(
                    lambda r, w: self._accept(r, w, authed=False), host, port, backlog=self.backlog
                )
            except OSError as exc:
                raise SegdError(
                    f"[daemon] tcp = '{self.tcp}': cannot listen there: {exc.strerror or exc}"
                ) from exc
            self._servers.append(tcp)
            log.info("listening", tcp=self.tcp)

    def _bind_unix(self) -> socket.socket:
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # a stale socket left by a daemon that died
            else:
                raise SegdError(f"socket {path} is in use: another segd is running there")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        # Nobody can connect before listen(), so the mode is right before the first client.
        os.chmod(path, 0o600)
        sock.listen(self.backlog)
        sock.setblocking(False)
        return sock

    async def stop_accepting(self) -> None:
        """Close the listeners; existing connections go on until ``close_connections``."""
        self.accepting = False
        for srv in self._servers:
            srv.close()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def close_connections(self, timeout: float = 10.0) -> None:
        """Stop reading requests, let each connection flush the answers it owes, close it.

        Requests a client sent but we never read are not answered (and not logged): the
        client sees the connection close.
        """
        for conn in self.connections.values():
            if conn.reading is not None:
                conn.reading.cancel()
        tasks = list(self.connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()

    # ---------------------------------------------------------------- per connection

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authed: bool) -> None:
        peer = str(writer.get_extra_info("peername") or "unix")
        if len(self.connections) >= self.max_connections or not self.accepting:
            why = "too many connections" if self.accepting else "shutting down"
            writer.write(protocol.encode(protocol.error(None, "unavailable", why)))
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None  # asyncio runs each connection's callback in its own task
        conn = Connection(peer, tcp=not authed)
        self.connections[task] = conn
        reading = conn.reading = asyncio.create_task(self._read_loop(conn, reader))
        sending = asyncio.create_task(self._send_loop(conn, writer))
        try:
            done, _ = await asyncio.wait({reading, sending}, return_when=asyncio.FIRST_COMPLETED)
            if sending in done:  # the peer stopped taking answers: stop reading its requests
                reading.cancel()
            elif conn.streaming:  # a subscriber closed its end: the stream ends with it
                sending.cancel()
            else:
                await conn.outbox.put(_CLOSE)
                await asyncio.wait_for(sending, timeout=30)
        except asyncio.CancelledError:
            reading.cancel()
            sending.cancel()
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.debug("connection_lost", peer=peer, error=str(exc))
            sending.cancel()
        finally:
            self.connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read_loop(self, conn: Connection, reader: asyncio.StreamReader) -> None:
        decoder = protocol.FrameDecoder(self.max_frame)
        while not conn.closing:
            try:
                data = await reader.read(READ_CHUNK)
            except (ConnectionError, OSError):
                return
            if not data:
                if decoder.buffered:
                    log.info("client_left_mid_frame", peer=conn.peer, bytes=decoder.buffered)
                return
            try:
                items = decoder.feed(data)
            except ProtocolError as exc:
                log.info("frame_too_large", peer=conn.peer, message=exc.message)
                await conn.outbox.put(protocol.error(None, exc.code, exc.message))
                return
            for item in items:
                if isinstance(item, ProtocolError):
                    log.info("bad_frame", peer=conn.peer, message=item.message)
                    await conn.outbox.put(protocol.error(None, item.code, item.message))
                else:
                    result = self._dispatch(item, conn)
                    if isinstance(result, Streaming):
                        conn.streaming = True
                        await conn.outbox.put(result.ack)
                        await conn.outbox.put(result.run)
                    else:
                        await conn.outbox.put(result)
                    if conn.closing:
                        return

    def _dispatch(
        self, frame: dict[str, Any], conn: Connection
    ) -> dict[str, Any] | asyncio.Future[dict[str, Any]] | Streaming:
        """The response to one frame, or a future of it. Never raises."""
        rid = protocol.request_id(frame)
        try:
            req = protocol.parse_request(frame)
            if req.op == "auth":
                return self._auth(req, conn)
            if not conn.authed:
                raise ProtocolError("unauthorized", "authenticate first: send {op: 'auth', token: ...}")
            result = self.handler.handle(req, conn)
        except ProtocolError as exc:
            if exc.code not in ("overloaded", "unavailable"):
                log.info("bad_request", peer=conn.peer, code=exc.code, message=exc.message)
            return protocol.error(rid, exc.code, exc.message)
        except Unavailable as exc:
            return protocol.error(rid, "unavailable", str(exc))
        except Exception:  # a bug: answer `internal`, log it loudly, keep serving
            log.exception("internal_error", op=frame.get("op"))
            return protocol.error(rid, "internal", "internal error; see the daemon log")
        if isinstance(result, dict):
            return protocol.ok(rid, **result)
        if isinstance(result, Streaming):
            return Streaming(protocol.ok(rid, **result.ack), result.run)
        return asyncio.ensure_future(_respond(rid, result))

    def _auth(self, req: Request, conn: Connection) -> dict[str, Any]:
        if not conn.tcp:
            return protocol.ok(req.id)
        if hmac.compare_digest(req.args["token"].encode(), self.token.encode()):
            conn.authed = True
            return protocol.ok(req.id)
        log.warning("auth_failed", peer=conn.peer)
        conn.closing = True
        return protocol.error(req.id, "unauthorized", "wrong token")

    async def _send_loop(self, conn: Connection, writer: asyncio.StreamWriter) -> None:
        outbox = conn.outbox
        while True:
            item = await outbox.get()
            if isinstance(item, _Close):
                return
            if isinstance(item, asyncio.Future):
                item = await item
            try:
                if callable(item):  # a stream (subscribe) takes over the connection's output
                    await item(writer)
                    continue
                # a slow reader's answers back up into the bounded outbox, and we stop
                # reading its requests (see flow)
                await flow.write(writer, protocol.encode(item), more=not outbox.empty())
            except (ConnectionError, OSError):
                conn.closing = True
                return


async def _respond(rid: Any, pending: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        result = await pending
    except ProtocolError as exc:
        return protocol.error(rid, exc.code, exc.message)
    except Unavailable as exc:
        return protocol.error(rid, "unavailable", str(exc))
    except Exception:
        log.exception("internal_error")
        return protocol.error(rid, "internal", "internal error; see the daemon log")
    return protocol.ok(rid, **result)
