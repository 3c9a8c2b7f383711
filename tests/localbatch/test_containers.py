"""Containers through the official SDK: localbatch has no container engine, so a task that needs one
is accepted (as Batch accepts it) and then fails as Batch fails a container task it cannot start:
no process runs, no exit code, not retried, Batch's failure code, and a detail saying why and what
to do. One pool with ``containerConfiguration`` (1 node) and the shared pool without it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm

from tests.conftest import LocalBatch
from tests.localbatch.conftest import new_job, unique, wait_nodes_idle, wait_task_completed

# Leaves a mark on the node if it ever runs (it must not, in any of the cases here).
MARK = "/bin/sh -c 'touch \"$AZ_BATCH_NODE_SHARED_DIR/ran-$AZ_BATCH_JOB_ID-$AZ_BATCH_TASK_ID\"'"
IMAGE = "docker.io/library/busybox:1.36"
PASSWORD = "registry-password-never-echoed"  # not a real secret: it must never come back


def _registry() -> bm.ContainerRegistryReference:
    return bm.ContainerRegistryReference(registry_server="myacr.azurecr.io", username="me", password=PASSWORD)


@pytest.fixture(scope="module")
def container_pool(client: BatchClient) -> Iterator[str]:
    pool_id = unique("ctrpool")
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v5",
            target_dedicated_nodes=1,
            task_slots_per_node=2,
            virtual_machine_configuration=bm.VirtualMachineConfiguration(
                image_reference=bm.BatchVmImageReference(
                    publisher="microsoft-dsvm", offer="ubuntu-hpc", sku="2204", version="latest"
                ),
                node_agent_sku_id="batch.node.ubuntu 22.04",
                container_configuration=bm.BatchContainerConfiguration(
                    type="dockerCompatible", container_image_names=[IMAGE], container_registries=[_registry()]
                ),
            ),
        )
    )
    wait_nodes_idle(client, pool_id, 1)
    yield pool_id
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()


def _task(task_id: str, image: str | None) -> bm.BatchTaskCreateOptions:
    return bm.BatchTaskCreateOptions(
        id=task_id,
        command_line=MARK,
        container_settings=bm.BatchTaskContainerSettings(image_name=image, registry=_registry())
        if image
        else None,
        constraints=bm.BatchTaskConstraints(max_task_retry_count=2),
    )


def _failed_without_running(client: BatchClient, job_id: str, task_id: str) -> bm.BatchTaskFailureInfo:
    task = wait_task_completed(client, job_id, task_id)
    info = task.execution_info
    assert (info.result, info.exit_code, info.retry_count) == ("failure", None, 0)
    assert info.failure_info.category == "usererror"
    return info.failure_info


def test_container_tasks_fail_as_batch_fails_a_container_it_cannot_start(
    client: BatchClient, container_pool: str, shared_pool: str, localbatch: LocalBatch
) -> None:
    job_id = new_job(client, container_pool)
    client.create_task(job_id, _task("boxed", IMAGE))
    client.create_task(job_id, _task("host", None))
    other_job = new_job(client, shared_pool)
    client.create_task(other_job, _task("boxed", IMAGE))

    boxed = _failed_without_running(client, job_id, "boxed")
    assert boxed.code == "ContainerInvalidImage" and "invalid" in boxed.message
    [detail] = boxed.details
    assert "no container engine" in detail.value and IMAGE in detail.value
    assert "leave out containerSettings" in detail.value  # what to do instead
    settings = client.get_task(job_id, "boxed").container_settings
    assert settings.image_name == IMAGE and settings.registry.username == "me"  # kept as added ...
    assert PASSWORD not in repr(client.get_task(job_id, "boxed").as_dict())  # ... but the password
    assert PASSWORD not in repr(client.get_pool(container_pool).as_dict())
    stored = [p for p in Path(localbatch.data_dir).iterdir() if p.is_file()]  # state, WAL, log
    assert stored and not [p.name for p in stored if PASSWORD.encode() in p.read_bytes()]

    host = _failed_without_running(client, job_id, "host")  # the spec: "this must be set as well"
    assert host.code == "ContainerInvalidSettings" and "must have containerSettings" in host.details[0].value
    elsewhere = _failed_without_running(client, other_job, "boxed")  # "this must not be set"
    assert elsewhere.code == "ContainerInvalidSettings"
    assert "has no containerConfiguration" in elsewhere.details[0].value

    nodes = Path(localbatch.data_dir) / "nodes"
    assert not list(nodes.glob(f"*/shared/ran-{job_id}-*")) and not list(
        nodes.glob(f"*/shared/ran-{other_job}-*")
    )
    for job in (job_id, other_job):
        client.begin_delete_job(job, polling_interval=0.1).result(timeout=20)
