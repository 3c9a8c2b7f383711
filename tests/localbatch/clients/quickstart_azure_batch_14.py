"""Azure Batch's Python quickstart, as written for azure-batch 14 (msrest generation).

Run by ``tests/localbatch/test_old_sdk.py`` with an interpreter that has
``azure-batch==14.2.0`` installed (that SDK cannot live in this project's
virtualenv next to azure-batch 15). Only the endpoint and keys differ from
the Azure version: ``python quickstart_azure_batch_14.py URL ACCOUNT KEY BLOB_SAS_URL``
(the key is read from the environment variable ``BATCH_ACCOUNT_KEY`` when
``KEY`` is ``-``, so it need not be on a command line).
"""

import os
import sys
import time

import azure.batch.models as batchmodels
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials


def main() -> None:
    url, name, key, blob_url = sys.argv[1:5]
    if key == "-":
        key = os.environ["BATCH_ACCOUNT_KEY"]
    batch_client = BatchServiceClient(SharedKeyCredentials(name, key), batch_url=url)
    pool_id, job_id = "PythonQuickstartPool", "PythonQuickstartJob"
    new_pool = batchmodels.PoolAddParameter(
        id=pool_id,
        virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
            image_reference=batchmodels.ImageReference(
                publisher="canonical", offer="0001-com-ubuntu-server-focal", sku="20_04-lts", version="latest"
            ),
            node_agent_sku_id="batch.node.ubuntu 20.04",
        ),
        vm_size="STANDARD_DS1_V2",
        target_dedicated_nodes=2,
    )
    batch_client.pool.add(new_pool)
    batch_client.job.add(
        batchmodels.JobAddParameter(id=job_id, pool_info=batchmodels.PoolInformation(pool_id=pool_id))
    )
    tasks = [
        batchmodels.TaskAddParameter(
            id=f"Task{idx}",
            command_line='/bin/bash -c "cat input.txt"',
            resource_files=[batchmodels.ResourceFile(http_url=blob_url, file_path="input.txt")],
        )
        for idx in range(3)
    ]
    batch_client.task.add_collection(job_id, tasks)
    deadline = time.time() + 60
    while time.time() < deadline:
        if all(t.state == batchmodels.TaskState.completed for t in batch_client.task.list(job_id)):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("tasks did not complete")
    for task in sorted(batch_client.task.list(job_id), key=lambda t: t.id):
        node_id = batch_client.task.get(job_id, task.id).node_info.node_id
        text = b"".join(batch_client.file.get_from_task(job_id, task.id, "stdout.txt")).decode()
        print(f"{task.id}\t{node_id}\t{task.execution_info.exit_code}\t{text.strip()}")
    counts = batch_client.job.get_task_counts(job_id).task_counts
    print(f"counts\t{counts.completed}\t{counts.succeeded}\t{counts.failed}")
    batch_client.job.terminate(job_id)
    batch_client.job.delete(job_id)
    batch_client.pool.delete(pool_id)


if __name__ == "__main__":
    main()
