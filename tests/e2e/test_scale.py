"""Task submission at more than one chunk, and waiting on a pool with no nodes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from typer.testing import CliRunner

from runner.batch import Batch
from runner.cli import app
from runner.outputs import Outputs, write_file
from runner.pool_spec import PoolSpec
from runner.tasks import TaskSpec
from tests.e2e.test_submit import write_corpus

IDLE_POOL = PoolSpec(pool_id="no-nodes", dedicated_nodes=0)


def test_hundreds_of_tasks_are_added_once_and_resume_adds_none(target_outputs: Outputs) -> None:
    batch = Batch(target_outputs)
    batch.create_pool(IDLE_POOL)  # no nodes: the tasks stay queued, the test only counts them
    job_id = "scale-250"
    batch.ensure_job(job_id, IDLE_POOL.pool_id, uses_task_dependencies=False)
    specs = [TaskSpec(str(i), f"file {i}", "/bin/true", (), ()) for i in range(1, 251)]
    assert batch.add_tasks(job_id, specs) == 250
    assert batch.add_tasks(job_id, specs) == 0
    ids = batch.existing_task_ids(job_id)
    assert ids == {str(i) for i in range(1, 251)}
    counts = batch.task_counts(job_id)
    assert (counts.active, counts.completed) == (250, 0)
    assert batch.delete_job(job_id) is True


def test_timeout_leaves_the_job_running_and_says_how_to_follow(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    Batch(target_outputs).create_pool(IDLE_POOL)
    path = tmp_path / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs, pool_id=IDLE_POOL.pool_id))
    write_corpus(tmp_path / "in", {"a.txt": 5})
    res = CliRunner().invoke(
        app,
        ["--outputs", str(path), "submit", str(tmp_path / "in"), "--job-id", "idle-wait", "--timeout", "1.5"],
        catch_exceptions=False,
    )
    assert res.exit_code == 8, res.stderr
    assert "did not finish" in res.stderr and "runner status idle-wait" in res.stderr
    assert Batch(target_outputs).get_job("idle-wait").state == "active"

    cancel = CliRunner().invoke(app, ["--outputs", str(path), "cancel", "idle-wait"], catch_exceptions=False)
    assert cancel.exit_code == 0, cancel.stderr
    assert Batch(target_outputs).get_job("idle-wait").state == "completed"
    # The cancelled job's tasks stay active and will never run (as on Azure): resuming it
    # says so at once instead of waiting for --timeout.
    resume = CliRunner().invoke(
        app,
        ["--outputs", str(path), "submit", str(tmp_path / "in"), "--job-id", "idle-wait", "--timeout", "600"],
        catch_exceptions=False,
    )
    assert resume.exit_code == 11, resume.stderr
    assert "was terminated (cancelled) with 2 task(s) that never ran" in resume.stderr
    assert "runner results idle-wait" in resume.stderr
    assert Batch(target_outputs).task_counts("idle-wait").active == 2
    assert Batch(target_outputs).delete_job("idle-wait") is True
