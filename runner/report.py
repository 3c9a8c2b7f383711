"""The summary people read (rich, on stderr) and the document machines read (JSON, on stdout)."""

from __future__ import annotations

import json
import re
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.batch import TaskFailure
from runner.results import FileResult, JobResults, TaskOutcome
from runner.text import safe, safe_lines

_STYLE = {
    TaskOutcome.SUCCEEDED: "green",
    TaskOutcome.FAILED: "red",
    TaskOutcome.SKIPPED: "yellow",
    TaskOutcome.PENDING: "dim",
}


def _top(r: FileResult) -> str:
    return ", ".join(f"{safe(w.word)} ({w.count})" for w in r.top) or "-"


def print_summary(console: Console, results: JobResults) -> None:
    """Per-file and corpus-wide top words, then failures."""
    table = Table(title=f"Job {results.job_id}: top {results.numwords} words", title_justify="left")
    table.add_column("task", justify="right")
    table.add_column("input")
    table.add_column("status")
    table.add_column("words", justify="right")
    table.add_column("top words")
    for r in results.files:
        table.add_row(
            safe(r.task_id),
            Text(safe(r.input)),
            Text(r.outcome.value, style=_STYLE[r.outcome]),
            "" if r.words is None else str(r.words),
            Text(_top(r)) if r.top else Text(_files_note(r), style="dim"),
        )
    if results.corpus is not None:
        c = results.corpus
        table.add_section()
        table.add_row(
            c.task_id,
            Text("all files", style="bold"),
            Text(c.outcome.value, style=_STYLE[c.outcome]),
            "" if c.words is None else str(c.words),
            Text(_top(c), style="bold") if c.top else Text(_corpus_note(c), style="dim"),
        )
    console.print(table)
    for failure in results.failures:
        print_failure(console, failure)
    console.print(Text(f"results in {safe(results.dest)}"))


def _files_note(r: FileResult) -> str:
    return f"{len(r.files)} file(s)" if r.files else "-"


def _corpus_note(c: FileResult) -> str:
    if c.outcome is TaskOutcome.SKIPPED:
        return "skipped: a per-file task failed"
    return "-"


def print_failure(console: Console, failure: TaskFailure) -> None:
    """One line naming the task, its input and why; then its stderr tail, escaped."""
    console.print(Text(safe(failure.describe()), style="red"))
    for line in safe_lines(failure.stderr_tail.rstrip("\n")):
        console.print(Text("    " + line, style="dim"))


#: What ``json.dumps(ensure_ascii=False)`` leaves raw and a terminal may act on (it escapes C0).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def dumps(document: dict[str, Any] | list[Any]) -> str:
    """The JSON document for stdout: readable Unicode, but every control character escaped
    (``\\u001b``), so it is safe on a terminal and decodes to the exact data."""
    text = json.dumps(document, indent=2, ensure_ascii=False, default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
