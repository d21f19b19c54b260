"""The rules that keep campaigns from spamming: pure functions and one small state.

- ``Caps``: per-user frequency caps across campaigns (sliding windows over the engine clock).
- ``quiet_until``: the end of the user's quiet hours in their IANA ``timezone``, DST-aware.
- ``opted_out`` / ``unsubscribed``: consent from the reserved traits.
- ``assign``: the deterministic A/B variant (or holdout) of a (campaign, user).

No I/O and no clock of its own; the dispatcher passes the engine clock in.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from datetime import datetime, timedelta
from datetime import time as dtime
from functools import lru_cache
from hashlib import blake2b
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from segd.config import CampaignConfig, CapConfig

HOLDOUT = "holdout"
_UTC = ZoneInfo("UTC")


class Caps:
    """Scheduled send times per user, checked against every ``max``-per-``per`` cap.

    A message at time ``t`` fits if, for every cap, fewer than ``max`` messages lie in
    ``(t - per, t + per)``. That is exact when messages are scheduled in time order (the usual
    case) and never lets any window of length ``per`` hold more than ``max`` otherwise.
    """

    def __init__(self, caps: tuple[CapConfig, ...]) -> None:
        self.caps = caps
        self.horizon = max((c.per for c in caps), default=0.0)
        self._times: dict[str, list[float]] = {}

    def fits(self, user: str, t: float) -> bool:
        times = self._times.get(user)
        if not times:
            return True
        for cap in self.caps:
            lo = bisect.bisect_right(times, t - cap.per)
            hi = bisect.bisect_left(times, t + cap.per)
            if hi - lo >= cap.max:
                return False
        return True

    def add(self, user: str, t: float) -> None:
        if self.caps:
            bisect.insort(self._times.setdefault(user, []), t)

    def forget(self, user: str) -> None:
        self._times.pop(user, None)

    def prune(self, now: float) -> None:
        """Forget send times that no cap can see any more (older than ``now - horizon``)."""
        cut = now - self.horizon
        for user in [u for u, ts in self._times.items() if ts[-1] <= cut]:
            del self._times[user]
        for ts in self._times.values():
            if ts[0] <= cut:
                del ts[: bisect.bisect_right(ts, cut)]

    def __len__(self) -> int:
        """How many users hold send times: what ``prune`` keeps bounded (a user whose last
        send no cap can see any more is dropped whole)."""
        return len(self._times)


@lru_cache(maxsize=1024)
def _zone(name: Any) -> ZoneInfo:
    """The IANA zone ``name``; UTC for a missing or unknown one."""
    if not isinstance(name, str) or not name:
        return _UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return _UTC


def quiet_until(now: float, timezone: Any, start: int | None, end: int | None) -> float | None:
    """If ``now`` lies in the quiet hours [start, end) (minutes after local midnight, the span
    may wrap midnight) of ``timezone``, the epoch time they end; else None.

    The end is the local wall time ``end`` on the right local day, converted with that day's
    UTC offset: across a DST change the quiet night is an hour shorter or longer.
    """
    if start is None or end is None:
        return None
    tz = _zone(timezone)
    local = datetime.fromtimestamp(now, tz)
    minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    if start < end:
        if not start <= minute < end:
            return None
        day = local.date()
    elif minute >= start:
        day = local.date() + timedelta(days=1)
    elif minute < end:
        day = local.date()
    else:
        return None
    return datetime.combine(day, dtime(end // 60, end % 60), tzinfo=tz).timestamp()


def unsubscribed(traits: Mapping[str, Any]) -> bool:
    """The reserved trait ``unsubscribed``: true means no messages at all."""
    return traits.get("unsubscribed") is True


def opted_out(traits: Mapping[str, Any]) -> frozenset[str]:
    """Channel names in the reserved trait ``opt_out`` (a list, or one name)."""
    value = traits.get("opt_out")
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, (list, tuple)):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _unit(*parts: str) -> float:
    """A uniform number in [0, 1) from a stable hash of ``parts``."""
    digest = blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign(campaign: CampaignConfig, user: str) -> str:
    """The variant of ``user`` in ``campaign``: ``"holdout"``, a variant name, or "" for a
    campaign without variants. Stable: a function of the two names and the config only."""
    u = _unit(campaign.name, user)
    if u < campaign.holdout:
        return HOLDOUT
    if not campaign.variants:
        return ""
    x = (u - campaign.holdout) / (1.0 - campaign.holdout) * sum(v.weight for v in campaign.variants)
    for v in campaign.variants:
        x -= v.weight
        if x < 0:
            return v.name
    return campaign.variants[-1].name
