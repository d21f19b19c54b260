"""The rule language (SPEC section 4, "Expressions"): parse -> check -> compile to closures.

``compile_expr`` turns the text of a ``when``, ``where`` or ``of`` expression into a
``Compiled``: a Python closure over a ``Context`` plus what the expression references, and
``next_change``, the exact time at which the value next changes while only time passes.
Nothing is ever handed to Python's eval; evaluation never walks the AST.

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

import difflib
import heapq
import operator
import re
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from segd import rules_time as rt
from segd.errors import SegdError
from segd.rules_time import Part

WHEN = "when"
WHERE = "where"  # also the scope of ``of`` expressions

#: function name -> number of arguments
FUNCTIONS = {"now": 0, "days_since": 1, "hours_since": 1, "exists": 1, "segment": 1}
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
#: Nesting limits keep parsing, compiling and evaluating far from Python's recursion limit.
MAX_NESTING = 40
MAX_DEPTH = 200

_NUMS = (int, float)
_SEQS = (list, tuple)
_SCALARS = (str, int, float)
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SECONDS = {"days_since": 86400.0, "hours_since": 3600.0}


class RuleError(SegdError):
    """An expression does not parse or check.

    ``column`` is 1-based in the expression text; ``message`` says what was found and what
    was expected; ``str(e)`` is ``"{table}: '{key}' at column {column}: {message}"``.
    """

    def __init__(self, table: str, key: str, column: int, message: str) -> None:
        super().__init__(table, key, column, message)  # args round-trip through pickle
        self.table, self.key, self.column, self.message = table, key, column, message

    def __str__(self) -> str:
        return f"{self.table}: '{self.key}' at column {self.column}: {self.message}"


@dataclass(frozen=True)
class Names:
    """What a checked expression may reference: aggregate and segment names."""

    aggregates: frozenset[str]
    segments: frozenset[str]


class Context:
    """What an expression is evaluated against.

    ``aggs[name]`` must exist for every aggregate the expression references (it may be a
    lazy Mapping); a missing trait or property is null. ``props``/``event`` are None outside
    event (``where``/``of``) evaluation. ``segments`` holds the user's current segments.
    """

    __slots__ = ("now", "aggs", "traits", "props", "event", "segments")

    def __init__(self, now: float = 0.0, aggs: Mapping[str, Any] = _EMPTY,
                 traits: Mapping[str, Any] = _EMPTY, props: Mapping[str, Any] | None = None,
                 event: str | None = None, segments: Container[str] = frozenset()) -> None:
        self.now = now
        self.aggs = aggs
        self.traits = traits
        self.props = props
        self.event = event
        self.segments = segments


@dataclass(frozen=True)
class Compiled:
    """A checked, compiled expression.

    ``fn(ctx)`` evaluates it. ``next_change(ctx)`` is None if the value cannot change while
    only ``ctx.now`` advances (aggregates, traits, segments held fixed); otherwise a time
    ``t > ctx.now`` such that the value is the same on ``[ctx.now, t)``: exactly the first
    float at which it changes when ``now()``/``days_since``/``hours_since`` enter linearly
    or quadratically (see ``segd.rules_time`` for the float-noise limits), and at most
    ``rules_time.FALLBACK_STEP`` seconds ahead for anything else (e.g. dividing by
    ``days_since``); then the value may not have changed at ``t`` and the caller asks again.
    ``traits`` holds the first path component of every ``traits.X`` referenced; ``uses_props``
    is true if ``props.*`` or ``event`` is referenced.
    """

    text: str
    fn: Callable[[Context], Any]
    aggregates: frozenset[str]
    traits: frozenset[str]
    segments: frozenset[str]
    uses_props: bool
    time_dependent: bool
    next_change: Callable[[Context], float | None]


# ----------------------------------------------------------------------------- AST

@dataclass(frozen=True, slots=True)
class Node:
    """An AST node; ``pos`` is the 0-based offset of its first (or operator) character."""

    pos: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any  # int, float, str, bool or None


@dataclass(frozen=True, slots=True)
class ListExpr(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Aggregate(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Path(Node):
    root: str  # "traits" | "props"
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EventName(Node):
    pass


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "-" | "not"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str  # or and == != < <= > >= in "not in" + - * /
    left: Node
    right: Node


# ----------------------------------------------------------------------------- tokens

@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # num | str | name | op | end
    value: Any
    pos: int
    text: str


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<num>[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|[-<>+*/()\[\],.])
""", re.VERBOSE | re.DOTALL)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_CMP = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not"})


