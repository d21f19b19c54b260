"""The rule language (SPEC section 4, "Expressions"): parse -> check -> compile to closures.

``compile_expr`` turns the text of a ``when``, ``where`` or ``of`` expression into a
``Compiled``: a Python closure over a ``Context`` plus what the expression references, and
``next_change``, the exact time at which the value next changes while only time passes.
Nothing is ever handed to Python's eval; evaluation never walks the AST. The syntax (tokens,
AST, parser, ``RuleError``) lives in ``segd.rules.syntax``, the next_change analysis in
``segd.rules.timing``; ``segd.rules`` re-exports the public names of all of them.

Semantics, exactly (the unit tests hold a reference interpreter to them):

- null (None) is a missing trait/property or a null aggregate. Every comparison with null on
  either side is false. Numbers are int and float, never bool (``true == 1`` is false).
- ``==`` compares numbers with numbers, strings with strings, booleans with booleans, lists
  element-wise by the same rule, anything else only with its own type; ``!=`` between two
  non-null values is the negation of ``==``. ``< <= > >=`` order numbers or strings only.
- ``x in L``: some element of the list L equals x, or x is a substring of the string L.
  ``x not in L`` is false if x or L is null or L is neither list nor string.
- ``+ - * /`` on numbers, ``+`` also on two strings; anything else, or ``/`` by zero, is null.
- ``and``/``or``/``not`` use truthiness (null is false), short-circuit and return booleans.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from segd.rules import linear as rl
from segd.rules import timing as rt
from segd.rules.forms import Fn, FormFn, NextChange
from segd.rules.ops import ARITH, COMPARE, MIRROR, ORDER
from segd.rules.syntax import (
    FUNCTIONS,
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
    describe_node,
    known_names,
    parse,
)
from segd.rules.timing import Part

WHEN = "when"
WHERE = "where"  # also the scope of ``of`` expressions

#: Nesting limit of the AST: keeps compiling and evaluating far from Python's recursion limit.
MAX_DEPTH = 200

_NUMS = (int, float)
_SEQS = (list, tuple)
_SCALARS = (str, int, float)
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SECONDS = {"days_since": 86400.0, "hours_since": 3600.0}


@dataclass(frozen=True)
class Names:
    """What a checked expression may reference: aggregate and segment names."""

    aggregates: frozenset[str]
    segments: frozenset[str]


class Context:
    """What an expression is evaluated against.

    ``aggs[name]`` must exist for every aggregate the expression references (it may be a
    lazy Mapping); a missing trait, property or context key is null. ``props``, ``context``
    and ``event`` are None outside event (``where``/``of``) evaluation. ``segments`` holds
    the user's current segments.
    """

    __slots__ = ("now", "aggs", "traits", "props", "context", "event", "segments")

    def __init__(
        self,
        now: float = 0.0,
        aggs: Mapping[str, Any] = _EMPTY,
        traits: Mapping[str, Any] = _EMPTY,
        props: Mapping[str, Any] | None = None,
        event: str | None = None,
        segments: Container[str] = frozenset(),
        context: Mapping[str, Any] | None = None,
    ) -> None:
        self.now = now
        self.aggs = aggs
        self.traits = traits
        self.props = props
        self.context = context
        self.event = event
        self.segments = segments


@dataclass(frozen=True)
class Compiled:
    """A checked, compiled expression.

    ``fn(ctx)`` evaluates it. ``next_change(ctx)`` is None if the value cannot change while
    only ``ctx.now`` advances (aggregates, traits, segments held fixed); otherwise a time
    ``t > ctx.now`` such that the value is the same on ``[ctx.now, t)``: exactly the first
    float at which it changes when ``now()``/``days_since``/``hours_since`` enter linearly
    or quadratically (see ``segd.rules.timing`` for the float-noise limits), and at most
    ``segd.rules.forms.FALLBACK_STEP`` seconds ahead for anything else (e.g. dividing by
    ``days_since``); then the value may not have changed at ``t`` and the caller asks again.
    ``next_change`` may set ``ctx.now`` while it runs (restored before it returns), so a
    context must not be shared with another thread during the call.
    ``traits`` holds the first path component of every ``traits.X`` referenced; ``uses_props``
    is true if ``props.*``, ``context.*`` or ``event`` is referenced, ``uses_context`` if
    ``context.*`` is.
    """

    text: str
    fn: Callable[[Context], Any]
    aggregates: frozenset[str]
    traits: frozenset[str]
    segments: frozenset[str]
    uses_props: bool
    time_dependent: bool
    next_change: Callable[[Context], float | None]
    uses_context: bool = False


# ----------------------------------------------------------------------------- semantics


def _eq(a: Any, b: Any) -> bool:
    """The language's ``==`` (see the module docstring)."""
    ta, tb = type(a), type(b)
    if ta in _NUMS:
        return tb in _NUMS and a == b
    if ta is str or ta is bool:
        return ta is tb and a == b
    if a is None or b is None:
        return False
    if ta in _SEQS:
        return tb in _SEQS and len(a) == len(b) and all(map(_eq, a, b))
    return ta is tb and a == b


