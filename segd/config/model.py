"""The config schema: one frozen dataclass per table of config.toml (SPEC section 4).

Values here are already checked and converted: durations are seconds (float), sizes are
bytes (int), clock times are minutes after midnight, relative paths are resolved. Expressions
(``when``, ``where``, ``of``) and templates stay text; ``actors.user.Model`` compiles them.
Nothing in this module reads files or reports problems; ``segd.config.reader`` builds these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

AGGREGATE_KINDS = (
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "first",
    "last",
    "first_time",
    "last_time",
    "distinct",
)
#: Kinds that aggregate a value and so need ``of``; the others only look at event times.
VALUE_KINDS = frozenset({"sum", "min", "max", "avg", "first", "last", "distinct"})
#: Words of the rule language that cannot name an aggregate.
RESERVED_NAMES = frozenset(
    {
        "and",
        "or",
        "not",
        "in",
        "true",
        "false",
        "null",
        "traits",
        "props",
        "context",
        "event",
        "now",
        "days_since",
        "hours_since",
        "exists",
        "segment",
    }
)
CHANNEL_KINDS = ("file", "webhook", "smtp", "http")


@dataclass(frozen=True)
class DaemonConfig:
    """``[daemon]``: where the daemon keeps its data and how it listens."""

    data_dir: Path = Path("var")
    socket: Path = Path("var/segd.sock")
    tcp: str = ""  # "host:port"; empty = TCP off
    token: str = ""  # shared secret, required when tcp is set
    clock: str = "wall"  # "wall" | "event"
    tick: float = 1.0  # seconds between timer advances in wall mode
    max_frame: int = 4 << 20  # bytes
    synchronous: str = "full"  # SQLite synchronous for the log: "full" | "normal"
    max_pending: int = 200_000  # events waiting for a commit before `overloaded`
    max_connections: int = 1024
    backlog: int = 1024  # listen backlog of each socket: connects queued before accept()
    snapshot_every: int = 100_000  # events a shard applies between snapshots
    metrics: str = ""  # "host:port" of the Prometheus endpoint; empty = off


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: the HTTP face (SPEC section 8): Segment-compatible ingest, JSON API, console."""

    listen: str = ""  # "host:port"; empty = HTTP off
    write_keys: tuple[str, ...] = ()  # keys accepted by the ingest endpoints; none = ingest refused
    token: str = ""  # Bearer token for /api/; required when listen is not a loopback address
    client_timeout: float = 10.0  # seconds a client may take to send a request's headers, or its body


@dataclass(frozen=True)
class RayConfig:
    """``[ray]``: the Ray cluster to start or join and the size of the actor pools."""

    address: str = ""  # "" start a local Ray; "auto" or "host:port" join
    shards: int = 2
    num_cpus: int = 0  # for a local Ray; 0 = Ray's own default


@dataclass(frozen=True)
class AggregateConfig:
    """``[aggregates.NAME]``: one value computed per user over their track events."""

    name: str
    kind: str
    event: str = "*"
    of: str | None = None  # expression over the event (props.NAME...)
    where: str | None = None  # filter expression over the event
    within: float | None = None  # sliding window in seconds; None = lifetime


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
    rate: float | None = None  # messages per second; None = unlimited
    timeout: float = 10.0  # seconds per delivery attempt
    path: Path | None = None  # file
    url: str = ""  # webhook, http
    method: str = "POST"  # http
    headers: tuple[tuple[str, str], ...] = ()  # webhook, http
    body: tuple[tuple[str, str], ...] = ()  # http: provider field -> template
    host: str = ""  # smtp
    port: int = 25  # smtp
    username: str = ""  # smtp
    password: str = ""  # smtp
    starttls: bool = False  # smtp
    ssl: bool = False  # smtp (implicit TLS)
    sender: str = ""  # smtp: From address
    to: str = ""  # recipient template; default by kind (see DEFAULT_TO)
    max_attempts: int = 8  # delivery attempts before a message is dead-lettered
    backoff: float = 1.0  # seconds before the first retry; doubles per attempt


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
    http: HttpConfig = field(default_factory=HttpConfig)
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
