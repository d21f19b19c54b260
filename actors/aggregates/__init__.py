"""Per-user aggregates (SPEC section 4): the logic, shared; the state, per user and tiny.

Every aggregate of the config gets one stateless *kind* object (``make_kind(kind, within)``)
shared by all users. A user only keeps one small plain value per aggregate (``None`` when
empty, an int, a float, a short tuple, an ``array('d')``...) and hands it to the kind:

- ``fold(state, ts, value, now) -> state``: add one matching event (event time ``ts``, the
  aggregated ``value`` of its ``of`` expression or None) at engine time ``now``. Events must be
  folded in log order (increasing seq) — ties on ``ts`` are then broken by seq for free, so no
  seq is stored. ``fold`` may mutate ``state`` in place; always keep the returned value.
- ``value(state, now)``: the aggregate at ``now`` (``now`` never before the last fold/prune).
- ``next_change(state, now)``: the smallest time ``t > now`` at which the value may change with
  time alone, or None (lifetime kinds, empty windows). Conservative for value kinds (an
  expiring event may leave e.g. ``max`` unchanged).
- ``prune(state, now)``: drop window entries that can never count again.
- ``to_msgpack(state)`` / ``from_msgpack(obj)``: compact, exact snapshot round-trip.

Semantics shared by all kinds:

- Windows are exact: an event counts at ``now`` iff ``ts <= now < ts + within`` — the same as
  SPEC's ``now - within < ts <= now``, but written so that the expiry instant reported by
  ``next_change`` (``ts + within``, one float addition) is exactly the first instant at which
  the event no longer counts. An event from the future counts from ``now == ts``. A late event
  already out of the window is never stored.
- Lifetime kinds count every matching event at once, whatever its ``ts`` (a future ``ts`` is
  not held back: that would need the event stored, and lifetime state must stay O(1)).
- Over no events the value is None, except count, distinct and sum (0).
- Value kinds ignore a None ``of`` value. sum/avg/min/max consider only numbers: int (not
  bool) and finite float; anything else is ignored. distinct counts distinct values, with
  lists/maps/bools/bytes compared canonically (via msgpack), and 1 == 1.0 as in the rule
  language.
- Results do not depend on the order in which events arrived or expired (replay determinism):
  sums are exact (ints exactly; floats as Shewchuk partials, rounded once with ``math.fsum``),
  and min/max break ``1 == 1.0`` ties by type.

Modules: ``kind`` (the ``AggKind`` interface and the value rules above that every kind
shares), ``lifetime`` (O(1) state per user) and ``window`` (sorted event times per user);
``make_kind`` picks the class.
"""

from __future__ import annotations

import math

from actors.aggregates.kind import AggKind, distinct_key, is_number
from actors.aggregates.lifetime import LIFETIME
from actors.aggregates.window import TimeWindow, ValueWindow

__all__ = ["AggKind", "make_kind", "is_number", "distinct_key"]

_TIME_ONLY = frozenset({"count", "first_time", "last_time"})


def make_kind(kind: str, within: float | None) -> AggKind:
    """The shared logic object for an aggregate ``kind`` (SPEC section 4), lifetime when
    ``within`` is None, else a sliding window of ``within`` seconds (> 0).

    Raises ValueError for an unknown kind or a non-positive window.
    """
    if kind not in LIFETIME:
        raise ValueError(f"unknown aggregate kind {kind!r}; expected one of {', '.join(LIFETIME)}")
    if within is None:
        return LIFETIME[kind](kind, None)
    within = float(within)
    if not (within > 0 and math.isfinite(within)):
        raise ValueError(f"window must be a positive number of seconds, got {within!r}")
    if kind in _TIME_ONLY:
        return TimeWindow(kind, within)
    return ValueWindow(kind, within)
