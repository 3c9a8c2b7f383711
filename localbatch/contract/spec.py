"""The Batch data-plane contract, derived from the installed azure-batch SDK's source.

The SDK (azure-batch 15) is generated from the same REST specification the
service implements, so its source is a faithful, machine-readable copy of it:

* ``models/_models.py``: one class per schema; each ``rest_field(name=...,
  format=..., visibility=...)`` with its annotated type is one property.
* ``models/_enums.py``: one class per enum; its string constants are the
  allowed values.
* ``_operations/_operations.py``: one method per operation; from it and its
  ``build_batch_*_request`` function come the HTTP method, the URL template,
  the accepted status codes, the model the response body deserializes to and
  the response headers the operation reads.

The files are read with :mod:`ast`, never imported, and nothing is cached on
disk: :func:`load` derives the contract afresh from whatever SDK is installed.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PRIMITIVES = {"str", "int", "float", "bool", "bytes", "Any", "datetime", "duration"}


@dataclass(frozen=True)
class TypeRef:
    """A property's type: ``kind`` is a primitive name, ``list``, ``dict``, ``model`` or ``enum``.

    ``name`` is the model or enum name (``model``/``enum``), ``item`` the
    element type (``list``/``dict``); ``kind == "Any"`` is accepted unchecked.
    """

    kind: str
    name: str = ""
    item: TypeRef | None = None


@dataclass(frozen=True)
class Prop:
    """One JSON property of a model: its wire name, type, format and whether it is required."""

    rest_name: str
    type: TypeRef
    format: str | None
    required: bool


@dataclass(frozen=True)
class Operation:
    """One REST operation as the SDK calls it.

    ``statuses`` are the success codes the SDK accepts; ``headers`` maps each
    response header it reads to its SDK format (``str``, ``rfc-1123``,
    ``bool``, ``int``); ``body`` is the model of the response body (None: no
    JSON body), ``paged`` that the body is a page ``{"value": [body...]}``,
    ``stream`` that the body is the raw bytes of a file; ``conditional`` that
    the operation accepts ``If-None-Match``/``If-Modified-Since`` (so a 304 is
    an answer it may get).
    """

    name: str
    method: str
    template: str
    statuses: tuple[int, ...]
    headers: dict[str, str]
    body: str | None
    paged: bool
    stream: bool
    conditional: bool
    pattern: re.Pattern[str] = field(compare=False, repr=False)
    literal_weight: int = 0


@dataclass(frozen=True)
class Contract:
    """All models, enums and operations of the installed SDK."""

    models: dict[str, dict[str, Prop]]
    enums: dict[str, frozenset[str]]
    operations: tuple[Operation, ...]

    def match(self, method: str, raw_path: str) -> Operation | None:
        """The operation answering ``method raw_path`` (path without query), or None.

        Empty segments are dropped first, as localbatch's router does (``files//`` is the
        file listing), so the check judges the operation that was actually served.
        """
        raw_path = "/" + "/".join(s for s in raw_path.split("/") if s)
        best: Operation | None = None
        for op in self.operations:
            fits = op.method == method and op.pattern.fullmatch(raw_path) is not None
            if fits and (best is None or op.literal_weight > best.literal_weight):
                best = op
        return best


def sdk_dir() -> Path:
    """The directory of the installed ``azure.batch`` package (found without importing it)."""
    spec = importlib.util.find_spec("azure.batch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the azure-batch SDK is not installed: the contract is derived from it")
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=1)
def load() -> Contract:
    """Derive the contract from the installed SDK (parsed once per process)."""
    root = sdk_dir()
    enums = _parse_enums(ast.parse((root / "models" / "_enums.py").read_text(encoding="utf-8")))
    models = _parse_models(ast.parse((root / "models" / "_models.py").read_text(encoding="utf-8")), enums)
    ops_tree = ast.parse((root / "_operations" / "_operations.py").read_text(encoding="utf-8"))
    return Contract(models, enums, tuple(_parse_operations(ops_tree)))


@lru_cache(maxsize=1)
def load_models() -> dict[str, dict[str, Prop]]:
    """The SDK's models only (what request validation needs; a third of :func:`load`'s time)."""
    tree = ast.parse((sdk_dir() / "models" / "_models.py").read_text(encoding="utf-8"))
    return _parse_models(tree, load_enums())


@lru_cache(maxsize=1)
def load_enums() -> dict[str, frozenset[str]]:
    """The SDK's enums: name -> allowed values (what request validation checks enum values against)."""
    return _parse_enums(ast.parse((sdk_dir() / "models" / "_enums.py").read_text(encoding="utf-8")))


