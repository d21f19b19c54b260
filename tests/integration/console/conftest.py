"""The console in a real browser: Debian's chromium driven by Playwright, against a real daemon
(the default shop config, local Ray, real sockets and SQLite) fed ``segd.demo.workload``.

- ``shop``: one daemon for the package, with HTTP on a free loopback port, fed two phases
  of the workload with a known time (``shop.mid``) between them;
- ``browser``: chromium launched once, headless, sandbox-less (we run as root), with
  background networking off so the browser itself calls no one;
- ``console``: a fresh browser context per test (1280x800, UTC, en-US, reduced motion so
  charts draw at once) whose ``Guard`` fails the test on any page error, any console error
  and any request to a host that is not loopback (the request is aborted, never sent).

Screenshots go to ``$SEGD_TEST_OUTPUT/console/`` (default ``test-output/console/`` in the
repository, ignored by git).
"""

from __future__ import annotations

import json
import math
import os
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page, Route, sync_playwright

from segd.config import Config, parse_config
from segd.demo.workload import stream, workload
from segd.wire.client import Client
from tests.helpers import DaemonThread, wait_until

ROOT = Path(__file__).resolve().parents[3]
OUTPUT = Path(os.environ.get("SEGD_TEST_OUTPUT", ROOT / "test-output")) / "console"
CHROMIUM = os.environ.get("SEGD_CHROMIUM", "/usr/bin/chromium")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: Headless as root needs --no-sandbox; the rest keep chromium from calling home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-sync",
    "--no-first-run",
    "--no-pings",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PAGES = {
    "segments": "segments",
    "segment": "segment/new_visitor",
    "campaigns": "campaigns",
    "user": "user/{user}",
    "rules": "rules?when=views_7d%20%3E%3D%203",
    "health": "health",
}


def shop_config(tmp: Path, **http: Any) -> Config:
    """The repository's config.toml (the shop) on ``tmp``, one shard on the session's Ray,
    HTTP on a free loopback port with ``http`` added to the table."""
    raw = tomllib.loads((ROOT / "config.toml").read_text())
    sock = Path("/tmp") / f"segd-console-{os.getpid()}-{abs(hash(str(tmp))) % 10**8}.sock"
    raw["daemon"].update(data_dir=str(tmp / "data"), socket=str(sock), tcp="", metrics="")
    raw["ray"] = {"address": os.environ["SEGD_TEST_RAY_ADDRESS"], "shards": 1}
    raw["http"] = {"listen": "127.0.0.1:0", **http}
    for name, ch in raw.get("channels", {}).items():
        if ch.get("kind") == "file":
            ch["path"] = str(tmp / f"{name}.jsonl")
    return parse_config(raw, label=str(ROOT / "config.toml"), base=ROOT)


@dataclass
class Shop:
    """A running shop daemon and how to reach it."""

    daemon: DaemonThread
    mid: int = 0  # a whole second after the first phase's last transition, before the second's
    user: str = ""  # a customer: a user with traits, aggregates, segments and history

    def route(self, name: str) -> str:
        """The console route of page ``name`` of ``PAGES`` on this shop."""
        return PAGES[name].format(user=self.user)

    @property
    def url(self) -> str:
        http = self.daemon.daemon.http
        assert http is not None, "the daemon has no HTTP face"
        return http.url

    def api(self, path: str, body: Any = None, token: str | None = None) -> Any:
        """The JSON API answer for ``path`` (POST when ``body`` is given); HTTPError on 4xx/5xx."""
        req = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {token}"} if token else {}),
            },
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def api_error(self, path: str, body: Any = None) -> dict[str, Any]:
        """The JSON error answer for a request that must fail."""
        try:
            self.api(path, body)
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())
        raise AssertionError(f"{path} did not fail")

    def client(self) -> Client:
        return Client(self.daemon.socket)

    def feed(self, seed: int, users: int, events: int) -> None:
        """Send ``events`` workload items (live: no ``ts``) and wait until they are applied."""
        # on the daemon's loop: this thread's loop belongs to Playwright once a browser is up
        self.daemon.run(stream(self.daemon.socket, workload(seed, users, events), connections=2), timeout=120)
        with self.client() as c:
            c.sync()


