"""Config sections for segmentation: ``[aggregates.*]`` and ``[segments.*]``.

Aggregate and segment names are used bare in expressions (``views_7d >= 3``,
``segment('lapsed')``), so they must be identifiers, must not be words of the rule language,
and must not collide with each other. Expressions stay text here; ``actors.user.Model``
compiles them. Problems are recorded on the reader in the order the keys are checked.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from segd.config.model import (
    AGGREGATE_KINDS,
    RESERVED_NAMES,
    VALUE_KINDS,
    AggregateConfig,
    SegmentConfig,
)
from segd.config.values import closest, parse_duration

if TYPE_CHECKING:
    # Only for annotations: reader.py imports this module to assemble the Config.
    from segd.config.reader import Entry, Raw, Reader

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def read_aggregates(reader: Reader, raw: Raw) -> tuple[AggregateConfig, ...]:
    """Every ``[aggregates.NAME]`` of the document, in file order, minus the unusable ones."""
    found = (read_aggregate(reader, entry) for entry in reader.tables(raw, "aggregates"))
    return tuple(a for a in found if a)


def read_aggregate(reader: Reader, entry: Entry) -> AggregateConfig | None:
    """One aggregate; None when its ``kind`` is missing or unknown (nothing to compute)."""
    name, t, raw = entry.name, entry.table, entry.body
    reader.unknown(t, raw, {"kind", "event", "of", "where", "within"})
    check_name(reader, t, name, "an aggregate")
    kinds = ", ".join(AGGREGATE_KINDS)
    kind = reader.take(t, raw, "kind", str, None, f"one of {kinds}", required=True)
    if kind is not None and kind not in AGGREGATE_KINDS:
        hint = closest(kind, set(AGGREGATE_KINDS))
        reader.error(
            t,
            f"'kind' must be one of {kinds}, got {kind!r}" + (f" (did you mean '{hint}'?)" if hint else ""),
        )
        kind = None
    event = reader.take(t, raw, "event", str, "*", "an event name or '*'")
    if not event:
        reader.error(t, "'event' must be an event name or '*', got ''")
    of = reader.take(t, raw, "of", str, None, "an expression such as 'props.price'")
    where = reader.take(t, raw, "where", str, None, "an expression")
    within = reader.convert(t, raw, "within", parse_duration, None)
    if kind in VALUE_KINDS and of is None:
        reader.error(
            t, f"missing required key 'of' (kind '{kind}' aggregates a value, e.g. of = 'props.price')"
        )
    if kind is not None and kind not in VALUE_KINDS and of is not None:
        reader.error(t, f"'of' is not used by kind '{kind}' (it only counts or times events)")
    if kind is None:
        return None
    return AggregateConfig(name=name, kind=kind, event=event, of=of, where=where, within=within)


def read_segments(reader: Reader, raw: Raw) -> tuple[SegmentConfig, ...]:
    """Every ``[segments.NAME]`` of the document, in file order, minus those without a rule."""
    found = (read_segment(reader, entry) for entry in reader.tables(raw, "segments"))
    return tuple(s for s in found if s)


def read_segment(reader: Reader, entry: Entry) -> SegmentConfig | None:
    """One segment; None when ``when`` is missing. An empty ``when`` never matches."""
    name, t, raw = entry.name, entry.table, entry.body
    reader.unknown(t, raw, {"when", "description", "group", "priority"})
    check_name(reader, t, name, "a segment")
    when = reader.take(t, raw, "when", str, None, "an expression", required=True)
    # The other keys are checked even without a rule, so all their problems show at once.
    seg = SegmentConfig(
        name=name,
        when=when or "false",
        description=reader.take(t, raw, "description", str, "", "a string"),
        group=reader.take(t, raw, "group", str, "", "a group name or ''"),
        priority=reader.take(t, raw, "priority", int, 0, "an integer"),
    )
    return seg if when is not None else None


def check_name(reader: Reader, table: str, name: str, what: str) -> None:
    """A problem unless ``name`` can be written bare in an expression; ``what`` is
    "an aggregate" or "a segment"."""
    if not _NAME.match(name):
        reader.error(
            table,
            f"{what} name must be letters, digits and '_' not starting with a digit "
            f"(it is used in expressions), got {name!r}",
        )
    elif name in RESERVED_NAMES:
        reader.error(table, f"{name!r} is a reserved word of the rule language and cannot name {what}")


def check_names_differ(
    reader: Reader, aggregates: tuple[AggregateConfig, ...], segments: tuple[SegmentConfig, ...]
) -> None:
    """One problem per segment named like an aggregate (a bare name must mean one thing),
    reported on the segment, in name order."""
    overlap = {a.name for a in aggregates} & {s.name for s in segments}
    for name in sorted(overlap):
        reader.error(f"segments.{name}", f"name {name!r} is also an aggregate; names must differ")