# ---------------------------------------------------------------------- enums and models


def _parse_enums(tree: ast.Module) -> dict[str, frozenset[str]]:
    enums: dict[str, frozenset[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            values = [
                stmt.value.value
                for stmt in node.body
                if isinstance(stmt, ast.Assign)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ]
            enums[node.name] = frozenset(values)
    return enums


def _parse_models(tree: ast.Module, enums: dict[str, frozenset[str]]) -> dict[str, dict[str, Prop]]:
    models: dict[str, dict[str, Prop]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        props: dict[str, Prop] = {}
        for stmt in node.body:
            prop = _parse_field(stmt, enums)
            if prop is not None:
                props[prop.rest_name] = prop
        models[node.name] = props
    return models


def _parse_field(stmt: ast.stmt, enums: dict[str, frozenset[str]]) -> Prop | None:
    if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.value, ast.Call)):
        return None
    call = stmt.value
    if not (isinstance(call.func, ast.Name) and call.func.id == "rest_field"):
        return None
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    name_node = kw.get("name")
    if isinstance(name_node, ast.Constant) and isinstance(name_node.value, str):
        rest_name = name_node.value
    elif isinstance(stmt.target, ast.Name):
        rest_name = stmt.target.id  # no name=: the wire name is the attribute's
    else:
        return None
    fmt_node = kw.get("format")
    fmt = fmt_node.value if isinstance(fmt_node, ast.Constant) and isinstance(fmt_node.value, str) else None
    visibility = _constants(kw.get("visibility"))
    optional, type_ref = _annotation(stmt.annotation, enums)
    readable = not visibility or "read" in visibility
    return Prop(rest_name, type_ref, fmt, required=readable and not optional)


def _constants(node: ast.expr | None) -> list[str]:
    if isinstance(node, ast.List):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []


def _annotation(node: ast.expr, enums: dict[str, frozenset[str]]) -> tuple[bool, TypeRef]:
    """(is Optional, type) of an annotation such as ``Optional[list["_models.BatchNode"]]``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _annotation(ast.parse(node.value, mode="eval").body, enums)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        head = node.value.id
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Optional":
            return True, _annotation(args[0], enums)[1]
        if head == "Union":
            refs = [_annotation(a, enums)[1] for a in args]
            # Union[str, "_models.SomeEnum"] is the SDK's idiom for an (extensible) enum.
            named = [r for r in refs if r.kind in ("enum", "model")]
            return False, named[0] if len(named) == 1 else TypeRef("Any")
        if head in ("list", "List"):
            return False, TypeRef("list", item=_annotation(args[0], enums)[1])
        if head in ("dict", "Dict"):
            return False, TypeRef("dict", item=_annotation(args[-1], enums)[1])
        return False, TypeRef("Any")
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "datetime":
            return False, TypeRef("duration" if node.attr == "timedelta" else "datetime")
        return False, _named(node.attr, enums)
    if isinstance(node, ast.Name):
        if node.id in PRIMITIVES:
            return False, TypeRef(node.id)
        return False, _named(node.id, enums)
    return False, TypeRef("Any")


def _named(name: str, enums: dict[str, frozenset[str]]) -> TypeRef:
    return TypeRef("enum" if name in enums else "model", name=name)


# ---------------------------------------------------------------------- operations


def _parse_operations(tree: ast.Module) -> list[Operation]:
    builders = {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("build_")
    }
    ops: dict[str, Operation] = {}
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        for method in cls.body:
            if isinstance(method, ast.FunctionDef):
                op = _parse_operation(method, builders)
                if op is not None and op.name not in ops:
                    ops[op.name] = op
    return list(ops.values())


def _parse_operation(fn: ast.FunctionDef, builders: dict[str, ast.FunctionDef]) -> Operation | None:
    builder = next(
        (
            builders[n.func.id]
            for n in ast.walk(fn)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in builders
        ),
        None,
    )
    if builder is None:
        return None
    method, template = _request_line(builder)
    if not method or not template:
        return None
    statuses: tuple[int, ...] = ()
    headers: dict[str, str] = {}
    body: str | None = None
    paged = stream = False
    for n in ast.walk(fn):
        statuses = statuses or _accepted_statuses(n)
        header = _read_header(n)
        if header:
            headers[header[0]] = header[1]
        model = _deserialized_model(n)
        if model:
            body, paged = model
        if isinstance(n, ast.Attribute) and n.attr in ("iter_bytes", "iter_raw"):
            stream = True
    args = {a.arg for a in builder.args.kwonlyargs}
    conditional = bool({"if_modified_since", "match_condition"} & args)
    pattern, weight = _url_pattern(template)
    return Operation(
        name=builder.name.removeprefix("build_batch_").removesuffix("_request").removesuffix("_internal"),
        method=method,
        template=template,
        statuses=statuses,
        headers=headers,
        body=body,
        paged=paged,
        stream=stream and body is None,
        conditional=conditional,
        pattern=pattern,
        literal_weight=weight,
    )


def _request_line(builder: ast.FunctionDef) -> tuple[str, str]:
    method = template = ""
    for n in ast.walk(builder):
        if (
            isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_url" for t in n.targets)
            and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
        ):
            template = n.value.value
        if (
            isinstance(n, ast.AnnAssign)
            and isinstance(n.target, ast.Name)
            and n.target.id == "_url"
            and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
        ):
            template = n.value.value
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "HttpRequest":
            for k in n.keywords:
                if k.arg == "method" and isinstance(k.value, ast.Constant):
                    method = str(k.value.value)
    return method, template


def _accepted_statuses(n: ast.AST) -> tuple[int, ...]:
    if (
        isinstance(n, ast.Compare)
        and isinstance(n.left, ast.Attribute)
        and n.left.attr == "status_code"
        and len(n.ops) == 1
        and isinstance(n.ops[0], ast.NotIn)
        and isinstance(n.comparators[0], ast.List)
    ):
        elts = n.comparators[0].elts
        return tuple(e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, int))
    return ()


def _read_header(n: ast.AST) -> tuple[str, str] | None:
    """``response_headers["ETag"] = self._deserialize("str", ...)`` -> ("ETag", "str")."""
    if not (isinstance(n, ast.Assign) and len(n.targets) == 1):
        return None
    target, value = n.targets[0], n.value
    if not (
        isinstance(target, ast.Subscript)
        and isinstance(target.value, ast.Name)
        and target.value.id == "response_headers"
        and isinstance(target.slice, ast.Constant)
        and isinstance(value, ast.Call)
        and value.args
        and isinstance(value.args[0], ast.Constant)
    ):
        return None
    return str(target.slice.value), str(value.args[0].value)


def _deserialized_model(n: ast.AST) -> tuple[str, bool] | None:
    """``_deserialize(_models.X, ...)`` -> ("X", False); ``_deserialize(list[_models.X], ...)`` -> paged."""
    if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "_deserialize"):
        return None
    arg = n.args[0] if n.args else None
    if isinstance(arg, ast.Attribute):
        return arg.attr, False
    if isinstance(arg, ast.Subscript) and isinstance(arg.slice, ast.Attribute):
        return arg.slice.attr, True
    return None


def _url_pattern(template: str) -> tuple[re.Pattern[str], int]:
    """A regex over the raw (still percent-encoded) path; literals match case-insensitively.

    ``{filePath}`` may hold slashes (clients send them raw or as ``%2F``).
    """
    parts: list[str] = []
    weight = 0
    for piece in re.split(r"(\{[^}]+\})", template):
        if piece.startswith("{"):
            parts.append(".+" if piece == "{filePath}" else "[^/]+")
        elif piece:
            weight += len(piece)
            parts.append(re.escape(piece))
    return re.compile("(?i)" + "".join(parts) + "/?"), weight
