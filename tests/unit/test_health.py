"""segd.daemon.health: what stats reports of actors that are slow, frozen or down."""

from __future__ import annotations

import asyncio

from segd.daemon.health import STALLED_AFTER, Probe, ShardWatch
from segd.errors import Unavailable


class Gated:
    """A probe's target that answers only once ``gate`` is set: its n-th call returns n."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0

    async def fetch(self) -> int:
        self.calls += 1
        await self.gate.wait()
        return self.calls


async def test_a_probe_answers_with_the_last_value_when_the_target_is_slow():
    target = Gated()
    probe = Probe("part", target.fetch, 0)
    assert await probe.read(0.01) is False
    assert probe.value == 0
    target.gate.set()


async def test_a_probe_sends_no_second_call_while_one_is_unanswered():
    target = Gated()
    probe = Probe("part", target.fetch, 0)
    await probe.read(0.01)
    await probe.read(0.01)
    assert target.calls == 1
    target.gate.set()


async def test_a_late_answer_becomes_the_last_known_value():
    target = Gated()
    probe = Probe("part", target.fetch, 0)
    await probe.read(0.01)
    target.gate.set()
    await asyncio.sleep(0)  # one loop turn for the answer's callback, not a wait
    await asyncio.sleep(0)
    assert probe.value == 1
    assert await probe.read(1.0) is True


async def test_a_probe_whose_target_is_down_keeps_the_last_value():
    async def fetch() -> int:
        raise Unavailable("restarting")

    probe = Probe("part", fetch, 3)
    assert await probe.read(1.0) is False
    assert probe.value == 3


def _waiting(past: float) -> ShardWatch:
    """A one-shard watch whose call was sent ``past`` seconds beyond STALLED_AFTER ago."""
    watch = ShardWatch(1)
    watch.sent(0)
    watch._outstanding[0] = {k: t - STALLED_AFTER - past for k, t in watch._outstanding[0].items()}
    return watch


def test_a_shard_with_a_call_waiting_past_the_threshold_is_stalled():
    assert _waiting(1).health(0).state == "stalled"


def test_a_stalled_shard_reports_a_wait_past_the_threshold():
    # just past it: rounding to the millisecond must not report the threshold itself
    health = _waiting(0.0002).health(0)
    assert health.state == "stalled"
    assert health.waiting_s > STALLED_AFTER


def test_a_shard_whose_last_call_failed_is_unreachable_until_it_answers():
    watch = ShardWatch(1)
    watch.settled(0, watch.sent(0), answered=False)
    assert watch.health(0).state == "unreachable"
    watch.settled(0, watch.sent(0), answered=True)
    assert watch.health(0).state == "ok"
    assert watch.health(0).last_reply_s is not None


def test_a_shard_being_recovered_is_recovering():
    watch = ShardWatch(2)
    watch.recovering[1] = True
    assert [watch.health(i).state for i in range(2)] == ["ok", "recovering"]
