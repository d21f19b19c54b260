"""The router's queue items and its records of a batch on its way (see segd.daemon.router):
what is queued (committed rows, ticks, barriers, forgets, reloads, stop), what a batch in
flight to the shards is waiting for, what an applied batch leaves for the recorder, and when
a batch passed each hop (the ``batch_routed`` trace)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from actors.records import GoalEvent, Row, ShardReply, Transition, UserContext

# ---------------------------------------------------------------------- queue items


@dataclass(slots=True)
class Rows:
    """Rows just committed to the log, in log order; ``at``: when (``time.monotonic``)."""

    rows: list[Row]
    at: float


@dataclass(slots=True)
class Tick:
    """Advance every shard to ``clock`` (wall-mode timers)."""

    clock: float


@dataclass(slots=True)
class Barrier:
    """``sync``: advance every shard to ``clock``, then answer ``routed_seq`` once everything
    queued before is routed."""

    clock: float
    done: asyncio.Future[int]


@dataclass(slots=True)
class Forget:
    """Erase ``user`` from the shards, managers and outbox; answered with segments left."""

    user: str
    done: asyncio.Future[int]


@dataclass(slots=True)
class Between:
    """Run ``fn()`` between two batches (config reload); answered with its result."""

    fn: Callable[[], Awaitable[Any]]
    done: asyncio.Future[Any]


@dataclass(slots=True)
class Stop:
    """Route what is queued before this, then stop."""


Item = Rows | Tick | Barrier | Forget | Between | Stop


@dataclass(slots=True)
class Effects:
    """What applying a batch produced on the shards, to be recorded. ``replayed``: ids of
    transitions a recovery produced again, which go to subscribers only once recorded as new
    (the others went out as soon as the shard answered)."""

    transitions: list[Transition] = field(default_factory=list)
    contexts: dict[str, UserContext] = field(default_factory=dict)
    replayed: set[str] = field(default_factory=set)

    def add(self, reply: ShardReply, *, replayed: bool = False) -> None:
        self.transitions += reply.transitions
        self.contexts.update(reply.contexts)
        if replayed:
            self.replayed.update(t.id for t in reply.transitions)


@dataclass(slots=True)
class InFlight:
    """A batch whose shard calls were sent and are not settled yet: ``calls`` are the shard
    calls (shard index, the call's task), ``answered`` completes once they all have."""

    calls: list[tuple[int, asyncio.Task[ShardReply]]]
    answered: asyncio.Future[list[ShardReply]]
    expects: dict[int, int]  # the applied seq each call told its shard to expect
    sizes: dict[int, int]  # rows sent to each shard
    rows: list[Row]
    clock: float
    upto: int
    trace: Trace


@dataclass(slots=True)
class Unrecorded:
    """A batch applied at the shards whose effects wait for the recorder."""

    effects: Effects
    clock: float
    goals: list[GoalEvent]
    upto: int
    trace: Trace | None


@dataclass(slots=True)
class Trace:
    """When one batch passed each hop (``time.monotonic``), for the ``batch_routed`` log line."""

    first_seq: int
    last_seq: int
    committed: float  # the commit of its first rows returned
    started: float  # the router took it
    applied: float = 0.0  # every shard answered; its transitions went to subscribers
