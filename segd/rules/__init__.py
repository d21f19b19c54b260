"""The rule language (SPEC section 4, "Expressions"): syntax, checking, compilation, timing.

``syntax`` tokenizes and parses into an AST; ``compiler`` checks it and compiles it to
closures; ``timing`` and ``linear`` find when a time-dependent value next changes;
``order`` orders segments so that ``segment('x')`` sees x's final membership.
"""

from segd.rules.compiler import (
    MAX_DEPTH,
    WHEN,
    WHERE,
    Compiled,
    Context,
    Names,
    compile_expr,
)
from segd.rules.order import segment_order
from segd.rules.syntax import (
    FUNCTIONS,
    KEYWORDS,
    MAX_NESTING,
    Aggregate,
    Binary,
    Call,
    EventName,
    ListExpr,
    Literal,
    Node,
    Path,
    RuleError,
    Unary,
    parse,
)

__all__ = [
    "FUNCTIONS",
    "KEYWORDS",
    "MAX_DEPTH",
    "MAX_NESTING",
    "WHEN",
    "WHERE",
    "Aggregate",
    "Binary",
    "Call",
    "Compiled",
    "Context",
    "EventName",
    "ListExpr",
    "Literal",
    "Names",
    "Node",
    "Path",
    "RuleError",
    "Unary",
    "compile_expr",
    "parse",
    "segment_order",
]
