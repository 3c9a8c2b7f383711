"""What ``status``, ``jobs`` and ``logs --follow`` show: tables for people, documents for machines.

Contracts:

* Times are shown in the local zone with its name (``2026-12-01 09:40:55 UTC``);
  durations are human-readable (``4 min 05 s``); JSON carries ISO 8601 times and
  seconds.
* Everything that came from data (input names, ids) is printed as plain text
  (``rich.text.Text``: no markup), with control characters escaped.
* :func:`follow` streams a task file with Batch's ranged reads (``ocp-range``):
  one size request per poll, one ranged read only when the file grew, until the
  task is completed and the file is read to its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table
from rich.text import Text

from runner.batch_types import JobInfo, NodeInfo, PoolInfo, TaskCounts, TaskState
from runner.exec_summary import status_word
from runner.execution import Execution, FileStatus, TaskRecord
from runner.report_html import human, short_node
from runner.text import safe as escape
from runner.text import shorten_middle
from runner.trace import iso, row

if TYPE_CHECKING:  # the SDK edge; only its type is needed here
    from runner.batch import Batch

_STATUS_STYLE = {
    "done": "green",
    "cached": "green",
    "failed": "bold red",
    "running": "cyan",
    "waiting": "dim",
}


def local_time(t: datetime | None) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if t is not None else ""


def safe(text: str) -> Text:
    """Data as plain text, control characters escaped (the one helper, :func:`runner.text.safe`)."""
    return Text(escape(text))


def pool_line(pool: PoolInfo | None, nodes: tuple[NodeInfo, ...]) -> str:
    if pool is None:
        return "pool: unknown (it no longer exists)"
    states: dict[str, int] = {}
    for n in nodes:
        states[n.state.lower()] = states.get(n.state.lower(), 0) + 1
    by_state = ", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none"
    target = f"target {pool.target_dedicated or 0} + {pool.target_low_priority or 0} spot"
    if pool.auto_scale:
        target = "autoscale"
    return (
        f"pool {pool.id}: {pool.state}, {pool.allocation_state or '?'}; {pool.vm_size}, "
        f"{pool.task_slots_per_node} slot(s)/node\n"
        f"nodes {pool.current_dedicated} dedicated + {pool.current_low_priority} spot ({target}); "
        f"node states: {by_state}"
    )


#: Below this console width, ``status`` folds end/retries/requeues into fewer columns.
WIDE = 110


def clock(t: datetime | None) -> str:
    return t.astimezone().strftime("%H:%M:%S") if t is not None else ""


def _status_cell(t: TaskRecord) -> Text:
    word = status_word(t)
    code = f" {t.exit_code}" if word == "failed" and t.exit_code is not None else ""
    return Text(word + code, style=_STATUS_STYLE[word])


def times_note(tasks: list[TaskRecord]) -> str:
    """Which day and zone the table's clock times are in (their dates when they span several)."""
    days = sorted({t.start.astimezone().strftime("%Y-%m-%d") for t in tasks if t.start is not None})
    zone = datetime.now().astimezone().strftime("%Z")
    when = days[0] if len(days) == 1 else (f"{days[0]} to {days[-1]}" if days else "")
    return f"times: {zone}" + (f", {when}" if when else "") + "; failed N: exit code N"


def task_table(title: str, tasks: list[TaskRecord], width: int = 200) -> Table:
    """Per task: input, status, node, start, end, run time, retries, requeues (fewer columns if narrow)."""
    wide = width >= WIDE
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False
    )
    table.add_column("task", justify="right", no_wrap=True)
    table.add_column("input", no_wrap=True, overflow="ellipsis")
    heads = ["status", "node", "start", "end", "ran"] if wide else ["status", "node", "start", "ran"]
    for col in heads:
        table.add_column(col, no_wrap=True)
    for col in ("retries", "requeues") if wide else ("rt/rq",):
        table.add_column(col, justify="right", no_wrap=True)
    rows = [_task_cells(t, wide) for t in tasks]
    input_width = _input_width(table, rows, width)
    for cells in rows:
        cells[1] = Text(shorten_middle(_plain(cells[1]), input_width))
        table.add_row(*cells)
    return table


