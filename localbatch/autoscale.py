"""Batch's autoscale formula language: tokenizer, parser and evaluator.

A formula is ``;``-separated statements, each an assignment ``$name = expr``
or an expression. Expressions have Batch's operators (``?:``, ``||``, ``&&``,
comparisons, ``+ - * / %``, unary ``- + !``), numbers, strings, ``{a, b}``
vectors, ``TimeInterval_*`` constants, the node deallocation options
(``requeue``, ``terminate``, ``taskcompletion``, ``retaineddata``), functions
(``avg``, ``max``, ``min``, ``sum``, ``count``/``len``, ``ceil``, ``floor``,
``round``, ``std``, ``percentile``, ``range``, ``norm``, ``lg``, ``ln``,
``log``, ``val``, ``rand``, ``time``) and the sample methods of service
metrics (``$PendingTasks.GetSample(1)``, ``.GetSample(TimeInterval_Minute *
5, 70)``, ``.GetSamplePercent(interval)``, ``.GetSamplePeriod()``,
``.Count()``, ``.HistoryBeginTime()``).

:func:`parse` raises :class:`FormulaError` for a formula that is not
syntactically valid (the service's 400 ``InvalidAutoScaleFormula``);
:func:`evaluate` raises it for one that fails while evaluated (the service
records it in ``autoScaleRun.error``). Neither loops: evaluation is bounded by
the formula's length (at most 8192 characters) and a nesting depth limit.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 64
SAMPLE_METRICS = (
    "$PendingTasks",
    "$ActiveTasks",
    "$RunningTasks",
    "$SucceededTasks",
    "$FailedTasks",
    "$TaskSlotsPerNode",
    "$CPUPercent",
    "$WallClockSeconds",
    "$MemoryBytes",
    "$DiskBytes",
    "$DiskReadBytes",
    "$DiskWriteBytes",
    "$DiskReadOps",
    "$DiskWriteOps",
    "$NetworkInBytes",
    "$NetworkOutBytes",
    "$SampleNodeCount",
)
SETTABLE = ("$TargetDedicatedNodes", "$TargetLowPriorityNodes", "$NodeDeallocationOption")
DEALLOCATION_OPTIONS = ("requeue", "terminate", "taskcompletion", "retaineddata")
TIME_INTERVALS = {
    "TimeInterval_Zero": 0.0,
    "TimeInterval_100ns": 1e-7,
    "TimeInterval_Microsecond": 1e-6,
    "TimeInterval_Millisecond": 1e-3,
    "TimeInterval_Second": 1.0,
    "TimeInterval_Minute": 60.0,
    "TimeInterval_Hour": 3600.0,
    "TimeInterval_Day": 86400.0,
    "TimeInterval_Week": 604800.0,
    "TimeInterval_Year": 31536000.0,
}


class FormulaError(Exception):
    """The formula is invalid (``phase`` ``parse``) or failed to evaluate (``evaluate``)."""

    def __init__(self, message: str, phase: str = "parse") -> None:
        super().__init__(message)
        self.message = message
        self.phase = phase


@dataclass(frozen=True)
class Interval:
    """A ``timeinterval`` value, in seconds."""

    seconds: float


@dataclass(frozen=True)
class Timestamp:
    """A ``timestamp`` value, in seconds since the epoch."""

    seconds: float


@dataclass(frozen=True)
class Metric:
    """A service metric with a sample history (only its methods may be used)."""

    name: str


Value = float | str | tuple[float, ...] | Interval | Timestamp | Metric


# ---------------------------------------------------------------------- samples


@dataclass
class SampleHistory:
    """Samples of the service metrics of one pool, newest last; kept for ``keep`` seconds.

    ``period`` is the sampling period that :meth:`percent` counts against (Batch: 30 s).
    """

    period: float
    keep: float = 3600.0
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def record(self, values: dict[str, float], now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.samples.append((now, {k: float(v) for k, v in values.items()}))
        cutoff = now - self.keep
        while self.samples and self.samples[0][0] < cutoff:
            self.samples.pop(0)

    def last(self, name: str, count: int) -> tuple[float, ...]:
        return tuple(v.get(name, 0.0) for _, v in reversed(self.samples[-count:])) if count > 0 else ()

    def within(self, name: str, seconds: float, now: float) -> tuple[float, ...]:
        return tuple(v.get(name, 0.0) for t, v in reversed(self.samples) if t >= now - seconds)

    def percent(self, seconds: float, now: float) -> float:
        if seconds <= 0:
            return 100.0
        expected = max(1.0, seconds / self.period)
        have = sum(1 for t, _ in self.samples if t >= now - seconds)
        return min(100.0, 100.0 * have / expected)


# ---------------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
    | (?P<var>\$[A-Za-z_][A-Za-z0-9_]*)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<str>"[^"\n]*")
    | (?P<op>&&|\|\||<=|>=|==|!=|[-+*/%<>!?:;=(){},.])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # num, var, name, str, op, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    """Split a formula into tokens (``//`` comments to end of line are skipped)."""
    text = re.sub(r"//[^\n]*", "", text)
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.lastgroup is None:
            bad = text[pos:].lstrip()[:1]
            raise FormulaError(f"unexpected character {bad!r} at position {pos}")
        tokens.append(Token(m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------------- syntax tree

Node = tuple[Any, ...]  # (kind, ...): ("num", v) ("str", s) ("var", n) ("name", n) ("call", f, args)
# ("method", var, m, args) ("vec", items) ("un", op, x) ("bin", op, a, b) ("if", c, a, b)


@dataclass(frozen=True)
class Statement:
    target: str | None  # the variable assigned, or None for a bare expression
    expr: Node


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self, text: str | None = None) -> Token:
        tok = self.peek()
        if text is not None and tok.text != text:
            found = tok.text or "end of formula"
            raise FormulaError(f"expected {text!r} at position {tok.pos}, found {found!r}")
        self.i += 1
        return tok

    def program(self) -> list[Statement]:
        out: list[Statement] = []
        while self.peek().kind != "end":
            if self.peek().text == ";":
                self.take()
                continue
            out.append(self.statement())
            if self.peek().kind != "end":
                self.take(";")
        if not out:
            raise FormulaError("the formula has no statements")
        return out

    def statement(self) -> Statement:
        tok = self.peek()
        if tok.kind == "var" and self.peek(1).text == "=":
            self.i += 2
            if tok.text in SAMPLE_METRICS or tok.text in _READ_ONLY:
                raise FormulaError(f"{tok.text} is read-only and cannot be assigned")
            return Statement(tok.text, self.expr())
        return Statement(None, self.expr())

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FormulaError(f"the formula nests deeper than {MAX_DEPTH} levels")
        cond = self.binary(0)
        if self.peek().text == "?":
            self.take()
            yes = self.expr()
            self.take(":")
            no = self.expr()
            cond = ("if", cond, yes, no)
        self.depth -= 1
        return cond

    _LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!=", "<", "<=", ">", ">="),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek().kind == "op" and self.peek().text in self._LEVELS[level]:
            op = self.take().text
            left = ("bin", op, left, self.binary(level + 1))
        return left

    def unary(self) -> Node:
        if self.peek().text in ("-", "+", "!"):
            op = self.take().text
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FormulaError(f"the formula nests deeper than {MAX_DEPTH} levels")
            node = ("un", op, self.unary())
            self.depth -= 1
            return node
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while self.peek().text == ".":
            self.take()
            name = self.take()
            if name.kind != "name":
                raise FormulaError(f"expected a method name at position {name.pos}")
            node = ("method", node, name.text, self.args())
        return node

    def args(self) -> list[Node]:
        self.take("(")
        items: list[Node] = []
        if self.peek().text != ")":
            items.append(self.expr())
            while self.peek().text == ",":
                self.take()
                items.append(self.expr())
        self.take(")")
        return items

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return ("num", float(tok.text))
        if tok.kind == "str":
            return ("str", tok.text[1:-1])
        if tok.kind == "var":
            return ("var", tok.text)
        if tok.kind == "name":
            if self.peek().text == "(":
                if tok.text.lower() not in _FUNCTIONS:
                    raise FormulaError(f"unknown function {tok.text!r} at position {tok.pos}")
                return ("call", tok.text.lower(), self.args())
            if tok.text not in TIME_INTERVALS and tok.text.lower() not in DEALLOCATION_OPTIONS:
                raise FormulaError(f"unknown name {tok.text!r} at position {tok.pos}")
            return ("name", tok.text)
        if tok.text == "(":
            node = self.expr()
            self.take(")")
            return node
        if tok.text == "{":
            items: list[Node] = []
            if self.peek().text != "}":
                items.append(self.expr())
                while self.peek().text == ",":
                    self.take()
                    items.append(self.expr())
            self.take("}")
            return ("vec", items)
        found = tok.text or "end of formula"
        raise FormulaError(f"unexpected {found!r} at position {tok.pos}")


def parse(text: str) -> list[Statement]:
    """Parse a formula; raise :class:`FormulaError` (phase ``parse``) if it is not valid."""
    return _Parser(tokenize(text)).program()


# ---------------------------------------------------------------------- evaluation

_READ_ONLY = (
    "$CurrentDedicatedNodes",
    "$CurrentLowPriorityNodes",
    "$PreemptedNodeCount",
    "$UsableNodeCount",
)


def _fail(message: str) -> FormulaError:
    return FormulaError(message, "evaluate")


def _numbers(values: Sequence[Value], fn: str) -> list[float]:
    out: list[float] = []
    for v in values:
        if isinstance(v, float):
            out.append(v)
        elif isinstance(v, tuple):
            out.extend(v)
        else:
            raise _fail(f"{fn}() takes numbers or vectors, not {_type(v)}")
    return out


def _nonempty(values: Sequence[Value], fn: str) -> list[float]:
    nums = _numbers(values, fn)
    if not nums:
        raise _fail(f"{fn}() of an empty vector")
    return nums


def _std(v: list[float]) -> float:
    mean = sum(v) / len(v)
    return math.sqrt(sum((x - mean) ** 2 for x in v) / len(v))


def _percentile(args: Sequence[Value]) -> float:
    if len(args) != 2 or not isinstance(args[1], float):
        raise _fail("percentile() takes a vector and a percentage")
    v = sorted(_nonempty(args[:1], "percentile"))
    p = min(100.0, max(0.0, args[1]))
    return v[min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1 if p > 0 else 0)]


def _one(fn: Callable[[float], float], name: str) -> Callable[[Sequence[Value]], Value]:
    def apply(args: Sequence[Value]) -> Value:
        if len(args) != 1 or not isinstance(args[0], float):
            raise _fail(f"{name}() takes one number")
        try:
            return float(fn(args[0]))
        except (ValueError, OverflowError):
            raise _fail(f"{name}() of {args[0]:g} is not defined") from None

    return apply


def _val(args: Sequence[Value]) -> Value:
    if len(args) != 2 or not isinstance(args[0], tuple) or not isinstance(args[1], float):
        raise _fail("val() takes a vector and an index")
    i = int(args[1])
    if not 0 <= i < len(args[0]):
        raise _fail(f"val(): index {i} is outside the vector of {len(args[0])}")
    return args[0][i]


_FUNCTIONS: dict[str, Callable[[Sequence[Value]], Value]] = {
    "avg": lambda a: (lambda v: sum(v) / len(v))(_nonempty(a, "avg")),
    "max": lambda a: max(_nonempty(a, "max")),
    "min": lambda a: min(_nonempty(a, "min")),
    "sum": lambda a: float(sum(_numbers(a, "sum"))),
    "count": lambda a: float(len(_numbers(a, "count"))),
    "len": lambda a: float(len(_numbers(a, "len"))),
    "std": lambda a: _std(_nonempty(a, "std")),
    "range": lambda a: (lambda v: max(v) - min(v))(_nonempty(a, "range")),
    "norm": lambda a: math.sqrt(sum(x * x for x in _numbers(a, "norm"))),
    "percentile": _percentile,
    "ceil": _one(math.ceil, "ceil"),
    "floor": _one(math.floor, "floor"),
    "round": _one(round, "round"),
    "lg": _one(math.log2, "lg"),
    "ln": _one(math.log, "ln"),
    "log": _one(math.log10, "log"),
    "val": _val,
    "rand": lambda a: random.random(),
    "time": lambda a: Timestamp(time.time()),
}


def _type(v: Value) -> str:
    return {
        float: "a number",
        str: "a string",
        tuple: "a vector",
        Interval: "a time interval",
        Timestamp: "a timestamp",
        Metric: "a metric (use its GetSample method)",
    }[type(v)]


@dataclass
class Context:
    """What a formula sees: service variables, the pool's sample history, the time."""

    variables: dict[str, Value]
    history: SampleHistory
    now: float


def _arith(op: str, a: Value, b: Value) -> Value:
    if isinstance(a, tuple) or isinstance(b, tuple):
        left = a if isinstance(a, tuple) else None
        right = b if isinstance(b, tuple) else None
        if left is not None and right is not None:
            if len(left) != len(right):
                raise _fail(f"vectors of different lengths in {op!r}")
            return tuple(float(_arith(op, x, y)) for x, y in zip(left, right, strict=True))  # type: ignore[arg-type]
        if left is not None and isinstance(b, float):
            return tuple(float(_arith(op, x, b)) for x in left)  # type: ignore[arg-type]
        if right is not None and isinstance(a, float):
            return tuple(float(_arith(op, a, y)) for y in right)  # type: ignore[arg-type]
    if isinstance(a, float) and isinstance(b, float):
        if op in "/%" and b == 0:
            raise _fail("division by zero")
        return {
            "+": a + b,
            "-": a - b,
            "*": a * b,
            "/": a / b if b else 0.0,
            "%": math.fmod(a, b) if b else 0.0,
        }[op]
    if isinstance(a, Interval) and isinstance(b, float) and op in "*/":
        if op == "/" and b == 0:
            raise _fail("division by zero")
        return Interval(a.seconds * b if op == "*" else a.seconds / b)
    if isinstance(a, float) and isinstance(b, Interval) and op == "*":
        return Interval(a * b.seconds)
    if isinstance(a, Interval) and isinstance(b, Interval) and op in "+-":
        return Interval(a.seconds + b.seconds if op == "+" else a.seconds - b.seconds)
    if isinstance(a, Interval) and isinstance(b, Interval) and op == "/":
        if b.seconds == 0:
            raise _fail("division by zero")
        return a.seconds / b.seconds
    if isinstance(a, Timestamp) and isinstance(b, Interval) and op in "+-":
        return Timestamp(a.seconds + b.seconds if op == "+" else a.seconds - b.seconds)
    if isinstance(a, Timestamp) and isinstance(b, Timestamp) and op == "-":
        return Interval(a.seconds - b.seconds)
    raise _fail(f"cannot apply {op!r} to {_type(a)} and {_type(b)}")


def _scalar(v: Value) -> float:
    if isinstance(v, float):
        return v
    if isinstance(v, Interval | Timestamp):
        return v.seconds
    raise _fail(f"expected a number, got {_type(v)}")


def _compare(op: str, a: Value, b: Value) -> float:
    if isinstance(a, str) or isinstance(b, str):
        if op not in ("==", "!="):
            raise _fail(f"cannot compare strings with {op!r}")
        same = isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()
        return float(same if op == "==" else not same)
    x, y = _scalar(a), _scalar(b)
    result = {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    return float(result)


class _Evaluator:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def eval(self, node: Node) -> Value:
        kind = node[0]
        if kind == "num":
            return float(node[1])
        if kind == "str":
            return str(node[1])
        if kind == "name":
            name = str(node[1])
            if name in TIME_INTERVALS:
                return Interval(TIME_INTERVALS[name])
            return name.lower()
        if kind == "var":
            return self.variable(str(node[1]))
        if kind == "vec":
            return tuple(_numbers([self.eval(n) for n in node[1]], "{...}"))
        if kind == "un":
            return self.unary(str(node[1]), self.eval(node[2]))
        if kind == "bin":
            return self.binary(str(node[1]), node[2], node[3])
        if kind == "if":
            return self.eval(node[2]) if _scalar(self.eval(node[1])) != 0 else self.eval(node[3])
        if kind == "call":
            return _FUNCTIONS[str(node[1])]([self.eval(n) for n in node[2]])
        if kind == "method":
            return self.method(self.eval(node[1]), str(node[2]), [self.eval(n) for n in node[3]])
        raise _fail(f"unknown syntax {kind!r}")

    def variable(self, name: str) -> Value:
        if name in self.ctx.variables:
            return self.ctx.variables[name]
        if name in SAMPLE_METRICS:
            return Metric(name)
        raise _fail(f"{name} is used before it is assigned")

    @staticmethod
    def unary(op: str, v: Value) -> Value:
        if op == "!":
            return float(_scalar(v) == 0)
        if isinstance(v, tuple):
            return tuple(-x for x in v) if op == "-" else v
        if isinstance(v, Interval):
            return Interval(-v.seconds) if op == "-" else v
        x = _scalar(v)
        return -x if op == "-" else x

    def binary(self, op: str, left: Node, right: Node) -> Value:
        if op == "&&":
            return float(_scalar(self.eval(left)) != 0 and _scalar(self.eval(right)) != 0)
        if op == "||":
            return float(_scalar(self.eval(left)) != 0 or _scalar(self.eval(right)) != 0)
        a, b = self.eval(left), self.eval(right)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return _compare(op, a, b)
        return _arith(op, a, b)

    def method(self, target: Value, name: str, args: list[Value]) -> Value:
        if not isinstance(target, Metric):
            raise _fail(f"{name}() is a method of service metrics, not of {_type(target)}")
        h, now, metric = self.ctx.history, self.ctx.now, target.name
        lname = name.lower()
        if lname == "getsample":
            return self.get_sample(metric, args)
        if lname == "getsamplepercent":
            if len(args) != 1 or not isinstance(args[0], Interval):
                raise _fail("GetSamplePercent() takes a time interval")
            return h.percent(args[0].seconds, now)
        if lname == "count":
            return float(len(h.samples))
        if lname == "getsampleperiod":
            return Interval(h.period)
        if lname == "historybegintime":
            return Timestamp(h.samples[0][0] if h.samples else now)
        raise _fail(f"unknown method {name!r} of {metric}")

    def get_sample(self, metric: str, args: list[Value]) -> Value:
        h, now = self.ctx.history, self.ctx.now
        if not 1 <= len(args) <= 2:
            raise _fail("GetSample() takes a count or a time interval, and optionally a percentage")
        what = args[0]
        if isinstance(what, float):
            values = h.last(metric, int(what))
            if len(values) < int(what) or not values:
                raise _fail(f"{metric}.GetSample({int(what)}): only {len(values)} sample(s) are available")
            return values
        if not isinstance(what, Interval):
            raise _fail("GetSample() takes a count or a time interval")
        if len(args) == 2:
            wanted = _scalar(args[1])
            have = h.percent(what.seconds, now)
            if have < wanted:
                raise _fail(f"{metric}.GetSample: {have:.0f}% of samples available, {wanted:.0f}% required")
        values = h.within(metric, what.seconds, now)
        if not values:
            raise _fail(f"{metric}.GetSample: no sample in the interval")
        return values


def evaluate(statements: list[Statement], ctx: Context) -> dict[str, Value]:
    """Run the statements; return every variable assigned (service variables first).

    Raises :class:`FormulaError` (phase ``evaluate``) when a statement fails.
    """
    assigned: dict[str, Value] = {}
    ev = _Evaluator(ctx)
    for st in statements:
        value = ev.eval(st.expr)
        if st.target is not None:
            if isinstance(value, Metric):
                raise _fail(f"{st.target}: a metric cannot be assigned; use its GetSample method")
            ctx.variables[st.target] = value
            assigned[st.target] = value
    return assigned


def render(value: Value) -> str:
    """A value as ``autoScaleRun.results`` shows it."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, tuple):
        return "[" + ",".join(render(v) for v in value) + "]"
    if isinstance(value, Interval | Timestamp):
        return render(value.seconds)
    if isinstance(value, Metric):
        return value.name
    return value
