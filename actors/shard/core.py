"""A shard: hosts the user actors of one hash range and their deadlines (DESIGN "Shape").

``ShardCore`` is the pure core: plain Python, no Ray, no I/O, no clock of its own. The Ray
actor shell around it (``UserShard``, below) stays thin and imports Ray only inside methods.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

import msgpack

from actors.model import Model
from actors.user import Transition, UserActor, transition_id
from segd.errors import SegdError

__all__ = ["ShardCore", "SnapshotMismatch", "Row", "UserShard"]

#: One log row as the daemon ships it: (seq, user, type, event, ts, clock, body), where body
#: is the msgpack bytes of the props (track) or traits (identify) map, or None/b"".
Row = tuple[int, str, str, str | None, float | None, float, bytes | None]

_SNAPSHOT_FORMAT = 1


class SnapshotMismatch(SegdError):
    """A shard snapshot cannot be used with this model (other fingerprint or format, or not a
    snapshot at all): rebuild the shard by replaying the log from the start."""


class ShardCore:
    """Many ``UserActor``s plus one heap of their deadlines.

    - ``applied_seq``: the largest seq applied (0 before any).
    - ``clock``: the largest clock seen (rows or ``advance``); never goes backwards. Rows must
      not carry a clock below one already passed to ``advance`` (the log guarantees it).
    - Deadline heap entries are ``(deadline, user)``; an entry whose deadline is no longer the
      user's current one is stale and skipped when popped (and the heap is compacted when
      stale entries pile up).
    """

    def __init__(self, model: Model, notify: frozenset[str] = frozenset()) -> None:
        self.model = model
        self.applied_seq = 0
        self.clock = float("-inf")
        self._users: dict[str, UserActor] = {}
        self._heap: list[tuple[float, str]] = []
        # Segments with campaigns: their transitions carry the user's context (traits and
        # aggregates at that moment) for the dispatcher, collected here until taken.
        self.notify = notify
        self.contexts: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ events and time

    def apply_batch(self, rows: Iterable[Row]) -> list[Transition]:
        """Apply log rows in log order, then ``advance`` to the largest clock seen.

        Users are created on first sight. Returns every transition, each user's in order.
        """
        out: list[Transition] = []
        users, heap, model = self._users, self._heap, self.model
        applied, top = self.applied_seq, self.clock
        unpack = msgpack.unpackb
        for seq, user, type_, event, ts, clock, body in rows:
            actor = users.get(user)
            if actor is None:
                actor = users[user] = UserActor(model, user)
            before = actor.deadline
            got = actor.apply(seq, type_, event, ts, clock, unpack(body, raw=False) if body else None)
            if got:
                out += got
                if self.notify:
                    self._note(actor, got, clock)
            after = actor.deadline
            if after is not None and after != before:
                heapq.heappush(heap, (after, actor.user))  # the actor's id str: one per user
            if seq > applied:
                applied = seq
            if clock > top:
                top = clock
        self.applied_seq = applied
        if len(heap) > 2 * len(users) + 1024:
            self._compact()
        out += self.advance(top)
        return out

    def advance(self, clock: float) -> list[Transition]:
        """Fire every user deadline <= ``clock`` in (deadline, user) order; return transitions."""
        if clock > self.clock:
            self.clock = float(clock)
        out: list[Transition] = []
        heap, users = self._heap, self._users
        while heap and heap[0][0] <= clock:
            deadline, user = heapq.heappop(heap)
            actor = users.get(user)
            if actor is None or actor.deadline != deadline:
                continue  # stale: the user moved its deadline or was forgotten
            got = actor.advance(deadline)
            if got:
                out += got
                if self.notify:
                    self._note(actor, got, deadline)
            if actor.deadline is not None:
                heapq.heappush(heap, (actor.deadline, user))
        return out

    def _note(self, actor: UserActor, transitions: list[Transition], now: float) -> None:
        ctx = None
        for t in transitions:
            if t.segment in self.notify:
                if ctx is None:
                    view = actor.view(now)
                    ctx = {"traits": view["traits"], "aggregates": view["aggregates"]}
                self.contexts[t.id] = ctx

    def take_contexts(self) -> dict[str, dict[str, Any]]:
        """The contexts collected since the last call, by transition id."""
        out, self.contexts = self.contexts, {}
        return out

    def _compact(self) -> None:
        self._heap = [(a.deadline, u) for u, a in self._users.items() if a.deadline is not None]
        heapq.heapify(self._heap)

    # ------------------------------------------------------------------ queries

    @property
    def users(self) -> int:
        """Number of users hosted."""
        return len(self._users)

    def user(self, user_id: str) -> dict[str, Any] | None:
        """The ``user`` op's answer at the shard clock, or None for a user never seen."""
        actor = self._users.get(user_id)
        return None if actor is None else actor.view(self.clock)

    def members(self, segment: str) -> list[str]:
        """Sorted ids of this shard's members of ``segment``. Raises KeyError if unknown."""
        seg = self.model.seg_by_name.get(segment)
        if seg is None:
            raise KeyError(f"unknown segment {segment!r}")
        bit = seg.bit
        return sorted(u for u, a in self._users.items() if a.members & bit)

    def forget(self, user: str) -> list[Transition]:
        """Remove a user; return the exits this causes (one per segment it was in).

        The exits have ``at`` = the shard clock, ``seq`` = the user's last seq and a "forget"
        cause in their ids. They are for the segment managers' member sets only: the caller
        must not send messages for them (SPEC ``forget``). Unknown user: [].
        """
        actor = self._users.pop(user, None)
        if actor is None:
            return []
        at, seq = self.clock, actor.last_seq
        return [
            Transition(transition_id(name, user, "exit", seq, at, "f"), name, user, "exit", at, seq)
            for name in self._in_order(actor.members)
        ]

    def _in_order(self, mask: int) -> list[str]:
        return [s.name for s in self.model.segs if mask & s.bit]

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        """Everything needed to resume: applied_seq, clock, model fingerprint, all users."""
        return msgpack.packb(
            {
                "format": _SNAPSHOT_FORMAT,
                "fingerprint": self.model.fingerprint,
                "applied_seq": self.applied_seq,
                "clock": self.clock,
                "users": [[u, a.to_state()] for u, a in self._users.items()],
            },
            use_bin_type=True,
        )

    @classmethod
    def restore(cls, model: Model, blob: bytes, notify: frozenset[str] = frozenset()) -> ShardCore:
        """Rebuild a shard from ``snapshot()`` bytes; then replay the log after ``applied_seq``.

        Raises SnapshotMismatch if the snapshot was taken with another model fingerprint or
        format, or is not a shard snapshot: the caller then rebuilds from the log.
        """
        try:
            doc = msgpack.unpackb(blob, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise SnapshotMismatch(f"not a shard snapshot: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != _SNAPSHOT_FORMAT:
            raise SnapshotMismatch(f"not a shard snapshot of format {_SNAPSHOT_FORMAT}")
        if doc.get("fingerprint") != model.fingerprint:
            raise SnapshotMismatch(
                f"snapshot model fingerprint {doc.get('fingerprint')!r} differs from the config's "
                f"{model.fingerprint!r} (aggregates or segments changed): rebuild from the log"
            )
        shard = cls(model, notify)
        shard.applied_seq = doc["applied_seq"]
        shard.clock = doc["clock"]
        try:
            for user, state in doc["users"]:
                shard._users[user] = UserActor.from_state(model, user, state)
        except (ValueError, TypeError, KeyError) as exc:
            raise SnapshotMismatch(f"corrupt shard snapshot: {exc}") from exc
        shard._compact()
        return shard


# ---------------------------------------------------------------------- the Ray shell


class UserShard:
    """The Ray actor hosting one ``ShardCore`` (options and ``.remote()`` live in segd.daemon.runtime).

    State-changing calls carry ``expect``, the applied seq the router believes this shard is
    at. A shard that Ray restarted comes back empty, so it refuses such calls (returns
    ``(False, applied_seq, [])``) and the router restores it from its snapshot plus the log.
    Successful calls return ``(True, applied_seq, transitions)``.
    """

    def __init__(self, config: Any, index: int, shards: int) -> None:
        import structlog

        self.model = Model.compile(config)
        self.notify = frozenset(c.segment for c in config.campaigns)
        self.core = ShardCore(self.model, self.notify)
        self.index = index
        self.shards = shards
        structlog.get_logger("segd.shard").info("shard_started", shard=index, shards=shards)

    def apply(self, rows: bytes | list, clock: float, expect: int) -> tuple[bool, int, list]:
        """Apply ``rows`` (a list of ``Row`` tuples, or their msgpack) then advance to ``clock``."""
        core = self.core
        if core.applied_seq != expect:
            return False, core.applied_seq, []
        if isinstance(rows, bytes):
            rows = msgpack.unpackb(rows, use_list=False)
        out = core.apply_batch(rows)
        out += core.advance(clock)
        return True, core.applied_seq, self._with_contexts(out)

    def advance(self, clock: float, expect: int) -> tuple[bool, int, list]:
        core = self.core
        if core.applied_seq != expect:
            return False, core.applied_seq, []
        return True, core.applied_seq, self._with_contexts(core.advance(clock))

    def _with_contexts(self, transitions: list[Transition]) -> list[tuple]:
        """Transitions as 7-tuples: the 6 fields of SPEC's map, then the context or None."""
        ctx = self.core.take_contexts()
        return [(*t, ctx.get(t.id)) for t in transitions]

    def set_notify(self, notify: frozenset[str]) -> None:
        """The segments whose transitions carry the user's context (config reload)."""
        self.notify = self.core.notify = frozenset(notify)

    def restore(self, state: bytes | None, notify: frozenset[str] | None = None) -> int:
        """Replace the core by a snapshot's (or an empty one); returns its applied seq.
        ``notify`` replaces the constructor's (a restarted shard gets the reloaded one)."""
        if notify is not None:
            self.notify = frozenset(notify)
        self.core = (
            ShardCore.restore(self.model, state, self.notify) if state else ShardCore(self.model, self.notify)
        )
        return self.core.applied_seq

    def snapshot(self, expect: int) -> tuple[int, bytes] | None:
        """``(applied_seq, state)``, or None if this is not the state the router expects."""
        if self.core.applied_seq != expect:
            return None
        return self.core.applied_seq, self.core.snapshot()

    def user(self, user: str) -> dict[str, Any] | None:
        return self.core.user(user)

    def forget(self, user: str, expect: int) -> tuple[bool, int, list]:
        """Drop ``user``; ``(True, applied_seq, exits)`` (exits for membership only: no message)."""
        core = self.core
        if core.applied_seq != expect:
            return False, core.applied_seq, []
        return True, core.applied_seq, [tuple(t) for t in core.forget(user)]

    def stats(self) -> dict[str, Any]:
        return {"users": self.core.users, "applied_seq": self.core.applied_seq, "clock": self.core.clock}

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()