def _input_width(table: Table, rows: list[list[str | Text]], width: int) -> int:
    """Columns left for the input path once every other column has its content's width (and
    the padding between columns): a long path loses its middle, and no row wraps."""
    heads = [str(c.header) for c in table.columns]
    widths = [max([len(heads[i])] + [len(_plain(r[i])) for r in rows]) for i in range(len(heads)) if i != 1]
    return max(8, width - sum(widths) - 2 * len(heads) - 1)


def _plain(cell: str | Text) -> str:
    return cell.plain if isinstance(cell, Text) else cell


def _task_cells(t: TaskRecord, wide: bool) -> list[str | Text]:
    """One row of :func:`task_table`, the input escaped but not yet cut."""
    cells: list[str | Text] = [
        t.id,
        safe(t.input),
        _status_cell(t),
        short_node(t.node_id) if t.node_id else "",
        clock(t.start),
    ]
    if wide:
        cells.append(clock(t.end))
    cells.append(human(t.duration) if t.duration is not None else "")
    cells += [str(t.retries), str(t.requeues)] if wide else [f"{t.retries}/{t.requeues}"]
    return cells


def file_table(title: str, files: list[FileStatus]) -> Table:
    """Per input file (jobs with packed tasks): file id, input, status, the task that runs it."""
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False
    )
    table.add_column("file", justify="right", no_wrap=True)
    table.add_column("input", overflow="fold", ratio=1)
    table.add_column("status", no_wrap=True)
    table.add_column("task", no_wrap=True)
    for f in files:
        table.add_row(f.file_id, safe(f.input), Text(f.status, style=_STATUS_STYLE[f.status]), f.task_id)
    return table


#: Failed files whose own error ``status`` prints under the files table.
MAX_FILE_ERRORS = 20


def file_errors(files: list[FileStatus]) -> list[str]:
    """A line per failed file with its own error (the first :data:`MAX_FILE_ERRORS`), then how
    many more; not yet escaped (the caller prints through :func:`runner.text.safe`)."""
    known = [f for f in files if f.status == "failed" and f.error]
    lines = [f"file {f.file_id} ({f.input}): {f.error}" for f in known[:MAX_FILE_ERRORS]]
    if len(known) > MAX_FILE_ERRORS:
        lines.append(f"… and {len(known) - MAX_FILE_ERRORS:,} more failed file(s) with an error (--json)")
    return lines


def status_json(ex: Execution, counts: TaskCounts, tasks: list[TaskRecord]) -> dict[str, Any]:
    pool = ex.pool
    return {
        "jobId": ex.job.id,
        "state": ex.job.state,
        "created": iso(ex.job.creation_time),
        "pool": None
        if pool is None
        else {
            "id": pool.id,
            "state": pool.state,
            "allocationState": pool.allocation_state,
            "vmSize": pool.vm_size,
            "taskSlotsPerNode": pool.task_slots_per_node,
            "dedicatedNodes": pool.current_dedicated,
            "spotNodes": pool.current_low_priority,
            "nodeStates": [{"id": n.id, "state": n.state} for n in ex.nodes],
        },
        "counts": {
            "active": counts.active,
            "running": counts.running,
            "completed": counts.completed,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
        },
        "tasks": [row(t) for t in tasks],
        "files": [
            {"fileId": f.file_id, "input": f.input, "status": f.status, "taskId": f.task_id, "error": f.error}
            for f in ex.files
        ],
        "unreadPacks": list(ex.unread_packs),
    }


