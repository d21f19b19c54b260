"""Config sections for dispatch: ``[channels.*]``, ``[campaigns.*]``, ``[throttle]``.

Each ``read_*`` function records every problem of its table on the reader, in the order the
keys are checked, and returns the table's dataclass (None when a required key is missing or
unusable). ``check_dispatch`` runs after every table is read: campaigns must name segments
and channels that exist, and templates may only name values a message can have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segd import templates
from segd.config.model import (
    CHANNEL_KINDS,
    CampaignConfig,
    CapConfig,
    ChannelConfig,
    GoalConfig,
    ThrottleConfig,
    VariantConfig,
)
from segd.config.values import known, parse_clock_time, parse_duration, show

if TYPE_CHECKING:
    # Only for annotations: reader.py imports this module to assemble the Config.
    from segd.config.reader import Entry, Raw, Reader

#: Keys every channel accepts, then the keys each kind adds.
_COMMON_KEYS = {"kind", "rate", "timeout", "to", "max_attempts", "backoff"}
_KIND_KEYS = {
    "file": {"path"},
    "webhook": {"url", "headers"},
    "http": {"url", "method", "headers", "body"},
    "smtp": {"host", "port", "username", "password", "starttls", "ssl", "sender"},
}
_CAMPAIGN_KEYS = {
    "segment",
    "on",
    "channel",
    "template",
    "priority",
    "stale_after",
    "subject",
    "fallback",
    "variants",
    "holdout",
    "goal",
}


def read_channels(reader: Reader, raw: Raw) -> tuple[ChannelConfig, ...]:
    """Every ``[channels.NAME]`` of the document, in file order, minus those without a kind."""
    found = (read_channel(reader, entry) for entry in reader.tables(raw, "channels"))
    return tuple(c for c in found if c)


def read_channel(reader: Reader, entry: Entry) -> ChannelConfig | None:
    """One channel; None when ``kind`` is missing or unknown. Which keys are allowed and
    required depends on the kind, so nothing else is checked without a valid one."""
    name, t, raw = entry.name, entry.table, entry.body
    kinds = ", ".join(CHANNEL_KINDS)
    kind = reader.take(t, raw, "kind", str, None, f"one of {kinds}", required=True)
    if kind is not None and kind not in CHANNEL_KINDS:
        reader.error(t, f"'kind' must be one of {kinds}, got {kind!r}")
        return None
    if kind is None:
        return None
    reader.unknown(t, raw, _COMMON_KEYS | _KIND_KEYS[kind])
    rate = reader.take(t, raw, "rate", (int, float), None, "messages per second (a positive number)")
    if rate is not None and rate <= 0:
        reader.error(t, f"'rate' must be a positive number of messages per second, got {rate}")
        rate = None
    d = ChannelConfig(name=name, kind=kind)
    path = reader.take(t, raw, "path", str, None, "a file path", required=kind == "file")
    url = reader.take(
        t, raw, "url", str, "", "an http:// or https:// URL", required=kind in ("webhook", "http")
    )
    if url and not url.startswith(("http://", "https://")):
        reader.error(t, f"'url' must start with http:// or https://, got {url!r}")
    host = reader.take(t, raw, "host", str, "", "an SMTP host name", required=kind == "smtp")
    return ChannelConfig(
        name=name,
        kind=kind,
        rate=float(rate) if rate else None,
        timeout=reader.convert(t, raw, "timeout", parse_duration, d.timeout),
        path=reader.path(path) if path else None,
        url=url,
        method=reader.take(t, raw, "method", str, d.method, "an HTTP method").upper(),
        headers=str_map(reader, t, raw, "headers"),
        body=str_map(reader, t, raw, "body"),
        host=host,
        port=reader.take(t, raw, "port", int, 25, "a port number"),
        username=reader.take(t, raw, "username", str, "", "a string"),
        password=reader.take(t, raw, "password", str, "", "a string"),
        starttls=reader.take(t, raw, "starttls", bool, False, "true or false"),
        ssl=reader.take(t, raw, "ssl", bool, False, "true or false"),
        sender=reader.take(t, raw, "sender", str, "", "an email address", required=kind == "smtp"),
        to=reader.take(t, raw, "to", str, "", "a recipient template"),
        max_attempts=max(1, reader.take(t, raw, "max_attempts", int, d.max_attempts, "a positive integer")),
        backoff=reader.convert(t, raw, "backoff", parse_duration, d.backoff),
    )


def str_map(reader: Reader, table: str, raw: Raw, key: str) -> tuple[tuple[str, str], ...]:
    """A table of strings at ``raw[key]`` as ``(key, value)`` pairs in file order; empty
    (and one problem naming the bad keys) if any value is not a string."""
    value = reader.take(table, raw, key, dict, {}, "a table of strings")
    bad = [k for k, v in value.items() if not isinstance(v, str)]
    if bad:
        reader.error(table, f"'{key}' values must be strings; not: {', '.join(bad)}")
        return ()
    return tuple(value.items())


def read_campaigns(reader: Reader, raw: Raw) -> tuple[CampaignConfig, ...]:
    """Every ``[campaigns.NAME]`` of the document, in file order, minus the incomplete ones."""
    found = (read_campaign(reader, entry) for entry in reader.tables(raw, "campaigns"))
    return tuple(c for c in found if c)


def read_campaign(reader: Reader, entry: Entry) -> CampaignConfig | None:
    """One campaign; None when ``segment``, ``channel`` or ``template`` is missing, in which
    case ``priority``, ``stale_after`` and ``subject`` are not checked."""
    name, t, raw = entry.name, entry.table, entry.body
    reader.unknown(t, raw, _CAMPAIGN_KEYS)
    segment = reader.take(t, raw, "segment", str, None, "a segment name", required=True)
    channel = reader.take(t, raw, "channel", str, None, "a channel name or 'preferred'", required=True)
    template = reader.take(t, raw, "template", str, None, "a message template", required=True)
    on = reader.take(t, raw, "on", str, "enter", "'enter' or 'exit'")
    if on not in ("enter", "exit"):
        reader.error(t, f"'on' must be 'enter' or 'exit', got {on!r}")
    fallback = reader.take(t, raw, "fallback", list, [], "a list of channel names")
    if not all(isinstance(f, str) for f in fallback):
        reader.error(t, "'fallback' must be a list of channel names")
        fallback = []
    holdout = reader.take(t, raw, "holdout", (int, float), 0.0, "a share between 0 and 1")
    if not 0 <= holdout < 1:
        reader.error(t, f"'holdout' must be a share in [0, 1), got {holdout}")
        holdout = 0.0
    variants = read_variants(reader, t, raw)
    goal = read_goal(reader, t, raw) if "goal" in raw else None
    if segment is None or channel is None or template is None:
        return None
    return CampaignConfig(
        name=name,
        segment=segment,
        channel=channel,
        template=template,
        on=on,
        priority=reader.take(t, raw, "priority", int, 0, "an integer"),
        stale_after=reader.convert(t, raw, "stale_after", parse_duration, None),
        subject=reader.take(t, raw, "subject", str, "", "a subject template"),
        fallback=tuple(fallback),
        variants=variants,
        holdout=float(holdout),
        goal=goal,
    )


def read_variants(reader: Reader, t: str, raw: Raw) -> tuple[VariantConfig, ...]:
    """A campaign's ``variants``: each a table; names unique and not ``holdout`` (the name
    of the control group). A variant with a bad weight is still kept, with the problem."""
    variants = []
    for i, v in enumerate(reader.take(t, raw, "variants", list, [], "a list of tables")):
        vt = f"{t}.variants[{i}]"
        if not isinstance(v, dict):
            reader.error(vt, f"must be a table with name, weight, template; got {show(v)}")
            continue
        reader.unknown(vt, v, {"name", "weight", "template", "subject"})
        weight = reader.take(vt, v, "weight", (int, float), 1.0, "a positive number")
        if weight <= 0:
            reader.error(vt, f"'weight' must be positive, got {weight}")
        variants.append(
            VariantConfig(
                name=reader.take(vt, v, "name", str, f"v{i}", "a variant name", required=True),
                weight=float(weight),
                template=reader.take(vt, v, "template", str, None, "a template"),
                subject=reader.take(vt, v, "subject", str, None, "a subject template"),
            )
        )
    if len({v.name for v in variants}) != len(variants):
        reader.error(t, "variant names must be unique")
    if any(v.name == "holdout" for v in variants):
        reader.error(t, "'holdout' is the name of the holdout group; name the variant otherwise")
    return tuple(variants)


def read_goal(reader: Reader, t: str, raw: Raw) -> GoalConfig | None:
    """A campaign's ``goal = { event, within }``; None unless both are valid."""
    g = reader.take(t, raw, "goal", dict, {}, "a table {event, within}")
    gt = f"{t}.goal"
    reader.unknown(gt, g, {"event", "within"})
    event = reader.take(gt, g, "event", str, None, "an event name", required=True)
    within = reader.convert(gt, g, "within", parse_duration, None, required=True, what="a duration")
    return GoalConfig(event=event, within=within) if event and within else None


