"""The query ops of SPEC section 2 on a real daemon: ``segment`` at a past time, ``history``
by user, ``sizes``, ``preview``; real Ray, real socket, real SQLite files."""

from __future__ import annotations

import pytest

from segd.errors import RemoteError
from segd.wire.client import Client
from tests.helpers import WINDOWED_AGGREGATES, DaemonThread, make_config, split_daemon

DAY = 86400.0
T0 = 1_700_000_000.0
USERS = 10  # user i views electronics at T0 + i days; a view counts for 7 days

CONFIG = (
    WINDOWED_AGGREGATES
    + """
[segments.fans]
description = "Viewed electronics this week"
when = "views_electronics_7d >= 1"

[segments.spenders]
description = "Spent 100 or more"
when = "spend >= 100"
"""
)


def fans_at(t: float) -> list[str]:
    """The workload's fans at logical time t: user i is a member on [T0 + i d, T0 + (i+7) d)."""
    return sorted(f"u{i}" for i in range(USERS) if T0 + i * DAY <= t < T0 + (i + 7) * DAY)


def load(c: Client) -> None:
    c.send_events(
        [
            {
                "type": "track",
                "user": f"u{i}",
                "event": "view",
                "ts": T0 + i * DAY,
                "props": {"category": "electronics"},
            }
            for i in range(USERS)
        ]
        + [
            {
                "type": "track",
                "user": "u3",
                "event": "purchase",
                "ts": T0 + 3 * DAY + 60,
                "props": {"price": 150},
            },
            {"type": "identify", "user": "u4", "traits": {"plan": "pro"}, "ts": T0 + 4 * DAY},
            # moves the event clock past every window: every fan has left by T0 + 17 d
            {
                "type": "track",
                "user": "zz",
                "event": "view",
                "ts": T0 + 30 * DAY,
                "props": {"category": "garden"},
            },
        ]
    )
    c.sync()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, ray_session):
    rest, keys = split_daemon(CONFIG)
    config = make_config(tmp_path_factory.mktemp("queries"), rest, daemon=keys)
    d = DaemonThread(config).start()
    try:
        with Client(d.socket) as c:
            load(c)
        yield d
    finally:
        d.stop()


@pytest.fixture
def c(daemon):
    with Client(daemon.socket) as client:
        yield client


# ---------------------------------------------------------------------- segment at a past time


@pytest.mark.parametrize("days", [-1, 0, 0.5, 3, 6.999, 7, 9, 12, 16.999, 17, 40])
def test_segment_at_a_past_time_lists_the_members_of_that_time(c, days):
    t = T0 + days * DAY
    assert c.segment("fans", at=t) == {"size": len(fans_at(t)), "members": fans_at(t), "next": None}


def test_segment_at_pages_with_the_after_cursor(c):
    t = T0 + 8 * DAY  # u2 .. u8 are fans
    first = c.segment("fans", at=t, limit=4)
    second = c.segment("fans", at=t, limit=4, after=first["next"])
    assert first == {"size": 7, "members": ["u2", "u3", "u4", "u5"], "next": "u5"}
    assert second == {"size": 7, "members": ["u6", "u7", "u8"], "next": None}


def test_segment_without_at_is_the_current_membership(c):
    assert c.segment("spenders") == {"size": 1, "members": ["u3"], "next": None}
    assert c.segment("fans") == {"size": 0, "members": [], "next": None}


def test_segment_at_of_an_unknown_segment_is_not_found(c):
    with pytest.raises(RemoteError) as info:
        c.segment("nope", at=T0)
    assert info.value.code == "not_found"


# ---------------------------------------------------------------------- history


def test_history_of_a_user_lists_its_transitions_in_every_segment_in_order(c):
    got = [(t["segment"], t["kind"], t["at"]) for t in c.history(user="u3")["transitions"]]
    assert got == [
        ("fans", "enter", T0 + 3 * DAY),
        ("spenders", "enter", T0 + 9 * DAY),  # the event clock when the purchase was logged
        ("fans", "exit", T0 + 10 * DAY),
    ]


def test_history_of_a_user_in_one_segment_between_two_times(c):
    got = c.history("fans", T0 + 4 * DAY, T0 + 20 * DAY, user="u3")["transitions"]
    assert [(t["kind"], t["at"]) for t in got] == [("exit", T0 + 10 * DAY)]


def test_history_of_a_segment_needs_no_since_and_stops_at_the_limit(c):
    full = c.history("fans")["transitions"]
    assert len(full) == 2 * USERS
    assert c.history("fans", limit=3)["transitions"] == full[:3]


def test_history_of_an_unknown_user_is_empty(c):
    assert c.history(user="nobody") == {"transitions": []}


def test_history_without_segment_or_user_is_a_bad_request(c):
    with pytest.raises(RemoteError) as info:
        c.call("history", since=0)
    assert info.value.code == "bad_request" and "'segment'" in info.value.message


# ---------------------------------------------------------------------- sizes


