"""Node users, remote login settings, service log upload, extensions, applications and subtasks,
through the official SDK against the session localbatch (one pool of one node for all of it)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from tests.conftest import Azurite, LocalBatch
from tests.localbatch.conftest import container_sas_url, new_job, unique, wait_nodes_idle, wait_task_completed

PASSWORD = "pw-" + unique("secret")  # made at run time: no password-shaped string is committed
EXT_SECRET = unique("ext")


def _code(call: Callable[[], object]) -> tuple[int, str | None]:
    with pytest.raises(HttpResponseError) as caught:
        call()
    return caught.value.status_code or 0, caught.value.error.code if caught.value.error else None


@pytest.fixture(scope="module")
def node_pool(client: BatchClient) -> Iterator[tuple[str, str]]:
    """A one-node pool with a VM extension and an application package reference."""
    pool_id = unique("ops")
    vmc = bm.VirtualMachineConfiguration(
        image_reference=bm.BatchVmImageReference(
            publisher="canonical", offer="ubuntu-24_04-lts", sku="server"
        ),
        node_agent_sku_id="batch.node.ubuntu 24.04",
        extensions=[
            bm.VMExtension(name="ext1", publisher="pub", type="mon", protected_settings={"key": EXT_SECRET})
        ],
    )
    refs = [
        bm.BatchApplicationPackageReference(
            application_id="/subscriptions/s/applications/blender", version="4.1"
        )
    ]
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="x",
            target_dedicated_nodes=1,
            virtual_machine_configuration=vmc,
            application_package_references=refs,
        )
    )
    [node] = wait_nodes_idle(client, pool_id, 1)
    yield pool_id, str(node.id)
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()


def test_node_users(client: BatchClient, localbatch: LocalBatch, node_pool: tuple[str, str]) -> None:
    pool_id, node_id = node_pool
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    alice = bm.BatchNodeUserCreateOptions(name="alice", is_admin=True, password=PASSWORD, expiry_time=expiry)
    client.create_node_user(pool_id, node_id, alice)
    assert _code(lambda: client.create_node_user(pool_id, node_id, alice)) == (409, "NodeUserExists")
    # The password is kept nowhere: neither in the node's answer nor in the service's state.
    assert PASSWORD not in str(client.get_node(pool_id, node_id).as_dict())
    with sqlite3.connect(f"file:{localbatch.data_dir / 'state.db'}?mode=ro", uri=True) as db:
        dump = "\n".join(db.iterdump())
    assert PASSWORD not in dump and '"alice"' in dump
    bad = bm.BatchNodeUserCreateOptions(name="bob", ssh_public_key="not a key")
    assert _code(lambda: client.create_node_user(pool_id, node_id, bad)) == (400, "InvalidPropertyValue")
    replace = bm.BatchNodeUserReplaceOptions(ssh_public_key="ssh-ed25519 AAAAC3Nza alice@laptop")
    client.replace_node_user(pool_id, node_id, "ALICE", replace)  # user names compare case-insensitively
    client.delete_node_user(pool_id, node_id, "alice")
    assert _code(lambda: client.delete_node_user(pool_id, node_id, "alice")) == (404, "NodeUserNotFound")
    assert _code(lambda: client.replace_node_user(pool_id, node_id, "carol", replace)) == (
        404,
        "NodeUserNotFound",
    )
    assert _code(lambda: client.create_node_user(pool_id, "tvmps_nope_d", alice)) == (404, "NodeNotFound")


def test_remote_login_logs_extensions_applications_subtasks(
    client: BatchClient, azurite: Azurite, blobs: BlobServiceClient, node_pool: tuple[str, str]
) -> None:
    pool_id, node_id = node_pool
    login = client.get_node_remote_login_settings(pool_id, node_id)
    assert login.remote_login_ip_address == "127.0.0.1" and login.remote_login_port >= 50000
    # Service logs: really uploaded to the container, under the virtual directory answered.
    container = unique("nodelogs")
    blobs.create_container(container)
    sas_url = container_sas_url(azurite, container, write=True, create=True)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    result = client.upload_node_logs(
        pool_id, node_id, bm.UploadBatchServiceLogsOptions(container_url=sas_url, start_time=since)
    )
    assert result.number_of_files_uploaded == 1 and result.virtual_directory_name.startswith(
        f"{pool_id}/{node_id}/"
    )
    [name] = [b.name for b in blobs.get_container_client(container).list_blobs()]
    assert name.startswith(result.virtual_directory_name + "/")
    text = blobs.get_blob_client(container, name).download_blob().readall().decode()
    assert f"node {node_id} allocated to pool {pool_id}" in text and "-> idle" in text
    later = bm.UploadBatchServiceLogsOptions(
        container_url=sas_url, start_time=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    )
    assert client.upload_node_logs(pool_id, node_id, later).number_of_files_uploaded == 0
    assert "sig=" not in str(result.as_dict())
    # Extensions: the pool's, provisioned, without their protected settings.
    [ext] = list(client.list_node_extensions(pool_id, node_id))
    assert (
        ext.vm_extension is not None
        and ext.vm_extension.name == "ext1"
        and ext.provisioning_state == "Succeeded"
    )
    assert ext.vm_extension.protected_settings is None and EXT_SECRET not in str(ext.as_dict())
    assert client.get_node_extension(pool_id, node_id, "ext1").vm_extension.publisher == "pub"
    assert _code(lambda: client.get_node_extension(pool_id, node_id, "nope"))[0] == 404
    # Applications: those the pools reference (the ARM id's last segment, with its versions).
    apps = {a.id: a for a in client.list_applications()}
    assert apps["blender"].versions == ["4.1"]
    assert client.get_application("blender").display_name == "blender"
    assert _code(lambda: client.get_application("nope")) == (404, "ApplicationNotFound")
    # Subtasks: no task is multi-instance, so none has any; a missing task is 404.
    job_id = new_job(client, pool_id)
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    wait_task_completed(client, job_id, "t")
    assert list(client.list_subtasks(job_id, "t")) == []
    assert _code(lambda: list(client.list_subtasks(job_id, "nope"))) == (404, "TaskNotFound")
