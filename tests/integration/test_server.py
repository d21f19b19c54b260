"""The socket protocol against a real daemon: framing, every error code, pipelining, load."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import stat
import threading

import msgpack
import pytest

from segd.errors import ConnectError, RemoteError
from segd.wire import protocol
from segd.wire.client import AsyncClient, Client
from tests.helpers import DaemonThread, make_config, one_shard


def raw_socket(d) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(str(d.socket))
    return s


def read_frames(s: socket.socket, n: int) -> list:
    dec = protocol.FrameDecoder(1 << 20)
    out: list = []
    while len(out) < n:
        data = s.recv(65536)
        if not data:
            break
        out += dec.feed(data)
    return out


def logged(d) -> list[tuple]:
    conn = sqlite3.connect(d.config.daemon.data_dir / "events.db")
    try:
        return conn.execute("SELECT seq, user, type, event, msg_id FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def idle(tmp_path_factory, ray_session):
    """One daemon for the module's tests that log nothing (a ping, the socket's mode, errors
    that keep the connection): each daemon costs Ray actor starts, and these cannot disturb
    one another. Tests that count seqs or events get a fresh ``daemon`` each."""
    d = DaemonThread(make_config(tmp_path_factory.mktemp("idle"), one_shard())).start()
    yield d
    d.stop()


def test_ping_reports_version_and_clock(idle):
    with Client(idle.socket) as c:
        r = c.ping()
    assert r["version"] and r["time"] > 1e9 and r["clock"] >= r["time"] - 1


def test_socket_file_is_private(idle):
    assert stat.S_IMODE(idle.socket.stat().st_mode) == 0o600


def test_track_and_identify_are_logged_with_seq(daemon):
    with Client(daemon.socket) as c:
        assert c.track("alice", "view", {"category": "electronics"}) == {"seq": 1}
        assert c.identify("alice", {"first_name": "Alice", "old": None}) == {"seq": 2}
    assert logged(daemon) == [(1, "alice", "track", "view", None), (2, "alice", "identify", None, None)]


def test_duplicate_msg_id_answers_the_original_seq_and_logs_nothing(daemon):
    with Client(daemon.socket) as c:
        assert c.track("a", "view", msg_id="m1") == {"seq": 1}
        assert c.track("a", "view") == {"seq": 2}
        assert c.track("a", "view", msg_id="m1") == {"seq": 1, "duplicate": True}
    assert len(logged(daemon)) == 2


def test_batch_logs_valid_items_even_when_others_are_invalid(daemon):
    with Client(daemon.socket) as c:
        r = c.batch(
            [
                {"type": "track", "user": "a", "event": "view"},
                {"type": "track", "user": "a", "event": ""},
                {"type": "identify", "user": "b", "traits": {"x": 1}},
                {"type": "track", "user": "a", "event": "view", "msg_id": "k"},
                {"type": "track", "user": "a", "event": "view", "msg_id": "k"},
            ]
        )
    res = r["results"]
    assert res[0] == {"seq": 1}
    assert res[1]["error"]["code"] == "bad_request" and "events[1].event" in res[1]["error"]["message"]
    assert res[2] == {"seq": 2} and res[3] == {"seq": 3} and res[4] == {"seq": 3, "duplicate": True}
    assert [row[0] for row in logged(daemon)] == [1, 2, 3]


def test_bad_request_names_the_field_and_keeps_the_connection(daemon):
    with Client(daemon.socket) as c:
        with pytest.raises(RemoteError) as exc:
            c.call("track", user="a", event="view", ts="noon")
        assert exc.value.code == "bad_request" and "'ts'" in exc.value.message
        assert c.track("a", "view") == {"seq": 1}


def test_unknown_op_keeps_the_connection(idle):
    with Client(idle.socket) as c:
        with pytest.raises(RemoteError) as exc:
            c.call("fly")
        assert exc.value.code == "unknown_op"
        assert c.ping()["version"]


def test_bad_frame_keeps_the_connection_usable(idle):
    s = raw_socket(idle)
    garbage = b"\xc1"
    s.sendall(
        protocol.HEADER.pack(1)
        + garbage
        + protocol.encode({"op": "ping", "id": 5})
        + protocol.HEADER.pack(3)
        + msgpack.packb([1, 2])
        + protocol.encode({"op": "ping", "id": 6})
    )
    out = read_frames(s, 4)
    assert [f.get("ok") for f in out] == [False, True, False, True]
    assert out[0]["error"]["code"] == "bad_frame" and out[2]["error"]["code"] == "bad_frame"
    assert [out[1]["id"], out[3]["id"]] == [5, 6]
    s.close()


def test_frame_too_large_is_answered_then_the_connection_closes(daemon_factory):
    d = daemon_factory(daemon='max_frame = "1KiB"')
    s = raw_socket(d)
    s.sendall(protocol.HEADER.pack(4096) + b"x" * 100)
    [err] = read_frames(s, 1)
    assert err["error"]["code"] == "frame_too_large" and "1024" in err["error"]["message"]
    assert s.recv(10) == b""  # closed
    s.close()
    with Client(d.socket) as c:  # other clients unaffected
        assert c.track("a", "view") == {"seq": 1}


def test_overloaded_when_the_write_queue_is_full_and_nothing_is_logged(daemon_factory):
    d = daemon_factory(daemon="max_pending = 10")
    with Client(d.socket) as c:
        with pytest.raises(RemoteError) as exc:
            c.batch([{"type": "track", "user": "a", "event": "e"}] * 11)
        assert exc.value.code == "overloaded"
        assert len(c.batch([{"type": "track", "user": "a", "event": "e"}] * 10)["results"]) == 10
    assert len(logged(d)) == 10


def test_pipelined_requests_are_answered_in_order(daemon):
    s = raw_socket(daemon)
    reqs = []
    for i in range(300):
        op = [{"op": "track", "user": f"u{i}", "event": "view"}, {"op": "ping"}, {"op": "nope"}][i % 3]
        reqs.append(protocol.encode({"id": i, **op}))
    s.sendall(b"".join(reqs))
    out = read_frames(s, 300)
    assert [f["id"] for f in out] == list(range(300))
    assert [f["ok"] for f in out] == [i % 3 != 2 for i in range(300)]
    seqs = [f["seq"] for f in out if "seq" in f]
    assert seqs == sorted(seqs) and len(seqs) == 100
    s.close()


def test_many_concurrent_clients_lose_nothing(daemon):
    n_clients, per_client = 50, 40
    acked: dict[str, int] = {}
    lock = threading.Lock()

    async def one(i: int) -> None:
        async with await AsyncClient.connect(daemon.socket) as c:
            replies = await asyncio.gather(
                *(c.track(f"u{i}", "view", msg_id=f"{i}-{j}") for j in range(per_client))
            )
            with lock:
                for j, r in enumerate(replies):
                    acked[f"{i}-{j}"] = r["seq"]

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(n_clients)))

    asyncio.run(main())
    rows = {row[4]: row[0] for row in logged(daemon)}
    assert len(acked) == n_clients * per_client
    assert rows == acked
    with Client(daemon.socket) as c:
        assert c.stats()["events"] == n_clients * per_client


def test_client_disconnecting_mid_frame_does_not_disturb_others(daemon):
    s = raw_socket(daemon)
    frame = protocol.encode({"op": "track", "user": "half", "event": "view"})
    s.sendall(frame[: len(frame) // 2])
    s.close()
    with Client(daemon.socket) as c:
        assert c.track("whole", "view") == {"seq": 1}
    assert [r[1] for r in logged(daemon)] == ["whole"]


def test_a_client_that_never_reads_does_not_block_others(daemon):
    s = raw_socket(daemon)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ping = protocol.encode({"op": "ping"})
    s.setblocking(False)
    sent = 0
    try:
        for _ in range(200_000):  # keep writing until the daemon stops reading from us
            sent += s.send(ping)
    except BlockingIOError:
        pass
    with Client(daemon.socket, timeout=10) as c:
        assert c.track("other", "view") == {"seq": 1}
    # The daemon stopped reading us: far fewer pings went out than we tried to send.
    assert 0 < sent < 200_000 * len(ping)
    s.close()


def test_send_events_helper_batches_and_returns_every_result(daemon):
    events = [{"type": "track", "user": f"u{i % 7}", "event": "view", "props": {"i": i}} for i in range(2500)]
    with Client(daemon.socket) as c:
        results = c.send_events(events, batch_size=400)
    assert [r["seq"] for r in results] == list(range(1, 2501))


def test_tcp_requires_auth_with_the_token(daemon_factory, unused_tcp_port):
    d = daemon_factory(daemon=f'tcp = "127.0.0.1:{unused_tcp_port}"\ntoken = "s3cret"')
    with Client(tcp=f"127.0.0.1:{unused_tcp_port}") as c:
        with pytest.raises(RemoteError) as exc:
            c.track("a", "view")
        assert exc.value.code == "unauthorized"
        with pytest.raises(RemoteError) as exc:
            c.call("auth", token="wrong")
        assert exc.value.code == "unauthorized"
    with Client(tcp=f"127.0.0.1:{unused_tcp_port}", token="s3cret") as c:
        assert c.track("a", "view") == {"seq": 1}
    assert len(logged(d)) == 1


def test_stop_drains_acknowledged_requests_then_refuses(daemon):
    events = [{"type": "track", "user": f"u{i}", "event": "view"} for i in range(5000)]
    c = Client(daemon.socket)
    c.sock.sendall(
        b"".join(
            protocol.encode({"id": i, "op": "batch", "events": events[i * 500 : (i + 1) * 500]})
            for i in range(10)
        )
    )
    first = c.recv()  # at least one batch is in the daemon before it stops
    daemon.stop()
    answered = [first]
    with contextlib.suppress(ConnectError):
        while len(answered) < 10:
            answered.append(c.recv())
    c.close()
    ok = [r for r in answered if r["ok"]]
    assert all(r["error"]["code"] == "unavailable" for r in answered if not r["ok"])
    # Answered ok <=> logged; requests never read are neither answered nor logged.
    assert len(logged(daemon)) == 500 * len(ok) and ok


def test_a_second_daemon_on_the_same_data_dir_is_refused(daemon, tmp_path):
    from segd.daemon.lifecycle import Daemon
    from segd.errors import SegdError

    with pytest.raises(SegdError, match="in use"):
        daemon.run(Daemon(daemon.config).start())


def test_commit_failure_is_internal_and_loses_nothing_acknowledged(daemon):
    with Client(daemon.socket) as c:
        assert c.track("a", "view") == {"seq": 1}
        blocker = sqlite3.connect(daemon.config.daemon.data_dir / "events.db", timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # an operator's shell holding the write lock
        try:
            with pytest.raises(RemoteError) as exc:
                c.track("a", "view")
            assert exc.value.code == "internal"
        finally:
            blocker.rollback()
            blocker.close()
        assert c.track("a", "view") == {"seq": 2}
    assert [r[0] for r in logged(daemon)] == [1, 2]


def test_metrics_endpoint_exports_stats_for_prometheus(daemon_factory):
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    d = daemon_factory(
        """
[aggregates.views]
kind = "count"
event = "view"

[segments.fans]
when = "views >= 1"
""",
        daemon='metrics = "127.0.0.1:0"\n',
    )
    with Client(d.socket) as c:
        c.track("alice", "view")
        c.track("bob", "view")
        c.sync()
    port = d.daemon.metrics.port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("segd_events_ingested_total", ())] == 2
    assert samples[("segd_segment_size", (("segment", "fans"),))] == 2
    assert samples[("segd_lag_events", ())] == 0
    assert samples[("segd_commit_seconds_count", ())] >= 1
    assert ("segd_messages", (("outcome", "sent"), ("reason", ""))) in samples
