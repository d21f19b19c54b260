"""The segment store's rebuild write path (``store.segbuild``, ``segd replay``) against the
live one: the same transitions, in the same batches, give the same files' contents."""

from __future__ import annotations

import random
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.records import Transition
from store.segments import SegmentStore
from tests.unit.test_segment_history import T0, arrival, history, probes, tr

VERSIONS = {"s": "fp-s", "t": "fp-t"}


def shuffled_ties(rng: random.Random, transitions: list[Transition]) -> list[Transition]:
    """The same history with seq no longer following user order among equal times (users
    tied at one instant in a random order, each user's own order kept)."""
    rank = {(t.user, t.at): rng.random() for t in transitions}
    order = sorted(transitions, key=lambda t: (t.at, rank[(t.user, t.at)], t.seq))
    return [tr(t.user, t.kind, t.at, i + 1, t.segment) for i, t in enumerate(order)]


def dump(path) -> dict[str, list[tuple]]:
    """Every row of the segment tables, in key order, and the index names."""
    conn = sqlite3.connect(path / "segments.db")
    out = {
        "transitions": conn.execute(
            "SELECT id, segment, user, kind, at, seq, size FROM transitions ORDER BY id"
        ).fetchall(),
        "members": conn.execute("SELECT * FROM members ORDER BY segment, user").fetchall(),
        "stays": conn.execute("SELECT * FROM stays ORDER BY segment, user, at").fetchall(),
        "versions": conn.execute("SELECT * FROM segment_versions ORDER BY segment").fetchall(),
        "indexes": conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name"
        ).fetchall(),
        "tables": conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall(),
    }
    conn.close()
    return out


def both(tmp_path_factory, batches: list[list[Transition]]) -> tuple[SegmentStore, SegmentStore, list, list]:
    """A live store (reset, then ``apply`` per batch) and a rebuilt one, fed the same batches
    (with a prior history in both, which the reset and the rebuild drop)."""
    old = [tr("zz", "enter", T0 - 99, 1), tr("zz", "enter", T0 - 98, 2, "t")]
    live = SegmentStore(tmp_path_factory.mktemp("live"))
    built = SegmentStore(tmp_path_factory.mktemp("built"), synchronous="normal")
    for s in (live, built):
        s.apply(old)
    live.reset(sorted(VERSIONS), VERSIONS)
    built.rebuild(VERSIONS)
    new_live = [live.apply(b) for b in batches]
    new_built = [built.apply(b) for b in batches]
    live.checkpoint()
    built.checkpoint()
    return live, built, new_live, new_built


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_a_rebuilt_store_holds_exactly_what_the_live_path_records(tmp_path_factory, seed):
    rng = random.Random(seed)
    transitions = shuffled_ties(rng, history(rng, 12, 7, 9)) + history(rng, 6, 5, 6, segment="t")
    batches = arrival(rng, transitions)
    # a recovered shard sends some transitions again, later: not new, nothing moves
    for _ in range(rng.randrange(3)):
        if batches:
            i = rng.randrange(len(batches))
            batches.insert(rng.randrange(i + 1, len(batches) + 1), list(batches[i]))
    live, built, new_live, new_built = both(tmp_path_factory, batches)
    try:
        assert new_built == new_live
        assert dump(built.path.parent) == dump(live.path.parent)
        assert built.sizes() == live.sizes()
        for at in probes(transitions):
            for segment in VERSIONS:
                assert built.size_at(segment, at) == live.size_at(segment, at)
                assert built.members_at(segment, at, None, 1000) == live.members_at(segment, at, None, 1000)
    finally:
        live.close()
        built.close()


def test_a_rebuild_killed_before_its_end_is_reset_at_the_next_open(tmp_path):
    store = SegmentStore(tmp_path, synchronous="normal")
    store.apply([tr("a", "enter", T0, 1)])
    store.rebuild(VERSIONS)
    store.apply([tr("b", "enter", T0 + 1, 2)])
    store.close()  # no checkpoint: the replay was killed
    reopened = SegmentStore(tmp_path)
    try:
        assert reopened.versions() == {}  # so the manager resets every segment
        tables = dump(tmp_path)
        assert ("rebuild_transitions",) not in tables["tables"]
        assert tables["indexes"] == [("stays_stab",), ("transitions_segment_at",), ("transitions_user",)]
        reopened.reset(sorted(VERSIONS), VERSIONS)
        assert reopened.apply([tr("c", "enter", T0 + 2, 3)]) == [tr("c", "enter", T0 + 2, 3)]
        assert reopened.page("s", None, 10) == ["c"]
    finally:
        reopened.close()
