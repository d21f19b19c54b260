"""The model compiler's segments: ``_evaluate``, every ``when`` inlined with its membership bit.

Each segment of the evaluation order is re-evaluated when its bit is in ``d``; a change of
membership appends the transition (id, record: ``actors.user._transition`` inlined) and marks
the dependants; an exclusive group is resolved at its last member, its order fixed at compile
time. The event functions and ``_fire`` hold the same evaluation inline, for the segments
their folds or deadlines can mark, with one boolean local per segment in place of ``d``'s
bits (``inline_evaluation``).
"""

from __future__ import annotations

from actors.compiled.expr import Scope
from actors.compiled.gen_base import GenBase
from actors.model import SegDef
from segd.rules import parse

__all__ = ["SegmentsGen", "flag"]


def flag(s: SegDef) -> str:
    """The flag local of segment ``s`` in flag mode (``SegmentsGen.flagged``)."""
    return f"mk{s.index}"


class SegmentsGen(GenBase):
    """Writes the evaluate functions."""

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

    # Flag mode (``inline_evaluation``): the segments to evaluate are marked by one boolean
    # local each (``mk{index}``) instead of bits of the int ``d``, and what was evaluated is
    # read from the same flags: an int's ``&``/``|`` allocate for bits past 256, a flag test
    # is one jump. A segment's flag is set only before it is reached (dependants come later
    # in the evaluation order), so at the end a flag says "evaluated", as ``ev``'s bit did.
    flagged = False

    def mark(self, mask: int, more: str = "") -> str:
        """The statement that marks the segments of ``mask`` for evaluation (in flag mode,
        setting the local ``more`` True too)."""
        if not self.flagged:
            return f"d |= {mask}"
        # ``mk_``: some segment marked (one test instead of one per flag)
        names = ["mk_"] + [flag(s) for s in self.m.segs if mask & s.bit] + ([more] if more else [])
        return " = ".join(names) + " = True"

    def gen_evaluate(self, fn: str = "_evaluate", mask: int | None = None) -> None:
        """``fn(u, d, now, seq, cause, out)``: evaluate the segments of ``d`` (and their
        dependants), in order. With ``mask``, only the segments ``reach(mask)`` holds are
        generated: ``d`` must be within ``mask``."""
        m, o = self.m, self.out
        segs = list(m.segs) if mask is None else self.reached(mask)
        o(f"def {fn}(u, d, now, seq, cause, out):")
        with o.block():
            o("ev = 0")
            self.emit_evaluation(segs)
            o("return ev")
        o("")

    def reached(self, mask: int) -> list[SegDef]:
        """The segments ``reach(mask)`` holds, in evaluation order."""
        r = self.reach(mask)
        return [s for s in self.m.segs if s.bit & r]

    def inline_evaluation(self, mask: int, now: str, seq: str, cause: str) -> None:
        """``_evaluate``'s body inline, in flag mode, for the segments ``reach(mask)`` holds
        (their flags set by the caller's code before it, ``flag_init`` at its top): the
        locals ``now``, ``seq`` and ``cause`` bound from the caller's."""
        o = self.out
        if now != "now":
            o(f"now = {now}")
        if seq != "seq":
            o(f"seq = {seq}")
        o(f"cause = {cause!r}")
        self.emit_evaluation(self.reached(mask))

    def flag_init(self, mask: int, more: list[str] | None = None) -> str:
        """Every flag of ``reach(mask)`` (and the locals ``more``) set False: the top of a
        flag-mode function."""
        return " = ".join(["mk_"] + [flag(s) for s in self.reached(mask)] + (more or [])) + " = False"

    def emit_evaluation(self, segs: list[SegDef]) -> None:
        """Evaluate ``segs`` (those marked) in order; store the masks that changed."""
        m, o = self.m, self.out
        o("members = u.members")
        if m.groups:
            o("raw = u.raw")
        o("user = u.user")
        o("traits = u.traits")
        read = sorted({self.agg_index[n] for s in segs for n in s.compiled.aggregates})
        if read:
            o(" = ".join(f"v{i}" for i in read) + " = _U")
        o("tail_ = None")
        scope = self.seg_scope()
        for s in segs:
            self.gen_segment(s, scope)
        # users share the int objects of their masks (few distinct ones, 28 bytes each)
        # (an unchanged mask is that shared object already: no look-up)
        o("if members != u.members:")
        with o.block():
            o("u.members = _mask(members, members)")
        if m.groups:
            o("if raw != u.raw:")
            with o.block():
                o("u.raw = _mask(raw, raw)")

    def gen_segment(self, s: SegDef, scope: Scope) -> None:
        """Re-evaluate ``s`` when its bit is in ``d``; resolve its group at the last member."""
        o, b = self.out, s.bit
        o(f"if {flag(s)}:" if self.flagged else f"if d & {b}:")
        with o.block():
            if not self.flagged:
                o(f"ev |= {b}")
            o(f"hit = {self.e.expr(parse(s.config.when), scope)}")
            g = s.group
            if g is None:
                o("if hit:")
                with o.block():
                    o(f"if not members & {b}:")
                    with o.block():
                        o(f"members |= {b}")
                        self.emit_transition(s, "enter")
                o(f"elif members & {b}:")
                with o.block():
                    o(f"members ^= {b}")
                    self.emit_transition(s, "exit")
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
                        self.emit_transition(x, "exit")
                o("if win & ~old:")
                with o.block():
                    for k, x in enumerate(mates):
                        o(f"{'if' if k == 0 else 'elif'} win == {x.bit}:")
                        with o.block():
                            self.emit_transition(x, "enter")

    def emit_transition(self, s: SegDef, kind: str) -> None:
        """Append the transition of segment ``s`` of ``kind`` and mark its dependants: the
        reference's ``actors.user._transition``, id (``transition_id``) and record inlined.
        The id's tail (seq, at, cause) is formatted once per evaluation, and the hash state
        is a copy of a fresh 12-byte blake2b (cheaper than making one)."""
        o, name = self.out, self.e.const(s.name)
        o("if tail_ is None:")
        with o.block():
            o('tail_ = f"\\x00{seq}\\x00{now!r}\\x00{cause}"')
        o("h_ = _b2b12.copy()")
        o(f'h_.update(f"{{{name}}}\\x00{{user}}\\x00{kind}{{tail_}}".encode())')
        o(f"out.append(_T(h_.hexdigest(), {name}, user, '{kind}', now, seq))")
        if s.dependants:
            o(self.mark(s.dependants))
