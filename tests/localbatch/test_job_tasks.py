"""Job manager, job preparation and job release tasks through the official SDK, on the shared pool
(2 nodes x 2 slots): ordering, killJobOnCompletion, runExclusive, the preparation task's failure
semantics, the release task at the job's end, and the per-node status list."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from tests.conftest import LocalBatch
from tests.localbatch.conftest import new_job, unique, wait_for

OLD_PYTHON = os.environ.get("OLD_AZURE_BATCH_PYTHON")
SAMPLE = Path(__file__).parent / "clients" / "jobprep_release_azure_batch_14.py"


def _stdout(client: BatchClient, job_id: str, task_id: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, "stdout.txt")).decode()


def _job_in(client: BatchClient, job_id: str, state: str) -> bm.BatchJob | None:
    job = client.get_job(job_id)
    return job if job.state == state else None


def test_manager_runs_after_preparation_ends_the_job_and_release_runs_before_completion(
    client: BatchClient, shared_pool: str
) -> None:
    job_id = new_job(
        client,
        shared_pool,
        job_preparation_task=bm.BatchJobPreparationTask(command_line="/bin/sh -c 'echo prepared > ready'"),
        job_release_task=bm.BatchJobReleaseTask(
            command_line="/bin/sh -c 'cat \"$AZ_BATCH_JOB_PREP_WORKING_DIR/ready\"; echo released'"
        ),
        job_manager_task=bm.BatchJobManagerTask(
            id="manager", command_line="/bin/sh -c 'cat \"$AZ_BATCH_JOB_PREP_WORKING_DIR/ready\"'"
        ),
    )
    done = wait_for(lambda: _job_in(client, job_id, "completed"))
    assert done.execution_info.termination_reason == "JMComplete"  # killJobOnCompletion by default
    manager = client.get_task(job_id, "manager")
    assert manager.execution_info.result == "success"
    assert _stdout(client, job_id, "manager") == "prepared\n"  # the preparation task ran first there
    assert manager.required_slots == 2  # runExclusive by default: the whole node
    [status] = list(client.list_job_preparation_and_release_task_status(job_id))
    assert status.node_id == manager.node_info.node_id and status.pool_id == shared_pool
    prep, release = status.job_preparation_task_execution_info, status.job_release_task_execution_info
    assert (prep.state, prep.result, prep.exit_code, prep.retry_count) == ("completed", "success", 0, 0)
    assert (release.state, release.result, release.exit_code) == ("completed", "success", 0)
    assert release.start_time >= manager.execution_info.end_time  # at the job's end
    assert release.task_root_directory == f"workitems/{job_id}/job-1/jobrelease"
    node_file = release.task_root_directory + "/stdout.txt"
    text = b"".join(client.download_node_file(shared_pool, status.node_id, node_file)).decode()
    assert text == "prepared\nreleased\n"


def test_failed_preparation_keeps_tasks_off_its_nodes_unless_not_waited_for(
    client: BatchClient, shared_pool: str
) -> None:
    failing = bm.BatchJobPreparationTask(
        command_line="/bin/sh -c 'exit 3'", constraints=bm.BatchTaskConstraints(max_task_retry_count=1)
    )
    blocked = new_job(client, shared_pool, job_preparation_task=failing)
    client.create_task(blocked, bm.BatchTaskCreateOptions(id="t1", command_line="/bin/true"))

    def both_failed() -> list[bm.BatchJobPreparationAndReleaseTaskStatus] | None:
        found = list(client.list_job_preparation_and_release_task_status(blocked))
        infos = [s.job_preparation_task_execution_info for s in found]
        return found if len(found) == 2 and all(i.state == "completed" for i in infos) else None

    statuses = wait_for(both_failed)
    for s in statuses:
        info = s.job_preparation_task_execution_info
        assert (info.result, info.exit_code, info.retry_count) == ("failure", 3, 1)
        assert info.failure_info.code == "FailureExitCode"
    task = wait_for(lambda: t if (t := client.get_task(blocked, "t1")).state == "active" else None)
    assert task.previous_state == "preparing" and task.node_info is None  # back in the queue, nowhere to go

    not_waited = new_job(
        client,
        shared_pool,
        job_preparation_task=bm.BatchJobPreparationTask(command_line="/bin/false", wait_for_success=False),
        job_manager_task=bm.BatchJobManagerTask(
            id="m", command_line="/bin/true", kill_job_on_completion=False, run_exclusive=False
        ),
    )
    manager = wait_for(lambda: t if (t := client.get_task(not_waited, "m")).state == "completed" else None)
    assert manager.execution_info.result == "success" and manager.required_slots == 1
    assert client.get_job(not_waited).state == "active"  # killJobOnCompletion false
    for job_id in (blocked, not_waited):
        client.begin_delete_job(job_id, polling_interval=0.05).result(timeout=10)

    plain = new_job(client, shared_pool)
    with pytest.raises(HttpResponseError) as exc:
        list(client.list_job_preparation_and_release_task_status(plain))
    assert exc.value.status_code == 409
    assert exc.value.error.code == "JobPreparationTaskOrReleaseTaskNotSpecified"
    with pytest.raises(HttpResponseError) as exc:
        new_job(client, shared_pool, job_release_task=bm.BatchJobReleaseTask(command_line="/bin/true"))
    assert exc.value.status_code == 400
    assert {d.code: d.message for d in exc.value.error.details}["PropertyName"] == "jobReleaseTask"
    client.begin_delete_job(plain, polling_interval=0.05).result(timeout=10)


@pytest.mark.skipif(not OLD_PYTHON, reason="set OLD_AZURE_BATCH_PYTHON to a python with azure-batch==14.2.0")
def test_jobprep_and_release_sample_on_azure_batch_14(localbatch: LocalBatch) -> None:
    """azure-batch-samples' sample1_jobprep_and_release flow, on the previous SDK generation."""
    job_id = unique("JobPrepRelease")
    run = subprocess.run(
        [str(OLD_PYTHON), str(SAMPLE), localbatch.url, localbatch.account_name, job_id],
        env={**os.environ, "BATCH_ACCOUNT_KEY": localbatch.account_key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line.split("\t") for line in run.stdout.splitlines()]
    assert lines == [
        ["task", "JobPrepAndRelease", "0", "Hello world"],
        ["prep", "True", "completed", "0"],
        ["deleted", job_id],
    ]
