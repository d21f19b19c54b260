"""Closed-form next_change for comparisons with one side linear in time.

The common time rules (``days_since(last_seen_at) >= 14``, ``hours_since(x) < 48``,
``now() - x > 3600``) compare a value that moves linearly with time against one that does
not. ``segd.rules.timing`` answers those through forms, roots and :func:`first_true`, building
tuples and contexts on every call; here the same answer is replayed with a few float
operations and at most three evaluations of the moving side's real closure. Anything outside
the common case is handed back to the generic analysis, so answers are identical bit for bit
(``compile_expr(..., fast=False)`` compiles without this path; a property test compares).
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any

from segd.rules.forms import MAX_WALK, NUMS, UNKNOWN, NextChange, combine
from segd.rules.ops import COMPARE, MIRROR
from segd.rules.timing import Part

if TYPE_CHECKING:  # for annotations only: segd.rules.compiler imports this module
    from segd.rules.compiler import Context

_INF = math.inf
_NINF = -math.inf


def line_slope(op: str, a: Part, b: Part) -> float | None:
    """``slope`` of ``a op b`` (``+ - * /``), if one side has one and the other does not move.

    For ``*`` and ``/`` the other side must be a finite constant number; for ``+`` and ``-``
    it may be any time-independent value (its value never enters the slope). Time then
    enters through a single now()/*_since leaf and fixed operands, so the value is monotone
    in time, and never NaN once it is finite at some time. The slope is computed by the very
    ``combine`` the form uses (``c0`` never enters a slope). None when zero or infinite.
    """
    if a.td and b.td:
        return None
    if a.slope is not None and b.slope is None:
        fixed, slope, moving_left = b, a.slope, True
    elif b.slope is not None and a.slope is None:
        fixed, slope, moving_left = a, b.slope, False
    else:
        return None
    k: float
    if op in ("+", "-"):
        k = 0.0
    elif fixed.const and type(fixed.value) in NUMS:
        k = fixed.value
    else:
        return None
    try:
        if not math.isfinite(k):
            return None
        p = combine(op, (0.0, slope), (k,)) if moving_left else combine(op, (k,), (0.0, slope))
    except OverflowError:
        return None
    return p[1] if p is not None and p is not UNKNOWN and len(p) == 2 and math.isfinite(p[1]) else None


#: A comparison's value by the sign of ``left - right`` (-1, 0, 1), for two non-NaN numbers.
_BY_SIGN = {
    "<": (True, False, False),
    "<=": (True, True, False),
    ">": (False, False, True),
    ">=": (False, True, True),
    "==": (False, True, False),
    "!=": (True, False, True),
}
_BIG = math.nextafter(_INF, 0.0)
_WALK = range(MAX_WALK)


def line_params(
    op: str, slope: float, flip: int
) -> tuple[float, tuple[bool, bool, bool], int, bool, Any, Any]:
    """What :func:`compare_nc` derives from a comparison ``op`` whose moving side has
    ``slope`` and is on the left (``flip`` 1) or the right (-1): ``d1`` (the slope of
    ``x - y`` exactly as pair_nc's combine computes it), ``by_sign`` (the value by the sign of
    moving - fixed), ``last`` (the sign it ends at), ``v_first`` (the value before that),
    ``before`` (the test for the sign at -last) and ``value`` (``moving op' fixed``).
    ``actors.compiled`` replays the same steps in generated code from these."""
    d1 = combine("-", (0.0, slope), (0.0,))[1] if flip == 1 else combine("-", (0.0,), (0.0, slope))[1]
    # the value by the sign of (moving - fixed), which is flip * the sign of (x - y)
    by_sign = _BY_SIGN[op] if flip == 1 else _BY_SIGN[op][::-1]
    # that sign moves monotonically from -last through 0 to last, and stays there
    last = 1 if slope > 0 else -1
    # with the sign at -last: the value then, the test for it, and the value at any time
    v_first, before = by_sign[1 - last], operator.lt if last == 1 else operator.gt
    value = COMPARE[op if flip == 1 else MIRROR[op]]
    return d1, by_sign, last, v_first, before, value


def compare_nc(op: str, x: Part, y: Part, generic: NextChange) -> NextChange:
    """``generic``'s answer for ``x op y`` without forms or contexts, when one side has a slope.

    The other side must not depend on time. Replays :func:`pair_next_change` on the one-root
    form ``(x - y, slope)``: the same root, bounds and walk, and the first steps of
    :func:`first_true` that settle it with at most two probes, each the moving side's real
    closure evaluated with ``ctx.now`` set to the probed time (restored before returning).
    The value follows from the sign (both sides are numbers, never NaN: see
    :func:`line_slope`), and the sign is monotone in time, so once it has reached its last
    state first_true would search to its bound in vain: the answer is None. Anything else (a
    null, non-finite or int side, an overflow, a guess that needs a longer search) is left to
    ``generic``, which is also returned as it is when ``x op y`` does not qualify.
    """
    if op not in _BY_SIGN or x.td and y.td:
        return generic
    if x.slope is not None and y.slope is None:
        moving, fixed, flip, slope = x, y, 1, x.slope
    elif y.slope is not None and x.slope is None:
        moving, fixed, flip, slope = y, x, -1, y.slope
    else:
        return generic
    fm, ff, k_const, kc = moving.fn, fixed.fn, fixed.const, fixed.value
    if k_const and (type(kc) not in NUMS or abs(kc) > _BIG):
        return generic  # constantly null, or an overflow
    d1, by_sign, last, v_first, before, value = line_params(op, slope, flip)
    nextafter, ulp = math.nextafter, math.ulp

    def nc(c: Context) -> float | None:
        w = fm(c)
        k = kc if k_const else ff(c)
        if type(w) is not float or not (k_const or type(k) is float or type(k) is int):
            return generic(c)
        try:
            d0: float = w - k if flip == 1 else k - w  # both numbers, checked above
        except OverflowError:
            return generic(c)
        if not -_INF < d0 < _INF:
            return generic(c)
        now = c.now
        r = -d0 / d1
        if r < 0.0:
            if r <= -16 * ulp(max(abs(now), 1.0)):
                return None  # the root is behind (and d0 != 0: no equality to leave either)
            r = 0.0
        guess = now + r
        if not guess < _INF:
            return None
        if guess > now:
            # r > 0: d0 != 0 has the sign of -d1, so the sign is at -last. The usual case,
            # settled by first_true's first two probes: the value changes at guess (so the
            # sign does), and the float below guess still has the sign at now.
            try:
                c.now = guess
                if type(w1 := fm(c)) is float and value(w1, k) is not v_first:
                    below = nextafter(guess, _NINF)
                    if below <= now:
                        return guess
                    c.now = below
                    if type(w1 := fm(c)) is float and before(w1, k):
                        return guess
            finally:
                c.now = now
        return walk(c, now, r, guess, (w > k) - (w < k), k)

    def walk(c: Context, now: float, r: float, guess: float, s: int, k: float) -> float | None:
        """pair_next_change's walk from ``now``, while first_true needs at most two probes."""
        lo, hi, v0 = now, 0.0, by_sign[s + 1]
        try:
            for _ in _WALK:
                if s == last:
                    return None  # first_true would find no other sign up to hi
                # g = min(max(guess, nextafter(lo, inf)), hi); hi >= guess and hi > now
                if guess > lo:
                    g = guess
                elif lo == now:
                    g = nextafter(now, _INF)
                else:
                    hi = hi or _search_end(now, now + r, r)
                    g = min(max(guess, nextafter(lo, _INF)), hi)
                c.now = g
                if type(w := fm(c)) is not float:
                    break
                if (st := (w > k) - (w < k)) != s:
                    t = g
                    if (below := nextafter(g, _NINF)) > lo:
                        c.now = below
                        if type(w := fm(c)) is not float or (w > k) - (w < k) != s:
                            break
                else:
                    t = g + ulp(g)
                    if t >= (hi := hi or _search_end(now, now + r, r)):
                        break
                    c.now = t
                    if type(w := fm(c)) is not float or (st := (w > k) - (w < k)) == s:
                        break
                    if g < g + (t - g) * 0.5 < t:
                        break
                if by_sign[st + 1] is not v0:
                    return t
                s, lo, guess = st, t, t
        finally:
            c.now = now
        return generic(c)

    return nc


def _search_end(now: float, guess: float, r: float) -> float:
    """pair_next_change's ``hi`` for the last (here the only) root."""
    hi = guess + max(2 * r, 1e6)
    return max(_BIG if hi == _INF else hi, math.nextafter(now, _INF))
