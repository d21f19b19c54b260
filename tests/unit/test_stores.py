"""The derived stores' retry loop (segd.daemon.stores): backoff, degraded state, one log event
on entering and one on recovering, giving up once closing."""

from __future__ import annotations

import asyncio
import time

import pytest
import structlog

from segd.daemon.stores import Stores
from segd.errors import StoreError


class Flaky:
    """A store write that fails ``failures`` times (a full disk), then returns ``"done"``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[float] = []

    async def __call__(self, value: str) -> str:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise StoreError("segment store commit failed: database or disk is full")
        return value


def test_a_failing_write_is_retried_until_it_succeeds_and_returns_its_result():
    flaky = Flaky(3)
    assert asyncio.run(Stores(first=0.001, cap=0.004).persist("segments.db", flaky, "done")) == "done"
    assert len(flaky.calls) == 4


def test_the_backoff_doubles_from_first_up_to_the_cap():
    flaky = Flaky(5)
    asyncio.run(Stores(first=0.02, cap=0.08).persist("segments.db", flaky, "done"))
    gaps = [b - a for a, b in zip(flaky.calls, flaky.calls[1:], strict=False)]
    for gap, least in zip(gaps, [0.02, 0.04, 0.08, 0.08, 0.08], strict=True):
        assert gap >= least * 0.9


def test_degraded_names_the_store_and_the_reason_while_it_fails_and_is_empty_after():
    stores = Stores(first=0.05, cap=0.05)
    seen = []

    async def run() -> None:
        task = asyncio.create_task(stores.persist("segments.db", Flaky(2), "done"))
        await asyncio.sleep(0.02)
        seen.append(stores.degraded)
        await task
        seen.append(stores.degraded)

    asyncio.run(run())
    [failing] = seen[0]
    assert failing["store"] == "segments.db"
    assert failing["reason"] == "segment store commit failed: database or disk is full"
    assert failing["attempts"] == 1
    assert seen[1] == []


def test_one_log_event_on_entering_and_one_on_recovering():
    with structlog.testing.capture_logs() as logs:
        asyncio.run(Stores(first=0.001, cap=0.001).persist("outbox.db", Flaky(4), "done"))
    events = [(e["event"], e["store"]) for e in logs if e["event"].startswith("store_")]
    assert events == [("store_degraded", "outbox.db"), ("store_recovered", "outbox.db")]
    assert logs[-1]["attempts"] == 4


def test_a_write_that_works_at_once_logs_nothing_and_degrades_nothing():
    stores = Stores()
    with structlog.testing.capture_logs() as logs:
        asyncio.run(stores.persist("snapshots.db", Flaky(0), "done"))
    assert logs == [] and stores.degraded == []


def test_closing_stops_the_backoff_and_the_next_failure_propagates():
    stores = Stores(first=30.0, cap=30.0)
    flaky = Flaky(10**9)

    async def run() -> float:
        task = asyncio.create_task(stores.persist("segments.db", flaky, "done"))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        stores.close()
        with pytest.raises(StoreError, match="disk is full"):
            await asyncio.wait_for(task, 5)
        return time.monotonic() - started

    assert asyncio.run(run()) < 5
    assert len(flaky.calls) == 2  # the first failure, then one more try once closing


def test_errors_other_than_a_store_error_propagate_at_once():
    calls = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("a bug, not a full disk")

    with pytest.raises(ValueError):
        asyncio.run(Stores(first=0.001).persist("segments.db", broken))
    assert calls == [1]


def test_a_store_error_wrapped_by_ray_is_reported_by_its_own_message():
    class Wrapped(StoreError):
        def __str__(self) -> str:
            return "ray::SegmentManager.apply()\n  File x, line 1\nsegd.errors.StoreError: segment store commit failed: disk I/O error\n"

    async def fails_once(state: list[int]) -> None:
        state.append(1)
        if len(state) == 1:
            raise Wrapped()

    stores = Stores(first=0.2, cap=0.2)
    seen = []

    async def run() -> None:
        task = asyncio.create_task(stores.persist("segments.db", fails_once, []))
        await asyncio.sleep(0.05)
        seen.extend(stores.degraded)
        await task

    asyncio.run(run())
    assert seen[0]["reason"] == "segment store commit failed: disk I/O error"
