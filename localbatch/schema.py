"""Request-body validation, declared by the installed SDK's models rather than written by hand.

The SDK (azure-batch 15) is generated from the REST specification the service
implements. Its models and enums are read from ``schema_data.json``, which
:mod:`localbatch.schemagen` derives from the SDK's source (a test fails when
the file is stale for the installed SDK): the server never imports or parses
the SDK, whose 635 KB ``_models.py`` cost ~20 MB of transient memory to parse.
The same tables serve :mod:`localbatch.bodies`' unknown-property check.
Each model compiles once into a :class:`ModelSchema`: per property its
wire name, its kind (string, integer, number, boolean, enum and its values,
ISO 8601 duration, date-time, list of X, map of X, nested model) and whether it
is required (the SDK's annotation is not ``Optional[...]``; its docstring says
"Required."). What the SDK cannot say (ranges, lengths, id patterns, one
property needing another) is declared by the caller as :class:`Limit` entries
and named :data:`Rule` functions, keyed by model, and compiled in.

:meth:`Validator.validate` walks a body as its model, depth first, and raises
the service's 400 on the first fault, naming the property by its path
(``resourceFiles[0].filePath``): ``MissingRequiredProperty`` for a required
property absent or null, ``InvalidPropertyValue`` for a wrong type, an enum
value the model does not define, a malformed duration or date-time, or a
:class:`Limit` or rule broken. Properties no model defines are left alone here
(``bodies`` refuses them before the handler runs). Values are normalised in
place as the service reads them: an integer sent as a decimal string (``az
batch`` sends ``"2"``) becomes the integer, an enum value its SDK spelling
(Batch matches enum values case-insensitively).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import isodate

from localbatch.errors import invalid_property, missing_property

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_STRING = 32768  # the longest string property localbatch accepts unless a Limit says otherwise

# A semantic rule of one model: called with the object (already type-checked) and the path prefix
# of its properties ("" at the top, "startTask." below); raises a BatchError to refuse it.
Rule = Callable[[dict[str, Any], str], None]


@dataclass(frozen=True)
class Limit:
    """What the SDK's model cannot say about one property.

    ``lo``/``hi`` bound an integer (or the item count of a list); ``max_length`` a string;
    ``pattern`` must match a whole string (``reason`` says what it wants); ``required`` makes an
    optional property required (the service needs it where the spec does not say so);
    ``allow_empty`` lets a required string be ``""``.
    """

    lo: int | None = None
    hi: int | None = None
    max_length: int | None = None
    pattern: re.Pattern[str] | None = None
    reason: str = ""
    required: bool = False
    allow_empty: bool = False


@dataclass(frozen=True, slots=True)
class Field:
    """One property (or list item) compiled from the SDK: kind, constraints, what it holds."""

    name: str
    kind: str  # str int float bool enum duration datetime model list dict any
    required: bool = False
    model: str = ""  # kind "model": the SDK model's name
    values: Mapping[str, str] | None = None  # kind "enum": lowercased value -> the SDK's spelling
    item: Field | None = None  # kind "list"/"dict": the element
    lo: int = INT32_MIN
    hi: int = INT32_MAX
    max_length: int = MAX_STRING
    pattern: re.Pattern[str] | None = None
    reason: str = ""
    allow_empty: bool = False

    def holds_model(self) -> bool:
        """Whether values of this field contain objects of a model (what the unknown walk visits)."""
        f: Field | None = self
        while f is not None and f.kind in ("list", "dict"):
            f = f.item
        return f is not None and f.kind == "model"


@dataclass(frozen=True)
class ModelSchema:
    """One SDK model: its properties by wire name, the required ones, and its rules."""

    name: str
    fields: dict[str, Field]
    required: tuple[Field, ...]
    nested: tuple[Field, ...]  # the fields whose values hold models
    rules: tuple[Rule, ...] = field(default=())


# ----------------------------------------------------------------------------- durations


_DURATION_SHAPE = re.compile(r"P(?!T?$)[0-9.,WDYMTHS]*(?<!T)")


@functools.lru_cache(maxsize=4096)  # tasks repeat their durations; isodate takes ~20 us each
def parse_duration(text: str) -> timedelta:
    """ISO 8601 duration (``PT1H30M``, ``P1DT2H``, ``PT0.5S``, ``P1W``) -> timedelta, as Batch reads it.

    Parsed by isodate; a year counts 365 days and a month 30 (as .NET's TimeSpan reader
    does); too large for a timedelta is ``timedelta.max`` (Batch's "unlimited" default is
    ``P10675199DT2H48M5.4775807S``). Raises ValueError for anything else, including a sign,
    ``P`` or ``PT`` alone and a trailing ``T``. Results are cached (a timedelta is immutable).
    """
    if not _DURATION_SHAPE.fullmatch(text):
        raise ValueError(f"not an ISO 8601 duration: {text[:64]!r}")
    try:
        value = isodate.parse_duration(text)
    except OverflowError:
        return timedelta.max
    except (isodate.ISO8601Error, ValueError, ArithmeticError):
        raise ValueError(f"not an ISO 8601 duration: {text[:64]!r}") from None
    if isinstance(value, isodate.Duration):
        try:
            days = float(value.years) * 365 + float(value.months) * 30
            return value.tdelta + timedelta(days=days)
        except OverflowError:
            return timedelta.max
    return value


def _parse_datetime(text: str) -> datetime:
    """An ISO 8601 date-time (``2026-12-01T17:00:05.1234567Z``, as .NET writes it); ValueError if not."""
    try:
        value = isodate.parse_datetime(text)
        value.utcoffset()  # an offset of 24 hours or more fails only here
        return value
    except (ValueError, OverflowError, IndexError, TypeError):
        raise ValueError(f"not an ISO 8601 date-time: {text[:64]!r}") from None


# ----------------------------------------------------------------------------- compiling

_KINDS = frozenset({"str", "int", "float", "bool", "enum", "model", "list", "dict", "duration", "datetime"})
DATA_FILE = Path(__file__).with_name("schema_data.json")


@dataclass(frozen=True)
class Tables:
    """The SDK's models and enums as :mod:`localbatch.schemagen` wrote them (no SDK import)."""

    sdk: str  # "azure-batch 15.1.0": the SDK the file was generated from
    enums: dict[str, tuple[str, ...]]
    models: dict[str, dict[str, Any]]  # name -> {"required": [wire], "properties": {wire: type code}}


