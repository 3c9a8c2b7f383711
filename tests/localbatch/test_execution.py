"""How tasks run: environment, no shell, retries, limits, start task failures, job actions."""

from __future__ import annotations

import os
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.storage.blob import BlobServiceClient

from tests.conftest import Azurite, LocalBatch
from tests.localbatch.conftest import (
    container_sas_url,
    new_job,
    unique,
    wait_for,
    wait_task_completed,
)


def _read(client: BatchClient, job_id: str, task_id: str, path: str) -> str:
    return b"".join(client.download_task_file(job_id, task_id, path)).decode()


def test_environment_layout_and_no_shell(
    client: BatchClient, shared_pool: str, localbatch: LocalBatch
) -> None:
    job_id = new_job(
        client, shared_pool, common_environment_settings=[bm.EnvironmentSetting(name="FROM_JOB", value="j")]
    )
    client.create_task(
        job_id,
        bm.BatchTaskCreateOptions(
            id="env",
            command_line="/usr/bin/env",
            environment_settings=[bm.EnvironmentSetting(name="MY_SETTING", value="a b$c")],
        ),
    )
    # Without a shell, $HOME and the quotes reach the program literally (as on Batch).
    client.create_task(
        job_id, bm.BatchTaskCreateOptions(id="literal", command_line="/bin/echo '$HOME' \"x y\"")
    )
    task = wait_task_completed(client, job_id, "env")
    env = dict(line.split("=", 1) for line in _read(client, job_id, "env", "stdout.txt").splitlines())
    node_id = task.node_info.node_id
    assert env["AZ_BATCH_NODE_ID"] == node_id
    assert env["AZ_BATCH_POOL_ID"] == shared_pool
    assert env["AZ_BATCH_JOB_ID"] == job_id
    assert env["AZ_BATCH_TASK_ID"] == "env"
    assert env["AZ_BATCH_ACCOUNT_NAME"] == localbatch.account_name
    assert env["AZ_BATCH_ACCOUNT_URL"] == localbatch.url
    root = env["AZ_BATCH_NODE_ROOT_DIR"]
    assert env["AZ_BATCH_NODE_SHARED_DIR"] == os.path.join(root, "shared")
    assert env["AZ_BATCH_NODE_STARTUP_DIR"] == os.path.join(root, "startup")
    assert env["AZ_BATCH_TASK_DIR"] == os.path.join(root, "workitems", job_id, "job-1", "env")
    assert env["AZ_BATCH_TASK_WORKING_DIR"] == os.path.join(env["AZ_BATCH_TASK_DIR"], "wd")
    assert env["MY_SETTING"] == "a b$c" and env["FROM_JOB"] == "j"
    assert not [k for k in env if k.startswith("LOCALBATCH")]
    assert localbatch.account_key not in "\n".join(env.values())
    assert task.node_info.task_root_directory == f"workitems/{job_id}/job-1/env"
    wait_task_completed(client, job_id, "literal")
    assert _read(client, job_id, "literal", "stdout.txt") == "$HOME x y\n"


def test_retries_until_the_limit(client: BatchClient, shared_pool: str, tmp_path: Path) -> None:
    job_id = new_job(client, shared_pool)

    # Retries may run on any node, so attempts are counted in a file outside the nodes.
    def counted(name: str, script: str, retries: int) -> bm.BatchTaskCreateOptions:
        return bm.BatchTaskCreateOptions(
            id=name,
            command_line=f"/bin/sh -c 'echo x >> \"$COUNTER\"; {script}'",
            environment_settings=[bm.EnvironmentSetting(name="COUNTER", value=str(tmp_path / name))],
            constraints=bm.BatchTaskConstraints(max_task_retry_count=retries),
        )

    client.create_task(job_id, counted("flaky", "exit 3", 2))
    client.create_task(job_id, counted("second-try", 'test $(wc -l < "$COUNTER") -ge 2', 5))
    flaky = wait_task_completed(client, job_id, "flaky")
    assert flaky.execution_info.retry_count == 2
    assert flaky.execution_info.exit_code == 3 and flaky.execution_info.result == "failure"
    assert flaky.execution_info.last_retry_time is not None
    assert (tmp_path / "flaky").read_text().count("x") == 3
    second = wait_task_completed(client, job_id, "second-try")
    assert second.execution_info.retry_count == 1 and second.execution_info.result == "success"
    assert (tmp_path / "second-try").read_text().count("x") == 2

    # Reactivate resets the retry count and runs the task again (three more attempts).
    client.reactivate_task(job_id, "flaky")
    again = wait_task_completed(client, job_id, "flaky")
    assert (tmp_path / "flaky").read_text().count("x") == 6
    assert again.execution_info.retry_count == 2


