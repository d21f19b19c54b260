"""The model compiler: one Python module generated per model, specialised to it.

DESIGN "Making the fold fast". ``generate(model)`` writes the source of a module holding, for
the compiled config ``actors.model.Model``:

- one function per event name (and one for every other event) that folds exactly the
  aggregates listening to it, with their ``where``/``of`` inlined, and marks the segments
  that read them;
- ``_evaluate``: every segment's ``when`` inlined, in evaluation order, with its membership
  bit, dependants and exclusive group resolved at compile time;
- ``_fire``: one user deadline (windows due, time rules due), and the reschedule after it;
- ``apply`` / ``advance``: the user actor's two entry points.

The generated functions do exactly what the reference (``actors.user.UserActor`` with the
closures of ``segd.rules``) does, step by step: the same deadlines, the same evaluations at
the same instants, so the same transitions with the same ids; ``tests/unit/test_compiled_*``
hold them to it. The time analysis of a rule (``Compiled.next_change``) is not generated: the
reference closure is called on a context over the compiled state (``actors.compiled.engine``).

This module is the one place that hands text to Python's ``compile`` (and ``exec``s its code
object), and the text is segd's own: every name, string and number of the config is bound by
reference in the module's globals (``actors.compiled.expr``), so no config text can reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.compiled.expr import HELPERS, Emitter, Scope
from actors.compiled.steps import Step, step_plan
from actors.compiled.timing import FALLBACK, count_marks, lin_nc, nc_plan
from actors.model import AggDef, Model, SegDef
from segd.rules import Aggregate, Binary, Call, ListExpr, Node, Unary, parse

__all__ = ["Generated", "generate"]

# Kinds whose lifetime fold and value are inlined (the rest call the reference kind).
_INLINE_LIFETIME = frozenset({"count", "first_time", "last_time", "min", "max"})
_TIME_KINDS = frozenset({"count", "first_time", "last_time"})


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def block(self) -> _Block:
        return _Block(self)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class _Block:
    def __init__(self, lines: _Lines) -> None:
        self.lines = lines

    def __enter__(self) -> None:
        self.lines.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.lines.depth -= 1


class Generated:
    """The generated module: its ``source`` and the globals it ran with (``names``)."""

    def __init__(self, source: str, names: dict[str, Any]) -> None:
        self.source = source
        self.names = names

    def __getitem__(self, name: str) -> Any:
        return self.names[name]


class _Gen:
    def __init__(self, model: Model, runtime: dict[str, Any]) -> None:
        self.m = model
        self.e = Emitter()
        self.out = _Lines()
        self.runtime = runtime  # names the generated code uses, provided by actors.compiled.engine
        self.agg_index = {a.name: a.index for a in model.aggs}
        self.seg_bit = {s.name: s.bit for s in model.segs}
        self.w: dict[int, str] = {}  # aggregate index -> const name of its window length
        self.kinds: dict[int, str] = {}  # aggregate index -> const name of its reference kind
        # aggregate index -> const name of its marks (count_marks), for the windows that have
        self.marks: dict[int, str] = {}
        # aggregate index -> its Step (actors.compiled.steps), for counts whose folds may
        # skip the readers a step of one leaves unchanged
        self.steps: dict[int, Step] = {}
        for a in model.aggs:
            step = step_plan(model, a)
            if step is not None:
                self.steps[a.index] = step
        for a in model.aggs:
            self.kinds[a.index] = self.e.const(a.kind)
            if a.kind.windowed:
                self.w[a.index] = self.e.const(a.kind.within)
                if a.timed and a.kind.kind in ("count", "distinct"):
                    marks = count_marks(model, a)
                    if marks is not None:
                        self.marks[a.index] = self.e.const(marks)

    # ------------------------------------------------------------------ values

    def value_of(self, a: AggDef, state: str, now: str) -> str:
        """Source of aggregate ``a``'s value at ``now`` from its state expression."""
        kind, i = a.kind.kind, a.index
        if not a.kind.windowed:
            if kind == "count":
                return f"({state} or 0)"
            if kind in _INLINE_LIFETIME:
                return state
            return f"{self.kinds[i]}.value({state}, {now})"
        w = self.w[i]
        if kind in _TIME_KINDS:
            # inline for None, one entry, and an array whose entries are all live
            fn, one, every = {
                "count": ("_tw_count", "1", "len(q_)"),
                "first_time": ("_tw_first", "q_", "q_[0]"),
                "last_time": ("_tw_last", "q_", "q_[-1]"),
            }[kind]
            none = "0" if kind == "count" else "None"
            return (
                f"({none} if (q_ := {state}) is None else ({one} if q_ <= {now} < q_ + {w} else {none}) "
                f"if type(q_) is float else {every} if type(q_) is _array and q_[0] + {w} > {now} "
                f"and q_[-1] <= {now} else {fn}(q_, {w}, {now}))"
            )
        if kind == "distinct":
            keys = _keys_slot(state)
            # inline for None, one entry, and a clean window whose entries are all live
            return (
                f"(0 if (q_ := {state}) is None else (1 if q_ <= {now} < q_ + {w} else 0) "
                f"if type(q_) is float else len(q_) if type(q_) is _array and type({keys}) is tuple "
                f"and q_[0] + {w} > {now} else _dw_count(q_, {keys}, {w}, {now}))"
            )
        empty = "0" if kind == "sum" else "None"
        return f"({empty} if ({state}) is None else ({state}).value({now}))"

    def lazy(self, prefix: str, now: str) -> Callable[[str], str]:
        """An ``agg(name)`` for Scope: the value computed at first use into a local."""

        def agg(name: str) -> str:
            a = self.m.aggs[self.agg_index[name]]
            v = f"{prefix}{a.index}"
            return f"({v} if {v} is not _U else ({v} := {self.value_of(a, f'u.a{a.index}', now)}))"

        return agg

    # ------------------------------------------------------------------ the module

    def module(self) -> str:
        o = self.out
        for seg in self.m.timed_segs:
            self.gen_nc(seg)
        self.gen_evaluate()
        self.gen_fire()
        self.gen_advance()
        events = sorted({a.config.event for a in self.m.aggs} - {"*"})
        names: dict[str, str] = {}
        for n, event in enumerate(events):
            fn = f"_ev{n}"
            self.gen_event(fn, self.m.by_event[event])
            names[fn] = self.e.const(event)
        self.gen_event("_ev_other", self.m.star)
        self.gen_identify()
        o("_EVENTS = {" + ", ".join(f"{k}: {fn}" for fn, k in names.items()) + "}")
        o("")
        self.gen_apply()
        self.gen_new()
        self.gen_values()
        return o.text()

    # ------------------------------------------------------------------ segments

    def reach(self, mask: int) -> int:
        """``mask`` with every segment an evaluation starting from it may come to (the
        dependants of each, transitively)."""
        out, todo = mask, mask
        while todo:
            more = 0
            for s in self.m.segs:
                if todo & s.bit:
                    more |= s.dependants
            todo = more & ~out
            out |= more
        return out

    def gen_evaluate(self, fn: str = "_evaluate", mask: int | None = None) -> None:
        """``fn(u, d, now, seq, cause, out)``: evaluate the segments of ``d`` (and their
        dependants), in order. With ``mask``, only the segments ``reach(mask)`` holds are
        generated: ``d`` must be within ``mask``."""
        m, o = self.m, self.out
        segs = m.segs if mask is None else [s for s in m.segs if s.bit & self.reach(mask)]
        o(f"def {fn}(u, d, now, seq, cause, out):")
        with o.block():
            o("members = u.members")
            if m.groups:
                o("raw = u.raw")
            o("user = u.user")
            o("traits = u.traits")
            read = sorted({self.agg_index[n] for s in segs for n in s.compiled.aggregates})
            if read:
                o(" = ".join(f"v{i}" for i in read) + " = _U")
            o("ev = 0")
            scope = Scope(
                self.lazy("v", "now"),
                now="now",
                traits="traits",
                members="members",
                segment_bit=self.seg_bit.__getitem__,
            )
            for s in segs:
                self.gen_segment(s, scope)
            # users share the int objects of their masks (few distinct ones, 28 bytes each)
            o("u.members = _mask(members, members)")
            if m.groups:
                o("u.raw = _mask(raw, raw)")
            o("return ev")
        o("")

    def gen_segment(self, s: SegDef, scope: Scope) -> None:
        o, b = self.out, s.bit
        name = self.e.const(s.name)
        o(f"if d & {b}:")
        with o.block():
            o(f"ev |= {b}")
            o(f"hit = {self.e.expr(parse(s.config.when), scope)}")
            g = s.group
            if g is None:
                o("if hit:")
                with o.block():
                    o(f"if not members & {b}:")
                    with o.block():
                        o(f"members |= {b}")
                        o(_transition(name, "enter"))
                        if s.dependants:
                            o(f"d |= {s.dependants}")
                o(f"elif members & {b}:")
                with o.block():
                    o(f"members ^= {b}")
                    o(_transition(name, "exit"))
                    if s.dependants:
                        o(f"d |= {s.dependants}")
                return
            o(f"raw = raw | {s.raw_bit} if hit else raw & {~s.raw_bit}")
            if s.index != g.last:
                return
            o(f"cand = raw & {g.raw_mask}")
            for k, (raw_bit, bit) in enumerate(g.ranked):
                o(f"{'if' if k == 0 else 'elif'} cand & {raw_bit}:")
                with o.block():
                    o(f"win = {bit}")
            o("else:")
            with o.block():
                o("win = 0")
            o(f"old = members & {g.mask}")
            o("if old != win:")
            with o.block():
                o(f"members = (members & {~g.mask}) | win")
                o("gone = old & ~win")
                mates = sorted((x for x in self.m.segs if x.group is g), key=lambda x: x.index)
                for x in mates:
                    o(f"if gone & {x.bit}:")
                    with o.block():
                        o(_transition(self.e.const(x.name), "exit"))
                        if x.dependants:
                            o(f"d |= {x.dependants}")
                o("if win & ~old:")
                with o.block():
                    for k, x in enumerate(mates):
                        o(f"{'if' if k == 0 else 'elif'} win == {x.bit}:")
                        with o.block():
                            o(_transition(self.e.const(x.name), "enter"))
                            if x.dependants:
                                o(f"d |= {x.dependants}")

    # ------------------------------------------------------------------ time

    def gen_nc(self, s: SegDef) -> None:
        """``_nc{slot}(u, now)``: segment ``s``'s next change after an evaluation at ``now``
        (``Compiled.next_change``): planned by ``actors.compiled.timing``, the reference
        closure for the rest."""
        o = self.out
        o(f"def _nc{s.timed_slot}(u, now):")
        with o.block():
            plan = nc_plan(parse(s.config.when))
            if plan is not None:
                o("traits = u.traits")
                o("members = u.members")
                read = sorted({self.agg_index[n] for n in s.compiled.aggregates})
                o(" = ".join(f"v{i}" for i in read) + " = _U")
                scope = Scope(
                    self.lazy("v", "now"),
                    now="now",
                    traits="traits",
                    members="members",
                    segment_bit=self.seg_bit.__getitem__,
                )
                while plan[0] != "leaf":
                    op, fixed, plan = plan
                    test = self.e.expr(fixed, scope)
                    o(f"if {'not ' if op == 'and' else ''}{test}:")
                    with o.block():
                        o("return None")
                leaf = plan[1]
                value = scope.agg(leaf.agg)
                args = ", ".join(self.e.const(x) for x in (leaf.unit, leaf.k, leaf.params))
                o(f"r_ = _lin({value}, now, {args})")
                o("if r_ is not _FB:")
                with o.block():
                    o("return r_")
            o(f"return {self.e.const(s.next_change)}(_nc_context(u, now))")
        o("")

    def gen_reschedule(self, now: str, windows: list[tuple[AggDef, str]], full: bool) -> None:
        """The reference's ``_reschedule``: ``best`` starts as ``u.deadline``; ``windows`` are
        (aggregate, flag local) pairs whose next change is recomputed when the flag is set."""
        m, o = self.m, self.out
        o("best = u.deadline")
        for a, flag in windows:
            o(f"if {flag}:")
            with o.block():
                self.emit_next(a, f"u.a{a.index}", now)
                o("if nc is not None and (best is None or nc < best):")
                with o.block():
                    o("best = nc")
        if m.timed_segs:
            o(f"timed = ev & {m.timed_mask}")
            o("if timed:")
            with o.block():
                for s in m.timed_segs:
                    o(f"if timed & {s.bit}:")
                    with o.block():
                        o(f"nc = _nc{s.timed_slot}(u, {now})")
                        o("if nc is None:")
                        with o.block():
                            o(f"u.t{s.timed_slot} = _INF")
                        o("else:")
                        with o.block():
                            o(f"u.t{s.timed_slot} = nc")
                            o("if best is None or nc < best:")
                            with o.block():
                                o("best = nc")
            if full:
                slots = [f"u.t{s.timed_slot}" for s in m.timed_segs]
                o(f"nc = {slots[0]}" if len(slots) == 1 else f"nc = min({', '.join(slots)})")
                o("if nc < _INF and (best is None or nc < best):")
                with o.block():
                    o("best = nc")
        o("u.deadline = best")

    def emit_next(self, a: AggDef, state: str, now: str) -> None:
        """``nc = `` the window's next change after ``now``. Inline for the usual state, where
        every entry has started and none has expired (then it is the oldest entry's expiry,
        as ``_time_next`` finds); the general function otherwise."""
        o, w = self.out, self.w[a.index]
        o(f"s_ = {state}")
        marks = self.marks.get(a.index)
        if marks is not None:
            self.emit_count_deadline(a, marks, now)
            return
        if a.kind.kind == "distinct":
            o(f"nc = _dw_next(s_, {w}, {now})")
            return
        if a.kind.kind in _TIME_KINDS:
            o("if s_ is None:")
            with o.block():
                o("nc = None")
            o("elif type(s_) is float:")
            with o.block():
                o(f"nc = s_ if s_ > {now} else (e_ if (e_ := s_ + {w}) > {now} else None)")
            o(f"elif type(s_) is _array and s_[-1] <= {now} and (e_ := s_[0] + {w}) > {now}:")
            with o.block():
                o("nc = e_")
            o("else:")
            with o.block():
                o(f"nc = _tw_next(s_, {w}, {now})")
            return
        o("if s_ is None:")
        with o.block():
            o("nc = None")
        o(f"elif type(t_ := s_.times) is _array and t_ and t_[-1] <= {now} and (e_ := t_[0] + {w}) > {now}:")
        with o.block():
            o("nc = e_")
        o("else:")
        with o.block():
            o(f"nc = s_.next_change({now})")

    def emit_count_deadline(self, a: AggDef, marks: str, now: str) -> None:
        """``nc = count_deadline(...)`` of the window in ``s_``, inline when every entry is
        live and the marks are whole numbers: the expiry of the m-th oldest entry, m the
        fewest expiries that cross a mark (or empty the window)."""
        o, w = self.out, self.w[a.index]
        values = self.e.consts[marks]
        whole = all(k == int(k) for _, k in values)
        clean = ""
        if a.kind.kind == "distinct":
            keys = _keys_slot(f"u.a{a.index}")
            general = f"_dw_deadline(s_, {keys}, {w}, {now}, {marks})"
            clean = f" and type({keys}) is tuple"  # each key once: an expiry is one value less
        else:
            general = f"_count_deadline(s_, {w}, {now}, {marks})"
        o("if s_ is None:")
        with o.block():
            o("nc = None")
        if whole:
            o(f"elif type(s_) is _array{clean} and s_[-1] <= {now} and s_[0] + {w} > {now}:")
            times = "s_"
            with o.block():
                o(f"n_ = m_ = len({times})")
                for op, k in values:
                    kn = self.e.const(int(k))
                    if op in (">=", "<"):
                        o(f"if n_ >= {kn} and n_ - {kn} + 1 < m_:")
                        with o.block():
                            o(f"m_ = n_ - {kn} + 1")
                    elif op in (">", "<="):
                        o(f"if n_ > {kn} and n_ - {kn} < m_:")
                        with o.block():
                            o(f"m_ = n_ - {kn}")
                    else:
                        o(f"if n_ == {kn}:")
                        with o.block():
                            o("m_ = 1")
                        o(f"elif n_ > {kn} and n_ - {kn} < m_:")
                        with o.block():
                            o(f"m_ = n_ - {kn}")
                o(f"nc = {times}[m_ - 1] + {w}")
        o("else:")
        with o.block():
            o(f"nc = {general}")

    def emit_prune(self, a: AggDef, state: str, now: str) -> None:
        """``u.aN = `` the window pruned at ``now`` (``state`` holds its current state)."""
        o, st = self.out, f"u.a{a.index}"
        if a.kind.kind in _TIME_KINDS:
            o(f"{st} = _tw_prune({state}, {self.w[a.index]}, {now})")
        elif a.kind.kind == "distinct":
            o(f"{st}, {_keys_slot(st)} = _dw_prune({state}, {_keys_slot(st)}, {self.w[a.index]}, {now})")
        else:
            o(f"{st} = _vw_prune({state}, {now})")

    def gen_fire(self) -> None:
        m, o = self.m, self.out
        o("def _fire(u, t, out):")
        with o.block():
            o("d = 0")
            for s in m.timed_segs:
                o(f"if u.t{s.timed_slot} <= t:")
                with o.block():
                    o(f"d |= {s.closed}")
            o("best = None")
            o("prev = u.now")
            due = []
            for a in m.window_aggs:
                flag = f"due{a.index}"
                due.append((a, flag))
                o(f"{flag} = False")
                self.emit_next(a, f"u.a{a.index}", "prev")
                o("if nc is not None:")
                with o.block():
                    o("if nc <= t:")
                    with o.block():
                        o(f"d |= {a.seg_mask}")
                        o(f"{flag} = True")
                        self.emit_prune(a, "s_", "t")
                    o("elif best is None or nc < best:")
                    with o.block():
                        o("best = nc")
            for a in m.idle_windows:
                o(f"s = u.a{a.index}")
                o("if s is not None:")
                with o.block():
                    self.emit_prune(a, "s", "t")
            o("u.now = t")
            o("ev = _evaluate(u, d, t, u.last_seq, 't', out) if d else 0")
            o("u.deadline = best")
            self.gen_reschedule("t", due, full=True)
            o("if u.deadline is not None and u.deadline <= t:")
            with o.block():
                o("_stuck(u, t)")
        o("")

    def gen_advance(self) -> None:
        o = self.out
        o("def advance(u, clock):")
        with o.block():
            o("out = []")
            o("while u.deadline is not None and u.deadline <= clock:")
            with o.block():
                o("_fire(u, u.deadline, out)")
            o("return out")
        o("")

    # ------------------------------------------------------------------ events

    def gen_event(self, fn: str, aggs: tuple[AggDef, ...]) -> None:
        m, o = self.m, self.out
        o(f"def {fn}(u, seq, event, ts, clock, props, ctx, out):")
        with o.block():
            o(f"d = {m.all_mask} if u.last_seq is None else 0")
            folded: list[tuple[AggDef, str]] = []
            if aggs:
                o("traits = u.traits")
                read = sorted({self.agg_index[n] for a in aggs for n in _where_aggs(a)})
                if read:
                    o(" = ".join(f"p{i}" for i in read) + " = _U")
                scope = Scope(
                    self.lazy("p", "clock"), now="clock", props="props", context="ctx", event="event"
                )
                deferred = m.where_reads_aggs
                for a in aggs:
                    if a.timed:
                        flag = f"f{a.index}"
                        folded.append((a, flag))
                        o(f"{flag} = False")
                for a in aggs:
                    self.gen_match(a, scope, deferred)
                if deferred:
                    for a in aggs:
                        o(f"if ok{a.index}:")
                        with o.block():
                            self.gen_fold(a, f"x{a.index}" if a.config.of is not None else "None")
            o("u.last_seq = seq")
            o("u.now = clock")
            # the segments this event's folds may mark: evaluated by a function of their own
            # (the first event of a user marks every segment: the whole _evaluate)
            mask = 0
            for a in aggs:
                mask |= a.seg_mask
            own = 0 < self.reach(mask) != m.all_mask
            o("if d:")
            with o.block():
                if own:
                    o(f"ev = (_evaluate if d & {~mask} else _evaluate{fn})(u, d, clock, seq, 'e', out)")
                else:
                    o("ev = _evaluate(u, d, clock, seq, 'e', out)")
                self.gen_reschedule("clock", folded, full=False)
            if folded:
                o(f"elif {' or '.join(flag for _, flag in folded)}:")
                with o.block():
                    o("ev = 0")
                    self.gen_reschedule("clock", folded, full=False)
        o("")
        if own:
            self.gen_evaluate(f"_evaluate{fn}", mask)

    def gen_match(self, a: AggDef, scope: Scope, deferred: bool) -> None:
        """``where`` then ``of`` of one aggregate; fold at once unless ``deferred``."""
        o, i = self.out, a.index
        cfg = a.config
        if deferred:
            o(f"ok{i} = False")
        if cfg.where is not None:
            o(f"if {self.e.expr(parse(cfg.where), scope)}:")
            o.depth += 1
        value = "None"
        if cfg.of is not None:
            value = f"x{i}"
            o(f"{value} = {self.e.expr(parse(cfg.of), scope)}")
        if deferred:
            o(f"ok{i} = True")
        else:
            self.gen_fold(a, value)
        step = self.steps.get(i)
        if step is not None:
            if step.keep:
                o(f"d |= {step.keep}")
        elif a.seg_mask:
            o(f"d |= {a.seg_mask}")
        if a.timed:
            o(f"f{i} = True")
        if cfg.where is not None:
            o.depth -= 1

    def gen_fold(self, a: AggDef, value: str) -> None:
        o, i = self.out, a.index
        kind, st = a.kind.kind, f"u.a{i}"
        if not a.kind.windowed:
            if kind == "count":
                o(f"s = {st}")
                o(f"{st} = 1 if s is None else s + 1")
                self.emit_step(i, "(0 if s is None else s)")
            elif kind in ("first_time", "last_time"):
                cmp = ">" if kind == "last_time" else "<"
                o(f"s = {st}")
                o(f"if s is None or ts {cmp} s:")
                with o.block():
                    o(f"{st} = ts")
            else:
                o(f"{st} = {self.kinds[i]}.fold({st}, ts, {value}, clock)")
            return
        w = self.w[i]
        if kind in _TIME_KINDS:
            # inline: a first entry, a second one, or an append that expires nothing
            o(f"s = {st}")
            o("if s is None:")
            with o.block():
                o(f"{st} = ts if ts + {w} > clock else None")
                self.emit_step(i, None)
            o(f"elif type(s) is _array and ts >= s[-1] and s[0] + {w} > clock and len(s) < _BIG:")
            with o.block():
                o(f"{st} = s + _array('d', (ts,))  # exact size (windows.tw_fold)")
                # every entry live, and the new one too unless it is in the future
                self.emit_step(i, "len(s)", future=True)
            o(f"elif type(s) is float and s + {w} > clock and ts + {w} > clock:")
            with o.block():
                o(f"{st} = _array('d', (s, ts) if ts >= s else (ts, s))")
                self.emit_step(i, None)
            o("else:")
            with o.block():
                o(f"{st} = _tw_fold(s, ts, {w}, clock)")
                self.emit_step(i, None)
            return
        if kind == "distinct":
            keys = _keys_slot(st)
            o(f"if ts + {w} <= clock or {value} is None:")
            with o.block():
                o(f"if {st} is not None:")
                with o.block():
                    o(f"{st}, {keys} = _dw_prune({st}, {keys}, {w}, clock)")
                self.emit_step(i, None)
            o("else:")
            with o.block():
                self.emit_distinct_fold(i, st, keys, value, w)
            return
        accept = "_is_number({v})" if kind in ("sum", "avg", "min", "max") else "{v} is not None"
        o(f"s = {st}")
        o(f"if ts + {w} <= clock or not ({accept.format(v=value)}):")
        with o.block():
            o("if s is not None:")
            with o.block():
                o(f"{st} = _vw_prune(s, clock)")
        o("else:")
        with o.block():
            o("if s is None:")
            with o.block():
                o(f"s = {st} = _new_vw({self.e.const(kind)}, {w})")
            o(f"s.fold(ts, {value}, clock)")

    def emit_step(self, i: int, n: str | None, future: bool = False) -> None:
        """Set the bits of the readers aggregate ``i``'s fold may leave unchanged (its
        ``Step.skip``): always when ``n`` is None (the count before the fold unknown), else
        when the step from ``n`` crosses (or, with ``future``, when ``ts`` is after the
        clock). Nothing for an aggregate without a step plan."""
        step = self.steps.get(i)
        if step is None:
            return
        o = self.out
        tests = ["ts > clock"] if future else []
        if n is None:
            o(f"d |= {step.skip}")
            return
        if step.crossing:
            tests.append(f"{n} in {self.e.const(step.crossing)}")
        if tests:
            o(f"if {' or '.join(tests)}:")
            with o.block():
                o(f"d |= {step.skip}")

    def emit_distinct_fold(self, i: int, st: str, keys: str, value: str, w: str) -> None:
        """Fold an accepted value into a distinct window: ``dw_fold``'s clean fast path
        inline (a small window whose keys are each there once, nothing expiring, the new
        entry last: it replaces its key's one occurrence), ``_dw_fold`` otherwise."""
        o = self.out
        o(f"k_ = _intern({value}) if type({value}) is str and len({value}) <= _SKM else _dkey({value})")
        o(f"s = {st}")
        o(f"q_ = {keys}")
        o(
            f"if type(s) is _array and type(q_) is tuple and s[-1] <= ts <= clock "
            f"and s[0] + {w} > clock and len(s) < _DW_SMALL:"
        )
        with o.block():
            o("if k_ in q_:")
            with o.block():
                # the key moves to ts: the count stays the same
                o("i_ = q_.index(k_)")
                o(f"{st} = s[:i_] + s[i_ + 1 :] + _array('d', (ts,))")
                o(f"{keys} = q_[:i_] + q_[i_ + 1 :] + (k_,)")
            o("else:")
            with o.block():
                self.emit_step(i, "len(q_)")
                o(f"{st} = s + _array('d', (ts,))")
                o(f"{keys} = q_ + (k_,)")
        o("else:")
        with o.block():
            o(f"{st}, {keys} = _dw_fold(s, q_, ts, k_, {w}, clock)")
            self.emit_step(i, None)

    def gen_identify(self) -> None:
        m, o = self.m, self.out
        o("def _identify(u, seq, clock, data, out):")
        with o.block():
            o(f"d = {m.all_mask} if u.last_seq is None else 0")
            o("if data:")
            with o.block():
                o("d |= _merge_traits(u, data)")
            o("u.last_seq = seq")
            o("u.now = clock")
            o("if d:")
            with o.block():
                o("ev = _evaluate(u, d, clock, seq, 'e', out)")
                self.gen_reschedule("clock", [], full=False)
        o("")

    def gen_apply(self) -> None:
        o = self.out
        o("def apply(u, seq, type, event, ts, clock, data, context=None):")
        with o.block():
            o("clock = float(clock)")
            o("out = advance(u, clock) if u.deadline is not None and u.deadline <= clock else []")
            o("if clock < u.now:")
            with o.block():
                o("clock = u.now")
            o("if type == 'track':")
            with o.block():
                o("_EVENTS.get(event, _ev_other)(u, seq, event, clock if ts is None else float(ts), clock, ")
                o("    _EMPTY if data is None else data, _EMPTY if context is None else context, out)")
            o("elif type == 'identify':")
            with o.block():
                o("_identify(u, seq, clock, data, out)")
            o("else:")
            with o.block():
                o("_bad_type(type)")
            o("return out")
        o("")

    def gen_new(self) -> None:
        m, o = self.m, self.out
        o("def new(user):")
        with o.block():
            o("u = _new_user(_User)")
            o("u.user = user")
            o("u.traits = None")
            o("u.members = 0")
            o("u.last_seq = None")
            o("u.deadline = None")
            o("u.now = -_INF")
            if m.groups:
                o("u.raw = 0")
            for seg in m.timed_segs:
                o(f"u.t{seg.timed_slot} = _INF")
            for a in m.aggs:
                o(f"u.a{a.index} = None")
                if a.kind.windowed and a.kind.kind == "distinct":
                    o(f"u.b{a.index} = None")
            o("return u")
        o("")

    def gen_values(self) -> None:
        o = self.out
        for a in self.m.aggs:
            o(f"def _val{a.index}(u, now):")
            with o.block():
                o(f"return {self.value_of(a, f'u.a{a.index}', 'now')}")
            o("")
        o("VALUES = (" + "".join(f"_val{a.index}, " for a in self.m.aggs) + ")")


