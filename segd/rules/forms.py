"""Forms: a time-dependent number as a polynomial in ``t - now``, and where two forms cross.

A numeric subexpression that depends on ``now`` is described by a *form*: a polynomial in
``u = t - now`` as a tuple of coefficients ``(c0, c1[, c2])`` (lowest degree first, trailing
zeros trimmed, so a length-1 form never changes with time). ``c0`` is the value the closure
computes at ``now``. ``None`` means "not a number" (it stays so while only time passes) and
``UNKNOWN`` means "depends on time in a way we do not model" (degree > 2, division by a
time-dependent value); those fall back to :func:`scan`.

A comparison of two forms changes only near the real roots of their difference: the root is
the first guess, then the float sign of ``left - right`` is walked to the exact float at
which the comparison's value flips (:func:`pair_next_change`). The per-node analysis that
builds forms from compiled subexpressions is ``segd.rules.timing``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
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
MAX_WALK = 64
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
            # A double root as far as the form can tell: the sign reaches zero around the
            # vertex. The closures may still see it cross for a while (a bound below the
            # form's rounding, as in `(x - k) * (x - k) < 1e-12`): a quadratic changes sign
            # at most once between now and its vertex, so the first float past it is exact.
            if guess > lo and sign_at(guess) != s:
                s_now = s

                def crossed(x: float, s_now: int = s_now) -> bool:
                    return sign_at(x) != s_now

                t = first_true(crossed, lo, guess, guess)
                if t is not None and not same(value_at(t), v0):
                    return t
            # otherwise the sign only reaches zero, for at most a few floats around the vertex
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
        for _ in range(MAX_WALK):
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
