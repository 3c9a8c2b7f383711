"""The summary people read (rich, on stderr) and the document machines read (JSON, on stdout)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from runner.atomic import write_atomic
from runner.batch_types import TaskFailure
from runner.results import FileResult, JobResults, TaskOutcome
from runner.text import safe, safe_lines, shorten_middle

if TYPE_CHECKING:
    from runner.local import LocalStatus

_STYLE = {
    TaskOutcome.SUCCEEDED: "green",
    TaskOutcome.FAILED: "red",
    TaskOutcome.SKIPPED: "yellow",
    TaskOutcome.PENDING: "dim",
}

#: Above this many files the console shows the corpus row and the failures only (``--table auto``).
COMPACT_ABOVE = 20
SUMMARY_FILE = "summary.tsv"
#: Task ids listed per failure group, and stderr lines shown per group.
_GROUP_IDS = 10
_GROUP_TAIL = 6


def _top(r: FileResult) -> str:
    return ", ".join(f"{safe(w.word)} ({w.count})" for w in r.top) or "-"


def _command_mode(results: JobResults) -> bool:
    """``--command`` jobs have no counts and no corpus: their rows list the files produced."""
    return results.corpus is None and not any(r.counts for r in results.files)


def produced(r: FileResult, dest: Path) -> list[str]:
    """The files a ``--command`` task produced, relative to its output directory."""
    base = dest / "files" / f"{r.input}.out"
    out = []
    for p in r.files:
        try:
            out.append(p.relative_to(base).as_posix())
        except ValueError:
            out.append(p.name)
    return out


def _detail(r: FileResult, dest: Path, command_mode: bool) -> Text:
    if command_mode:
        names = produced(r, dest)
        return Text(safe(", ".join(names))) if names else Text("no files", style="dim")
    return Text(_top(r)) if r.top else Text(_files_note(r), style="dim")


def _table(results: JobResults, command_mode: bool) -> Table:
    """A table that fits the console: no wrapping; long inputs lose their middle, details their end."""
    what = "files produced" if command_mode else f"top {results.numwords} words"
    table = Table(title=safe(f"Job {results.job_id}: {what}"), title_justify="left", expand=False)
    table.add_column("task", justify="right", no_wrap=True)
    table.add_column("input", no_wrap=True, overflow="ellipsis")
    table.add_column("status", no_wrap=True)
    if not command_mode:
        table.add_column("words", justify="right", no_wrap=True)
    table.add_column("files" if command_mode else "top words", no_wrap=True, overflow="ellipsis")
    return table


def _input_width(console: Console, results: JobResults, command_mode: bool) -> int:
    """Columns left for the input path at this console width (at least 12)."""
    ids = max([len(r.task_id) for r in results.files] + [5])
    words = 0 if command_mode else max([len(str(r.words or "")) for r in results.files] + [9]) + 3
    fixed = (ids + 3) + (9 + 3) + words + 4 + 18  # columns, borders, and room for the details
    return max(12, (console.width - fixed) * 3 // 5)


def _detail_width(
    console: Console, results: JobResults, shown: Sequence[FileResult], input_width: int, command_mode: bool
) -> int:
    """Columns left for the details (top words, files) once the other columns have their
    content's width: the details lose their end, so rich never squeezes the other columns."""
    rows = [*shown, *([results.corpus] if results.corpus is not None else [])]
    ids = max([len(r.task_id) for r in rows] + [4])
    inputs = min(input_width, max([len(r.input) for r in shown] + [len("all files"), 5]))
    status = max([len(r.outcome.value) for r in rows] + [6])
    cols = [ids, inputs, status]
    if not command_mode:
        cols.append(max([len(f"{r.words:,}") for r in rows if r.words is not None] + [5]))
    borders = 3 * (len(cols) + 1) + 1  # "│ " before each column and " │" at the end
    return max(10, console.width - sum(cols) - borders)


