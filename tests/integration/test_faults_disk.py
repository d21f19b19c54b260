"""A full disk (issue 16, item 1, the parts of the log and of stopping): the data dir lives on
a real 16 MiB tmpfs that the test fills and frees. While the log cannot be written, writes are
refused and reads still answer, and the log takes writes again once space is back; SIGTERM
drains and exits 0 even while a derived store cannot be written. Real ``segd run``
processes. (The derived stores' retries are part B's.)"""

from __future__ import annotations

import pytest

from segd.errors import RemoteError
from tests.faults import (
    Acked,
    Daemon,
    cannot_create,
    fault_config,
    fill_until_the_store_fails,
    segments_on,
    views,
    warm,
)


def _until_refused(d: Daemon, acked: Acked, make, limit: int = 400) -> RemoteError | None:
    """Send batches from ``make(k)`` until one is refused; that error (None if none was)."""
    with d.client() as c:
        for k in range(limit):
            try:
                acked.send(c, make(k))
            except RemoteError as exc:
                return exc
    return None


def test_a_full_log_refuses_writes_answers_reads_and_takes_writes_once_space_is_back(tmp_path, small_fs):
    d = Daemon(fault_config(tmp_path, data_dir=small_fs.path / "data", own_ray=False))
    acked = Acked()
    try:
        d.wait_ready()
        with d.client() as c:
            acked.send(c, views("warm", 2000, users=50))  # 40 views each: no transitions later
            c.sync()
            before = {"user": c.user("u7"), "segments": c.segments()}
        small_fs.fill()
        # Events of the same users change no membership: only the log needs the disk.
        refused = _until_refused(d, acked, lambda k: views(f"full{k}", 500, users=50))
        if refused is None:
            cannot_create("a full event log", "400 batches fit in the WAL of a full filesystem")
        assert refused.code == "internal" and "event log" in refused.message
        with d.client(timeout=10) as c:
            assert c.ping()["version"]
            assert c.segments() == before["segments"]
            assert c.user("u7")["traits"] == before["user"]["traits"]
            stats = c.stats()
            assert stats["last_seq"] == max(acked.seqs.values())
            with pytest.raises(RemoteError) as again:
                c.track("u1", "view", msg_id="while-full")
            assert again.value.code == "internal"
        small_fs.free()
        with d.client() as c:
            after = c.track("u1", "view", msg_id="space-back")
            acked.seqs["space-back"] = after["seq"]
            assert c.sync()["seq"] == after["seq"]
        d.terminate()
    finally:
        d.stop_now()
    assert acked.missing_from(d.data_dir) == []
    assert "commit_failed" in [e["event"] for e in d.events()]


def test_sigterm_while_the_segment_store_cannot_commit_drains_and_exits_0(tmp_path, small_fs):
    # Only segments.db (and its WAL, which SQLite keeps beside the link's target) is on the
    # small filesystem: the log keeps working, as on a disk where a derived store fills up.
    data = segments_on(tmp_path, small_fs)
    d = Daemon(fault_config(tmp_path, data_dir=data, own_ray=False))
    acked = Acked()
    try:
        d.wait_ready()
        warm(d, acked)
        with d.client() as c:
            fill_until_the_store_fails(d, c, acked, small_fs)
        assert len(acked.seqs) == 200 + 20 * 20, "the log refused events it had room for"
        d.terminate()
    finally:
        d.stop_now()
    small_fs.free()
    assert acked.missing_from(d.data_dir) == []
