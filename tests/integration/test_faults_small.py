"""The smaller findings of issue 16: the Unix socket's listen backlog, and what a ``segd run``
prints at start-up to a stderr that is not a terminal (Ray's internal warnings)."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket

from segd.wire import protocol
from tests.faults import Daemon, fault_config

BURST = 1000
OURS = re.compile(r"^(\x1b\[\d+m)?(\(\w+ pid=\d+\))?(\x1b\[0m)? ?\{")


def _read_frame(s: socket.socket) -> dict:
    dec = protocol.FrameDecoder(1 << 20)
    while True:
        data = s.recv(65536)
        assert data, "the daemon closed a burst connection without answering"
        items = dec.feed(data)
        if items:
            return items[0]


def test_a_burst_of_a_thousand_connects_is_queued_and_served(tmp_path):
    d = Daemon(fault_config(tmp_path, own_ray=False))
    socks: list[socket.socket] = []
    try:
        d.wait_ready()
        # Stop the daemon so that it accepts nothing during the burst: every connect must
        # wait in the listen backlog, which asyncio used to reset to 100.
        os.kill(d.pid, signal.SIGSTOP)
        refused = 0
        try:
            for _ in range(BURST):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                code = s.connect_ex(str(d.socket))
                if code == 0:
                    socks.append(s)
                else:
                    assert code in (errno.EAGAIN, errno.ECONNREFUSED), os.strerror(code)
                    refused += 1
                    s.close()
        finally:
            os.kill(d.pid, signal.SIGCONT)
        assert refused == 0, f"{refused} of {BURST} connects refused: the backlog is too short"
        for k, s in enumerate(socks):
            s.setblocking(True)
            s.settimeout(30)
            s.sendall(protocol.encode({"op": "ping", "id": k}))
        answers = [_read_frame(s) for s in socks]
        assert [(a["id"], a["ok"]) for a in answers] == [(k, True) for k in range(BURST)]
    finally:
        for s in socks:
            s.close()
        d.stop_now()


def test_segd_run_prints_only_its_own_lines_at_start_up(tmp_path):
    d = Daemon(fault_config(tmp_path))  # its own local Ray: what a newcomer's `segd run` does
    try:
        d.wait_ready()
        d.terminate()
    finally:
        d.stop_now()
    text = d.log.read_text(errors="replace")
    # A worker's lines (segd's structlog too) come prefixed by Ray: "(UserShard pid=N) {...}".
    foreign = [line for line in text.splitlines() if line and not OURS.match(line)]
    assert foreign == [], "lines not from segd's structlog:\n" + "\n".join(foreign)
    for quiet in ("SIGTERM handler is not set", "Token authentication is enabled", "constructor arguments"):
        assert quiet not in text


def _taken_port() -> tuple[socket.socket, int]:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    return busy, busy.getsockname()[1]


def _start_on_a_taken_port(tmp_path, section: str, key: str) -> tuple[int, str]:
    busy, port = _taken_port()
    cfg = fault_config(tmp_path, own_ray=False)
    text = cfg.read_text()
    if section == "daemon":
        text = text.replace("[daemon]\n", f'[daemon]\n{key} = "127.0.0.1:{port}"\ntoken = "t"\n', 1)
    else:
        text += f'\n[http]\n{key} = "127.0.0.1:{port}"\n'
    cfg.write_text(text)
    try:
        d = Daemon(cfg)
        code = d.exit_code()
    finally:
        busy.close()
    return code, d.tail()


def test_an_http_listen_address_in_use_exits_3_naming_the_key(tmp_path):
    code, tail = _start_on_a_taken_port(tmp_path, "http", "listen")
    assert code == 3, tail
    assert "[http] listen = '127.0.0.1:" in tail and "cannot listen there" in tail
    assert "Traceback" not in tail


def test_a_tcp_address_in_use_exits_3_naming_the_key(tmp_path):
    code, tail = _start_on_a_taken_port(tmp_path, "daemon", "tcp")
    assert code == 3, tail
    assert "[daemon] tcp = '127.0.0.1:" in tail and "cannot listen there" in tail
    assert "Traceback" not in tail
