"""The bench's headline client (``encode_batches`` + ``send_prepared``): the same bytes on
the wire as ``AsyncClient.batch``, against a real daemon, every answer counted exactly."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from segd.wire import protocol
from segd.wire.client import AsyncClient, encode_batches, send_prepared

EVENTS = [
    {"type": "track", "user": f"u{i % 5}", "event": "view", "props": {"i": i}, "msg_id": f"m{i}"}
    for i in range(25)
] + [{"type": "identify", "user": "u1", "traits": {"plan": "pro"}, "msg_id": "t1"}]


def test_prepared_frames_are_the_bytes_the_async_client_writes(tmp_path):
    async def capture() -> bytes:
        got = bytearray()
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            want = sum(len(f) for f in encode_batches(EVENTS, 10))
            while len(got) < want and (data := await reader.read(1 << 16)):
                got.extend(data)
            done.set()
            writer.close()

        server = await asyncio.start_unix_server(serve, str(tmp_path / "s.sock"))
        async with server:
            client = await AsyncClient.connect(tmp_path / "s.sock")
            calls = [
                asyncio.ensure_future(client.batch(EVENTS[k : k + 10])) for k in range(0, len(EVENTS), 10)
            ]
            await asyncio.wait_for(done.wait(), 10)
            for c in calls:
                c.cancel()
            await client.close()
        return bytes(got)

    assert asyncio.run(capture()) == b"".join(encode_batches(EVENTS, 10))


def test_send_prepared_counts_acks_duplicates_and_refusals(daemon):
    frames = encode_batches(EVENTS, 7)
    first = asyncio.run(send_prepared(frames, daemon.socket, window=2))
    assert (first.acked, first.duplicates, first.refused, first.failed_batches) == (26, 0, 0, 0)
    again = asyncio.run(send_prepared(frames, daemon.socket, window=8))  # same msg_ids
    assert (again.acked, again.duplicates, again.refused) == (26, 26, 0)
    bad = [{"type": "track", "user": "a", "event": ""}, {"type": "track", "user": "a", "event": "v"}]
    mixed = asyncio.run(send_prepared(encode_batches(bad, 2), daemon.socket))
    assert (mixed.acked, mixed.refused) == (1, 1)
    assert mixed.first_error is not None and mixed.first_error.startswith("bad_request: 'events[0].event'")
    conn = sqlite3.connect(daemon.config.daemon.data_dir / "events.db")
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 27
    finally:
        conn.close()


def test_send_prepared_counts_a_refused_batch_and_needs_int_ids(daemon):
    refused = protocol.encode({"id": 1, "op": "batch", "events": "not a list"})
    tally = asyncio.run(send_prepared([refused, *encode_batches(EVENTS[:3], 3, first_id=2)], daemon.socket))
    assert (tally.acked, tally.failed_batches) == (3, 1)
    assert tally.first_error is not None and tally.first_error.startswith("bad_request")
    with pytest.raises(ValueError):
        asyncio.run(send_prepared([protocol.encode({"op": "batch", "events": []})], daemon.socket))