def print_summary(console: Console, results: JobResults, *, full: bool = False) -> None:
    """The end-of-run summary, one screen whatever the job's size.

    Up to :data:`COMPACT_ABOVE` files (or with ``full``) every file has a
    row; above, only the corpus row and a count of the rest, which are in
    ``summary.tsv`` (:func:`write_summary`). Then the failures, grouped, and where
    the results are. Nothing wraps at the console's width.
    """
    command_mode = _command_mode(results)
    table = _table(results, command_mode)
    width = _input_width(console, results, command_mode)
    compact = not full and len(results.files) > COMPACT_ABOVE
    shown = [] if compact else results.files
    detail_width = _detail_width(console, results, shown, width, command_mode)
    for r in shown:
        row: list[str | Text] = [safe(r.task_id), Text(shorten_middle(safe(r.input), width))]
        row.append(Text(r.outcome.value, style=_STYLE[r.outcome]))
        if not command_mode:
            row.append("" if r.words is None else f"{r.words:,}")
        detail = _detail(r, results.dest, command_mode)
        detail.truncate(detail_width, overflow="ellipsis")
        row.append(detail)
        table.add_row(*row)
    if results.corpus is not None:
        c = results.corpus
        if not compact:
            table.add_section()
        table.add_row(
            c.task_id,
            Text(f"all but {len(results.missing)}" if results.missing else "all files", style="bold"),
            Text(c.outcome.value, style=_STYLE[c.outcome]),
            "" if c.words is None else f"{c.words:,}",
            _cut(Text(_top(c), style="bold") if c.top else Text(_corpus_note(c), style="dim"), detail_width),
        )
    if table.row_count:
        console.print(table)
    else:
        console.print(Text(str(table.title), style="bold"))
    console.print(Text(_tally(results)))
    print_missing(console, results)
    print_failures(console, results.job_id, list(results.failures))
    if compact:
        more = f"{len(results.files):,} more rows in "
        where = _fit(safe(results.dest / SUMMARY_FILE), console.width - len(more) - 15)
        console.print(Text(f"{more}{where} (--table full)"), soft_wrap=True)
    console.print(Text(f"results in {_fit(safe(results.dest), console.width - 11)}"), soft_wrap=True)


def _cut(text: Text, width: int) -> Text:
    text.truncate(width, overflow="ellipsis")
    return text


def _fit(path: str, width: int) -> str:
    return shorten_middle(path, max(width, 20))


def _tally(results: JobResults) -> str:
    counts = Counter(r.outcome for r in results.files)
    parts = [f"{counts[o]:,} {o.value}" for o in TaskOutcome if counts[o]]
    return f"{len(results.files):,} file(s): " + ", ".join(parts)


def _files_note(r: FileResult) -> str:
    return f"{len(r.files)} file(s)" if r.files else "-"


