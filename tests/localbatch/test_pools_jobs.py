"""Pool resize (with requeue of tasks on removed nodes), job updates, completed jobs, file reads."""

from __future__ import annotations

import json

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from tests.localbatch.conftest import (
    RawBatch,
    new_job,
    unique,
    wait_for,
    wait_nodes_idle,
    wait_task_completed,
)


def test_resize_requeues_tasks_of_removed_nodes(client: BatchClient) -> None:
    pool_id = unique("rpool")
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=1))
    wait_nodes_idle(client, pool_id, 1)
    client.begin_resize_pool(
        pool_id,
        bm.BatchPoolResizeOptions(target_dedicated_nodes=2, target_low_priority_nodes=1),
        polling_interval=0.1,
    ).result()
    nodes = wait_nodes_idle(client, pool_id, 3)
    assert sorted(n.is_dedicated for n in nodes) == [False, True, True]
    pool = client.get_pool(pool_id)
    assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (2, 1)

    job_id = new_job(client, pool_id)
    client.create_tasks(
        job_id,
        [
            bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/sh -c 'sleep 1; echo x >> ../ran'")
            for i in range(3)
        ],
    )
    wait_for(lambda: client.get_job_task_counts(job_id).task_counts.running == 3)
    client.begin_resize_pool(
        pool_id,
        bm.BatchPoolResizeOptions(target_dedicated_nodes=1, target_low_priority_nodes=0),
        polling_interval=0.1,
    ).result()
    assert client.get_pool(pool_id).allocation_state == "steady"
    assert len(list(client.list_nodes(pool_id))) == 1
    tasks = [wait_task_completed(client, job_id, f"t{i}") for i in range(3)]
    assert all(t.execution_info.result == "success" for t in tasks)
    assert sorted(t.execution_info.requeue_count for t in tasks) == [0, 1, 1]
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()


def test_update_job_and_completed_job(client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool)
    client.create_tasks(
        job_id, [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/true") for i in range(3)]
    )
    wait_for(lambda: client.get_job_task_counts(job_id).task_counts.completed == 3)
    # Setting onAllTasksComplete after the tasks finished completes the job (the runner's pattern).
    client.update_job(job_id, bm.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob", priority=5))
    job = wait_for(lambda: j if (j := client.get_job(job_id)).state == "completed" else None)
    assert job.priority == 5 and job.execution_info.end_time is not None
    with pytest.raises(HttpResponseError) as err:
        client.create_task(job_id, bm.BatchTaskCreateOptions(id="late", command_line="/bin/true"))
    assert err.value.status_code == 409 and err.value.error.code == "JobCompleted"


def test_file_properties_and_ranges(client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool)
    client.create_task(
        job_id, bm.BatchTaskCreateOptions(id="w", command_line="/bin/sh -c 'printf 0123456789 > out.bin'")
    )
    wait_task_completed(client, job_id, "w")
    props = client.get_task_file_properties(job_id, "w", "wd/out.bin")
    assert props.content_length == 10 and props.is_directory is False
    assert b"".join(client.download_task_file(job_id, "w", "wd/out.bin", ocp_range="bytes=2-5")) == b"2345"
    with pytest.raises(HttpResponseError) as err:
        b"".join(client.download_task_file(job_id, "w", "wd/../../../../../../etc/passwd"))
    assert err.value.status_code == 404
    client.delete_task_file(job_id, "w", "wd/out.bin")
    with pytest.raises(HttpResponseError) as err:
        client.get_task_file_properties(job_id, "w", "wd/out.bin")
    assert err.value.status_code == 404


def test_integer_properties_sent_as_strings_are_stored_as_integers(
    client: BatchClient, raw: RawBatch
) -> None:
    """`az batch pool create/resize` and `az batch job set` send integers as JSON strings ("2"),
    which the service accepts; stored and returned values are integers. Other strings are refused."""
    pool_id = unique("azcli")
    body = {"id": pool_id, "vmSize": "standard_d2s_v5", "targetDedicatedNodes": "1", "taskSlotsPerNode": "2"}
    status, _, _ = raw.send("POST", "/pools", json.dumps(body).encode())
    assert status == 201
    try:
        wait_nodes_idle(client, pool_id, 1)
        pool = client.get_pool(pool_id)
        assert (pool.target_dedicated_nodes, pool.task_slots_per_node) == (1, 2)
        status, _, _ = raw.send("POST", f"/pools/{pool_id}/resize", b'{"targetDedicatedNodes": "2"}')
        assert status == 202
        wait_nodes_idle(client, pool_id, 2)
        assert client.get_pool(pool_id).target_dedicated_nodes == 2

        job_id = new_job(client, pool_id)
        status, _, _ = raw.send("PATCH", f"/jobs/{job_id}", b'{"priority": "5", "maxParallelTasks": "3"}')
        assert status == 200
        status, doc, _ = raw.send("GET", f"/jobs/{job_id}")
        assert status == 200 and doc is not None
        assert (doc["priority"], doc["maxParallelTasks"]) == (5, 3)
        task = {"id": "t", "commandLine": "/bin/true", "constraints": {"maxTaskRetryCount": "2"}}
        status, _, _ = raw.send("POST", f"/jobs/{job_id}/tasks", json.dumps(task).encode())
        assert status == 201
        assert client.get_task(job_id, "t").constraints.max_task_retry_count == 2

        for bad in (
            '{"targetDedicatedNodes": "two"}',
            '{"targetDedicatedNodes": "1.5"}',
            '{"targetDedicatedNodes": true}',
        ):
            status, doc, _ = raw.send("POST", f"/pools/{pool_id}/resize", bad.encode())
            assert status == 400 and doc is not None and doc["code"] == "InvalidPropertyValue", bad
        status, doc, _ = raw.send("PATCH", f"/jobs/{job_id}", b'{"priority": "high"}')
        assert status == 400 and doc is not None and doc["code"] == "InvalidPropertyValue"
        assert client.get_job(job_id).priority == 5
    finally:
        client.begin_delete_pool(pool_id, polling_interval=0.1).result()


def test_files_of_a_task_whose_node_left_the_pool_are_unavailable(client: BatchClient, raw: RawBatch) -> None:
    """As the service answers: 409 TaskFilesUnavailable once the node is gone (not 404)."""
    pool_id = unique("gone")
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=1))
    try:
        wait_nodes_idle(client, pool_id, 1)
        job_id = new_job(client, pool_id)
        client.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/echo hi"))
        wait_task_completed(client, job_id, "t")
        assert b"".join(client.download_task_file(job_id, "t", "stdout.txt")) == b"hi\n"
        client.begin_resize_pool(
            pool_id, bm.BatchPoolResizeOptions(target_dedicated_nodes=0), polling_interval=0.1
        ).result()
        wait_for(lambda: not list(client.list_nodes(pool_id)))
        with pytest.raises(HttpResponseError) as err:
            b"".join(client.download_task_file(job_id, "t", "stdout.txt"))
        assert err.value.status_code == 409
        status, doc, _ = raw.send("GET", f"/jobs/{job_id}/tasks/t/files/stdout.txt")
        assert status == 409 and doc is not None and doc["code"] == "TaskFilesUnavailable"
    finally:
        client.begin_delete_pool(pool_id, polling_interval=0.1).result()
