"""config.toml -> frozen dataclasses: ``load_config``, ``parse_config`` and their ``Reader``.

Loading is strict: unknown keys, wrong types, bad durations and dangling references are all
errors, and all of them are reported together (``ConfigError.problems``), each naming the
file, the table and the key. Expressions (``when``, ``where``, ``of``) are stored as text
here; ``actors.user.Model`` compiles and checks them with ``segd.rules``.

Relative paths (``data_dir``, ``socket``, file channel ``path``) are resolved against the
directory of the config file, so ``segd --config /etc/segd/config.toml run`` does not depend
on the working directory. With no config file, the embedded defaults apply and paths are
relative to the working directory.

``Reader`` is the problem collector; the tables are read by plain functions over it in
``daemon.py``, ``segments.py`` and ``dispatch.py``, and ``parse_config`` calls them in order.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, overload

from segd.config.daemon import read_daemon, read_http, read_ray
from segd.config.dispatch import check_dispatch, read_campaigns, read_channels, read_throttle
from segd.config.model import Config
from segd.config.segments import check_names_differ, read_aggregates, read_segments
from segd.config.values import closest, show
from segd.errors import ConfigError

_TABLES = {"daemon", "http", "ray", "aggregates", "segments", "channels", "campaigns", "throttle"}


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


def parse_config(
    raw: dict[str, Any], *, label: str = "<config>", base: Path = Path("."), path: Path | None = None
) -> Config:
    """Validate an already-parsed TOML document; see ``load_config``.

    ``label`` names the file in problems, ``base`` resolves relative paths, ``path`` is
    recorded as ``Config.path``. Raises ConfigError listing every problem, in the order the
    tables appear below (daemon, http, ray, aggregates, segments, channels, campaigns, throttle),
    then the cross-table checks.
    """
    reader = Reader(label, base)
    reader.unknown("-", raw, _TABLES)
    daemon = read_daemon(reader, reader.section(raw, "daemon"))
    http = read_http(reader, reader.section(raw, "http"))
    ray = read_ray(reader, reader.section(raw, "ray"))
    aggregates = read_aggregates(reader, raw)
    segments = read_segments(reader, raw)
    channels = read_channels(reader, raw)
    campaigns = read_campaigns(reader, raw)
    throttle = read_throttle(reader, reader.section(raw, "throttle"))
    # Last, because they need every table's names; a table dropped above counts as undefined.
    check_names_differ(reader, aggregates, segments)
    check_dispatch(reader, {a.name for a in aggregates}, {s.name for s in segments}, channels, campaigns)
    if reader.problems:
        raise ConfigError(reader.problems)
    return Config(
        path=path,
        daemon=daemon,
        http=http,
        ray=ray,
        aggregates=aggregates,
        segments=segments,
        channels=channels,
        campaigns=campaigns,
        throttle=throttle,
    )


Raw = Mapping[str, object]
"""A TOML table as ``tomllib`` gives it; every value is checked before use."""

T = TypeVar("T")
U = TypeVar("U")
D = TypeVar("D")


class Entry(NamedTuple):
    """One ``[key.NAME]`` table: its ``name``, the ``table`` label problems use, its ``body``."""

    name: str
    table: str
    body: Raw


class Reader:
    """Reads one config document and collects problems instead of stopping at the first.

    A getter that finds a problem records it with ``error`` and returns its default, so each
    section reader carries on and every problem is reported at once. ``problems`` keeps the
    order in which they were found: ``segd check`` prints them in that order and tests compare
    it. Relative paths are resolved against ``base``; ``label`` names the file in problems.
    """

    def __init__(self, label: str, base: Path) -> None:
        self.label = label
        self.base = base
        self.problems: list[tuple[str, str, str]] = []

    def error(self, table: str, message: str) -> None:
        """Record a problem in ``table`` (``"-"`` for the document itself)."""
        self.problems.append((self.label, table, message))

    # --- typed getters: each records a problem and returns the default on failure ---

    @overload
    def take(
        self, table: str, raw: Raw, key: str, kind: type[T], default: D, what: str, required: bool = False
    ) -> T | D: ...

    @overload
    def take(
        self,
        table: str,
        raw: Raw,
        key: str,
        kind: tuple[type[T], type[U]],
        default: D,
        what: str,
        required: bool = False,
    ) -> T | U | D: ...

    def take(
        self,
        table: str,
        raw: Raw,
        key: str,
        kind: type[Any] | tuple[type[Any], ...],
        default: object,
        what: str,
        required: bool = False,
    ) -> Any:
        """``raw[key]`` if it is an instance of ``kind``, else ``default``.

        A missing key is a problem only when ``required``. ``what`` describes the expected
        value in the message. TOML booleans are not integers here: ``true`` passes only when
        ``kind`` names ``bool``.
        """
        if key not in raw:
            if required:
                self.error(table, f"missing required key '{key}' ({what})")
            return default
        value = raw[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            self.error(table, f"'{key}' must be {what}, got {show(value)}")
            return default
        return value

    def convert(
        self,
        table: str,
        raw: Raw,
        key: str,
        parse: Callable[[object], T],
        default: D,
        required: bool = False,
        what: str = "",
    ) -> T | D:
        """``parse(raw[key])``, or ``default`` when the key is missing or ``parse`` raises
        ValueError (whose message becomes the problem). ``what`` is used only when required."""
        if key not in raw:
            if required:
                self.error(table, f"missing required key '{key}' ({what})")
            return default
        try:
            return parse(raw[key])
        except ValueError as exc:
            self.error(table, f"'{key}': {exc}")
            return default

    def positive_int(self, table: str, raw: Raw, key: str, default: int) -> int:
        """An integer > 0 at ``raw[key]``, else ``default``."""
        value = self.take(table, raw, key, int, default, "a positive integer")
        if value <= 0:
            self.error(table, f"'{key}' must be a positive integer, got {value}")
            return default
        return value

    def unknown(self, table: str, raw: Raw, allowed: set[str]) -> None:
        """One problem per key of ``raw`` not in ``allowed``, in file order, with a hint."""
        for key in raw:
            if key not in allowed:
                hint = closest(key, allowed)
                self.error(
                    table,
                    f"unknown key '{key}'"
                    + (f" (did you mean '{hint}'?)" if hint else "")
                    + f"; allowed: {', '.join(sorted(allowed))}",
                )

    def section(self, raw: Raw, key: str) -> Raw:
        """The table ``[key]`` of the document; empty when absent or not a table."""
        value = raw.get(key, {})
        if not isinstance(value, dict):
            self.error(key, f"'{key}' must be a table, got {show(value)}")
            return {}
        return value

    def tables(self, raw: Raw, key: str) -> list[Entry]:
        """The ``[key.NAME]`` tables in file order; a body that is not a table is a problem
        and left out. All of those problems are recorded before any entry is read."""
        section = raw.get(key, {})
        if not isinstance(section, dict):
            self.error(key, f"'{key}' must be a table of tables, got {show(section)}")
            return []
        out = []
        for name, body in section.items():
            table = f"{key}.{name}"
            if not isinstance(body, dict):
                self.error(table, f"must be a table, got {show(body)}")
                continue
            out.append(Entry(name, table, body))
        return out

    def path(self, value: str) -> Path:
        """``value`` as a path, relative ones resolved against the config file's directory."""
        p = Path(value)
        return p if p.is_absolute() else self.base / p