def test_sizes_are_the_sizes_of_segment_at_each_point(c):
    points = c.sizes("fans", T0 - DAY, T0 + 20 * DAY, DAY / 2)["points"]
    assert [t for t, _ in points] == [T0 - DAY + k * DAY / 2 for k in range(43)]
    assert [size for _, size in points] == [len(fans_at(t)) for t, _ in points]


def test_sizes_of_an_unknown_segment_is_not_found(c):
    with pytest.raises(RemoteError) as info:
        c.sizes("nope", T0, T0 + DAY, 60)
    assert info.value.code == "not_found"


def test_sizes_with_too_many_points_is_a_bad_request_naming_the_step(c):
    with pytest.raises(RemoteError) as info:
        c.sizes("fans", T0, T0 + DAY, 1)
    assert info.value.code == "bad_request" and "'step'" in info.value.message


# ---------------------------------------------------------------------- preview


def test_preview_counts_users_samples_them_and_overlaps_every_segment(c):
    got = c.preview("exists(last_seen) and days_since(last_seen) >= 25")
    # the event clock stands at T0 + 30 d: everyone but zz was last seen 21 or more days ago
    assert got == {
        "size": 6,
        "sample": ["u0", "u1", "u2", "u3", "u4", "u5"],
        "overlap": {"fans": 0, "spenders": 1},
    }


def test_preview_reads_traits_and_segments(c):
    assert c.preview("traits.plan == 'pro' or segment('spenders')")["sample"] == ["u3", "u4"]


def test_preview_sample_is_the_twenty_smallest_ids_of_a_larger_match(c):
    got = c.preview("true")
    assert got["size"] == USERS + 1 and got["sample"] == sorted([f"u{i}" for i in range(USERS)] + ["zz"])


def test_preview_of_an_invalid_expression_names_the_column_and_what_was_expected(c):
    with pytest.raises(RemoteError) as info:
        c.preview("spend >= 100 and")
    assert info.value.code == "bad_request"
    assert info.value.message == "'when' at column 17: expected an expression but found end of expression"


def test_preview_of_an_unknown_name_says_which_names_exist(c):
    with pytest.raises(RemoteError) as info:
        c.preview("spent >= 100")
    assert info.value.code == "bad_request"
    assert "column 1" in info.value.message and "did you mean 'spend'" in info.value.message


def test_a_preview_sent_while_another_runs_is_answered_overloaded(c):
    # pipelined on one connection: the daemon starts both at once, the second finds the first
    first, second = c.pipeline([{"op": "preview", "when": "spend >= 0"}, {"op": "preview", "when": "true"}])
    assert first["ok"] and first["size"] == USERS + 1
    assert second["error"]["code"] == "overloaded"


def test_preview_changes_nothing(c):
    before = c.stats()
    c.preview("spend >= 0")
    after = c.stats()
    assert (after["events"], after["segments"], after["transitions"]) == (
        before["events"],
        before["segments"],
        before["transitions"],
    )


# ---------------------------------------------------------------------- the index survives


def start_loaded(daemon_factory) -> DaemonThread:
    """A daemon of its own (stopped at teardown) holding ``load``'s events, applied."""
    rest, keys = split_daemon(CONFIG)
    d: DaemonThread = daemon_factory(rest, daemon=keys)
    with Client(d.socket) as c:
        load(c)
    return d


def fans_by_day(c: Client) -> list[dict]:
    """``segment fans at`` each of the 20 days from T0."""
    return [c.segment("fans", at=T0 + k * DAY) for k in range(20)]


def stopped_after_fans_by_day(daemon_factory) -> tuple[DaemonThread, list[dict]]:
    """A ``start_loaded`` daemon, stopped once ``fans_by_day`` is read from it; both."""
    d = start_loaded(daemon_factory)
    with Client(d.socket) as c:
        before = fans_by_day(c)
    d.stop()
    return d, before


def fans_by_day_after_a_restart(stopped: DaemonThread) -> list[dict]:
    """``fans_by_day`` from a new daemon on the stopped one's config and data."""
    d = DaemonThread(stopped.config).start()
    try:
        with Client(d.socket) as c:
            return fans_by_day(c)
    finally:
        d.stop()


def test_a_restart_answers_past_membership_the_same(daemon_factory, tmp_path):
    d, before = stopped_after_fans_by_day(daemon_factory)
    assert fans_by_day_after_a_restart(d) == before


def test_forget_removes_the_user_from_past_membership_and_sizes(daemon_factory):
    d = start_loaded(daemon_factory)
    with Client(d.socket) as c:
        c.forget("u5")
        t = T0 + 8 * DAY
        assert c.segment("fans", at=t)["members"] == [u for u in fans_at(t) if u != "u5"]
        assert c.sizes("fans", t, t, 1)["points"] == [[t, len(fans_at(t)) - 1]]
        assert c.history(user="u5") == {"transitions": []}


def test_a_deleted_segments_file_is_rebuilt_with_its_index_at_the_next_start(daemon_factory):
    d, before = stopped_after_fans_by_day(daemon_factory)
    for suffix in ("", "-wal", "-shm"):
        (d.config.daemon.data_dir / f"segments.db{suffix}").unlink(missing_ok=True)
    assert fans_by_day_after_a_restart(d) == before