def _keys_slot(state: str) -> str:
    """The keys slot (``u.bN``) of a distinct window whose times are in ``u.aN``."""
    assert state.startswith("u.a")
    return "u.b" + state[3:]


def _transition(name: str, kind: str) -> str:
    """Appending the transition of segment ``name`` (a const) of ``kind``: the reference's
    ``actors.user._transition``, id (``transition_id``) and record inlined."""
    key = f'f"{{{name}}}\\x00{{user}}\\x00{kind}\\x00{{seq}}\\x00{{now!r}}\\x00{{cause}}".encode()'
    return f"out.append(_T(_b2b({key}, digest_size=12).hexdigest(), {name}, user, '{kind}', now, seq))"


def _where_aggs(a: AggDef) -> list[str]:
    """Aggregates read by ``a``'s where/of (empty unless the model's where_reads_aggs)."""
    names: list[str] = []
    for text in (a.config.where, a.config.of):
        if text is not None:
            names += _names_in(parse(text))
    return names


def _names_in(node: Node) -> list[str]:
    """Every aggregate name referenced in ``node``."""
    match node:
        case Aggregate(name=name):
            return [name]
        case ListExpr(items=kids) | Call(args=kids):
            return [n for k in kids for n in _names_in(k)]
        case Unary(operand=x):
            return _names_in(x)
        case Binary(left=a, right=b):
            return _names_in(a) + _names_in(b)
    return []


def generate(model: Model, runtime: dict[str, Any]) -> Generated:
    """Generate, compile and run the module of ``model``; ``runtime`` are the state helpers
    it calls (``_tw_fold``, ``_tr``, ``_nc_context``...: see ``actors.compiled.engine``)."""
    g = _Gen(model, runtime)
    source = g.module()
    names: dict[str, Any] = {"__name__": "segd_compiled_model", "__builtins__": __builtins__}
    names.update(HELPERS)
    names.update({"_lin": lin_nc, "_FB": FALLBACK})
    names.update(runtime)
    names.update(g.e.consts)
    code = compile(source, "<segd compiled model>", "exec")
    exec(code, names)  # segd's own text (see the module docstring), never the config's
    return Generated(source, names)