def _describe(t: _Tok) -> str:
    if t.kind == "end":
        return "end of expression"
    if t.kind in ("num", "str"):
        return f"{'number' if t.kind == 'num' else 'string'} {t.text}"
    if t.kind == "name" and t.value not in KEYWORDS:
        return f"name '{t.value}'"
    return f"'{t.value}'"


def _tokenize(text: str, fail: Callable[[int, str], RuleError]) -> list[_Tok]:
    toks, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            ch = text[i]
            if ch in "'\"":
                raise fail(i, f"unterminated string: expected a closing {ch} but found end of expression")
            hint = f" (expected '{ch}=' for a comparison)" if ch in "=!" else ""
            raise fail(i, f"unexpected character {ch!r}{hint}")
        kind, s, i = m.lastgroup, m.group(), m.end()
        if kind == "num":
            if i < len(text) and (text[i].isalnum() or text[i] == "_"):
                bad = s + re.match(r"\w*", text[i:]).group()
                raise fail(m.start(), f"malformed number '{bad}' (expected a number such as 3, 2.5 or 1e3)")
            value: Any = int(s) if m.group(3) is None and m.group(4) is None else float(s)
        elif kind == "str":
            for e in re.finditer(r"\\(.?)", s[1:-1], re.DOTALL):
                if e.group(1) not in _ESCAPES:
                    raise fail(m.start() + 1 + e.start(), f"unknown escape '{e.group()}' in string "
                                                          "(expected one of \\\\ \\' \\\" \\n \\t)")
            value = re.sub(r"\\(.)", lambda e: _ESCAPES[e.group(1)], s[1:-1], flags=re.DOTALL)
        elif kind == "space":
            continue
        else:
            value = s
        toks.append(_Tok(kind, value, m.start(), s))
    toks.append(_Tok("end", None, len(text), ""))
    return toks


# ----------------------------------------------------------------------------- parser

