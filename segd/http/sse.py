"""``GET /api/subscribe`` as Server-Sent Events, on the socket's own subscription.

The ``subscribe`` op answers a stream that writes framed transitions to an
``asyncio.StreamWriter`` (``segd.daemon.subscriptions.Subscriber.run``), with the socket's
flow control: it drains once the transport buffers too much, and the hub drops a subscriber
that falls behind by aborting its transport. ``SseWriter`` stands in for that writer: it
turns each frame into one SSE event (``id`` the transition id, ``event: transition``,
``data`` the transition as JSON) and forwards drains and aborts to the HTTP response.
So an HTTP subscriber gets the same transitions, in the same order, with the same bound on
how far it may fall behind. A comment line every ``KEEPALIVE`` seconds finds dead clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec
from aiohttp import web

from segd.wire import protocol

KEEPALIVE = 15.0  # seconds between comment lines on an idle stream
_MAX_FRAME = 1 << 30  # frames come from our own hub; no limit is needed, only a bound


class SseWriter:
    """The parts of ``asyncio.StreamWriter`` a subscriber stream uses, writing SSE events.

    It is also its own ``transport`` (``get_write_buffer_size``, ``abort``)."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.transport = self
        self.aborted = asyncio.Event()  # the hub dropped this subscriber
        self._decoder = protocol.FrameDecoder(_MAX_FRAME)
        self._pending = bytearray()

    def write(self, data: bytes) -> None:
        """Take framed transitions; they are sent at the next ``drain``."""
        for item in self._decoder.feed(data):
            if isinstance(item, dict) and isinstance(item.get("transition"), dict):
                self._pending += event(item["transition"])

    async def drain(self) -> None:
        """Send what ``write`` took. Raises ConnectionResetError if the client is gone."""
        if self._pending:
            data, self._pending = bytes(self._pending), bytearray()
            await self.response.write(data)

    def get_write_buffer_size(self) -> int:
        """Bytes taken and not yet sent."""
        return len(self._pending)

    def abort(self) -> None:
        """The hub dropped this subscriber (it fell too far behind): end the stream."""
        self.aborted.set()


def event(transition: dict[str, Any]) -> bytes:
    """One SSE event for a transition map (SPEC section 2)."""
    return b"id: %s\nevent: transition\ndata: %s\n\n" % (
        str(transition.get("id", "")).encode(),
        msgspec.json.encode(transition),
    )


async def serve(request: web.Request, stream: object, closing: asyncio.Event) -> web.StreamResponse:
    """Answer ``request`` with the event stream of ``stream`` (the ``subscribe`` op's answer:
    ``.run(writer)``) until the client leaves, the hub drops it, or ``closing`` is set."""
    run = cast(Callable[[Any], Awaitable[None]], getattr(stream, "run"))  # noqa: B009
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # proxies must not buffer a live stream
        }
    )
    await response.prepare(request)
    await response.write(b": subscribed\n\n")
    writer = SseWriter(response)
    streaming = asyncio.ensure_future(run(writer))
    stops = [asyncio.ensure_future(writer.aborted.wait()), asyncio.ensure_future(closing.wait())]
    try:
        while True:
            done, _ = await asyncio.wait(
                {streaming, *stops}, timeout=KEEPALIVE, return_when="FIRST_COMPLETED"
            )
            if done:
                break
            await response.write(b": keepalive\n\n")
    except ConnectionError:
        pass  # the client left
    finally:
        for task in (streaming, *stops):
            task.cancel()
        for task in (streaming, *stops):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return response
