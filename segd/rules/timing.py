"""When does an expression's value next change while only time passes?

The analysis behind ``segd.rules``'s ``Compiled.next_change``. Each compiled subexpression
(a :class:`Part`) that mentions ``now()``, ``days_since`` or ``hours_since`` gets an ``nc(ctx)``
closure built once at compile time. Answers are verified against the real compiled closures
evaluated with ``ctx.now = t``, i.e. against the floats the rule engine will compute, not
against real-number algebra.

A numeric subexpression that depends on ``now`` is described by a *form*: a polynomial in
``u = t - now`` as a tuple of coefficients ``(c0, c1[, c2])`` (lowest degree first, trailing
zeros trimmed, so a length-1 form never changes with time). ``c0`` is the value the closure
computes at ``now``. ``None`` means "not a number" (it stays so while only time passes) and
``UNKNOWN`` means "depends on time in a way we do not model" (degree > 2, division by a
time-dependent value); those fall back to :func:`scan`.

A comparison of two forms changes only near the real roots of their difference: the root is
the first guess, then the float sign of ``left - right`` is walked to the exact float at
which the comparison's value flips. ``and``/``or``/``not``/``in`` step through their parts'
changes (:func:`earliest`). Comparisons with one side linear in time replay this analysis in
closed form (``segd.rules.linear``). Known limits, all measure-zero float effects: values that
are constant in real arithmetic (``days_since(a) - days_since(b)``) are treated as constant
even if rounding makes them flicker, and at a tangency (a quadratic touching its bound) only
the floats next to the vertex are probed.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeAlias, overload

if TYPE_CHECKING:  # for annotations only: segd.rules.compiler imports this module
    from segd.rules.compiler import Context

NUMS = (int, float)
SEQS = (list, tuple)


class _Unknown(enum.Enum):
    # an enum member, not a plain object, so that type checkers narrow ``f is UNKNOWN``
    UNKNOWN = 0

    def __repr__(self) -> str:
        return "UNKNOWN"


#: A form for a time-dependent value we cannot model exactly.
UNKNOWN: Final = _Unknown.UNKNOWN

Poly = tuple[float, ...]
#: A form (see the module docstring): a polynomial in ``t - now``, None (not a number) or UNKNOWN.
Form: TypeAlias = "Poly | _Unknown | None"
#: A compiled subexpression: its value in a context.
Fn: TypeAlias = "Callable[[Context], Any]"
#: The form of a numeric subexpression in a context.
FormFn: TypeAlias = "Callable[[Context], Form]"
#: A next_change closure (see ``segd.rules.Compiled``).
NextChange: TypeAlias = "Callable[[Context], float | None]"


class EqFn(Protocol):
    """Builds the closure of ``a == b`` from the closures of a and b (``k``: b's constant value)."""

    def __call__(self, fa: Fn, fb: Fn, k: Any = ..., /) -> Fn: ...


#: How far :func:`scan` looks ahead for expressions it cannot solve: they are re-examined at
#: least this often (seconds), and a single flip inside the step is still found exactly.
FALLBACK_STEP = 60.0

#: The most sign changes followed around one root before giving up (float noise guard).
_MAX_WALK = 64
#: How many floats either side of a touching (double) root are probed.
_TOUCH_ULPS = 4

_INF = math.inf


def trim(p: Poly) -> Poly:
    """Drop trailing zero coefficients (keeping ``c0``)."""
    n = len(p)
    while n > 1 and p[n - 1] == 0:
        n -= 1
    return p if n == len(p) else p[:n]


@overload
def combine(op: Literal["+", "-"], a: Poly, b: Poly) -> Poly: ...
@overload
def combine(op: str, a: Poly, b: Poly) -> Form: ...
def combine(op: str, a: Poly, b: Poly) -> Form:
    """The form of ``a op b`` for ``op`` in ``+ - * /``: a Poly, None (null) or UNKNOWN.

    ``c0`` is combined with the same float operation as the closure, so it stays exact.
    May raise OverflowError (huge ints), which callers map to UNKNOWN.
    """
    if op == "+" or op == "-":
        n = max(len(a), len(b))
        a0 = a + (0.0,) * (n - len(a))
        b0 = b + (0.0,) * (n - len(b))
        sign = 1.0 if op == "+" else -1.0
        out = [a0[0] + b0[0] if op == "+" else a0[0] - b0[0]]
        for x, y in zip(a0[1:], b0[1:], strict=True):
            z = x + sign * y
            # slopes that cancel up to rounding (days_since(a) - days_since(b)) are exactly 0:
            # the value is constant in time, whatever noise its float evaluation has
            out.append(0.0 if abs(z) <= 1e-12 * (abs(x) + abs(y)) else z)
        return trim(tuple(out))
    if op == "*":
        out = [0.0] * (len(a) + len(b) - 1)
        out[0] = a[0] * b[0]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                if i + j:
                    out[i + j] += x * y
        p = trim(tuple(out))
        return p if len(p) <= 3 else UNKNOWN
    # "/": only division by a time-independent number is modelled
    if len(b) > 1:
        return UNKNOWN
    if b[0] == 0:
        return None
    return trim(tuple(x / b[0] for x in a))


def neg(p: Poly) -> Poly:
    """The form of ``-p``."""
    return tuple(-x for x in p)


def same(a: Any, b: Any) -> bool:
    """Whether two expression values are the same (NaN equals NaN, True differs from 1)."""
    if type(a) is not type(b):
        return False
    return bool(a == b) or (a != a and b != b)


def _roots(d: Poly) -> list[tuple[float, bool]]:
    """Real roots of ``d`` (degree 1 or 2), ascending, as ``(u, touch)``.

    ``touch`` marks a double root (up to rounding), where ``d`` reaches zero without changing
    sign, so only ``==``, ``!=``, ``<=`` and ``>=`` can change there, for a single float.
    """
    if len(d) == 2:
        return [(-d[0] / d[1], False)]
    c, b, a = d
    disc = b * b - 4.0 * a * c
    scale = b * b + abs(4.0 * a * c)
    if disc > 4e-15 * scale:  # a few rounding errors of b * b and 4 * a * c
        # the numerically stable pair of formulas (no cancellation between b and the root)
        q = -0.5 * (b + math.copysign(math.sqrt(disc), b))
        return sorted([(q / a, False), (c / q, False)])
    if disc >= -4e-15 * scale:
        return [(-b / (2.0 * a), True)]
    return []


def first_true(m: Callable[[float], bool], lo: float, guess: float, hi: float) -> float | None:
    """The smallest float ``t`` in ``(lo, hi]`` with ``m(t)``, or None if ``m(hi)`` is false.

    Requires ``m(lo)`` false and ``m`` monotone (false then true) on ``(lo, hi]``. Starts at
    ``guess`` (clamped into the interval), so an accurate guess costs two evaluations;
    otherwise gallops away from it and bisects on floats.
    """
    g = min(max(guess, math.nextafter(lo, _INF)), hi)
    if m(g):
        below = math.nextafter(g, -_INF)
        if below <= lo or not m(below):
            return g
        hi, step = below, g - below
        while True:
            t = hi - step
            if t <= lo:
                break
            if not m(t):
                lo = t
                break
            hi, step = t, step * 2
    else:
        lo, step = g, math.ulp(g)
        while True:
            t = lo + step
            if t >= hi:
                if not m(hi):
                    return None
                break
            if m(t):
                hi = t
                break
            lo, step = t, step * 2
    while True:
        mid = lo + (hi - lo) * 0.5
        if not lo < mid < hi:
            return hi
        if m(mid):
            hi = mid
        else:
            lo = mid


def scan(value_at: Callable[[float], Any], now: float, step: float = FALLBACK_STEP) -> float:
    """Conservative next change for an expression we cannot solve: look one ``step`` ahead.

    If the value differs there, bisect for the flip (exact when it flips once within the
    step); otherwise return ``now + step`` so the caller asks again from there.
    """
    v0 = value_at(now)
    end = max(now + step, math.nextafter(now, _INF))
    if same(value_at(end), v0):
        return end
    t = first_true(lambda x: not same(value_at(x), v0), now, end, end)
    return end if t is None else t


def next_value_change(value_at: Callable[[float], Any], now: float) -> float:
    """First float after ``now`` where a (non-constant) numeric value differs from its value at now."""
    v0 = value_at(now)
    end = max(now + FALLBACK_STEP, math.nextafter(now, _INF))
    t = first_true(lambda x: not same(value_at(x), v0), now, math.nextafter(now, _INF), end)
    return end if t is None else t


def pair_next_change(
    d: Poly, now: float, sign_at: Callable[[float], int], value_at: Callable[[float], Any]
) -> float | None:
    """Next change of a comparison whose sides differ by the form ``d`` (left - right).

    ``sign_at(t)`` is the sign of ``left - right`` as the closures compute the sides at t
    (-1, 0, 1; anything else for "not comparable"); ``value_at(t)`` is the comparison's value.
    Candidate times are the roots of ``d``; around each one the sign is walked through its
    float steps (below -> equal -> above) and the first float where ``value_at`` differs from
    its value at ``now`` is returned. None when no root lies ahead or the value does not
    change at any (``==`` stepping over the exact equality, ``>=`` touching its bound).
    """
    if len(d) == 1:
        return None
    if not all(math.isfinite(x) for x in d):
        return scan(value_at, now)
    v0 = value_at(now)
    # roots a few ulps in the past may really be ahead: the sides are step functions of t
    eps = 16 * math.ulp(max(abs(now), 1.0))
    found = [(max(r, 0.0), touch) for r, touch in _roots(d) if r > -eps]
    s = sign_at(now)
    if s == 0 and not (found and found[0][0] == 0.0):
        found.insert(0, (0.0, False))  # leaving an exact equality is a candidate too
    roots = [r for r, _ in found]
    lo = now
    t: float | None
    for i, (r, touch) in enumerate(found):
        guess = now + r
        if not math.isfinite(guess):
            break
        if touch:
            # the sign only reaches zero, for at most a few floats around the vertex
            t = guess
            for _ in range(_TOUCH_ULPS):
                t = math.nextafter(t, -_INF)
            for _ in range(2 * _TOUCH_ULPS + 1):
                if t > lo and sign_at(t) != s and not same(value_at(t), v0):
                    return t
                t = math.nextafter(t, _INF)
            continue
        # search up to halfway to the next root; past the last one the sign of d is settled,
        # so search far (a slow side can stay equal to the other for many floats)
        hi = (guess + now + roots[i + 1]) * 0.5 if i + 1 < len(roots) else guess + max(2 * r, 1e6)
        if not math.isfinite(hi):
            hi = math.nextafter(_INF, 0.0)
        hi = max(hi, math.nextafter(lo, _INF))
        for _ in range(_MAX_WALK):
            s_from = s

            # a def, not a lambda: mypy cannot infer a lambda whose default binds s_from
            def moved(x: float, s_from: int = s_from) -> bool:
                return sign_at(x) != s_from

            t = first_true(moved, lo, guess, hi)
            if t is None:
                break
            if not same(value_at(t), v0):
                return t
            s, lo, guess = sign_at(t), t, t
        else:
            return lo  # float noise: keep the caller progressing from the last checked time
    return None


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
