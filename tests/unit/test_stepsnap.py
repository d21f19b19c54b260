"""A shard snapshot in steps (actors.shard.stepsnap): the state at ``begin``, whatever the
shard applies between the steps."""

from __future__ import annotations

import msgpack

from actors.records import ShardReply, ShardSnapshot, decoder, encode
from actors.shard.core import ShardCore
from actors.shard.shell import UserShard
from actors.shard.stepsnap import StepSnapshot
from actors.user import Model
from segd.config import parse_config
from tests.unit.test_shard import CONFIG, DAY, T0, identify, track

USERS = 300  # several steps of 64 users each with a zero budget


def _meaning(blob: bytes) -> tuple[int, float, list[list[object]]]:
    doc = msgpack.unpackb(blob, raw=False)
    return doc["applied_seq"], doc["clock"], sorted(doc["users"])


def _populated(m: Model) -> ShardCore:
    shard = ShardCore(m)
    shard.apply_batch([track(i + 1, f"u{i}", "view", T0 + i) for i in range(USERS)])
    shard.apply_batch([identify(USERS + 1, "u7", T0 + USERS, plan="vip")])
    return shard


def _later(seq: int) -> list:
    # events for users not serialised yet, and a clock 20 days on: every user's timers fire
    return [track(seq, "u299", "view", T0 + 20 * DAY), identify(seq + 1, "u150", T0 + 20 * DAY, plan="x")]


def test_a_stepped_snapshot_holds_the_state_at_its_begin_while_batches_change_it():
    m = Model.compile(parse_config(CONFIG, label="test.toml"))
    shard = _populated(m)
    at_begin = shard.snapshot()
    snap = StepSnapshot(shard)
    seq, steps = USERS + 2, 0
    while (done := snap.step(budget=0.0)) is None:
        steps += 1
        # first a user serialised already and one not yet; then 20 days on (every timer fires)
        clock = T0 + USERS + steps if steps < 3 else T0 + 20 * DAY
        rows = [track(seq, "u0", "view", clock), track(seq + 1, "u298", "view", clock)]
        rows = rows if steps < 3 else _later(seq)
        snap.before(rows, clock)
        shard.apply_batch(rows)
        shard.advance(clock)
        seq += len(rows)
    assert steps >= 3
    assert _meaning(shard.snapshot()) != _meaning(at_begin)  # the shard did change meanwhile
    assert done.applied_seq == USERS + 1
    assert _meaning(done.state) == _meaning(at_begin)


def test_a_stepped_snapshot_restores_like_the_one_shot_one():
    m = Model.compile(parse_config(CONFIG, label="test.toml"))
    shard = _populated(m)
    done = StepSnapshot(shard).step(budget=10.0)
    assert done is not None
    restored = ShardCore.restore(m, done.state)
    assert (restored.applied_seq, restored.clock, restored.users) == (shard.applied_seq, shard.clock, USERS)
    tail = _later(USERS + 2)
    assert restored.apply_batch(tail) == shard.apply_batch(tail)
    assert restored.user("u150") == shard.user("u150")


_REPLY = decoder(ShardReply)


def _shard() -> UserShard:
    shard = UserShard(parse_config(CONFIG, label="test.toml"), 0, 1)
    reply = _REPLY.decode(
        shard.apply(encode([track(i + 1, f"u{i}", "view", T0) for i in range(USERS)]), T0, 0)
    )
    assert reply.ok
    return shard


def test_the_shard_steps_a_snapshot_to_its_end_between_applies():
    shard = _shard()
    assert shard.snapshot_begin(expect=USERS)
    assert _REPLY.decode(shard.apply(encode(_later(USERS + 1)), T0 + 20 * DAY, USERS)).ok
    steps: list[ShardSnapshot | bool] = []
    while (step := shard.snapshot_step()) is True:
        steps.append(step)
    assert isinstance(step, ShardSnapshot) and step.applied_seq == USERS
    assert shard.snapshot_step() is False  # finished: none in progress


def test_the_shard_refuses_a_snapshot_at_another_seq():
    assert _shard().snapshot_begin(expect=USERS - 1) is False


def test_forget_drops_the_snapshot_in_progress():
    shard = _shard()
    assert shard.snapshot_begin(expect=USERS)
    assert _REPLY.decode(shard.forget("u3", USERS)).ok
    assert shard.snapshot_step() is False  # it held the forgotten user: never to be stored
