"""The image selection of azure-batch-samples' sample2, plus node counts and job disable, on azure-batch 14.

Run by ``tests/localbatch/test_old_sdk_operations.py`` with an interpreter that has
``azure-batch==14.2.0``: ``python pools_and_images_azure_batch_14.py URL ACCOUNT``, the key in
``BATCH_ACCOUNT_KEY``. It picks the newest verified Canonical image whose SKU starts with
``22_04`` the way the sample picks one (the sample names the retired Ubuntu 16.04), creates a
pool from it, and prints one tab-separated line per check.
"""

import os
import sys
import time

import azure.batch.models as batchmodels
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials


def pick_image(client, publisher, offer, sku_prefix):
    options = batchmodels.AccountListSupportedImagesOptions(filter="verificationType eq 'verified'")
    found = [
        (image.node_agent_sku_id, image.image_reference)
        for image in client.account.list_supported_images(account_list_supported_images_options=options)
        if image.image_reference.publisher.lower() == publisher
        and image.image_reference.offer.lower() == offer
        and image.image_reference.sku.startswith(sku_prefix)
    ]
    return found[0]


def wait(predicate, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not happen")


def main():
    url, name = sys.argv[1:3]
    client = BatchServiceClient(SharedKeyCredentials(name, os.environ["BATCH_ACCOUNT_KEY"]), batch_url=url)
    agent, image = pick_image(client, "canonical", "0001-com-ubuntu-server-jammy", "22_04")
    print(f"image\t{agent}\t{image.sku}")
    pool_id, job_id = "PoolsAndResourceFilesPool", "PoolsAndResourceFilesJob"
    client.pool.add(
        batchmodels.PoolAddParameter(
            id=pool_id,
            virtual_machine_configuration=batchmodels.VirtualMachineConfiguration(
                image_reference=image, node_agent_sku_id=agent
            ),
            vm_size="STANDARD_D2S_V5",
            target_dedicated_nodes=1,
            start_task=batchmodels.StartTask(command_line="/bin/true", wait_for_success=True),
        )
    )
    wait(
        lambda: [n.state for n in client.compute_node.list(pool_id)] == [batchmodels.ComputeNodeState.idle],
        "idle",
    )
    counts = {c.pool_id: c for c in client.account.list_pool_node_counts()}[pool_id]
    print(f"counts\t{counts.dedicated.idle}\t{counts.dedicated.total}")
    client.job.add(
        batchmodels.JobAddParameter(id=job_id, pool_info=batchmodels.PoolInformation(pool_id=pool_id))
    )
    client.job.disable(job_id, batchmodels.DisableJobOption.requeue)
    wait(lambda: client.job.get(job_id).state == batchmodels.JobState.disabled, "disabled")
    client.job.enable(job_id)
    print(f"job\t{client.job.get(job_id).state.value}")
    client.pool.delete(pool_id)


if __name__ == "__main__":
    main()
