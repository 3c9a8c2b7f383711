"""The two output formats (text report and counts JSON), atomic writes, and reading counts back.

The formats are specified in the package docstring (:mod:`nodetask`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from nodetask.counting import FileCounts
from nodetask.errors import InputError, OutputError

SCHEMA_VERSION = 1
COUNTS_SUFFIX = "_counts.json"
SEPARATOR = "-" * 30
#: (environment variable, label) of the report's trailer, in the tutorial's spelling.
BATCH_ENV_LINES = (
    ("AZ_BATCH_NODE_ID", "Node: "),
    ("AZ_BATCH_TASK_ID", "Task: "),
    ("AZ_BATCH_JOB_ID", "Job:  "),
    ("AZ_BATCH_POOL_ID", "Pool: "),
)


def ranked(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Every word in report order: count descending, then word in ascending code-point order."""
    # Two C-level sorts instead of a Python key function: sort by word, then stably by count
    # (reverse=True keeps the word order of equal counts).
    return sorted(sorted(counts.items()), key=itemgetter(1), reverse=True)


@dataclass(frozen=True)
class CountsDocument:
    """One counts JSON document (schema version 1)."""

    file: str
    inputs: tuple[str, ...]
    ignore_case: bool
    result: FileCounts

    def to_json(self, numwords: int) -> dict[str, Any]:
        everything = ranked(self.result.counts)
        return {
            "schema": SCHEMA_VERSION,
            "file": self.file,
            "inputs": list(self.inputs),
            "ignore_case": self.ignore_case,
            "numwords": numwords,
            "totals": {
                "words": self.result.words,
                "unique_words": self.result.unique_words,
                "invalid_bytes": self.result.invalid_bytes,
                "bytes": self.result.input_bytes,
            },
            "top": [[w, c] for w, c in everything[:numwords]],
            "counts": dict(everything),
        }


def render_report(top: Iterable[tuple[str, int]], env: Mapping[str, str]) -> str:
    """The tutorial's text report; Batch lines only for variables that are set."""
    lines = ["Word\tCount", SEPARATOR]
    lines += [f"{word}:\t{count}" for word, count in top]
    lines.append(SEPARATOR)
    lines += [label + env[var] for var, label in BATCH_ENV_LINES if env.get(var)]
    return "\n".join(lines) + "\n"


def output_names(input_name: str) -> tuple[str, str]:
    """``(<stem>_OUTPUT<ext>, <stem>_counts.json)`` for an input file name."""
    stem, ext = os.path.splitext(input_name)
    return f"{stem}_OUTPUT{ext}", f"{stem}{COUNTS_SUFFIX}"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file in the same directory and ``os.replace``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_outputs(
    doc: CountsDocument,
    numwords: int,
    out_dir: Path,
    env: Mapping[str, str],
    report_name: str,
    json_name: str,
    *,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write the counts JSON (with the keys of ``extra`` added) and the text report; return their paths."""
    counts_text, report_text = render_outputs(doc, numwords, env, extra=extra)
    json_path = out_dir / json_name
    report_path = out_dir / report_name
    write_atomic(json_path, counts_text)
    write_atomic(report_path, report_text)
    return report_path, json_path


def render_outputs(
    doc: CountsDocument, numwords: int, env: Mapping[str, str], *, extra: Mapping[str, Any] | None = None
) -> tuple[str, str]:
    """``(counts JSON text, report text)``: exactly what :func:`write_outputs` writes (UTF-8)."""
    body = {**doc.to_json(numwords), **(extra or {})}
    counts_text = json.dumps(body, ensure_ascii=False, indent=None, separators=(",", ":")) + "\n"
    return counts_text, render_report(((w, c) for w, c in body["top"]), env)


def _fail(where: str | Path, why: str) -> InputError:
    return InputError(f"unusable counts file {where}: {why}")


def _nonneg_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _counts_ok(counts: object) -> bool:
    """``counts`` maps words to non-negative integers (not booleans). Two C-level passes over the
    values instead of a Python call per word: a merge validates every word of thousands of files."""
    if not isinstance(counts, dict):
        return False
    values = counts.values()
    return set(map(type, values)) <= {int} and min(values, default=0) >= 0


def load_counts(path: Path) -> CountsDocument:
    """Read and validate a counts JSON file (schema version 1): :func:`parse_counts` of its bytes."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from None
    return parse_counts(raw, str(path))


def parse_counts(raw: bytes, where: str) -> CountsDocument:
    """Validate a counts JSON document (schema version 1, UTF-8) given as bytes; ``where`` names it
    in the :class:`InputError` that refuses it (a file's path, or a tar and its member)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(where, f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(where, "not a JSON object")
    if data.get("schema") != SCHEMA_VERSION:
        raise _fail(where, f"schema {data.get('schema')!r}, expected {SCHEMA_VERSION}")
    counts = data.get("counts")
    totals = data.get("totals")
    inputs = data.get("inputs")
    if not _counts_ok(counts):
        raise _fail(where, '"counts" must map words to non-negative integers')
    if not isinstance(totals, dict) or not all(
        _nonneg_int(totals.get(k)) for k in ("words", "invalid_bytes", "bytes")
    ):
        raise _fail(where, '"totals" is missing or malformed')
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise _fail(where, '"inputs" must be a list of file names')
    if not isinstance(data.get("ignore_case"), bool) or not isinstance(data.get("file"), str):
        raise _fail(where, '"ignore_case" or "file" is missing')
    counter: Counter[str] = Counter(counts)
    if sum(counter.values()) != totals["words"]:
        raise _fail(where, '"counts" do not add up to "totals.words"')
    return CountsDocument(
        file=data["file"],
        inputs=tuple(inputs),
        ignore_case=data["ignore_case"],
        result=FileCounts(counter, totals["invalid_bytes"], totals["bytes"]),
    )
