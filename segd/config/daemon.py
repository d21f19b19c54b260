"""Config sections for the process itself: ``[daemon]``, ``[http]`` and ``[ray]``.

Each ``read_*`` function takes the section's raw table, records every problem on the reader,
and returns the section's dataclass with defaults standing in for bad values. The order in
which keys are checked is the order their problems are reported.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from segd.config.model import DaemonConfig, HttpConfig, RayConfig
from segd.config.values import parse_address, parse_duration, parse_size

if TYPE_CHECKING:
    # Only for annotations: reader.py imports this module to assemble the Config.
    from segd.config.reader import Raw, Reader


def read_daemon(reader: Reader, raw: Raw) -> DaemonConfig:
    """``[daemon]``; ``data_dir`` and ``socket`` are resolved against the config's directory."""
    t, d = "daemon", DaemonConfig()
    reader.unknown(t, raw, set(DaemonConfig.__dataclass_fields__))
    data_dir = reader.take(t, raw, "data_dir", str, None, "a directory path")
    socket = reader.take(t, raw, "socket", str, None, "a socket file path")
    tcp = reader.take(t, raw, "tcp", str, d.tcp, "'host:port' or empty")
    token = reader.take(t, raw, "token", str, d.token, "a string")
    clock = reader.take(t, raw, "clock", str, d.clock, "'wall' or 'event'")
    if clock not in ("wall", "event"):
        reader.error(t, f"'clock' must be 'wall' or 'event', got {clock!r}")
    if tcp:
        check_address(reader, t, "tcp", tcp, "127.0.0.1:7433")
        if not token:
            reader.error(t, "'token' is required when 'tcp' is set (clients authenticate with it)")
    synchronous = reader.take(t, raw, "synchronous", str, d.synchronous, "'full' or 'normal'")
    if synchronous not in ("full", "normal"):
        reader.error(t, f"'synchronous' must be 'full' or 'normal', got {synchronous!r}")
    metrics = reader.take(t, raw, "metrics", str, d.metrics, "'host:port' or empty")
    if metrics:
        # Port 0 asks the OS for a free port (MetricsServer supports it; the tests use it).
        check_address(reader, t, "metrics", metrics, "127.0.0.1:9464", allow_port_zero=True)
    return DaemonConfig(
        data_dir=reader.path(data_dir) if data_dir else reader.base / d.data_dir,
        socket=reader.path(socket) if socket else reader.base / d.socket,
        tcp=tcp,
        token=token,
        clock=clock,
        tick=reader.convert(t, raw, "tick", parse_duration, d.tick),
        max_frame=reader.convert(t, raw, "max_frame", parse_size, d.max_frame),
        synchronous=synchronous,
        max_pending=reader.positive_int(t, raw, "max_pending", d.max_pending),
        max_connections=reader.positive_int(t, raw, "max_connections", d.max_connections),
        backlog=reader.positive_int(t, raw, "backlog", d.backlog),
        snapshot_every=reader.positive_int(t, raw, "snapshot_every", d.snapshot_every),
        metrics=metrics,
    )


def check_address(
    reader: Reader, table: str, key: str, value: str, example: str, *, allow_port_zero: bool = False
) -> None:
    """A problem unless ``value`` is a valid ``host:port`` (see ``parse_address``).

    The value stays text in the config; the daemon parses it again where it binds.
    """
    try:
        parse_address(value, allow_port_zero=allow_port_zero)
    except ValueError:
        # The parser's own wording is for runtime callers; this problem's wording is
        # what `segd check` has always printed.
        reader.error(table, f"'{key}' must be 'host:port' such as '{example}', got {value!r}")


def read_http(reader: Reader, raw: Raw) -> HttpConfig:
    """``[http]``: ``listen`` empty turns HTTP off; a ``listen`` that is not a loopback address
    needs a ``token`` (the JSON API would otherwise be open to the network). ``write_keys``
    are non-empty strings; with none, ingest over HTTP answers 401 (never open)."""
    t, d = "http", HttpConfig()
    reader.unknown(t, raw, set(HttpConfig.__dataclass_fields__))
    listen = reader.take(t, raw, "listen", str, d.listen, "'host:port' or empty")
    token = reader.take(t, raw, "token", str, d.token, "a string")
    if listen:
        # Port 0 asks the OS for a free port (`segd demo` and the tests use it).
        check_address(reader, t, "listen", listen, "127.0.0.1:8080", allow_port_zero=True)
        if not token and not _is_loopback(listen):
            reader.error(
                t,
                f"'token' is required when 'listen' is not a loopback address (got {listen!r}): "
                "the JSON API would be open to the network",
            )
    keys = reader.take(t, raw, "write_keys", list, [], "a list of strings")
    write_keys: list[str] = []
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not key:
            reader.error(t, f"'write_keys[{i}]' must be a non-empty string, got {key!r}")
        else:
            write_keys.append(key)
    return HttpConfig(
        listen=listen,
        write_keys=tuple(write_keys),
        token=token,
        client_timeout=reader.convert(t, raw, "client_timeout", parse_duration, d.client_timeout),
    )


def _is_loopback(address: str) -> bool:
    """Whether ``host:port`` binds only the loopback interface (``localhost`` counts)."""
    try:
        host = parse_address(address, allow_port_zero=True).host
    except ValueError:
        return True  # already reported as a bad address; no second problem for it
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def read_ray(reader: Reader, raw: Raw) -> RayConfig:
    """``[ray]``: ``num_cpus`` 0 means Ray's own default; ``shards`` must be positive."""
    t, d = "ray", RayConfig()
    reader.unknown(t, raw, set(RayConfig.__dataclass_fields__))
    num_cpus = reader.take(t, raw, "num_cpus", int, d.num_cpus, "an integer (0 = Ray's default)")
    if num_cpus < 0:
        reader.error(t, f"'num_cpus' must be 0 or more, got {num_cpus}")
    return RayConfig(
        address=reader.take(t, raw, "address", str, d.address, "'', 'auto' or 'host:port'"),
        shards=reader.positive_int(t, raw, "shards", d.shards),
        num_cpus=num_cpus,
    )
