"""The user actor: one event-sourced state machine per user (DESIGN "Each user is an actor").

Pure core: no Ray, no I/O, no clock of its own — time comes in as arguments. ``UserActor``
holds one user's state (traits, one small state per aggregate, segment membership) and folds
events into it, reading the shard's compiled config (``actors.model.Model``, re-exported here):

- ``apply(...)`` first fires the user's deadlines up to the event's clock, then folds the
  event and re-evaluates only the segments whose inputs changed, at ``now = clock``.
- ``advance(clock)`` fires deadlines: instants at which membership may change with time
  alone (a window entry expires or starts to count, ``days_since`` crosses a threshold).
  A time-caused transition has ``at`` = the exact deadline and ``seq`` = the user's last seq.

Segments are evaluated only at event clocks and at deadlines, and deadlines are a function of
the user's own history, so live processing, replay and snapshot + replay produce the same
transitions with the same ids, whatever the shard layout or the ``advance`` calls in between.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from hashlib import blake2b
from types import MappingProxyType
from typing import Any

import msgpack

from actors.aggregates.kind import SHARED_TRAIT_MAX, shared
from actors.model import STATE_FORMAT, AggDef, Model
from actors.records import Transition, UserView

__all__ = ["Model", "UserActor", "transition_id"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MISSING = object()
_INF = float("inf")


def transition_id(segment: str, user: str, kind: str, seq: int, at: float, cause: str) -> str:
    """Stable id of a transition: a pure function of what caused it.

    ``cause`` is ``"e"`` (an event: ``seq`` is its log position), ``"t"`` (time: ``seq`` is the
    last position applied before it) or ``"f"`` (forget). 24 hex characters.
    """
    key = f"{segment}\x00{user}\x00{kind}\x00{seq}\x00{at!r}\x00{cause}".encode()
    return blake2b(key, digest_size=12).hexdigest()


def _flat(traits: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Traits as a flat (key, value, key, value...) tuple: a third of a dict's size."""
    return tuple(x for kv in traits.items() for x in kv) if traits else None


def _transition(segment: str, user: str, kind: str, at: float, seq: int, cause: str) -> Transition:
    return Transition(
        id=transition_id(segment, user, kind, seq, at, cause),
        segment=segment,
        user=user,
        kind=kind,
        at=at,
        seq=seq,
    )


