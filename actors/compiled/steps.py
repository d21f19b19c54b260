"""Which segment evaluations a count's step of one may skip (the generated event functions).

An event that adds one to a count (a lifetime count, a windowed count or distinct whose
every entry is live) changes its value from ``n`` to ``n + 1``. If every segment that reads
the count reads it only through comparisons with constant numbers (``timing._reads``), and no
comparison answers differently for ``n`` and ``n + 1``, those segments answer as they did
before the event, so re-evaluating them changes nothing: the reference's evaluation is a
no-op. That is exact for the segments whose rule does not change with time alone, whose
membership bit (and raw bit, in a group) is by construction the rule's answer over the
current values between evaluations (the deadlines fire every change a reader can see,
``timing.count_marks``). Time-dependent readers are always re-evaluated (their next change
is recomputed after each evaluation), with their groups' resolving members.
"""

from __future__ import annotations

import math
from typing import Any

from actors.compiled.timing import _reads
from actors.model import AggDef, Model
from segd.rules import parse
from segd.rules.ops import COMPARE

__all__ = ["Step", "crossings", "step_plan"]


class Step:
    """An aggregate's skip plan: ``keep`` the bits every fold sets (time-dependent readers,
    closed over groups), ``skip`` the bits set only when the step from ``n`` crosses, and
    ``crossing`` the counts ``n`` whose step to ``n + 1`` changes some reader's comparison."""

    __slots__ = ("keep", "skip", "crossing")

    def __init__(self, keep: int, skip: int, crossing: frozenset[int]) -> None:
        self.keep = keep
        self.skip = skip
        self.crossing = crossing


def _crossings(op: str, k: float) -> set[int]:
    """The counts ``n >= 0`` where ``n op k`` differs from ``n + 1 op k``."""
    cmp = COMPARE[op]
    base = math.floor(k)
    return {n for n in range(max(0, base - 2), max(0, base + 3)) if cmp(n, k) != cmp(n + 1, k)}


def crossings(marks: Any) -> frozenset[int]:
    """The counts ``n`` whose step to ``n + 1`` changes some ``n op k`` of ``marks``."""
    out: set[int] = set()
    for op, k in marks:
        out |= _crossings(op, k)
    return frozenset(out)


def step_plan(model: Model, agg: AggDef) -> Step | None:
    """``agg``'s skip plan, or None when every fold must set all of ``agg.seg_mask``: not a
    count (lifetime or windowed) or windowed distinct, a model whose ``where``s read
    aggregates, only readers that change with time alone, or some reader that uses the value
    other than in a comparison with a constant."""
    kind = agg.kind.kind
    if not agg.seg_mask or model.where_reads_aggs or kind not in ("count", "distinct"):
        return None  # (deferred folds set their bits apart from the fold)
    if kind == "distinct" and not agg.kind.windowed:
        return None
    readers = [s for s in model.segs if agg.name in s.compiled.aggregates]
    keep = model._close(sum(s.bit for s in readers if s.compiled.time_dependent))
    skip = agg.seg_mask & ~keep
    if not skip:
        return None
    crossing: set[int] = set()
    for s in readers:
        if s.bit & skip:
            marks: Any = _reads(parse(s.config.when), agg.name)
            if marks is None:
                return None
            for op, k in marks:
                crossing |= _crossings(op, k)
    return Step(keep, skip, frozenset(crossing))
