"""A shard core that builds no campaign context for transitions already decided (``segd replay``).

A context (the user's traits and aggregates when a transition happens) is only read by the
dispatcher, and only to decide a message it has never recorded: a trigger whose message ids
are all in the outbox is dropped as a duplicate before any decision. In a replay that is
every transition the live run decided, and building their contexts was ~9-12% of the
shards' CPU. ``segd.daemon.rebuild.decided_by_shard`` finds, from the outbox, the
transitions all of whose campaigns' messages are recorded; this core skips exactly those,
and the transitions of a (segment, kind) no campaign fires on (``CampaignPolicy.triggers``:
the exits of a segment whose campaigns fire on enters), and builds every other context as
``ShardCore`` does.
"""

from __future__ import annotations

from typing import Any

from actors.model import Model
from actors.records import Transition
from actors.shard.core import ShardCore


class SkippingCore(ShardCore):
    """``ShardCore`` whose ``contexts`` hold only the transitions of ``triggers`` ((segment,
    kind) pairs) whose id is not in ``decided``."""

    def __init__(
        self,
        model: Model,
        notify: frozenset[str],
        decided: frozenset[str],
        triggers: frozenset[tuple[str, str]],
    ) -> None:
        super().__init__(model, notify)
        self.decided = decided
        self.triggers = triggers

    def _note(self, actor: Any, transitions: list[Transition], now: float) -> None:
        decided, triggers = self.decided, self.triggers
        left = [t for t in transitions if (t.segment, t.kind) in triggers and t.id not in decided]
        if left:
            super()._note(actor, left, now)
