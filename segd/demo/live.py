"""``segd demo``: the default config on a temporary data dir, a live shop workload, a live view.

Starts a real daemon (local Ray, real socket, real SQLite files) with the campaigns of the
given config, streams ``segd.demo.workload`` traffic at a steady rate and shows, refreshed twice a
second: events/s, lag, segment sizes and how they move, the latest transitions and the
latest messages delivered. ``seconds`` stops it by itself and prints a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import tempfile
import time
import tomllib
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from segd.config import Config, parse_config
from segd.daemon.lifecycle import Daemon
from segd.demo.workload import stream, workload
from segd.wire.client import AsyncClient


def demo_config(path: Path, data: Path, ray_address: str | None = None) -> Config:
    """``path``'s config moved onto ``data``: the data dir, the socket and every file
    channel's path live there, so the demo touches nothing else. HTTP is on at a free
    loopback port with a fresh write key (SPEC section 8: ``segd demo`` turns it on)."""
    raw = tomllib.loads(path.read_text())
    daemon = raw.setdefault("daemon", {})
    daemon.update({"data_dir": str(data), "socket": str(data / "segd.sock"), "tcp": "", "metrics": ""})
    raw["http"] = {"listen": "127.0.0.1:0", "write_keys": [f"demo-{secrets.token_hex(8)}"], "token": ""}
    for name, ch in raw.get("channels", {}).items():
        if isinstance(ch, dict) and ch.get("kind") == "file":
            ch["path"] = str(data / f"{name}.jsonl")
    if ray_address is not None:
        raw.setdefault("ray", {})["address"] = ray_address
    return parse_config(raw, label=str(path), base=path.parent)


class View:
    """What the live view shows, updated from ``stats``, a subscription and the channel files."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stats: dict[str, Any] = {}
        self.previous: dict[str, int] = {}
        self.rate = 0.0
        self.transitions: deque[dict[str, Any]] = deque(maxlen=8)
        self.messages: deque[dict[str, Any]] = deque(maxlen=6)
        self._last = (0, time.monotonic())
        self._offsets: dict[Path, int] = {}

    def update(self, stats: dict[str, Any]) -> None:
        """Take a fresh ``stats`` answer (events/s is measured against the previous one) and
        read the messages the file channels appended since the last call."""
        events, at = stats["events"], time.monotonic()
        self.rate = (events - self._last[0]) / max(at - self._last[1], 1e-6)
        self._last = (events, at)
        self.previous = self.stats.get("segments", {})
        self.stats = stats
        for ch in self.config.channels:
            if ch.kind == "file" and ch.path is not None and ch.path.exists():
                with open(ch.path, encoding="utf-8") as fh:
                    fh.seek(self._offsets.get(ch.path, 0))
                    for line in fh:
                        with contextlib.suppress(ValueError):
                            self.messages.append(json.loads(line))
                    self._offsets[ch.path] = fh.tell()

    def render(self) -> Group:
        """The view as it stands; a "starting" line until the first ``update``."""
        s = self.stats
        if not s:
            return Group("starting segd (local Ray, temporary data dir)...")
        head = Table.grid(padding=(0, 3))
        m = s["messages"]
        head.add_row(
            f"[bold]{self.rate:,.0f}[/] events/s",
            f"events {s['events']:,}",
            f"users {s['users']:,}",
            f"lag {s['lag']:,}",
            f"transitions {s['transitions']:,}",
        )
        head.add_row(
            f"messages sent [green]{m['sent']:,}[/]",
            f"deferred {m['deferred']:,}",
            f"suppressed {sum(m['suppressed'].values()):,}",
            f"holdout {m['holdout']:,}",
            f"dead {m['failed']['dead_letter']:,}",
        )
        segs = Table(title="segments", expand=True)
        segs.add_column("segment")
        segs.add_column("size", justify="right")
        segs.add_column("change", justify="right")
        for name, size in sorted(s["segments"].items()):
            delta = size - self.previous.get(name, size)
            segs.add_row(
                name, f"{size:,}", f"[green]+{delta}[/]" if delta > 0 else f"[red]{delta}[/]" if delta else ""
            )
        trans = Table(title="latest transitions", expand=True)
        for col in ("kind", "segment", "user"):
            trans.add_column(col)
        for t in self.transitions:
            trans.add_row(
                "[green]enter[/]" if t["kind"] == "enter" else "[red]exit[/]", t["segment"], t["user"]
            )
        msgs = Table(title="latest messages", expand=True)
        for col in ("campaign", "user", "body"):
            msgs.add_column(col, overflow="ellipsis", no_wrap=True)
        for msg in self.messages:
            msgs.add_row(msg["campaign"], msg["user"], msg["body"])
        return Group(Panel(head, title="segd demo"), segs, trans, msgs)


async def run_demo(
    config_path: Path,
    *,
    seconds: float | None,
    rate: float,
    users: int,
    ray_address: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the demo; returns the summary (the last ``stats`` plus what was streamed)."""
    console = console or Console()
    data = Path(tempfile.mkdtemp(prefix="segd-demo-"))
    config = demo_config(config_path, data, ray_address)
    view = View(config)
    try:
        async with Daemon(config) as daemon:
            if daemon.http is not None:
                console.print(
                    f"segd console: [bold]{daemon.http.url}/[/] (JSON API under /api/, Segment-compatible "
                    f"ingest at /v1/batch with write key [bold]{config.http.write_keys[0]}[/])",
                    soft_wrap=True,
                )
            client = await AsyncClient.connect(config.daemon.socket)
            sub = await AsyncClient.connect(config.daemon.socket)
            total = int(rate * seconds) if seconds else 10**9
            feeder = asyncio.create_task(
                stream(config.daemon.socket, workload(7, users, total), connections=2, rate=rate)
            )
            follower = asyncio.create_task(_follow(sub, view))
            stop = time.monotonic() + seconds if seconds else float("inf")
            try:
                with Live(view.render(), console=console, refresh_per_second=4, transient=False) as live:
                    while time.monotonic() < stop and not feeder.done():
                        view.update(await client.stats())
                        live.update(view.render())
                        await asyncio.sleep(0.5)
            finally:
                feeder.cancel()
                follower.cancel()
                for task in (feeder, follower):
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await client.sync()
            await asyncio.sleep(1.0)  # let the channel workers deliver what just became due
            view.update(await client.stats())
            summary = {k: view.stats[k] for k in ("events", "users", "transitions", "segments", "messages")}
            summary["campaigns"] = (await client.campaigns())["campaigns"]
            await client.close()
            await sub.close()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return summary


async def _follow(sub: AsyncClient, view: View) -> None:
    async for t in sub.subscribe("*"):
        view.transitions.append(t)
