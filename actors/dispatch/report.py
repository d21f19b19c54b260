"""What the outbox says about campaigns, as the ``stats`` and ``campaigns`` ops answer it.

Pure functions over the outbox's counts (``store.outbox.OutboxStore.counts``, ``report``,
``conversions``) and the campaigns' config: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from segd.config import CampaignConfig


def summarize(counts: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    """Outbox counts per (status, reason) as the ``stats`` op's ``messages`` map:
    ``sent``, ``pending`` (``deferred``: of them, waiting for quiet hours to end),
    ``holdout``, ``suppressed`` by reason, ``failed`` (``dead_letter``)."""
    out: dict[str, Any] = {
        "sent": 0,
        "pending": 0,
        "deferred": 0,
        "holdout": 0,
        "suppressed": {},
        "failed": {"dead_letter": 0},
    }
    for (status, reason), n in counts.items():
        if status == "suppressed":
            out["suppressed"][reason] = out["suppressed"].get(reason, 0) + n
        elif status in ("pending", "claimed"):
            out["pending"] += n
            if reason == "quiet_hours":
                out["deferred"] += n
        elif status == "dead":
            out["failed"]["dead_letter"] += n
        elif status in out:
            out[status] += n
    return out


def _variant_row(variant: str) -> dict[str, Any]:
    return {
        "variant": variant,
        "assigned": 0,
        "sent": 0,
        "pending": 0,
        "holdout": 0,
        "dead": 0,
        "suppressed": {},
    }


def campaign_report(
    campaigns: Sequence[CampaignConfig],
    activated: Mapping[str, float],
    counts: Iterable[tuple[str, str, str, str, int]],
    conversions: Mapping[tuple[str, str], int],
) -> list[dict[str, Any]]:
    """Per campaign and variant: assigned, sent, pending, suppressed by reason, dead,
    conversions and conversion rate (conversions / assigned, for the holdout too: an
    intention-to-treat comparison; see README).

    ``counts`` holds ``(campaign, variant, status, reason, n)`` groups of messages;
    ``conversions`` the conversions per (campaign, variant); ``activated`` each campaign's
    activation time. Variants are listed holdout first, then in config order, then any
    variant the outbox still holds that the config no longer has.
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for campaign, variant, status, reason, n in counts:
        r = rows.setdefault((campaign, variant), _variant_row(variant))
        r["assigned"] += n
        if status == "suppressed":
            r["suppressed"][reason] = r["suppressed"].get(reason, 0) + n
        elif status in ("pending", "claimed"):
            r["pending"] += n
        else:
            r[status] = r.get(status, 0) + n
    out = []
    for c in campaigns:
        names = ["holdout"] * (c.holdout > 0) + [v.name for v in c.variants] or [""]
        names += sorted({v for (cn, v) in rows if cn == c.name} - set(names))
        variants = []
        for v in names:
            r = rows.get((c.name, v)) or _variant_row(v)
            r["conversions"] = conversions.get((c.name, v), 0)
            r["conversion_rate"] = round(r["conversions"] / r["assigned"], 6) if r["assigned"] else None
            variants.append(r)
        out.append(
            {
                "campaign": c.name,
                "segment": c.segment,
                "on": c.on,
                "channel": c.channel,
                "activated": activated[c.name],
                "goal": {"event": c.goal.event, "within": c.goal.within} if c.goal else None,
                "variants": variants,
            }
        )
    return out
