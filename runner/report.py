"""The summary people read (rich, on stderr) and the document machines read (JSON, on stdout)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.batch import TaskFailure
from runner.results import FileResult, JobResults, TaskOutcome

_STYLE = {
    TaskOutcome.SUCCEEDED: "green",
    TaskOutcome.FAILED: "red",
    TaskOutcome.SKIPPED: "yellow",
    TaskOutcome.PENDING: "dim",
}


def _top(r: FileResult) -> str:
    return ", ".join(f"{w.word} ({w.count})" for w in r.top) or "-"


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
            r.task_id,
            Text(r.input),
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
    console.print(f"results in {results.dest}", highlight=False)


def _files_note(r: FileResult) -> str:
    return f"{len(r.files)} file(s)" if r.files else "-"


def _corpus_note(c: FileResult) -> str:
    if c.outcome is TaskOutcome.SKIPPED:
        return "skipped: a per-file task failed"
    return "-"


def print_failure(console: Console, failure: TaskFailure) -> None:
    console.print(Text(failure.describe(), style="red"))
    if failure.stderr_tail:
        for line in failure.stderr_tail.splitlines():
            console.print(Text("    " + line, style="dim"))


def dumps(document: dict[str, Any] | list[Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)
