"""Multi-instance tasks through the official SDK: the MPI flow (common resource files, the
coordination command on every node, the command line on the primary, Batch's environment,
``subtasksinfo``), a task that waits for enough free nodes, termination of every instance, and
the service's refusals. One pool of 3 nodes with inter-node communication, 1 slot each."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from tests.conftest import Azurite, LocalBatch
from tests.localbatch.conftest import container_sas_url, new_job, unique, wait_for, wait_task_completed

# Starts a "service" in the background (what an MPI coordination command does), notes where it ran.
COORDINATION_SCRIPT = b"""\
sleep 60 &
echo $! > "$AZ_BATCH_TASK_SHARED_DIR/service.pid"
cd "$AZ_BATCH_TASK_SHARED_DIR"
echo "$AZ_BATCH_NODE_ID $AZ_BATCH_IS_CURRENT_NODE_MASTER $AZ_BATCH_MASTER_NODE" > coord.out
"""
COORDINATION = "/bin/sh -c 'sh \"$AZ_BATCH_TASK_SHARED_DIR/coordinate.sh\"'"
# The primary waits for a gate file (written by the test) so the test sees it running, boundedly.
GATED = (
    '/bin/sh -c \'while [ ! -e "$AZ_BATCH_NODE_SHARED_DIR/go" ]; do sleep 0.05; done; '
    'echo "$AZ_BATCH_HOST_LIST|$AZ_BATCH_NODE_LIST|$AZ_BATCH_IS_CURRENT_NODE_MASTER"; '
    'cat "$AZ_BATCH_TASK_SHARED_DIR/coord.out" input.txt\''
)


@pytest.fixture(scope="module")
def mpi_pool(client: BatchClient) -> Iterator[str]:
    pool_id = unique("mpipool")
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_hb120rs_v3",
            target_dedicated_nodes=3,
            task_slots_per_node=1,
            enable_inter_node_communication=True,
        )
    )
    wait_for(lambda: [n for n in client.list_nodes(pool_id) if n.state == "idle"][2:])
    yield pool_id
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()


def _multi(
    task_id: str, command: str, instances: int, common: list[bm.ResourceFile], **kw: object
) -> bm.BatchTaskCreateOptions:
    return bm.BatchTaskCreateOptions(
        id=task_id,
        command_line=command,
        multi_instance_settings=bm.MultiInstanceSettings(
            number_of_instances=instances,
            coordination_command_line=COORDINATION,
            common_resource_files=common,
        ),
        constraints=bm.BatchTaskConstraints(max_wall_clock_time=timedelta(seconds=60)),
        **kw,
    )


def _node_file(client: BatchClient, pool_id: str, node_id: str, path: str) -> str:
    return b"".join(client.download_node_file(pool_id, node_id, path)).decode()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _in_state(client: BatchClient, job_id: str, task_id: str, state: str) -> bm.BatchTask | None:
    task = client.get_task(job_id, task_id)
    return task if task.state == state else None


def test_mpi_flow_waits_for_nodes_runs_everywhere_and_terminates_every_instance(
    client: BatchClient, mpi_pool: str, localbatch: LocalBatch, azurite: Azurite, blobs: BlobServiceClient
) -> None:
    container = unique("mpi")
    blobs.create_container(container)
    blobs.get_blob_client(container, "coordinate.sh").upload_blob(COORDINATION_SCRIPT)
    blobs.get_blob_client(container, "input.txt").upload_blob(b"primary input\n")
    sas = container_sas_url(azurite, container, read=True, list=True)
    base, query = sas.split("?", 1)
    common = [bm.ResourceFile(http_url=f"{base}/coordinate.sh?{query}", file_path="coordinate.sh")]
    own = [bm.ResourceFile(http_url=f"{base}/input.txt?{query}", file_path="input.txt")]
    job_id = new_job(client, mpi_pool)
    client.create_task(job_id, _multi("mpi", GATED, 3, common, resource_files=own))
    client.create_task(job_id, _multi("second", "/bin/sh -c 'sleep 50'", 2, common))

    running = wait_for(lambda: _in_state(client, job_id, "mpi", "running"))
    primary = running.node_info.node_id
    subtasks = wait_for(lambda: len(s := list(client.list_subtasks(job_id, "mpi"))) == 2 and s)
    assert [s.id for s in subtasks] == [1, 2] and {s.state for s in subtasks} == {"running"}
    sub_nodes = [s.node_info.node_id for s in subtasks]
    assert len({primary, *sub_nodes}) == 3  # one instance per node
    assert {n.state for n in client.list_nodes(mpi_pool)} == {"running"}
    assert client.get_task(job_id, "second").state == "active"  # needs 2 free nodes: none is
    (localbatch.data_dir / "nodes" / primary / "shared" / "go").write_text("")

    done = wait_task_completed(client, job_id, "mpi")
    assert done.execution_info.result == "success" and done.node_info.node_id == primary
    out = b"".join(client.download_task_file(job_id, "mpi", "stdout.txt")).decode().splitlines()
    assert out[0] == "127.0.0.1,127.0.0.1,127.0.0.1|127.0.0.1;127.0.0.1;127.0.0.1|true"
    assert out[1:] == [f"{primary} true 127.0.0.1:6000", "primary input"]
    finished = list(client.list_subtasks(job_id, "mpi"))
    assert [(s.state, s.exit_code, s.result) for s in finished] == [("completed", 0, "success")] * 2
    for sub in finished:
        root = sub.node_info.task_root_directory
        assert _node_file(client, mpi_pool, sub.node_info.node_id, f"{root}/coord.out").split()[1] == "false"
        pid = int(_node_file(client, mpi_pool, sub.node_info.node_id, f"{root}/service.pid"))
        wait_for(lambda pid=pid: not _alive(pid), timeout=10)  # its background service ended with the task
        with pytest.raises(HttpResponseError):  # the primary's own resource files are not theirs
            _node_file(client, mpi_pool, sub.node_info.node_id, f"{root}/wd/input.txt")

    second = wait_for(lambda: _in_state(client, job_id, "second", "running"))
    wait_for(lambda: len(list(client.list_subtasks(job_id, "second"))) == 1)
    client.terminate_task(job_id, "second")
    ended = wait_task_completed(client, job_id, "second")
    assert ended.execution_info.result == "failure"
    [sub] = list(client.list_subtasks(job_id, "second"))
    assert sub.state == "completed" and sub.node_info.node_id != second.node_info.node_id
    wait_for(lambda: {n.state for n in client.list_nodes(mpi_pool)} == {"idle"}, timeout=10)
    blobs.delete_container(container)


def test_refusals_and_a_pool_without_inter_node_communication(
    client: BatchClient, shared_pool: str, localbatch: LocalBatch
) -> None:
    job_id = new_job(client, shared_pool)
    bad_slots = _multi("slots", "true", 2, [], required_slots=2)
    with pytest.raises(HttpResponseError) as exc:
        client.create_task(job_id, bad_slots)
    assert exc.value.status_code == 400 and exc.value.error.code == "InvalidPropertyValue"
    no_coordination = bm.BatchTaskCreateOptions(
        id="nocoord",
        command_line="true",
        multi_instance_settings=bm.MultiInstanceSettings(number_of_instances=2),
    )
    with pytest.raises(HttpResponseError) as exc:
        client.create_task(job_id, no_coordination)
    assert exc.value.error.code == "MissingRequiredProperty"
    # Batch never schedules it on a pool without inter-node communication: it stays active.
    client.create_task(job_id, _multi("mpi", "true", 1, []))
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="plain", command_line="true"))
    wait_task_completed(client, job_id, "plain")  # scheduling passes ran after the multi-instance task's add
    assert client.get_task(job_id, "mpi").state == "active"
    assert list(client.list_subtasks(job_id, "mpi")) == []
    # The waiting task (the oldest) must not crowd out the others: all 4 slots of the pool fill.
    gate = localbatch.data_dir / f"gate-{job_id}"
    wait = f"/bin/sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done'"
    limit = bm.BatchTaskConstraints(max_wall_clock_time=timedelta(seconds=60))
    for i in range(4):
        client.create_task(
            job_id, bm.BatchTaskCreateOptions(id=f"w{i}", command_line=wait, constraints=limit)
        )
    wait_for(lambda: all(client.get_task(job_id, f"w{i}").state == "running" for i in range(4)), timeout=20)
    gate.write_text("")
    for i in range(4):
        wait_task_completed(client, job_id, f"w{i}")
    client.begin_delete_job(job_id, polling_interval=0.1).result(timeout=20)
