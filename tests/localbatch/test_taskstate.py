"""What every task transition records, as the service shows it (one implementation: taskstate.move).

Each transition the scheduler makes (start, retry, finish, terminate, reactivate) keeps the
previous state and its time, sets a new transition time and a new ETag, and writes the times the
execution info shows at the same instant as the transition.
"""

from __future__ import annotations

from azure.batch import BatchClient
from azure.batch import models as bm

from tests.localbatch.conftest import new_job, unique, wait_task_completed


def test_every_transition_records_previous_state_times_and_etag(
    client: BatchClient, shared_pool: str
) -> None:
    # Run, fail, retry once, fail again: active -> running -> active -> running -> completed.
    job_id = new_job(client, shared_pool)
    retry = bm.BatchTaskConstraints(max_task_retry_count=1)
    client.create_task(
        job_id, bm.BatchTaskCreateOptions(id="r", command_line="/bin/sh -c 'exit 3'", constraints=retry)
    )
    added = client.get_task(job_id, "r")
    done = wait_task_completed(client, job_id, "r")
    info = done.execution_info
    assert (done.previous_state, info.result, info.exit_code, info.retry_count) == (
        "running",
        "failure",
        3,
        1,
    )
    assert added.state_transition_time <= info.last_retry_time <= done.previous_state_transition_time
    assert done.previous_state_transition_time < done.state_transition_time and done.etag != added.etag

    # Terminate a task that never ran (its pool has no nodes), then reactivate it.
    pool_id = unique("tspool")
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=0))
    try:
        idle_job = new_job(client, pool_id)
        client.create_task(idle_job, bm.BatchTaskCreateOptions(id="t", command_line="true"))
        active = client.get_task(idle_job, "t")
        client.terminate_task(idle_job, "t")
        ended = client.get_task(idle_job, "t")
        assert (ended.state, ended.previous_state, ended.execution_info.result) == (
            "completed",
            "active",
            "failure",
        )
        assert ended.execution_info.failure_info.code == "TaskEnded"
        assert ended.execution_info.end_time == ended.state_transition_time  # one instant
        assert ended.previous_state_transition_time == active.state_transition_time
        assert ended.state_transition_time > active.state_transition_time and ended.etag != active.etag
        client.reactivate_task(idle_job, "t")
        again = client.get_task(idle_job, "t")
        assert (again.state, again.previous_state) == ("active", "completed")
        assert again.previous_state_transition_time == ended.state_transition_time
        assert again.state_transition_time > ended.state_transition_time and again.etag != ended.etag
        assert again.execution_info is None or again.execution_info.end_time is None
    finally:
        client.begin_delete_pool(pool_id, polling_interval=0.05).result(timeout=10)
