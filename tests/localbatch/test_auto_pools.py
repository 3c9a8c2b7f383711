"""Auto pools through the official SDK: made with the job (or the schedule's first job), tasks run
on them, deleted when the job (or the schedule) ends unless keepAlive, and Batch's refusals."""

from __future__ import annotations

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.localbatch.conftest import unique, wait_for, wait_task_completed


def _auto(lifetime: str, prefix: str = "ap", keep_alive: bool = False) -> bm.BatchPoolInfo:
    return bm.BatchPoolInfo(
        auto_pool_specification=bm.BatchAutoPoolSpecification(
            auto_pool_id_prefix=prefix,
            pool_lifetime_option=lifetime,
            keep_alive=keep_alive,
            pool=bm.BatchPoolSpecification(vm_size="standard_d2s_v5", target_dedicated_nodes=1),
        )
    )


def _gone(client: BatchClient, pool_id: str) -> bool:
    try:
        return client.get_pool(pool_id).state == "deleting"
    except ResourceNotFoundError:
        return True


def test_job_lifetime_pool_runs_the_tasks_and_goes_with_the_job_unless_kept(client: BatchClient) -> None:
    jobs, pools = {}, {}
    for keep in (False, True):
        job_id = unique("autojob")
        client.create_job(
            bm.BatchJobCreateOptions(
                id=job_id, pool_info=_auto("job", keep_alive=keep), all_tasks_complete_mode="terminatejob"
            )
        )
        job = client.get_job(job_id)
        pool_id = job.execution_info.pool_id
        assert pool_id.startswith("ap_") and len(pool_id) == len("ap_") + 36
        assert job.pool_info.pool_id is None  # poolInfo stays as given
        assert job.pool_info.auto_pool_specification.pool_lifetime_option == "job"
        assert client.get_pool(pool_id).vm_size == "standard_d2s_v5"  # made with the job
        client.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
        jobs[keep], pools[keep] = job_id, pool_id
    for keep, job_id in jobs.items():
        task = wait_task_completed(client, job_id, "t")
        assert task.execution_info.result == "success" and task.node_info.pool_id == pools[keep]
    wait_for(lambda: all(client.get_job(j).state == "completed" for j in jobs.values()))
    wait_for(lambda: _gone(client, pools[False]))
    assert client.get_pool(pools[True]).state == "active"  # keepAlive
    client.begin_delete_pool(pools[True], polling_interval=0.05).result(timeout=10)

    with pytest.raises(HttpResponseError) as exc:
        client.create_job(bm.BatchJobCreateOptions(id=unique("autojob"), pool_info=_auto("jobschedule")))
    assert exc.value.status_code == 400
    named = {d.code: d.message for d in exc.value.error.details}
    assert named["PropertyName"] == "poolInfo.autoPoolSpecification.poolLifetimeOption"
    with pytest.raises(HttpResponseError) as exc:
        client.create_job(
            bm.BatchJobCreateOptions(id=unique("autojob"), pool_info=_auto("job", prefix="x" * 21))
        )
    assert exc.value.status_code == 400


def test_job_schedule_lifetime_pool_lives_as_long_as_the_schedule(client: BatchClient) -> None:
    sid = unique("autosched")
    client.create_job_schedule(
        bm.BatchJobScheduleCreateOptions(
            id=sid,
            schedule=bm.BatchJobScheduleConfiguration(),  # one job, at once
            job_specification=bm.BatchJobSpecification(pool_info=_auto("jobschedule", prefix="sched")),
        )
    )
    job_id = f"{sid}:job-1"
    job = wait_for(
        lambda: client.get_job(job_id) if client.get_job_schedule(sid).execution_info.recent_job else None
    )
    pool_id = job.execution_info.pool_id
    assert pool_id.startswith("sched_") and client.get_pool(pool_id).state == "active"
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    assert wait_task_completed(client, job_id, "t").node_info.pool_id == pool_id
    client.begin_terminate_job_schedule(sid, polling_interval=0.05).result(timeout=10)
    assert client.get_job_schedule(sid).state == "completed"
    wait_for(lambda: _gone(client, pool_id))
    client.begin_delete_job_schedule(sid, polling_interval=0.05).result(timeout=10)