def print_missing(console: Console, results: JobResults, limit: int = 10) -> None:
    """``--allow-failures``: which inputs the corpus result lacks, and why (at most ``limit``)."""
    if not results.missing:
        return
    n, total = len(results.missing), len(results.files)
    _line(console, f"the corpus is merged without {n:,} of {total:,} file(s) (--allow-failures):", "yellow")
    name_width = max(20, console.width // 2)
    for m in results.missing[:limit]:
        name = shorten_middle(safe(m.input), name_width)
        _line(console, f"  missing: task {safe(m.task_id)} ({name}): {safe(m.why)}", "yellow")
    if n > limit:
        _line(console, f"  and {n - limit:,} more (every one in {SUMMARY_FILE} and --json)", "yellow")


def _corpus_note(c: FileResult) -> str:
    if c.outcome is TaskOutcome.SKIPPED:
        return "skipped: a per-file task failed"
    return "-"


def _why(failure: TaskFailure) -> str:
    """What went wrong, without the task's name: identical causes read the same."""
    return failure.describe().removeprefix(f"task {failure.task_id} ({failure.display_name}): ")


def group_failures(failures: list[TaskFailure]) -> list[list[TaskFailure]]:
    """Failures with the same cause (exit code or failure code, message, stderr tail) together,
    largest group first, in task order within a group."""
    groups: dict[tuple[str, str], list[TaskFailure]] = {}
    for f in failures:
        groups.setdefault((_why(f), f.stderr_tail.strip()), []).append(f)
    return sorted(groups.values(), key=lambda g: -len(g))


def print_failures(console: Console, job_id: str, failures: list[TaskFailure]) -> None:
    """Each group once: its cause, how many tasks and which, its stderr tail, how to see a log.

    Lines never wrap: a long input name loses its middle; on a terminal a long stderr
    line loses its end (``runner logs … --stderr`` has it whole), in a log it stays whole."""
    for group in group_failures(failures):
        if len(group) == 1:
            print_failure(console, group[0])
            continue
        ids = ", ".join(safe(f.task_id) for f in group[:_GROUP_IDS])
        more = f" and {len(group) - _GROUP_IDS:,} more" if len(group) > _GROUP_IDS else ""
        _line(console, f"{len(group):,} tasks failed: {safe(_why(group[0]))}", "red")
        _line(console, f"  tasks {ids}{more}", "red")
        _tail(console, group[0], _GROUP_TAIL)
        _line(console, f"  log: runner logs {safe(job_id)} {safe(group[0].task_id)} --stderr", "dim")


def print_failure(console: Console, failure: TaskFailure) -> None:
    """One line naming the task, its input and why; then its stderr tail, escaped."""
    name = shorten_middle(safe(failure.display_name), max(20, console.width // 2))
    _line(console, f"task {safe(failure.task_id)} ({name}): {safe(_why(failure))}", "red")
    _tail(console, failure, None)


def _tail(console: Console, failure: TaskFailure, last: int | None) -> None:
    lines = safe_lines(failure.stderr_tail.rstrip("\n"))
    for line in lines if last is None else lines[-last:]:
        _line(console, "    " + line, "dim")


def _line(console: Console, text: str, style: str) -> None:
    """One line: cut at the width on a terminal, whole (never wrapped) in a log or a pipe."""
    if console.is_terminal:
        console.print(Text(text, style=style), no_wrap=True, overflow="ellipsis", crop=True)
    else:
        console.print(Text(text, style=style), soft_wrap=True)


def _tsv(value: object) -> str:
    return safe(value)  # tabs and newlines in names become \t and \n: one row per line


def write_summary(results: JobResults) -> Path:
    """Write every row (files, then the corpus) to ``<dest>/summary.tsv``, atomically; return it.

    Columns: task, input, status, words, then ``top`` (``word:count`` joined by
    spaces) or, for ``--command`` jobs, ``files`` (names relative to the task's
    output directory, joined by spaces). With ``--allow-failures``, a row per input
    the corpus lacks follows (status ``missing from corpus``, why in the last column).
    Control characters are escaped.
    """
    command_mode = _command_mode(results)
    head = ["task", "input", "status", "words", "files" if command_mode else "top"]
    rows = ["\t".join(head)]
    everything = [*results.files, *([results.corpus] if results.corpus else [])]
    for r in everything:
        detail = produced(r, results.dest) if command_mode else [f"{w.word}:{w.count}" for w in r.top]
        label = "(corpus)" if r is results.corpus else r.input
        fields = [
            r.task_id,
            label,
            r.outcome.value,
            "" if r.words is None else str(r.words),
            " ".join(detail),
        ]
        rows.append("\t".join(_tsv(f) for f in fields))
    for m in results.missing:  # --allow-failures: what the corpus row lacks, and why
        rows.append("\t".join(_tsv(f) for f in (m.task_id, m.input, "missing from corpus", "", m.why)))
    path = results.dest / SUMMARY_FILE
    write_atomic(path, "\n".join(rows) + "\n")
    return path


#: What ``json.dumps(ensure_ascii=False)`` leaves raw and a terminal may act on (it escapes C0).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def dumps(document: dict[str, Any] | list[Any]) -> str:
    """The JSON document for stdout: readable Unicode, but every control character escaped
    (``\\u001b``), so it is safe on a terminal and decodes to the exact data."""
    text = json.dumps(document, indent=2, ensure_ascii=False, default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# -- the other JSON documents of the CLI (one place builds them all) ---------------------


def submitted_json(job_id: str, target: str, tasks_added: int) -> dict[str, Any]:
    """``runner --json submit --no-wait``."""
    return {"jobId": job_id, "target": target, "status": "submitted", "tasksAdded": tasks_added}


def clean_json(job_id: str, job_deleted: bool, blobs_deleted: int) -> dict[str, Any]:
    """``runner --json clean JOB``."""
    return {"jobId": job_id, "jobDeleted": job_deleted, "blobsDeleted": blobs_deleted}


def local_status_json(st: LocalStatus) -> dict[str, Any]:
    """``runner --json local status`` (and ``local up``)."""
    return {
        "home": str(st.home),
        "running": st.running,
        "services": [
            {"name": s.name, "state": s.state.value, "pid": s.pid, "url": s.url} for s in st.services
        ],
    }
