"""The compiled fold of a model: its user state class and the generated functions behind it.

``compiled(model)`` returns the model's ``Engine`` (built once per ``Model``): a generated
module (``actors.compiled.codegen``) plus ``Engine.user_class``, a slotted class whose
instances hold one user's state as flat slots:

- ``user``, ``traits`` (``actors.compiled.traits``: a shared key layout and the values, or
  None), ``members``, ``raw`` (when
  the model has groups), ``last_seq``, ``deadline``, ``now``: as in ``actors.user.UserActor``;
- ``t0``... one per time-dependent segment: its next change (inf for none), the reference's
  ``tnext`` tuple spread over slots;
- ``a0``... one per aggregate: the reference's state for lifetime kinds, the compact forms of
  ``actors.compiled.windows`` for windows.

A user object has the reference actor's interface (``apply``, ``advance``, ``deadline``,
``last_seq``, ``members``, ``view``, ``to_state``, ``snapshot``) and its snapshot state *is*
the reference's (``UserActor.to_state``'s layout and encodings), so either engine restores
the other's snapshots. ``apply`` and ``advance`` are the generated functions themselves.

Why reading a value window may drop its expired entries without changing any later answer:
a user's deadline is never later than the next change of any window a segment reads, and
``ShardCore`` fires every deadline up to the clock before anything reads a user at that
clock; so an entry that expired by a read's ``now`` had expired by the user's last
evaluation too, and ``next_change`` (asked from that evaluation's time) skips it anyway.
Windows no segment reads are never asked for a next change.
"""

from __future__ import annotations

import math
import sys
import weakref
from array import array
from collections.abc import Mapping
from hashlib import blake2b
from types import MappingProxyType
from typing import Any

import msgpack

from actors.aggregates.kind import (
    SHARED_KEY_MAX,
    distinct_key,
    int_in,
    int_out,
    is_number,
    pack_arr,
    shared,
    unpack_arr,
)
from actors.compiled import windows as tw
from actors.compiled.codegen import Generated, generate
from actors.compiled.distinct import (
    INDEX_AT,
    dw_count,
    dw_deadline,
    dw_entries,
    dw_fold,
    dw_from,
    dw_next,
    dw_prune,
)
from actors.compiled.sorted import BIG
from actors.compiled.traits import TraitsView, as_dict, from_dict, merge
from actors.compiled.values import ValueWin, new_value_win
from actors.model import STATE_FORMAT, Model, _Members
from actors.records import Transition, UserView
from segd.rules import Context

__all__ = ["CompiledUser", "Engine", "compiled"]

_INF = math.inf
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_TIME_KINDS = frozenset({"count", "first_time", "last_time"})


class _Unset:
    """The value of a lazily computed local that is not computed yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "_U"


class CompiledUser:
    """Base of every model's user class (see the module docstring); the slots are the
    subclass's. ``apply(seq, type, event, ts, clock, data, context=None)`` and
    ``advance(clock)`` are those of ``actors.user.UserActor``, generated."""

    __slots__ = ()
    _engine: Engine

    user: str
    traits: tuple[Any, ...] | None
    members: int
    last_seq: int | None
    deadline: float | None
    now: float

    def trait_map(self) -> dict[str, Any]:
        """The user's traits as a new dict."""
        return as_dict(self.traits)

    def segments(self) -> list[str]:
        """Names of the segments the user is a member of, sorted."""
        return self._engine.model.names_of(self.members)

    def aggregates(self, now: float) -> dict[str, Any]:
        """Every aggregate's value at ``now`` (not before the user's last evaluation)."""
        e = self._engine
        return {a.name: f(self, now) for a, f in zip(e.model.aggs, e.values, strict=True)}

    def view(self, now: float) -> UserView:
        """The ``user`` op's answer: traits, aggregate values at ``now``, sorted segments."""
        return UserView(
            user=self.user,
            traits=self.trait_map(),
            aggregates=self.aggregates(now),
            segments=self.segments(),
            last_seq=self.last_seq,
        )

    def to_state(self) -> list[Any]:
        """The reference's msgpack-able state (``UserActor.to_state``)."""
        return self._engine.to_state(self)

    def snapshot(self) -> bytes:
        """Compact msgpack bytes of the whole user state (``UserActor.snapshot``'s)."""
        blob: bytes = msgpack.packb(self.to_state(), use_bin_type=True)
        return blob

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.user!r}, last_seq={self.last_seq}, segments={self.segments()})"