@dataclass(frozen=True)
class JobLine:
    """One row of ``runner jobs``."""

    job: JobInfo
    counts: TaskCounts | None  # None: the counts could not be read (job deleting)

    @property
    def waiting(self) -> int:
        return self.counts.active if self.counts else 0

    @property
    def verdict(self) -> str:
        """failed, cancelled, done, running, waiting or the job's state."""
        c = self.counts
        if c is not None and c.failed:
            return "failed"
        if self.job.state == "completed":
            return "cancelled" if self.job.terminate_reason == "UserTerminate" else "done"
        if c is not None and c.running:
            return "running"
        if c is not None and c.active:
            return "waiting"
        return self.job.state

    @property
    def retryable(self) -> str:
        """Whether failed tasks can still be retried in this job (Batch reactivates tasks of active jobs)."""
        if self.counts is None or not self.counts.failed:
            return "-"
        return "yes" if self.job.state == "active" else "no"

    def duration(self, now: datetime) -> str:
        if self.job.creation_time is None:
            return ""
        end = self.job.end_time or now
        return human(end - self.job.creation_time) + ("" if self.job.end_time else "+")

    def to_json(self, now: datetime) -> dict[str, Any]:
        c = self.counts
        end = self.job.end_time or now
        return {
            "jobId": self.job.id,
            "state": self.job.state,
            "verdict": self.verdict,
            "poolId": self.job.pool_id,
            "created": iso(self.job.creation_time),
            "ended": iso(self.job.end_time),
            "duration": round((end - self.job.creation_time).total_seconds(), 3)
            if self.job.creation_time
            else None,
            "counts": None
            if c is None
            else {"done": c.succeeded, "failed": c.failed, "running": c.running, "waiting": c.active},
            "retryable": self.retryable == "yes",
        }


_VERDICT_STYLE = {"failed": "bold red", "cancelled": "yellow", "done": "green", "running": "cyan"}


def jobs_table(lines: list[JobLine], now: datetime, width: int = 200) -> Table:
    """The jobs, one row each, within ``width`` columns: every column keeps its content's
    width and long job ids lose their middle (rich would squeeze the counts to "…")."""
    zone = datetime.now().astimezone().strftime("%Z")
    heads = ["job", "status", "done", "failed", "run", "wait", f"created ({zone})", "took", "retry"]
    rows = [_job_cells(line, now) for line in lines]
    widths = [max([len(h)] + [len(r[i].plain) for r in rows]) for i, h in enumerate(heads)]
    room = width - sum(widths[1:]) - 2 * len(heads)  # one space each side of a column
    id_width = max(8, min(widths[0], room))
    table = Table(title="jobs", title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True)
    for i, head in enumerate(heads):
        right = head in ("done", "failed", "run", "wait")
        table.add_column(head, justify="right" if right else "left", no_wrap=True, min_width=widths[i])
    table.columns[0].min_width = id_width
    for cells in rows:
        cells[0] = Text(shorten_middle(cells[0].plain, id_width))
        table.add_row(*cells)
    return table


def _job_cells(line: JobLine, now: datetime) -> list[Text]:
    c = line.counts
    created = line.job.creation_time.astimezone().strftime("%m-%d %H:%M") if line.job.creation_time else ""
    return [
        safe(line.job.id),
        Text(line.verdict, style=_VERDICT_STYLE.get(line.verdict, "")),
        Text(str(c.succeeded) if c else "?"),
        Text(str(c.failed) if c else "?", style="bold red" if c and c.failed else ""),
        Text(str(c.running) if c else "?"),
        Text(str(c.active) if c else "?"),
        Text(created),
        Text(line.duration(now)),
        Text(line.retryable),
    ]


#: Printed under the jobs table when some job has failures.
RETRY_NOTE = (
    "retry: `runner retry JOB` reruns the failed tasks of an active job; a completed job takes no new tasks "
    "(submit again under a new --job-id)"
)


def follow(
    batch: Batch,
    job_id: str,
    task_id: str,
    name: str,
    write: Callable[[bytes], None],
    *,
    poll: float = 1.0,
    chunk: int = 4 * 1024 * 1024,
) -> int:
    """Stream ``name`` of a task as it grows until the task completes; returns the bytes written."""
    offset = 0
    while True:
        done = batch.get_task(job_id, task_id).state is TaskState.COMPLETED
        size = batch.task_file_size(job_id, task_id, name) or 0
        while size > offset:
            data = batch.task_file_range(job_id, task_id, name, offset, min(size, offset + chunk) - 1)
            if not data:
                break
            write(data)
            offset += len(data)
        if done:
            return offset
        time.sleep(poll)
