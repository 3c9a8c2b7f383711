"""Failure paths end to end: start task failing, blocked aggregate, wrong key, missing pool, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from typer.testing import CliRunner, Result

from runner import manifest as mf
from runner.batch import Batch
from runner.cli import app
from runner.errors import TaskFailures
from runner.outputs import Outputs, load_file, write_file
from runner.pool_spec import PoolSpec, StartTaskSpec
from runner.progress import NullReporter
from runner.results import TaskOutcome
from runner.storage import Storage
from runner.submit import SubmitOptions, collect, monitor
from runner.targets import AuthMode, Session, Target, TargetKind
from runner.tasks import MERGE_TASK_ID, TaskSpec
from tests.e2e.handmade_jobs import shell_tasks, two_files_and_a_merge, write_counts
from tests.e2e.test_submit import write_corpus

RUNNER = Path(sys.executable).with_name("runner")


def _invoke(outputs_file: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--outputs", str(outputs_file), *args], catch_exceptions=False)


def _sdk_client(outputs: Outputs) -> BatchClient:
    """The SDK itself, for what the runner does not do (delete a task, resize a pool)."""
    return BatchClient(
        outputs.batch_account_url,
        AzureNamedKeyCredential(outputs.batch_account_name, outputs.batch_account_key or ""),
    )


def _variant(tmp_path: Path, outputs: Outputs, **changes: str) -> Path:
    path = tmp_path / "variant-outputs.json"
    write_file(path, dataclasses.replace(outputs, **changes))
    return path


def test_start_task_failing_on_every_node_is_reported_at_once(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    spec = PoolSpec(
        pool_id="broken-start-task",
        dedicated_nodes=1,
        start_task=StartTaskSpec(
            command_line="/bin/sh -c 'echo start task: cannot install the toolchain >&2; exit 7'",
            max_task_retry_count=0,
        ),
    )
    Batch(target_outputs).create_pool(spec)
    outputs_file = _variant(tmp_path, target_outputs, pool_id=spec.pool_id)
    write_corpus(tmp_path / "in", {"a.txt": 10})
    res = _invoke(
        outputs_file, "submit", str(tmp_path / "in"), "--job-id", "e2e-broken-pool", "--timeout", "120"
    )
    assert res.exit_code == 9, res.stderr
    assert "start task failed on all 1 node(s)" in res.stderr
    assert "cannot install the toolchain" in res.stderr


def test_merge_blocked_by_a_failed_file_is_reported_as_skipped(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    """Batch's default: a failed dependency blocks the merge. The runner must not wait for it."""
    out = target_outputs
    session = Session(Target(TargetKind.FILE, outputs_file=tmp_path / "x.json"), out, AuthMode.SHAREDKEY)
    job_id = "e2e-merge-blocked"
    scripts = {
        "1": write_counts("ok_counts.json"),
        "2": "echo this input is broken >&2; exit 4",
        "merge": "echo merge must not run >&2; exit 1",
    }
    manifest = two_files_and_a_merge(session, out, job_id, scripts)
    final = monitor(session, manifest, SubmitOptions(timeout=timedelta(seconds=120)), NullReporter())
    assert (final.completed, final.failed) == (2, 1)
    with pytest.raises(TaskFailures) as info:
        collect(session, manifest, tmp_path / "r", NullReporter())
    result = info.value.result
    assert [(f.task_id, f.exit_code) for f in info.value.failures] == [("2", 4)]  # type: ignore[attr-defined]
    assert "this input is broken" in info.value.failures[0].stderr_tail  # type: ignore[attr-defined]
    assert result.corpus.outcome is TaskOutcome.SKIPPED  # type: ignore[attr-defined]
    ok = result.files[0]  # type: ignore[attr-defined]
    assert ok.outcome is TaskOutcome.SUCCEEDED and ok.top[0].word == "w"
    assert session.batch.get_task(job_id, MERGE_TASK_ID).state.value == "active"


