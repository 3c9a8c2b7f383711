"""Multi-instance tasks through the official SDK: the MPI flow (common resource files, the
coordination command on every node, the command line on the primary, Batch's environment,
``subtasksinfo``), a task that waits for enough free nodes, termination of every instance, and
the service's refusals, the job preparation task first on every node, and a restart (subtasks
kept, the crashed run's processes ended, the task requeued). One pool of 3 nodes with inter-node
communication, 1 slot each; the restart test starts a localbatch of its own."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from tests.conftest import Azurite, LocalBatch, start_localbatch
from tests.localbatch.conftest import (
    batch_client,
    container_sas_url,
    new_job,
    unique,
    wait_for,
    wait_nodes_idle,
    wait_task_completed,
)

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
# A coordination command that leaves a background "service" behind and says where it runs.
SERVICE = "/bin/sh -c 'sleep 60 & echo $! > \"$AZ_BATCH_TASK_SHARED_DIR/service.pid\"'"
WRITES_PREP = "/bin/sh -c 'echo $AZ_BATCH_NODE_ID > \"$AZ_BATCH_NODE_SHARED_DIR/prep-$AZ_BATCH_JOB_ID\"'"
# Reads what the job preparation task wrote on this node (fails if it has not run there yet).
SEES_PREP = (
    '/bin/sh -c \'cd "$AZ_BATCH_TASK_SHARED_DIR"; '
    'cat "$AZ_BATCH_NODE_SHARED_DIR/prep-$AZ_BATCH_JOB_ID" > seen; echo "$AZ_BATCH_JOB_PREP_DIR" >> seen\''
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
    task_id: str,
    command: str,
    instances: int,
    common: list[bm.ResourceFile],
    coordination: str = COORDINATION,
    **kw: object,
) -> bm.BatchTaskCreateOptions:
    return bm.BatchTaskCreateOptions(
        id=task_id,
        command_line=command,
        multi_instance_settings=bm.MultiInstanceSettings(
            number_of_instances=instances,
            coordination_command_line=coordination,
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


def test_job_preparation_runs_first_on_every_node_of_a_multi_instance_task(
    client: BatchClient, mpi_pool: str
) -> None:
    prep = bm.BatchJobPreparationTask(command_line=WRITES_PREP)
    job_id = new_job(client, mpi_pool, job_preparation_task=prep)
    # The coordination command (every node) and the command line (primary) read the preparation's file.
    client.create_task(job_id, _multi("mpi", SEES_PREP, 3, [], coordination=SEES_PREP))
    done = wait_task_completed(client, job_id, "mpi")
    assert done.execution_info.result == "success", done.execution_info.failure_info
    subtasks = list(client.list_subtasks(job_id, "mpi"))
    assert [(s.state, s.exit_code, s.result) for s in subtasks] == [("completed", 0, "success")] * 2
    roots = {done.node_info.node_id: f"workitems/{job_id}/job-1/mpi"}
    roots.update({s.node_info.node_id: s.node_info.task_root_directory for s in subtasks})
    assert len(roots) == 3
    for node_id, root in roots.items():  # each node saw its own preparation's file
        seen, prep_dir = _node_file(client, mpi_pool, node_id, f"{root}/seen").splitlines()
        assert seen == node_id and f"/nodes/{node_id}/workitems/" in prep_dir
    status = list(client.list_job_preparation_and_release_task_status(job_id))
    assert {s.node_id for s in status} == set(roots)
    assert {s.job_preparation_task_execution_info.result for s in status} == {"success"}
    client.begin_delete_job(job_id, polling_interval=0.1).result(timeout=20)


def _pids(data: Path, nodes: list[str], job_id: str, task_id: str) -> list[int]:
    """The coordination services' pids of a running task on these nodes (once each has written it)."""

    def read(node_id: str) -> int | None:
        path = data / "nodes" / node_id / "workitems" / job_id / "job-1" / task_id / "service.pid"
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text else None

    return wait_for(lambda: all(p := [read(n) for n in nodes]) and p)


def test_restart_keeps_subtasks_and_requeues_a_running_multi_instance_task(
    tmp_path: Path, azurite: Azurite
) -> None:
    data = tmp_path / "lb"
    first = start_localbatch(data, azurite)
    gated = "/bin/sh -c 'while [ ! -e \"$AZ_BATCH_NODE_SHARED_DIR/go\" ]; do sleep 0.05; done'"
    pids: list[int] = []
    try:
        client = batch_client(first)
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id="mpi",
                vm_size="x",
                target_dedicated_nodes=2,
                task_slots_per_node=1,
                enable_inter_node_communication=True,
            )
        )
        nodes = [n.id for n in wait_nodes_idle(client, "mpi", 2)]
        client.create_job(bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="mpi")))
        client.create_task("job", _multi("done", "/bin/true", 2, [], coordination="/bin/true"))
        wait_task_completed(client, "job", "done")
        client.create_task("job", _multi("gated", gated, 2, [], coordination=SERVICE))
        wait_for(lambda: _in_state(client, "job", "gated", "running"))
        pids = _pids(data, nodes, "job", "gated")
    finally:
        first.process.kill()

    second = start_localbatch(data, azurite, account_key=first.account_key, port=first.process.port)
    try:
        client = batch_client(second)
        [sub] = list(client.list_subtasks("job", "done"))  # a finished task's subtasks survive
        assert (sub.id, sub.state, sub.exit_code, sub.result) == (1, "completed", 0, "success")
        assert sub.node_info.node_id in nodes
        for pid in pids:  # the crashed run's coordination services were ended on restart
            wait_for(lambda pid=pid: not _alive(pid), timeout=10)
        rerun = wait_for(lambda: _in_state(client, "job", "gated", "running"))
        assert (rerun.execution_info.requeue_count, rerun.execution_info.retry_count) == (1, 0)
        wait_for(lambda: [s.state for s in client.list_subtasks("job", "gated")] == ["running"])
        for node_id in nodes:
            (data / "nodes" / node_id / "shared" / "go").write_text("")
        done = wait_task_completed(client, "job", "gated")
        assert done.execution_info.result == "success" and done.execution_info.requeue_count == 1
        [sub] = list(client.list_subtasks("job", "gated"))
        assert (sub.state, sub.exit_code, sub.result) == ("completed", 0, "success")
    finally:
        second.process.stop()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def test_a_failed_job_preparation_keeps_a_multi_instance_task_off_its_nodes(
    client: BatchClient, mpi_pool: str
) -> None:
    prep = bm.BatchJobPreparationTask(command_line="/bin/false")
    job_id = new_job(client, mpi_pool, job_preparation_task=prep)
    client.create_task(job_id, _multi("mpi", "/bin/true", 2, [], coordination="/bin/true"))

    def failed_nodes() -> set[str] | None:
        status = client.list_job_preparation_and_release_task_status(job_id)
        failed = {s.node_id for s in status if s.job_preparation_task_execution_info.result == "failure"}
        return failed if len(failed) >= 2 else None

    failed = wait_for(failed_nodes)
    # Back to active once the preparation ended on both of its nodes, and never on a failed node again.
    task = wait_for(lambda: _in_state(client, job_id, "mpi", "active"))
    assert task.previous_state == "preparing" and list(client.list_subtasks(job_id, "mpi")) == []
    healthy = {n.id for n in client.list_nodes(mpi_pool)} - failed
    assert len(healthy) <= 1  # too few nodes left for 2 instances: it stays active
    client.begin_delete_job(job_id, polling_interval=0.1).result(timeout=20)
