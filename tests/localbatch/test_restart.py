"""State survives a crash: after SIGKILL and restart, running tasks are requeued and complete."""

from __future__ import annotations

from pathlib import Path

from azure.batch import models as bm

from runner import services
from tests.conftest import Azurite, start_localbatch
from tests.localbatch.conftest import batch_client, wait_for, wait_nodes_idle, wait_task_completed


def test_sigkill_then_restart_requeues_running_tasks(tmp_path: Path, azurite: Azurite) -> None:
    data = tmp_path / "lb"
    first = start_localbatch(data, azurite)
    try:
        client = batch_client(first)
        client.create_pool(
            bm.BatchPoolCreateOptions(
                id="pool",
                vm_size="x",
                target_dedicated_nodes=1,
                start_task=bm.BatchStartTask(command_line="/bin/true", wait_for_success=True),
            )
        )
        wait_nodes_idle(client, "pool", 1)
        client.create_job(bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="pool")))
        # Each run appends to a file outside the working directory, then takes a while.
        client.create_task(
            "job",
            bm.BatchTaskCreateOptions(
                id="long",
                command_line="/bin/sh -c 'echo run >> ../runs; sleep 3; echo done >> ../runs; echo ok'",
            ),
        )
        client.create_task("job", bm.BatchTaskCreateOptions(id="quick", command_line="/bin/echo quick"))
        wait_for(lambda: client.get_task("job", "long").state == "running")
        wait_for(lambda: b"run" in b"".join(client.download_task_file("job", "long", "runs")))
    finally:
        first.process.kill()

    second = start_localbatch(data, azurite, account_key=first.account_key, port=first.process.port)
    try:
        client = batch_client(second)
        assert client.get_pool("pool").current_dedicated_nodes == 1
        long = wait_task_completed(client, "job", "long")
        assert long.execution_info.requeue_count == 1
        assert long.execution_info.last_requeue_time is not None
        assert long.execution_info.result == "success"
        assert b"".join(client.download_task_file("job", "long", "stdout.txt")) == b"ok\n"
        # The requeued run started from an empty task directory, and the crashed run's processes
        # were ended on restart (else they would have appended a second "done").
        runs = b"".join(client.download_task_file("job", "long", "runs")).decode().split()
        assert runs == ["run", "done"]
        quick = wait_task_completed(client, "job", "quick")
        assert quick.execution_info.result == "success"
        # The node came back idle without rerunning its start task.
        node = wait_nodes_idle(client, "pool", 1)[0]
        assert node.start_task_info.result == "success"
    finally:
        second.process.stop()


def test_sigterm_ends_processes_and_keeps_state(tmp_path: Path, azurite: Azurite) -> None:
    data = tmp_path / "lb"
    pids = tmp_path / "pids"
    first = start_localbatch(data, azurite)
    try:
        client = batch_client(first)
        client.create_pool(bm.BatchPoolCreateOptions(id="pool", vm_size="x", target_dedicated_nodes=1))
        client.create_job(bm.BatchJobCreateOptions(id="job", pool_info=bm.BatchPoolInfo(pool_id="pool")))
        client.create_task(
            "job",
            bm.BatchTaskCreateOptions(
                id="long",
                command_line="/bin/sh -c 'echo $$ >> \"$PIDS\"; exec sleep 60'",
                environment_settings=[bm.EnvironmentSetting(name="PIDS", value=str(pids))],
            ),
        )
        wait_for(lambda: pids.exists() and pids.read_text().strip())
    finally:
        first.process.stop()
    assert first.process.popen is not None and first.process.popen.returncode == 0
    assert not (data / "endpoint").exists()
    first_pid = int(pids.read_text().split()[0])
    assert not services.pid_alive(first_pid)

    second = start_localbatch(data, azurite, account_key=first.account_key)
    try:
        client = batch_client(second)
        wait_for(lambda: len(pids.read_text().split()) == 2)
        task = client.get_task("job", "long")
        assert task.state == "running" and task.execution_info.requeue_count == 1
        client.terminate_task("job", "long")
        ended = wait_task_completed(client, "job", "long")
        assert ended.execution_info.failure_info.code == "TaskEnded"
    finally:
        second.process.stop()
