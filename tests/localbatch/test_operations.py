"""The data-plane operations beyond the runner's path, through the official SDK.

Supported images, pool node counts, remove nodes, stop resize, job disable and
enable, node reboot / reimage / scheduling, usage metrics, node file delete,
replace pool properties, and what Azure has retired.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from tests.conftest import Azurite
from tests.localbatch.conftest import (
    RawBatch,
    new_job,
    unique,
    wait_for,
    wait_nodes_idle,
    wait_task_completed,
)
from tests.localbatch.test_weather import weathered


def _pool(client: BatchClient, nodes: int, **kw: object) -> str:
    pool_id = unique("ops")
    client.create_pool(
        bm.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v5", target_dedicated_nodes=nodes, **kw)
    )
    if nodes:
        wait_nodes_idle(client, pool_id, nodes)
    return pool_id


def _delete(client: BatchClient, pool_id: str) -> None:
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()


def _task(client: BatchClient, job_id: str, task_id: str, command: str) -> None:
    client.create_task(job_id, bm.BatchTaskCreateOptions(id=task_id, command_line=command))


def _state(client: BatchClient, job_id: str, task_id: str) -> bm.BatchTask:
    return client.get_task(job_id, task_id)


def _running(client: BatchClient, job_id: str, task_id: str) -> bm.BatchTask:
    return wait_for(lambda: t if (t := _state(client, job_id, task_id)).state == "running" else None)


def _booted(client: BatchClient, pool_id: str, node_id: str) -> bm.BatchNode | None:
    """The node once its start task has run again (idle, or running the requeued task)."""
    node = client.get_node(pool_id, node_id)
    return node if node.state in ("idle", "running") else None


def _code(err: pytest.ExceptionInfo[HttpResponseError]) -> tuple[int | None, str | None]:
    return err.value.status_code, err.value.error.code if err.value.error else None


def test_supported_images_with_filter(client: BatchClient) -> None:
    images = list(client.list_supported_images())
    agents = {i.node_agent_sku_id for i in images}
    assert {"batch.node.ubuntu 22.04", "batch.node.ubuntu 24.04", "batch.node.windows amd64"} <= agents
    ubuntu24 = [i for i in images if i.image_reference.offer == "ubuntu-24_04-lts"]
    assert ubuntu24 and all(i.os_type == "linux" and i.batch_support_end_of_life for i in ubuntu24)
    verified = list(client.list_supported_images(filter="verificationType eq 'verified'"))
    assert (
        verified and all(i.verification_type == "verified" for i in verified) and len(verified) < len(images)
    )
    windows = list(client.list_supported_images(filter="osType eq 'windows'"))
    assert windows and all(i.node_agent_sku_id == "batch.node.windows amd64" for i in windows)
    canonical = list(client.list_supported_images(filter="imageReference/publisher eq 'canonical'"))
    assert canonical and all(i.image_reference.publisher == "canonical" for i in canonical)
    assert not any("16.04" in i.node_agent_sku_id for i in images)  # retired: a sample picking it finds none
    paged = list(client.list_supported_images(max_results=3))
    assert [i.as_dict() for i in paged] == [i.as_dict() for i in images]


def test_pool_node_counts(client: BatchClient) -> None:
    pool_id = _pool(client, 2)
    try:
        counts = {c.pool_id: c for c in client.list_pool_node_counts()}
        mine = counts[pool_id]
        assert mine.dedicated is not None and mine.low_priority is not None
        assert (mine.dedicated.idle, mine.dedicated.total, mine.low_priority.total) == (2, 2, 0)
        only = list(client.list_pool_node_counts(filter=f"poolId eq '{pool_id}'"))
        assert [c.pool_id for c in only] == [pool_id]
    finally:
        _delete(client, pool_id)


def test_remove_nodes(client: BatchClient, raw: RawBatch) -> None:
    pool_id = _pool(client, 3)
    try:
        victim = sorted(n.id for n in client.list_nodes(pool_id))[0]
        client.begin_remove_nodes(
            pool_id, bm.BatchNodeRemoveOptions(node_ids=[victim]), polling_interval=0.1
        ).result()
        pool = client.get_pool(pool_id)
        assert pool.target_dedicated_nodes == 2 and pool.allocation_state == "steady"
        assert victim not in {n.id for n in client.list_nodes(pool_id)}
        status, doc, _ = raw.send(
            "POST", f"/pools/{pool_id}/removenodes", json.dumps({"nodeList": ["nope"]}).encode()
        )
        assert status == 400 and doc is not None and doc["code"] == "InvalidPropertyValue"
        status, doc, _ = raw.send("POST", f"/pools/{pool_id}/removenodes", b"{}")
        assert status == 400 and doc is not None and doc["code"] == "MissingRequiredProperty"
    finally:
        _delete(client, pool_id)


def test_stop_resize_drops_nodes_still_being_allocated(tmp_path: Path, azurite: Azurite) -> None:
    with weathered(tmp_path, azurite, {"allocation_delay": 30.0}) as client:
        pool_id = unique("stop")
        client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=2))
        assert client.get_pool(pool_id).allocation_state == "resizing"
        client.begin_stop_pool_resize(pool_id, polling_interval=0.1).result()
        wait_for(lambda: not list(client.list_nodes(pool_id)))
        pool = client.get_pool(pool_id)
        assert pool.allocation_state == "steady" and pool.target_dedicated_nodes == 0


def test_job_disable_requeue_then_enable(client: BatchClient) -> None:
    pool_id = _pool(client, 1)
    try:
        job_id = new_job(client, pool_id)
        _task(client, job_id, "long", "/bin/sleep 30")
        _running(client, job_id, "long")
        client.begin_disable_job(
            job_id, bm.BatchJobDisableOptions(disable_tasks="requeue"), polling_interval=0.1
        ).result()
        assert client.get_job(job_id).state == "disabled"
        task = _state(client, job_id, "long")
        assert task.state == "active" and task.execution_info is not None
        assert task.execution_info.requeue_count == 1
        _task(client, job_id, "new", "/bin/true")  # tasks may be added; none starts
        assert _state(client, job_id, "new").state == "active"
        with pytest.raises(HttpResponseError) as err:
            client.begin_disable_job(job_id, bm.BatchJobDisableOptions(disable_tasks="wait"))
        assert _code(err) == (409, "JobDisabled")
        client.terminate_task(job_id, "long")  # so that "new" gets the pool's one slot
        client.begin_enable_job(job_id, polling_interval=0.1).result()
        assert client.get_job(job_id).state == "active"
        wait_task_completed(client, job_id, "new")
        with pytest.raises(HttpResponseError) as err:
            client.begin_enable_job(job_id)
        assert err.value.status_code == 409
    finally:
        _delete(client, pool_id)


def test_job_disable_terminate_and_wait(client: BatchClient) -> None:
    pool_id = _pool(client, 2)
    try:
        job_id = new_job(client, pool_id)
        _task(client, job_id, "killed", "/bin/sleep 30")
        _running(client, job_id, "killed")
        client.begin_disable_job(
            job_id, bm.BatchJobDisableOptions(disable_tasks="terminate"), polling_interval=0.1
        ).result()
        task = _state(client, job_id, "killed")
        assert task.state == "completed" and task.execution_info is not None
        assert task.execution_info.result == "failure"
        client.begin_enable_job(job_id, polling_interval=0.1).result()
        _task(client, job_id, "short", "/bin/sleep 1")
        _running(client, job_id, "short")
        client.begin_disable_job(
            job_id, bm.BatchJobDisableOptions(disable_tasks="wait"), polling_interval=0.1
        ).result()
        assert client.get_job(job_id).state == "disabled"
        short = _state(client, job_id, "short")
        assert short.state == "completed" and short.execution_info is not None
        assert short.execution_info.exit_code == 0  # it was left to finish
    finally:
        _delete(client, pool_id)


def test_node_reboot_requeues_and_reimage_wipes_task_files(client: BatchClient) -> None:
    start = bm.BatchStartTask(command_line="/bin/true", wait_for_success=True)
    pool_id = _pool(client, 1, start_task=start)
    try:
        [node] = list(client.list_nodes(pool_id))
        job_id = new_job(client, pool_id)
        _task(client, job_id, "done", "/bin/echo hi")
        wait_task_completed(client, job_id, "done")
        _task(client, job_id, "long", "/bin/sleep 30")
        _running(client, job_id, "long")
        # The SDK cannot send these requests without a body; its option models are not exported.
        reboot = bm._models.BatchNodeRebootOptions(node_reboot_kind="requeue")
        client.begin_reboot_node(pool_id, node.id, reboot, polling_interval=0.1).result()
        # The reboot ends when the node is back; its start task then runs again (with
        # waitForSuccess the node waits for it), so the node may not be idle yet.
        after = client.get_node(pool_id, node.id)
        assert after.state in ("starting", "waitingforstarttask", "idle", "running")
        after = wait_for(lambda: _booted(client, pool_id, node.id), 30.0)
        assert after.start_task_info is not None
        assert after.last_boot_time is not None and node.last_boot_time is not None
        assert after.last_boot_time > node.last_boot_time
        long = _state(client, job_id, "long")
        assert long.execution_info is not None and long.execution_info.requeue_count == 1
        assert b"".join(client.download_task_file(job_id, "done", "stdout.txt")) == b"hi\n"
        client.terminate_task(job_id, "long")
        wait_nodes_idle(client, pool_id, 1)
        reimage = bm._models.BatchNodeReimageOptions(node_reimage_option="requeue")
        client.begin_reimage_node(pool_id, node.id, reimage, polling_interval=0.1).result()
        with pytest.raises(HttpResponseError) as err:
            b"".join(client.download_task_file(job_id, "done", "stdout.txt"))
        assert err.value.status_code == 404
    finally:
        _delete(client, pool_id)


def test_node_scheduling_disable_enable(client: BatchClient) -> None:
    pool_id = _pool(client, 1)
    try:
        [node] = list(client.list_nodes(pool_id))
        client.disable_node_scheduling(
            pool_id,
            node.id,
            bm.BatchNodeDisableSchedulingOptions(node_disable_scheduling_option="taskcompletion"),
        )
        assert client.get_node(pool_id, node.id).scheduling_state == "disabled"
        with pytest.raises(HttpResponseError) as err:
            client.disable_node_scheduling(
                pool_id,
                node.id,
                bm.BatchNodeDisableSchedulingOptions(node_disable_scheduling_option="requeue"),
            )
        assert _code(err) == (409, "NodeAlreadyInTargetSchedulingState")
        job_id = new_job(client, pool_id)
        _task(client, job_id, "t", "/bin/true")
        assert _state(client, job_id, "t").state == "active"
        client.enable_node_scheduling(pool_id, node.id)
        wait_task_completed(client, job_id, "t")
    finally:
        _delete(client, pool_id)


def test_usage_metrics_and_node_file_delete(client: BatchClient) -> None:
    assert list(client.list_pool_usage_metrics()) == []
    pool_id = _pool(client, 1)
    try:
        [node] = list(client.list_nodes(pool_id))
        job_id = new_job(client, pool_id)
        _task(client, job_id, "t", "/bin/echo hi")
        wait_task_completed(client, job_id, "t")
        path = f"workitems/{job_id}/job-1/t/stdout.txt"
        assert b"".join(client.download_node_file(pool_id, node.id, path)) == b"hi\n"
        client.delete_node_file(pool_id, node.id, path)
        with pytest.raises(HttpResponseError) as err:
            b"".join(client.download_node_file(pool_id, node.id, path))
        assert err.value.status_code == 404
        with pytest.raises(HttpResponseError) as err:
            client.delete_node_file(pool_id, node.id, f"workitems/{job_id}")
        assert err.value.status_code == 409
        client.delete_node_file(pool_id, node.id, f"workitems/{job_id}", recursive=True)
        with pytest.raises(HttpResponseError) as err:
            client.delete_node_file(pool_id, node.id, "../../../etc/passwd")
        assert err.value.status_code == 404
    finally:
        _delete(client, pool_id)


def test_replace_pool_properties_resets_what_is_left_out(client: BatchClient) -> None:
    start = bm.BatchStartTask(command_line="/bin/true")
    pool_id = _pool(client, 0, start_task=start, metadata=[bm.BatchMetadataItem(name="a", value="1")])
    try:
        client.replace_pool_properties(
            pool_id,
            bm.BatchPoolReplaceOptions(
                application_package_references=[], metadata=[bm.BatchMetadataItem(name="b", value="2")]
            ),
        )
        pool = client.get_pool(pool_id)
        assert pool.start_task is None  # PUT semantics
        assert [(m.name, m.value) for m in pool.metadata or []] == [("b", "2")]
        with pytest.raises(HttpResponseError) as err:
            client.replace_pool_properties(
                pool_id,
                bm.BatchPoolReplaceOptions(
                    application_package_references=[
                        bm.BatchApplicationPackageReference(application_id="app")
                    ],
                    metadata=[],
                ),
            )
        assert _code(err) == (409, "InvalidApplicationPackageReferences")
    finally:
        _delete(client, pool_id)


@pytest.mark.parametrize(
    ("extra", "prop"),
    [
        ({"cloudServiceConfiguration": {"osFamily": "6"}}, "cloudServiceConfiguration"),
        (
            {"certificateReferences": [{"thumbprint": "ab", "thumbprintAlgorithm": "sha1"}]},
            "certificateReferences",
        ),
    ],
)
def test_retired_features_are_refused(raw: RawBatch, extra: dict[str, object], prop: str) -> None:
    body = {"id": unique("retired"), "vmSize": "standard_d2s_v5", **extra}
    status, doc, _ = raw.send("POST", "/pools", json.dumps(body).encode())
    assert status == 400 and doc is not None and doc["code"] == "InvalidPropertyValue"
    values = {v["key"]: v["value"] for v in doc["values"]}
    assert values["PropertyName"] == prop and "retired" in values["Reason"]


def test_action_responses_carry_the_spec_headers(client: BatchClient, raw: RawBatch) -> None:
    """ETag, Last-Modified and DataServiceId, as the spec declares for these operations."""
    pool_id = _pool(client, 1)
    try:
        [node] = list(client.list_nodes(pool_id))
        job_id = new_job(client, pool_id)
        calls = [
            (f"/pools/{pool_id}/nodes/{node.id}/disablescheduling", {}, 200),
            (f"/pools/{pool_id}/nodes/{node.id}/enablescheduling", None, 200),
            (f"/pools/{pool_id}/nodes/{node.id}/reboot", {"nodeRebootOption": "requeue"}, 202),
            (f"/jobs/{job_id}/disable", {"disableTasks": "wait"}, 202),
            (f"/jobs/{job_id}/enable", None, 202),
            (f"/pools/{pool_id}/stopresize", None, 202),
        ]
        for path, body, expected in calls:
            payload = json.dumps(body).encode() if body is not None else b""
            status, _, headers = raw.send("POST", path, payload)
            assert status == expected, path
            assert {"ETag", "Last-Modified", "DataServiceId", "request-id"} <= set(headers), path
    finally:
        _delete(client, pool_id)


def test_node_deallocate_and_start(client: BatchClient) -> None:
    pool_id = _pool(client, 1)
    try:
        [node] = list(client.list_nodes(pool_id))
        job_id = new_job(client, pool_id)
        _task(client, job_id, "long", "/bin/sleep 30")
        _running(client, job_id, "long")
        options = bm._models.BatchNodeDeallocateOptions(node_deallocate_option="requeue")
        client.begin_deallocate_node(pool_id, node.id, options, polling_interval=0.1).result()
        assert client.get_node(pool_id, node.id).state == "deallocated"
        long = _state(client, job_id, "long")
        assert long.state == "active" and long.execution_info is not None
        assert long.execution_info.requeue_count == 1
        [counts] = [c for c in client.list_pool_node_counts() if c.pool_id == pool_id]
        assert counts.dedicated is not None and counts.dedicated.deallocated == 1
        client.terminate_task(job_id, "long")
        client.begin_start_node(pool_id, node.id, polling_interval=0.1).result()
        wait_nodes_idle(client, pool_id, 1)
        with pytest.raises(HttpResponseError) as err:
            client.begin_start_node(pool_id, node.id)
        assert _code(err) == (409, "OperationNotValidOnNode")
    finally:
        _delete(client, pool_id)


def test_a_local_node_has_no_extensions(client: BatchClient) -> None:
    pool_id = _pool(client, 1)
    try:
        [node] = list(client.list_nodes(pool_id))
        assert list(client.list_node_extensions(pool_id, node.id)) == []
        with pytest.raises(HttpResponseError) as err:
            client.get_node_extension(pool_id, node.id, "CustomScript")
        assert _code(err) == (404, "ResourceNotFound")
        with pytest.raises(HttpResponseError) as err:
            list(client.list_node_extensions(pool_id, "tvmps_nope"))
        assert _code(err) == (404, "NodeNotFound")
    finally:
        _delete(client, pool_id)