def load_tables() -> Tables:
    """Read ``schema_data.json``. Not cached: :func:`compile_models` reads it once per validator,
    and the compiled schema keeps only what it needs. Raises OSError/ValueError if unreadable."""
    data = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    enums = {name: tuple(values) for name, values in data["enums"].items()}
    return Tables(sdk=data["sdk"], enums=enums, models=data["models"])


class _Compiler:
    """Turns the tables' type codes into :class:`Field` objects, sharing one value map per enum."""

    def __init__(self, tables: Tables):
        self._tables = tables
        self._values: dict[str, Mapping[str, str]] = {}

    def field(self, name: str, code: str, required: bool, limit: Limit | None) -> Field:
        kind, _, rest = code.partition(":")
        item = self.field("", rest, False, None) if kind in ("list", "dict") else None
        kind = kind if kind in _KINDS else "any"  # "Any", bytes and unions: accepted unchecked
        values = self._enum(rest) if kind == "enum" else None
        if kind == "enum" and not values:
            kind = "str"  # an enum the SDK lists no values for: any string
        lim = limit or Limit()
        default_lo = 0 if kind == "list" else INT32_MIN
        return Field(
            name=name,
            kind=kind,
            required=required or lim.required,
            model=rest if kind == "model" else "",
            values=values,
            item=item,
            lo=default_lo if lim.lo is None else lim.lo,
            hi=INT32_MAX if lim.hi is None else lim.hi,
            max_length=MAX_STRING if lim.max_length is None else lim.max_length,
            pattern=lim.pattern,
            reason=lim.reason,
            allow_empty=lim.allow_empty,
        )

    def _enum(self, name: str) -> Mapping[str, str] | None:
        if name not in self._values:
            self._values[name] = {v.lower(): v for v in self._tables.enums.get(name, ())}
        return self._values[name] or None


def compile_models(
    limits: Mapping[tuple[str, str], Limit], rules: Mapping[str, tuple[Rule, ...]]
) -> dict[str, ModelSchema]:
    """Every SDK model as a :class:`ModelSchema`, with ``limits`` ((model, property) -> Limit) and
    ``rules`` (model -> rules) compiled in. Raises KeyError naming an entry of either table that
    no SDK model or property matches (a typo would switch a check off)."""
    tables = load_tables()
    compiler = _Compiler(tables)
    out: dict[str, ModelSchema] = {}
    for model, entry in tables.models.items():
        required = set(entry["required"])
        fields = {
            wire: compiler.field(wire, code, wire in required, limits.get((model, wire)))
            for wire, code in entry["properties"].items()
        }
        out[model] = ModelSchema(
            name=model,
            fields=fields,
            required=tuple(f for f in fields.values() if f.required),
            nested=tuple(f for f in fields.values() if f.holds_model()),
            rules=tuple(rules.get(model, ())),
        )
    stray = [f"{m}.{p}" for m, p in limits if p not in out.get(m, ModelSchema(m, {}, (), ())).fields]
    stray += [m for m in rules if m not in out]
    if stray:
        raise KeyError(f"validation tables name what the SDK does not define: {', '.join(stray)}")
    return out


# ----------------------------------------------------------------------------- validating