def _in(x: Any, seq: Any) -> bool:
    if x is None:
        return False
    ts = type(seq)
    if ts in _SEQS:
        return any(_eq(x, e) for e in seq)
    return ts is str and type(x) is str and x in seq


def _not_in(x: Any, seq: Any) -> bool:
    if x is None or type(seq) not in _SEQS and type(seq) is not str:
        return False
    return not _in(x, seq)


_NOCONST = object()


def _compare_fn(
    op: str, fa: Fn, fb: Fn, k: Any = _NOCONST, agg: str | None = None
) -> Callable[[Context], bool]:
    """Closure for ``a op b`` (op one of == != < <= > >=); ``k`` is b's value if constant,
    ``agg`` names a if it is an aggregate."""
    if type(k) in _NUMS or type(k) is str:  # the common `count >= 3`, `traits.plan == 'pro'`
        kt = _NUMS if type(k) in _NUMS else (str,)
        if agg is not None and op != "!=":  # read the aggregate inline: one call less
            cmp = ORDER.get(op, COMPARE["=="])
            return lambda c: type(v := c.aggs[agg]) in kt and cmp(v, k)
        if op == "==":
            return lambda c: type(v := fa(c)) in kt and v == k
        if op == "!=":
            return lambda c: (v := fa(c)) is not None and not (type(v) in kt and v == k)
        cmp = ORDER[op]
        return lambda c: type(v := fa(c)) in kt and cmp(v, k)
    if op == "==":
        return lambda c: _eq(fa(c), fb(c))
    if op == "!=":
        return lambda c: (a := fa(c)) is not None and (b := fb(c)) is not None and not _eq(a, b)
    cmp = ORDER[op]

    def order(c: Context) -> bool:
        a, b = fa(c), fb(c)
        ta, tb = type(a), type(b)
        return ((ta in _NUMS and tb in _NUMS) or (ta is str and tb is str)) and cmp(a, b)

    return order


def _arith_fn(op: str, fa: Fn, fb: Fn) -> Fn:
    fop = ARITH[op]

    def arith(c: Context) -> Any:
        a, b = fa(c), fb(c)
        ta, tb = type(a), type(b)
        if ta in _NUMS and tb in _NUMS:
            if op == "/" and b == 0:
                return None
            try:
                return fop(a, b)
            except OverflowError:  # int/int or int->float conversions beyond float range
                return None
        if op == "+" and ta is str and tb is str:
            return a + b
        return None

    return arith


def _in_fn(negate: bool, fx: Fn, fl: Fn, k: Any = _NOCONST) -> Callable[[Context], bool]:
    """Closure for ``x in L`` / ``x not in L``; ``k`` is L's value if constant."""
    if type(k) in _SEQS and all(type(e) is str or (type(e) in _NUMS and e == e) for e in k):
        # strings and non-NaN numbers: once x is known to be one too, set membership is
        # exactly the language's equality (1 == 1.0, and bools are excluded by the type check)
        members = frozenset(k)
        if negate:
            return lambda c: (v := fx(c)) is not None and not (type(v) in _SCALARS and v in members)
        return lambda c: type(v := fx(c)) in _SCALARS and v in members
    if negate:
        return lambda c: _not_in(fx(c), fl(c))
    return lambda c: _in(fx(c), fl(c))


def _path_fn(root: str, path: tuple[str, ...]) -> Fn:
    first, rest = path[0], path[1:]
    if root == "traits":

        def get(c: Context) -> Any:
            return c.traits.get(first)
    elif root == "context":

        def get(c: Context) -> Any:
            return None if (x := c.context) is None else x.get(first)
    else:

        def get(c: Context) -> Any:
            return None if (p := c.props) is None else p.get(first)

    if not rest:
        return get

    def nested(c: Context) -> Any:
        v = get(c)
        for k in rest:
            if not isinstance(v, dict):
                return None
            v = v.get(k)
        return v

    return nested


