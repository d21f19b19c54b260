"""The model compiler's segments: ``_evaluate``, every ``when`` inlined with its membership bit.

Each segment of the evaluation order is re-evaluated when its bit is in ``d``; a change of
membership appends the transition (id, record: ``actors.user._transition`` inlined) and marks
the dependants; an exclusive group is resolved at its last member, its order fixed at compile
time.
"""

from __future__ import annotations

from actors.compiled.expr import Scope
from actors.compiled.gen_base import GenBase
from actors.model import SegDef
from segd.rules import parse

__all__ = ["SegmentsGen"]


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
            o("return ev")
        o("")

    def gen_segment(self, s: SegDef, scope: Scope) -> None:
        """Re-evaluate ``s`` when its bit is in ``d``; resolve its group at the last member."""
        o, b = self.out, s.bit
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
            o(f"d |= {s.dependants}")