class Engine:
    """A model's compiled fold; use ``compiled(model)``. ``source`` is the generated text."""

    def __init__(self, model: Model) -> None:
        self.model = model
        m = model
        slots = ["user", "traits", "members", "last_seq", "deadline", "now"]
        if m.groups:
            slots.append("raw")
        slots += [f"t{s.timed_slot}" for s in m.timed_segs]
        slots += [f"a{a.index}" for a in m.aggs]
        # a small distinct window's keys (actors.compiled.distinct)
        slots += [f"b{a.index}" for a in m.aggs if a.kind.windowed and a.kind.kind == "distinct"]
        self.slots = tuple(slots)
        self._masks: dict[int, int] = {}  # one int object per distinct membership mask
        runtime = self._runtime()
        self.generated: Generated = generate(model, runtime)
        g = self.generated
        self.source = g.source
        self.values = g["VALUES"]
        # helpers that need the generated value functions
        g.names["_nc_context"] = self._nc_context_fn()
        cls = type(
            "User",
            (CompiledUser,),
            {
                "__slots__": self.slots,
                "__module__": __name__,
                "_engine": self,
                "apply": g["apply"],
                "advance": g["advance"],
            },
        )
        self.user_class: type[CompiledUser] = cls
        g.names["_User"] = cls
        self._new = g["new"]
        #: ``ShardCore``'s loop over rows and its timers' fire (``gen_events.gen_fold_rows``)
        self.fold_rows = g["fold_rows"]
        self.fire_due = g["fire_due"]
        self._kinds = [(a, a.kind.kind, a.kind.windowed) for a in m.aggs]

    # ------------------------------------------------------------------ the run-time

    def _runtime(self) -> dict[str, Any]:
        m = self.model
        masks = m.trait_masks

        def merge_traits(u: Any, data: Mapping[str, Any]) -> int:
            """The reference's ``_identify``: merge key by key (None removes); dirty mask."""
            u.traits, dirty = merge(u.traits, data, masks)
            return dirty

        def stuck(u: Any, t: float) -> None:
            raise RuntimeError(
                f"deadline {u.deadline!r} does not move past {t!r} for user {u.user!r}: a next_change bug"
            )

        def bad_type(type_: str) -> None:
            raise ValueError(f"unknown event type {type_!r}; expected 'track' or 'identify'")

        def vw_prune(s: ValueWin, now: float) -> ValueWin | None:
            s.advance(now)
            return s if len(s) else None

        def vw_next(s: ValueWin | None, now: float) -> float | None:
            return None if s is None else s.next_change(now)

        return {
            "_U": _Unset(),
            "_array": array,
            # scratch for exact-size appends (``s + _one``): set and read in two adjacent
            # statements of one generated function, which a shard runs on one thread
            "_one": array("d", (0.0,)),
            "_BIG": BIG,
            "_INF": _INF,
            "_NINF": -_INF,
            "_ulp": math.ulp,
            "_nextafter": math.nextafter,
            "_EMPTY": _EMPTY,
            "_T": Transition,
            "_b2b12": blake2b(digest_size=12),  # copied per transition id
            "_new_user": object.__new__,
            "_User": None,  # set once the class exists
            "_tw_fold": tw.tw_fold,
            "_tw_prune": tw.tw_prune,
            "_tw_count": tw.tw_count,
            "_tw_first": tw.tw_first,
            "_tw_last": tw.tw_last,
            "_tw_next": tw.tw_next,
            "_count_deadline": tw.count_deadline,
            "_vw_prune": vw_prune,
            "_dw_fold": dw_fold,
            "_dw_prune": dw_prune,
            "_dw_count": dw_count,
            "_dw_next": dw_next,
            "_dw_deadline": dw_deadline,
            "_vw_next": vw_next,
            "_new_vw": new_value_win,
            "_is_number": is_number,
            "_dkey": distinct_key,
            "_intern": sys.intern,
            "_SKM": SHARED_KEY_MAX,
            "_DW_SMALL": INDEX_AT - 1,
            "_merge_traits": merge_traits,
            "_mask": self._masks.setdefault,
            "_stuck": stuck,
            "_bad_type": bad_type,
            "_nc_context": None,  # set once the value functions exist
        }

    def _nc_context_fn(self) -> Any:
        """``_nc_context(u, now)``: the model's reusable reference ``Context`` pointed at
        ``u`` at ``now``, aggregates read lazily through the compiled value functions."""
        m = self.model
        index = {a.name: f for a, f in zip(m.aggs, self.values, strict=True)}

        class Values(dict[str, Any]):
            __slots__ = ("u", "now")
            u: Any
            now: float

            def __missing__(self, name: str) -> Any:
                v = self[name] = index[name](self.u, self.now)
                return v

        values = Values()
        traits = TraitsView()
        members = _Members(m.segs)
        ctx = Context(now=0.0, aggs=values, traits=traits, segments=members)

        def nc_context(u: Any, now: float) -> Context:
            values.clear()
            values.u = u
            values.now = now
            traits.t = u.traits
            members.mask = u.members
            ctx.now = now
            return ctx

        return nc_context

    # ------------------------------------------------------------------ users

    def new(self, user: str) -> CompiledUser:
        """A user never seen."""
        u: CompiledUser = self._new(user)
        return u

    def to_state(self, u: Any) -> list[Any]:
        """``UserActor.to_state``'s layout for a compiled user."""
        m = self.model
        aggs = []
        for a, kind, windowed in self._kinds:
            st = getattr(u, f"a{a.index}")
            if not windowed:
                aggs.append(a.kind.to_msgpack(st))
            elif kind in _TIME_KINDS:
                times = tw.tw_times(st)
                aggs.append(None if not times else (times[0] if len(times) == 1 else pack_arr(times)))
            elif kind == "distinct":
                times, keys = dw_entries(st, getattr(u, f"b{a.index}"))
                aggs.append([pack_arr(times), keys] if times else None)
            elif st is None or not len(st):
                aggs.append(None)
            else:
                times, vals = st.entries()
                if kind == "sum":
                    vals = [int_out(v) if type(v) is int else v for v in vals]
                aggs.append([pack_arr(times), vals])
        tnext = [getattr(u, f"t{s.timed_slot}") for s in m.timed_segs]
        return [
            STATE_FORMAT,
            u.trait_map() or None,
            aggs,
            u.members,
            u.raw if m.groups else 0,
            u.last_seq,
            u.deadline,
            u.now,
            tnext if tnext and min(tnext) < _INF else None,
        ]

    def from_state(self, user: str, obj: list[Any]) -> CompiledUser:
        """Inverse of ``to_state`` (also of ``UserActor.to_state``). Raises ValueError for a
        state of another format or model."""
        m = self.model
        if not isinstance(obj, list) or not obj or obj[0] != STATE_FORMAT or len(obj) != 9:
            raise ValueError(f"user {user!r}: not a user state of format {STATE_FORMAT}")
        _, traits, aggs, members, raw, last_seq, deadline, now, tnext = obj
        if len(aggs) != len(m.aggs):
            raise ValueError(
                f"user {user!r}: {len(aggs)} aggregates in the snapshot, {len(m.aggs)} in the model"
            )
        u: Any = self.new(user)
        u.traits = from_dict(traits) if traits else None
        u.members = self._masks.setdefault(members, members)
        if m.groups:
            u.raw = self._masks.setdefault(raw, raw)
        u.last_seq = last_seq
        # One float object per distinct time, as a live user shares them between slots
        # (msgpack would give each slot its own); 0.0 is left alone (it equals -0.0).
        same: dict[Any, Any] = {_INF: _INF}
        u.deadline = same.setdefault(deadline, deadline) if type(deadline) is float and deadline else deadline
        u.now = same.setdefault(now, now) if type(now) is float and now else now
        if tnext is not None:
            if len(tnext) != len(m.timed_segs):
                raise ValueError(f"user {user!r}: {len(tnext)} timed segments in the snapshot")
            for s, nc in zip(m.timed_segs, tnext, strict=True):
                setattr(u, f"t{s.timed_slot}", same.setdefault(nc, nc) if type(nc) is float and nc else nc)
        for (a, kind, windowed), st in zip(self._kinds, aggs, strict=True):
            if windowed and kind == "distinct":
                t, k = (
                    dw_from(unpack_arr(st[0]), [shared(v) for v in st[1]], a.kind.within or 0.0, now)
                    if st
                    else (None, None)
                )
                setattr(u, f"a{a.index}", t)
                setattr(u, f"b{a.index}", k)
                continue
            v = self._agg_from(a, kind, windowed, st, now)
            setattr(u, f"a{a.index}", same.setdefault(v, v) if type(v) is float and v else v)
        result: CompiledUser = u
        return result

    @staticmethod
    def _agg_from(a: Any, kind: str, windowed: bool, st: Any, now: float) -> Any:
        if not windowed:
            return a.kind.from_msgpack(st)
        if kind in _TIME_KINDS:
            if st is None or type(st) is float:
                return st
            return tw.from_times(unpack_arr(st))
        if st is None:
            return None
        times, vals = unpack_arr(st[0]), list(st[1])
        if kind == "sum":
            vals = [int_in(v) for v in vals]
        win = new_value_win(kind, a.kind.within)
        win.load(times, vals, now)
        return win if len(win) else None


_ENGINES: weakref.WeakKeyDictionary[Model, Engine] = weakref.WeakKeyDictionary()


def compiled(model: Model) -> Engine:
    """The compiled fold of ``model`` (generated on first use, then cached with the model)."""
    engine = _ENGINES.get(model)
    if engine is None:
        engine = _ENGINES[model] = Engine(model)
    return engine