def read_throttle(reader: Reader, raw: Raw) -> ThrottleConfig:
    """``[throttle]``: caps per user across campaigns, and quiet hours (minutes after
    midnight; ``start`` and ``end`` must differ, since an empty window is surely a typo)."""
    t = "throttle"
    reader.unknown(t, raw, {"per_user", "quiet_hours"})
    caps = []
    for i, c in enumerate(reader.take(t, raw, "per_user", list, [], "a list of {max, per} tables")):
        ct = f"throttle.per_user[{i}]"
        if not isinstance(c, dict):
            reader.error(ct, f"must be a table {{ max = N, per = '1h' }}, got {show(c)}")
            continue
        reader.unknown(ct, c, {"max", "per"})
        mx = reader.take(ct, c, "max", int, None, "a positive integer", required=True)
        per = reader.convert(ct, c, "per", parse_duration, None, required=True, what="a duration")
        if mx is not None and mx <= 0:
            reader.error(ct, f"'max' must be a positive integer, got {mx}")
        elif mx is not None and per is not None:
            caps.append(CapConfig(max=mx, per=per))
    start: int | None = None
    end: int | None = None
    if "quiet_hours" in raw:
        q = reader.take(t, raw, "quiet_hours", dict, {}, "a table {start = 'HH:MM', end = 'HH:MM'}")
        qt = "throttle.quiet_hours"
        reader.unknown(qt, q, {"start", "end"})
        start = reader.convert(qt, q, "start", parse_clock_time, None, required=True, what="'HH:MM'")
        end = reader.convert(qt, q, "end", parse_clock_time, None, required=True, what="'HH:MM'")
        if start is not None and start == end:
            reader.error(qt, "'start' and 'end' must differ")
    return ThrottleConfig(per_user=tuple(caps), quiet_start=start, quiet_end=end)


