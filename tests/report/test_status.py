"""``status``, ``jobs`` and ``logs`` of real local jobs: times, failures, streaming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from typer.testing import CliRunner

from runner.batch import Batch
from runner.batch_types import TaskState
from runner.cli import app
from runner.outputs import load_file
from tests.report.conftest import Job, invoke


def _iso(value: str) -> datetime:
    t = datetime.fromisoformat(value)
    assert "T" in value and t.tzinfo is not None, value
    return t


def test_status_shows_pool_then_per_task_node_and_times(word_job: Job) -> None:
    res = invoke(word_job.outputs_file, "--json", "status", word_job.id)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["pool"]["state"] == "active" and doc["pool"]["dedicatedNodes"] == 2
    _iso(doc["created"])
    assert len(doc["tasks"]) == word_job.n_tasks
    for t in doc["tasks"]:
        assert _iso(t["start"]) <= _iso(t["end"]) and t["node"] and t["duration"] >= 0
        assert t["retries"] == 0 and t["requeues"] == 0
    err = " ".join(res.stderr.split())
    assert "pool wordcount-pool: active" in err and "node states: idle 2" in err
    assert "UTC" in err and (" s " in err or " ms " in err)  # times with their zone, durations in words
    assert "13/13 done" in err
    lines = res.stderr.splitlines()
    # CliRunner's console: 80 columns
    assert all(len(ln) <= 80 for ln in lines), [ln for ln in lines if len(ln) > 80]
    assert "rt/rq" in res.stderr and "requeues" not in res.stderr


def test_status_on_a_wide_terminal_has_every_column(word_job: Job) -> None:
    res = CliRunner().invoke(
        app, ["--outputs", str(word_job.outputs_file), "status", word_job.id], env={"COLUMNS": "150"}
    )
    assert res.exit_code == 0, res.stderr
    header = next(ln for ln in res.stderr.splitlines() if "task" in ln and "input" in ln).split()
    assert header == ["task", "input", "status", "node", "start", "end", "ran", "retries", "requeues"]


def test_status_failed_lists_only_failures(failing_job: Job) -> None:
    res = invoke(failing_job.outputs_file, "--json", "status", failing_job.id, "--failed")
    assert res.exit_code == 0, res.stderr
    tasks = json.loads(res.stdout)["tasks"]
    assert sorted(t["exitCode"] for t in tasks) == [3, 3, 3, 3, 5]
    assert all(t["result"] == "failure" and t["retries"] == 1 for t in tasks)  # --retries 1: ran twice
    assert "5 failed task(s)" in res.stderr and "ok-1.txt" not in res.stderr


def test_jobs_shows_counts_and_failed_jobs_visibly(word_job: Job, failing_job: Job) -> None:
    res = invoke(word_job.outputs_file, "--json", "jobs")
    assert res.exit_code == 0, res.stderr
    by_id = {j["jobId"]: j for j in json.loads(res.stdout)}
    bad, good = by_id[failing_job.id], by_id[word_job.id]
    # A watched job whose tasks failed is kept active for `runner retry` (docs/architecture.md).
    assert bad["verdict"] == "failed" and bad["state"] == "active"
    assert bad["counts"] == {"done": 5, "failed": 5, "running": 0, "waiting": 0}
    assert bad["retryable"] is True
    assert good["verdict"] == "done" and good["counts"]["done"] == 13
    assert _iso(good["created"]) < _iso(good["ended"]) and good["duration"] > 0
    # A wide console: the shared target holds the whole suite's jobs, whose long ids squeeze 80 columns.
    wide = CliRunner().invoke(app, ["--outputs", str(word_job.outputs_file), "jobs"], env={"COLUMNS": "200"})
    cells = next(ln for ln in wide.stderr.splitlines() if failing_job.id in ln).split()
    assert cells[:4] == [failing_job.id, "failed", "5", "5"] and cells[-1] == "yes"
    assert "a completed job takes no new tasks" in " ".join(wide.stderr.split())


def test_logs_of_empty_stdout_points_to_stderr(failing_job: Job) -> None:
    doc = json.loads(invoke(failing_job.outputs_file, "--json", "status", failing_job.id, "--failed").stdout)
    task = doc["tasks"][0]["id"]
    res = invoke(failing_job.outputs_file, "logs", failing_job.id, task)
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    assert f"task {task} wrote nothing to stdout" in res.stderr
    assert f"runner logs {failing_job.id} {task} --stderr" in res.stderr
    err = invoke(failing_job.outputs_file, "logs", failing_job.id, task, "--stderr")
    assert err.stdout.strip() in ("cannot parse: unexpected byte 0xff", "out of memory")


SLOW = """\
echo "line 1"
i=0
while [ ! -e "$GO" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo "line 2"
echo "line 3"
"""


def test_logs_follow_streams_a_running_task_until_it_ends(tmp_path: Path, outputs_file: Path) -> None:
    """The task waits for a file the test creates only after ``--follow`` printed its first line."""
    go = tmp_path / "go"
    script = tmp_path / "slow.sh"
    script.write_text(f"GO={go}\n{SLOW}")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a b c")
    res = invoke(
        outputs_file, "submit", str(tmp_path / "in"), "--job-id", "report-follow", "--no-wait",
        "--command", f"/bin/sh {script} {{input}} {{output_dir}}",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    cmd = [sys.executable, "-c", "from runner.cli import main; main()", "--outputs", str(outputs_file)]
    proc = subprocess.Popen(
        [*cmd, "logs", "report-follow", "1", "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ}, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "line 1\n"
        batch = Batch(load_file(outputs_file))
        assert batch.get_task("report-follow", "1").state is TaskState.RUNNING  # streamed, not after the end
        go.touch()
        rest = proc.stdout.read()
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
    assert rest == "line 2\nline 3\n"
    assert batch.get_task("report-follow", "1").state is TaskState.COMPLETED


def test_jobs_at_80_columns_keeps_the_counts(word_job: Job, failing_job: Job) -> None:
    """Long job ids lose their middle; the counts are never squeezed to "…"."""
    res = CliRunner().invoke(app, ["--outputs", str(word_job.outputs_file), "jobs"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.stderr
    lines = res.stderr.splitlines()
    assert all(len(ln) <= 80 for ln in lines), [ln for ln in lines if len(ln) > 80]
    at = next(i for i, ln in enumerate(lines) if "status" in ln and "retry" in ln)
    assert lines[at].split()[:6] == ["job", "status", "done", "failed", "run", "wait"], lines[at]
    # The shared target holds the whole suite's jobs: their ids may lose their middle, never
    # the counts (whole numbers in the four count columns of every row).
    rows = [ln.split() for ln in lines[at + 2 :] if ln.strip() and not ln.startswith("retry")]
    rows = [r for r in rows if len(r) >= 6 and r[1] in {"done", "failed", "running", "waiting", "cancelled"}]
    assert rows and all(all(c.isdigit() for c in r[2:6]) for r in rows), rows
    assert any(r[1:4] == ["done", "13", "0"] for r in rows), rows
