"""Real local servers for channel tests: an HTTP recorder and an aiosmtpd mailbox."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

HANG = 5.0  # the slow handler's bound; far above every channel timeout used here


# ---------------------------------------------------------------------------- HTTP server


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.flaky_seen = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        pass  # the hanging handler's client is gone by the time it answers


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, format, *args) -> None:
        pass

    def handle_any(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "json": json.loads(raw) if raw else None,
                }
            )
        path = self.path
        if path == "/slow":
            self.server.release.wait(HANG)
            self.answer(200)
        elif path == "/flaky":
            with self.server.lock:
                self.server.flaky_seen += 1
                first = self.server.flaky_seen == 1
            self.answer(500, "try later") if first else self.answer(200)
        elif path.startswith("/status/"):
            self.answer(int(path.rsplit("/", 1)[1]), "x" * 1000)
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.answer(200, '{"ok": true}')

    do_GET = do_POST = do_PUT = do_PATCH = handle_any

    def answer(self, code: int, text: str = "") -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def http_server() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------- SMTP server


class Mailbox:
    """aiosmtpd handler: keeps envelopes; refuses some recipients."""

    def __init__(self) -> None:
        self.envelopes: list = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 no such user"
        if address.startswith("full@"):
            return "451 4.2.2 mailbox full, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


class PortZeroController(Controller):
    """Binds port 0; learns the real port before aiosmtpd's start-up probe connects to it."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp_server():
    started: list[Controller] = []

    def start(**kw) -> tuple[Mailbox, Controller]:
        box = Mailbox()
        ctl = PortZeroController(box, hostname="127.0.0.1", port=0, ready_timeout=5.0, **kw)
        ctl.start()
        started.append(ctl)
        return box, ctl

    yield start
    for ctl in started:
        ctl.stop()
