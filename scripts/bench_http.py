"""The HTTP part of scripts/bench.py: Segment-compatible ingest on the same daemon, same run.

Two measures, each to the durable answer (HTTP 200 means in the log) on the daemon that
just measured socket ingest (its [http] turned on by ``enable``):

- the real segment-analytics-python SDK with its default batching (``upload_size`` 100,
  ``upload_interval`` 0.5 s, one upload thread, no gzip), from the first ``track`` /
  ``identify`` call to ``flush()`` returning (every batch answered 200);
- raw HTTP clients (``--connections`` of them, aiohttp) posting 500-message ``/v1/batch``
  bodies encoded beforehand, flat out.

Beside events/s it reports the daemon process's CPU-seconds per 1,000 events (utime + stime
of the ``segd run`` process from /proc, Ray workers excluded), the figure that stays
comparable on a shared machine, for the socket phase and for each HTTP phase.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

WRITE_KEY = "bench-write-key"
BATCH = 500


def enable(config: Path) -> str:
    """Append an [http] table (a free loopback port, one write key) to a bench config; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(config, "a", encoding="utf-8") as out:
        out.write(f'\n[http]\nlisten = "127.0.0.1:{port}"\nwrite_keys = ["{WRITE_KEY}"]\n')
    return f"http://127.0.0.1:{port}"


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of one process, in seconds (0.0 when unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def segment_message(item: dict[str, Any]) -> dict[str, Any]:
    """A workload item (socket ``batch`` form) as a Segment message."""
    if item["type"] == "identify":
        return {
            "type": "identify",
            "userId": item["user"],
            "traits": item["traits"],
            "messageId": item["msg_id"],
        }
    return {
        "type": "track",
        "userId": item["user"],
        "event": item["event"],
        "properties": item.get("props", {}),
        "messageId": item["msg_id"],
    }


def sdk_ingest(url: str, items: list[dict[str, Any]]) -> float:
    """segment-analytics-python with its defaults; returns seconds to the last 200."""
    from segment.analytics.client import Client as SegmentClient

    errors: list[Exception] = []
    client = SegmentClient(
        WRITE_KEY, host=url, on_error=lambda e, batch: errors.append(e), max_queue_size=len(items) + 1
    )
    started = time.perf_counter()
    for it in items:
        if it["type"] == "identify":
            client.identify(it["user"], it["traits"], message_id=it["msg_id"])
        else:
            client.track(it["user"], it["event"], it.get("props", {}), message_id=it["msg_id"])
    client.flush()
    seconds = time.perf_counter() - started
    client.join()
    if errors:
        raise RuntimeError(f"the SDK reported {len(errors)} failed uploads, first: {errors[0]}")
    return seconds


async def batch_ingest(url: str, items: list[dict[str, Any]], connections: int) -> float:
    """``connections`` clients posting 500-message batches; returns seconds to the last 200."""
    import aiohttp

    bodies = [
        json.dumps({"batch": [segment_message(it) for it in items[i : i + BATCH]]}).encode()
        for i in range(0, len(items), BATCH)
    ]
    queue = list(reversed(bodies))
    headers = {"Content-Type": "application/json", "X-Write-Key": WRITE_KEY}

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            async with session.post(f"{url}/v1/batch", data=body, headers=headers) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        return time.perf_counter() - started


def run(
    pid: int | None, url: str, sock: Path, items: list[dict[str, Any]], connections: int
) -> dict[str, Any]:
    """Both HTTP measures on the running daemon ``pid``; ``items`` are split between them
    (fresh msg_ids, so nothing is a duplicate). Events/s is to the last 200; the CPU figure
    runs until ``sync`` on ``sock`` (routing included), as the socket phase's does."""
    half = len(items) // 2
    sdk_items = [{**it, "msg_id": f"http-sdk-{i}"} for i, it in enumerate(items[:half])]
    raw_items = [{**it, "msg_id": f"http-raw-{i}"} for i, it in enumerate(items[half:])]
    out: dict[str, Any] = {}
    cpu = cpu_seconds(pid)
    seconds = sdk_ingest(url, sdk_items)
    _sync(sock)
    out["sdk"] = _result(len(sdk_items), seconds, cpu_seconds(pid) - cpu, "segment-analytics-python defaults")
    cpu = cpu_seconds(pid)
    seconds = asyncio.run(batch_ingest(url, raw_items, connections))
    _sync(sock)
    out["batch500"] = _result(len(raw_items), seconds, cpu_seconds(pid) - cpu, f"{connections} clients")
    return out


def _sync(sock: Path) -> None:
    from segd.wire.client import Client

    with Client(sock) as c:
        c.sync()


def _result(events: int, seconds: float, cpu: float, how: str) -> dict[str, Any]:
    return {
        "events": events,
        "seconds": seconds,
        "eps": events / seconds,
        "daemon_cpu_ms_per_1000": 1000 * cpu / events * 1000,
        "how": how,
    }