def test_wrong_key_and_missing_pool_are_one_clear_line(tmp_path: Path, target_outputs: Outputs) -> None:
    write_corpus(tmp_path / "in", {"a.txt": 5})
    wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    res = _invoke(_variant(tmp_path, target_outputs, batch_account_key=wrong), "submit", str(tmp_path / "in"))
    assert res.exit_code == 4
    assert "Batch rejected the credentials" in res.stderr
    assert wrong not in res.stderr + res.stdout and "Traceback" not in res.stderr

    res = _invoke(_variant(tmp_path, target_outputs, pool_id="no-such-pool"), "submit", str(tmp_path / "in"))
    assert res.exit_code == 5
    assert "pool no-such-pool does not exist" in res.stderr

    res = _invoke(_variant(tmp_path, target_outputs, batch_account_url="http://127.0.0.1:9"), "jobs")
    assert res.exit_code == 6
    assert "unreachable" in res.stderr


def test_a_completed_job_that_lacks_tasks_is_one_clear_line(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    """A job cancelled before its tasks were all in cannot take the rest: say so, and what to do."""
    write_corpus(tmp_path / "in", {"a.txt": 5, "b.txt": 5})
    args = ["submit", str(tmp_path / "in"), "--job-id", "e2e-cancelled", "--dest", str(tmp_path / "r")]
    args += ["--pack", "none"]  # task "2" is file 2's
    assert _invoke(outputs_file, *args, "--no-wait").exit_code == 0
    assert _invoke(outputs_file, "cancel", "e2e-cancelled").exit_code == 0
    # As if the cancel had come while tasks were being added: one of them is missing.
    client = _sdk_client(target_outputs)
    client.delete_task("e2e-cancelled", "2")
    res = _invoke(outputs_file, *args)
    assert res.exit_code == 7, res.stderr
    assert "the job is completed" in res.stderr and "new --job-id" in res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(t.id for t in Batch(target_outputs).list_tasks("e2e-cancelled")) == ["1", "merge"]


def test_failures_are_reported_and_results_downloaded_after_the_nodes_are_gone(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    """On Azure a failed task's stderr is lost with its node (autoscale down, spot, resize):
    `runner results` still reports the failure and downloads what succeeded."""
    pool = PoolSpec(pool_id="vanishing", dedicated_nodes=1)
    Batch(target_outputs).create_pool(pool)
    outputs_file = _variant(tmp_path, target_outputs, pool_id=pool.pool_id)
    write_corpus(tmp_path / "in", {"good.txt": 20, "bad.txt": 20})
    command = (
        'case {input} in *bad*) echo "boom" >&2; exit 3;; esac; wc -w < {input} > {output_dir}/words.txt'
    )
    first = _invoke(
        outputs_file, "submit", str(tmp_path / "in"), "--command", command, "--job-id", "e2e-gone"
    )
    assert first.exit_code == 10, first.stderr
    client = _sdk_client(target_outputs)
    client.begin_resize_pool(
        pool.pool_id, bm.BatchPoolResizeOptions(target_dedicated_nodes=0), polling_interval=0.1
    ).result()
    deadline = time.monotonic() + 30
    while list(client.list_nodes(pool.pool_id)):
        assert time.monotonic() < deadline, "the node did not leave the pool"
        time.sleep(0.1)

    res = _invoke(outputs_file, "--json", "results", "e2e-gone", "--dest", str(tmp_path / "r"))
    assert res.exit_code == 10, res.stderr
    doc = json.loads(res.stdout)
    assert [(f["input"], f["exitCode"], f["stderrTail"]) for f in doc["failures"]] == [("bad.txt", 3, "")]
    assert (tmp_path / "r" / "files" / "good.txt.out" / "words.txt").read_text().strip() == "20"
    bad_task = next(f["taskId"] for f in doc["failures"])
    logs = _invoke(outputs_file, "logs", "e2e-gone", bad_task, "--stderr")
    assert logs.exit_code == 5, logs.stderr
    assert "files are gone" in logs.stderr and "Traceback" not in logs.stderr
    client.begin_delete_pool(pool.pool_id, polling_interval=0.1).result()


def test_ctrl_c_exits_130_and_the_printed_command_resumes(tmp_path: Path, outputs_file: Path) -> None:
    inputs = tmp_path / "in"
    write_corpus(inputs, {f"f{i}.txt": 20 for i in range(3)})
    job_id = "e2e-ctrl-c"
    cmd = [str(RUNNER), "--outputs", str(outputs_file), "submit", str(inputs), "--job-id", job_id]
    cmd += ["--command", "sleep 2; wc -w < {input} > {output_dir}/n", "--dest", str(tmp_path / "r")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("tasks:"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert f"job {job_id} is resumable: {RUNNER} " in rest

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "0 added, 3 already there" in again.stderr
    for i in range(3):
        n = (tmp_path / "r" / "files" / f"f{i}.txt.out" / "n").read_text().strip()
        assert int(n) == len((inputs / f"f{i}.txt").read_text().split())
    out = load_file(outputs_file)
    assert len(Storage(out).list_blobs(out.input_container, job_id + "/")) == 3 + 1  # inputs + manifest


def test_two_level_merge_blocked_by_a_failed_file_is_reported_as_skipped(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    """Groups of 2: merge-1 (tasks 1, 2) runs; merge-2 (3 failed, 4) and merge stay blocked."""
    out = target_outputs
    session = Session(Target(TargetKind.FILE, outputs_file=tmp_path / "x.json"), out, AuthMode.SHAREDKEY)
    job_id = "e2e-two-level-blocked"
    tasks = tuple(
        mf.ManifestTask(str(i), f"f{i}.txt", mf.input_blob(job_id, f"f{i}.txt"), f"f{i}.txt", 1)
        for i in range(1, 5)
    )
    manifest = mf.Manifest(job_id, mf.now_iso(), 3, True, None, 0, tasks, merge_group_size=2)
    assert manifest.task_ids == ["1", "2", "3", "4", "merge-1", "merge-2", MERGE_TASK_ID]
    mf.save(session.storage, out.input_container, manifest)
    task = shell_tasks(session, out, job_id)

    ok = "mkdir -p out && echo ok > out/ok.txt"
    session.batch.ensure_job(job_id, out.pool_id, uses_task_dependencies=True)
    session.batch.add_tasks(
        job_id,
        [
            task("1", ok),
            task("2", ok),
            task("3", "echo this input is broken >&2; exit 4"),
            task("4", ok),
            task("merge-1", ok, depends_on_range=(1, 2)),
            task("merge-2", "exit 1", depends_on_range=(3, 4)),
            task(MERGE_TASK_ID, "exit 1", depends_on_ids=("merge-1", "merge-2")),
        ],
    )
    final = monitor(session, manifest, SubmitOptions(timeout=timedelta(seconds=120)), NullReporter())
    assert (final.completed, final.failed, final.active) == (5, 1, 2)
    with pytest.raises(TaskFailures) as info:
        collect(session, manifest, tmp_path / "r", NullReporter())
    assert [f.task_id for f in info.value.failures] == ["3"]  # type: ignore[attr-defined]
    assert info.value.result.corpus.outcome is TaskOutcome.SKIPPED  # type: ignore[attr-defined]
    states = {t.id: t.state.value for t in session.batch.list_tasks(job_id)}
    assert (states["merge-1"], states["merge-2"], states[MERGE_TASK_ID]) == ("completed", "active", "active")


def test_a_job_that_completed_normally_is_not_reported_cancelled_from_stale_counts(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    """Batch documents task counts as possibly lagging: counts read before a job completed
    normally (every task ran, ``onAllTasksComplete``) must not turn it into "cancelled"."""
    from runner.submit import _check_job_active

    out = target_outputs
    session = Session(Target(TargetKind.FILE, outputs_file=tmp_path / "x.json"), out, AuthMode.SHAREDKEY)
    job_id = "e2e-finished-stale-counts"
    session.batch.ensure_job(job_id, out.pool_id, uses_task_dependencies=False)
    specs = [TaskSpec(str(i), f"file {i}", "/bin/true", (), ()) for i in (1, 2)]
    assert session.batch.add_tasks(job_id, specs) == 2
    session.batch.complete_when_tasks_done(job_id)
    deadline = time.monotonic() + 60
    while session.batch.get_job(job_id).state != "completed":
        assert time.monotonic() < deadline, "the job did not complete"
        time.sleep(0.1)
    # monitor() calls it when (possibly stale) counts say nothing runs and tasks wait
    _check_job_active(session, job_id)  # must not raise: nothing was cancelled
    assert session.batch.delete_job(job_id) is True
