"""State survives a crash: after SIGKILL and restart, running tasks are requeued and complete."""

from __future__ import annotations

from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import ResourceNotFoundError

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
        wait_for(lambda: b"run" in _file_or_empty(client, "job", "long", "runs"))
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


def _counts_from_list(client: BatchClient, job_id: str) -> dict[str, int]:
    got = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
    for t in client.list_tasks(job_id, select=["id", "state", "executionInfo"]):
        state = "running" if t.state in ("running", "preparing") else getattr(t.state, "value", t.state)
        got[state] += 1
        if t.state == "completed":
            got["succeeded" if t.execution_info.result == "success" else "failed"] += 1
    return got


def _counts(client: BatchClient, job_id: str) -> dict[str, int]:
    c = client.get_job_task_counts(job_id).task_counts
    return {
        "active": c.active,
        "running": c.running,
        "completed": c.completed,
        "succeeded": c.succeeded,
        "failed": c.failed,
    }


def _assert_counts(client: BatchClient, **expected: int) -> None:
    """The job's task counts equal a count of its task list, and ``expected``."""
    assert _counts(client, "job") == _counts_from_list(client, "job")
    assert _counts(client, "job") == expected


def test_task_counts_always_match_the_task_list_across_changes_and_a_restart(
    tmp_path: Path, azurite: Azurite
) -> None:
    """Task counts are kept incrementally (one read per poll): they must never drift."""
    data = tmp_path / "lb"
    first = start_localbatch(data, azurite)
    try:
        client = batch_client(first)
        # Four slots: "long" runs next to the others, whatever order they are scheduled in.
        client.create_pool(
            bm.BatchPoolCreateOptions(id="pool", vm_size="x", target_dedicated_nodes=1, task_slots_per_node=4)
        )
        wait_nodes_idle(client, "pool", 1)
        client.create_job(
            bm.BatchJobCreateOptions(
                id="job", pool_info=bm.BatchPoolInfo(pool_id="pool"), uses_task_dependencies=True
            )
        )
        tasks = [bm.BatchTaskCreateOptions(id=f"ok{i}", command_line="/bin/true") for i in range(6)]
        tasks += [bm.BatchTaskCreateOptions(id=f"bad{i}", command_line="/bin/false") for i in range(3)]
        tasks.append(
            bm.BatchTaskCreateOptions(
                id="blocked",
                command_line="/bin/true",
                depends_on=bm.BatchTaskDependencies(task_ids=["bad0"]),
            )
        )
        tasks.append(bm.BatchTaskCreateOptions(id="long", command_line="/bin/sleep 30"))
        client.create_tasks("job", tasks)
        first_counts = _counts(client, "job")
        assert first_counts["active"] + first_counts["running"] + first_counts["completed"] == 11
        wait_for(lambda: client.get_task("job", "long").state == "running", timeout=60)
        wait_for(lambda: _counts(client, "job")["completed"] == 9, timeout=60)
        _assert_counts(client, active=1, running=1, completed=9, succeeded=6, failed=3)
        client.delete_task("job", "ok0")
        client.delete_task("job", "bad1")
        assert _counts(client, "job") == _counts_from_list(client, "job")
        assert _counts(client, "job")["completed"] == 7
    finally:
        first.process.kill()  # "long" was running: the restart requeues it

    second = start_localbatch(data, azurite, account_key=first.account_key, port=first.process.port)
    try:
        client = batch_client(second)
        assert _counts(client, "job") == _counts_from_list(client, "job")
        client.terminate_task("job", "long")
        wait_for(lambda: client.get_task("job", "long").state == "completed", timeout=60)
        _assert_counts(client, active=1, running=0, completed=8, succeeded=5, failed=3)
    finally:
        second.process.stop()


def _file_or_empty(client: BatchClient, job_id: str, task_id: str, path: str) -> bytes:
    """A task file's bytes; ``b""`` while it does not exist yet (the task is ``running`` a
    moment before its shell has written it)."""
    try:
        return b"".join(client.download_task_file(job_id, task_id, path))
    except ResourceNotFoundError:
        return b""