def test_wall_clock_limit_and_terminate(client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool)
    client.create_task(
        job_id,
        bm.BatchTaskCreateOptions(
            id="slow",
            command_line="/bin/sleep 60",
            constraints=bm.BatchTaskConstraints(max_wall_clock_time="PT0.5S", max_task_retry_count=3),
        ),
    )
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="endme", command_line="/bin/sleep 60"))
    slow = wait_task_completed(client, job_id, "slow")
    assert slow.execution_info.result == "failure"
    assert slow.execution_info.failure_info.code == "MaxWallClockTimeExpiry"
    assert slow.execution_info.retry_count == 0  # a wall-clock expiry is not retried
    elapsed = slow.execution_info.end_time - slow.execution_info.start_time
    assert elapsed.total_seconds() < 30
    wait_for(lambda: client.get_task(job_id, "endme").state == "running")
    client.terminate_task(job_id, "endme")
    ended = wait_task_completed(client, job_id, "endme")
    assert ended.execution_info.failure_info.code == "TaskEnded"
    assert ended.execution_info.result == "failure"


def test_bad_resource_file_and_failed_upload(
    client: BatchClient, shared_pool: str, azurite: Azurite, blobs: BlobServiceClient
) -> None:
    job_id = new_job(client, shared_pool)
    container = unique("ro")
    blobs.create_container(container)
    client.create_task(
        job_id,
        bm.BatchTaskCreateOptions(
            id="missing-input",
            command_line="/bin/true",
            resource_files=[
                bm.ResourceFile(http_url=f"{azurite.blob_endpoint}/{container}/nope.txt", file_path="x")
            ],
            constraints=bm.BatchTaskConstraints(max_task_retry_count=3),
        ),
    )
    read_only = container_sas_url(azurite, container, read=True)
    client.create_task(
        job_id,
        bm.BatchTaskCreateOptions(
            id="cannot-upload",
            command_line="/bin/sh -c 'echo r > r.txt'",
            output_files=[
                bm.OutputFile(
                    file_pattern="r.txt",
                    destination=bm.OutputFileDestination(
                        container=bm.OutputFileBlobContainerDestination(container_url=read_only)
                    ),
                    upload_options=bm.OutputFileUploadConfiguration(upload_condition="taskCompletion"),
                )
            ],
        ),
    )
    missing = wait_task_completed(client, job_id, "missing-input")
    info = missing.execution_info
    assert info.result == "failure" and info.retry_count == 0 and info.exit_code is None
    assert info.failure_info.category == "usererror"
    assert "sig=" not in (info.failure_info.message or "")
    upload = wait_task_completed(client, job_id, "cannot-upload")
    assert upload.execution_info.exit_code == 0
    assert upload.execution_info.result == "failure"
    assert upload.execution_info.failure_info.code == "FileUploadMiscError"
    assert "sig=" not in (upload.execution_info.failure_info.message or "")


def test_start_task_failure_marks_nodes(client: BatchClient) -> None:
    pool_id = unique("badpool")
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="x",
            target_dedicated_nodes=1,
            start_task=bm.BatchStartTask(
                command_line="/bin/sh -c 'echo no python >&2; exit 4'",
                wait_for_success=True,
                max_task_retry_count=1,
            ),
        )
    )
    node = wait_for(
        lambda: next((n for n in client.list_nodes(pool_id) if n.state == "starttaskfailed"), None)
    )
    info = node.start_task_info
    assert info.exit_code == 4 and info.result == "failure" and info.retry_count == 1
    assert info.failure_info.code == "FailureExitCode"
    err = b"".join(client.download_node_file(pool_id, node.id, "startup/stderr.txt"))
    assert err == b"no python\n"
    # No task is scheduled on a node whose start task failed.
    job_id = new_job(client, pool_id)
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    assert client.get_task(job_id, "t").state == "active"
    client.begin_delete_job(job_id, polling_interval=0.1).result()
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()


def test_job_actions(client: BatchClient, shared_pool: str) -> None:
    # onTaskFailure=performexitoptionsjobaction: a failing task terminates the job.
    job_id = new_job(client, shared_pool, task_failure_mode="performexitoptionsjobaction")
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="bad", command_line="/bin/false"))
    job = wait_for(lambda: j if (j := client.get_job(job_id)).state == "completed" else None)
    assert job.execution_info.termination_reason == "TaskFailed"

    # onAllTasksComplete=terminatejob: the job completes after its last task.
    job2 = new_job(client, shared_pool, all_tasks_complete_mode="terminatejob")
    client.create_tasks(
        job2, [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(3)]
    )
    done = wait_for(lambda: j if (j := client.get_job(job2)).state == "completed" else None)
    assert done.execution_info.termination_reason == "AllTasksComplete"
    assert client.get_job_task_counts(job2).task_counts.succeeded == 3


def test_job_wall_clock_limit(client: BatchClient, shared_pool: str) -> None:
    from datetime import timedelta

    job_id = new_job(
        client, shared_pool, constraints=bm.BatchJobConstraints(max_wall_clock_time=timedelta(seconds=1))
    )
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="forever", command_line="/bin/sleep 60"))
    job = wait_for(lambda: j if (j := client.get_job(job_id)).state == "completed" else None)
    assert job.execution_info.termination_reason == "MaxWallClockTimeExpiry"
    task = client.get_task(job_id, "forever")
    assert task.state == "completed" and task.execution_info.failure_info.code == "TaskEnded"
