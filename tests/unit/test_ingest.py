"""Group commit on a real SQLite file, driven by asyncio (no sockets, no Ray)."""

import asyncio

import msgpack
import pytest

from actors.records import NewEvent
from segd.clock import Clock
from segd.daemon.ingest import Committer
from segd.errors import ProtocolError
from store.eventlog import EventLog


def ev(i):
    return NewEvent(
        user=f"u{i}", type="track", event="view", ts=None, body=msgpack.packb({}), msg_id=None, wall=1.0
    )


async def test_concurrent_submits_share_commits_and_keep_order(tmp_path):
    log = EventLog(tmp_path)
    routed = []
    c = Committer(log, Clock("wall"), max_pending=10_000, on_commit=routed.extend)
    c.start()
    results = await asyncio.gather(*(c.submit([ev(i)]) for i in range(500)))
    await c.close()
    assert sorted(acks[0].seq for acks in results) == list(range(1, 501))
    assert c.commits < 500  # group commit: many requests per transaction
    assert [r.seq for r in routed] == list(range(1, 501))  # routed in log order


async def test_submit_after_close_is_unavailable(tmp_path):
    c = Committer(EventLog(tmp_path), Clock("wall"), max_pending=10)
    c.start()
    await c.close()
    with pytest.raises(ProtocolError) as exc:
        await c.submit([ev(1)])
    assert exc.value.code == "unavailable"


async def test_close_commits_everything_already_submitted(tmp_path):
    log = EventLog(tmp_path)
    c = Committer(log, Clock("wall"), max_pending=10_000)
    c.start()
    waiting = [asyncio.ensure_future(c.submit([ev(i)])) for i in range(100)]
    # One turn of the loop, not a wait for time: every submit runs up to its first await, so
    # all 100 are queued, which is what "already submitted" means when close() starts.
    await asyncio.sleep(0)
    await c.close()
    assert all(w.done() and not w.exception() for w in waiting)
    assert log.count == 100


async def test_the_horizon_is_the_first_stamped_clock_while_its_group_commits(tmp_path):
    import math
    import sqlite3

    log = EventLog(tmp_path)
    log.conn.execute("PRAGMA busy_timeout=20000")
    c = Committer(log, Clock("wall"), max_pending=10_000)
    c.start()
    assert c.horizon() == math.inf
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the commit waits for it
    first = NewEvent(
        user="a", type="track", event="v", ts=None, body=msgpack.packb({}), msg_id=None, wall=7.0
    )
    pending = asyncio.ensure_future(c.submit([first, ev(2)]))

    async def stamped() -> None:
        while c.horizon() == math.inf:
            await asyncio.sleep(0)  # a loop turn: the committer stages, then waits on the thread

    await asyncio.wait_for(stamped(), 10)
    assert c.horizon() == 7.0  # the group's first row; the second one (wall 1.0) is stamped 7.0 too
    blocker.execute("ROLLBACK")
    assert [a.seq for a in await asyncio.wait_for(pending, 30)] == [1, 2]
    assert c.horizon() == math.inf
    await c.close()


async def test_a_group_staged_on_a_commit_that_fails_is_staged_again_and_logged(tmp_path):
    """The committer stages the next group while one commits; when that commit fails, the
    next group (which took its msg_id for a duplicate of the failed group's) is staged again."""
    import sqlite3

    log = EventLog(tmp_path)
    c = Committer(log, Clock("wall"), max_pending=10_000)
    c.start()
    await c.submit([ev(0)])
    log.conn.execute("PRAGMA busy_timeout=3000")
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the next commit waits 3 s for the lock, then fails
    tagged = NewEvent(
        user="a", type="track", event="v", ts=None, body=msgpack.packb({}), msg_id="k", wall=1.0
    )
    failing = asyncio.ensure_future(c.submit([tagged, ev(1)]))

    async def staged(groups: int) -> None:
        while log.staged < groups:
            await asyncio.sleep(0)  # a loop turn: the committer stages

    await asyncio.wait_for(staged(1), 10)
    retried = asyncio.ensure_future(c.submit([tagged, ev(2)]))  # "k" looks like a duplicate now
    await asyncio.wait_for(staged(2), 10)
    with pytest.raises(ProtocolError) as exc:
        await asyncio.wait_for(failing, 10)
    assert exc.value.code == "internal"
    blocker.execute("ROLLBACK")
    acks = await asyncio.wait_for(retried, 10)
    assert [(a.seq, a.duplicate) for a in acks] == [(2, False), (3, False)]
    await c.close()
    assert log.conn.execute("SELECT seq, msg_id FROM events ORDER BY seq").fetchall() == [
        (1, None),
        (2, "k"),
        (3, None),
    ]


