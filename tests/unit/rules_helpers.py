"""Shared by the test_rules_*.py example tests: the names every example may use, and the
shortest ways to compile and evaluate an expression."""

from __future__ import annotations

from typing import Any

from segd.rules import WHERE, Compiled, Context, Names, compile_expr

NAMES = Names(
    aggregates=frozenset({"views_7d", "purchases", "last_seen", "x", "y", "big"}),
    segments=frozenset({"vip", "lapsed"}),
)


def comp(text: str, scope: str = WHERE) -> Compiled:
    """Compile ``text`` against NAMES, as if it were the ``when`` of ``[segments.s]``."""
    return compile_expr(text, scope=scope, names=NAMES, table="segments.s", key="when")


def ev(text: str, scope: str = WHERE, **ctx: Any) -> Any:
    """Compile ``text`` and evaluate it in ``Context(**ctx)``."""
    return comp(text, scope).fn(Context(**ctx))
