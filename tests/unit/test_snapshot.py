"""A shard snapshot's layout (actors.shard.snapshot): one writer for the one-shot and the
stepped snapshot, one reader for both."""

from __future__ import annotations

import msgpack
import pytest

from actors.shard.core import ShardCore
from actors.shard.snapshot import FORMAT, Head, SnapshotMismatch, Writer, read
from actors.shard.stepsnap import StepSnapshot
from actors.user import Model
from segd.config import parse_config
from tests.unit.test_shard import CONFIG, T0
from tests.unit.test_stepsnap import _populated


@pytest.fixture
def m() -> Model:
    return Model.compile(parse_config(CONFIG, label="test.toml"))


def test_the_one_shot_snapshot_is_the_documented_msgpack_map(m):
    # the bytes every earlier segd wrote (one packb of this map), so its snapshots still restore
    shard = _populated(m)
    documented = {
        "format": FORMAT,
        "fingerprint": m.fingerprint,
        "applied_seq": shard.applied_seq,
        "clock": shard.clock,
        "users": [[u, a.to_state()] for u, a in shard._users.items()],
    }
    assert shard.snapshot() == msgpack.packb(documented, use_bin_type=True)


def test_a_stepped_snapshot_with_nothing_between_its_steps_has_the_one_shot_bytes(m):
    shard = _populated(m)
    snap = StepSnapshot(shard)
    while (done := snap.step(budget=0.0)) is None:
        pass
    assert snap.steps > 1
    assert done.state == shard.snapshot()


def test_the_reader_checks_the_head_before_it_loads_a_user(m):
    blob = Writer().join(Head(fingerprint="other", applied_seq=1, clock=T0), [Writer().user("a", {})])
    loaded: dict[str, object] = {}

    def load(user: str, state: object) -> object:
        raise AssertionError(f"loaded {user} from a snapshot of another model")

    with pytest.raises(SnapshotMismatch, match="fingerprint 'other' differs"):
        read(blob, m.fingerprint, loaded, load)


def test_users_before_the_head_are_not_a_snapshot(m):
    # the reader checks the head when it meets the users: the writer puts them last
    head = {"format": FORMAT, "fingerprint": m.fingerprint, "applied_seq": 0, "clock": T0}
    blob = msgpack.packb({"users": [], **head})
    with pytest.raises(SnapshotMismatch, match="not a shard snapshot of format 1"):
        ShardCore.restore(m, blob)


def test_a_head_without_its_applied_seq_is_a_corrupt_snapshot(m):
    blob = msgpack.packb({"format": FORMAT, "fingerprint": m.fingerprint, "clock": T0, "users": []})
    with pytest.raises(SnapshotMismatch, match="corrupt shard snapshot: 'applied_seq'"):
        ShardCore.restore(m, blob)