async def test_a_large_group_looks_its_msg_ids_up_off_the_loop_and_still_dedupes(tmp_path):
    from segd.daemon.ingest import LOOKUP_OFF_LOOP

    def tagged(i):
        return NewEvent(
            user=f"u{i}",
            type="track",
            event="view",
            ts=None,
            body=msgpack.packb({}),
            msg_id=f"m{i}",
            wall=1.0,
        )

    n = LOOKUP_OFF_LOOP * 2
    log = EventLog(tmp_path)
    c = Committer(log, Clock("wall"), max_pending=10_000)
    c.start()
    first = await c.submit([tagged(i) for i in range(n)])
    again = await c.submit([tagged(i) for i in range(n // 2, n + n // 2)])  # half of them seen
    await c.close()
    assert [a.seq for a in first] == list(range(1, n + 1))
    assert [(a.seq, a.duplicate) for a in again[: n // 2]] == [(i + 1, True) for i in range(n // 2, n)]
    assert [(a.seq, a.duplicate) for a in again[n // 2 :]] == [(n + 1 + i, False) for i in range(n // 2)]
    assert log.count == n + n // 2


async def test_a_group_with_a_msg_id_already_logged_is_staged_again_and_so_is_the_group_on_top(tmp_path):
    """Msg_ids are taken for new and checked by the log's unique index at commit: a group
    whose commit meets one already logged writes nothing, is looked up and committed again
    (the duplicate answered with its original seq), and the group staged on top of it, which
    had continued its seqs, is staged again after it."""
    import sqlite3

    def tagged(key: str, i: int) -> NewEvent:
        return NewEvent(
            user=f"u{i}", type="track", event="v", ts=None, body=msgpack.packb({}), msg_id=key, wall=1.0
        )

    log = EventLog(tmp_path)
    routed = []
    c = Committer(log, Clock("wall"), max_pending=10_000, on_commit=routed.extend)
    c.start()
    assert [(a.seq, a.duplicate) for a in await c.submit([tagged("k", 0)])] == [(1, False)]
    log.conn.execute("PRAGMA busy_timeout=20000")
    blocker = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the next commit waits for the lock: the one after stages on top

    async def staged(groups: int) -> None:
        while log.staged < groups:
            await asyncio.sleep(0)

    retried = asyncio.ensure_future(c.submit([tagged("k", 1), tagged("n", 2), ev(3)]))
    await asyncio.wait_for(staged(1), 10)
    on_top = asyncio.ensure_future(c.submit([ev(4), tagged("n", 5)]))
    await asyncio.wait_for(staged(2), 10)
    blocker.execute("ROLLBACK")
    assert [(a.seq, a.duplicate) for a in await asyncio.wait_for(retried, 30)] == [
        (1, True),
        (2, False),
        (3, False),
    ]
    assert [(a.seq, a.duplicate) for a in await asyncio.wait_for(on_top, 30)] == [(4, False), (2, True)]
    await c.close()
    assert log.conn.execute("SELECT seq, user, msg_id FROM events ORDER BY seq").fetchall() == [
        (1, "u0", "k"),
        (2, "u2", "n"),
        (3, "u3", None),
        (4, "u4", None),
    ]
    assert [(r.seq, r.user) for r in routed] == [(1, "u0"), (2, "u2"), (3, "u3"), (4, "u4")]
