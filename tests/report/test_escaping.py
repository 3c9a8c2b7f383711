"""Data shown by status/jobs and written to the trace cannot inject terminal or TSV structure."""

from __future__ import annotations

import io

from rich.console import Console

from runner.execution import TaskRecord
from runner.job_views import safe, task_table
from runner.trace import FIELDS, to_tsv

EVIL = "a\tb\nc\x1b[31mred\x07.txt"


def _task(name: str) -> TaskRecord:
    return TaskRecord(
        id="1", input=name, kind="file", state="completed", result="success", exit_code=0, failure=None,
        node_id="n", created=None, start=None, end=None, retries=0, requeues=0, bytes_in=None, bytes_out=None,
    )  # fmt: skip


def test_control_characters_are_escaped_in_tables() -> None:
    assert str(safe(EVIL)) == "a\\tb\\nc\\x1b[31mred\\x07.txt"  # runner.text.safe's contract
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(task_table("t", [_task(EVIL)]))
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "\\x1b[31mred" in out.getvalue()


def test_trace_cells_never_hold_tabs_or_newlines() -> None:
    lines = to_tsv([_task(EVIL)]).splitlines()
    assert len(lines) == 2 and len(lines[1].split("\t")) == len(FIELDS)
    assert lines[1].split("\t")[1] == "a\\tb\\nc\\x1b[31mred\\x07.txt"
