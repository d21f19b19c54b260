"""The model compiler's time: next changes of time rules, window deadlines, ``_fire``, ``advance``.

After an evaluation the user's deadline is recomputed as the reference's ``_reschedule``
does: the next change of each window whose entries moved (inline for the usual state, the
general functions of ``actors.compiled.windows``/``distinct`` otherwise) and of each
time-dependent segment evaluated (``_nc{slot}``: ``timing.nc_plan`` inline, the reference
closure for the rest). ``_fire`` is one deadline: windows due pruned, their readers and the
time rules due evaluated, the deadline recomputed.
"""

from __future__ import annotations

from actors.compiled.gen_base import TIME_KINDS, keys_slot
from actors.compiled.gen_segments import SegmentsGen
from actors.compiled.gen_segments import flag as flag_of
from actors.compiled.timing import Leaf, nc_plan
from actors.model import AggDef, SegDef
from segd.rules import parse
from segd.rules.ops import SYMBOL

__all__ = ["TimeGen"]


class TimeGen(SegmentsGen):
    """Writes the deadline code."""

    def gen_nc(self, s: SegDef) -> None:
        """``_nc{slot}(u, now)``: segment ``s``'s next change after an evaluation at ``now``
        (``Compiled.next_change``): planned by ``actors.compiled.timing``, the reference
        closure for the rest."""
        o = self.out
        o(f"def _nc{s.timed_slot}(u, now):")
        with o.block():
            o("traits = u.traits")
            o("members = u.members")
            self.emit_nc_body(s)
        o("")

    def emit_nc_body(self, s: SegDef, inline: bool = False) -> None:
        """``_nc{slot}``'s body (after its ``traits`` and ``members`` locals). ``inline``: in
        a flag-mode evaluation's reschedule (``inline_evaluation``, at ``now``), its answer
        put in ``nc`` by a ``while True`` block whose every return is a ``break``; the
        evaluation's locals serve (its ``v``-locals hold the aggregates' values at ``now``,
        which nothing changed since, ``members`` is the user's new mask)."""
        o = self.out
        self.nc_inline = inline
        if inline:
            o("while True:")
            o.depth += 1
        plan = nc_plan(parse(s.config.when))
        if plan is not None:
            read = sorted({self.agg_index[n] for n in s.compiled.aggregates})
            if not inline:
                o(" = ".join(f"v{i}" for i in read) + " = _U")
            scope = self.seg_scope()
            while plan[0] != "leaf":
                op, fixed, plan = plan
                test = self.e.expr(fixed, scope)
                o(f"if {'not ' if op == 'and' else ''}{test}:")
                with o.block():
                    self.ret("None")
            leaf = plan[1]
            o(f"t_ = {scope.agg(leaf.agg)}")
            o("if type(t_) is float and type(now) is float:")
            with o.block():
                self.emit_lin(leaf)
            o("else:")
            with o.block():
                args = ", ".join(self.e.const(x) for x in (leaf.unit, leaf.k, leaf.params))
                o(f"r_ = _lin(t_, now, {args})")
                o("if r_ is not _FB:")
                with o.block():
                    self.ret("r_")
        self.ret(f"{self.e.const(s.next_change)}(_nc_context(u, now))")
        if inline:
            o.depth -= 1
        self.nc_inline = False

    nc_inline = False  # emit_nc_body's returns are breaks

    def ret(self, value: str) -> None:
        """``return value`` from ``_nc{slot}``, or inline: ``nc = value`` and ``break``."""
        if self.nc_inline:
            self.out(f"nc = {value}")
            self.out("break")
        else:
            self.out(f"return {value}")

    def emit_lin(self, leaf: Leaf) -> None:
        """``timing.lin_nc`` inline for float ``t_`` and ``now``, its parameters resolved
        here: the same float operations in the same order; where ``lin_nc`` would answer
        FALLBACK the code falls through to the reference closure. (Float arithmetic raises
        no OverflowError, so ``lin_nc``'s guards against it are not needed for floats.)"""
        o = self.out
        d1, _by_sign, _last, v_first, before, value, flip = leaf.params
        unit, k = self.e.const(leaf.unit), self.e.const(leaf.k)
        w = f"(now - t_) / {unit}"
        o(f"d0_ = {w} - {k}" if flip == 1 else f"d0_ = {k} - {w}")
        o("if _NINF < d0_ < _INF:")
        with o.block():
            o(f"r_ = -d0_ / {self.e.const(d1)}")
            o("if r_ < 0.0:")
            with o.block():
                o("if r_ <= -16 * _ulp(max(abs(now), 1.0)):")
                with o.block():
                    self.ret("None")
                o("r_ = 0.0")
            o("g_ = now + r_")
            o("if not g_ < _INF:")
            with o.block():
                self.ret("None")
            o("if g_ > now:")
            with o.block():
                test = f"(g_ - t_) / {unit} {SYMBOL[value]} {k}"
                o(f"if {test if v_first is False else f'not ({test})'}:")
                with o.block():
                    o("b_ = _nextafter(g_, _NINF)")
                    o("if b_ <= now:")
                    with o.block():
                        self.ret("g_")
                    o(f"if (b_ - t_) / {unit} {SYMBOL[before]} {k}:")
                    with o.block():
                        self.ret("g_")

    def gen_reschedule(
        self,
        now: str,
        windows: list[tuple[AggDef, str]],
        full: bool,
        evaluated: bool = True,
        flags: int | None = None,
    ) -> None:
        """The reference's ``_reschedule``: ``best`` starts as ``u.deadline``; ``windows`` are
        (aggregate, flag local) pairs whose next change is recomputed when the flag is set;
        the time rules evaluated (``ev``, when ``evaluated``) get their next change again.
        With ``flags`` (a mask: flag mode, ``SegmentsGen.inline_evaluation`` of it), the time
        rules evaluated are those of ``reach(flags)`` whose flag is set (no other can be)."""
        m, o = self.m, self.out
        o("best = u.deadline")
        for a, flag in windows:
            o(f"if {flag}:")
            with o.block():
                self.emit_next(a, f"u.a{a.index}", now)
                o("if nc is not None and (best is None or nc < best):")
                with o.block():
                    o("best = nc")
        if m.timed_segs and evaluated:
            if flags is None:
                o(f"timed = ev & {m.timed_mask}")
                o("if timed:")
                tests = [(s, f"timed & {s.bit}") for s in m.timed_segs]
                o.depth += 1
            else:
                reached = self.reach(flags)
                tests = [(s, flag_of(s)) for s in m.timed_segs if s.bit & reached]
            for s, test in tests:
                o(f"if {test}:")
                with o.block():
                    if flags is None:
                        o(f"nc = _nc{s.timed_slot}(u, {now})")
                    else:
                        self.emit_nc_body(s, inline=True)
                    o.code(f"""
                        if nc is None:
                            u.t{s.timed_slot} = _INF
                        else:
                            u.t{s.timed_slot} = nc
                            if best is None or nc < best:
                                best = nc
                    """)
            if flags is None:
                o.depth -= 1
            if full:
                slots = [f"u.t{s.timed_slot}" for s in m.timed_segs]
                o(f"nc = {slots[0]}" if len(slots) == 1 else f"nc = min({', '.join(slots)})")
                o("if nc < _INF and (best is None or nc < best):")
                with o.block():
                    o("best = nc")
        o("u.deadline = best")

    def emit_next(self, a: AggDef, state: str | None, now: str) -> None:
        """``nc = `` the window's next change after ``now``. Inline for the usual state, where
        every entry has started and none has expired (then it is the oldest entry's expiry,
        as ``_time_next`` finds); the general function otherwise. ``state`` None: the state
        is in ``s_`` already, and not None."""
        o, w = self.out, self.w[a.index]
        if state is not None:
            o(f"s_ = {state}")
            o("if s_ is None:")
            with o.block():
                o("nc = None")
        kw = "if" if state is None else "elif"
        marks = self.marks.get(a.index)
        if marks is not None:
            self.emit_count_deadline(a, marks, now, kw)
            return
        if a.kind.kind == "distinct":
            if state is None:
                o(f"nc = _dw_next(s_, {w}, {now})")
            else:
                o("else:")
                with o.block():
                    o(f"nc = _dw_next(s_, {w}, {now})")
            return
        if a.kind.kind in TIME_KINDS:
            o.code(f"""
                {kw} type(s_) is float:
                    nc = s_ if s_ > {now} else (e_ if (e_ := s_ + {w}) > {now} else None)
                elif type(s_) is _array and s_[-1] <= {now} and (e_ := s_[0] + {w}) > {now}:
                    nc = e_
                else:
                    nc = _tw_next(s_, {w}, {now})
            """)
            return
        o.code(f"""
            {kw} type(t_ := s_.times) is _array and t_ and t_[-1] <= {now} and (e_ := t_[0] + {w}) > {now}:
                nc = e_
            else:
                nc = s_.next_change({now})
        """)

    def emit_count_deadline(self, a: AggDef, marks: str, now: str, kw: str) -> None:
        """``nc = count_deadline(...)`` of the window in ``s_``, inline when every entry is
        live and the marks are whole numbers: the expiry of the m-th oldest entry, m the
        fewest expiries that cross a mark (or empty the window). ``kw``: the first test's
        keyword (``elif`` after ``emit_next``'s test for None)."""
        o, w = self.out, self.w[a.index]
        values = self.e.consts[marks]
        whole = all(k == int(k) for _, k in values)
        clean = ""
        if a.kind.kind == "distinct":
            keys = keys_slot(f"u.a{a.index}")
            general = f"_dw_deadline(s_, {keys}, {w}, {now}, {marks})"
            clean = f" and type({keys}) is tuple"  # each key once: an expiry is one value less
        else:
            general = f"_count_deadline(s_, {w}, {now}, {marks})"
        # one entry: its start, else its expiry (tw_next, as both general functions answer)
        o(f"{kw} type(s_) is float:")
        with o.block():
            o(f"nc = s_ if s_ > {now} else (e_ if (e_ := s_ + {w}) > {now} else None)")
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
        if a.kind.kind in TIME_KINDS:
            o(f"{st} = _tw_prune({state}, {self.w[a.index]}, {now})")
        elif a.kind.kind == "distinct":
            o(f"{st}, {keys_slot(st)} = _dw_prune({state}, {keys_slot(st)}, {self.w[a.index]}, {now})")
        else:
            o(f"{st} = _vw_prune({state}, {now})")

    def gen_fire(self) -> None:
        """``_fire(u, t, out)``: the user's deadline ``t`` (``UserActor._fire``). The segments
        a deadline can mark and their dependants, unless that is every segment, are evaluated
        inline in flag mode (``SegmentsGen.inline_evaluation``)."""
        m, o = self.m, self.out
        mask = 0
        for s in m.timed_segs:
            mask |= s.closed
        for a in m.window_aggs:
            mask |= a.seg_mask
        own = 0 < self.reach(mask) != m.all_mask
        self.flagged = own
        o("def _fire(u, t, out):")
        with o.block():
            o(self.flag_init(mask) if own else "d = 0")
            for s in m.timed_segs:
                o(f"if u.t{s.timed_slot} <= t:")
                with o.block():
                    o(self.mark(s.closed))
            o("best = None")
            o("prev = u.now")
            due = [(a, f"due{a.index}") for a in m.window_aggs]
            if due:
                o(" = ".join(flag for _, flag in due) + " = False")
            for a, flag in due:
                # an empty window has no next change
                o(f"s_ = u.a{a.index}")
                o("if s_ is not None:")
                with o.block():
                    self.emit_next(a, None, "prev")
                    o("if nc is not None:")
                    with o.block():
                        o("if nc <= t:")
                        with o.block():
                            if self.flagged:
                                o(self.mark(a.seg_mask, flag))
                            else:
                                o(self.mark(a.seg_mask))
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
            if own:
                o("if mk_:")
                with o.block():
                    self.inline_evaluation(mask, "t", "u.last_seq", "t")
            else:
                o("ev = _evaluate(u, d, t, u.last_seq, 't', out) if d else 0")
            o("u.deadline = best")
            self.gen_reschedule("t", due, full=True, flags=mask if own else None)
            o("if u.deadline is not None and u.deadline <= t:")
            with o.block():
                o("_stuck(u, t)")
        o("")
        self.flagged = False

    def gen_advance(self) -> None:
        """``advance(u, clock)``: fire every deadline up to ``clock``."""
        self.out.code("""
            def advance(u, clock):
                out = []
                while u.deadline is not None and u.deadline <= clock:
                    _fire(u, u.deadline, out)
                return out
        """)
        self.out("")
