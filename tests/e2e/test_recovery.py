"""Recovery: `runner retry` reruns what failed; the job life cycle leaves no job silently active.

Tasks run as real processes on this machine, so a task can be made to fail until
the test "fixes" the cause (creates a file it checks for): that is a transient
failure, as an Azurite outage or a flaky download is on Azure.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner, Result

from runner.batch import Batch
from runner.cli import app
from runner.errors import TaskFailures
from runner.outputs import Outputs
from runner.progress import NullReporter
from runner.results import TaskOutcome
from runner.retry import retry
from runner.storage import Storage
from runner.submit import SubmitOptions, collect, monitor
from runner.targets import AuthMode, Session, Target, TargetKind
from tests.e2e.handmade_jobs import two_files_and_a_merge, write_counts
from tests.e2e.test_submit import write_corpus


def _invoke(outputs_file: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--outputs", str(outputs_file), *args], catch_exceptions=False)


def _wait_state(batch: Batch, job_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while batch.get_job(job_id).state != state:
        assert time.monotonic() < deadline, f"job {job_id} did not become {state}"
        time.sleep(0.1)


def _flaky_command(fixed: Path) -> str:
    return (
        f"case {{input}} in *bad*) if ! test -e {fixed}; then echo not yet >&2; exit 4; fi;; esac; "
        "wc -w < {input} > {output_dir}/n"
    )


def test_retry_reruns_failed_tasks_and_the_job_completes_after(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    write_corpus(tmp_path / "in", {"good.txt": 20, "bad.txt": 30})
    job_id = "e2e-retry"
    fixed = tmp_path / "fixed"
    dest = tmp_path / "r"
    args = ["submit", str(tmp_path / "in"), "--job-id", job_id, "--command", _flaky_command(fixed)]
    first = _invoke(outputs_file, *args, "--dest", str(dest), "--cleanup")
    assert first.exit_code == 10, first.stderr
    assert f"kept active so they can run again: `runner retry {job_id}`" in first.stderr
    batch, storage = Batch(target_outputs), Storage(target_outputs)
    # --cleanup deletes nothing while tasks failed: their logs and the retry need it all
    assert batch.get_job(job_id).state == "active"
    assert len(storage.list_blobs(target_outputs.input_container, f"{job_id}/")) == 3  # 2 inputs + manifest

    again = _invoke(outputs_file, *args, "--dest", str(dest))  # a resume says the same, no loop
    assert again.exit_code == 10 and "runner retry" in again.stderr, again.stderr

    fixed.touch()
    res = _invoke(outputs_file, "--json", "retry", job_id, "--dest", str(dest), "--cleanup")
    assert res.exit_code == 0, res.stderr
    assert "1 failed task(s) reactivated" in res.stderr
    doc = json.loads(res.stdout)
    assert sorted((f["input"], f["status"]) for f in doc["files"]) == [
        ("bad.txt", "succeeded"),
        ("good.txt", "succeeded"),
    ]
    assert (dest / "files" / "bad.txt.out" / "n").read_text().strip() == "30"
    assert not batch.job_exists(job_id)  # --cleanup, now that everything succeeded
    assert storage.list_blobs(target_outputs.input_container, f"{job_id}/") == []


def test_a_successful_run_completes_its_job_and_a_cancelled_one_cannot_be_retried(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    write_corpus(tmp_path / "in", {"good.txt": 20, "bad.txt": 30})
    batch = Batch(target_outputs)
    ok = _invoke(outputs_file, "submit", str(tmp_path / "in" / "good.txt"), "--job-id", "e2e-life-ok")
    assert ok.exit_code == 0, ok.stderr
    _wait_state(batch, "e2e-life-ok", "completed")  # not left active: it leaves the quota

    job_id = "e2e-life-cancel"
    args = ["submit", str(tmp_path / "in"), "--job-id", job_id, "--command", _flaky_command(tmp_path / "x")]
    assert _invoke(outputs_file, *args).exit_code == 10
    assert batch.get_job(job_id).state == "active"
    assert _invoke(outputs_file, "cancel", job_id).exit_code == 0
    _wait_state(batch, job_id, "completed")
    res = _invoke(outputs_file, "retry", job_id)
    assert res.exit_code == 2, res.stderr
    assert "its 1 failed task(s) cannot run again" in res.stderr and "new --job-id" in res.stderr


def test_retry_unblocks_the_merge_a_failed_file_was_blocking(tmp_path: Path, target_outputs: Outputs) -> None:
    out = target_outputs
    session = Session(Target(TargetKind.FILE, outputs_file=tmp_path / "x.json"), out, AuthMode.SHAREDKEY)
    job_id = "e2e-retry-merge"
    fixed = tmp_path / "fixed"
    scripts = {
        "1": write_counts("ok_counts.json"),
        "2": f"test -e {fixed} || exit 4; " + write_counts("bad_counts.json"),
        "merge": write_counts("corpus_counts.json"),
    }
    manifest = two_files_and_a_merge(session, out, job_id, scripts)
    opts = SubmitOptions(timeout=timedelta(seconds=120), dest=tmp_path / "r")
    monitor(session, manifest, opts, NullReporter())
    try:
        collect(session, manifest, tmp_path / "r", NullReporter())
        raise AssertionError("task 2 should have failed")
    except TaskFailures as err:
        assert err.result.corpus.outcome is TaskOutcome.SKIPPED  # type: ignore[attr-defined]
        # the blocked merge keeps the job active: said, with what to do
        assert f"job {job_id} is kept active so they can run again: `runner retry {job_id}`" in str(err)
        assert session.batch.get_job(job_id).state == "active"
    fixed.touch()
    result = retry(session, job_id, opts, NullReporter())
    assert result.corpus is not None and result.corpus.outcome is TaskOutcome.SUCCEEDED
    assert [f.outcome for f in result.files] == [TaskOutcome.SUCCEEDED, TaskOutcome.SUCCEEDED]
    _wait_state(session.batch, job_id, "completed")
