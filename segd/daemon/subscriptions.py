"""Live transition streams for ``subscribe`` connections.

Each subscriber has a bounded queue of encoded frames. Publishing never waits: a
subscriber whose queue is full has stopped keeping up, and is disconnected (and the log
says so), so a slow or stuck subscriber can never slow ingestion or other subscribers.
"""

from __future__ import annotations

import asyncio

import structlog

from actors.records import Transition
from segd.daemon import flow
from segd.wire import protocol

log = structlog.get_logger("segd.daemon.subscriptions")

QUEUE_FRAMES = 10_000  # frames a subscriber may fall behind before it is dropped


class Subscriber:
    """One subscribe connection: a filter and a queue; ``run`` writes the stream."""

    def __init__(self, segments: frozenset[str] | None, peer: str, hub: Hub) -> None:
        self.segments = segments  # None: every segment
        self.peer = peer
        self.hub = hub
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_FRAMES)
        self.writer: asyncio.StreamWriter | None = None

    async def run(self, writer: asyncio.StreamWriter) -> None:
        """Write frames until dropped or the peer goes away (the server cancels us then)."""
        self.writer = writer
        try:
            while (frame := await self.queue.get()) is not None:
                # a peer that stops reading backs up into our bounded queue (see flow)
                await flow.write(writer, frame, more=not self.queue.empty())
        finally:
            self.hub.remove(self)

    def drop(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


class Hub:
    """All current subscribers."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.dropped = 0

    def add(self, segments: list[str] | str, peer: str) -> Subscriber:
        sub = Subscriber(None if segments == "*" else frozenset(segments), peer, self)
        self.subscribers.add(sub)
        log.info("subscriber_added", peer=peer, segments=segments, subscribers=len(self.subscribers))
        return sub

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, transitions: list[Transition]) -> None:
        """Queue each transition for every subscriber whose filter takes it."""
        if not self.subscribers:
            return
        frames = [(t.segment, protocol.encode({"transition": t.to_map()})) for t in transitions]
        for sub in list(self.subscribers):
            try:
                for segment, frame in frames:
                    if sub.segments is None or segment in sub.segments:
                        sub.queue.put_nowait(frame)
            except asyncio.QueueFull:
                self.subscribers.discard(sub)
                self.dropped += 1
                log.warning(
                    "subscriber_dropped", peer=sub.peer, reason="not reading fast enough", queued=QUEUE_FRAMES
                )
                sub.drop()
