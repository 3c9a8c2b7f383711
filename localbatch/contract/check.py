"""Check one HTTP response against the Batch contract (:mod:`localbatch.contract.spec`).

:func:`check_response` is a pure function: a response in (status, headers,
body bytes, plus the request's method, raw path and headers), a list of
:class:`Violation` out, empty when the response is what the spec allows.
Violations name the operation, the JSON path or header and what is wrong;
they never quote a header value and quote a body value only when it is a
short identifier-like word (enum values), so no SAS signature or key can end
up in a violation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from localbatch.contract.spec import Contract, Operation, Prop, TypeRef

#: The OData annotations the live service adds to a response body.
ODATA_ANNOTATIONS = frozenset({"odata.metadata"})
PAGE_ANNOTATIONS = frozenset({"odata.metadata", "odata.nextLink"})

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_DURATION = re.compile(r"-?P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?")
_INTEGER = re.compile(r"-?\d+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SHOWABLE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True)
class Violation:
    """One way a response breaks the contract (safe to log: no header or secret values)."""

    operation: str
    method: str
    path: str
    status: int
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class Exchange:
    """What the checker needs of one request and its response.

    ``raw_path`` is the request path as sent (percent-encoded, no query);
    header mappings must be case-insensitive (aiohttp's and azure-core's are).
    ``body`` is None when the body was streamed and cannot be inspected;
    ``query`` is the raw query string.
    """

    method: str
    raw_path: str
    request_headers: Mapping[str, str]
    status: int
    headers: Mapping[str, str]
    body: bytes | None
    query: str = ""

    @property
    def selected(self) -> bool:
        """Whether the request used ``$select`` (so required properties may be absent)."""
        return "$select=" in unquote(self.query)


#: Operations earlier api-versions define and 2025-06-01 (the contract's version) dropped:
#: (method, path) -> the first version without it. Their answers are outside this contract.
DROPPED_OPERATIONS = {("GET", "/nodeagentskus"): "2020-09-01"}


def _of_an_earlier_version(ex: Exchange) -> bool:
    """Whether ``ex`` is a dropped operation, asked for with an api-version that still had it."""
    dropped = DROPPED_OPERATIONS.get((ex.method, ex.raw_path.rstrip("/").lower()))
    version = parse_qs(ex.query).get("api-version", [""])[0]
    return dropped is not None and bool(version) and version < dropped


def check_response(contract: Contract, ex: Exchange) -> list[Violation]:
    """Every violation of the Batch contract in one response (empty list: valid)."""
    op = contract.match(ex.method, ex.raw_path)
    problems: list[str] = []
    if "request-id" not in ex.headers:
        problems.append("header request-id is missing")
    if ex.status >= 400:
        problems += _check_error(contract, ex)
    elif op is None:
        if not _of_an_earlier_version(ex):
            problems.append(f"no operation of the spec answers {ex.method} on this path with {ex.status}")
    else:
        problems += _check_success(contract, op, ex)
    name = op.name if op else "unknown"
    path = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", ex.raw_path[:300])
    return [Violation(name, ex.method, path, ex.status, p) for p in problems]


def _check_success(contract: Contract, op: Operation, ex: Exchange) -> list[str]:
    if ex.status == 304:
        asked = "If-None-Match" in ex.request_headers or "If-Modified-Since" in ex.request_headers
        if not (op.conditional and asked):
            return ["304 Not Modified to a request that was not conditional (or an operation that is not)"]
        return _check_empty(ex)
    if ex.status not in op.statuses:
        return [f"status {ex.status} is not one the spec declares ({', '.join(map(str, op.statuses))})"]
    problems = _check_headers(op, ex)
    if ex.method == "HEAD":
        return problems + _check_empty(ex)
    if op.body is None:
        return problems + ([] if op.stream else _check_empty(ex))
    doc = _json_body(ex, problems)
    if doc is None:
        return problems
    if op.paged:
        problems += _check_page(contract, op.body, doc, ex.selected)
    else:
        problems += check_model(contract, op.body, doc, "$", ODATA_ANNOTATIONS, not ex.selected)
    return problems


def _check_error(contract: Contract, ex: Exchange) -> list[str]:
    if ex.method == "HEAD" or ex.body is None:
        return []
    problems: list[str] = []
    doc = _json_body(ex, problems)
    if doc is None:
        return problems
    return problems + check_model(contract, "BatchError", doc, "$", ODATA_ANNOTATIONS)


def _check_empty(ex: Exchange) -> list[str]:
    if ex.body:
        return [f"a body of {len(ex.body)} bytes where the spec declares none"]
    return []


def _json_body(ex: Exchange, problems: list[str]) -> Any:
    ctype = ex.headers.get("Content-Type", "")
    if not ctype.lower().startswith("application/json"):
        problems.append("Content-Type is not application/json for a JSON body")
    if not ex.body:
        problems.append("the JSON body is empty")
        return None
    try:
        return json.loads(ex.body)
    except (ValueError, UnicodeDecodeError):
        problems.append("the body is not valid JSON")
        return None


def _check_page(contract: Contract, model: str, doc: Any, selected: bool) -> list[str]:
    if not isinstance(doc, dict):
        return [f"$ is {_kind(doc)}, expected a page object"]
    problems = [f"$.{k}: unknown property of a page" for k in doc if k not in PAGE_ANNOTATIONS | {"value"}]
    items = doc.get("value")
    if not isinstance(items, list):
        return [*problems, f"$.value is {_kind(items)}, expected an array"]
    for i, item in enumerate(items):
        problems += check_model(contract, model, item, f"$.value[{i}]", required=not selected)
    link = doc.get("odata.nextLink")
    if link is not None and not isinstance(link, str):
        problems.append(f"$.odata.nextLink is {_kind(link)}, expected a string")
    return problems


def _check_headers(op: Operation, ex: Exchange) -> list[str]:
    problems: list[str] = []
    for name, fmt in op.headers.items():
        value = ex.headers.get(name)
        if name == "client-request-id":
            problems += _check_echo(ex)
            continue
        if name == "request-id":
            continue  # checked on every response
        if value is None:
            # aiohttp writes Content-Length and Content-Type itself when it sends the response.
            if name.lower() not in ("content-length", "content-type"):
                problems.append(f"header {name} is missing")
            continue
        if not _header_ok(fmt, value):
            problems.append(f"header {name} is not in the spec's format ({fmt})")
    return problems


def _check_echo(ex: Exchange) -> list[str]:
    sent = ex.request_headers.get("client-request-id")
    asked = ex.request_headers.get("return-client-request-id", "").lower() == "true"
    echoed = ex.headers.get("client-request-id")
    if sent and asked and echoed is None:
        return ["header client-request-id is not echoed although return-client-request-id was true"]
    if echoed is not None and sent and echoed != sent:
        return ["header client-request-id differs from the request's"]
    return []


def _header_ok(fmt: str, value: str) -> bool:
    if fmt == "rfc-1123":
        try:
            parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return False
        return value.endswith(" GMT")
    if fmt == "bool":
        return value in ("true", "false")
    if fmt == "int":
        return _INTEGER.fullmatch(value) is not None
    return True


# ---------------------------------------------------------------------- JSON schema


def check_model(
    contract: Contract,
    model: str,
    doc: Any,
    where: str,
    extra: frozenset[str] = frozenset(),
    required: bool = True,
) -> list[str]:
    """Violations of ``doc`` (a decoded JSON value) against model ``model``; ``where`` is its JSON path.

    ``extra`` names annotations allowed besides the model's properties;
    ``required=False`` (a ``$select`` projection) skips the check for missing
    required properties at this level only.
    """
    if not isinstance(doc, dict):
        return [f"{where} is {_kind(doc)}, expected an object ({model})"]
    props = contract.models.get(model)
    if props is None:
        return [f"{where}: the SDK has no model {model}"]
    problems: list[str] = []
    for key, value in doc.items():
        prop = props.get(key)
        if prop is None:
            if key not in extra:
                problems.append(f"{where}.{_show_key(key)}: unknown property of {model}")
            continue
        problems += _check_value(contract, prop, prop.type, value, f"{where}.{key}")
    for key, prop in props.items():
        if required and prop.required and key not in doc:
            problems.append(f"{where}.{key}: required property of {model} is missing")
    return problems


def _check_value(contract: Contract, prop: Prop, t: TypeRef, value: Any, where: str) -> list[str]:
    if value is None:
        return [f"{where} is null (the service leaves absent properties out)"]
    kind = t.kind
    if kind == "model":
        return check_model(contract, t.name, value, where)
    if kind in ("list", "dict") and t.item is not None:
        return _check_container(contract, prop, t, value, where)
    if kind == "enum":
        allowed = contract.enums.get(t.name, frozenset())
        if not isinstance(value, str):
            return [f"{where} is {_kind(value)}, expected a string of enum {t.name}"]
        if value not in allowed:
            return [f"{where}: {_show_value(value)} is not a value of enum {t.name}"]
        return []
    ok, expected = _primitive_ok(kind, prop.format, value)
    return [] if ok else [f"{where} is {_kind(value)}, expected {expected}"]


def _check_container(contract: Contract, prop: Prop, t: TypeRef, value: Any, where: str) -> list[str]:
    assert t.item is not None
    problems: list[str] = []
    if t.kind == "list":
        if not isinstance(value, list):
            return [f"{where} is {_kind(value)}, expected an array"]
        for i, item in enumerate(value):
            problems += _check_value(contract, prop, t.item, item, f"{where}[{i}]")
        return problems
    if not isinstance(value, dict):
        return [f"{where} is {_kind(value)}, expected an object (map)"]
    for key, item in value.items():
        problems += _check_value(contract, prop, t.item, item, f"{where}[{_show_key(key)}]")
    return problems


def _primitive_ok(kind: str, fmt: str | None, value: Any) -> tuple[bool, str]:
    """(value fits, what was expected) for a primitive property."""
    if kind == "int" and fmt == "str":
        return isinstance(value, str) and _INTEGER.fullmatch(value) is not None, "an integer as a string"
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    if kind == "bool":
        return isinstance(value, bool), "a boolean"
    if kind == "str":
        return isinstance(value, str), "a string"
    if kind == "datetime":
        return isinstance(value, str) and _RFC3339.fullmatch(value) is not None, "an RFC 3339 date-time"
    if kind == "duration":
        return isinstance(value, str) and _DURATION.fullmatch(value) is not None, "an ISO 8601 duration"
    if kind == "bytes":
        return isinstance(value, str) and _BASE64.fullmatch(value) is not None, "base64 text"
    return True, "anything"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show_key(key: str) -> str:
    return key if _SHOWABLE.fullmatch(key) else f"<a {len(key)}-character name>"


def _show_value(value: str) -> str:
    return repr(value) if _SHOWABLE.fullmatch(value) else f"<a {len(value)}-character string>"
