"""A shard's pure core: the user actors of one hash range and their deadlines (DESIGN "Shape").

``ShardCore`` is plain Python: no Ray, no I/O, no clock of its own. Its Ray actor shell is
``actors.shard.shell.UserShard``. Its users are the model's compiled fold
(``actors.compiled``) unless ``reference=True`` asks for the reference actors
(``actors.user.UserActor``): the two give the same transitions, views and snapshots, and
each restores the other's snapshots.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from actors.compiled.engine import compiled
from actors.model import Model
from actors.records import PreviewPart, Row, Transition, UserContext, UserView
from actors.shard.snapshot import Head, SnapshotMismatch, Writer
from actors.shard.snapshot import read as read_snapshot
from actors.shard.timers import Timers
from actors.user import UserActor, transition_id
from segd.rules import WHEN, Context, Names, compile_expr

__all__ = ["ShardCore", "SnapshotMismatch"]

# Event bodies as Python values: msgspec decodes a props map in about half msgpack's time.
_decode = msgspec.msgpack.Decoder().decode
PREVIEW_SAMPLE = 20  # user ids in a preview's sample


def _advance_into(actor: Any, clock: float, out: list[Transition]) -> float | None:
    """A reference actor's deadlines up to ``clock`` fired into ``out``; its next deadline."""
    out += actor.advance(clock)
    d: float | None = actor.deadline
    return d


