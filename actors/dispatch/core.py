"""Campaign dispatch, the pure core: transitions in, message decisions out (SPEC section 5).

``DispatchCore`` turns campaign triggers (transitions of a campaign's segment and kind, with
the user's traits and aggregates at that moment) into ``Decision``s:

1. activation: a transition earlier than the campaign's activation time is ignored;
2. variant: deterministic per (campaign, user); the holdout group is recorded, never sent;
3. consent (``unsubscribed``, ``opt_out``), staleness, channel resolution (``preferred`` with
   the fallback order, and a recipient address for channels that need one);
4. quiet hours in the user's timezone: the message is deferred to their end (``due``);
5. frequency caps across campaigns at the due time; when one user's messages compete, earlier
   transitions first, then lower ``priority``, then campaign name.

It also turns goal events into conversions of the messages (and holdouts) they follow.
``CampaignPolicy`` is what the router needs to know of campaigns: which transitions are
triggers, which events are goals, which segments' transitions need the user's context.
No I/O, no Ray, no clock of its own; the shell (``actors.dispatch.shell``) does the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from hashlib import blake2b
from typing import Any, NamedTuple

import msgpack

from actors.dispatch.throttle import HOLDOUT, Caps, assign, opted_out, quiet_until, unsubscribed
from actors.records import Conversion, Decision, Exposure, GoalEvent, Row, Transition, Trigger, UserContext
from segd.config import CampaignConfig, ChannelConfig, Config
from segd.templates import Template

#: Recipient templates of the channels that need an address, unless the channel sets ``to``.
DEFAULT_TO = {"smtp": "{traits.email}", "http": "{traits.phone}"}


class CampaignPolicy:
    """What the pipeline upstream of dispatch needs to know of ``campaigns``.

    ``triggers``: the (segment, kind) pairs some campaign fires on; ``goal_events``: event
    names some campaign counts as a conversion; ``notify``: segments whose transitions carry
    the user's context (traits and aggregates), for templates and consent. With ``enabled``
    False (``segd replay --no-dispatch``) nothing triggers.
    """

    def __init__(self, campaigns: Sequence[CampaignConfig], *, enabled: bool = True) -> None:
        on = campaigns if enabled else ()
        self.triggers = frozenset((c.segment, c.on) for c in on)
        self.goal_events = frozenset(c.goal.event for c in on if c.goal)
        self.notify = frozenset(c.segment for c in on)

    def triggers_of(
        self, transitions: Iterable[Transition], contexts: Mapping[str, UserContext]
    ) -> list[Trigger]:
        """The transitions that fire some campaign, with the user's context at each."""
        keys = self.triggers
        if not keys:
            return []
        return [
            Trigger(transition=t, context=contexts.get(t.id))
            for t in transitions
            if (t.segment, t.kind) in keys
        ]

    def goals_of(self, rows: Iterable[Row]) -> list[GoalEvent]:
        """The rows that are some campaign's goal event."""
        goals = self.goal_events
        if not goals:
            return []
        return [GoalEvent(user=r.user, event=r.event, ts=r.ts, seq=r.seq) for r in rows if r.event in goals]


def message_id(campaign: str, transition: str) -> str:
    """The id of the message ``campaign`` sends for ``transition``: stable across replays."""
    return blake2b(f"{campaign}\x00{transition}".encode(), digest_size=12).hexdigest()


def campaign_key(c: CampaignConfig, segment_fingerprint: str) -> str:
    """What makes a campaign 'the same' for activation: its segment (and that segment's
    definition) and its kind. A change of template, channel or throttle keeps activation;
    a changed segment definition re-activates, so a rebuilt history messages nobody."""
    return f"{c.segment}\x00{segment_fingerprint}\x00{c.on}"


class _Campaign:
    """A campaign with its templates parsed."""

    def __init__(self, c: CampaignConfig, activated: float) -> None:
        self.config = c
        self.name = c.name
        self.activated = activated
        self.template = Template(c.template)
        self.subject = Template(c.subject)
        self.variants = {
            v.name: (
                Template(v.template) if v.template is not None else self.template,
                Template(v.subject) if v.subject is not None else self.subject,
            )
            for v in c.variants
        }


