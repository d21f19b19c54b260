"""config.toml -> frozen dataclasses.

Loading is strict: unknown keys, wrong types, bad durations and dangling references are all
errors, and all of them are reported together (``ConfigError.problems``), each naming the
file, the table and the key. Expressions (``when``, ``where``, ``of``) are stored as text
here; ``actors.user.Model`` compiles and checks them with ``segd.rules``.

Relative paths (``data_dir``, ``socket``, file channel ``path``) are resolved against the
directory of the config file, so ``segd --config /etc/segd/config.toml run`` does not depend
on the working directory. With no config file, the embedded defaults apply and paths are
relative to the working directory.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segd import templates
from segd.errors import ConfigError

AGGREGATE_KINDS = (
    "count", "sum", "min", "max", "avg", "first", "last", "first_time", "last_time", "distinct",
)
#: Kinds that aggregate a value and so need ``of``; the others only look at event times.
VALUE_KINDS = frozenset({"sum", "min", "max", "avg", "first", "last", "distinct"})
CHANNEL_KINDS = ("file", "webhook", "smtp", "http")
#: Words of the rule language that cannot name an aggregate.
RESERVED_NAMES = frozenset({
    "and", "or", "not", "in", "true", "false", "null", "traits", "props", "event",
    "now", "days_since", "hours_since", "exists", "segment",
})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*\Z")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*\Z")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
               "KB": 10**3, "MB": 10**6, "GB": 10**9}
_CLOCK_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)\Z")


def parse_duration(value: Any) -> float:
    """``"7d"``, ``"1.5h"``, ``"250ms"`` or a number of seconds -> seconds (float, > 0).

    Raises ValueError with what was expected.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '30s', '7d' or a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError(
            f"expected a duration such as '30s', '15m', '1h', '7d', '2w' or a number of seconds, "
            f"got {value!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return seconds


def parse_size(value: Any) -> int:
    """``"4MiB"``, ``"512KiB"``, ``"1GB"`` or a number of bytes -> bytes (int, > 0)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    else:
        raise ValueError(f"expected a size such as '4MiB', '512KiB' or a number of bytes, got {value!r}")
    if size <= 0:
        raise ValueError(f"expected a positive size, got {value!r}")
    return size


def parse_clock_time(value: Any) -> int:
    """``"21:00"`` -> minutes after midnight."""
    if not isinstance(value, str) or not (m := _CLOCK_TIME.match(value)):
        raise ValueError(f"expected a time of day 'HH:MM' (00:00 to 23:59), got {value!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


@dataclass(frozen=True)
class DaemonConfig:
    """``[daemon]``: where the daemon keeps its data and how it listens."""

    data_dir: Path = Path("var")
    socket: Path = Path("var/segd.sock")
    tcp: str = ""                   # "host:port"; empty = TCP off
    token: str = ""                 # shared secret, required when tcp is set
    clock: str = "wall"             # "wall" | "event"
    tick: float = 1.0               # seconds between timer advances in wall mode
    max_frame: int = 4 << 20        # bytes
    synchronous: str = "full"       # SQLite synchronous for the log: "full" | "normal"
    max_pending: int = 200_000      # events waiting for a commit before `overloaded`
    max_connections: int = 1024
    snapshot_every: int = 100_000   # events a shard applies between snapshots
    metrics: str = ""               # "host:port" of the Prometheus endpoint; empty = off


@dataclass(frozen=True)
class RayConfig:
    """``[ray]``: the Ray cluster to start or join and the size of the actor pools."""

    address: str = ""               # "" start a local Ray; "auto" or "host:port" join
    shards: int = 2
    num_cpus: int = 0               # for a local Ray; 0 = Ray's own default


@dataclass(frozen=True)
class AggregateConfig:
    """``[aggregates.NAME]``: one value computed per user over their track events."""

    name: str
    kind: str
    event: str = "*"
    of: str | None = None           # expression over the event (props.NAME...)
    where: str | None = None        # filter expression over the event
    within: float | None = None     # sliding window in seconds; None = lifetime


@dataclass(frozen=True)
class SegmentConfig:
    """``[segments.NAME]``: a membership rule over a user's aggregates and traits."""

    name: str
    when: str
    description: str = ""
    group: str = ""
    priority: int = 0


@dataclass(frozen=True)
class ChannelConfig:
    """``[channels.NAME]``: where messages go. Which fields apply depends on ``kind``."""

    name: str
    kind: str
    rate: float | None = None       # messages per second; None = unlimited
    timeout: float = 10.0           # seconds per delivery attempt
    path: Path | None = None        # file
    url: str = ""                   # webhook, http
    method: str = "POST"            # http
    headers: tuple[tuple[str, str], ...] = ()   # webhook, http
    body: tuple[tuple[str, str], ...] = ()      # http: provider field -> template
    host: str = ""                  # smtp
    port: int = 25                  # smtp
    username: str = ""              # smtp
    password: str = ""              # smtp
    starttls: bool = False          # smtp
    ssl: bool = False               # smtp (implicit TLS)
    sender: str = ""                # smtp: From address
    to: str = ""                    # recipient template; default by kind (see DEFAULT_TO)
    max_attempts: int = 8           # delivery attempts before a message is dead-lettered
    backoff: float = 1.0            # seconds before the first retry; doubles per attempt


@dataclass(frozen=True)
class VariantConfig:
    """One A/B variant of a campaign; ``template`` None means the campaign's template."""

    name: str
    weight: float = 1.0
    template: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class GoalConfig:
    """A campaign's conversion goal: ``event`` tracked within ``within`` after a send."""

    event: str
    within: float


@dataclass(frozen=True)
class CampaignConfig:
    """``[campaigns.NAME]``: a message sent when users enter or leave a segment."""

    name: str
    segment: str
    channel: str
    template: str
    on: str = "enter"
    priority: int = 0
    stale_after: float | None = None
    subject: str = ""
    fallback: tuple[str, ...] = ()  # channel order when channel = "preferred" cannot be used
    variants: tuple[VariantConfig, ...] = ()
    holdout: float = 0.0
    goal: GoalConfig | None = None


@dataclass(frozen=True)
class CapConfig:
    """At most ``max`` messages per user in any ``per`` seconds."""

    max: int
    per: float


@dataclass(frozen=True)
class ThrottleConfig:
    """``[throttle]``: rules across all campaigns."""

    per_user: tuple[CapConfig, ...] = ()
    quiet_start: int | None = None  # minutes after midnight, user's timezone
    quiet_end: int | None = None


@dataclass(frozen=True)
class Config:
    """The whole config file. Tables keep their order from the file."""

    path: Path | None = None
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    aggregates: tuple[AggregateConfig, ...] = ()
    segments: tuple[SegmentConfig, ...] = ()
    channels: tuple[ChannelConfig, ...] = ()
    campaigns: tuple[CampaignConfig, ...] = ()
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)

    @property
    def label(self) -> str:
        """The file name used in error messages."""
        return str(self.path) if self.path else "<defaults>"


