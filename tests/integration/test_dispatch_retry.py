"""A dispatcher whose outbox write failed and is retried (segd.daemon.stores retries a
failing derived store): the retry decides and converts exactly as one successful call
would. The Dispatcher shell on a real outbox.db, made to fail by a second connection holding
SQLite's write lock, as another writer or a stalled disk would."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from actors.dispatch.shell import Dispatcher
from actors.records import GoalEvent, Transition, Trigger, UserContext, encode
from segd.errors import StoreError
from tests.helpers import make_config

T0 = 1_700_000_000.0
CONFIG = """
[aggregates.views]
kind = "count"
event = "view"

[segments.fans]
when = "views >= 1"

[channels.out]
kind = "file"
path = "messages.jsonl"

[campaigns.promo]
segment = "fans"
channel = "out"
template = "Hi"
goal = { event = "purchase", within = "1d" }

[throttle]
per_user = [{ max = 1, per = "1d" }]
"""


def enter(user: str, n: int) -> bytes:
    t = Transition(id=f"t-{user}-{n}", segment="fans", user=user, kind="enter", at=T0 + n, seq=n)
    return encode([Trigger(transition=t, context=UserContext(traits={}, aggregates={"views": 1}))])


def goal(user: str, n: int) -> bytes:
    return encode([GoalEvent(user=user, event="purchase", ts=T0 + n, seq=n)])


NONE = encode([])


class Locked:
    """A second connection holding outbox.db's write lock while inside the block."""

    def __init__(self, d: Dispatcher) -> None:
        self.d = d

    def __enter__(self) -> None:
        self.d.store.conn.execute("PRAGMA busy_timeout = 50")  # fail fast instead of in 10 s
        self.other = sqlite3.connect(self.d.store.path, isolation_level=None)
        self.other.execute("BEGIN IMMEDIATE")

    def __exit__(self, *exc: object) -> None:
        self.other.execute("ROLLBACK")
        self.other.close()


@pytest.fixture
def dispatcher(tmp_path):
    config = make_config(tmp_path, CONFIG, daemon='clock = "event"')
    d = Dispatcher(config, {}, T0, deliver=False)
    yield d
    d.store.close()


def rows(d: Dispatcher, sql: str) -> list[tuple]:
    return d.store.conn.execute(sql).fetchall()


def test_a_failed_decision_write_retried_counts_the_cap_once(dispatcher):
    d = dispatcher
    with Locked(d), pytest.raises(StoreError):
        asyncio.run(d.submit(enter("alice", 1), NONE, T0 + 1))
    assert asyncio.run(d.submit(enter("alice", 1), NONE, T0 + 1)) == 1  # the retry
    assert rows(d, "SELECT status FROM messages") == [("pending",)]


def test_a_failed_conversion_write_retried_records_the_conversion(dispatcher):
    d = dispatcher
    asyncio.run(d.submit(enter("alice", 1), NONE, T0 + 1))
    with Locked(d), pytest.raises(StoreError):
        asyncio.run(d.submit(NONE, goal("alice", 2), T0 + 2))
    asyncio.run(d.submit(NONE, goal("alice", 2), T0 + 2))  # the retry
    assert [r[0] for r in rows(d, "SELECT user FROM conversions")] == ["alice"]
