"""A job's ``maxParallelTasks`` (issue 13, "tests that today cannot tell"): localbatch never runs more
of the job's tasks at once than it says, even with free slots on the pool.

Told from Batch's own record of each task (``executionInfo`` start and end times): with a cap
of 1 on a pool of four slots, no two of the job's tasks ran at the same time.
"""

from __future__ import annotations

import itertools

from azure.batch import BatchClient
from azure.batch import models as bm

from tests.localbatch.conftest import new_job, wait_task_completed

TASKS = 4


def test_max_parallel_tasks_of_one_runs_the_jobs_tasks_one_after_another(
    client: BatchClient, shared_pool: str
) -> None:
    job_id = new_job(client, shared_pool, max_parallel_tasks=1)
    client.create_tasks(
        job_id,
        [bm.BatchTaskCreateOptions(id=f"t{i}", command_line="/bin/sh -c 'sleep 0.3'") for i in range(TASKS)],
    )
    done = [wait_task_completed(client, job_id, f"t{i}", timeout=60) for i in range(TASKS)]
    spans = []
    for task in done:
        info = task.execution_info
        assert info is not None and info.start_time and info.end_time and info.exit_code == 0, task.id
        spans.append((info.start_time, info.end_time, task.id))
    spans.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        assert start >= end, f"{second} started before {first} ended: maxParallelTasks=1 ignored"
    assert client.get_job(job_id).max_parallel_tasks == 1
    client.begin_delete_job(job_id, polling_interval=0.1).result()
