"""Clients for the segd socket: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

Both have one method per op (``track``, ``identify``, ``batch``, ``sync``, ``user``...)
returning the response map without ``id``/``ok``; an error response raises ``RemoteError``
carrying the server's ``code``. ``send_events`` splits any number of events into pipelined
``batch`` requests. Connect with a Unix socket path or ``tcp="host:port"`` plus ``token``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from segd.config.values import parse_address
from segd.errors import ConnectError, ProtocolError, RemoteError
from segd.wire import protocol

DEFAULT_MAX_FRAME = 64 << 20  # what a client accepts; the server enforces its own limit

Reply = dict[str, Any]
#: What ``call`` returns: a ``Reply`` (``Client``) or a coroutine of one (``AsyncClient``).
R = TypeVar("R")


class _Ops(Generic[R]):
    """The op table shared by both clients: each method builds a request and calls ``call``.

    Every op returns what ``call`` returns: the response map without ``id``/``ok``, or for
    the asyncio client an awaitable of it; an error response raises ``RemoteError``.
    """

    def call(self, op: str, **fields: Any) -> R:  # pragma: no cover - overridden
        raise NotImplementedError

    def ping(self) -> R:
        """Check the connection; the reply holds ``version``, ``time`` and the engine ``clock``."""
        return self.call("ping")

    def track(
        self,
        user: str,
        event: str,
        props: dict[str, Any] | None = None,
        *,
        ts: float | None = None,
        msg_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> R:
        """Log one ``event`` of ``user`` (``ts`` in seconds since the epoch; None: receive time;
        ``context``: where it came from, e.g. ``{"locale": "fr-FR"}``).

        The reply holds ``seq``, and ``duplicate`` when ``msg_id`` was already logged.
        """
        return self.call(
            "track", **_drop_none(user=user, event=event, props=props, ts=ts, msg_id=msg_id, context=context)
        )

    def identify(
        self,
        user: str,
        traits: dict[str, Any],
        *,
        ts: float | None = None,
        msg_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> R:
        """Set ``traits`` of ``user`` (a None value removes the trait); the reply is as ``track``'s."""
        return self.call(
            "identify", **_drop_none(user=user, traits=traits, ts=ts, msg_id=msg_id, context=context)
        )

    def batch(self, events: list[dict[str, Any]]) -> R:
        """``events``: maps with ``type`` ("track"/"identify") plus the op's fields."""
        return self.call("batch", events=events)

    def sync(self) -> R:
        """Wait until every event logged before this call is applied and due timers have fired.

        The reply holds ``seq``, the log position reached.
        """
        return self.call("sync")

    def user(self, user: str) -> R:
        """A user's traits, aggregates and segments; RemoteError ``not_found`` if unknown."""
        return self.call("user", user=user)

    def segments(self) -> R:
        """Every segment with its size and description."""
        return self.call("segments")

    def segment(
        self, name: str, *, limit: int = 1000, after: str | None = None, at: float | None = None
    ) -> R:
        """One page of at most ``limit`` members of ``name``, after the user id ``after``; with
        ``at``, the members as they were at that logical time (seconds since the epoch)."""
        return self.call("segment", **_drop_none(name=name, limit=limit, after=after, at=at))

    def history(
        self,
        segment: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        user: str | None = None,
        limit: int | None = None,
    ) -> R:
        """Transitions of ``segment`` and/or ``user`` (at least one) from ``since`` to ``until``
        (seconds since the epoch, each optional), in order, at most ``limit`` (default 10,000)."""
        return self.call(
            "history", **_drop_none(segment=segment, user=user, since=since, until=until, limit=limit)
        )

    def sizes(self, segment: str, since: float, until: float, step: float) -> R:
        """``segment``'s size at ``since + k*step`` up to ``until``: ``points``, ``[t, size]`` pairs."""
        return self.call("sizes", segment=segment, since=since, until=until, step=step)

    def preview(self, when: str) -> R:
        """Evaluate the expression ``when`` over every user now, changing nothing: ``size``,
        ``sample`` (up to 20 user ids) and ``overlap`` (segment -> how many of them);
        RemoteError ``bad_request`` naming the column for an invalid expression."""
        return self.call("preview", when=when)

    def forget(self, user: str) -> R:
        """Erase ``user``: events, state, history and messages (no message is sent).

        The reply holds ``seq``, ``events`` (rows erased) and ``segments`` (how many it left).
        """
        return self.call("forget", user=user)

    def stats(self) -> R:
        """The daemon's statistics."""
        return self.call("stats")

    def campaigns(self) -> R:
        """Per campaign and variant: sent, suppressed, conversions and conversion rate."""
        return self.call("campaigns")


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _result(resp: dict[str, Any]) -> dict[str, Any]:
    if not resp.get("ok"):
        err = resp.get("error") or {}
        raise RemoteError(err.get("code", "internal"), err.get("message", "no message"))
    return {k: v for k, v in resp.items() if k not in ("id", "ok")}