class UserActor:
    """One user's state and its fold. Not thread-safe; one call at a time, in log order.

    State, kept small (memory target: < 1 KiB per user):

    - ``traits``: flat tuple ``(key, value, ...)``, or None when empty;
    - ``aggs``: one state per ``model.aggs`` (see ``actors.aggregates``);
    - ``members``: bitmask over ``model.segs``, the final membership;
    - ``raw``: bitmask over grouped segments' ``raw_bit``, their ``when`` before resolution;
    - ``last_seq``: None before the first event;
    - ``deadline``: next instant at which membership may change with time alone, or None;
      possibly early (then firing it is a no-op), never late;
    - ``now``: the last instant the user was evaluated at; never goes backwards;
    - ``tnext``: the next change of each of ``model.timed_segs`` (inf: none), or None.
    """

    __slots__ = ("model", "user", "traits", "aggs", "members", "raw", "last_seq", "deadline", "now", "tnext")

    def __init__(self, model: Model, user: str) -> None:
        self.model = model
        self.user = user
        self.traits: tuple[Any, ...] | None = None
        self.aggs: list[Any] = [None] * len(model.aggs)
        self.members = 0
        self.raw = 0
        self.last_seq: int | None = None
        self.deadline: float | None = None
        self.now = -_INF
        self.tnext: tuple[float, ...] | None = None

    # ------------------------------------------------------------------ the fold

    def apply(
        self,
        seq: int,
        type: str,
        event: str | None,
        ts: float | None,
        clock: float,
        data: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None = None,
    ) -> list[Transition]:
        """Apply one log row: advance to ``clock``, then fold the event; return transitions.

        ``type`` is ``"track"`` (``event`` = name, ``data`` = props) or ``"identify"``
        (``data`` = traits; a None value removes the trait). ``ts`` None means ``clock``.
        ``context`` is the event's context map, read by ``context.NAME`` in ``where``/``of``.
        Rows must come in log order (increasing ``seq``); ``clock`` below the user's ``now``
        is raised to it. Transitions come ordered by ``at``, then segment evaluation order.
        Raises ValueError for an unknown ``type``.
        """
        clock = float(clock)  # an int clock would give other ids (repr(at)) than a float one
        out = self.advance(clock) if self.deadline is not None and self.deadline <= clock else []
        if clock < self.now:
            clock = self.now
        m = self.model
        dirty = m.all_mask if self.last_seq is None else 0
        folded: list[AggDef] = []
        if type == "track":
            if ts is None:
                ts = clock
            aggs = m.by_event.get(event, m.star)
            if aggs:
                dirty |= self._fold(aggs, event, float(ts), clock, data, context, folded)
        elif type == "identify":
            if data:
                dirty |= self._identify(data)
        else:
            raise ValueError(f"unknown event type {type!r}; expected 'track' or 'identify'")
        self.last_seq = seq
        self.now = clock
        if dirty:
            evaluated = self._evaluate(dirty, clock, seq, "e", out)
            self._reschedule(clock, folded, evaluated & m.timed_mask)
        elif folded:
            self._reschedule(clock, folded, 0)
        return out

    def _fold(
        self,
        aggs: tuple[AggDef, ...],
        event: str | None,
        ts: float,
        clock: float,
        data: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None,
        folded: list[AggDef],
    ) -> int:
        """Fold a track event into the matching aggregates; return the segments to evaluate."""
        m = self.model
        ctx = self._context(clock)
        ctx.props = data if data is not None else _EMPTY
        ctx.context = context if context is not None else _EMPTY
        ctx.event = event
        states = self.aggs
        dirty = 0
        # where/of see the state before this event; when no where/of reads an aggregate,
        # folding as we go is the same and saves a list per event.
        pending: list[tuple[AggDef, Any]] | None = [] if m.where_reads_aggs else None
        for a in aggs:
            if a.where is not None and not a.where(ctx):
                continue
            value = a.of(ctx) if a.of is not None else None
            if pending is None:
                states[a.index] = a.kind.fold(states[a.index], ts, value, clock)
            else:
                pending.append((a, value))
            dirty |= a.seg_mask
            if a.timed:
                folded.append(a)
        if pending:
            for a, value in pending:
                states[a.index] = a.kind.fold(states[a.index], ts, value, clock)
        return dirty

    def _identify(self, data: Mapping[str, Any]) -> int:
        """Merge traits key by key (None removes); return the segments to evaluate."""
        masks = self.model.trait_masks
        pairs = self.traits
        traits = dict(zip(pairs[::2], pairs[1::2], strict=True)) if pairs else {}
        dirty = 0
        changed = False
        for key, value in data.items():
            old = traits.get(key, _MISSING)
            if value is None:
                if old is _MISSING:
                    continue
                del traits[key]
            elif old is _MISSING or old.__class__ is not value.__class__ or old != value:
                traits[sys.intern(key)] = shared(value, SHARED_TRAIT_MAX)
            else:
                continue
            changed = True
            dirty |= masks.get(key, 0)
        if changed:
            self.traits = _flat(traits)
        return dirty

    # ------------------------------------------------------------------ time

    def advance(self, clock: float) -> list[Transition]:
        """Fire every deadline <= ``clock``, in time order; return the transitions.

        Each is evaluated at the exact deadline ``t`` (``at = t``, ``seq = last_seq``).
        """
        out: list[Transition] = []
        while self.deadline is not None and self.deadline <= clock:
            self._fire(self.deadline, out)
        return out

    def _fire(self, t: float, out: list[Transition]) -> None:
        m = self.model
        states = self.aggs
        dirty = 0
        tnext = self.tnext
        if tnext is not None:
            for seg, seg_nc in zip(m.timed_segs, tnext, strict=True):
                if seg_nc <= t:
                    dirty |= seg.closed
        # A window's next change seen from the last evaluation is either due now (re-evaluate
        # its segments, prune it, reschedule it) or still its next change after t.
        best: float | None = None
        due = []
        for a in m.window_aggs:
            st = states[a.index]
            if st is not None:
                nc = a.kind.next_change(st, self.now)
                if nc is None:
                    continue
                if nc <= t:
                    dirty |= a.seg_mask
                    due.append(a)
                    states[a.index] = a.kind.prune(st, t)
                elif best is None or nc < best:
                    best = nc
        for a in m.idle_windows:  # read by no segment: no deadlines, pruned here to bound memory
            st = states[a.index]
            if st is not None:
                states[a.index] = a.kind.prune(st, t)
        self.now = t
        seq = self.last_seq
        assert seq is not None  # a user has deadlines only after its first event
        evaluated = self._evaluate(dirty, t, seq, "t", out) if dirty else 0
        self.deadline = best
        self._reschedule(t, due, evaluated & m.timed_mask, full=True)
        if self.deadline is not None and self.deadline <= t:
            raise RuntimeError(
                f"deadline {self.deadline!r} does not move past {t!r} "
                f"for user {self.user!r}: a next_change bug"
            )

    def _reschedule(self, now: float, aggs: Any, timed: int, full: bool = False) -> None:
        """Update the deadline after an evaluation at ``now``.

        Recomputes the next change of the given window aggregates and of the time-dependent
        segments in ``timed`` (whose inputs changed; stored per segment in ``tnext``). Other
        sources did not change: after an event the current deadline still covers them (if the
        source behind it moved later, the deadline is early and only costs a no-op
        evaluation); with ``full`` (after a fire) the deadline holds the other windows' next
        change and the stored ``tnext`` of the other segments is used: the deadline is exact.
        """
        best = self.deadline
        states = self.aggs
        for a in aggs:
            nc = a.kind.next_change(states[a.index], now)
            if nc is not None and (best is None or nc < best):
                best = nc
        tnext = self.tnext
        if timed:
            ctx = self._context(now, same_aggs=True)  # always right after _evaluate at now
            m = self.model
            segs = m.segs
            tn = list(tnext) if tnext is not None else [_INF] * len(m.timed_segs)
            while timed:
                low = timed & -timed
                timed ^= low
                seg = segs[low.bit_length() - 1]
                nc = seg.next_change(ctx)
                if nc is None:
                    tn[seg.timed_slot] = _INF
                    continue
                tn[seg.timed_slot] = nc
                if best is None or nc < best:
                    best = nc
            tnext = self.tnext = tuple(tn) if min(tn) < _INF else None
        if full and tnext is not None:
            nc = min(tnext)
            if best is None or nc < best:
                best = nc
        self.deadline = best

    # ------------------------------------------------------------------ segments

    def _context(self, now: float, same_aggs: bool = False) -> Any:
        """The model's shared Context, pointed at this user's state at ``now``.

        ``same_aggs``: aggregates and ``now`` are unchanged since the last call, so the
        aggregate values read then are still valid.
        """
        m = self.model
        ctx = m.ctx
        ctx.now = now
        m.traits_view.pairs = self.traits or ()
        ctx.props = None
        ctx.context = None
        ctx.event = None
        if not same_aggs:
            m.agg_values.point(self.aggs, now)
        m.seg_view.mask = self.members
        return ctx

    def _evaluate(self, dirty: int, now: float, seq: int, cause: str, out: list[Transition]) -> int:
        """Evaluate the segments in ``dirty`` (and dependants whose input changed) in
        evaluation order at ``now``; append transitions; return the mask evaluated."""
        m = self.model
        segs = m.segs
        ctx = self._context(now)
        sv = m.seg_view
        user = self.user
        members = self.members
        raw = self.raw
        evaluated = 0
        while dirty:
            low = dirty & -dirty
            dirty ^= low
            evaluated |= low
            seg = segs[low.bit_length() - 1]
            hit = seg.fn(ctx)
            group = seg.group
            if group is None:
                if (not hit) != (not members & low):
                    members ^= low
                    sv.mask = members
                    out.append(_transition(seg.name, user, "enter" if hit else "exit", now, seq, cause))
                    dirty |= seg.dependants
                continue
            raw = raw | seg.raw_bit if hit else raw & ~seg.raw_bit
            if seg.index != group.last:
                continue
            # all dirty members are evaluated (they precede group.last): resolve the group
            cand = raw & group.raw_mask
            win = 0
            if cand:
                for raw_bit, bit in group.ranked:
                    if cand & raw_bit:
                        win = bit
                        break
            old = members & group.mask
            if old == win:
                continue
            members = (members & ~group.mask) | win
            sv.mask = members
            gone = old & ~win
            while gone:
                b = gone & -gone
                gone ^= b
                s = segs[b.bit_length() - 1]
                out.append(_transition(s.name, user, "exit", now, seq, cause))
                dirty |= s.dependants
            if win & ~old:
                s = segs[win.bit_length() - 1]
                out.append(_transition(s.name, user, "enter", now, seq, cause))
                dirty |= s.dependants
        self.members = members
        self.raw = raw
        return evaluated

    # ------------------------------------------------------------------ queries

    def trait_map(self) -> dict[str, Any]:
        """The user's traits as a new dict."""
        pairs = self.traits
        return dict(zip(pairs[::2], pairs[1::2], strict=True)) if pairs else {}

    def segments(self) -> list[str]:
        """Names of the segments the user is a member of, sorted."""
        return self.model.names_of(self.members)

    def view(self, now: float) -> UserView:
        """The ``user`` op's answer: traits, aggregate values at ``now``, sorted segments."""
        states = self.aggs
        return UserView(
            user=self.user,
            traits=self.trait_map(),
            aggregates={a.name: a.kind.value(states[a.index], now) for a in self.model.aggs},
            segments=self.segments(),
            last_seq=self.last_seq,
        )

    # ------------------------------------------------------------------ snapshots

    def to_state(self) -> list[Any]:
        """Msgpack-able state (valid only with a model of the same fingerprint)."""
        aggs = self.model.aggs
        return [
            STATE_FORMAT,
            self.trait_map() or None,
            [a.kind.to_msgpack(s) for a, s in zip(aggs, self.aggs, strict=True)],
            self.members,
            self.raw,
            self.last_seq,
            self.deadline,
            self.now,
            list(self.tnext) if self.tnext is not None else None,
        ]

    @classmethod
    def from_state(cls, model: Model, user: str, obj: list[Any]) -> UserActor:
        """Inverse of ``to_state``. Raises ValueError for a state of another format."""
        if not isinstance(obj, list) or not obj or obj[0] != STATE_FORMAT or len(obj) != 9:
            raise ValueError(f"user {user!r}: not a user state of format {STATE_FORMAT}")
        _, traits, aggs, members, raw, last_seq, deadline, now, tnext = obj
        if len(aggs) != len(model.aggs):
            raise ValueError(
                f"user {user!r}: {len(aggs)} aggregates in the snapshot, {len(model.aggs)} in the model"
            )
        self = cls(model, user)
        self.traits = (
            _flat({sys.intern(k): shared(v, SHARED_TRAIT_MAX) for k, v in traits.items()}) if traits else None
        )
        self.aggs = [a.kind.from_msgpack(s) for a, s in zip(model.aggs, aggs, strict=True)]
        self.members = members
        self.raw = raw
        self.last_seq = last_seq
        self.deadline = deadline
        self.now = now
        self.tnext = tuple(tnext) if tnext is not None else None
        return self

    def snapshot(self) -> bytes:
        """Compact msgpack bytes of the whole user state."""
        blob: bytes = msgpack.packb(self.to_state(), use_bin_type=True)
        return blob

    @classmethod
    def restore(cls, model: Model, user: str, blob: bytes) -> UserActor:
        """Rebuild a user from ``snapshot()`` bytes taken with the same model."""
        return cls.from_state(model, user, msgpack.unpackb(blob, raw=False))

    def __repr__(self) -> str:
        return f"UserActor({self.user!r}, last_seq={self.last_seq}, segments={self.segments()})"
