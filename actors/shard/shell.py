"""The Ray actor hosting one ``ShardCore`` (its options and ``.remote()`` calls live in
``segd.daemon.runtime``).

The ``expect`` protocol: every state-changing call carries the applied seq the router
believes this shard is at. A shard that Ray restarted comes back empty (Ray may even deliver
calls to the new instance without any error), so it refuses such calls with
``ShardReply(ok=False)`` and the router restores it from its snapshot plus the log.

Rows arrive and replies leave as msgpack bytes of ``actors.records`` (``encode``): the daemon
is the busiest process, and msgspec encodes a row in ~35 ns where cloudpickle took ~7 us.
"""

from __future__ import annotations

from typing import Any

import structlog

from actors.model import Model
from actors.records import (
    PreviewPart,
    Row,
    ShardReply,
    ShardSnapshot,
    ShardStats,
    Transition,
    UserView,
    decoder,
    encode,
)
from actors.shard.core import ShardCore
from actors.shard.skipping import SkippingCore
from actors.shard.stepsnap import StepSnapshot

_ROWS = decoder(list[Row])


class UserShard:
    """One shard: a ``ShardCore`` for ``config``'s model, shard ``index`` of ``shards``."""

    def __init__(self, config: Any, index: int, shards: int) -> None:
        self.model = Model.compile(config)
        self.notify = frozenset(c.segment for c in config.campaigns)
        self.core = ShardCore(self.model, self.notify)
        self.index = index
        self.shards = shards
        self._snap: StepSnapshot | None = None  # a snapshot in steps, in progress
        structlog.get_logger("segd.shard").info("shard_started", shard=index, shards=shards)

    def apply(self, rows: bytes, clock: float, expect: int) -> bytes:
        """Apply ``rows`` (encoded ``list[Row]``), then advance to ``clock``; an encoded
        ``ShardReply``."""
        core = self.core
        if core.applied_seq != expect:
            return encode(ShardReply(ok=False, applied_seq=core.applied_seq))
        batch = _ROWS.decode(rows)
        if self._snap is not None:
            self._snap.before(batch, clock)  # copy on write: users serialised before they change
        out = core.apply_batch(batch)
        out += core.advance(clock)
        return encode(self._reply(out))

    def advance(self, clock: float, expect: int) -> bytes:
        """Fire every deadline up to ``clock``; an encoded ``ShardReply``."""
        core = self.core
        if core.applied_seq != expect:
            return encode(ShardReply(ok=False, applied_seq=core.applied_seq))
        if self._snap is not None:
            self._snap.before((), clock)
        return encode(self._reply(core.advance(clock)))

    def _reply(self, transitions: list[Transition]) -> ShardReply:
        return ShardReply(
            ok=True,
            applied_seq=self.core.applied_seq,
            transitions=transitions,
            contexts=self.core.take_contexts(),
        )

    def skip_contexts(self, decided: frozenset[str], triggers: frozenset[tuple[str, str]]) -> bool:
        """Build campaign contexts only for transitions of ``triggers`` ((segment, kind) pairs
        some campaign fires on) that are not ``decided`` (ids whose messages the outbox
        holds): ``actors.shard.skipping``. Only for a shard that has applied nothing (``segd
        replay``, before its first rows); False, and nothing changed, otherwise."""
        if self.core.applied_seq != 0 or self.core.users:
            return False
        self.core = SkippingCore(self.model, self.notify, frozenset(decided), frozenset(triggers))
        return True

    def set_notify(self, notify: frozenset[str]) -> None:
        """The segments whose transitions carry the user's context (config reload)."""
        self.notify = self.core.notify = frozenset(notify)

    def restore(self, state: bytes | None, notify: frozenset[str] | None = None) -> int:
        """Replace the core by a snapshot's (or an empty one); returns its applied seq.
        ``notify`` replaces the constructor's (a restarted shard gets the reloaded one).
        Raises SnapshotMismatch for a snapshot this model cannot use."""
        if notify is not None:
            self.notify = frozenset(notify)
        self._snap = None  # of the core being replaced
        self.core = (
            ShardCore.restore(self.model, state, self.notify) if state else ShardCore(self.model, self.notify)
        )
        return self.core.applied_seq

    def snapshot(self, expect: int) -> ShardSnapshot | None:
        """The core's state, or None if this is not the state the router expects."""
        if self.core.applied_seq != expect:
            return None
        return ShardSnapshot(applied_seq=self.core.applied_seq, state=self.core.snapshot())

    def snapshot_begin(self, expect: int) -> bool:
        """Start a snapshot in steps of the state now (``actors.shard.stepsnap``), if it is
        the one the router expects; False if not. Replaces one in progress."""
        if self.core.applied_seq != expect:
            return False
        self._snap = StepSnapshot(self.core)
        return True

    def snapshot_step(self) -> ShardSnapshot | bool:
        """Serialise a few more users of the snapshot begun: True while some are left, the
        finished snapshot at the end, False if none is in progress (restarted, restored)."""
        snap = self._snap
        if snap is None:
            return False
        done = snap.step()
        if done is None:
            return True
        self._snap = None
        structlog.get_logger("segd.shard").info(
            "snapshot_stepped",
            shard=self.index,
            users=snap.count,
            steps=snap.steps,
            early=snap.early,
            ms=round(snap.seconds * 1000, 1),
            longest_step_ms=round(snap.longest * 1000, 2),
            begin_ms=round(snap.begin_seconds * 1000, 2),
        )
        return done

    def user(self, user: str) -> UserView | None:
        return self.core.user(user)

    def preview(self, when: str) -> PreviewPart:
        """``ShardCore.preview``: who of this shard's users ``when`` holds for now; changes
        nothing, so it needs no ``expect``."""
        return self.core.preview(when)

    def forget(self, user: str, expect: int) -> bytes:
        """Drop ``user``; an encoded ``ShardReply`` whose transitions are the user's exits
        (for membership only: no message is sent for them)."""
        core = self.core
        if core.applied_seq != expect:
            return encode(ShardReply(ok=False, applied_seq=core.applied_seq))
        self._snap = None  # it holds the user: it must never be stored
        return encode(ShardReply(ok=True, applied_seq=core.applied_seq, transitions=core.forget(user)))

    def stats(self) -> ShardStats:
        return ShardStats(users=self.core.users, applied_seq=self.core.applied_seq, clock=self.core.clock)