def _chunks(events: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(events)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class Client(_Ops[Reply]):
    """A blocking client. One request at a time unless ``pipeline``/``send_events`` is used."""

    def __init__(
        self,
        socket_path: str | Path | None = None,
        *,
        tcp: str | None = None,
        token: str | None = None,
        timeout: float | None = 30.0,
    ) -> None:
        try:
            if tcp:
                self.sock = socket.create_connection(_address(tcp), timeout=timeout)
            else:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(str(socket_path or "var/segd.sock"))
        except OSError as exc:
            raise ConnectError(f"cannot connect to segd at {tcp or socket_path}: {exc}") from exc
        self._decoder = protocol.FrameDecoder(DEFAULT_MAX_FRAME)
        self._frames: list[dict[str, Any] | ProtocolError] = []
        self._ids = itertools.count(1)
        if token is not None:
            self.call("auth", token=token)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one ``op`` request; its reply without ``id``/``ok``, or raise ``RemoteError``."""
        [resp] = self.pipeline([{"op": op, **fields}])
        return _result(resp)

    def pipeline(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send every request, then read every response (raw maps, in order)."""
        self.sock.sendall(b"".join(protocol.encode({"id": next(self._ids), **r}) for r in requests))
        return [self.recv() for _ in requests]

    def recv(self) -> dict[str, Any]:
        """The next frame from the server (raises ConnectError if the server closed)."""
        while not self._frames:
            try:
                data = self.sock.recv(1 << 16)
            except OSError as exc:
                raise ConnectError(f"connection to segd failed: {exc}") from exc
            if not data:
                raise ConnectError("segd closed the connection")
            self._frames.extend(self._decoder.feed(data))
        frame = self._frames.pop(0)
        if isinstance(frame, Exception):
            raise frame
        return frame

    def send_events(
        self, events: Iterable[dict[str, Any]], *, batch_size: int = 1000, window: int = 8
    ) -> list[dict[str, Any]]:
        """Log any number of events as pipelined ``batch`` requests (``window`` in flight).

        Returns one result per event, in order (``{"seq": ...}`` or ``{"error": ...}``).
        Raises RemoteError if a whole batch is refused (e.g. ``overloaded``).
        """
        results: list[dict[str, Any]] = []
        in_flight = 0
        for chunk in _chunks(events, batch_size):
            self.sock.sendall(protocol.encode({"id": next(self._ids), "op": "batch", "events": chunk}))
            in_flight += 1
            if in_flight >= window:
                results.extend(_result(self.recv())["results"])
                in_flight -= 1
        for _ in range(in_flight):
            results.extend(_result(self.recv())["results"])
        return results

    def subscribe(self, segments: list[str] | str = "*") -> Iterator[dict[str, Any]]:
        """Yield transition maps until the connection closes. Blocks between transitions."""
        _result(self.pipeline([{"op": "subscribe", "segments": segments}])[0])
        self.sock.settimeout(None)
        while True:
            try:
                frame = self.recv()
            except ConnectError:
                return
            if "transition" in frame:
                yield frame["transition"]
            elif frame.get("ok") is False:
                _result(frame)


class AsyncClient(_Ops[Coroutine[Any, Any, Reply]]):
    """An asyncio client. Concurrent calls on one client are pipelined and matched by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = protocol.FrameDecoder(DEFAULT_MAX_FRAME)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._stream: asyncio.Queue[dict[str, Any] | None] | None = None
        self._pump = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, socket_path: str | Path | None = None, *, tcp: str | None = None, token: str | None = None
    ) -> AsyncClient:
        """Connect to a Unix socket path or ``tcp="host:port"``; ``token`` authenticates.

        Raises ConnectError if the daemon cannot be reached, RemoteError if ``token`` is refused.
        """
        try:
            if tcp:
                reader, writer = await asyncio.open_connection(*_address(tcp))
            else:
                reader, writer = await asyncio.open_unix_connection(str(socket_path or "var/segd.sock"))
        except OSError as exc:
            raise ConnectError(f"cannot connect to segd at {tcp or socket_path}: {exc}") from exc
        client = cls(reader, writer)
        if token is not None:
            await client.call("auth", token=token)
        return client

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop reading and close the connection; pending calls fail with ConnectError."""
        self._pump.cancel()
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one ``op`` request; its reply without ``id``/``ok``, or raise ``RemoteError``."""
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        self._writer.write(protocol.encode({"id": rid, "op": op, **fields}))
        await self._writer.drain()
        return _result(await fut)

    async def send_events(
        self, events: Iterable[dict[str, Any]], *, batch_size: int = 1000
    ) -> list[dict[str, Any]]:
        """Like ``Client.send_events``: all batches pipelined, results in event order."""
        replies = await asyncio.gather(*(self.batch(chunk) for chunk in _chunks(events, batch_size)))
        return [r for reply in replies for r in reply["results"]]

    async def subscribe(self, segments: list[str] | str = "*") -> AsyncIterator[dict[str, Any]]:
        """Yield transition maps until the connection closes."""
        self._stream = asyncio.Queue()
        await self.call("subscribe", segments=segments)
        while True:
            item = await self._stream.get()
            if item is None:
                return
            yield item

    async def _read(self) -> None:
        try:
            while data := await self._reader.read(1 << 16):
                for frame in self._decoder.feed(data):
                    if not isinstance(frame, dict):
                        continue  # a bad frame answers no request
                    if "transition" in frame and self._stream is not None:
                        self._stream.put_nowait(frame["transition"])
                        continue
                    # The server echoes our int id; any other value matches nothing.
                    rid: Any = frame.get("id")
                    fut = self._waiting.pop(rid, None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            err = ConnectError("segd closed the connection")
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(err)
            self._waiting.clear()
            if self._stream is not None:
                self._stream.put_nowait(None)


def _address(tcp: str) -> tuple[str, int]:
    try:
        return parse_address(tcp)
    except ValueError as exc:
        raise ConnectError(f"cannot connect to segd at {tcp!r}: {exc}") from exc


# ---------------------------------------------------------------------- prepared batches


def encode_batches(events: list[dict[str, Any]], batch_size: int = 1000, first_id: int = 1) -> list[bytes]:
    """``events`` as ``batch`` request frames of ``batch_size`` items, ids counting from
    ``first_id``: the same bytes ``AsyncClient.batch`` writes for each chunk (``id``, ``op``,
    ``events``, in that order), made ahead of time, as a service encodes on its own machine."""
    return [
        protocol.encode({"id": rid, "op": "batch", "events": chunk})
        for rid, chunk in enumerate(_chunks(events, batch_size), first_id)
    ]


class _Error(msgspec.Struct, gc=False):
    code: str = "internal"
    message: str = "no message"


class _Item(msgspec.Struct, gc=False):
    """One item of a ``batch`` answer: ``{"seq": N}``, with ``duplicate``, or ``{"error"}``."""

    seq: int | None = None
    duplicate: bool = False
    error: _Error | None = None


class _BatchAnswer(msgspec.Struct, gc=False):
    id: Any = None
    ok: bool = False
    results: list[_Item] = []
    error: _Error | None = None


_ANSWER = msgspec.msgpack.Decoder(_BatchAnswer)


@dataclass(slots=True)
class Tally:
    """What ``send_prepared`` got back: items acknowledged (logged or ``duplicate``), items
    refused (the first one's ``code: message``), and batches whose answer was an error."""

    acked: int = 0
    duplicates: int = 0
    refused: int = 0
    failed_batches: int = 0
    first_error: str | None = None


async def send_prepared(
    frames: list[bytes],
    socket_path: str | Path | None = None,
    *,
    window: int = 8,
    tcp: str | None = None,
    token: str | None = None,
) -> Tally:
    """Write ``batch`` frames from ``encode_batches`` on one connection, ``window`` in flight,
    and read every answer with a typed decoder (msgspec): every item is checked for an error,
    acks are counted exactly, each answer must carry its request's id (the server answers in
    request order). No per-item dict is built on this side. Raises ConnectError if the
    connection is lost, RemoteError if an answer is not a batch answer."""
    client = await AsyncClient.connect(socket_path, tcp=tcp, token=token)
    client._pump.cancel()  # this function reads the connection itself, once the pump is gone
    await asyncio.wait((client._pump,))
    reader, writer = client._reader, client._writer
    ids = [_frame_id(f) for f in frames]
    tally = Tally()
    slots = asyncio.Semaphore(window)

    async def write() -> None:
        for frame in frames:
            await slots.acquire()
            writer.write(frame)
            await writer.drain()

    writing = asyncio.create_task(write())
    splitter = protocol.FrameSplitter(DEFAULT_MAX_FRAME)
    answered = 0
    try:
        while answered < len(frames):
            data = await reader.read(1 << 18)
            if not data:
                raise ConnectError("segd closed the connection")
            for body in splitter.feed(data):
                _count(_ANSWER.decode(body), ids[answered], tally)
                answered += 1
                slots.release()
        await writing
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise ConnectError(f"connection to segd failed: {exc}") from exc
    finally:
        writing.cancel()
        writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await writer.wait_closed()
    return tally


def _frame_id(frame: bytes) -> int:
    rid = _FRAME_ID.decode(frame[4:]).id
    if not isinstance(rid, int):
        raise ValueError("a prepared frame needs an int id (see encode_batches)")
    return rid


class _Id(msgspec.Struct):
    id: Any = None


_FRAME_ID = msgspec.msgpack.Decoder(_Id)


def _count(answer: _BatchAnswer, rid: int, tally: Tally) -> None:
    if answer.id != rid:
        raise RemoteError("internal", f"answer to request {answer.id!r} where {rid} was due")
    if not answer.ok:
        err = answer.error or _Error()
        tally.failed_batches += 1
        tally.first_error = tally.first_error or f"{err.code}: {err.message}"
        return
    for item in answer.results:
        if item.error is not None:
            tally.refused += 1
            tally.first_error = tally.first_error or f"{item.error.code}: {item.error.message}"
        elif item.seq is None:
            raise RemoteError("internal", "a batch answer's item has neither seq nor error")
        else:
            tally.acked += 1
            if item.duplicate:
                tally.duplicates += 1
