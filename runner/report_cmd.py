"""``runner report JOB`` (and ``submit --report``): gather once, write the HTML, the trace, the JSON.

Contract: :func:`make_report` reads the job once (:func:`runner.execution.gather`),
writes the HTML report (and the TSV trace when asked) atomically, and returns
what it wrote plus the trace rows for ``--json``. Bad paths are a
:class:`~runner.errors.UsageError` naming the path, before anything is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import report_page, trace
from runner.errors import UsageError
from runner.exec_summary import summarize
from runner.execution import Execution, gather
from runner.targets import Session


@dataclass(frozen=True)
class ReportOutcome:
    html: Path
    trace: Path | None
    execution: Execution
    price: float | None

    def to_json(self) -> dict[str, Any]:
        s = summarize(self.execution, price=self.price)
        return {
            "jobId": self.execution.job.id,
            "state": self.execution.job.state,
            "report": str(self.html),
            "trace": str(self.trace) if self.trace else None,
            "summary": {
                "start": trace.iso(s.start),
                "end": trace.iso(s.end),
                "wallTime": trace.seconds(s.wall),
                "taskTime": trace.seconds(s.task_time),
                "nodeTime": trace.seconds(s.node_time),
                "slotUtilisation": None if s.utilisation is None else round(s.utilisation, 4),
                "bytesIn": s.bytes_in,
                "bytesOut": s.bytes_out,
                "retries": s.retries,
                "requeues": s.requeues,
                "counts": s.counts,
                "nodeHours": round(s.cost.node_hours, 4),
                "estimatedCost": None if s.cost.amount is None else round(s.cost.amount, 4),
                "priceSource": s.cost.source,
            },
            "notes": list(self.execution.notes),
            "tasks": [trace.row(t) for t in self.execution.tasks],
        }


def check_path(path: Path, what: str) -> None:
    if path.exists() and path.is_dir():
        raise UsageError(f"{what} {path} is a directory", hint="give a file name")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{what} {path}: {parent} is not a directory")


def make_report(
    session: Session,
    job_id: str,
    *,
    out: Path | None = None,
    trace_path: Path | None = None,
    price: float | None = None,
) -> ReportOutcome:
    """Gather the job and write its report (and trace); returns the paths."""
    html_path = out or report_page.default_path(job_id)
    check_path(html_path, "--output")
    if trace_path is not None:
        check_path(trace_path, "--trace")
    if price is not None and price < 0:
        raise UsageError("--price must be >= 0 (US$ per node-hour)")
    ex = gather(session, job_id)
    report_page.write(html_path, ex, target=session.target.label, price=price)
    if trace_path is not None:
        trace.write_tsv(trace_path, ex.tasks)
    return ReportOutcome(html_path, trace_path, ex, price)
