"""OData query options of list operations: ``$filter``, ``$select``, paging.

``$filter`` supports what Batch clients send: comparisons
(``eq ne gt ge lt le``) of a property path (``state``, ``executionInfo/result``,
``id`` ...) with a string, integer or boolean literal, ``startswith(path, 'x')``,
``and``, ``or``, ``not`` and parentheses. A filter compiles to a Python
predicate over a rendered entity, or to an SQL clause over mapped columns.
Anything else is a 400 ``InvalidQueryParameterValue`` naming ``$filter``.

Paging tokens are opaque (URL-safe base64 of JSON), carry the filter and
selection, and survive a client re-encoding the next link.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from localbatch.errors import invalid_query

Literal = str | int | float | bool | None

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<lp>\()|(?P<rp>\))|(?P<comma>,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_/.]*))"
)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}


@dataclass(frozen=True)
class Compare:
    path: str
    op: str
    value: Literal


@dataclass(frozen=True)
class StartsWith:
    path: str
    prefix: str


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


Node = Compare | StartsWith | BoolOp | Not


def _bad(text: str, reason: str) -> Exception:
    return invalid_query("$filter", text, reason)


MAX_FILTER_LENGTH = 4096


def parse_filter(text: str) -> Node:
    """Parse a ``$filter`` expression; raise 400 on anything unsupported."""
    if len(text) > MAX_FILTER_LENGTH:
        raise _bad(text, f"longer than {MAX_FILTER_LENGTH} characters")
    try:
        node = _parse(text)
        _depth(node, 0)
    except RecursionError:
        raise _bad(text, "nested too deeply") from None
    return node


def _depth(node: Node, level: int) -> None:
    """Refuse trees that later recursive walks (SQL, predicates) could not handle."""
    if level > 200:
        raise RecursionError
    if isinstance(node, BoolOp):
        _depth(node.left, level + 1)
        _depth(node.right, level + 1)
    elif isinstance(node, Not):
        _depth(node.operand, level + 1)


def _parse(text: str) -> Node:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _bad(text, f"unexpected character at position {pos}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    parser = _Parser(text, tokens)
    node = parser.expr()
    if parser.i != len(tokens):
        raise _bad(text, "unexpected trailing input")
    return node


class _Parser:
    def __init__(self, text: str, tokens: list[tuple[str, str]]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (kind is not None and tok[0] != kind):
            raise _bad(self.text, "incomplete or malformed expression")
        self.i += 1
        return tok

    def expr(self) -> Node:
        left = self.term()
        while (tok := self.peek()) and tok == ("word", "or"):
            self.i += 1
            left = BoolOp("or", left, self.term())
        return left

    def term(self) -> Node:
        left = self.factor()
        while (tok := self.peek()) and tok == ("word", "and"):
            self.i += 1
            left = BoolOp("and", left, self.factor())
        return left

    def factor(self) -> Node:
        tok = self.peek()
        if tok == ("word", "not"):
            self.i += 1
            return Not(self.factor())
        if tok is not None and tok[0] == "lp":
            self.i += 1
            node = self.expr()
            self.take("rp")
            return node
        name = self.take("word")[1]
        if name == "startswith":
            self.take("lp")
            path = self.take("word")[1]
            self.take("comma")
            prefix = self.literal()
            self.take("rp")
            if not isinstance(prefix, str):
                raise _bad(self.text, "startswith needs a string literal")
            return StartsWith(path, prefix)
        op = self.take("word")[1]
        if op not in _COMPARISONS:
            raise _bad(self.text, f"unsupported operator '{op}'")
        return Compare(name, op, self.literal())

    def literal(self) -> Literal:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind == "word" and value in ("true", "false"):
            return value == "true"
        if kind == "word" and value == "null":
            return None
        if kind == "word" and value.startswith("datetime"):
            raise _bad(self.text, "datetime literals are not supported")
        raise _bad(self.text, "expected a literal")


def _lookup(entity: Mapping[str, Any], path: str) -> Any:
    value: Any = entity
    for part in path.split("/"):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _compare(left: Any, op: str, right: Literal) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == "gt":
            return bool(left > right)
        if op == "ge":
            return bool(left >= right)
        if op == "lt":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


def predicate(node: Node) -> Callable[[Mapping[str, Any]], bool]:
    """A Python predicate over a rendered entity (JSON dict)."""
    if isinstance(node, Compare):
        return lambda e: _compare(_lookup(e, node.path), node.op, node.value)
    if isinstance(node, StartsWith):
        prefix = node.prefix.lower()
        return lambda e: str(_lookup(e, node.path) or "").lower().startswith(prefix)
    if isinstance(node, Not):
        inner = predicate(node.operand)
        return lambda e: not inner(e)
    left, right = predicate(node.left), predicate(node.right)
    if node.op == "and":
        return lambda e: left(e) and right(e)
    return lambda e: left(e) or right(e)


_SQL_OPS = {"eq": "=", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def to_sql(node: Node, columns: Mapping[str, str], text: str) -> tuple[str, list[Literal]]:
    """Compile to an SQL clause over ``columns`` (filter path -> column expression)."""
    if isinstance(node, Compare):
        col = columns.get(node.path)
        if col is None:
            raise _bad(text, f"filtering on '{node.path}' is not supported")
        if node.value is None:
            return (f"{col} IS NULL" if node.op == "eq" else f"{col} IS NOT NULL"), []
        value = node.value.lower() if isinstance(node.value, str) else node.value
        if isinstance(value, bool):
            value = int(value)
        if isinstance(node.value, str):
            return f"lower({col}) {_SQL_OPS[node.op]} ?", [value]
        if node.op == "ne":
            return f"({col} IS NULL OR {col} != ?)", [value]
        return f"{col} {_SQL_OPS[node.op]} ?", [value]
    if isinstance(node, StartsWith):
        col = columns.get(node.path)
        if col is None:
            raise _bad(text, f"filtering on '{node.path}' is not supported")
        return f"substr(lower({col}), 1, ?) = ?", [len(node.prefix), node.prefix.lower()]
    if isinstance(node, Not):
        clause, args = to_sql(node.operand, columns, text)
        return f"NOT ({clause})", args
    lc, la = to_sql(node.left, columns, text)
    rc, ra = to_sql(node.right, columns, text)
    return f"({lc}) {node.op.upper()} ({rc})", la + ra


def parse_select(text: str | None) -> list[str] | None:
    """``$select`` as a list of top-level property names (``None`` = everything)."""
    if not text:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(/[A-Za-z][A-Za-z0-9]*)*", name):
            raise invalid_query("$select", text, f"'{name}' is not a property name")
    return names


def project(entity: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Keep only the selected properties (and ``odata`` annotations)."""
    if select is None:
        return entity
    top = {name.split("/")[0] for name in select}
    return {k: v for k, v in entity.items() if k in top}


def parse_maxresults(text: str | None) -> int:
    """``maxresults``: default and maximum 1000, at least 1."""
    if text is None or text == "":
        return 1000
    try:
        value = int(text)
    except ValueError:
        raise invalid_query("maxresults", text, "not an integer") from None
    if value < 1:
        raise invalid_query("maxresults", text, "must be at least 1")
    return min(value, 1000)


@dataclass(frozen=True)
class PageState:
    """Where a list continues: the query it belongs to and the last key returned."""

    after: Any
    filter: str | None
    select: str | None
    maxresults: int

    def encode(self) -> str:
        raw = json.dumps([self.after, self.filter, self.select, self.maxresults], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")

    @staticmethod
    def decode(token: str) -> PageState:
        try:
            padded = token + "=" * (-len(token) % 4)
            after, flt, sel, maxresults = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
            if not isinstance(maxresults, int) or not (flt is None or isinstance(flt, str)):
                raise ValueError("bad token")
            if not (sel is None or isinstance(sel, str)):
                raise ValueError("bad token")
        except (ValueError, TypeError, UnicodeError):
            raise invalid_query("$skiptoken", token, "not a continuation token of this service") from None
        return PageState(after, flt, sel, maxresults)
