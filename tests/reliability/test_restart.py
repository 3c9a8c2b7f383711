"""localbatch killed with SIGKILL while tasks run, then started again on the same data dir and port.

Batch's promise, which localbatch must keep: state survives, the tasks that were
running are requeued (``requeueCount`` + 1), the job completes, and every output
reaches Storage exactly once. Each task run uploads two blobs through
``outputFiles``: ``<task>/result.txt`` (the expected output) and
``<task>/runs/run-<pid>.txt`` (one per run that completed), so a task that
completed twice, or a stale file of a killed run that got uploaded again, shows
up in the blob listing.

The scenario runs once per module (it takes a few seconds); the tests assert on
what it observed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.batch import models as bm
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from tests.conftest import Azurite, LocalBatch, start_localbatch
from tests.reliability.conftest import batch_client, unique, wait_for

SLOTS = 4  # 2 nodes x 2 slots: these tasks are running when the server dies
QUEUED = 2  # these are still waiting
TASK_IDS = [f"t{i}" for i in range(SLOTS + QUEUED)]


@dataclass(frozen=True)
class Observed:
    """What the scenario saw after the restart."""

    first: LocalBatch
    second: LocalBatch
    job: bm.BatchJob
    was_running: frozenset[str]
    tasks: dict[str, bm.BatchTask]
    blob_names: list[str]
    results: dict[str, bytes]


def _output_files(sas_url: str, task_id: str) -> list[bm.OutputFile]:
    def upload(pattern: str, path: str) -> bm.OutputFile:
        return bm.OutputFile(
            file_pattern=pattern,
            destination=bm.OutputFileDestination(
                container=bm.OutputFileBlobContainerDestination(container_url=sas_url, path=path)
            ),
            upload_options=bm.OutputFileUploadConfiguration(upload_condition="tasksuccess"),
        )

    return [upload("result.txt", f"{task_id}/result.txt"), upload("run-*.txt", f"{task_id}/runs")]


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Iterator[Observed]:
    data_dir = tmp_path_factory.mktemp("restart") / "lb"
    started: list[LocalBatch] = []
    try:
        yield _scenario(data_dir, azurite, started)
    finally:
        for server in started:
            server.process.stop()


def _scenario(data_dir: Path, azurite: Azurite, started: list[LocalBatch]) -> Observed:
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = unique("restart")
    blobs.create_container(container)
    sas = generate_container_sas(
        azurite.account_name,
        container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(write=True, create=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    sas_url = f"{azurite.blob_endpoint}/{container}?{sas}"

    first = start_localbatch(data_dir, azurite)
    started.append(first)
    client = batch_client(first)
    pool_id, job_id = unique("pool"), unique("job")
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id, vm_size="standard_d2s_v5", target_dedicated_nodes=2, task_slots_per_node=2
        )
    )
    client.create_job(
        bm.BatchJobCreateOptions(
            id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id), all_tasks_complete_mode="terminatejob"
        )
    )
    script = 'sleep 1.5; echo "$AZ_BATCH_TASK_ID" > result.txt; echo $$ > run-$$.txt'
    client.create_tasks(
        job_id,
        [
            bm.BatchTaskCreateOptions(
                id=task_id,
                command_line=f"/bin/sh -c '{script}'",
                output_files=_output_files(sas_url, task_id),
            )
            for task_id in TASK_IDS
        ],
    )

    def running() -> frozenset[str] | None:
        ids = frozenset(t.id for t in client.list_tasks(job_id) if t.state == "running")
        return ids if len(ids) == SLOTS else None

    was_running = wait_for(running, timeout=60, interval=0.05)
    first.process.kill()

    second = start_localbatch(data_dir, azurite, account_key=first.account_key, port=first.process.port)
    started.append(second)
    client = batch_client(second)
    job = wait_for(lambda: j if (j := client.get_job(job_id)).state == "completed" else None, timeout=60)
    tasks = {t.id: t for t in client.list_tasks(job_id)}
    names = sorted(b.name for b in blobs.get_container_client(container).list_blobs())
    results = {
        n: blobs.get_blob_client(container, n).download_blob().readall()
        for n in names
        if n.endswith("/result.txt")
    }
    return Observed(first, second, job, was_running, tasks, names, results)


def test_restart_keeps_url_and_state(observed: Observed) -> None:
    assert not observed.first.process.alive()
    assert observed.second.url == observed.first.url
    assert set(observed.tasks) == set(TASK_IDS)


def test_job_completes_and_running_tasks_were_requeued(observed: Observed) -> None:
    assert observed.job.state == "completed"
    for task in observed.tasks.values():
        info = task.execution_info
        assert task.state == "completed" and info is not None
        assert info.result == "success" and info.exit_code == 0, (task.id, info)
    for task_id in observed.was_running:
        info = observed.tasks[task_id].execution_info
        assert info is not None and (info.requeue_count or 0) >= 1, task_id
    for task_id in set(TASK_IDS) - observed.was_running:
        info = observed.tasks[task_id].execution_info
        assert info is not None and (info.requeue_count or 0) == 0, task_id


def test_every_expected_output_present(observed: Observed) -> None:
    assert observed.results == {f"{t}/result.txt": f"{t}\n".encode() for t in TASK_IDS}


def test_no_output_uploaded_twice(observed: Observed) -> None:
    runs = [n.split("/")[0] for n in observed.blob_names if "/runs/" in n]
    assert sorted(runs) == sorted(TASK_IDS), "\n".join(observed.blob_names)
    assert len(observed.blob_names) == 2 * len(TASK_IDS), observed.blob_names
