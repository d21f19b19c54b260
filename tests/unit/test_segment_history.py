"""The segment store's history index on a real SQLite file: sizes and members at a past
logical time, against a brute-force reading of the same transitions."""

from __future__ import annotations

import random
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.records import Transition
from store.schema import stay_span
from store.segments import SegmentStore

T0 = 1_700_000_000.0


def tr(user: str, kind: str, at: float, seq: int, segment: str = "s") -> Transition:
    return Transition(
        id=f"{segment}:{user}:{seq}:{kind}", segment=segment, user=user, kind=kind, at=at, seq=seq
    )


def history(
    rng: random.Random, users: int, per_user: int, times: int, segment: str = "s"
) -> list[Transition]:
    """Alternating enters and exits per user at times drawn from ``times`` instants (ties
    between users and within one user), seq following time order: a valid history, sorted."""
    events = []
    for u in range(users):
        for j, t in enumerate(sorted(rng.randrange(times) for _ in range(rng.randrange(per_user + 1)))):
            events.append((float(t), f"u{u:03d}", "enter" if j % 2 == 0 else "exit"))
    # seq follows time; a user's own transitions keep their order (sorted by time above)
    events.sort(key=lambda e: e[0])
    return [tr(u, k, T0 + t, i + 1, segment) for i, (t, u, k) in enumerate(events)]


def arrival(rng: random.Random, transitions: list[Transition]) -> list[list[Transition]]:
    """The transitions in a random interleaving that keeps each user's order, in random batches."""
    per_user: dict[str, list[Transition]] = {}
    for t in transitions:
        per_user.setdefault(t.user, []).append(t)
    queues = [list(reversed(q)) for q in per_user.values()]
    order = []
    while queues:
        q = rng.choice(queues)
        order.append(q.pop())
        if not q:
            queues.remove(q)
    batches, i = [], 0
    while i < len(order):
        n = rng.randrange(1, 8)
        batches.append(order[i : i + n])
        i += n
    return batches


def members_at(transitions: list[Transition], segment: str, at: float) -> list[str]:
    """The reference: apply every transition with at <= T in history order."""
    members: set[str] = set()
    for t in sorted(transitions, key=lambda t: (t.at, t.seq, t.user, t.id)):
        if t.segment == segment and t.at <= at:
            (members.add if t.kind == "enter" else members.discard)(t.user)
    return sorted(members)


def probes(transitions: list[Transition]) -> list[float]:
    """Every transition time, just before and after each, and times outside the history."""
    ats = sorted({t.at for t in transitions})
    return [T0 - 10, *ats, *(a - 0.5 for a in ats), *(a + 0.5 for a in ats), T0 + 10**6]


@pytest.fixture
def store(tmp_path):
    s = SegmentStore(tmp_path)
    yield s
    s.close()


# ---------------------------------------------------------------------- size and members at T


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_size_and_members_at_any_time_follow_every_transition_at_or_before_it(tmp_path_factory, seed):
    rng = random.Random(seed)
    transitions = history(rng, users=rng.randrange(1, 12), per_user=6, times=rng.choice([3, 10, 100]))
    store = SegmentStore(tmp_path_factory.mktemp("h"))
    for batch in arrival(rng, transitions):
        store.apply(batch)
    for at in probes(transitions):
        expected = members_at(transitions, "s", at)
        assert store.size_at("s", at) == len(expected)
        assert store.walk("s", at, "", 10**6) == expected
        assert store.stab("s", at, "", 10**6) == expected
        page = store.members_at("s", at, None, 10**6)
        assert (page.size, page.members, page.next) == (len(expected), expected, None)
    store.close()


def test_a_user_entering_at_exactly_t_is_a_member_at_t_and_one_leaving_at_t_is_not(store):
    store.apply([tr("a", "enter", T0, 1), tr("b", "enter", T0, 2), tr("b", "exit", T0 + 5, 3)])
    store.apply([tr("c", "enter", T0 + 5, 4)])
    assert store.members_at("s", T0 + 5, None, 10).members == ["a", "c"]
    assert store.members_at("s", T0 + 4.999, None, 10).members == ["a", "b"]


