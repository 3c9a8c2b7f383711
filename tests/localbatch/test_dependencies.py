"""Task dependencies: ids, ranges, blocking on failure, exit-condition overrides."""

from __future__ import annotations

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from tests.localbatch.conftest import new_job, wait_task_completed


def _task(
    tid: str,
    cmd: str,
    ids: list[str] | None = None,
    ranges: list[tuple[int, int]] | None = None,
    **kwargs: object,
) -> bm.BatchTaskCreateOptions:
    deps = None
    if ids or ranges:
        deps = bm.BatchTaskDependencies(
            task_ids=ids, task_id_ranges=[bm.BatchTaskIdRange(start=s, end=e) for s, e in ranges or []]
        )
    return bm.BatchTaskCreateOptions(id=tid, command_line=cmd, depends_on=deps, **kwargs)


def test_dependent_task_runs_after_all_dependencies(client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool, uses_task_dependencies=True)
    # The aggregate is added first and names tasks that do not exist yet; it must wait for all.
    client.create_task(job_id, _task("merge", "/bin/true", ids=["a", "b"], ranges=[(1, 3)]))
    tasks = [_task(t, "/bin/sleep 0.2") for t in ("a", "b", "1", "2", "3")]
    client.create_tasks(job_id, tasks)
    merge = wait_task_completed(client, job_id, "merge")
    assert merge.execution_info.result == "success"
    last_dep_end = max(client.get_task(job_id, t.id).execution_info.end_time for t in tasks)
    assert merge.execution_info.start_time >= last_dep_end


def test_failed_dependency_blocks_unless_satisfied(client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool, uses_task_dependencies=True)
    satisfy = bm.ExitConditions(
        exit_codes=[bm.ExitCodeMapping(code=5, exit_options=bm.ExitOptions(dependency_action="satisfy"))]
    )
    client.create_tasks(
        job_id,
        [
            _task("fails", "/bin/false"),
            _task("fails-ok", "/bin/sh -c 'exit 5'", exit_conditions=satisfy),
            _task("blocked", "/bin/true", ids=["fails"]),
            _task("released", "/bin/true", ids=["fails-ok"]),
        ],
    )
    released = wait_task_completed(client, job_id, "released")
    assert released.execution_info.result == "success"
    assert client.get_task(job_id, "fails").state == "completed"
    assert client.get_task(job_id, "blocked").state == "active"
    assert client.get_job_task_counts(job_id).task_counts.active == 1

    # Deleting the failed dependency does not release the task: a missing dependency is unmet too.
    client.delete_task(job_id, "fails")
    client.create_task(job_id, _task("later", "/bin/true"))
    wait_task_completed(client, job_id, "later")
    assert client.get_task(job_id, "blocked").state == "active"


def test_dependencies_need_the_job_flag(client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool)
    with pytest.raises(HttpResponseError) as err:
        client.create_task(job_id, _task("x", "/bin/true", ids=["y"]))
    assert err.value.error.code == "TaskDependenciesNotSpecifiedOnJob"