def _since_fn(fx: Fn, unit: float, agg: str | None = None) -> Fn:
    """``(now - x) / unit``; ``agg`` names x if it is an aggregate (read inline: one call less)."""
    if agg is not None:

        def since_agg(c: Context) -> Any:
            t = c.aggs[agg]
            if type(t) in _NUMS:
                try:
                    return (c.now - t) / unit
                except OverflowError:
                    return None
            return None

        return since_agg

    def since(c: Context) -> Any:
        t = fx(c)
        if type(t) in _NUMS:
            try:
                return (c.now - t) / unit
            except OverflowError:
                return None
        return None

    return since


# ----------------------------------------------------------------------------- compiler


class _Compiler:
    """Checks names and scope while building closures bottom-up (constants folded)."""

    def __init__(self, text: str, scope: str, names: Names, table: str, key: str, fast: bool) -> None:
        self.text, self.scope, self.names, self.table, self.key = text, scope, names, table, key
        self.fast = fast  # False: no slopes, so next_change takes the generic paths only
        self.aggregates: set[str] = set()
        self.traits: set[str] = set()
        self.segments: set[str] = set()
        self.uses_props = False
        self.uses_context = False

    def fail(self, node: Node, message: str) -> RuleError:
        return RuleError(self.table, self.key, node.pos + 1, message)

    def compile(self, node: Node, depth: int = 0) -> Part:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"expression nests too deeply (more than {MAX_DEPTH} levels)")
        d = depth + 1
        match node:
            case Literal(value=v):
                return rt.const_part(v)
            case ListExpr(items=items):
                kids = [self.compile(i, d) for i in items]
                if all(k.const for k in kids):
                    return rt.const_part([k.value for k in kids])
                fns = [k.fn for k in kids]
                fn: Fn = lambda c: [f(c) for f in fns]  # noqa: E731
                td = any(k.td for k in kids)
                return Part(fn, td=td, kind="list", nc=rt.generic_nc(fn, kids) if td else None, items=kids)
            case Aggregate(name=name):
                if name not in self.names.aggregates:
                    raise self.fail(
                        node, f"unknown aggregate '{name}'{known_names(name, self.names.aggregates)}"
                    )
                self.aggregates.add(name)
                part = Part(lambda c: c.aggs[name])
                part.agg = name
                return part
            case Path(root=root, path=path):
                if root in ("props", "context"):
                    self.need_where(node, f"{root}.*")
                    self.uses_props = True
                    self.uses_context |= root == "context"
                else:
                    self.traits.add(path[0])
                return Part(_path_fn(root, path))
            case EventName():
                self.need_where(node, "'event'")
                self.uses_props = True
                return Part(lambda c: c.event)
            case Call():
                return self.call(node, d)
            case Unary(op=op, operand=operand):
                return self.unary(op, self.compile(operand, d))
            case Binary(op=op, left=left, right=right):
                return self.binary(op, self.compile(left, d), self.compile(right, d))
        raise TypeError(f"not a rules AST node: {node!r}")  # pragma: no cover - a bug

    def need_where(self, node: Node, what: str) -> None:
        if self.scope != WHERE:
            raise self.fail(
                node,
                f"{what} is only allowed in 'where' and 'of' expressions "
                f"(found in a '{self.scope}' expression)",
            )

    def call(self, node: Call, d: int) -> Part:
        name, args = node.name, node.args
        if name not in FUNCTIONS:
            raise self.fail(node, f"unknown function '{name}' (known: {', '.join(sorted(FUNCTIONS))})")
        want = FUNCTIONS[name]
        if len(args) != want:
            raise self.fail(
                node, f"expected {want} argument{'s' * (want != 1)} for {name}() but found {len(args)}"
            )
        if name == "segment":
            if self.scope != WHEN:
                raise self.fail(node, "segment() is only allowed in 'when' expressions")
            arg = args[0]
            if not (isinstance(arg, Literal) and type(arg.value) is str):
                raise self.fail(
                    arg,
                    "expected a string literal naming a segment, such as segment('vip'), "
                    f"but found {describe_node(arg)}",
                )
            seg = arg.value
            if seg not in self.names.segments:
                raise self.fail(arg, f"unknown segment '{seg}'{known_names(seg, self.names.segments)}")
            self.segments.add(seg)
            return Part(lambda c: seg in c.segments)
        if name == "now":
            fn: Fn = lambda c: c.now  # noqa: E731
            form: FormFn = lambda c: (c.now, 1.0)  # noqa: E731
            return Part(fn, td=True, kind="num", form=form, nc=rt.value_nc(fn, form), slope=self.line(1.0))
        x = self.compile(args[0], d)
        if name == "exists":
            if x.const:
                return rt.const_part(x.value is not None)
            if (agg := x.agg) is not None:  # read the aggregate inline: one call less
                return Part(lambda c: c.aggs[agg] is not None)
            fx = x.fn
            # a td number stays a number (or null) for good; bools and lists are never null
            return Part(lambda c: fx(c) is not None, td=x.td, kind="bool", nc=rt.never)
        fn = _since_fn(x.fn, _SECONDS[name], x.agg)
        form = rt.since_form(rt.form_of(x), fn, _SECONDS[name])
        # the slope of since_form when x does not move: (1 - 0) / unit
        slope = None if x.td else self.line(1.0 / _SECONDS[name])
        return Part(fn, td=True, kind="num", form=form, nc=rt.value_nc(fn, form), slope=slope)

    def unary(self, op: str, x: Part) -> Part:
        fx = x.fn
        if op == "not":
            if x.const:
                return rt.const_part(not x.value)
            return Part(lambda c: not fx(c), td=x.td, kind="bool", nc=rt.truth_nc(x) if x.td else None)
        fn: Fn = lambda c: -v if type(v := fx(c)) in _NUMS else None  # noqa: E731
        if x.const:
            return rt.const_part(fn(Context()))
        if not x.td:
            return Part(fn)
        form = rt.neg_form(rt.form_of(x))
        slope = None if x.slope is None else -x.slope
        return Part(fn, td=True, kind="num", form=form, nc=rt.value_nc(fn, form), slope=slope)

    def binary(self, op: str, a: Part, b: Part) -> Part:
        fa, fb = a.fn, b.fn
        if op in ("and", "or"):
            # `True if x else False` is one call cheaper than `bool(x)` on this hot path
            fn: Fn
            if op == "and":
                fn = lambda c: True if fa(c) and fb(c) else False  # noqa: E731, SIM210
            else:
                fn = lambda c: True if fa(c) or fb(c) else False  # noqa: E731, SIM210
            return self.fold(fn, a, b, "bool", lambda: rt.bool_nc(fn, op, a, b))
        if op in MIRROR:
            if a.const and not b.const:  # put the constant on the right for the fast paths
                fn = _compare_fn(MIRROR[op], fb, fa, a.value, b.agg)
            else:
                fn = _compare_fn(op, fa, fb, b.value if b.const else _NOCONST, a.agg)
            return self.fold(fn, a, b, "bool", lambda: rl.compare_nc(op, a, b, rt.compare_nc(fn, a, b)))
        if op in ("in", "not in"):
            fn = _in_fn(op == "not in", fa, fb, b.value if b.const else _NOCONST)
            return self.fold(fn, a, b, "bool", lambda: rt.in_nc(fn, a, b, _eq_fn))
        fn = _arith_fn(op, fa, fb)
        form = rt.arith_form(op, rt.form_of(a), rt.form_of(b))
        return self.fold(fn, a, b, "num", lambda: rt.value_nc(fn, form), form, rl.line_slope(op, a, b))

    def line(self, slope: float) -> float | None:
        return slope if self.fast else None

    @staticmethod
    def fold(
        fn: Fn,
        a: Part,
        b: Part,
        kind: str,
        make_nc: Callable[[], NextChange],
        form: FormFn | None = None,
        slope: float | None = None,
    ) -> Part:
        if a.const and b.const:
            return rt.const_part(fn(Context()))
        if not (a.td or b.td):
            return Part(fn)
        return Part(fn, td=True, kind=kind, form=form, nc=make_nc(), slope=slope)


