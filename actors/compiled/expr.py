"""Rule expressions as Python source, from the checked syntax tree (SPEC section 4).

``Emitter.expr(node)`` turns an AST of ``segd.rules`` into the text of one Python expression
with the reference semantics of ``segd.rules.compiler`` (null is false in every comparison,
numbers are never booleans, ``==`` by type, arithmetic on mismatches is null...). What the
text may contain is fixed here, not by the config: operators, parentheses, the names of this
module's helpers, segd's own locals (``now``, ``members``, ``props``...), bit masks computed by
segd, and names ``_k0``, ``_k1``... bound to the config's literals and names *by reference* in
the generated function's globals. No string, number or name of the user's text is ever pasted
into the source; the tests check that hostile names and literals never appear in it.

The ``_`` helpers below are the run-time semantics the emitted text calls where an inline form
would be longer than a call; each mirrors the reference closure of the same construct.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.compiled.traits import trait
from segd.rules import Aggregate, Binary, Call, EventName, ListExpr, Literal, Node, Path, Unary
from segd.rules.compiler import _eq, _in, _not_in
from segd.rules.ops import ARITH, MIRROR, ORDER

__all__ = ["HELPERS", "Emitter", "Scope"]

_NUMS = (int, float)
_SEQS = (list, tuple)
_SCALARS = (str, int, float)
_STRS = (str,)
_SECONDS = {"days_since": 86400.0, "hours_since": 3600.0}


# ---------------------------------------------------------------------- run-time helpers


def _dig(v: Any, rest: tuple[str, ...]) -> Any:
    """``a.b.c``: look into nested maps (``_path_fn``'s nested)."""
    for k in rest:
        if not isinstance(v, dict):
            return None
        v = v.get(k)
    return v


def _since(now: float, t: Any, unit: float) -> Any:
    """``days_since`` / ``hours_since`` (``_since_fn``)."""
    if type(t) in _NUMS:
        try:
            return (now - t) / unit
        except OverflowError:
            return None
    return None


def _neg(v: Any) -> Any:
    return -v if type(v) in _NUMS else None


def _arith(op: str) -> Callable[[Any, Any], Any]:
    fop = ARITH[op]

    def arith(a: Any, b: Any) -> Any:  # _arith_fn
        ta, tb = type(a), type(b)
        if ta in _NUMS and tb in _NUMS:
            if op == "/" and b == 0:
                return None
            try:
                return fop(a, b)
            except OverflowError:
                return None
        if op == "+" and ta is str and tb is str:
            return a + b
        return None

    arith.__name__ = f"arith_{ {'+': 'add', '-': 'sub', '*': 'mul', '/': 'div'}[op] }"
    return arith


def _ne(a: Any, b: Any) -> bool:
    return a is not None and b is not None and not _eq(a, b)


def _ordered(op: str) -> Callable[[Any, Any], bool]:
    cmp = ORDER[op]

    def order(a: Any, b: Any) -> bool:
        ta, tb = type(a), type(b)
        return bool(((ta in _NUMS and tb in _NUMS) or (ta is str and tb is str)) and cmp(a, b))

    return order


#: What emitted expressions may call or read, by the names they use.
HELPERS: dict[str, Any] = {
    "_trait": trait,
    "_dig": _dig,
    "_since": _since,
    "_neg": _neg,
    "_add": _arith("+"),
    "_sub": _arith("-"),
    "_mul": _arith("*"),
    "_div": _arith("/"),
    "_eq": _eq,
    "_ne": _ne,
    "_lt": _ordered("<"),
    "_le": _ordered("<="),
    "_gt": _ordered(">"),
    "_ge": _ordered(">="),
    "_in": _in,
    "_not_in": _not_in,
    "_NUMS": _NUMS,
    "_STRS": _STRS,
    "_SCALARS": _SCALARS,
}
_GENERIC = {"==": "_eq", "!=": "_ne", "<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}
_ARITH = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div"}


# ---------------------------------------------------------------------- the emitter


class Scope:
    """How an expression reads its names, as source text (set by the code generator).

    ``agg(i)`` is the text of aggregate ``i``'s value; ``traits`` the local holding the flat
    trait tuple; ``props``/``context``/``event`` the event's locals (where/of only);
    ``now`` the evaluation time; ``members`` the membership mask (when only);
    ``segment_bit(name)`` a segment's bit.
    """

    def __init__(
        self,
        agg: Callable[[str], str],
        *,
        now: str = "now",
        traits: str = "traits",
        props: str | None = None,
        context: str | None = None,
        event: str | None = None,
        members: str | None = None,
        segment_bit: Callable[[str], int] | None = None,
    ) -> None:
        self.agg = agg
        self.now = now
        self.traits = traits
        self.props = props
        self.context = context
        self.event = event
        self.members = members
        self.segment_bit = segment_bit


_NOCONST = object()


class Emitter:
    """Emits expressions into one generated module; ``consts`` are its by-reference globals."""

    def __init__(self) -> None:
        self.consts: dict[str, Any] = {}
        self._temps = 0
        self.uses_traits = False

    def const(self, value: Any) -> str:
        """A global name bound to ``value`` (never its text)."""
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def temp(self) -> str:
        self._temps += 1
        return f"_x{self._temps}"

    # ------------------------------------------------------------------

    def constant(self, node: Node) -> Any:
        """The value of a node the reference folds to a constant that the fast paths use
        (literals, negated number literals, lists of those), or ``_NOCONST``."""
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Literal):
            v = node.operand.value
            return _neg(v)
        if isinstance(node, ListExpr):
            items = [self.constant(i) for i in node.items]
            if any(i is _NOCONST for i in items):
                return _NOCONST
            return items
        return _NOCONST

    def expr(self, node: Node, s: Scope) -> str:
        """Python source for ``node``'s value in scope ``s``."""
        k = self.constant(node)
        if k is not _NOCONST:
            return self.const(k)
        match node:
            case ListExpr(items=items):
                return "[" + ", ".join(self.expr(i, s) for i in items) + "]"
            case Aggregate(name=name):
                return s.agg(name)
            case Path(root=root, path=path):
                if root == "traits":
                    self.uses_traits = True
                    get = f"_trait({s.traits}, {self.const(path[0])})"
                elif root == "context":
                    get = f"{s.context}.get({self.const(path[0])})"
                else:
                    get = f"{s.props}.get({self.const(path[0])})"
                if len(path) > 1:
                    return f"_dig({get}, {self.const(tuple(path[1:]))})"
                return get
            case EventName():
                assert s.event is not None
                return s.event
            case Call(name=name, args=args):
                return self.call(name, args, s)
            case Unary(op=op, operand=operand):
                x = self.expr(operand, s)
                return f"(not {x})" if op == "not" else f"_neg({x})"
            case Binary(op=op, left=left, right=right):
                return self.binary(op, left, right, s)
        raise TypeError(f"not a rules AST node: {node!r}")  # pragma: no cover - a bug

    def call(self, name: str, args: tuple[Node, ...], s: Scope) -> str:
        if name == "now":
            return s.now
        if name == "segment":
            assert s.segment_bit is not None and isinstance(args[0], Literal)
            return f"(True if {s.members} & {s.segment_bit(args[0].value)} else False)"
        x = self.expr(args[0], s)
        if name == "exists":
            return f"({x} is not None)"
        # a float inline (float arithmetic cannot overflow into an error), else the helper
        t, unit = self.temp(), self.const(_SECONDS[name])
        return f"(({s.now} - {t}) / {unit} if type({t} := {x}) is float else _since({s.now}, {t}, {unit}))"

    def binary(self, op: str, left: Node, right: Node, s: Scope) -> str:
        if op in ("and", "or"):
            return f"(True if ({self.expr(left, s)} {op} {self.expr(right, s)}) else False)"
        if op in _ARITH:
            return f"{_ARITH[op]}({self.expr(left, s)}, {self.expr(right, s)})"
        if op in ("in", "not in"):
            return self.member(op == "not in", left, right, s)
        kl, kr = self.constant(left), self.constant(right)
        if _fast(kr):
            return self.compare_const(op, self.expr(left, s), kr)
        if _fast(kl):
            return self.compare_const(MIRROR[op], self.expr(right, s), kl)
        return f"{_GENERIC[op]}({self.expr(left, s)}, {self.expr(right, s)})"

    def compare_const(self, op: str, x: str, k: Any) -> str:
        """``x op k`` for a constant number or string ``k`` (``_compare_fn``'s fast paths)."""
        kt = "_NUMS" if type(k) in _NUMS else "_STRS"
        kn, t = self.const(k), self.temp()
        if op == "!=":
            return f"(({t} := {x}) is not None and not (type({t}) in {kt} and {t} == {kn}))"
        return f"(type({t} := {x}) in {kt} and {t} {op} {kn})"

    def member(self, negate: bool, left: Node, right: Node, s: Scope) -> str:
        k = self.constant(right)
        if type(k) is list and all(type(e) is str or (type(e) in _NUMS and e == e) for e in k):
            kn, t, x = self.const(frozenset(k)), self.temp(), self.expr(left, s)
            if negate:
                return f"(({t} := {x}) is not None and not (type({t}) in _SCALARS and {t} in {kn}))"
            return f"(type({t} := {x}) in _SCALARS and {t} in {kn})"
        fn = "_not_in" if negate else "_in"
        return f"{fn}({self.expr(left, s)}, {self.expr(right, s)})"


def _fast(k: Any) -> bool:
    return type(k) in _NUMS or type(k) is str
