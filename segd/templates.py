"""Message templates: ``"Hi {traits.first_name}, {views_electronics_7d} views"``.

A template is text with ``{name}`` placeholders, ``{{`` and ``}}`` for literal braces. A name
is a dotted path looked up in the message's values (a plain dict): ``traits.X`` (a profile
trait; ``traits.address.city`` goes into a map trait), ``aggregates.X`` or just ``X`` (an
aggregate), and ``user``, ``campaign``, ``segment``, ``variant``, ``channel``, ``id``.

Rendering is a dictionary walk, never ``str.format`` or ``eval``: a template can reach nothing
but the user's data. A missing value renders empty; nothing a user sends can make rendering
fail. Templates are parsed when the config loads, so a syntax error or an unknown name is a
config error naming the campaign.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Names every message template may use besides ``traits.*`` and aggregates.
MESSAGE_NAMES = frozenset({"user", "campaign", "segment", "variant", "channel", "id"})
#: Extra names for a channel's ``to`` and ``body`` field templates (rendered after the message).
CHANNEL_NAMES = MESSAGE_NAMES | {"body", "subject", "to"}

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


class TemplateError(ValueError):
    """A template that cannot be parsed; the message gives the position and what was expected."""


class Template:
    """A parsed template. ``paths`` lists each placeholder's dotted path, in order."""

    __slots__ = ("text", "_parts", "paths")

    def __init__(self, text: str) -> None:
        self.text = text
        parts: list[str | tuple[str, ...]] = []
        pos = 0
        for m in _TOKEN.finditer(text):
            if m.start() > pos:
                parts.append(text[pos : m.start()])
            token = m.group(0)
            if token in ("{{", "}}"):
                parts.append(token[0])
            elif token in ("{", "}"):
                raise TemplateError(
                    f"position {m.start() + 1}: unmatched {token!r} (write {{{{ or }}}} for a literal brace)"
                )
            else:
                name = m.group(1).strip()
                if not _PATH.fullmatch(name):
                    raise TemplateError(
                        f"position {m.start() + 1}: {{{m.group(1)}}} is not a name "
                        "(expected e.g. {traits.first_name} or {an_aggregate})"
                    )
                parts.append(tuple(name.split(".")))
            pos = m.end()
        if pos < len(text):
            parts.append(text[pos:])
        self._parts = tuple(parts)
        self.paths = tuple(".".join(p) for p in parts if isinstance(p, tuple))

    def render(self, values: Mapping[str, Any]) -> str:
        """The text with each placeholder replaced by its value; a missing one is empty."""
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = values
            for key in part:
                value = value.get(key) if isinstance(value, Mapping) else None
                if value is None:
                    break
            if value is None and len(part) == 1:
                aggs = values.get("aggregates")
                value = aggs.get(part[0]) if isinstance(aggs, Mapping) else None
            out.append(show(value))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def show(value: Any) -> str:
    """A value as message text: None is empty, whole floats lose their ``.0``, lists are
    comma-separated, maps are JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(round(value, 6))
    if isinstance(value, (list, tuple)):
        return ", ".join(show(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def check(text: str, aggregates: Iterable[str], names: frozenset[str] = MESSAGE_NAMES) -> list[str]:
    """Problems with a template: syntax, or names that can never have a value."""
    try:
        tpl = Template(text)
    except TemplateError as exc:
        return [str(exc)]
    aggs = set(aggregates)
    problems = []
    for path in tpl.paths:
        head, _, rest = path.partition(".")
        if head == "traits" and rest:
            continue
        if head == "aggregates" and rest in aggs:
            continue
        if not rest and (head in names or head in aggs):
            continue
        problems.append(
            f"{{{path}}} names nothing (expected traits.NAME, an aggregate "
            f"({', '.join(sorted(aggs)) or 'none defined'}) or one of {', '.join(sorted(names))})"
        )
    return problems
