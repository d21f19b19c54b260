"""The actor runtime end to end: real Ray, real daemon, real socket, real SQLite files."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time

import pytest
import ray

from segd.errors import RemoteError
from segd.wire.client import AsyncClient, Client
from tests.helpers import WINDOWED_AGGREGATES, DaemonThread, make_config, split_daemon, wait_until

WINDOWED = (
    WINDOWED_AGGREGATES
    + """
[segments.electronics_fans]
description = "Viewed electronics three or more times this week"
when = "views_electronics_7d >= 3"

[segments.big_spenders]
description = "Spent 100 or more"
when = "spend >= 100"

[segments.inactive]
description = "Not seen for 14 days"
when = "exists(last_seen) and days_since(last_seen) >= 14"
"""
)
DAY = 86400.0
T0 = 1_700_000_000.0


def start(daemon_factory, config: str = WINDOWED, sub: str = ""):
    rest, keys = split_daemon(config)
    return daemon_factory(rest, daemon=keys, sub=sub)


def view(user: str, ts: float, category: str = "electronics", msg_id: str | None = None) -> dict:
    e = {"type": "track", "user": user, "event": "view", "ts": ts, "props": {"category": category}}
    if msg_id:
        e["msg_id"] = msg_id
    return e


def subscribers(d) -> int:
    """How many subscribers the daemon has registered (a fresh connection, so it can be
    called from a thread while an asyncio loop runs the subscribers)."""
    with Client(d.socket) as c:
        return c.stats()["subscribers"]


def history(c: Client, segment: str) -> list[tuple]:
    return [(t["id"], t["user"], t["kind"], t["at"], t["seq"]) for t in c.history(segment, 0)["transitions"]]


@pytest.fixture(scope="module")
def spec_example(tmp_path_factory, ray_session):
    """SPEC's example in one daemon, synced, shared by the tests that only read it: alice
    (first_name Alice) views electronics three times, bob views garden once; seqs 1..5."""
    rest, keys = split_daemon(WINDOWED)
    d = DaemonThread(make_config(tmp_path_factory.mktemp("spec"), rest, daemon=keys)).start()
    try:
        with Client(d.socket) as c:
            c.identify("alice", {"first_name": "Alice"}, ts=T0)
            for i in range(3):
                c.track("alice", "view", {"category": "electronics"}, ts=T0 + i)
            c.track("bob", "view", {"category": "garden"}, ts=T0 + 3)
            c.sync()
        yield d
    finally:
        d.stop()


def test_sync_answers_the_seq_of_the_last_acknowledged_event(spec_example):
    with Client(spec_example.socket) as c:
        assert c.sync()["seq"] == 5


def test_user_shows_traits_aggregates_segments_and_last_seq(spec_example):
    with Client(spec_example.socket) as c:
        u = c.user("alice")
    assert u["user"] == "alice" and u["traits"] == {"first_name": "Alice"}
    assert u["aggregates"]["views_electronics_7d"] == 3 and u["aggregates"]["spend"] == 0
    assert u["segments"] == ["electronics_fans"] and u["last_seq"] == 4


def test_segments_lists_size_and_description_sorted_by_name(spec_example):
    with Client(spec_example.socket) as c:
        segs = {s["name"]: s for s in c.segments()["segments"]}
        assert segs["electronics_fans"] == {
            "name": "electronics_fans",
            "size": 1,
            "description": "Viewed electronics three or more times this week",
            "when": "views_electronics_7d >= 3",
        }
        assert [s["name"] for s in c.segments()["segments"]] == sorted(segs)


def test_segment_lists_its_members(spec_example):
    with Client(spec_example.socket) as c:
        assert c.segment("electronics_fans") == {"size": 1, "members": ["alice"], "next": None}


def test_history_records_the_enter_at_the_event_time_and_seq(spec_example):
    with Client(spec_example.socket) as c:
        [t] = c.history("electronics_fans", 0)["transitions"]
    assert (t["user"], t["kind"], t["at"], t["seq"]) == ("alice", "enter", T0 + 2, 4)


def test_an_unknown_user_is_not_found(spec_example):
    with Client(spec_example.socket) as c, pytest.raises(RemoteError) as exc:
        c.user("carol")
    assert exc.value.code == "not_found"


def test_an_unknown_segment_is_not_found(spec_example):
    with Client(spec_example.socket) as c, pytest.raises(RemoteError) as exc:
        c.segment("nope")
    assert exc.value.code == "not_found"


def test_stats_count_users_applied_events_and_segment_sizes(spec_example):
    with Client(spec_example.socket) as c:
        stats = c.stats()
    assert stats["users"] == 2 and stats["applied_seq"] == 5 and stats["lag"] == 0
    assert stats["segments"]["electronics_fans"] == 1


def alice_views_then_bob_eight_days_later(c: Client) -> None:
    """Three electronics views by alice at T0; time then passes only through bob's event at
    T0 + 8d (event clock = watermark). Synced."""
    for i in range(3):
        c.track("alice", "view", {"category": "electronics"}, ts=T0 + i)
    c.track("bob", "view", {"category": "garden"}, ts=T0 + 8 * DAY)
    c.sync()


def test_window_exit_happens_at_the_exact_time_without_new_events_from_that_user(daemon_factory):
    d = start(daemon_factory)
    with Client(d.socket) as c:
        alice_views_then_bob_eight_days_later(c)
        assert c.segment("electronics_fans")["members"] == []
        kinds = [(t["kind"], t["at"], t["seq"]) for t in c.history("electronics_fans", 0)["transitions"]]
        # The first of the three views leaves the 7-day window at exactly T0 + 7d.
        assert kinds == [("enter", T0 + 2, 3), ("exit", T0 + 7 * DAY, 3)]
        assert c.user("alice")["segments"] == []


def test_days_since_enters_at_the_exact_time_and_the_users_next_event_exits(daemon_factory):
    d = start(daemon_factory)
    with Client(d.socket) as c:
        alice_views_then_bob_eight_days_later(c)
        assert c.history("inactive", 0)["transitions"] == []  # 8 days: nobody is inactive yet
        c.track("bob", "view", {"category": "garden"}, ts=T0 + 30 * DAY)
        c.sync()
        inactive = [
            (t["user"], t["kind"], t["at"], t["seq"]) for t in c.history("inactive", 0)["transitions"]
        ]
        # alice was last seen at T0 + 2 (seq 3): inactive from exactly 14 days later. bob's own
        # event first fires his due deadline (T0 + 8d + 14d), then makes him active again.
        assert inactive == [
            ("alice", "enter", T0 + 2 + 14 * DAY, 3),
            ("bob", "enter", T0 + 22 * DAY, 4),
            ("bob", "exit", T0 + 30 * DAY, 5),
        ]


def test_wall_clock_timer_fires_without_any_new_event(daemon_factory):
    d = daemon_factory(
        """
        [aggregates.recent]
        kind = "count"
        event = "ping"
        within = "1s"

        [segments.active]
        when = "recent >= 1"
        """,
        daemon='tick = "100ms"',
    )

    async def main() -> list[dict]:
        seen: list[dict] = []
        async with await AsyncClient.connect(d.socket) as sub, await AsyncClient.connect(d.socket) as c:
            stream = sub.subscribe(["active"])
            first = asyncio.ensure_future(stream.__anext__())
            await asyncio.to_thread(wait_until, lambda: subscribers(d) >= 1, 30, what="the subscription")
            await c.track("u", "ping", ts=time.time())
            seen.append(await asyncio.wait_for(first, 30))
            seen.append(await asyncio.wait_for(stream.__anext__(), 30))
        return seen

    enter, leave = asyncio.run(main())
    assert (enter["kind"], leave["kind"]) == ("enter", "exit")
    assert leave["at"] - enter["at"] == pytest.approx(1.0, abs=0.5)  # exact deadline = event ts + 1s
    assert leave["seq"] == enter["seq"]


def expected_members(events: list[dict]) -> set[str]:
    """An independent computation of electronics_fans at the end (event clock)."""
    now = max(e["ts"] for e in events)
    counts: dict[str, int] = {}
    for e in events:
        if e["props"]["category"] == "electronics" and now - 7 * DAY < e["ts"] <= now:
            counts[e["user"]] = counts.get(e["user"], 0) + 1
    return {u for u, n in counts.items() if n >= 3}


def random_events(n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    out, ts = [], T0
    for i in range(n):
        ts += rnd.expovariate(1 / 3000)
        jitter = -rnd.random() * DAY if rnd.random() < 0.2 else 0  # late / out-of-order
        out.append(
            view(
                f"u{rnd.randrange(60)}",
                ts + jitter,
                rnd.choice(["electronics", "garden", "books"]),
                msg_id=f"m{i}",
            )
        )
    return out


def test_membership_after_sync_equals_an_independent_computation(daemon_factory):
    d = start(daemon_factory)
    events = random_events(3000, seed=7)
    with Client(d.socket) as c:
        c.send_events(events, batch_size=250)
        c.sync()
        members = c.segment("electronics_fans", limit=100_000)["members"]
    assert set(members) == expected_members(events)
    assert members == sorted(members)


def test_segment_pages_with_a_cursor(daemon_factory):
    d = start(daemon_factory)
    with Client(d.socket) as c:
        c.send_events([view(f"user{i:03d}", T0 + j) for i in range(25) for j in range(3)])
        c.sync()
        pages, after = [], None
        while True:
            p = c.segment("electronics_fans", limit=10, after=after)
            pages.append(p["members"])
            assert p["size"] == 25
            after = p["next"]
            if after is None:
                break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == [f"user{i:03d}" for i in range(25)]


def test_transitions_stream_to_a_subscriber_in_order(daemon_factory):
    d = start(daemon_factory)
    events = random_events(1500, seed=3)

    async def main() -> tuple[list[dict], list[dict]]:
        got: list[dict] = []
        async with await AsyncClient.connect(d.socket) as sub, await AsyncClient.connect(d.socket) as c:
            stream = sub.subscribe("*")
            reader = asyncio.ensure_future(_collect(stream, got))
            await asyncio.to_thread(wait_until, lambda: subscribers(d) >= 1, 30, what="the subscription")
            await c.send_events(events, batch_size=100)
            await c.sync()
            recorded = [
                t
                for s in ("electronics_fans", "inactive", "big_spenders")
                for t in (await c.history(s, 0))["transitions"]
            ]
            # sync covers the segment managers; the frames still cross the subscriber's socket
            await asyncio.to_thread(
                wait_until,
                lambda: len(got) >= len(recorded),
                30,
                what=lambda: f"{len(recorded)} transitions on the stream (got {len(got)})",
            )
            reader.cancel()
        return got, recorded

    got, recorded = asyncio.run(main())
    assert sorted(t["id"] for t in got) == sorted(t["id"] for t in recorded)
    for user in {t["user"] for t in got}:  # per user and segment, the stream keeps log order
        mine = [(t["segment"], t["seq"], t["at"]) for t in got if t["user"] == user]
        for seg in {m[0] for m in mine}:
            seq_at = [(s, a) for g, s, a in mine if g == seg]
            assert seq_at == sorted(seq_at)
    assert len(got) > 10


async def _collect(stream, out: list) -> None:
    async for t in stream:
        out.append(t)


def snapshot_of(d) -> dict:
    with Client(d.socket) as c:
        c.sync()
        return {
            s: (c.segment(s, limit=100_000)["members"], history(c, s))
            for s in ("electronics_fans", "big_spenders", "inactive")
        }


def test_restart_reproduces_membership_and_transition_ids(daemon_factory, tmp_path):
    d = start(daemon_factory, sub="a")
    with Client(d.socket) as c:
        c.send_events(random_events(2000, seed=11), batch_size=300)
    before = snapshot_of(d)
    d.stop()
    # Drop every derived store: the log alone must rebuild the same state and ids.
    data = tmp_path / "a" / "data"
    for f in data.glob("segments.db*"):
        f.unlink()
    for f in data.glob("snapshots.db*"):
        f.unlink()
    again = start(daemon_factory, sub="a")
    assert snapshot_of(again) == before
    assert any(h for _, h in before.values())


def test_snapshot_plus_tail_equals_full_replay(daemon_factory, tmp_path):
    config = WINDOWED.replace('clock = "event"', 'clock = "event"\nsnapshot_every = 300')
    d = start(daemon_factory, config, sub="a")
    events = random_events(2500, seed=5)
    with Client(d.socket) as c:
        c.send_events(events[:1200], batch_size=100)
    d.stop()  # snapshots on the way out, and every 300 events before
    conn = sqlite3.connect(tmp_path / "a" / "data" / "snapshots.db")
    assert conn.execute("SELECT count(*) FROM snapshots WHERE seq > 0").fetchone()[0] >= 1
    conn.close()
    d = start(daemon_factory, config, sub="a")
    with Client(d.socket) as c:
        c.send_events(events[1200:], batch_size=100)
    resumed = snapshot_of(d)
    fresh = start(daemon_factory, config, sub="b")
    with Client(fresh.socket) as c:
        c.send_events(events, batch_size=100)
    assert snapshot_of(fresh) == resumed


KILL_AFTER = 2000  # events acknowledged before shard 0 is killed (snapshot_every = 500)


def test_killing_a_shard_mid_stream_changes_nothing(daemon_factory):
    config = WINDOWED.replace('clock = "event"', 'clock = "event"\nsnapshot_every = 500')
    events = random_events(4000, seed=21)
    reference = start(daemon_factory, config, sub="ref")
    with Client(reference.socket) as c:
        c.send_events(events, batch_size=200)
    expected = snapshot_of(reference)

    d = start(daemon_factory, config, sub="kill")
    with Client(d.socket) as c:
        for i in range(0, len(events), 200):
            if i == KILL_AFTER:  # a fixed point in the stream: acknowledged, maybe not yet applied
                ray.kill(d.daemon.runtime.shards[0], no_restart=False)
            c.batch(events[i : i + 200])
    assert snapshot_of(d) == expected
    with Client(d.socket) as c:
        assert c.stats()["recoveries"] >= 1


def test_a_subscriber_that_stops_reading_is_dropped_and_ingest_goes_on(daemon_factory):
    import socket as _socket

    from segd.daemon.subscriptions import QUEUE_FRAMES
    from segd.wire import protocol

    d = start(daemon_factory)
    stuck = _socket.socket(_socket.AF_UNIX)
    stuck.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 4096)
    stuck.connect(str(d.socket))
    stuck.sendall(protocol.encode({"op": "subscribe", "segments": "*", "id": 1}))
    # Each user enters electronics_fans once: more frames than the queue plus socket buffers hold.
    users = 2 * QUEUE_FRAMES
    events = [view(f"u{i}", T0 + k * users + i) for k in range(3) for i in range(users)]
    with Client(d.socket) as c:
        c.ping()
        results = c.send_events(events, batch_size=2000)
        assert all("seq" in r for r in results)
        c.sync()
        assert c.segment("electronics_fans", limit=1)["size"] == users
        assert c.stats()["events"] == len(events)
    assert d.daemon.hub.dropped == 1
    stuck.close()


def test_a_thousand_subscribers_each_get_every_transition(daemon_factory):
    d = start(daemon_factory)
    events = [view(f"u{i}", T0 + k * 100 + i) for k in range(3) for i in range(100)]

    async def main() -> list[int]:
        # All at once: the listen backlog ([daemon] backlog, 1024) holds the whole burst.
        subs = list(await asyncio.gather(*(AsyncClient.connect(d.socket) for _ in range(1000))))
        counts = [0] * len(subs)

        async def read(k: int) -> None:
            async for _ in subs[k].subscribe(["electronics_fans"]):
                counts[k] += 1

        readers = [asyncio.ensure_future(read(k)) for k in range(len(subs))]
        try:
            await asyncio.to_thread(
                wait_until, lambda: subscribers(d) >= len(subs), 60, what="1000 subscriptions"
            )
            async with await AsyncClient.connect(d.socket) as c:
                await c.send_events(events, batch_size=50)
                await c.sync()
            await asyncio.to_thread(
                wait_until,
                lambda: min(counts) >= 100,
                60,
                what=lambda: f"100 transitions on every stream (counts: {sorted(set(counts))})",
            )
        finally:
            for r in readers:
                r.cancel()
            for s in subs:
                await s.close()
        return counts

    counts = asyncio.run(main())
    assert set(counts) == {100}
    assert d.daemon.hub.dropped == 0


def test_unknown_segment_in_subscribe_is_not_found(spec_example):
    with Client(spec_example.socket) as c, pytest.raises(RemoteError) as exc:
        list(c.subscribe(["nope"]))
    assert exc.value.code == "not_found"


def test_two_nodes_then_a_dead_worker_node_give_the_single_node_result(daemon_factory, tmp_path):
    import json
    import subprocess
    import sys

    events = random_events(2000, seed=98)
    (tmp_path / "events.json").write_text(json.dumps(events))
    (tmp_path / "cluster.toml").write_text(WINDOWED)
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.cluster_job",
            str(tmp_path / "cluster-data"),
            str(tmp_path / "cluster.toml"),
            str(tmp_path / "events.json"),
            "kill",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert len(set(result["nodes"])) == 2  # one shard on each node
    assert len(set(result["nodes_after"])) == 1  # both shards now on the surviving node
    assert result["recoveries"] >= 1

    single = start(daemon_factory, sub="single")
    with Client(single.socket) as c:
        c.send_events(events, batch_size=200)
    local = snapshot_of(single)
    assert {s: [m, [list(t) for t in h]] for s, (m, h) in local.items()} == result["segments"]


def test_router_falling_behind_reads_rows_back_from_the_log(tmp_path):
    """Ingest faster than routing: rows beyond the queue bound are routed from the log."""
    import msgpack

    from actors.model import Model
    from actors.records import NewEvent
    from segd.clock import Clock
    from segd.daemon import runtime
    from segd.daemon.router import Router
    from store.eventlog import EventLog
    from store.snapshots import SnapshotStore
    from tests.helpers import make_config

    rest, keys = split_daemon(WINDOWED)
    config = make_config(tmp_path, rest, daemon=keys)
    model = Model.compile(config)
    events = random_events(3000, seed=17)

    async def main() -> list[str]:
        eventlog = EventLog(config.daemon.data_dir)
        snapshots = SnapshotStore(config.daemon.data_dir)
        rt = runtime.Runtime(
            config, {s.name: (s.description, model.segment_fingerprints[s.name]) for s in config.segments}
        )
        clock = Clock("event")
        router = Router(
            rt,
            eventlog,
            snapshots,
            clock,
            fingerprint=model.fingerprint,
            snapshot_every=10**9,
            max_queued=100,
        )
        try:
            await router.recover()
            router.start()
            for i in range(0, len(events), 50):  # all committed before the router runs once
                staged = eventlog.stage(
                    [
                        NewEvent(
                            user=e["user"],
                            type="track",
                            event="view",
                            ts=e["ts"],
                            body=msgpack.packb(e["props"]),
                            msg_id=None,
                            wall=0.0,
                        )
                        for e in events[i : i + 50]
                    ],
                    clock,
                )
                eventlog.commit()
                router.submit_rows(staged.rows)
            assert await router.sync() == len(events)
            assert router.catch_ups >= 1
            page = await rt.page("electronics_fans", None, 100_000)
            await router.close()
            return page.members
        finally:
            rt.close()
            eventlog.close()
            snapshots.close()

    assert set(asyncio.run(main())) == expected_members(events)


def test_a_new_segment_is_backfilled_over_history_at_the_next_start(daemon_factory, tmp_path):
    d = start(daemon_factory, sub="a")
    events = random_events(1500, seed=8)
    with Client(d.socket) as c:
        c.send_events(events, batch_size=300)
        c.sync()
        fans_before = history(c, "electronics_fans")
    d.stop()
    extended = (
        WINDOWED
        + """
[segments.garden_lovers]
description = "Viewed the garden category"
when = "views_garden >= 1"

[aggregates.views_garden]
kind = "count"
event = "view"
where = "props.category == 'garden'"
"""
    )
    d = start(daemon_factory, extended, sub="a")
    with Client(d.socket) as c:
        c.sync()
        garden = c.segment("garden_lovers", limit=100_000)["members"]
        assert history(c, "electronics_fans") == fans_before  # unchanged segments keep their ids
    assert set(garden) == {e["user"] for e in events if e["props"]["category"] == "garden"}


def test_a_shard_killed_before_shutdown_leaves_no_bad_snapshot(daemon_factory):
    events = random_events(1500, seed=31)
    d = start(daemon_factory, sub="a")
    with Client(d.socket) as c:
        c.send_events(events, batch_size=300)
    expected = snapshot_of(d)
    ray.kill(d.daemon.runtime.shards[0], no_restart=False)
    d.stop()  # snapshots every shard on the way out: shard 0 is restarting or empty
    again = start(daemon_factory, sub="a")
    assert snapshot_of(again) == expected
