"""When does an expression's value next change while only time passes?

The analysis behind ``segd.rules``'s ``Compiled.next_change``. Each compiled subexpression
(a :class:`Part`) that mentions ``now()``, ``days_since`` or ``hours_since`` gets an ``nc(ctx)``
closure built once at compile time. Answers are verified against the real compiled closures
evaluated with ``ctx.now = t``, i.e. against the floats the rule engine will compute, not
against real-number algebra.

A numeric subexpression that depends on ``now`` is described by a *form* (a polynomial in
``t - now``, see ``segd.rules.forms``), and a comparison of two forms changes only where they
cross (``forms.pair_next_change``). ``and``/``or``/``not``/``in`` step through their parts'
changes (:func:`earliest`). Comparisons with one side linear in time replay this analysis in
closed form (``segd.rules.linear``). Known limits, all measure-zero float effects: values that
are constant in real arithmetic (``days_since(a) - days_since(b)``) are treated as constant
even if rounding makes them flicker, and at a tangency (a quadratic touching its bound) only
the floats next to the vertex are probed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from segd.rules.forms import (
    NUMS,
    SEQS,
    UNKNOWN,
    EqFn,
    Fn,
    Form,
    FormFn,
    NextChange,
    Poly,
    combine,
    neg,
    next_value_change,
    pair_next_change,
    same,
    scan,
    trim,
)

if TYPE_CHECKING:  # for annotations only: segd.rules.compiler imports this module
    from segd.rules.compiler import Context

# ----------------------------------------------------------------------------- per-node analysis


def never(c: Context) -> None:
    """The next_change of anything that cannot change with time alone."""
    return None


def at(c: Context, now: float) -> Context:
    """The same context at another time (aggregates, traits and segments held fixed)."""
    return c.__class__(now, c.aggs, c.traits, c.props, c.event, c.segments)


class Part:
    """A compiled subexpression plus what next_change needs to know about it.

    ``td``: it mentions now(), days_since or hours_since. ``kind`` of a td part: "num" (a
    number or null: now, *_since, arithmetic, unary minus), "bool" or "list" (a list literal
    with td elements, ``items`` holding them). ``form(ctx)`` of a num part is its form;
    ``nc(ctx)`` of a td part its next change. ``value`` is the value of a constant part.
    ``slope`` (see ``segd.rules.linear``) is set on a td num part whose form is
    ``(fn(ctx), slope)`` whenever ``fn(ctx)`` is a number; ``agg`` names the aggregate a
    part reads, if that is all it does.
    """

    __slots__ = ("fn", "const", "value", "td", "kind", "form", "nc", "items", "slope", "agg")

    fn: Fn
    const: bool
    value: Any
    td: bool
    kind: str
    form: FormFn | None
    nc: NextChange | None
    items: list[Part] | None
    slope: float | None
    agg: str | None

    def __init__(
        self,
        fn: Fn,
        *,
        const: bool = False,
        value: Any = None,
        td: bool = False,
        kind: str = "",
        form: FormFn | None = None,
        nc: NextChange | None = None,
        items: list[Part] | None = None,
        slope: float | None = None,
    ) -> None:
        self.fn, self.const, self.value, self.td, self.kind = fn, const, value, td, kind
        self.form, self.nc, self.items, self.slope, self.agg = form, nc, items, slope, None


def const_part(value: Any) -> Part:
    """A constant."""
    return Part(lambda c: value, const=True, value=value)


def _num_form(v: Any) -> Poly | None:
    return (v,) if type(v) in NUMS else None


def form_of(x: Part) -> FormFn:
    """``ctx -> form`` of any part: time-independent numbers are constant forms."""
    if x.td:
        return x.form or never
    if x.const:
        f = _num_form(x.value)
        return lambda c: f
    fn = x.fn
    return lambda c: _num_form(fn(c))


def since_form(formx: FormFn, fn: Fn, unit: float) -> FormFn:
    """Form of ``(now - x) / unit`` (days_since, hours_since); ``fn`` is its closure."""

    def form(c: Context) -> Form:
        f = formx(c)
        if f is None or f is UNKNOWN:
            return f
        v = fn(c)
        if v is None:
            return None
        f = f + (0.0, 0.0)
        return trim((v, (1.0 - f[1]) / unit, -f[2] / unit))

    return form


def neg_form(formx: FormFn) -> FormFn:
    """Form of ``-x``."""

    def form(c: Context) -> Form:
        f = formx(c)
        return f if f is None or f is UNKNOWN else neg(f)

    return form


def arith_form(op: str, forma: FormFn, formb: FormFn) -> FormFn:
    """Form of ``a op b`` for ``+ - * /``."""

    def form(c: Context) -> Form:
        x, y = forma(c), formb(c)
        if x is None or y is None:
            return None
        if x is UNKNOWN or y is UNKNOWN:
            return UNKNOWN
        try:
            return combine(op, x, y)
        except OverflowError:
            return UNKNOWN

    return form


def min_time(times: Iterable[float | None]) -> float | None:
    """The earliest of some next_change answers (None: never)."""
    return min((t for t in times if t is not None), default=None)


#: How many child changes ``earliest`` steps through before leaving the rest to the caller.
_MAX_SETTLE = 16


def earliest(fn: Fn, ncs: list[NextChange]) -> NextChange:
    """next_change of ``fn``, a value computed from parts whose next changes are ``ncs``.

    Between two changes of its parts the value is constant, so stepping from one part change
    to the next and stopping at the first where ``fn`` differs is exact whenever the parts'
    answers are. After ``_MAX_SETTLE`` steps the last one is returned (the caller re-asks).
    """

    def nc(c: Context) -> float | None:
        v0, cur, t = fn(c), c, None
        for _ in range(_MAX_SETTLE):
            t = min_time(f(cur) for f in ncs)
            if t is None:
                return None
            cur = at(c, t)
            if not same(fn(cur), v0):
                return t
        return t

    return nc


def value_nc(fn: Fn, form: FormFn) -> NextChange:
    """next_change of a number-valued td part: the first float where the number differs."""

    def nc(c: Context) -> float | None:
        f = form(c)
        if f is None or (f is not UNKNOWN and len(f) == 1):
            return None
        return next_value_change(lambda t: fn(at(c, t)), c.now)

    return nc


def pair_nc(x: Part, y: Part, value_fn: Fn) -> NextChange:
    """next_change of ``value_fn``, a comparison of the number-or-null parts x and y."""
    fx, fy, formx, formy = x.fn, y.fn, form_of(x), form_of(y)

    def nc(c: Context) -> float | None:
        a, b = formx(c), formy(c)
        if a is None or b is None:
            return None  # a side that is not a number now stays so: the value is constant

        def value_at(t: float) -> Any:
            return value_fn(at(c, t))

        try:
            d = None if a is UNKNOWN or b is UNKNOWN else combine("-", a, b)
        except OverflowError:
            d = None
        if d is None:
            return scan(value_at, c.now)

        def sign_at(t: float) -> int:
            ct = at(c, t)
            u, v = fx(ct), fy(ct)
            return (u > v) - (u < v) if type(u) in NUMS and type(v) in NUMS else 2

        return pair_next_change(d, c.now, sign_at, value_at)

    return nc


def scan_nc(fn: Fn) -> NextChange:
    """next_change by :func:`scan`, for what we do not solve."""
    return lambda c: scan(lambda t: fn(at(c, t)), c.now)


def generic_nc(fn: Fn, kids: Iterable[Part]) -> NextChange:
    """A value computed from its children can only change when one of them does."""
    tds = [k for k in kids if k.td]
    if any(k.kind != "bool" for k in tds):  # numbers/lists feeding something we do not solve
        return scan_nc(fn)
    return earliest(fn, [k.nc or never for k in tds])


def truth_nc(x: Part) -> NextChange:
    """next_change of ``bool(x)``."""
    if not x.td or x.kind == "list":  # a non-empty list literal is always true
        return never
    if x.kind == "bool":
        return x.nc or never
    fx = x.fn
    return pair_nc(x, const_part(0), lambda c: bool(fx(c)))


def bool_nc(fn: Fn, op: str, a: Part, b: Part) -> NextChange:
    """next_change of ``fn``, ``a and b`` / ``a or b``."""
    ta, tb = truth_nc(a), truth_nc(b)
    if a.td and b.td:
        return earliest(fn, [ta, tb])
    fs, moving = (a.fn, tb) if not a.td else (b.fn, ta)
    # a time-independent operand that decides the result alone freezes it
    if op == "and":
        return lambda c: moving(c) if fs(c) else None
    return lambda c: None if fs(c) else moving(c)


def compare_nc(fn: Fn, a: Part, b: Part) -> NextChange:
    """next_change of ``fn``, the comparison ``a op b`` (== != < <= > >=)."""
    kinds = {a.kind if a.td else "", b.kind if b.td else ""}
    if "num" in kinds and kinds & {"bool", "list"}:
        return never  # a number (or null) never equals or orders with a bool or a list
    if kinds & {"bool", "list"}:
        return generic_nc(fn, (a, b))
    return pair_nc(a, b, fn)


def in_nc(fn: Fn, x: Part, seq: Part, eq: EqFn) -> NextChange:
    """next_change of ``fn``, ``x in seq`` or ``x not in seq``; ``eq(fx, fy, k)`` builds ``==``."""
    if seq.td and seq.kind != "list":
        return never  # neither a list nor a string, whatever the time: in and not in are false
    if x.td and x.kind != "num":
        return generic_nc(fn, (x, seq))
    if seq.items is not None and all(not e.td or e.kind == "num" for e in seq.items):
        # x in [e1, e2, ...] is (x == e1) or (x == e2) ...: it changes only where one of them does
        return earliest(fn, [pair_nc(x, e, eq(x.fn, e.fn)) for e in seq.items if x.td or e.td])
    if x.td and not seq.td:
        fseq, fx = seq.fn, x.fn

        def nc(c: Context) -> float | None:
            elems = fseq(c)
            if type(elems) not in SEQS:
                return None  # a number is never a substring, and never in a non-list
            ncs = [pair_nc(x, (k := const_part(e)), eq(fx, k.fn, e)) for e in elems if type(e) in NUMS]
            return earliest(fn, ncs)(c)

        return nc
    return generic_nc(fn, (x, seq))
