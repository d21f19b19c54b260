"""Next changes of time rules in generated code, for the shapes that dominate real configs.

A time-dependent segment (``days_since``, ``hours_since``, ``now()``) needs, after each
evaluation, the first instant its value may change while only time passes
(``segd.rules.Compiled.next_change``). The reference answers through closures built by
``segd.rules.timing`` and ``segd.rules.linear``. For the common rules, a comparison of
``days_since(aggregate)`` or ``hours_since(aggregate)`` with a constant number, under
``and``/``or`` with a time-independent side and ``not``, ``nc_plan`` says how to answer
directly: the same structure as ``timing.bool_nc``/``truth_nc``, and at the leaf
``lin_nc``, which replays ``linear.compare_nc``'s closed form step for step (same floats,
same probes). Whenever the reference would go further than that closed form (its ``walk``,
a null or non-finite side, an overflow), ``lin_nc`` answers ``FALLBACK`` and the generated
code calls the reference closure of the whole rule, so the answer is the reference's in
every case.
"""

from __future__ import annotations

import math
from typing import Any

from segd.rules import Aggregate, Binary, Call, ListExpr, Literal, Node, Unary
from segd.rules.linear import _BIG, line_params

__all__ = ["FALLBACK", "Leaf", "lin_nc", "td", "nc_plan"]

_NUMS = (int, float)
_INF = math.inf
_NINF = -math.inf
_SECONDS = {"days_since": 86400.0, "hours_since": 3600.0}
_CMP = frozenset({"==", "!=", "<", "<=", ">", ">="})
_BOOL_OPS = _CMP | {"and", "or", "in", "not in"}


class _Fallback:
    __slots__ = ()

    def __repr__(self) -> str:
        return "FALLBACK"


#: ``lin_nc``'s answer when the reference closure must decide.
FALLBACK: Any = _Fallback()


def td(node: Node) -> bool:
    """Does ``node`` mention ``now()``, ``days_since`` or ``hours_since`` (``Part.td``)?"""
    match node:
        case Call(name=name, args=args):
            return name in ("now", "days_since", "hours_since") or any(td(a) for a in args)
        case Unary(operand=x):
            return td(x)
        case Binary(left=a, right=b):
            return td(a) or td(b)
        case ListExpr(items=items):
            return any(td(i) for i in items)
    return False


class Leaf:
    """A comparison ``since(aggregate) op k`` (or mirrored) that ``lin_nc`` answers."""

    def __init__(self, agg: str, unit: float, k: float, params: tuple[Any, ...]) -> None:
        self.agg, self.unit, self.k, self.params = agg, unit, k, params


def _const_number(node: Node) -> Any:
    if isinstance(node, Literal) and type(node.value) in _NUMS:
        return node.value
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Literal):
        v = node.operand.value
        if type(v) in _NUMS:
            return -v
    return None


def _since(node: Node) -> tuple[str, float] | None:
    if isinstance(node, Call) and node.name in _SECONDS and isinstance(node.args[0], Aggregate):
        return node.args[0].name, _SECONDS[node.name]
    return None


def nc_plan(node: Node) -> Any:
    """How generated code answers ``node``'s next change: a nested tuple of
    ``("and"|"or", fixed_node, plan)`` (the time-independent side decides first),
    ``("leaf", Leaf)``, or None (ask the reference closure). ``node`` must be ``td``."""
    match node:
        case Binary(op=op, left=a, right=b) if op in ("and", "or"):
            if td(a) and td(b):
                return None
            fixed, moving = (a, b) if not td(a) else (b, a)
            inner = _truth_plan(moving)
            return None if inner is None else (op, fixed, inner)
        case Unary(op="not", operand=x):
            return _truth_plan(x)
        case Binary(op=op, left=a, right=b) if op in _CMP:
            for flip, moving, fixed in ((1, a, b), (-1, b, a)):
                since, k = _since(moving), _const_number(fixed)
                if since is not None and k is not None and not td(fixed):
                    if abs(k) > _BIG:
                        return None
                    agg, unit = since
                    return ("leaf", Leaf(agg, unit, k, line_params(op, 1.0 / unit, flip) + (flip,)))
    return None