class Validator:
    """Validates bodies against the compiled SDK models (compiled on first use, once per process)."""

    def __init__(self, limits: Mapping[tuple[str, str], Limit], rules: Mapping[str, tuple[Rule, ...]]):
        self._limits = limits
        self._rules = rules
        self._models: dict[str, ModelSchema] | None = None
        self._lock = threading.Lock()

    @property
    def models(self) -> dict[str, ModelSchema]:
        """All compiled models by SDK name."""
        if self._models is None:
            with self._lock:
                if self._models is None:
                    self._models = compile_models(self._limits, self._rules)
        return self._models

    def validate(self, body: dict[str, Any], model: str, prefix: str = "") -> dict[str, Any]:
        """Check ``body`` as the SDK model ``model`` (normalising it in place); return it.

        ``prefix`` is put before every property path in an error (``"startTask."``).
        Raises :class:`~localbatch.errors.BatchError` (400) on the first fault.
        """
        self._object(body, self.models[model], prefix[:-1] if prefix.endswith(".") else prefix)
        return body

    def _object(self, value: Any, schema: ModelSchema, path: str) -> None:
        if not isinstance(value, dict):
            raise invalid_property(path, value, "expected a JSON object")
        prefix = path + "." if path else ""
        for f in schema.required:
            if value.get(f.name) is None:
                raise missing_property(prefix + f.name)
        fields = schema.fields
        check = self._value
        for key, item in value.items():
            prop = fields.get(key)
            if prop is not None and item is not None:
                new = check(item, prop, prefix + key)
                if new is not item:
                    value[key] = new
        if schema.rules:
            for rule in schema.rules:
                rule(value, prefix)

    def _value(self, value: Any, f: Field, path: str) -> Any:
        kind = f.kind
        if kind == "str":
            return _string(value, f, path)
        if kind == "model":
            self._object(value, self.models[f.model], path)
            return value
        if kind == "list":
            self._list(value, f, path)
            return value
        if kind == "int":
            return _integer(value, f, path)
        if kind == "enum":
            return _enum(value, f, path)
        if kind == "bool":
            if not isinstance(value, bool):
                raise invalid_property(path, value, "expected true or false")
            return value
        if kind == "duration":
            _text(value, path)
            try:
                parse_duration(value)
            except ValueError:
                raise invalid_property(path, value, "not an ISO 8601 duration") from None
            return value
        if kind == "datetime":
            _text(value, path)
            try:
                _parse_datetime(value)
            except ValueError:
                raise invalid_property(path, value, "not an ISO 8601 date-time") from None
            return value
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid_property(path, value, "expected a number")
            return value
        if kind == "dict":
            return self._map(value, f, path)
        return value

    def _list(self, value: Any, f: Field, path: str) -> None:
        if not isinstance(value, list):
            raise invalid_property(path, "...", "expected a JSON array")
        if not f.lo <= len(value) <= f.hi:
            raise invalid_property(path, len(value), f"must hold between {f.lo} and {f.hi} items")
        item = f.item
        if item is None or item.kind == "any":
            return
        for i, element in enumerate(value):
            new = self._value(element, item, f"{path}[{i}]")
            if new is not element:
                value[i] = new

    def _map(self, value: Any, f: Field, path: str) -> Any:
        if not isinstance(value, dict):
            raise invalid_property(path, value, "expected a JSON object")
        if f.item is not None and f.item.kind != "any":
            for key, element in value.items():
                new = self._value(element, f.item, f"{path}.{key}")
                if new is not element:
                    value[key] = new
        return value


def _text(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise invalid_property(path, value, "expected a string")


def _string(value: Any, f: Field, path: str) -> str:
    if not isinstance(value, str):
        raise invalid_property(path, value, "expected a string")
    if len(value) > f.max_length:
        raise invalid_property(path, value[:64], f"longer than {f.max_length} characters")
    if not value and f.required and not f.allow_empty:
        raise invalid_property(path, value, "must not be empty")
    if f.pattern is not None and not f.pattern.fullmatch(value):
        raise invalid_property(path, value, f.reason)
    return value


_INT_STRING_RE = re.compile(r"\s*[+-]?[0-9]{1,19}\s*")


def _integer(value: Any, f: Field, path: str) -> int:
    """An integer, or a string holding a decimal one (the service's JSON reader accepts both)."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT_STRING_RE.fullmatch(value):
        number = int(value)
    else:
        number = None
    if number is None:
        raise invalid_property(path, value, "expected an integer")
    if not f.lo <= number <= f.hi:
        raise invalid_property(path, value, f"must be between {f.lo} and {f.hi}")
    return number


def _enum(value: Any, f: Field, path: str) -> str:
    if not isinstance(value, str):
        raise invalid_property(path, value, "expected a string")
    assert f.values is not None
    spelled = f.values.get(value.lower())
    if spelled is None:
        raise invalid_property(path, value, "must be one of " + ", ".join(sorted(f.values.values())))
    return spelled
