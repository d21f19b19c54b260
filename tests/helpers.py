"""Test helpers shared by unit and integration tests: configs on temp dirs, daemons."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from segd.config import Config, load_config

T = TypeVar("T")


#: An event-clock daemon with three aggregates (a 7-day count of electronics views, a sum of
#: purchase prices, the last time seen): the query and runtime tests add their segments to it.
WINDOWED_AGGREGATES = """
[daemon]
clock = "event"

[aggregates.views_electronics_7d]
kind = "count"
event = "view"
where = "props.category == 'electronics'"
within = "7d"

[aggregates.spend]
kind = "sum"
event = "purchase"
of = "props.price"

[aggregates.last_seen]
kind = "last_time"
event = "*"
"""


#: An event-clock daemon with one aggregate, views in the last three days: the CLI tests add
#: a segment over it.
VIEWS_3D = """
[daemon]
clock = "event"

[aggregates.views_3d]
kind = "count"
event = "view"
within = "3d"
"""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.05,
    what: str | Callable[[], str] = "the condition",
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value; return
    that value. After ``timeout`` seconds raise AssertionError naming ``what`` and the timeout
    (``what`` may be a callable, called only then, to show state such as a log's tail).

    For conditions the ``sync`` op cannot cover: a delivery by a channel, a subscriber's
    frames, a log line. Exceptions from ``predicate`` propagate: a failing probe is a bug,
    not a "not yet". From asyncio code whose own loop must keep running (a subscriber
    reading on it), call it as ``await asyncio.to_thread(wait_until, ...)``.
    """
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what() if callable(what) else what}"
            )
        time.sleep(interval)


def one_shard() -> str:
    """A ``[ray]`` table joining the test session's Ray with one shard: protocol tests need
    no more, and each Ray actor costs a worker process start."""
    return f'[ray]\naddress = "{os.environ["SEGD_TEST_RAY_ADDRESS"]}"\nshards = 1\n'


def write_config(tmp_path: Path, body: str = "", *, daemon: str = "") -> Path:
    """A config file under tmp_path with data_dir and socket inside it.

    The socket path is kept short: Unix socket paths are limited to ~100 bytes.
    """
    sock_dir = Path(os.environ.get("SEGD_TEST_SOCK_DIR", "/tmp"))
    sock = sock_dir / f"segd-test-{os.getpid()}-{abs(hash(str(tmp_path))) % 10**8}.sock"
    path = tmp_path / "config.toml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    body = textwrap.dedent(body)
    # Subprocess daemons join the test session's Ray instead of starting one each.
    ray_table = (
        "" if "[ray]" in body else f'[ray]\naddress = "{os.environ.get("SEGD_TEST_RAY_ADDRESS", "")}"\n'
    )
    path.write_text(
        f'[daemon]\ndata_dir = "{tmp_path / "data"}"\nsocket = "{sock}"\n'
        + textwrap.dedent(daemon)
        + "\n"
        + ray_table
        + body
    )
    return path


def split_daemon(config: str) -> tuple[str, str]:
    """A config text whose first table is ``[daemon]`` -> (the rest, the daemon keys), the
    two arguments ``write_config`` and ``daemon_factory`` take (they add data_dir and socket)."""
    _, _, rest = config.partition("[daemon]\n")
    keys, _, tail = rest.partition("\n\n")
    return tail, keys


def make_config(tmp_path: Path, body: str = "", *, daemon: str = "") -> Config:
    return load_config(write_config(tmp_path, body, daemon=daemon))


class DaemonThread:
    """A real daemon serving on its own event loop in a background thread."""

    def __init__(self, config: Config) -> None:
        from segd.daemon.lifecycle import Daemon

        self.config = config
        self.daemon = Daemon(config)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True, name="segd-test-daemon")

    @property
    def socket(self) -> Path:
        return self.config.daemon.socket

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.daemon.start())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> DaemonThread:
        self.thread.start()
        if not self._ready.wait(120):
            raise TimeoutError("daemon did not start in 120 s")
        if self._error is not None:
            raise self._error
        return self

    def run(self, coro, timeout: float = 60):
        """Run a coroutine on the daemon's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        self.run(self.daemon.stop(), timeout=120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def start_subprocess_daemon(config_path: Path, socket: Path, *, timeout: float = 120) -> subprocess.Popen:
    """``segd run`` as a child process; returns once its socket answers a ping."""
    from segd.errors import ConnectError
    from segd.wire.client import Client

    with open(config_path.parent / "daemon.log", "ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "segd", "run", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(
                f"daemon exited with {proc.returncode}: "
                + (config_path.parent / "daemon.log").read_text()[-3000:]
            )
        try:
            with Client(socket, timeout=5) as c:
                c.ping()
        except ConnectError:
            return False
        return True

    try:
        wait_until(answers, timeout, what=f"the daemon to answer a ping on {socket}")
    except AssertionError:
        proc.kill()
        raise
    return proc
