"""Helpers for the HTTP face's tests: a real daemon with [http] on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import requests

from segd.wire.client import AsyncClient, Client
from tests.helpers import DaemonThread, make_config, start_subprocess_daemon, wait_until, write_config

WRITE_KEY = "test-write-key"

#: A model that shows each Segment call type in a user's aggregates.
MODEL = """
[aggregates.views]
kind = "count"
event = "view"

[aggregates.last_price]
kind = "last"
event = "view"
of = "props.price"

[aggregates.pages]
kind = "count"
event = "page"

[aggregates.last_page]
kind = "last"
event = "page"
of = "props.name"

[aggregates.screens]
kind = "count"
event = "screen"

[aggregates.aliases]
kind = "last"
event = "alias"
of = "props.previous_id"

[segments.viewers]
when = "views >= 2"

[segments.in_group]
when = "traits.group_id == 'acme'"
"""


def http_config_text(*, write_keys: tuple[str, ...] = (WRITE_KEY,), token: str = "", extra: str = "") -> str:
    keys = ", ".join(f'"{k}"' for k in write_keys)
    return (
        f'[http]\nlisten = "127.0.0.1:0"\nwrite_keys = [{keys}]\ntoken = "{token}"\n{extra}\n'
        f'[ray]\naddress = "{os.environ["SEGD_TEST_RAY_ADDRESS"]}"\nshards = 1\n'
    )


def start_http_daemon(
    tmp_path: Path, *, model: str = MODEL, daemon: str = "", **http: Any
) -> tuple[DaemonThread, str]:
    """A real daemon (own loop thread) with HTTP on; returns it and its base URL."""
    d = DaemonThread(make_config(tmp_path, http_config_text(**http) + model, daemon=daemon)).start()
    assert d.daemon.http is not None
    return d, d.daemon.http.url


def log_rows(d: DaemonThread) -> list[dict[str, Any]]:
    """Every row of the daemon's event log, read from the SQLite file as any tool would."""
    with sqlite3.connect(d.config.daemon.data_dir / "events.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM events ORDER BY seq").fetchall()
    out = []
    for r in rows:
        row = dict(r)
        for key in ("props", "traits", "context"):
            if row.get(key) is not None:
                row[key] = msgpack.unpackb(row[key], raw=False)
        out.append(row)
    return out


def log_count(d: DaemonThread) -> int:
    with sqlite3.connect(d.config.daemon.data_dir / "events.db") as db:
        (n,) = db.execute("SELECT count(*) FROM events").fetchone()
    return int(n)


class CommitGate:
    """Holds the daemon's committer between two commits (its ``exclusive``), so submits pile up
    as pending: the real back-pressure of a disk that does not keep up."""

    def __init__(self, d: DaemonThread) -> None:
        self.d = d
        self.held = d.run(self._make_event())
        self.entered = d.run(self._make_event())
        self.future = asyncio.run_coroutine_threadsafe(self._hold(), d.loop)
        self.d.run(asyncio.wait_for(self.entered.wait(), 10))

    async def _make_event(self) -> asyncio.Event:
        return asyncio.Event()

    async def _hold(self) -> None:
        async def wait() -> None:
            self.entered.set()
            await self.held.wait()

        await self.d.daemon.committer.exclusive(wait)

    def release(self) -> None:
        self.d.loop.call_soon_threadsafe(self.held.set)
        self.future.result(10)


def fill_pending(d, n: int) -> threading.Thread:
    """Submit ``n`` events over the socket from a thread; they wait while the gate holds."""

    async def send() -> None:
        c = await AsyncClient.connect(d.socket)
        await c.send_events([{"type": "track", "user": f"filler{i}", "event": "view"} for i in range(n)])
        await c.close()

    thread = threading.Thread(target=asyncio.run, args=(send(),))
    thread.start()
    wait_until(lambda: d.daemon.committer.pending >= n, 10, what="the socket events to be pending")
    return thread


def free_port() -> int:
    """A loopback port free right now (for a child daemon, whose port 0 we could not learn)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_subprocess_http_daemon(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``segd run`` as a child process with HTTP on; returns it once /readyz answers, and its URL."""
    port = free_port()
    http = http_config_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"')
    config = write_config(tmp_path, http + MODEL)
    socket_path = next(
        line.split('"')[1] for line in config.read_text().splitlines() if line.startswith("socket")
    )
    proc = start_subprocess_daemon(config, Path(socket_path))
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/readyz", timeout=5).ok, 30, what="HTTP to answer")
    return proc, url


def served_with_client(tmp_path: Path) -> Iterator[tuple[DaemonThread, str, Client]]:
    """The body of a module fixture: an HTTP daemon (``start_http_daemon``), its URL and a
    socket client on it; the daemon is stopped when the fixture is torn down."""
    d, url = start_http_daemon(tmp_path)
    with Client(d.socket) as c:
        yield d, url, c
    d.stop()


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child daemon if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)


def logged_msg_ids(data_dir: Path) -> set[str]:
    """Every msg_id in the event log of ``data_dir``, read from the file after the daemon died."""
    with sqlite3.connect(data_dir / "events.db") as db:
        return {row[0] for row in db.execute("SELECT msg_id FROM events")}