def _truth_plan(x: Node) -> Any:
    """``timing.truth_nc``: a bool-valued part answers with its own next change."""
    if isinstance(x, Binary) and x.op in _BOOL_OPS or isinstance(x, Unary) and x.op == "not":
        return nc_plan(x)
    return None


def lin_nc(t: Any, now: float, unit: float, k: float, params: tuple[Any, ...]) -> Any:
    """``linear.compare_nc``'s ``nc`` for the moving side ``(now - t) / unit`` (``t`` the
    aggregate's value): its answer where it settles in closed form, else ``FALLBACK``."""
    d1, _by_sign, _last, v_first, before, value, flip = params
    if type(t) not in _NUMS:
        return FALLBACK  # the moving side is null: the reference's generic path decides
    try:
        w = (now - t) / unit
    except OverflowError:
        return FALLBACK
    try:
        d0 = w - k if flip == 1 else k - w
    except OverflowError:
        return FALLBACK
    if not _NINF < d0 < _INF:
        return FALLBACK
    r = -d0 / d1
    if r < 0.0:
        if r <= -16 * math.ulp(max(abs(now), 1.0)):
            return None
        r = 0.0
    guess = now + r
    if not guess < _INF:
        return None
    if guess > now:
        try:
            w1 = (guess - t) / unit
        except OverflowError:
            return FALLBACK
        if value(w1, k) is not v_first:
            below = math.nextafter(guess, _NINF)
            if below <= now:
                return guess
            try:
                w1 = (below - t) / unit
            except OverflowError:
                return FALLBACK
            if before(w1, k):
                return guess
    return FALLBACK


# ---------------------------------------------------------------------- window deadlines

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _reads(node: Node, name: str) -> list[tuple[str, float]] | None:
    """Every use of aggregate ``name`` in ``node`` as ``(op, k)`` for ``name op k`` with a
    constant finite number ``k``; None if some use is anything else."""
    out: list[tuple[str, float]] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Binary) and n.op in _CMP:
            for agg, other, op in ((n.left, n.right, n.op), (n.right, n.left, _FLIP[n.op])):
                if isinstance(agg, Aggregate) and agg.name == name:
                    k = _const_number(other)
                    if k is None or not math.isfinite(k):
                        return None
                    out.append((op, float(k)))
                    break
            else:
                stack += [n.left, n.right]
            continue
        if isinstance(n, Aggregate):
            if n.name == name:
                return None  # read some other way: every change may matter
            continue
        match n:
            case Binary(left=a, right=b):
                stack += [a, b]
            case Unary(operand=x):
                stack.append(x)
            case Call(args=args) | ListExpr(items=args):
                stack += list(args)
    return out


def count_marks(model: Any, agg: Any) -> tuple[tuple[str, float], ...] | None:
    """The thresholds through which segments read a windowed count (or distinct) ``agg``,
    when that is the only way they read it; else None.

    With marks, the window's deadline may be the first instant its count crosses one of them
    (``actors.compiled.windows.count_deadline``) instead of its next expiry: an expiry that
    crosses none changes no reader's value, so the reference's evaluation there is a no-op.
    That skips evaluations, which is exact only if the segments such a fire would evaluate
    answer their next change the same from any instant: every time-dependent one among them
    must have a closed-form plan (``nc_plan``), not the reference's scan-ahead.
    """
    from segd.rules import parse

    marks: set[tuple[str, float]] = set()
    for s in model.segs:
        if agg.name not in s.compiled.aggregates:
            continue
        got = _reads(parse(s.config.when), agg.name)
        if got is None:
            return None
        marks.update(got)
    for s in model.segs:
        if agg.seg_mask & s.bit and s.compiled.time_dependent and nc_plan(parse(s.config.when)) is None:
            return None
    return tuple(sorted(marks))
