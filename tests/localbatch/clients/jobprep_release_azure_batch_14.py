"""The flow of azure-batch-samples' sample1_jobprep_and_release on azure-batch 14.

Run by ``tests/localbatch/test_job_tasks.py`` with an interpreter that has
``azure-batch==14.2.0``: ``python jobprep_release_azure_batch_14.py URL ACCOUNT JOB_ID``, the key
in ``BATCH_ACCOUNT_KEY``. As the sample: a job on an auto pool (lifetime ``job``) with a job
preparation and a job release task, one task; it waits for the task, prints its output, and
deletes the job. Then it prints what the preparation/release status listed before the delete and
whether the auto pool went with the job. One tab-separated line per check.
"""

import os
import sys
import time

import azure.batch.models as batchmodels
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials


def shell(command):
    return f"/bin/bash -c 'set -e; set -o pipefail; {command}; wait'"


def wait(predicate, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not happen")


def main():
    url, account, job_id = sys.argv[1:4]
    client = BatchServiceClient(SharedKeyCredentials(account, os.environ["BATCH_ACCOUNT_KEY"]), batch_url=url)
    pool_info = batchmodels.PoolInformation(
        auto_pool_specification=batchmodels.AutoPoolSpecification(
            auto_pool_id_prefix="JobPrepAndRelease",
            pool=batchmodels.PoolSpecification(vm_size="standard_d2s_v5", target_dedicated_nodes=1),
            keep_alive=False,
            pool_lifetime_option=batchmodels.PoolLifetimeOption.job,
        )
    )
    job = batchmodels.JobAddParameter(id=job_id, pool_info=pool_info)
    prep = shell("echo job preparation task!")
    job.job_preparation_task = batchmodels.JobPreparationTask(command_line=prep)
    job.job_release_task = batchmodels.JobReleaseTask(command_line=shell("echo job release task!"))
    client.job.add(job)
    client.task.add(
        job_id=job_id,
        task=batchmodels.TaskAddParameter(id="JobPrepAndRelease", command_line=shell("echo Hello world")),
    )
    wait(lambda: all(t.state.value == "completed" for t in client.task.list(job_id)), "the task's end")
    for task in client.task.list(job_id):
        out = b"".join(client.file.get_from_task(job_id, task.id, "stdout.txt")).decode().strip()
        print("task", task.id, task.execution_info.exit_code, out, sep="\t")
    pool_id = client.job.get(job_id).execution_info.pool_id
    for status in client.job.list_preparation_and_release_task_status(job_id):
        prep = status.job_preparation_task_execution_info
        print("prep", status.pool_id == pool_id, prep.state.value, prep.exit_code, sep="\t")
    client.job.delete(job_id)
    wait(lambda: job_id not in {j.id for j in client.job.list()}, "the job's deletion")
    gone = lambda: not client.pool.exists(pool_id) or client.pool.get(pool_id).state.value == "deleting"  # noqa: E731
    wait(gone, "the auto pool's deletion")
    print("deleted", job_id, sep="\t")


if __name__ == "__main__":
    main()