def check_dispatch(
    reader: Reader,
    agg_names: set[str],
    seg_names: set[str],
    channels: tuple[ChannelConfig, ...],
    campaigns: tuple[CampaignConfig, ...],
) -> None:
    """Cross-table checks, after every table is read: campaigns name known segments and
    channels; templates parse and name only things that can have a value. Problems go to
    each campaign in file order, then to each channel."""
    chan_names = {c.name for c in channels}
    for c in campaigns:
        t = f"campaigns.{c.name}"
        if c.segment not in seg_names:
            reader.error(t, f"'segment' names an unknown segment {c.segment!r}" + known(seg_names))
        if c.channel != "preferred" and c.channel not in chan_names:
            reader.error(
                t,
                f"'channel' names an unknown channel {c.channel!r} "
                f"(expected 'preferred' or one of: {', '.join(sorted(chan_names)) or 'none defined'})",
            )
        for f in c.fallback:
            if f not in chan_names:
                reader.error(t, f"'fallback' names an unknown channel {f!r}" + known(chan_names))
        texts = [("template", c.template), ("subject", c.subject)]
        texts += [
            (f"variants.{v.name}.{k}", x)
            for v in c.variants
            for k, x in (("template", v.template), ("subject", v.subject))
            if x is not None
        ]
        for key, text in texts:
            for problem in templates.check(text, agg_names):
                reader.error(t, f"'{key}': {problem}")
    for ch in channels:
        texts = [("to", ch.to)] + [(f"body.{k}", v) for k, v in ch.body]
        for key, text in texts:
            for problem in templates.check(text, agg_names, templates.CHANNEL_NAMES):
                reader.error(f"channels.{ch.name}", f"'{key}': {problem}")
