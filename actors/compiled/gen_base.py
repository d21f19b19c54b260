"""The model compiler's shared parts: the line writer and the state of one generation.

``GenBase`` holds what every part of ``actors.compiled.codegen`` reads: the model, the
constants (``actors.compiled.expr.Emitter``), the output lines, and per aggregate its window
length, reference kind, count marks (``timing.count_marks``) and step plan
(``actors.compiled.steps``); and it writes an aggregate's value from its state.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

from actors.compiled.expr import Emitter, Scope
from actors.compiled.steps import Step, crossings, step_plan
from actors.compiled.timing import count_marks
from actors.model import AggDef, Model

__all__ = ["GenBase", "Lines", "keys_slot"]

# Kinds whose lifetime fold and value are inlined (the rest call the reference kind).
INLINE_LIFETIME = frozenset({"count", "first_time", "last_time", "min", "max"})
TIME_KINDS = frozenset({"count", "first_time", "last_time"})


class Lines:
    """The generated module's lines; ``lines(text)`` writes one at the current depth."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def __call__(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def code(self, text: str) -> None:
        """Write ``text``, a block of source (dedented), at the current depth."""
        for line in textwrap.dedent(text).strip("\n").split("\n"):
            self(line)

    def block(self) -> Block:
        """``with lines.block():`` writes its lines one level deeper."""
        return Block(self)

    def text(self) -> str:
        """The module's source."""
        return "\n".join(self.lines) + "\n"


class Block:
    """A context manager one indentation level deep (``Lines.block``)."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines

    def __enter__(self) -> None:
        self.lines.depth += 1

    def __exit__(self, *exc: object) -> None:
        self.lines.depth -= 1


class GenBase:
    """One generation's state (see the module docstring); the parts subclass it."""

    def __init__(self, model: Model, runtime: dict[str, Any]) -> None:
        self.m = model
        self.e = Emitter()
        self.out = Lines()
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
        # aggregate index -> the counts whose step of one crosses one of its marks (its next
        # change may come earlier), for the windows with marks
        self.deadline_crossings: dict[int, frozenset[int]] = {}
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
                        self.deadline_crossings[a.index] = crossings(marks)

    # ------------------------------------------------------------------ values

    def value_of(self, a: AggDef, state: str, now: str) -> str:
        """Source of aggregate ``a``'s value at ``now`` from its state expression."""
        kind, i = a.kind.kind, a.index
        if not a.kind.windowed:
            if kind == "count":
                return f"({state} or 0)"
            if kind in INLINE_LIFETIME:
                return state
            return f"{self.kinds[i]}.value({state}, {now})"
        w = self.w[i]
        if kind in TIME_KINDS:
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
            keys = keys_slot(state)
            # inline for None, one entry, and a clean window whose entries are all live
            return (
                f"(0 if (q_ := {state}) is None else (1 if q_ <= {now} < q_ + {w} else 0) "
                f"if type(q_) is float else len(q_) if type(q_) is _array and type({keys}) is tuple "
                f"and q_[0] + {w} > {now} else _dw_count(q_, {keys}, {w}, {now}))"
            )
        empty = "0" if kind == "sum" else "None"
        return f"({empty} if ({state}) is None else ({state}).value({now}))"

    def seg_scope(self) -> Scope:
        """The Scope of a segment's ``when`` at ``now``: values in ``v``-locals, computed at
        first use; ``traits`` and ``members`` locals."""
        return Scope(
            self.lazy("v", "now"),
            now="now",
            traits="traits",
            members="members",
            segment_bit=self.seg_bit.__getitem__,
        )

    def lazy(self, prefix: str, now: str) -> Callable[[str], str]:
        """An ``agg(name)`` for Scope: the value computed at first use into a local."""

        def agg(name: str) -> str:
            a = self.m.aggs[self.agg_index[name]]
            v = f"{prefix}{a.index}"
            return f"({v} if {v} is not _U else ({v} := {self.value_of(a, f'u.a{a.index}', now)}))"

        return agg


def keys_slot(state: str) -> str:
    """The keys slot (``u.bN``) of a distinct window whose times are in ``u.aN``."""
    assert state.startswith("u.a")
    return "u.b" + state[3:]