def load_config(path: str | Path | None) -> Config:
    """Read and validate a config file; ``None`` gives the embedded defaults.

    Raises ConfigError listing every problem found (file, table, message).
    """
    if path is None:
        return Config()
    path = Path(path)
    label = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError([(label, "-", "file not found")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([(label, "-", f"cannot read: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(label, "-", f"not valid TOML: {exc}")]) from exc
    return parse_config(raw, label=label, base=path.parent, path=path)


def parse_config(raw: dict[str, Any], *, label: str = "<config>", base: Path = Path("."),
                 path: Path | None = None) -> Config:
    """Validate an already-parsed TOML document; see ``load_config``."""
    p = _Parser(label, base)
    cfg = p.config(raw, path)
    if p.problems:
        raise ConfigError(p.problems)
    return cfg


class _Parser:
    """Collects problems instead of stopping at the first one."""

    def __init__(self, label: str, base: Path) -> None:
        self.label = label
        self.base = base
        self.problems: list[tuple[str, str, str]] = []

    def error(self, table: str, message: str) -> None:
        self.problems.append((self.label, table, message))

    # --- typed getters: each records a problem and returns the default on failure ---

    def take(self, table: str, raw: dict, key: str, kind: type | tuple, default: Any,
             what: str, required: bool = False) -> Any:
        if key not in raw:
            if required:
                self.error(table, f"missing required key '{key}' ({what})")
            return default
        value = raw[key]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _tuple(kind))
        if not ok:
            self.error(table, f"'{key}' must be {what}, got {_show(value)}")
            return default
        return value

    def convert(self, table: str, raw: dict, key: str, parse, default: Any,
                required: bool = False, what: str = "") -> Any:
        if key not in raw:
            if required:
                self.error(table, f"missing required key '{key}' ({what})")
            return default
        try:
            return parse(raw[key])
        except ValueError as exc:
            self.error(table, f"'{key}': {exc}")
            return default

    def unknown(self, table: str, raw: dict, allowed: set[str]) -> None:
        for key in raw:
            if key not in allowed:
                hint = _closest(key, allowed)
                self.error(table, f"unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else "")
                           + f"; allowed: {', '.join(sorted(allowed))}")

    def tables(self, raw: dict, key: str) -> list[tuple[str, str, dict]]:
        section = raw.get(key, {})
        if not isinstance(section, dict):
            self.error(key, f"'{key}' must be a table of tables, got {_show(section)}")
            return []
        out = []
        for name, body in section.items():
            table = f"{key}.{name}"
            if not isinstance(body, dict):
                self.error(table, f"must be a table, got {_show(body)}")
                continue
            out.append((name, table, body))
        return out

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base / p

    # --- sections ---

    def config(self, raw: dict, path: Path | None) -> Config:
        self.unknown("-", raw, {"daemon", "ray", "aggregates", "segments", "channels",
                                "campaigns", "throttle"})
        daemon = self.daemon(_section(self, raw, "daemon"))
        ray = self.ray(_section(self, raw, "ray"))
        aggregates = tuple(a for a in (self.aggregate(*t) for t in self.tables(raw, "aggregates")) if a)
        segments = tuple(s for s in (self.segment(*t) for t in self.tables(raw, "segments")) if s)
        channels = tuple(c for c in (self.channel(*t) for t in self.tables(raw, "channels")) if c)
        campaigns = tuple(c for c in (self.campaign(*t) for t in self.tables(raw, "campaigns")) if c)
        throttle = self.throttle(_section(self, raw, "throttle"))
        self.cross_check(aggregates, segments, channels, campaigns)
        return Config(path=path, daemon=daemon, ray=ray, aggregates=aggregates, segments=segments,
                      channels=channels, campaigns=campaigns, throttle=throttle)

    def daemon(self, raw: dict) -> DaemonConfig:
        t, d = "daemon", DaemonConfig()
        self.unknown(t, raw, set(DaemonConfig.__dataclass_fields__))
        data_dir = self.take(t, raw, "data_dir", str, None, "a directory path")
        socket = self.take(t, raw, "socket", str, None, "a socket file path")
        tcp = self.take(t, raw, "tcp", str, d.tcp, "'host:port' or empty")
        token = self.take(t, raw, "token", str, d.token, "a string")
        clock = self.take(t, raw, "clock", str, d.clock, "'wall' or 'event'")
        if clock not in ("wall", "event"):
            self.error(t, f"'clock' must be 'wall' or 'event', got {clock!r}")
        if tcp:
            host, _, port = tcp.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                self.error(t, f"'tcp' must be 'host:port' such as '127.0.0.1:7433', got {tcp!r}")
            if not token:
                self.error(t, "'token' is required when 'tcp' is set (clients authenticate with it)")
        synchronous = self.take(t, raw, "synchronous", str, d.synchronous, "'full' or 'normal'")
        if synchronous not in ("full", "normal"):
            self.error(t, f"'synchronous' must be 'full' or 'normal', got {synchronous!r}")
        metrics = self.take(t, raw, "metrics", str, d.metrics, "'host:port' or empty")
        if metrics:
            mhost, _, mport = metrics.rpartition(":")
            if not mhost or not mport.isdigit() or not 0 <= int(mport) < 65536:
                self.error(t, f"'metrics' must be 'host:port' such as '127.0.0.1:9464', got {metrics!r}")
        return DaemonConfig(
            data_dir=self.path(data_dir) if data_dir else self.base / d.data_dir,
            socket=self.path(socket) if socket else self.base / d.socket,
            tcp=tcp, token=token, clock=clock,
            tick=self.convert(t, raw, "tick", parse_duration, d.tick),
            max_frame=self.convert(t, raw, "max_frame", parse_size, d.max_frame),
            synchronous=synchronous,
            max_pending=self.positive_int(t, raw, "max_pending", d.max_pending),
            max_connections=self.positive_int(t, raw, "max_connections", d.max_connections),
            snapshot_every=self.positive_int(t, raw, "snapshot_every", d.snapshot_every),
            metrics=metrics,
        )

    def positive_int(self, table: str, raw: dict, key: str, default: int) -> int:
        value = self.take(table, raw, key, int, default, "a positive integer")
        if value <= 0:
            self.error(table, f"'{key}' must be a positive integer, got {value}")
            return default
        return value

    def ray(self, raw: dict) -> RayConfig:
        t, d = "ray", RayConfig()
        self.unknown(t, raw, set(RayConfig.__dataclass_fields__))
        num_cpus = self.take(t, raw, "num_cpus", int, d.num_cpus, "an integer (0 = Ray's default)")
        if num_cpus < 0:
            self.error(t, f"'num_cpus' must be 0 or more, got {num_cpus}")
        return RayConfig(
            address=self.take(t, raw, "address", str, d.address, "'', 'auto' or 'host:port'"),
            shards=self.positive_int(t, raw, "shards", d.shards),
            num_cpus=num_cpus,
        )

    def aggregate(self, name: str, t: str, raw: dict) -> AggregateConfig | None:
        self.unknown(t, raw, {"kind", "event", "of", "where", "within"})
        self.check_name(t, name, "an aggregate")
        kind = self.take(t, raw, "kind", str, None, f"one of {', '.join(AGGREGATE_KINDS)}", required=True)
        if kind is not None and kind not in AGGREGATE_KINDS:
            hint = _closest(kind, set(AGGREGATE_KINDS))
            self.error(t, f"'kind' must be one of {', '.join(AGGREGATE_KINDS)}, got {kind!r}"
                       + (f" (did you mean '{hint}'?)" if hint else ""))
            kind = None
        event = self.take(t, raw, "event", str, "*", "an event name or '*'")
        if not event:
            self.error(t, "'event' must be an event name or '*', got ''")
        of = self.take(t, raw, "of", str, None, "an expression such as 'props.price'")
        where = self.take(t, raw, "where", str, None, "an expression")
        within = self.convert(t, raw, "within", parse_duration, None)
        if kind in VALUE_KINDS and of is None:
            self.error(t, f"missing required key 'of' (kind '{kind}' aggregates a value, e.g. of = 'props.price')")
        if kind is not None and kind not in VALUE_KINDS and of is not None:
            self.error(t, f"'of' is not used by kind '{kind}' (it only counts or times events)")
        if kind is None:
            return None
        return AggregateConfig(name=name, kind=kind, event=event, of=of, where=where, within=within)

    def segment(self, name: str, t: str, raw: dict) -> SegmentConfig | None:
        self.unknown(t, raw, {"when", "description", "group", "priority"})
        self.check_name(t, name, "a segment")
        when = self.take(t, raw, "when", str, None, "an expression", required=True)
        seg = SegmentConfig(
            name=name, when=when or "false",
            description=self.take(t, raw, "description", str, "", "a string"),
            group=self.take(t, raw, "group", str, "", "a group name or ''"),
            priority=self.take(t, raw, "priority", int, 0, "an integer"),
        )
        return seg if when is not None else None

    def channel(self, name: str, t: str, raw: dict) -> ChannelConfig | None:
        kind = self.take(t, raw, "kind", str, None, f"one of {', '.join(CHANNEL_KINDS)}", required=True)
        if kind is not None and kind not in CHANNEL_KINDS:
            self.error(t, f"'kind' must be one of {', '.join(CHANNEL_KINDS)}, got {kind!r}")
            return None
        if kind is None:
            return None
        common = {"kind", "rate", "timeout", "to", "max_attempts", "backoff"}
        allowed = common | {
            "file": {"path"},
            "webhook": {"url", "headers"},
            "http": {"url", "method", "headers", "body"},
            "smtp": {"host", "port", "username", "password", "starttls", "ssl", "sender"},
        }[kind]
        self.unknown(t, raw, allowed)
        rate = self.take(t, raw, "rate", (int, float), None, "messages per second (a positive number)")
        if rate is not None and rate <= 0:
            self.error(t, f"'rate' must be a positive number of messages per second, got {rate}")
            rate = None
        d = ChannelConfig(name=name, kind=kind)
        path = self.take(t, raw, "path", str, None, "a file path", required=kind == "file")
        url = self.take(t, raw, "url", str, "", "an http:// or https:// URL", required=kind in ("webhook", "http"))
        if url and not url.startswith(("http://", "https://")):
            self.error(t, f"'url' must start with http:// or https://, got {url!r}")
        host = self.take(t, raw, "host", str, "", "an SMTP host name", required=kind == "smtp")
        return ChannelConfig(
            name=name, kind=kind, rate=float(rate) if rate else None,
            timeout=self.convert(t, raw, "timeout", parse_duration, d.timeout),
            path=self.path(path) if path else None, url=url,
            method=self.take(t, raw, "method", str, d.method, "an HTTP method").upper(),
            headers=self.str_map(t, raw, "headers"), body=self.str_map(t, raw, "body"),
            host=host, port=self.take(t, raw, "port", int, 25, "a port number"),
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
        self.unknown(t, raw, {"segment", "on", "channel", "template", "priority", "stale_after",
                              "subject", "fallback", "variants", "holdout", "goal"})
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
                self.error(vt, f"must be a table with name, weight, template; got {_show(v)}")
                continue
            self.unknown(vt, v, {"name", "weight", "template", "subject"})
            weight = self.take(vt, v, "weight", (int, float), 1.0, "a positive number")
            if weight <= 0:
                self.error(vt, f"'weight' must be positive, got {weight}")
            variants.append(VariantConfig(
                name=self.take(vt, v, "name", str, f"v{i}", "a variant name", required=True),
                weight=float(weight), template=self.take(vt, v, "template", str, None, "a template"),
                subject=self.take(vt, v, "subject", str, None, "a subject template")))
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
            name=name, segment=segment, channel=channel, template=template, on=on,
            priority=self.take(t, raw, "priority", int, 0, "an integer"),
            stale_after=self.convert(t, raw, "stale_after", parse_duration, None),
            subject=self.take(t, raw, "subject", str, "", "a subject template"),
            fallback=tuple(fallback), variants=tuple(variants), holdout=float(holdout), goal=goal,
        )

    def throttle(self, raw: dict) -> ThrottleConfig:
        t = "throttle"
        self.unknown(t, raw, {"per_user", "quiet_hours"})
        caps = []
        for i, c in enumerate(self.take(t, raw, "per_user", list, [], "a list of {max, per} tables")):
            ct = f"throttle.per_user[{i}]"
            if not isinstance(c, dict):
                self.error(ct, f"must be a table {{ max = N, per = '1h' }}, got {_show(c)}")
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

    def check_name(self, table: str, name: str, what: str) -> None:
        if not _NAME.match(name):
            self.error(table, f"{what} name must be letters, digits and '_' not starting with a digit "
                              f"(it is used in expressions), got {name!r}")
        elif name in RESERVED_NAMES:
            self.error(table, f"{name!r} is a reserved word of the rule language and cannot name {what}")

    def cross_check(self, aggregates, segments, channels, campaigns) -> None:
        seg_names = {s.name for s in segments}
        chan_names = {c.name for c in channels}
        agg_names = {a.name for a in aggregates}
        if overlap := {a.name for a in aggregates} & seg_names:
            for name in sorted(overlap):
                self.error(f"segments.{name}", f"name {name!r} is also an aggregate; names must differ")
        for c in campaigns:
            t = f"campaigns.{c.name}"
            if c.segment not in seg_names:
                self.error(t, f"'segment' names an unknown segment {c.segment!r}"
                              + _known(seg_names))
            if c.channel != "preferred" and c.channel not in chan_names:
                self.error(t, f"'channel' names an unknown channel {c.channel!r} "
                              f"(expected 'preferred' or one of: {', '.join(sorted(chan_names)) or 'none defined'})")
            for f in c.fallback:
                if f not in chan_names:
                    self.error(t, f"'fallback' names an unknown channel {f!r}" + _known(chan_names))
            texts = [("template", c.template), ("subject", c.subject)]
            texts += [(f"variants.{v.name}.{k}", x) for v in c.variants
                      for k, x in (("template", v.template), ("subject", v.subject)) if x is not None]
            for key, text in texts:
                for problem in templates.check(text, agg_names):
                    self.error(t, f"'{key}': {problem}")
        for ch in channels:
            texts = [("to", ch.to)] + [(f"body.{k}", v) for k, v in ch.body]
            for key, text in texts:
                for problem in templates.check(text, agg_names, templates.CHANNEL_NAMES):
                    self.error(f"channels.{ch.name}", f"'{key}': {problem}")


def _section(p: _Parser, raw: dict, key: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        p.error(key, f"'{key}' must be a table, got {_show(value)}")
        return {}
    return value


def _tuple(kind: type | tuple) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _show(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def _known(names: set[str]) -> str:
    return f" (known: {', '.join(sorted(names))})" if names else " (none defined)"


def _closest(word: str, choices: set[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.7)
    return found[0] if found else None
