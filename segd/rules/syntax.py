"""The rule language's syntax (SPEC section 4, "Expressions"): tokens, AST and parser.

``parse`` turns expression text into an AST of frozen :class:`Node` dataclasses; names are
not checked here (``segd.rules`` checks and compiles). Every syntax error is a
:class:`RuleError` carrying the 1-based column and what was expected.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segd.errors import SegdError

#: function name -> number of arguments
FUNCTIONS = {"now": 0, "days_since": 1, "hours_since": 1, "exists": 1, "segment": 1}
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
#: Nesting limit of the text (parentheses, lists, calls, not and unary minus).
MAX_NESTING = 40


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
    root: str  # "traits" | "props" | "context"
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


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<num>[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|[-<>+*/()\[\],.])
""",
    re.VERBOSE | re.DOTALL,
)
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
    toks: list[_Tok] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            ch = text[i]
            if ch in "'\"":
                raise fail(i, f"unterminated string: expected a closing {ch} but found end of expression")
            hint = f" (expected '{ch}=' for a comparison)" if ch in "=!" else ""
            raise fail(i, f"unexpected character {ch!r}{hint}")
        kind, s, i = m.lastgroup, m.group(), m.end()
        assert kind is not None  # every alternative of _TOKEN is a named group
        if kind == "num":
            if i < len(text) and (text[i].isalnum() or text[i] == "_"):
                tail = re.match(r"\w*", text[i:])
                assert tail is not None  # \w* matches anywhere, if only the empty string
                bad = s + tail.group()
                raise fail(m.start(), f"malformed number '{bad}' (expected a number such as 3, 2.5 or 1e3)")
            value: Any = int(s) if m.group(3) is None and m.group(4) is None else float(s)
        elif kind == "str":
            for e in re.finditer(r"\\(.?)", s[1:-1], re.DOTALL):
                if e.group(1) not in _ESCAPES:
                    raise fail(
                        m.start() + 1 + e.start(),
                        f"unknown escape '{e.group()}' in string (expected one of \\\\ \\' \\\" \\n \\t)",
                    )
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
            raise self.fail(
                self.tok.pos, f"expected an operator or end of expression but found {_describe(self.tok)}"
            )
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
            raise self.fail(
                again.pos,
                f"comparisons do not chain: found a second '{again.value}' after a "
                f"'{op.value}' comparison (expected 'and' between two comparisons)",
            )
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
            raise self.fail(
                self.tok.pos, f"expected '(' after function '{word}' but found {_describe(self.tok)}"
            )
        if word == "event":
            return EventName(t.pos)
        if word not in ("traits", "props", "context"):
            return Aggregate(t.pos, word)
        path: list[str] = []
        while not path or self.at("."):
            self.expect(".", f" and a name after '{word}'")
            if self.tok.kind != "name":
                raise self.fail(self.tok.pos, f"expected a name after '.' but found {_describe(self.tok)}")
            path.append(self.take().value)
        return Path(t.pos, word, tuple(path))


def parse(text: str, *, table: str = "<expr>", key: str = "when") -> Node:
    """Parse expression text into an AST (no name checks). Raises RuleError on bad syntax."""
    return _Parser(text, table, key).parse()


def describe_node(node: Node) -> str:
    """A short description of a node for error messages."""
    match node:
        case Literal(value=v):
            return "null" if v is None else f"{type(v).__name__} {v!r}"
        case Aggregate(name=name):
            return f"name '{name}'"
        case Path(root=root, path=path):
            return f"'{root}.{'.'.join(path)}'"
    return "an expression"


def known_names(name: str, known: frozenset[str]) -> str:
    """The tail of an "unknown name" message: what is known, and the closest match."""
    if not known:
        return " (none defined)"
    listed = sorted(known)
    shown = ", ".join(listed[:12]) + (", ..." if len(listed) > 12 else "")
    close = difflib.get_close_matches(name, listed, n=1, cutoff=0.6)
    return f" (known: {shown})" + (f"; did you mean '{close[0]}'?" if close else "")
