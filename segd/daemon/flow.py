"""Writing to a socket with flow control, for answers and transition streams alike.

asyncio's write buffer is unbounded: a peer that stops reading would grow it without limit.
So a writer drains (waits for the socket) once the transport holds more than WRITE_BUFFER
bytes, or when it has nothing more queued; a slow peer then backs up into the caller's
bounded queue, and the caller decides what to do (stop reading requests, drop a subscriber).
"""

from __future__ import annotations

import asyncio

#: Bytes handed to the transport before a writer waits for the socket.
WRITE_BUFFER = 256 * 1024


async def write(writer: asyncio.StreamWriter, data: bytes, *, more: bool) -> None:
    """Write ``data``; wait for the socket if the buffer is full or nothing ``more`` is queued."""
    writer.write(data)
    if not more or writer.transport.get_write_buffer_size() > WRITE_BUFFER:
        await writer.drain()