@pytest.fixture(scope="package")
def shop(tmp_path_factory) -> Iterator[Shop]:
    d = DaemonThread(shop_config(tmp_path_factory.mktemp("shop"))).start()
    shop = Shop(d)
    try:
        shop.feed(seed=15, users=300, events=3000)
        with shop.client() as c:
            shop.mid = math.floor(c.stats()["clock"]) + 1
        # the second phase must start after `mid`, so membership at `mid` is the first phase's
        wait_until(lambda: time.time() > shop.mid + 0.05, 5, what="the wall clock to pass shop.mid")
        shop.feed(seed=16, users=400, events=2000)
        with shop.client() as c:
            shop.user = c.segment("customer", limit=1)["members"][0]
        yield shop
    finally:
        d.stop()


TOKEN = "console-test-token"


@pytest.fixture(scope="package")
def locked(tmp_path_factory) -> Iterator[Shop]:
    """A shop daemon (no events) whose JSON API needs ``TOKEN``."""
    d = DaemonThread(shop_config(tmp_path_factory.mktemp("locked"), token=TOKEN)).start()
    try:
        yield Shop(d)
    finally:
        d.stop()


@pytest.fixture(scope="package")  # not session: Playwright's sync API keeps an asyncio loop
def browser() -> Iterator[Browser]:  # running in the main thread while open, which breaks later asyncio tests
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@dataclass
class Guard:
    """What a browser context did that a console must never do."""

    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    #: URL parts whose error answers the test expects (chromium logs every 4xx as a console
    #: error: a user never seen is a 404, a broken expression a 400); any other error counts.
    expected: list[str] = field(default_factory=list)

    def expect(self, url_part: str) -> None:
        """Let error answers from URLs containing ``url_part`` pass (they are the test's point)."""
        self.expected.append(url_part)

    def watch(self, context: BrowserContext) -> None:
        context.route("**/*", self._route)
        context.on("page", self.watch_page)

    def watch_page(self, page: Page) -> None:
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", self._console)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        url = msg.location.get("url", "")
        if msg.text.startswith("Failed to load resource") and any(p in url for p in self.expected):
            return
        self.errors.append(f"console error: {msg.text} at {url}")

    def _route(self, route: Route) -> None:
        url = route.request.url
        self.requests.append(url)
        if urlsplit(url).hostname not in LOOPBACK:
            self.outside.append(url)
            route.abort("blockedbyclient")
        else:
            route.continue_()

    def check(self) -> None:
        assert self.outside == [], f"requests left segd: {self.outside}"
        assert self.errors == [], "\n".join(self.errors)


@dataclass
class Console:
    """One browser tab on a daemon's console, guarded."""

    page: Page
    guard: Guard
    base: str

    def open(self, route: str, *, page: str | None = None) -> Page:
        """Go to ``#/route`` and wait until its page has rendered (``main`` not busy)."""
        name = page or route.split("/")[0].split("?")[0]
        self.page.goto(f"{self.base}/#/{route}")
        self.page.wait_for_selector(f'main[data-page="{name}"]:not([aria-busy])', timeout=15000)
        return self.page

    def shot(self, name: str) -> Path:
        """A full-page PNG of the tab as it is, in the output folder."""
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def new_console(
    browser: Browser, base: str, viewport: dict[str, int] = DESKTOP
) -> tuple[BrowserContext, Console]:
    context = browser.new_context(
        viewport=viewport, timezone_id="UTC", locale="en-US", reduced_motion="reduce", service_workers="block"
    )
    guard = Guard()
    guard.watch(context)
    page = context.new_page()
    return context, Console(page, guard, base)


@pytest.fixture
def console(browser: Browser, shop: Shop) -> Iterator[Console]:
    """A guarded tab on the shop's console; the guard is checked after the test."""
    context, con = new_console(browser, shop.url)
    try:
        yield con
        con.guard.check()
    finally:
        try:
            context.close()
        except Error:
            pass


def number(text: str) -> int:
    """A count as the console prints it: 1,234 / +12 / −3 (a real minus sign)."""
    t = text.strip().replace(",", "").replace("−", "-").replace("+", "")
    return int(t)
