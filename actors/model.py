"""The compiled config: what every user of a shard shares (DESIGN "Each user is an actor").

Pure core: no Ray, no I/O. ``Model.compile(config)`` compiles every aggregate's ``where``/``of``
and every segment's ``when`` with ``segd.rules``, orders the segments for evaluation, and
precomputes what ``actors.user.UserActor`` needs to fold events cheaply: which aggregates an
event feeds, which segments an aggregate, a trait or another segment's membership affects
(closed over exclusive groups), which aggregates and segments change with time alone, and
the fingerprints that tell a snapshot whether it still fits the config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from hashlib import blake2b
from typing import Any

import msgpack

from actors.aggregates import AggKind, make_kind
from segd.config import AggregateConfig, Config, SegmentConfig
from segd.errors import ConfigError
from segd.rules import WHEN, WHERE, Compiled, Context, Names, RuleError, compile_expr, segment_order

__all__ = ["STATE_FORMAT", "AggDef", "GroupDef", "Model", "SegDef"]

_MISSING = object()
#: Version of the user state layout; part of every model fingerprint.
STATE_FORMAT = 1


class AggDef:
    """One compiled aggregate: its kind logic, compiled ``where``/``of`` closures, and the
    (group-closed) mask of segments that read it."""

    __slots__ = (
        "index",
        "name",
        "config",
        "kind",
        "where",
        "of",
        "reads_aggs",
        "reads_context",
        "seg_mask",
        "timed",
    )

    def __init__(
        self, index: int, config: AggregateConfig, kind: AggKind, where: Compiled | None, of: Compiled | None
    ) -> None:
        self.index = index
        self.name = config.name
        self.config = config
        self.kind = kind
        self.where = where.fn if where is not None else None
        self.of = of.fn if of is not None else None
        self.reads_aggs = any(c is not None and bool(c.aggregates) for c in (where, of))
        self.reads_context = any(c is not None and c.uses_context for c in (where, of))
        self.seg_mask = 0
        self.timed = False  # windowed and read by some segment: its changes are deadlines


class GroupDef:
    """An exclusive group: member bits (membership and raw numbering), the last member in
    evaluation order (where the group is resolved) and the members ranked by (priority, name)."""

    __slots__ = ("name", "mask", "raw_mask", "last", "ranked")

    def __init__(self, name: str, members: list[SegDef]) -> None:
        self.name = name
        self.mask = self.raw_mask = 0
        for s in members:
            self.mask |= s.bit
            self.raw_mask |= s.raw_bit
        self.last = max(s.index for s in members)
        self.ranked = tuple(
            (s.raw_bit, s.bit) for s in sorted(members, key=lambda s: (s.config.priority, s.name))
        )


class SegDef:
    """One compiled segment at position ``index`` of the evaluation order (bit ``1 << index``)."""

    __slots__ = (
        "index",
        "name",
        "config",
        "compiled",
        "fn",
        "next_change",
        "bit",
        "raw_bit",
        "group",
        "dependants",
        "closed",
        "timed_slot",
        "fingerprint",
    )

    def __init__(self, index: int, config: SegmentConfig, compiled: Compiled) -> None:
        self.index = index
        self.name = config.name
        self.config = config
        self.compiled = compiled
        self.fn = compiled.fn
        self.next_change = compiled.next_change
        self.bit = 1 << index
        self.raw_bit = 0  # bit in UserActor.raw, numbered over grouped segments only
        self.group: GroupDef | None = None
        self.dependants = 0  # segments to re-evaluate when this one's membership changes
        self.closed = self.bit  # bit plus the bit that resolves its group
        self.timed_slot = -1  # position in Model.timed_segs / UserActor.tnext
        self.fingerprint = ""


class _AggValues(dict[str, Any]):
    """Lazy ``ctx.aggs``: an aggregate's value at ``now`` is computed on first read, then
    served from the dict itself (C speed: ``next_change`` probes read values many times).

    ``now`` is fixed per evaluation, independent of ``ctx.now``: ``Compiled.next_change``
    probes other instants with aggregates held fixed, as its contract says.
    """

    __slots__ = ("_index", "states", "now")

    def __init__(self, aggs: tuple[AggDef, ...]) -> None:
        super().__init__()
        self._index = {a.name: (a.kind, a.index) for a in aggs}
        self.states: list[Any] = []
        self.now = 0.0

    def point(self, states: list[Any], now: float) -> None:
        """Read ``states`` at ``now`` from here on."""
        self.clear()
        self.states = states
        self.now = now

    def __missing__(self, name: str) -> Any:
        kind, i = self._index[name]
        v = self[name] = kind.value(self.states[i], self.now)
        return v


class _Traits(Mapping[str, Any]):
    """``ctx.traits``: read-only mapping over a user's flat trait tuple (a handful of keys)."""

    __slots__ = ("pairs",)

    def __init__(self) -> None:
        self.pairs: tuple[Any, ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        p = self.pairs
        for i in range(0, len(p), 2):
            if p[i] == key:
                return p[i + 1]
        return default

    def __getitem__(self, key: str) -> Any:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def __iter__(self) -> Iterator[str]:
        return iter(self.pairs[::2])

    def __len__(self) -> int:
        return len(self.pairs) // 2


class _Members:
    """``ctx.segments``: membership test over the user's bitmask."""

    __slots__ = ("_index", "mask")

    def __init__(self, segs: tuple[SegDef, ...]) -> None:
        self._index = {s.name: s.bit for s in segs}
        self.mask = 0

    def __contains__(self, name: object) -> bool:
        # Container's signature takes object; segment('x') only ever passes its str literal.
        return bool(self.mask & self._index.get(name, 0))  # type: ignore[call-overload]


def _digest(obj: Any) -> str:
    return blake2b(msgpack.packb(obj, use_bin_type=True), digest_size=16).hexdigest()


def _agg_def(a: AggregateConfig) -> list[Any]:
    return ["agg", a.name, a.kind, a.event, a.of, a.where, a.within]


def _rule_problem(label: str, table: str, exc: RuleError) -> tuple[str, str, str]:
    where = f"'{exc.key}'" if exc.key else ""
    if exc.column is not None:
        where += f" at column {exc.column}"
    return (label, exc.table or table, f"{where}: {exc.message}" if where else exc.message)


class Model:
    """The compiled config shared by every user of a shard; build with ``Model.compile``.

    ``aggs`` are in config order (the position of each state in ``UserActor.aggs``);
    ``segs`` are in evaluation order (bit ``i`` of a membership mask is ``segs[i]``).
    Holds one reusable evaluation ``ctx``: a Model is used by one thread at a time.
    ``fingerprint`` changes whenever an aggregate or segment definition (or the state
    format) changes; ``segment_fingerprints[name]`` whenever anything that segment's
    membership depends on changes (its rule, the aggregates and segments it reads, its group).
    """

    def __init__(
        self, config: Config, aggs: list[AggDef], whens: dict[str, Compiled], order: list[str]
    ) -> None:
        self.config = config
        cfg_segs = {s.name: s for s in config.segments}
        self.segs: tuple[SegDef, ...] = tuple(SegDef(i, cfg_segs[n], whens[n]) for i, n in enumerate(order))
        self.seg_by_name = {s.name: s for s in self.segs}
        members: dict[str, list[SegDef]] = {}
        for s in self.segs:
            if s.config.group:
                # a dense numbering keeps UserActor.raw a small (shared) int
                s.raw_bit = 1 << sum(map(len, members.values()))
                members.setdefault(s.config.group, []).append(s)
        self.groups = tuple(GroupDef(g, ms) for g, ms in sorted(members.items()))
        for g in self.groups:
            for s in members[g.name]:
                s.group = g
        for s in self.segs:
            for ref in s.compiled.segments:
                self.seg_by_name[ref].dependants |= s.bit
        for s in self.segs:
            s.dependants = self._close(s.dependants)

        self.aggs: tuple[AggDef, ...] = tuple(aggs)
        self.agg_by_name = {a.name: a for a in self.aggs}
        for s in self.segs:
            for name in s.compiled.aggregates:
                self.agg_by_name[name].seg_mask |= s.bit
        for a in self.aggs:
            a.seg_mask = self._close(a.seg_mask)
            a.timed = a.kind.windowed and a.seg_mask != 0
        self.idle_windows = tuple(a for a in self.aggs if a.kind.windowed and not a.timed)
        self.window_aggs = tuple(a for a in self.aggs if a.timed)
        self.star = tuple(a for a in self.aggs if a.config.event == "*")
        self.by_event: dict[str | None, tuple[AggDef, ...]] = {
            e: tuple(a for a in self.aggs if a.config.event in (e, "*"))
            for e in {a.config.event for a in self.aggs} - {"*"}
        }
        self.where_reads_aggs = any(a.reads_aggs for a in self.aggs)
        self.uses_context = any(a.reads_context for a in self.aggs)

        trait_masks: dict[str, int] = {}
        for s in self.segs:
            for t in s.compiled.traits:
                trait_masks[t] = trait_masks.get(t, 0) | s.bit
        self.trait_masks = {t: self._close(m) for t, m in trait_masks.items()}
        self.all_mask = (1 << len(self.segs)) - 1
        self.timed_segs = tuple(s for s in self.segs if s.compiled.time_dependent)
        self.timed_mask = 0  # segments whose rule changes with time alone
        for i, s in enumerate(self.timed_segs):
            self.timed_mask |= s.bit
            s.timed_slot = i
        for s in self.segs:
            s.closed = self._close(s.bit)

        self.agg_values = _AggValues(self.aggs)
        self.seg_view = _Members(self.segs)
        self.traits_view = _Traits()
        self.ctx = Context(
            now=0.0,
            aggs=self.agg_values,
            traits=self.traits_view,
            props=None,
            event=None,
            segments=self.seg_view,
        )
        self._fingerprints()

    def _close(self, mask: int) -> int:
        """Add, for every grouped segment in mask, its group's last member (which resolves it)."""
        out = mask
        for s in self.segs:
            if mask & s.bit and s.group is not None:
                out |= 1 << s.group.last
        return out

    def _fingerprints(self) -> None:
        cfg = self.config
        self.fingerprint = _digest(
            [
                STATE_FORMAT,
                [_agg_def(a) for a in cfg.aggregates],
                [[s.name, s.when, s.group, s.priority] for s in cfg.segments],
            ]
        )
        own: dict[str, str] = {}
        for s in self.segs:
            c = s.compiled
            own[s.name] = _digest(
                [
                    [s.name, s.config.when, s.config.group, s.config.priority],
                    [_agg_def(self.agg_by_name[a].config) for a in sorted(c.aggregates)],
                    [[r, self.seg_by_name[r].fingerprint] for r in sorted(c.segments)],
                ]
            )
            g = s.group
            if g is None:
                s.fingerprint = own[s.name]
            elif s.index == g.last:
                mates = sorted(own[m.name] for m in self.segs if m.group is g)
                for m in self.segs:
                    if m.group is g:
                        m.fingerprint = _digest([own[m.name], mates])
        self.segment_fingerprints = {s.name: s.fingerprint for s in self.segs}

    def names_of(self, mask: int) -> list[str]:
        """Sorted names of the segments whose bits are set in ``mask``."""
        return sorted(s.name for s in self.segs if mask & s.bit)

    @classmethod
    def compile(cls, config: Config) -> Model:
        """Compile every ``where``/``of`` (scope WHERE) and ``when`` (scope WHEN), order the
        segments, and precompute the dependency masks.

        Raises ConfigError listing every problem found, each as (file, table, message).
        """
        label = config.label
        problems: list[tuple[str, str, str]] = []
        names = Names(
            aggregates=frozenset(a.name for a in config.aggregates),
            segments=frozenset(s.name for s in config.segments),
        )

        def comp(text: str | None, scope: Any, table: str, key: str) -> Compiled | None:
            if text is None:
                return None
            try:
                return compile_expr(text, scope=scope, names=names, table=table, key=key)
            except RuleError as exc:
                problems.append(_rule_problem(label, table, exc))
                return None

        aggs = []
        for i, a in enumerate(config.aggregates):
            table = f"aggregates.{a.name}"
            where = comp(a.where, WHERE, table, "where")
            of = comp(a.of, WHERE, table, "of")
            try:
                kind = make_kind(a.kind, a.within)
            except ValueError as exc:
                problems.append((label, table, str(exc)))
                continue
            aggs.append(AggDef(i, a, kind, where, of))
        whens = {s.name: comp(s.when, WHEN, f"segments.{s.name}", "when") for s in config.segments}
        refs = {name: (c.segments if c is not None else frozenset()) for name, c in whens.items()}
        groups = {s.name: s.group for s in config.segments if s.group}
        order: list[str] = []
        try:
            order = segment_order(refs, groups)
        except RuleError as exc:
            problems.append(_rule_problem(label, "segments", exc))
        if problems:
            raise ConfigError(problems)
        return cls(config, aggs, whens, order)  # type: ignore[arg-type]  # no None left