class _Parser:
    """Recursive descent, one method per precedence level (SPEC section 4)."""

    def __init__(self, text: str, table: str, key: str) -> None:
        self.table, self.key = table, key
        self.toks = _tokenize(text, self.fail)
        self.i = 0
        self.nesting = 0

    def fail(self, pos: int, message: str) -> RuleError:
        return RuleError(self.table, self.key, pos + 1, message)

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def at(self, *values: str) -> bool:
        t = self.toks[self.i]
        return t.kind in ("op", "name") and t.value in values

    def take(self) -> _Tok:
        self.i += 1
        return self.toks[self.i - 1]

    def expect(self, value: str, what: str = "") -> None:
        if not self.at(value):
            raise self.fail(self.tok.pos, f"expected '{value}'{what} but found {_describe(self.tok)}")
        self.take()

    def nested(self, pos: int, parse: Callable[[], Node]) -> Node:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.fail(pos, f"expression nests too deeply (more than {MAX_NESTING} levels)")
        node = parse()
        self.nesting -= 1
        return node

    def parse(self) -> Node:
        node = self.expr()
        if self.tok.kind != "end":
            raise self.fail(self.tok.pos, f"expected an operator or end of expression but found {_describe(self.tok)}")
        return node

    def left_assoc(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        node = operand()
        while self.at(*ops):
            t = self.take()
            node = Binary(t.pos, t.value, node, operand())
        return node

    def expr(self) -> Node:
        return self.left_assoc(("or",), lambda: self.left_assoc(("and",), self.negation))

    def negation(self) -> Node:
        if self.at("not"):
            pos = self.take().pos
            return Unary(pos, "not", self.nested(pos, self.negation))
        return self.comparison()

    def cmp_op(self) -> _Tok | None:
        if not self.at(*_CMP):
            return None
        t = self.take()
        if t.value == "not":
            if not self.at("in"):
                raise self.fail(self.tok.pos, f"expected 'in' after 'not' but found {_describe(self.tok)}")
            self.take()
            return _Tok("op", "not in", t.pos, "not in")
        return t

    def comparison(self) -> Node:
        left = self.additive()
        if (op := self.cmp_op()) is None:
            return left
        node = Binary(op.pos, op.value, left, self.additive())
        if (again := self.cmp_op()) is not None:
            raise self.fail(again.pos, f"comparisons do not chain: found a second '{again.value}' after a "
                                       f"'{op.value}' comparison (expected 'and' between two comparisons)")
        return node

    def additive(self) -> Node:
        return self.left_assoc(("+", "-"), lambda: self.left_assoc(("*", "/"), self.unary))

    def unary(self) -> Node:
        if self.at("-"):
            pos = self.take().pos
            return Unary(pos, "-", self.nested(pos, self.unary))
        return self.primary()

    def items(self, opened: _Tok, close: str, where: str) -> tuple[Node, ...]:
        """Comma-separated expressions up to ``close``, after the ``opened`` bracket."""
        items = []
        if not self.at(close):
            items.append(self.nested(opened.pos, self.expr))
            while self.at(","):
                self.take()
                items.append(self.nested(opened.pos, self.expr))
        self.expect(close, f" or ',' in the {where} at column {opened.pos + 1}")
        return tuple(items)

    def primary(self) -> Node:
        t = self.tok
        if t.kind in ("num", "str"):
            self.take()
            return Literal(t.pos, t.value)
        if self.at("("):
            self.take()
            node = self.nested(t.pos, self.expr)
            self.expect(")", f" to close the '(' at column {t.pos + 1}")
            return node
        if self.at("["):
            self.take()
            return ListExpr(t.pos, self.items(t, "]", "list opened"))
        if t.kind != "name" or t.value in ("and", "or", "not", "in"):
            raise self.fail(t.pos, f"expected an expression but found {_describe(t)}")
        self.take()
        word = t.value
        if word in ("true", "false", "null"):
            return Literal(t.pos, {"true": True, "false": False, "null": None}[word])
        if self.at("("):
            return Call(t.pos, word, self.items(self.take(), ")", f"call to {word}() opened"))
        if word in FUNCTIONS:
            raise self.fail(self.tok.pos, f"expected '(' after function '{word}' but found {_describe(self.tok)}")
        if word == "event":
            return EventName(t.pos)
        if word not in ("traits", "props"):
            return Aggregate(t.pos, word)
        path = []
        while not path or self.at("."):
            self.expect(".", f" and a name after '{word}'")
            if self.tok.kind != "name":
                raise self.fail(self.tok.pos, f"expected a name after '.' but found {_describe(self.tok)}")
            path.append(self.take().value)
        return Path(t.pos, word, tuple(path))


def parse(text: str, *, table: str = "<expr>", key: str = "when") -> Node:
    """Parse expression text into an AST (no name checks). Raises RuleError on bad syntax."""
    return _Parser(text, table, key).parse()


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


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_NOCONST = object()


def _compare_fn(op: str, fa: Callable, fb: Callable, k: Any = _NOCONST) -> Callable[[Context], bool]:
    """Closure for ``a op b`` (op one of == != < <= > >=); ``k`` is b's value if constant."""
    if type(k) in _NUMS or type(k) is str:  # the common `count >= 3`, `traits.plan == 'pro'`
        kt = _NUMS if type(k) in _NUMS else (str,)
        if op == "==":
            return lambda c: type(v := fa(c)) in kt and v == k
        if op == "!=":
            return lambda c: (v := fa(c)) is not None and not (type(v) in kt and v == k)
        cmp = _ORDER[op]
        return lambda c: type(v := fa(c)) in kt and cmp(v, k)
    if op == "==":
        return lambda c: _eq(fa(c), fb(c))
    if op == "!=":
        return lambda c: (a := fa(c)) is not None and (b := fb(c)) is not None and not _eq(a, b)
    cmp = _ORDER[op]

    def order(c: Context) -> bool:
        a, b = fa(c), fb(c)
        ta, tb = type(a), type(b)
        return ((ta in _NUMS and tb in _NUMS) or (ta is str and tb is str)) and cmp(a, b)
    return order


def _arith_fn(op: str, fa: Callable, fb: Callable) -> Callable[[Context], Any]:
    fop = _ARITH[op]

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


def _in_fn(negate: bool, fx: Callable, fl: Callable, k: Any = _NOCONST) -> Callable[[Context], bool]:
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


def _path_fn(root: str, path: tuple[str, ...]) -> Callable[[Context], Any]:
    first, rest = path[0], path[1:]
    if root == "traits":
        def get(c: Context) -> Any:
            return c.traits.get(first)
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


def _since_fn(fx: Callable, unit: float) -> Callable[[Context], Any]:
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

    def __init__(self, text: str, scope: str, names: Names, table: str, key: str) -> None:
        self.text, self.scope, self.names, self.table, self.key = text, scope, names, table, key
        self.aggregates: set[str] = set()
        self.traits: set[str] = set()
        self.segments: set[str] = set()
        self.uses_props = False

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
                fn = lambda c: [f(c) for f in fns]  # noqa: E731
                td = any(k.td for k in kids)
                return Part(fn, td=td, kind="list", nc=rt.generic_nc(fn, kids) if td else None, items=kids)
            case Aggregate(name=name):
                if name not in self.names.aggregates:
                    raise self.fail(node, f"unknown aggregate '{name}'{_known(name, self.names.aggregates)}")
                self.aggregates.add(name)
                return Part(lambda c: c.aggs[name])
            case Path(root=root, path=path):
                if root == "props":
                    self.need_where(node, "props.*")
                    self.uses_props = True
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
            raise self.fail(node, f"{what} is only allowed in 'where' and 'of' expressions "
                                  f"(found in a '{self.scope}' expression)")

    def call(self, node: Call, d: int) -> Part:
        name, args = node.name, node.args
        if name not in FUNCTIONS:
            raise self.fail(node, f"unknown function '{name}' (known: {', '.join(sorted(FUNCTIONS))})")
        want = FUNCTIONS[name]
        if len(args) != want:
            raise self.fail(node, f"expected {want} argument{'s' * (want != 1)} for {name}() "
                                  f"but found {len(args)}")
        if name == "segment":
            if self.scope != WHEN:
                raise self.fail(node, "segment() is only allowed in 'when' expressions")
            arg = args[0]
            if not (isinstance(arg, Literal) and type(arg.value) is str):
                raise self.fail(arg, "expected a string literal naming a segment, such as segment('vip'), "
                                     f"but found {_describe_node(arg)}")
            seg = arg.value
            if seg not in self.names.segments:
                raise self.fail(arg, f"unknown segment '{seg}'{_known(seg, self.names.segments)}")
            self.segments.add(seg)
            return Part(lambda c: seg in c.segments)
        if name == "now":
            fn = lambda c: c.now  # noqa: E731
            form = lambda c: (c.now, 1.0)  # noqa: E731
            return Part(fn, td=True, kind="num", form=form, nc=rt.value_nc(fn, form))
        x = self.compile(args[0], d)
        if name == "exists":
            if x.const:
                return rt.const_part(x.value is not None)
            fx = x.fn
            # a td number stays a number (or null) for good; bools and lists are never null
            return Part(lambda c: fx(c) is not None, td=x.td, kind="bool", nc=rt.never)
        fn = _since_fn(x.fn, _SECONDS[name])
        form = rt.since_form(rt.form_of(x), fn, _SECONDS[name])
        return Part(fn, td=True, kind="num", form=form, nc=rt.value_nc(fn, form))

    def unary(self, op: str, x: Part) -> Part:
        fx = x.fn
        if op == "not":
            if x.const:
                return rt.const_part(not x.value)
            return Part(lambda c: not fx(c), td=x.td, kind="bool", nc=rt.truth_nc(x) if x.td else None)
        fn = lambda c: -v if type(v := fx(c)) in _NUMS else None  # noqa: E731
        if x.const:
            return rt.const_part(fn(Context()))
        if not x.td:
            return Part(fn)
        form = rt.neg_form(rt.form_of(x))
        return Part(fn, td=True, kind="num", form=form, nc=rt.value_nc(fn, form))

    def binary(self, op: str, a: Part, b: Part) -> Part:
        fa, fb = a.fn, b.fn
        if op in ("and", "or"):
            fn = ((lambda c: True if fa(c) and fb(c) else False) if op == "and"  # noqa: SIM210
                  else (lambda c: True if fa(c) or fb(c) else False))  # noqa: SIM210
            return self.fold(fn, a, b, "bool", lambda: rt.bool_nc(fn, op, a, b))
        if op in _MIRROR:
            if a.const and not b.const:  # put the constant on the right for the fast paths
                fn = _compare_fn(_MIRROR[op], fb, fa, a.value)
            else:
                fn = _compare_fn(op, fa, fb, b.value if b.const else _NOCONST)
            return self.fold(fn, a, b, "bool", lambda: rt.compare_nc(fn, a, b))
        if op in ("in", "not in"):
            fn = _in_fn(op == "not in", fa, fb, b.value if b.const else _NOCONST)
            return self.fold(fn, a, b, "bool", lambda: rt.in_nc(fn, a, b, _eq_fn))
        fn = _arith_fn(op, fa, fb)
        form = rt.arith_form(op, rt.form_of(a), rt.form_of(b))
        return self.fold(fn, a, b, "num", lambda: rt.value_nc(fn, form), form)

    @staticmethod
    def fold(fn: Callable, a: Part, b: Part, kind: str, make_nc: Callable, form: Callable | None = None) -> Part:
        if a.const and b.const:
            return rt.const_part(fn(Context()))
        if not (a.td or b.td):
            return Part(fn)
        return Part(fn, td=True, kind=kind, form=form, nc=make_nc())


def _eq_fn(fa: Callable, fb: Callable | None, k: Any = _NOCONST) -> Callable[[Context], bool]:
    return _compare_fn("==", fa, fb, k)  # type: ignore[arg-type]


def _describe_node(node: Node) -> str:
    match node:
        case Literal(value=v):
            return "null" if v is None else f"{type(v).__name__} {v!r}"
        case Aggregate(name=name):
            return f"name '{name}'"
        case Path(root=root, path=path):
            return f"'{root}.{'.'.join(path)}'"
    return "an expression"


def _known(name: str, known: frozenset[str]) -> str:
    if not known:
        return " (none defined)"
    listed = sorted(known)
    shown = ", ".join(listed[:12]) + (", ..." if len(listed) > 12 else "")
    close = difflib.get_close_matches(name, listed, n=1, cutoff=0.6)
    return f" (known: {shown})" + (f"; did you mean '{close[0]}'?" if close else "")


def compile_expr(text: str, *, scope: str, names: Names, table: str = "<expr>",
                 key: str = "when") -> Compiled:
    """Parse, check and compile an expression for ``scope`` (WHEN, or WHERE for where/of).

    Raises RuleError (with ``table``, ``key`` and the 1-based column) for bad syntax, unknown
    aggregates, functions or segments, wrong arity, and names not allowed in the scope.
    """
    if scope not in (WHEN, WHERE):
        raise ValueError(f"scope must be {WHEN!r} or {WHERE!r}, got {scope!r}")
    node = parse(text, table=table, key=key)
    comp = _Compiler(text, scope, names, table, key)
    root = comp.compile(node)
    return Compiled(
        text=text, fn=root.fn, aggregates=frozenset(comp.aggregates), traits=frozenset(comp.traits),
        segments=frozenset(comp.segments), uses_props=comp.uses_props, time_dependent=root.td,
        next_change=(root.nc or rt.never) if root.td else rt.never,
    )


def segment_order(refs: Mapping[str, Iterable[str]], groups: Mapping[str, str]) -> list[str]:
    """Every segment name in evaluation order: after everything it references.

    Referencing a member of group G means waiting for all of G (a group's membership is
    decided once all members are evaluated). Ties break by name, so the order is
    deterministic. Raises RuleError on a cycle, naming the segments along it.
    """
    refs = {s: sorted(set(r)) for s, r in refs.items()}
    names = set(refs) | set(groups) | {r for rs in refs.values() for r in rs}
    members: dict[str, list[str]] = {}
    for s in sorted(names):
        if groups.get(s):
            members.setdefault(groups[s], []).append(s)
    deps: dict[str, set[str]] = {s: set() for s in names}
    for s, rs in refs.items():
        for r in rs:
            deps[s].add(r)
            deps[s].update(members.get(groups.get(r, ""), ()))
    waiting = {s: len(d) for s, d in deps.items()}
    users: dict[str, list[str]] = {s: [] for s in names}
    for s, d in deps.items():
        for r in d:
            users[r].append(s)
    ready = [s for s, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        s = heapq.heappop(ready)
        order.append(s)
        for u in users[s]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) == len(names):
        return order
    # every segment left waits on another one left: walking dependencies must loop
    left = {s for s, n in waiting.items() if n > 0}
    path, seen = [min(left)], {}
    while path[-1] not in seen:
        seen[path[-1]] = len(path) - 1
        path.append(min(deps[path[-1]] & left))
    cycle = path[seen[path[-1]]:-1]
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    steps, notes = [cycle[0]], []
    for s, t in zip(cycle, cycle[1:] + cycle[:1], strict=True):
        steps.append(t)
        if t not in refs.get(s, ()):
            via = next(r for r in refs[s] if groups.get(r) and groups.get(r) == groups.get(t))
            notes.append(f"{s} references {via}, which is decided with {t} in group '{groups[t]}'")
    message = "segment reference cycle: " + " -> ".join(steps)
    if notes:
        message += " (" + "; ".join(notes) + ")"
    raise RuleError(table=f"segments.{cycle[0]}", key="when", column=1, message=message)
