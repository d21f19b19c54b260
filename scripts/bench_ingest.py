"""bench.py's socket clients: the headline prepared-frame ingest (also the scale-out runs')
and the ``AsyncClient`` flat-out sender of the ingest matrix."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from actors.placement import shard_of
from segd.wire.client import AsyncClient, encode_batches, send_prepared


def by_user(items: list[dict], connections: int) -> list[list[dict]]:
    """``items`` split over ``connections``, a user's always on the same one, in order
    (``shard_of``'s hash, as a fleet of producers keyed by user would split them)."""
    parts: list[list[dict]] = [[] for _ in range(connections)]
    for it in items:
        parts[shard_of(it["user"], connections)].append(it)
    return parts


async def send_and_sync(
    sock: Path, items: list[dict], args: argparse.Namespace, connections: int | None = None
) -> dict:
    """Flat-out ingest by prepared frames (``prepared_ingest``); returns ack and ack+apply
    (until sync) rates, the client's own CPU per event and the daemon's stats."""
    started = time.perf_counter()
    sent = await prepared_ingest(sock, items, connections or args.connections, args.batch, args.window)
    async with await AsyncClient.connect(sock) as c:
        await c.sync()
        applied = time.perf_counter() - started - sent["encode_seconds"]
        stats = await c.stats()
    return {
        **sent,
        "applied_seconds": applied,
        "applied_eps": sent["events"] / applied,
        "commits": stats["commits"],
        "commit_ms_avg": stats["commit_ms_avg"],
        "events_per_commit": sent["events"] / max(stats["commits"], 1),
        "users": stats["users"],
        "segments": stats["segments"],
    }


async def prepared_ingest(sock: Path, items: list[dict], connections: int, batch: int, window: int) -> dict:
    """The headline client: what ``stream`` sends flat out (a user's items on one connection,
    ``batch`` items per request, ``window`` in flight, the same frames byte for byte), but
    encoded before the clock starts (``encode_batches``, as a service encodes on its own
    machine) and answered through a typed decoder (``send_prepared``: every item checked for
    an error, acks counted exactly). ``client_cpu_us_per_event``: this thread's CPU (user +
    system: the asyncio loop is the whole client) from the first send to the last answer."""
    parts = by_user(items, connections)
    t0, c0 = time.perf_counter(), time.thread_time()
    frames = [encode_batches(part, batch) for part in parts]
    encode_seconds, encode_cpu = time.perf_counter() - t0, time.thread_time() - c0
    c0, t0 = time.thread_time(), time.perf_counter()
    tallies = await asyncio.gather(*(send_prepared(f, sock, window=window) for f in frames))
    seconds, client_cpu = time.perf_counter() - t0, time.thread_time() - c0
    acked = sum(t.acked for t in tallies)
    refused = sum(t.refused for t in tallies) + sum(t.failed_batches for t in tallies)
    if refused or acked != len(items):
        first = next((t.first_error for t in tallies if t.first_error), None)
        raise RuntimeError(f"ingest: {acked} of {len(items)} acknowledged, {refused} refused: {first}")
    return {
        "events": acked,
        "ack_seconds": seconds,
        "ack_eps": acked / seconds,
        "duplicates": sum(t.duplicates for t in tallies),
        "encode_seconds": encode_seconds,
        "encode_cpu_us_per_event": encode_cpu / acked * 1e6,
        "client_cpu_us_per_event": client_cpu / acked * 1e6,
    }


async def flat_out(
    sock: Path, items: list[dict], connections: int, batch: int, window: int
) -> tuple[int, float]:
    """Send ``items`` flat out over ``connections`` connections (a user's events always on
    the same one), each keeping ``window`` requests in flight: ``batch`` requests of
    ``batch`` items or, with ``batch`` 1, one ``track``/``identify`` request per event.
    Returns (events acknowledged, seconds from the first send to the last answer)."""
    parts = by_user(items, connections)
    clients = [await AsyncClient.connect(sock) for _ in range(connections)]

    async def one(client: AsyncClient, part: list[dict]) -> int:
        slots = asyncio.Semaphore(window)  # FIFO: requests go out in order

        async def request(chunk: list[dict]) -> int:
            async with slots:
                if batch == 1:
                    it = chunk[0]
                    await client.call(it["type"], **{k: v for k, v in it.items() if k != "type"})
                    return 1
                results = (await client.batch(chunk))["results"]
                if any("error" in r for r in results):
                    raise RuntimeError(f"ingest refused items: {[r for r in results if 'error' in r][:3]}")
                return len(results)

        return sum(await asyncio.gather(*(request(part[i : i + batch]) for i in range(0, len(part), batch))))

    started = time.perf_counter()
    try:
        acked = sum(await asyncio.gather(*(one(c, p) for c, p in zip(clients, parts, strict=True))))
    finally:
        seconds = time.perf_counter() - started
        for c in clients:
            await c.close()
    return acked, seconds
