"""The flow of azure-batch-samples' sample4_job_scheduler on azure-batch 14 (Linux commands).

Run by ``tests/localbatch/test_job_schedules.py`` with an interpreter that has
``azure-batch==14.2.0``: ``python job_scheduler_azure_batch_14.py URL ACCOUNT SCHEDULE_ID``, the
key in ``BATCH_ACCOUNT_KEY``. As the sample: a job schedule recurring every 10 minutes until
``doNotRunAfter`` (30 minutes), whose jobs run on an auto pool (lifetime ``job``) with a job
manager task and ``onAllTasksComplete`` ``terminatejob``; it waits for the schedule's first job and
its tasks, prints them (not their files: see below), then (instead of waiting 30 minutes)
terminates and deletes the schedule. One tab-separated line per check.
"""

import datetime
import os
import sys
import time

import azure.batch.models as batchmodels
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials


def wait(predicate, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not happen")


def main():
    url, account, schedule_id = sys.argv[1:4]
    client = BatchServiceClient(SharedKeyCredentials(account, os.environ["BATCH_ACCOUNT_KEY"]), batch_url=url)
    pool_info = batchmodels.PoolInformation(
        auto_pool_specification=batchmodels.AutoPoolSpecification(
            auto_pool_id_prefix="JobScheduler",
            pool=batchmodels.PoolSpecification(vm_size="standard_d2s_v5", target_dedicated_nodes=1),
            keep_alive=False,
            pool_lifetime_option=batchmodels.PoolLifetimeOption.job,
        )
    )
    job_spec = batchmodels.JobSpecification(
        pool_info=pool_info,
        on_all_tasks_complete=batchmodels.OnAllTasksComplete.terminate_job,
        job_manager_task=batchmodels.JobManagerTask(
            id="JobManagerTask", command_line="/bin/sh -c 'echo managed by $AZ_BATCH_JOB_ID'"
        ),
    )
    schedule = batchmodels.Schedule(
        do_not_run_after=datetime.datetime.utcnow() + datetime.timedelta(minutes=30),
        recurrence_interval=datetime.timedelta(minutes=10),
    )
    client.job_schedule.add(
        batchmodels.JobScheduleAddParameter(id=schedule_id, schedule=schedule, job_specification=job_spec)
    )
    recent = wait(lambda: client.job_schedule.get(schedule_id).execution_info.recent_job, "a first job")
    print("job", recent.id, sep="\t")
    job = wait(lambda: (j := client.job.get(recent.id)).state == "completed" and j, "the job's end")
    print("pool", job.execution_info.pool_id, job.execution_info.terminate_reason, sep="\t")
    # Not the tasks' files, as the sample prints them: the auto pool, and its nodes' files, went with
    # the job (on Azure its deletion takes minutes; locally it is immediate).
    for task in client.task.list(recent.id):
        print("task", task.id, task.state.value, task.execution_info.exit_code, sep="\t")
    info = client.job_schedule.get(schedule_id)
    print("schedule", info.state.value, info.execution_info.next_run_time is not None, sep="\t")
    client.job_schedule.terminate(schedule_id)
    wait(lambda: client.job_schedule.get(schedule_id).state == "completed", "the schedule's end")
    client.job_schedule.delete(schedule_id)
    wait(lambda: not client.job_schedule.exists(schedule_id), "the schedule's deletion")
    print("deleted", schedule_id, sep="\t")


if __name__ == "__main__":
    main()