class ShardCore:
    """Many users (compiled by ``actors.compiled``, or ``UserActor``s with ``reference=True``) and their deadlines.

    - ``applied_seq``: the largest seq applied (0 before any).
    - ``clock``: the largest clock seen (rows or ``advance``); never goes backwards. Rows must
      not carry a clock below one already passed to ``advance`` (the log guarantees it).
    - Deadlines are filed in ``actors.shard.timers.Timers`` and fire in (deadline, user)
      order; an entry whose deadline is no longer the user's current one is stale and
      skipped (and the timers are compacted when stale entries pile up).
    """

    def __init__(
        self, model: Model, notify: frozenset[str] = frozenset(), *, reference: bool = False
    ) -> None:
        self.model = model
        self.reference = reference
        self._new: Callable[[str], Any]
        self._load: Callable[[str, Any], Any]
        # the compiled model's own loop over rows and fire (None: the reference's, below)
        self._fold_rows: Callable[..., tuple[int, float]] | None = None
        self._fire_due: Callable[[Any, float, list[Transition]], float | None]
        if reference:
            self._new = lambda user: UserActor(model, user)
            self._load = lambda user, state: UserActor.from_state(model, user, state)
            self._fire_due = _advance_into
        else:
            engine = compiled(model)
            self._new, self._load = engine.new, engine.from_state
            self._fold_rows, self._fire_due = engine.fold_rows, engine.fire_due
        self.applied_seq = 0
        self.clock = float("-inf")
        # user id -> its actor: a UserActor, or the compiled model's user (same interface)
        self._users: dict[str, Any] = {}
        self._timers = Timers()
        # Segments with campaigns: their transitions carry the user's context (traits and
        # aggregates at that moment) for the dispatcher, collected here until taken.
        self.notify = notify
        self.contexts: dict[str, UserContext] = {}

    # ------------------------------------------------------------------ events and time

    def apply_batch(self, rows: Iterable[Row]) -> list[Transition]:
        """Apply log rows in log order, then ``advance`` to the largest clock seen.

        Users are created on first sight. Returns every transition, each user's in order.
        """
        out: list[Transition] = []
        timers = self._timers
        note = self._note if self.notify else None
        # decode an event's context only if a rule reads it
        args = (rows, self._users, timers.push, _decode, self.model.uses_context, note, out)
        if self._fold_rows is not None:  # the loop below, generated with the model
            applied, top = self._fold_rows(*args, self.applied_seq, self.clock)
        else:
            applied, top = self._fold_reference(*args)
        self.applied_seq = applied
        if timers.entries > 2 * len(self._users) + 1024:
            self._compact()
        out += self.advance(top)
        return out

    def _fold_reference(
        self,
        rows: Iterable[Row],
        users: dict[str, Any],
        push: Callable[[float, str], None],
        unpack: Callable[[bytes], Any],
        contexts: bool,
        note: Callable[[Any, list[Transition], float], None] | None,
        out: list[Transition],
    ) -> tuple[int, float]:
        """``apply_batch``'s loop over the rows for reference actors (the compiled model's
        is ``actors.compiled`` ``fold_rows``): the largest seq and clock seen."""
        new = self._new
        applied, top = self.applied_seq, self.clock
        for row in rows:
            seq, clock, body = row.seq, row.clock, row.body
            actor = users.get(row.user)
            if actor is None:
                actor = users[row.user] = new(row.user)
            before = actor.deadline
            got = actor.apply(
                seq,
                row.type,
                row.event,
                row.ts,
                clock,
                unpack(body) if body else None,
                unpack(row.context) if contexts and row.context else None,
            )
            if got:
                out += got
                if note is not None:
                    note(actor, got, clock)
            after = actor.deadline
            if after is not None and after != before:
                push(after, actor.user)  # the actor's id str: one per user
            if seq > applied:
                applied = seq
            if clock > top:
                top = clock
        return applied, top

    def advance(self, clock: float) -> list[Transition]:
        """Fire every user deadline <= ``clock`` in (deadline, user) order; return transitions."""
        if clock > self.clock:
            self.clock = float(clock)
        out: list[Transition] = []
        fire = self._fire_due
        if self.notify:
            fire_due = fire

            def fire(actor: Any, deadline: float, out: list[Transition]) -> float | None:
                n = len(out)
                d = fire_due(actor, deadline, out)
                if len(out) > n:
                    self._note(actor, out[n:], deadline)
                return d

        self._timers.due(clock, self._users, fire, out)
        return out

    def _note(self, actor: Any, transitions: list[Transition], now: float) -> None:
        ctx = None
        for t in transitions:
            if t.segment in self.notify:
                if ctx is None:
                    view = actor.view(now)
                    ctx = UserContext(traits=view.traits, aggregates=view.aggregates)
                self.contexts[t.id] = ctx

    def take_contexts(self) -> dict[str, UserContext]:
        """The contexts collected since the last call, by transition id."""
        out, self.contexts = self.contexts, {}
        return out

    def _compact(self) -> None:
        self._timers.compact((a.deadline, u) for u, a in self._users.items() if a.deadline is not None)

    # ------------------------------------------------------------------ queries

    @property
    def users(self) -> int:
        """Number of users hosted."""
        return len(self._users)

    def user(self, user_id: str) -> UserView | None:
        """The ``user`` op's answer at the shard clock, or None for a user never seen."""
        actor = self._users.get(user_id)
        return None if actor is None else actor.view(self.clock)

    def preview(self, when: str, sample: int = PREVIEW_SAMPLE) -> PreviewPart:
        """Evaluate ``when`` (a segment's ``when`` expression, over this model's aggregates,
        traits and segments) for every user at the shard clock, changing nothing.

        Reads each user through ``user()``, the ``user`` op's view: O(users), measured at
        ~6 us a user on the 20-segment model. Raises RuleError for an invalid expression
        (the daemon checks it first, so a shard sees only valid ones).
        """
        model = self.model
        names = Names(aggregates=frozenset(model.agg_by_name), segments=frozenset(model.seg_by_name))
        fn = compile_expr(when, scope=WHEN, names=names, table="preview", key="when").fn
        ctx = Context(now=self.clock)
        hits: list[str] = []
        overlap = dict.fromkeys(model.seg_by_name, 0)
        for user_id in self._users:
            view = self.user(user_id)
            assert view is not None
            ctx.aggs, ctx.traits, ctx.segments = view.aggregates, view.traits, view.segments
            if fn(ctx):
                hits.append(user_id)
                for name in view.segments:
                    overlap[name] += 1
        return PreviewPart(size=len(hits), sample=heapq.nsmallest(sample, hits), overlap=overlap)

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
        assert seq is not None  # a hosted user has applied at least one event
        return [
            Transition(
                id=transition_id(name, user, "exit", seq, at, "f"),
                segment=name,
                user=user,
                kind="exit",
                at=at,
                seq=seq,
            )
            for name in self._in_order(actor.members)
        ]

    def _in_order(self, mask: int) -> list[str]:
        return [s.name for s in self.model.segs if mask & s.bit]

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        """Everything needed to resume: applied_seq, clock, model fingerprint, all users
        (the layout is ``actors.shard.snapshot``'s)."""
        writer = Writer()
        entry = writer.user
        head = Head(fingerprint=self.model.fingerprint, applied_seq=self.applied_seq, clock=self.clock)
        return writer.join(head, [entry(u, a.to_state()) for u, a in self._users.items()])

    @classmethod
    def restore(
        cls, model: Model, blob: bytes, notify: frozenset[str] = frozenset(), *, reference: bool = False
    ) -> ShardCore:
        """Rebuild a shard from ``snapshot()`` bytes; then replay the log after ``applied_seq``.

        Raises SnapshotMismatch if the snapshot was taken with another model fingerprint or
        format, or is not a shard snapshot: the caller then rebuilds from the log.
        """
        shard = cls(model, notify, reference=reference)
        try:
            head = read_snapshot(blob, model.fingerprint, shard._users, shard._load)
        except SnapshotMismatch:
            raise
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise SnapshotMismatch(f"corrupt shard snapshot: {exc}") from exc
        shard.applied_seq, shard.clock = head.applied_seq, head.clock
        shard._compact()
        return shard
