"""The rule language's operators as Python functions, one table for every engine: the
closure compiler (``compiler``), the closed forms of time (``linear``) and the generated
code (``actors.compiled``)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

#: ``a op b`` for each comparison of SPEC section 4.
COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: The four ordering comparisons (numbers with numbers, strings with strings).
ORDER: dict[str, Callable[[Any, Any], Any]] = {op: COMPARE[op] for op in ("<", "<=", ">", ">=")}
#: ``a op b`` is ``b MIRROR[op] a``.
MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
#: The arithmetic operators.
ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}
#: The symbol of each comparison function.
SYMBOL = {fn: op for op, fn in COMPARE.items()}