class Candidate(NamedTuple):
    """A campaign that a trigger fires, with the id its message would have."""

    message: str
    campaign: _Campaign
    trigger: Trigger


class _Channel:
    def __init__(self, c: ChannelConfig) -> None:
        self.config = c
        self.name = c.name
        self.to = Template(c.to or DEFAULT_TO.get(c.kind, ""))
        self.needs_address = c.kind in DEFAULT_TO
        self.fields = tuple((k, Template(v)) for k, v in c.body)


class DispatchCore:
    """Decisions for campaign triggers, and conversions for goal events.

    ``activations`` maps campaign name to the engine clock from which it fires. State: the
    send times inside the cap windows, and the exposures a goal event may still convert;
    ``load`` refills both from the outbox at start-up.
    """

    def __init__(self, config: Config, activations: Mapping[str, float]) -> None:
        self.throttle = config.throttle
        self.campaigns = {
            c.name: _Campaign(c, activations.get(c.name, float("-inf"))) for c in config.campaigns
        }
        self.channels = {c.name: _Channel(c) for c in config.channels}
        self.by_trigger: dict[tuple[str, str], list[_Campaign]] = {}
        for c in self.campaigns.values():
            self.by_trigger.setdefault((c.config.segment, c.config.on), []).append(c)
        self.goals = {c.name: c.config.goal for c in self.campaigns.values() if c.config.goal}
        self.caps = Caps(config.throttle.per_user)
        # user -> the exposures a goal event may still convert
        self.exposures: dict[str, list[Exposure]] = {}
        self.goal_horizon = max((g.within for g in self.goals.values()), default=0.0)

    def load(self, capped: Iterable[tuple[str, float]], exposures: Iterable[Exposure]) -> None:
        """Start-up: cap places ``(user, due)`` and the exposures still in a goal window."""
        for user, due in capped:
            self.caps.add(user, due)
        for e in exposures:
            if e.campaign in self.goals:
                self.exposures.setdefault(e.user, []).append(e)

    # ------------------------------------------------------------------ triggers

    def candidates(self, triggers: Iterable[Trigger]) -> list[Candidate]:
        """Each campaign a trigger fires (activation checked). The caller drops the message
        ids already in the outbox before ``decide``."""
        out = []
        for trigger in triggers:
            t = trigger.transition
            for c in self.by_trigger.get((t.segment, t.kind), ()):
                if t.at >= c.activated:
                    out.append(Candidate(message_id(c.name, t.id), c, trigger))
        return out

    def decide(self, candidates: list[Candidate], now: float) -> list[Decision]:
        """One decision per candidate (none of them decided before), at engine clock ``now``."""

        def order(x: Candidate) -> tuple[str, float, int, str]:
            t = x.trigger.transition
            return (t.user, t.at, x.campaign.config.priority, x.campaign.name)

        return [self._decide(x.message, x.campaign, x.trigger, now) for x in sorted(candidates, key=order)]

    def _decide(self, mid: str, c: _Campaign, trigger: Trigger, now: float) -> Decision:
        t = trigger.transition
        segment, user, at = t.segment, t.user, t.at
        ctx = trigger.context
        traits: Mapping[str, Any] = ctx.traits if ctx is not None else {}
        cfg = c.config
        variant = assign(cfg, user)

        def row(
            status: str, reason: str = "", channel: str = "", due: float = now, payload: bytes | None = None
        ) -> Decision:
            if cfg.goal is not None and status in ("pending", HOLDOUT):
                exposure = Exposure(user=user, campaign=c.name, message=mid, variant=variant, at=at)
                self.exposures.setdefault(user, []).append(exposure)
            return Decision(
                id=mid,
                campaign=c.name,
                variant=variant,
                segment=segment,
                user=user,
                transition=t.id,
                at=at,
                decided=now,
                due=due,
                channel=channel,
                priority=cfg.priority,
                status=status,
                reason=reason,
                payload=payload,
            )

        if variant == HOLDOUT:
            return row(HOLDOUT)
        if unsubscribed(traits):
            return row("suppressed", "consent")
        if cfg.stale_after is not None and now - at > cfg.stale_after:
            return row("suppressed", "stale")
        values = {
            "user": user,
            "campaign": c.name,
            "segment": segment,
            "variant": variant,
            "id": mid,
            "traits": traits,
            "aggregates": ctx.aggregates if ctx is not None else {},
        }
        channel, to, reason = self._resolve(cfg, traits, values)
        if channel is None:
            return row("suppressed", reason)
        quiet_end = quiet_until(
            now, traits.get("timezone"), self.throttle.quiet_start, self.throttle.quiet_end
        )
        deferred = quiet_end is not None
        due = now if quiet_end is None else quiet_end
        if not self.caps.fits(user, due):
            return row("suppressed", "frequency_cap", channel.name, due)
        self.caps.add(user, due)
        values["channel"] = channel.name
        body_t, subject_t = c.variants.get(variant, (c.template, c.subject))
        body, subject = body_t.render(values), subject_t.render(values)
        fields = {}
        if channel.fields:
            fvalues = {**values, "body": body, "subject": subject, "to": to}
            fields = {k: tpl.render(fvalues) for k, tpl in channel.fields}
        payload = msgpack.packb(
            {"body": body, "subject": subject, "to": to, "fields": fields}, use_bin_type=True
        )
        return row("pending", "quiet_hours" if deferred else "", channel.name, due, payload)

    def _resolve(
        self, cfg: CampaignConfig, traits: Mapping[str, Any], values: Mapping[str, Any]
    ) -> tuple[_Channel | None, str, str]:
        """The channel to use, its recipient, or (None, "", reason)."""
        if cfg.channel == "preferred":
            pref = traits.get("preferred_channel")
            order = ([pref] if isinstance(pref, str) and pref in self.channels else []) + list(cfg.fallback)
        else:
            order = [cfg.channel]
        order = [n for i, n in enumerate(order) if n in self.channels and n not in order[:i]]
        if not order:
            return None, "", "no_channel"
        blocked = opted_out(traits)
        allowed = [n for n in order if n not in blocked]
        if not allowed:
            return None, "", "consent"
        for name in allowed:
            ch = self.channels[name]
            to = ch.to.render(values)
            if to or not ch.needs_address:
                return ch, to, ""
        return None, "", "no_address"

    # ------------------------------------------------------------------ goals and housekeeping

    def convert(self, events: Iterable[GoalEvent]) -> list[Conversion]:
        """Conversions for goal events: the goal event of a campaign whose message (or
        holdout) the user got at ``at``, with ``at <= ts <= at + within``. Each message
        converts once."""
        out = []
        for g in events:
            exposed = self.exposures.get(g.user)
            if not exposed:
                continue
            keep = []
            for e in exposed:
                goal = self.goals.get(e.campaign)
                if goal is not None and goal.event == g.event and e.at <= g.ts <= e.at + goal.within:
                    out.append(
                        Conversion(
                            message=e.message,
                            campaign=e.campaign,
                            variant=e.variant,
                            user=g.user,
                            ts=g.ts,
                            seq=g.seq,
                        )
                    )
                else:
                    keep.append(e)
            self.exposures[g.user] = keep
        return out

    def forget(self, user: str) -> None:
        """Drop everything kept about ``user``."""
        self.caps.forget(user)
        self.exposures.pop(user, None)

    def prune(self, now: float) -> None:
        """Drop state no rule can use any more (cap windows and goal windows in the past)."""
        self.caps.prune(now)
        cut = now - self.goal_horizon
        for user in list(self.exposures):
            kept = [e for e in self.exposures[user] if e.at > cut]
            if kept:
                self.exposures[user] = kept
            else:
                del self.exposures[user]