def test_members_at_pages_with_the_after_cursor(store):
    store.apply([tr(f"u{i:02d}", "enter", T0 + i, i + 1) for i in range(25)])
    store.apply([tr("u03", "exit", T0 + 30, 26)])
    first = store.members_at("s", T0 + 100, None, 10)
    assert first.size == 24
    assert first.members == [f"u{i:02d}" for i in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10)]
    assert first.next == "u10"
    second = store.members_at("s", T0 + 100, first.next, 10)
    third = store.members_at("s", T0 + 100, second.next, 10)
    assert second.members == [f"u{i:02d}" for i in range(11, 21)]
    assert (third.members, third.next) == ([f"u{i:02d}" for i in range(21, 25)], None)


def test_members_at_before_any_transition_is_empty(store):
    store.apply([tr("a", "enter", T0, 1)])
    page = store.members_at("s", T0 - 1, None, 10)
    assert (page.size, page.members, page.next) == (0, [], None)


def test_the_two_plans_agree_on_dense_and_sparse_histories(store):
    rng = random.Random(3)
    dense = history(rng, users=200, per_user=4, times=50, segment="dense")
    sparse = []
    for u in range(200):  # short stays: few members at any time
        start = rng.uniform(0, 10_000)
        sparse += [
            ("sparse", f"u{u:03d}", "enter", start),
            ("sparse", f"u{u:03d}", "exit", start + rng.uniform(0, 30)),
        ]
    sparse.sort(key=lambda e: e[3])
    store.apply(dense)
    store.apply([tr(u, k, T0 + at, 10_000 + i, seg) for i, (seg, u, k, at) in enumerate(sparse)])
    for segment in ("dense", "sparse"):
        for at in [T0 + x for x in range(-1, 10_050, 97)]:
            for after in ("", "u050", "u199"):
                assert store.walk(segment, at, after, 7) == store.stab(segment, at, after, 7)


def test_stays_longer_than_any_span_bucket_boundary_are_found(store):
    # durations exactly at, just below and just above powers of two
    stays = [2.0**k + d for k in range(0, 40, 3) for d in (-1e-3, 0.0, 1e-3)]
    rows = []
    for i, d in enumerate(stays):
        rows += [tr(f"u{i:03d}", "enter", T0, 2 * i + 1), tr(f"u{i:03d}", "exit", T0 + d, 2 * i + 2)]
    store.apply(rows)
    for i, d in enumerate(stays):
        inside = T0 + d - max(d * 1e-12, 1e-6)
        assert f"u{i:03d}" in store.stab("s", inside, "", 10**6)
        assert f"u{i:03d}" not in store.stab("s", T0 + d, "", 10**6)


def test_stay_span_is_the_smallest_power_of_two_holding_the_stay():
    assert [stay_span(d) for d in (1e-9, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 4.5, 1e308)] == [
        0,
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        1024,
    ]


# ---------------------------------------------------------------------- sizes over time


def test_size_points_give_the_size_at_each_step_including_transitions_exactly_at_a_point(store):
    store.apply([tr("a", "enter", T0 + 10, 1), tr("b", "enter", T0 + 20, 2), tr("a", "exit", T0 + 25, 3)])
    assert store.size_points("s", T0, 10.0, 4) == [(T0, 0), (T0 + 10, 1), (T0 + 20, 2), (T0 + 30, 1)]


def test_size_points_of_a_segment_without_history_are_zero(store):
    assert store.size_points("nothing", T0, 1.0, 3) == [(T0, 0), (T0 + 1, 0), (T0 + 2, 0)]


# ---------------------------------------------------------------------- writes keep the index true


