"""How the command line reads times and shows query answers to a person (``segd.cli``).

Pure functions: text in, values out (``parse_time``, ``parse_step``), and answer maps of
SPEC section 2 in, lines of text out. ``--json`` output bypasses all of this.
"""

from __future__ import annotations

import argparse
import math
import re
from datetime import UTC, datetime
from typing import Any

from segd.config import parse_duration

BAR_WIDTH = 40  # characters of the longest bar in ``sizes``


def parse_time(text: str) -> float:
    """A time for ``--at``/``--since``/``--until``: seconds since the epoch (``1700000000.5``)
    or ISO 8601 (``2024-05-01``, ``2024-05-01T12:00:00+02:00``; UTC when no offset is given).

    Raises argparse.ArgumentTypeError saying what was expected.
    """
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected seconds since the epoch or an ISO 8601 time such as 2024-05-01T12:00:00Z, got {text!r}"
            ) from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite time, got {text!r}")
    return value


def parse_step(text: str) -> float:
    """A ``--step``: a duration (``30s``, ``1h``, ``1d``) or a number of seconds."""
    try:
        return parse_duration(float(text) if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text) else text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def iso(t: float) -> str:
    """``t`` (seconds since the epoch) as ISO 8601 UTC, with fractions only when it has any."""
    try:
        when = datetime.fromtimestamp(t, UTC)
    except (OverflowError, ValueError, OSError):
        return repr(t)  # beyond datetime's years 1..9999: the number itself
    text = when.isoformat(timespec="microseconds" if when.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def members_text(name: str, page: dict[str, Any], at: float | None) -> str:
    """One page of ``segment``: the size, the members, the cursor for the next page."""
    when = f" at {iso(at)}" if at is not None else ""
    lines = [f"{name}{when}: {page['size']} members", *page["members"]]
    if page["next"]:
        lines.append(f"(more: --after {page['next']})")
    return "\n".join(lines)


def history_text(transitions: list[dict[str, Any]]) -> str:
    """One line per transition: time, kind, segment, user, seq."""
    if not transitions:
        return "no transitions"
    seg = max(len(t["segment"]) for t in transitions)
    return "\n".join(
        f"{iso(t['at'])}  {t['kind']:<5}  {t['segment']:<{seg}}  {t['user']}  (seq {t['seq']})"
        for t in transitions
    )


def sizes_text(points: list[list[Any]]) -> str:
    """One line per point: time, size and a bar scaled to the largest size."""
    top = max((size for _, size in points), default=0)
    width = len(f"{top:,}")
    return "\n".join(
        f"{iso(t)}  {size:>{width},}  {'█' * round(BAR_WIDTH * size / top) if top else ''}"
        for t, size in points
    )


def preview_text(answer: dict[str, Any]) -> str:
    """The size, the sample and the overlap with each segment."""
    n = answer["size"]
    lines = [f"{n:,} user{'s' * (n != 1)} match", f"sample: {', '.join(answer['sample']) or '-'}"]
    if answer["overlap"]:
        width = max(map(len, answer["overlap"]))
        lines.append("overlap with segments:")
        lines += [f"  {name:<{width}}  {count:>9,}" for name, count in sorted(answer["overlap"].items())]
    return "\n".join(lines)


def caret(expression: str, message: str) -> str | None:
    """The expression with a ``^`` under the column a ``preview`` error names, if it names one."""
    m = re.search(r"at column (\d+)", message)
    if m is None or "\n" in expression:
        return None
    return f"  {expression}\n  {' ' * (int(m.group(1)) - 1)}^"
