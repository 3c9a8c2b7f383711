"""The timeline's form at 10 and at 10,000 tasks (figures built from a synthetic execution, no server)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from runner.batch_types import JobInfo, PoolInfo
from runner.exec_summary import summarize
from runner.execution import Execution, TaskRecord, assign_slots
from runner.report_html import BINS, chart_data, figures
from runner.report_page import render

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def _execution(n: int, *, nodes: int = 2, seconds: float = 1.0) -> Execution:
    """``n`` tasks back to back on ``nodes`` one-slot nodes; every 10th fails."""
    tasks = []
    for i in range(n):
        start = T0 + timedelta(seconds=seconds * (i // nodes))
        tasks.append(
            TaskRecord(
                id=str(i + 1), input=f"f{i}.txt", kind="file", state="completed",
                result="failure" if i % 10 == 9 else "success", exit_code=1 if i % 10 == 9 else 0,
                failure=None, node_id=f"node-{i % nodes}", created=T0, start=start,
                end=start + timedelta(seconds=seconds * 0.9), retries=0, requeues=0,
                bytes_in=10, bytes_out=None,
            )
        )  # fmt: skip
    job = JobInfo("j", "completed", "p", T0, None)
    pool = PoolInfo("p", "active", "steady", "Standard_D2s_v5", 1, nodes, 0, nodes, 0, False)
    return Execution(job, pool, (), tuple(assign_slots(tasks)), T0 + timedelta(hours=3))


def _marks(ex: Execution) -> list[str]:
    return [layer["mark"]["type"] for layer in figures(ex, summarize(ex))["timeline"]["layer"]]


def test_ten_tasks_are_ten_bars_failures_apart() -> None:
    ex = _execution(10)
    data = chart_data(ex, summarize(ex))
    assert _marks(ex) == ["bar"] and data["occupancy"] == []
    assert sorted(t["cat"] for t in data["tasks"]) == ["failed"] + ["succeeded"] * 9


def test_ten_thousand_tasks_aggregate_into_slot_occupancy() -> None:
    ex = _execution(10_000)
    s = summarize(ex)
    assert _marks(ex) == ["rect", "point"]  # occupancy, then the failed tasks marked on it
    cells = chart_data(ex, s)["occupancy"]
    assert {c["row"] for c in cells} == {"node-0 / slot 1", "node-1 / slot 1"}
    assert len(cells) <= 2 * BINS
    busy = sum(c["busy"] for c in cells) * (s.wall.total_seconds() / BINS)
    assert abs(busy - s.task_time.total_seconds()) / s.task_time.total_seconds() < 0.02
    assert sum(t["cat"] == "failed" for t in chart_data(ex, s)["tasks"]) == 1000


def test_few_long_tasks_stay_bars_even_when_many() -> None:
    ex = _execution(1500, nodes=50, seconds=60)
    assert _marks(ex) == ["bar"]


def test_a_running_job_and_an_empty_one_render() -> None:
    ex = _execution(4)
    running = replace(ex.tasks[-1], state="running", result=None, exit_code=None, end=None)
    ex = replace(ex, tasks=(*ex.tasks[:-1], running))
    data = chart_data(ex, summarize(ex))
    assert [t["cat"] for t in data["tasks"]][-1] == "running"
    assert data["tasks"][-1]["end"] == ex.gathered_at.isoformat()  # drawn up to now
    assert "running / waiting" in render(ex)
    empty = replace(ex, tasks=())
    assert "No task failed." in render(empty)


def test_waiting_and_running_over_time() -> None:
    ex = _execution(10)  # all created at T0; two at a time, 1 s apart, each running 0.9 s
    series = chart_data(ex, summarize(ex))["queue"]
    first = {p["state"]: p["n"] for p in series[:2]}
    last = {p["state"]: p["n"] for p in series[-2:]}
    assert first == {"waiting": 8, "running": 2} and last == {"waiting": 0, "running": 0}
    assert max(p["n"] for p in series if p["state"] == "running") == 2  # never more than the slots