def _eq_fn(fa: Fn, fb: Fn, k: Any = _NOCONST) -> Callable[[Context], bool]:
    return _compare_fn("==", fa, fb, k)


def compile_expr(
    text: str, *, scope: str, names: Names, table: str = "<expr>", key: str = "when", fast: bool = True
) -> Compiled:
    """Parse, check and compile an expression for ``scope`` (WHEN, or WHERE for where/of).

    Raises RuleError (with ``table``, ``key`` and the 1-based column) for bad syntax, unknown
    aggregates, functions or segments, wrong arity, and names not allowed in the scope.
    ``fast=False`` turns off the closed-form next_change shortcuts for comparisons with one
    linear side (same answers, slower; tests compare the two).
    """
    if scope not in (WHEN, WHERE):
        raise ValueError(f"scope must be {WHEN!r} or {WHERE!r}, got {scope!r}")
    node = parse(text, table=table, key=key)
    comp = _Compiler(text, scope, names, table, key, fast)
    root = comp.compile(node)
    return Compiled(
        text=text,
        fn=root.fn,
        aggregates=frozenset(comp.aggregates),
        traits=frozenset(comp.traits),
        segments=frozenset(comp.segments),
        uses_props=comp.uses_props,
        uses_context=comp.uses_context,
        time_dependent=root.td,
        next_change=(root.nc or rt.never) if root.td else rt.never,
    )
