"""The whole Batch lifecycle through the real SDK against localbatch and Azurite."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch.models._models import BatchJobTerminateOptions
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from tests.conftest import Azurite, LocalBatch
from tests.localbatch.conftest import (
    container_sas_url,
    new_job,
    unique,
    wait_for,
    wait_nodes_idle,
    wait_task_completed,
)


def _read(client: BatchClient, job_id: str, task_id: str, path: str) -> bytes:
    return b"".join(client.download_task_file(job_id, task_id, path))


def test_pool_job_tasks_files_counts_terminate_delete(
    client: BatchClient, blobs: BlobServiceClient, azurite: Azurite, localbatch: LocalBatch
) -> None:
    # Inputs in Azurite: two blobs under a prefix, one outside it, and one for auto-storage.
    inputs = unique("in")
    outputs = unique("out")
    in_container = blobs.create_container(inputs)
    out_container = blobs.create_container(outputs)
    texts = {"data/a.txt": b"alpha beta\n", "data/b.txt": b"gamma\n", "skip.txt": b"not me\n"}
    for name, data in texts.items():
        in_container.upload_blob(name, data)
    blob_sas = generate_blob_sas(
        azurite.account_name,
        inputs,
        "data/a.txt",
        account_key=azurite.account_key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    read_url = container_sas_url(azurite, inputs, read=True, list=True)
    write_url = container_sas_url(azurite, outputs, write=True, create=True)

    # A pool whose start task writes to stdout and stderr and leaves a marker in the shared dir.
    pool_id = unique("pool")
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v5",
            target_dedicated_nodes=2,
            task_slots_per_node=1,
            start_task=bm.BatchStartTask(
                command_line="/bin/sh -c 'echo started $AZ_BATCH_NODE_ID; echo warn >&2; "
                "touch $AZ_BATCH_NODE_SHARED_DIR/ready'",
                wait_for_success=True,
            ),
        )
    )
    pool = client.get_pool(pool_id)
    assert pool.id == pool_id and pool.state == "active" and pool.task_slots_per_node == 1
    assert pool_id in {p.id for p in client.list_pools()}
    assert client.pool_exists(pool_id)
    nodes = wait_nodes_idle(client, pool_id, 2)
    for node in nodes:
        assert node.id.startswith("tvmps_") and node.is_dedicated
        assert node.start_task_info.exit_code == 0 and node.start_task_info.result == "success"
        out = b"".join(client.download_node_file(pool_id, node.id, "startup/stdout.txt"))
        assert out.decode().strip() == f"started {node.id}"
        err = b"".join(client.download_node_file(pool_id, node.id, "startup/stderr.txt"))
        assert err == b"warn\n"
        assert client.get_node(pool_id, node.id).state == "idle"
    assert client.get_pool(pool_id).current_dedicated_nodes == 2

    job_id = unique("job")
    client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))
    assert client.get_job(job_id).state == "active"

    # Task 1: all three resource-file kinds; output files per condition.
    def out_file(pattern: str, path: str | None, condition: str) -> bm.OutputFile:
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(
                container=bm.OutputFileBlobContainerDestination(container_url=write_url, path=path)
            ),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition=condition),
        )

    client.create_task(
        job_id,
        bm.BatchTaskCreateOptions(
            id="stage",
            command_line="/bin/sh -c 'cat one/a.txt cont/data/a.txt cont/data/b.txt auto/data/b.txt "
            "> result.txt; ls cont > listing.txt; test ! -e cont/skip.txt; echo done'",
            resource_files=[
                bm.ResourceFile(
                    http_url=f"{azurite.blob_endpoint}/{inputs}/data/a.txt?{blob_sas}",
                    file_path="one/a.txt",
                    file_mode="0600",
                ),
                bm.ResourceFile(storage_container_url=read_url, blob_prefix="data/", file_path="cont"),
                bm.ResourceFile(auto_storage_container_name=inputs, blob_prefix="data/", file_path="auto"),
            ],
            output_files=[
                out_file("result.txt", "results/result.txt", "taskSuccess"),
                out_file("*.txt", "all", "taskCompletion"),
                out_file("../std*.txt", "logs", "taskCompletion"),
                out_file("result.txt", "never.txt", "taskFailure"),
            ],
        ),
    )
    # Task 2: a failure, with its stderr.
    client.create_task(
        job_id,
        bm.BatchTaskCreateOptions(id="fails", command_line="/bin/sh -c 'echo broken >&2; exit 7'"),
    )
    # A collection, through create_tasks (chunks and threads).
    many = [bm.BatchTaskCreateOptions(id=f"n{i:03d}", command_line=f"/bin/echo {i}") for i in range(150)]
    result = client.create_tasks(job_id, many, max_concurrency=3)
    assert sorted(r.task_id for r in result.result_values) == sorted(t.id for t in many)
    assert all(r.status == "success" for r in result.result_values)

    stage = wait_task_completed(client, job_id, "stage")
    assert stage.execution_info.exit_code == 0, _read(client, job_id, "stage", "stderr.txt")
    assert stage.execution_info.result == "success"
    assert stage.node_info.pool_id == pool_id and stage.node_info.node_id in {n.id for n in nodes}
    assert _read(client, job_id, "stage", "stdout.txt") == b"done\n"
    expected = texts["data/a.txt"] * 2 + texts["data/b.txt"] * 2
    assert _read(client, job_id, "stage", "wd/result.txt") == expected

    # Output files were uploaded before the task was reported completed.
    names = {b.name for b in out_container.list_blobs()}
    assert "results/result.txt" in names
    assert {"all/result.txt", "all/listing.txt", "logs/stdout.txt", "logs/stderr.txt"} <= names
    assert "never.txt" not in names
    got = out_container.download_blob("results/result.txt").readall()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest()

    fails = wait_task_completed(client, job_id, "fails")
    assert fails.execution_info.exit_code == 7
    assert fails.execution_info.result == "failure"
    assert fails.execution_info.failure_info.category == "usererror"
    assert fails.execution_info.failure_info.code == "FailureExitCode"
    assert _read(client, job_id, "fails", "stderr.txt") == b"broken\n"

    def all_done() -> bm.BatchTaskCountsResult | None:
        c = client.get_job_task_counts(job_id)
        return c if c.task_counts.completed == 152 else None

    counts = wait_for(all_done)
    assert counts.task_counts.succeeded == 151 and counts.task_counts.failed == 1
    assert counts.task_counts.active == 0 and counts.task_counts.running == 0
    assert counts.task_slot_counts.completed == 152
    for i in (0, 77, 149):
        assert _read(client, job_id, f"n{i:03d}", "stdout.txt") == f"{i}\n".encode()

    files = {f.name: f for f in client.list_task_files(job_id, "stage", recursive=True)}
    assert {"stdout.txt", "stderr.txt", "wd", "wd/result.txt"} <= set(files)
    assert files["wd"].is_directory and not files["stdout.txt"].is_directory
    assert int(files["wd/result.txt"].properties.content_length) == len(expected)
    assert oct(int(files["wd/one/a.txt"].properties.file_mode, 8)) == oct(0o600)

    client.begin_terminate_job(
        job_id, BatchJobTerminateOptions(termination_reason="test over"), polling_interval=0.1
    ).result()
    job = client.get_job(job_id)
    assert job.state == "completed"
    assert job.execution_info.termination_reason == "test over"

    client.begin_delete_job(job_id, polling_interval=0.1).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_job(job_id)
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_pool(pool_id)
    assert pool_id not in {p.id for p in client.list_pools()}
    del localbatch


def test_job_terminate_ends_running_tasks_and_leaves_active_ones_unscheduled(
    client: BatchClient, shared_pool: str
) -> None:
    """As the service documents: running tasks are terminated; active tasks remain active and
    are never scheduled, though slots are free again."""
    job_id = unique("job")
    client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=shared_pool)))
    tasks = [bm.BatchTaskCreateOptions(id=f"s{i}", command_line="/bin/sleep 60") for i in range(8)]
    client.create_task_collection(job_id, bm.BatchTaskGroup(task_values=tasks))
    wait_for(lambda: client.get_job_task_counts(job_id).task_counts.running == 4)
    client.begin_terminate_job(
        job_id, BatchJobTerminateOptions(termination_reason="stop"), polling_interval=0.1
    ).result()
    assert client.get_job(job_id).state == "completed"
    # Give the scheduler every chance to (wrongly) start the waiting tasks on the freed slots.
    other = new_job(client, shared_pool)
    client.create_task(other, bm.BatchTaskCreateOptions(id="probe", command_line="/bin/true"))
    wait_task_completed(client, other, "probe")
    states = {t.id: t for t in client.list_tasks(job_id)}
    ran = {tid for tid, t in states.items() if t.execution_info and t.execution_info.start_time is not None}
    assert len(ran) == 4
    for tid, t in states.items():
        if tid in ran:
            assert t.state == "completed" and t.execution_info.failure_info.code == "TaskEnded"
        else:
            assert t.state == "active"
    counts = client.get_job_task_counts(job_id).task_counts
    assert (counts.active, counts.running, counts.completed) == (4, 0, 4)
    client.begin_delete_job(job_id, polling_interval=0.1).result()
    client.begin_delete_job(other, polling_interval=0.1).result()
