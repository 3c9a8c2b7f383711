"""Job schedules through the official SDK: recurrence, one active job at a time, doNotRunUntil/After,
disable/enable, update/replace, terminate and delete, and Batch's errors.

The module's own localbatch runs with ``--job-schedule-min-interval 0.5`` (Batch's minimum is a
minute), so schedules recur every second; every wait polls for a condition with a bound.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch.models._models import BatchJobTerminateOptions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.conftest import Azurite, LocalBatch, start_localbatch
from tests.localbatch.conftest import batch_client, unique, wait_for

SECOND = timedelta(seconds=1)
OLD_PYTHON = os.environ.get("OLD_AZURE_BATCH_PYTHON")
SAMPLE = Path(__file__).parent / "clients" / "job_scheduler_azure_batch_14.py"


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Iterator[LocalBatch]:
    server = start_localbatch(
        tmp_path_factory.mktemp("schedules"), azurite, extra_args=["--job-schedule-min-interval", "0.5"]
    )
    yield server
    server.process.stop()


@pytest.fixture(scope="module")
def client(fast: LocalBatch) -> BatchClient:
    return batch_client(fast)


def _spec(priority: int = 0) -> bm.BatchJobSpecification:
    # A pool without nodes: the jobs made stay active until the test ends them.
    return bm.BatchJobSpecification(pool_info=bm.BatchPoolInfo(pool_id="nopool"), priority=priority)


def _recent(client: BatchClient, schedule_id: str, job_id: str) -> bm.BatchJobSchedule | None:
    s = client.get_job_schedule(schedule_id)
    recent = s.execution_info.recent_job
    return s if recent is not None and recent.id == job_id else None


def _jobs(client: BatchClient, schedule_id: str) -> list[str]:
    return sorted(j.id for j in client.list_jobs_from_schedule(schedule_id))


def _wait_past(when: datetime, margin: float = 0.3) -> None:
    """Wait until ``when`` (a due time) is ``margin`` seconds in the past."""
    wait_for(lambda: datetime.now(timezone.utc) > when + timedelta(seconds=margin), timeout=10)


def _end_job(client: BatchClient, job_id: str) -> None:
    options = BatchJobTerminateOptions(termination_reason="UserTerminate")
    client.begin_terminate_job(job_id, options, polling_interval=0.05).result(timeout=10)


def test_recurring_schedule_keeps_one_active_job_and_follows_disable_update_replace(
    client: BatchClient,
) -> None:
    sid = unique("sched")
    client.create_job_schedule(
        bm.BatchJobScheduleCreateOptions(
            id=sid,
            schedule=bm.BatchJobScheduleConfiguration(recurrence_interval=SECOND),
            job_specification=_spec(priority=7),
            metadata=[bm.BatchMetadataItem(name="owner", value="tests")],
        )
    )
    assert client.job_schedule_exists(sid)
    first = wait_for(lambda: _recent(client, sid, f"{sid}:job-1"))
    assert first.state == "active" and first.execution_info.next_run_time is not None
    assert client.get_job(f"{sid}:job-1").priority == 7  # made from the job specification
    # Due again while job-1 is active: no second job until it ends.
    _wait_past(first.execution_info.next_run_time)
    assert _jobs(client, sid) == [f"{sid}:job-1"]
    _end_job(client, f"{sid}:job-1")
    wait_for(lambda: _recent(client, sid, f"{sid}:job-2"))

    # Disabled: nothing new is made when due; enabled: the due job comes.
    client.disable_job_schedule(sid)
    disabled = client.get_job_schedule(sid)
    assert disabled.state == "disabled" and disabled.previous_state == "active"
    _end_job(client, f"{sid}:job-2")
    _wait_past(disabled.execution_info.next_run_time)
    assert _jobs(client, sid) == [f"{sid}:job-1", f"{sid}:job-2"]
    before = client.get_job_schedule(sid).etag
    # PATCH changes only what it names: the new job specification applies to the next job.
    client.update_job_schedule(sid, bm.BatchJobScheduleUpdateOptions(job_specification=_spec(priority=3)))
    patched = client.get_job_schedule(sid)
    assert patched.etag != before and patched.metadata[0].name == "owner"
    client.enable_job_schedule(sid)
    wait_for(lambda: _recent(client, sid, f"{sid}:job-3"))
    assert client.get_job(f"{sid}:job-3").priority == 3

    # PUT replaces everything: no recurrence, no metadata; the schedule completes with its job.
    client.replace_job_schedule(
        sid, bm.BatchJobSchedule(schedule=bm.BatchJobScheduleConfiguration(), job_specification=_spec())
    )
    replaced = client.get_job_schedule(sid)
    assert replaced.metadata is None and replaced.schedule.recurrence_interval is None
    assert replaced.state == "active" and replaced.execution_info.next_run_time is None
    _end_job(client, f"{sid}:job-3")
    done = wait_for(lambda: s if (s := client.get_job_schedule(sid)).state == "completed" else None)
    assert done.execution_info.end_time is not None and len(_jobs(client, sid)) == 3
    with pytest.raises(HttpResponseError) as exc:
        client.disable_job_schedule(sid)
    assert exc.value.status_code == 409 and exc.value.error.code == "JobScheduleCompleted"

    client.begin_delete_job_schedule(sid, polling_interval=0.05).result(timeout=10)
    with pytest.raises(ResourceNotFoundError):  # the SDK raises on HEAD's 404 too
        client.job_schedule_exists(sid)
    with pytest.raises(ResourceNotFoundError):
        client.get_job(f"{sid}:job-1")  # a schedule's jobs go with it


def test_do_not_run_until_and_after_terminate_and_errors(client: BatchClient) -> None:
    later = unique("later")
    until = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    client.create_job_schedule(
        bm.BatchJobScheduleCreateOptions(
            id=later,
            schedule=bm.BatchJobScheduleConfiguration(do_not_run_until=until),
            job_specification=_spec(),
        )
    )
    waiting = client.get_job_schedule(later)
    assert abs((waiting.execution_info.next_run_time - until).total_seconds()) < 0.01
    assert _jobs(client, later) == [] and waiting.execution_info.recent_job is None
    wait_for(lambda: _recent(client, later, f"{later}:job-1"), timeout=10)
    assert datetime.now(timezone.utc) >= until
    # Terminate: its active job is terminated and the schedule completes.
    client.begin_terminate_job_schedule(later, polling_interval=0.05).result(timeout=10)
    assert client.get_job_schedule(later).state == "completed"
    ended = client.get_job(f"{later}:job-1")
    assert ended.state == "completed" and ended.execution_info.termination_reason == "TerminateJobSchedule"
    listed = {s.id for s in client.list_job_schedules(filter="state eq 'completed'")}
    assert later in listed

    # doNotRunAfter already past: no job is ever made, the schedule completes at once.
    past = unique("past")
    client.create_job_schedule(
        bm.BatchJobScheduleCreateOptions(
            id=past,
            schedule=bm.BatchJobScheduleConfiguration(
                do_not_run_after=datetime.now(timezone.utc) - timedelta(minutes=1), recurrence_interval=SECOND
            ),
            job_specification=_spec(),
        )
    )
    assert client.get_job_schedule(past).state == "completed" and _jobs(client, past) == []

    with pytest.raises(HttpResponseError) as exc:
        client.create_job_schedule(
            bm.BatchJobScheduleCreateOptions(
                id=past, schedule=bm.BatchJobScheduleConfiguration(), job_specification=_spec()
            )
        )
    assert exc.value.status_code == 409 and exc.value.error.code == "JobScheduleExists"
    too_short = bm.BatchJobScheduleConfiguration(recurrence_interval=timedelta(seconds=0.1))
    with pytest.raises(HttpResponseError) as exc:
        short = unique("short")
        client.create_job_schedule(
            bm.BatchJobScheduleCreateOptions(id=short, schedule=too_short, job_specification=_spec())
        )
    assert exc.value.status_code == 400 and exc.value.error.code == "InvalidPropertyValue"
    named = {d.code: d.message for d in exc.value.error.details}
    assert named["PropertyName"] == "schedule.recurrenceInterval"
    with pytest.raises(HttpResponseError) as exc:
        client.update_job_schedule(later, bm.BatchJobScheduleUpdateOptions(job_specification=_spec()))
    assert exc.value.status_code == 409 and exc.value.error.code == "JobScheduleCompleted"
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_job_schedule(unique("nosuch"))
    assert missing.value.error.code == "JobScheduleNotFound"


def test_a_due_time_whose_start_window_closed_is_lost(client: BatchClient) -> None:
    sid = unique("window")
    client.create_job_schedule(
        bm.BatchJobScheduleCreateOptions(
            id=sid,
            schedule=bm.BatchJobScheduleConfiguration(
                recurrence_interval=SECOND, start_window=timedelta(seconds=0.5)
            ),
            job_specification=_spec(),
        )
    )
    first = wait_for(lambda: _recent(client, sid, f"{sid}:job-1"))
    _wait_past(first.execution_info.next_run_time, margin=2.0)  # job-1 outlives two due times
    ended = datetime.now(timezone.utc)
    _end_job(client, f"{sid}:job-1")
    after = wait_for(lambda: _recent(client, sid, f"{sid}:job-2"))
    # The due times missed while job-1 ran are lost: job-2 is made at a later recurrence, so the
    # next one is still ahead (made from a stale due time, it would already be in the past).
    assert after.execution_info.next_run_time > ended
    assert _jobs(client, sid) == [f"{sid}:job-1", f"{sid}:job-2"]
    client.begin_delete_job_schedule(sid, polling_interval=0.05).result(timeout=10)


def test_schedules_survive_a_crash_and_resume(
    fast: LocalBatch, client: BatchClient, azurite: Azurite
) -> None:
    """The last test on the module's localbatch: it SIGKILLs it and restarts it on its port."""
    running, waiting = unique("kept"), unique("due")
    client.create_job_schedule(
        bm.BatchJobScheduleCreateOptions(
            id=running,
            schedule=bm.BatchJobScheduleConfiguration(recurrence_interval=SECOND),
            job_specification=_spec(),
        )
    )
    wait_for(lambda: _recent(client, running, f"{running}:job-1"))
    until = datetime.now(timezone.utc) + timedelta(seconds=3)
    client.create_job_schedule(
        bm.BatchJobScheduleCreateOptions(
            id=waiting,
            schedule=bm.BatchJobScheduleConfiguration(do_not_run_until=until),
            job_specification=_spec(),
        )
    )
    fast.process.kill()
    again = start_localbatch(
        fast.data_dir,
        azurite,
        account_key=fast.account_key,
        port=fast.process.port,
        extra_args=["--job-schedule-min-interval", "0.5"],
    )
    try:
        kept = client.get_job_schedule(running)
        assert kept.state == "active" and kept.execution_info.recent_job.id == f"{running}:job-1"
        _end_job(client, f"{running}:job-1")
        wait_for(lambda: _recent(client, running, f"{running}:job-2"))  # numbering goes on
        wait_for(lambda: _recent(client, waiting, f"{waiting}:job-1"), timeout=15)  # its timer too
        assert datetime.now(timezone.utc) >= until
    finally:
        again.process.stop()


@pytest.mark.skipif(not OLD_PYTHON, reason="set OLD_AZURE_BATCH_PYTHON to a python with azure-batch==14.2.0")
def test_job_scheduler_sample_on_azure_batch_14(localbatch: LocalBatch) -> None:
    """azure-batch-samples' sample4_job_scheduler flow, on the previous SDK generation."""
    sid = unique("JobScheduler")
    run = subprocess.run(
        [str(OLD_PYTHON), str(SAMPLE), localbatch.url, localbatch.account_name, sid],
        env={**os.environ, "BATCH_ACCOUNT_KEY": localbatch.account_key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line.split("\t") for line in run.stdout.splitlines()]
    job_id = f"{sid}:job-1"
    assert ["job", job_id] in lines
    [pool] = [line for line in lines if line[0] == "pool"]
    assert pool[1].startswith("JobScheduler_") and pool[2] == "JMComplete"
    assert ["task", "JobManagerTask", "completed", "0"] in lines
    assert ["schedule", "active", "True"] in lines  # the next run, 10 minutes on
    assert ["deleted", sid] in lines