def test_transitions_arriving_before_stored_later_ones_fix_the_later_sizes(store):
    store.apply([tr("a", "enter", T0 + 10, 5), tr("a", "exit", T0 + 30, 7)])
    store.apply([tr("b", "enter", T0 + 5, 3), tr("c", "enter", T0 + 20, 6)])  # b and c were late
    assert [store.size_at("s", T0 + x) for x in (5, 10, 20, 30)] == [1, 2, 3, 2]


def test_applying_the_same_transitions_again_changes_nothing(store):
    batch = [tr("a", "enter", T0, 1), tr("b", "enter", T0 + 1, 2), tr("a", "exit", T0 + 2, 3)]
    assert store.apply(batch) == batch
    assert store.apply(list(reversed(batch))) == []
    assert [store.size_at("s", T0 + x) for x in (0, 1, 2)] == [1, 2, 1]


def test_forget_removes_the_user_from_every_size_and_page_of_the_past(store):
    rng = random.Random(5)
    transitions = history(rng, users=10, per_user=6, times=20)
    store.apply(transitions)
    store.forget("u004")
    rest = [t for t in transitions if t.user != "u004"]
    for at in probes(transitions):
        expected = members_at(rest, "s", at)
        assert store.size_at("s", at) == len(expected)
        assert store.members_at("s", at, None, 10**6).members == expected


def test_reset_drops_a_segments_history_index(store):
    store.apply([tr("a", "enter", T0, 1)])
    store.reset(["s"], {})
    assert store.size_at("s", T0) == 0
    assert store.members_at("s", T0, None, 10).members == []


def test_history_filters_by_user_and_time_in_history_order(store):
    store.apply(
        [
            tr("a", "enter", T0 + 1, 1, "x"),
            tr("b", "enter", T0 + 1, 1, "y"),
            tr("a", "enter", T0 + 2, 2, "y"),
            tr("a", "exit", T0 + 3, 3, "x"),
        ]
    )
    got = store.history(["x", "y"], "a", None, None, 10)
    assert [(t.segment, t.kind, t.at) for t in got] == [
        ("x", "enter", T0 + 1),
        ("y", "enter", T0 + 2),
        ("x", "exit", T0 + 3),
    ]
    assert [t.at for t in store.history(["x", "y"], "a", T0 + 2, T0 + 2, 10)] == [T0 + 2]
    assert len(store.history(["x", "y"], None, None, None, 2)) == 2


# ---------------------------------------------------------------------- an older file


def test_a_segments_file_of_an_older_segd_gains_the_index_from_its_rows(tmp_path):
    rng = random.Random(9)
    transitions = history(rng, users=8, per_user=6, times=15)
    old = sqlite3.connect(tmp_path / "segments.db")
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO meta VALUES ('schema_version', '2');"
        "CREATE TABLE transitions (id TEXT PRIMARY KEY, segment TEXT NOT NULL, user TEXT NOT NULL, "
        "kind TEXT NOT NULL, at FLOAT NOT NULL, seq INTEGER NOT NULL);"
        "CREATE INDEX transitions_segment_at ON transitions (segment, at, seq, user);"
        "CREATE INDEX transitions_user ON transitions (user);"
        "CREATE TABLE members (segment TEXT NOT NULL, user TEXT NOT NULL, PRIMARY KEY (segment, user)) WITHOUT ROWID;"
        "CREATE TABLE segment_versions (segment TEXT PRIMARY KEY, fingerprint TEXT);"
    )
    old.executemany(
        "INSERT INTO transitions VALUES (?, ?, ?, ?, ?, ?)",
        [(t.id, t.segment, t.user, t.kind, t.at, t.seq) for t in transitions],
    )
    old.executemany(  # the old store kept the current members beside the history
        "INSERT INTO members VALUES ('s', ?)", [(u,) for u in members_at(transitions, "s", T0 + 10**6)]
    )
    old.commit()
    old.close()
    store = SegmentStore(tmp_path)
    for at in probes(transitions):
        expected = members_at(transitions, "s", at)
        assert store.size_at("s", at) == len(expected)
        assert store.walk("s", at, "", 10**6) == expected
        assert store.stab("s", at, "", 10**6) == expected
    store.close()
