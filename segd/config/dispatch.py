"""Config sections for dispatch: ``[channels.*]``, ``[campaigns.*]``, ``[throttle]``.

``DispatchSections`` is the part of the config parser that reads these
tables and checks their templates (a mixin of ``segd.config``'s parser, whose ``take``,
``convert``, ``unknown``, ``error`` and ``path`` it uses).
"""

from __future__ import annotations

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


class DispatchSections:
    """Parser methods for the dispatch tables (mixed into ``segd.config.reader.Reader``)."""

    def channel(self, name: str, t: str, raw: dict) -> ChannelConfig | None:
        kind = self.take(t, raw, "kind", str, None, f"one of {', '.join(CHANNEL_KINDS)}", required=True)
        if kind is not None and kind not in CHANNEL_KINDS:
            self.error(t, f"'kind' must be one of {', '.join(CHANNEL_KINDS)}, got {kind!r}")
            return None
        if kind is None:
            return None
        common = {"kind", "rate", "timeout", "to", "max_attempts", "backoff"}
        allowed = (
            common
            | {
                "file": {"path"},
                "webhook": {"url", "headers"},
                "http": {"url", "method", "headers", "body"},
                "smtp": {"host", "port", "username", "password", "starttls", "ssl", "sender"},
            }[kind]
        )
        self.unknown(t, raw, allowed)
        rate = self.take(t, raw, "rate", (int, float), None, "messages per second (a positive number)")
        if rate is not None and rate <= 0:
            self.error(t, f"'rate' must be a positive number of messages per second, got {rate}")
            rate = None
        d = ChannelConfig(name=name, kind=kind)
        path = self.take(t, raw, "path", str, None, "a file path", required=kind == "file")
        url = self.take(
            t, raw, "url", str, "", "an http:// or https:// URL", required=kind in ("webhook", "http")
        )
        if url and not url.startswith(("http://", "https://")):
            self.error(t, f"'url' must start with http:// or https://, got {url!r}")
        host = self.take(t, raw, "host", str, "", "an SMTP host name", required=kind == "smtp")
        return ChannelConfig(
            name=name,
            kind=kind,
            rate=float(rate) if rate else None,
            timeout=self.convert(t, raw, "timeout", parse_duration, d.timeout),
            path=self.path(path) if path else None,
            url=url,
            method=self.take(t, raw, "method", str, d.method, "an HTTP method").upper(),
            headers=self.str_map(t, raw, "headers"),
            body=self.str_map(t, raw, "body"),
            host=host,
            port=self.take(t, raw, "port", int, 25, "a port number"),
            username=self.take(t, raw, "username", str, "", "a string"),
            password=self.take(t, raw, "password", str, "", "a string"),
            starttls=self.take(t, raw, "starttls", bool, False, "true or false"),
            ssl=self.take(t, raw, "ssl", bool, False, "true or false"),
            sender=self.take(t, raw, "sender", str, "", "an email address", required=kind == "smtp"),
            to=self.take(t, raw, "to", str, "", "a recipient template"),
            max_attempts=max(1, self.take(t, raw, "max_attempts", int, d.max_attempts, "a positive integer")),
            backoff=self.convert(t, raw, "backoff", parse_duration, d.backoff),
        )

    def str_map(self, t: str, raw: dict, key: str) -> tuple[tuple[str, str], ...]:
        value = self.take(t, raw, key, dict, {}, "a table of strings")
        bad = [k for k, v in value.items() if not isinstance(v, str)]
        if bad:
            self.error(t, f"'{key}' values must be strings; not: {', '.join(bad)}")
            return ()
        return tuple(value.items())

    def campaign(self, name: str, t: str, raw: dict) -> CampaignConfig | None:
        self.unknown(
            t,
            raw,
            {
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
            },
        )
        segment = self.take(t, raw, "segment", str, None, "a segment name", required=True)
        channel = self.take(t, raw, "channel", str, None, "a channel name or 'preferred'", required=True)
        template = self.take(t, raw, "template", str, None, "a message template", required=True)
        on = self.take(t, raw, "on", str, "enter", "'enter' or 'exit'")
        if on not in ("enter", "exit"):
            self.error(t, f"'on' must be 'enter' or 'exit', got {on!r}")
        fallback = self.take(t, raw, "fallback", list, [], "a list of channel names")
        if not all(isinstance(f, str) for f in fallback):
            self.error(t, "'fallback' must be a list of channel names")
            fallback = []
        holdout = self.take(t, raw, "holdout", (int, float), 0.0, "a share between 0 and 1")
        if not 0 <= holdout < 1:
            self.error(t, f"'holdout' must be a share in [0, 1), got {holdout}")
            holdout = 0.0
        variants = []
        for i, v in enumerate(self.take(t, raw, "variants", list, [], "a list of tables")):
            vt = f"{t}.variants[{i}]"
            if not isinstance(v, dict):
                self.error(vt, f"must be a table with name, weight, template; got {show(v)}")
                continue
            self.unknown(vt, v, {"name", "weight", "template", "subject"})
            weight = self.take(vt, v, "weight", (int, float), 1.0, "a positive number")
            if weight <= 0:
                self.error(vt, f"'weight' must be positive, got {weight}")
            variants.append(
                VariantConfig(
                    name=self.take(vt, v, "name", str, f"v{i}", "a variant name", required=True),
                    weight=float(weight),
                    template=self.take(vt, v, "template", str, None, "a template"),
                    subject=self.take(vt, v, "subject", str, None, "a subject template"),
                )
            )
        if len({v.name for v in variants}) != len(variants):
            self.error(t, "variant names must be unique")
        if any(v.name == "holdout" for v in variants):
            self.error(t, "'holdout' is the name of the holdout group; name the variant otherwise")
        goal = None
        if "goal" in raw:
            g = self.take(t, raw, "goal", dict, {}, "a table {event, within}")
            gt = f"{t}.goal"
            self.unknown(gt, g, {"event", "within"})
            gevent = self.take(gt, g, "event", str, None, "an event name", required=True)
            within = self.convert(gt, g, "within", parse_duration, None, required=True, what="a duration")
            if gevent and within:
                goal = GoalConfig(event=gevent, within=within)
        if segment is None or channel is None or template is None:
            return None
        return CampaignConfig(
            name=name,
            segment=segment,
            channel=channel,
            template=template,
            on=on,
            priority=self.take(t, raw, "priority", int, 0, "an integer"),
            stale_after=self.convert(t, raw, "stale_after", parse_duration, None),
            subject=self.take(t, raw, "subject", str, "", "a subject template"),
            fallback=tuple(fallback),
            variants=tuple(variants),
            holdout=float(holdout),
            goal=goal,
        )

    def throttle(self, raw: dict) -> ThrottleConfig:
        t = "throttle"
        self.unknown(t, raw, {"per_user", "quiet_hours"})
        caps = []
        for i, c in enumerate(self.take(t, raw, "per_user", list, [], "a list of {max, per} tables")):
            ct = f"throttle.per_user[{i}]"
            if not isinstance(c, dict):
                self.error(ct, f"must be a table {{ max = N, per = '1h' }}, got {show(c)}")
                continue
            self.unknown(ct, c, {"max", "per"})
            mx = self.take(ct, c, "max", int, None, "a positive integer", required=True)
            per = self.convert(ct, c, "per", parse_duration, None, required=True, what="a duration")
            if mx is not None and mx <= 0:
                self.error(ct, f"'max' must be a positive integer, got {mx}")
            elif mx is not None and per is not None:
                caps.append(CapConfig(max=mx, per=per))
        start = end = None
        if "quiet_hours" in raw:
            q = self.take(t, raw, "quiet_hours", dict, {}, "a table {start = 'HH:MM', end = 'HH:MM'}")
            qt = "throttle.quiet_hours"
            self.unknown(qt, q, {"start", "end"})
            start = self.convert(qt, q, "start", parse_clock_time, None, required=True, what="'HH:MM'")
            end = self.convert(qt, q, "end", parse_clock_time, None, required=True, what="'HH:MM'")
            if start is not None and start == end:
                self.error(qt, "'start' and 'end' must differ")
        return ThrottleConfig(per_user=tuple(caps), quiet_start=start, quiet_end=end)

    def check_dispatch(self, agg_names: set[str], seg_names: set[str], channels, campaigns) -> None:
        """Cross-table checks: campaigns name known segments and channels; templates parse
        and name only things that can have a value."""
        chan_names = {c.name for c in channels}
        for c in campaigns:
            t = f"campaigns.{c.name}"
            if c.segment not in seg_names:
                self.error(t, f"'segment' names an unknown segment {c.segment!r}" + known(seg_names))
            if c.channel != "preferred" and c.channel not in chan_names:
                self.error(
                    t,
                    f"'channel' names an unknown channel {c.channel!r} "
                    f"(expected 'preferred' or one of: {', '.join(sorted(chan_names)) or 'none defined'})",
                )
            for f in c.fallback:
                if f not in chan_names:
                    self.error(t, f"'fallback' names an unknown channel {f!r}" + known(chan_names))
            texts = [("template", c.template), ("subject", c.subject)]
            texts += [
                (f"variants.{v.name}.{k}", x)
                for v in c.variants
                for k, x in (("template", v.template), ("subject", v.subject))
                if x is not None
            ]
            for key, text in texts:
                for problem in templates.check(text, agg_names):
                    self.error(t, f"'{key}': {problem}")
        for ch in channels:
            texts = [("to", ch.to)] + [(f"body.{k}", v) for k, v in ch.body]
            for key, text in texts:
                for problem in templates.check(text, agg_names, templates.CHANNEL_NAMES):
                    self.error(f"channels.{ch.name}", f"'{key}': {problem}")
