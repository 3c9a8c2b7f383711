"""A job's per-task trace, like Nextflow's trace file: TSV for people and tools, JSON for machines.

Contracts:

* One row per task with :data:`FIELDS`, in task order (files by number,
  partial merges, the final merge).
* Times are ISO 8601 with their zone (UTC, as Batch gives them); durations
  and queue waits are seconds (a float) in both forms; unknown values are an
  empty TSV cell and ``null`` in JSON.
* A TSV cell never holds a tab, newline or other control character: they are
  written as ``\\t``, ``\\n``, ``\\xNN`` (input names are user data).
* The TSV file is written whole or not at all (a temporary file, then renamed).
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from runner.execution import TaskRecord

FIELDS = (
    "id",
    "input",
    "kind",
    "node",
    "slot",
    "state",
    "result",
    "exitCode",
    "created",
    "start",
    "end",
    "queueWait",
    "duration",
    "retries",
    "requeues",
    "bytesIn",
    "bytesOut",
)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with the zone (``2026-12-01T09:40:55.266371+00:00``); ``None`` stays ``None``."""
    return value.isoformat() if value is not None else None


def seconds(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 3) if value is not None else None


def row(t: TaskRecord) -> dict[str, Any]:
    """The trace fields of one task, JSON-ready."""
    return {
        "id": t.id,
        "input": t.input,
        "kind": t.kind,
        "node": t.node_id,
        "slot": t.slot,
        "state": t.state,
        "result": t.result,
        "exitCode": t.exit_code,
        "created": iso(t.created),
        "start": iso(t.start),
        "end": iso(t.end),
        "queueWait": seconds(t.queue_wait),
        "duration": seconds(t.duration),
        "retries": t.retries,
        "requeues": t.requeues,
        "bytesIn": t.bytes_in,
        "bytesOut": t.bytes_out,
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    out = []
    for ch in text:
        if ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def to_tsv(tasks: list[TaskRecord] | tuple[TaskRecord, ...]) -> str:
    lines = ["\t".join(FIELDS)]
    for t in tasks:
        r = row(t)
        lines.append("\t".join(_cell(r[f]) for f in FIELDS))
    return "\n".join(lines) + "\n"


def write_tsv(path: Path, tasks: list[TaskRecord] | tuple[TaskRecord, ...]) -> None:
    """Write the trace to ``path`` atomically."""
    write_atomic(path, to_tsv(tasks).encode("utf-8"))


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` gets ``data`` whole, or keeps what it had (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
