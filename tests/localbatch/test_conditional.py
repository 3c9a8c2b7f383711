"""Conditional requests through the official SDK (304 on reads, 412 ConditionNotMet on writes),
and PUT replacing / PATCH merging a job's updatable properties."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError

from tests.localbatch.conftest import RawBatch, new_job, unique, wait_task_completed

HOUR = dt.timedelta(hours=1)


def _not_modified(call: Callable[[], object]) -> None:
    """The call is answered 304 (the SDK raises for it, as for any status outside 2xx)."""
    with pytest.raises(HttpResponseError) as caught:
        call()
    assert caught.value.status_code == 304


def _condition_not_met(caught: pytest.ExceptionInfo[HttpResponseError]) -> None:
    assert caught.value.status_code == 412 and caught.value.error is not None
    assert caught.value.error.code == "ConditionNotMet"


def test_pool_conditions(client: BatchClient, raw: RawBatch) -> None:
    pool_id = unique("cond")
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=0))
    pool = client.get_pool(pool_id)
    etag, modified = pool.etag, pool.last_modified
    # Reads: an unchanged pool is 304 (If-None-Match, If-Modified-Since); a changed one is served.
    _not_modified(lambda: client.get_pool(pool_id, etag=etag, match_condition=MatchConditions.IfModified))
    _not_modified(lambda: client.get_pool(pool_id, if_modified_since=modified))
    assert client.get_pool(pool_id, if_modified_since=modified - HOUR).id == pool_id
    assert client.get_pool(pool_id, etag=etag, match_condition=MatchConditions.IfNotModified).id == pool_id
    # Writes: a stale ETag or a change since the date is 412, and nothing changes.
    patch = bm.BatchPoolUpdateOptions(metadata=[bm.BatchMetadataItem(name="k", value="v")])
    with pytest.raises(ResourceModifiedError) as caught:
        client.update_pool(
            pool_id, patch, etag="0x8D0000000000000", match_condition=MatchConditions.IfNotModified
        )
    _condition_not_met(caught)
    with pytest.raises(HttpResponseError) as caught:
        client.update_pool(pool_id, patch, if_unmodified_since=modified - HOUR)
    _condition_not_met(caught)
    assert client.get_pool(pool_id).etag == etag
    client.update_pool(pool_id, patch, etag=etag, match_condition=MatchConditions.IfNotModified)
    changed = client.get_pool(pool_id)
    assert changed.etag != etag and [m.name for m in changed.metadata or []] == ["k"]
    # PATCH merges: what it gives replaces (on an empty pool, even its size), the rest stays.
    client.update_pool(pool_id, bm.BatchPoolUpdateOptions(display_name="renamed", task_slots_per_node=3))
    merged = client.get_pool(pool_id)
    assert (merged.display_name, merged.task_slots_per_node) == ("renamed", 3)
    assert [m.name for m in merged.metadata or []] == ["k"]
    changed = merged
    # The old ETag no longer matches: a read with it is served, a delete with it is refused.
    assert (
        client.get_pool(pool_id, etag=etag, match_condition=MatchConditions.IfModified).etag == changed.etag
    )
    with pytest.raises(ResourceModifiedError) as caught:
        client.begin_delete_pool(pool_id, etag=etag, match_condition=MatchConditions.IfNotModified)
    _condition_not_met(caught)
    # A date that is not an HTTP date is refused, naming the header.
    status, err, _ = raw.send("GET", f"/pools/{pool_id}", headers={"If-Modified-Since": "yesterday"})
    assert status == 400 and err is not None and err["code"] == "InvalidHeaderValue"
    assert {"key": "HeaderName", "value": "If-Modified-Since"} in err["values"]
    status, _, headers = raw.send(
        "HEAD", f"/pools/{pool_id}", headers={"If-None-Match": f'"{changed.etag}", "x"'}
    )
    assert status == 304 and headers["ETag"] == changed.etag
    client.begin_delete_pool(pool_id, etag=changed.etag, match_condition=MatchConditions.IfNotModified)


def test_job_task_and_file_conditions_and_put_replaces(client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(
        client,
        shared_pool,
        priority=5,
        allow_task_preemption=True,
        constraints=bm.BatchJobConstraints(max_task_retry_count=3, max_wall_clock_time=dt.timedelta(hours=5)),
    )
    # A pool with nodes keeps what only an empty pool may change.
    with pytest.raises(HttpResponseError) as caught:
        client.update_pool(shared_pool, bm.BatchPoolUpdateOptions(vm_size="standard_e64s_v5"))
    assert caught.value.error is not None and caught.value.error.code == "PropertyCannotBeUpdated"
    assert client.get_pool(shared_pool).vm_size == "standard_d2s_v5"
    # PATCH merges: what it leaves out stays.
    client.update_job(job_id, bm.BatchJobUpdateOptions(metadata=[bm.BatchMetadataItem(name="a", value="1")]))
    job = client.get_job(job_id)
    assert (job.priority, job.allow_task_preemption, job.constraints.max_task_retry_count) == (5, True, 3)
    # PUT replaces: what it leaves out is reset to its default (412 first if the ETag is stale).
    replace = bm.BatchJob(pool_info=bm.BatchPoolInfo(pool_id=shared_pool), priority=7)
    with pytest.raises(ResourceModifiedError) as caught:
        client.replace_job(
            job_id, replace, etag="0x8D0000000000001", match_condition=MatchConditions.IfNotModified
        )
    _condition_not_met(caught)
    client.replace_job(job_id, replace, etag=job.etag, match_condition=MatchConditions.IfNotModified)
    job = client.get_job(job_id)
    assert (job.priority, job.allow_task_preemption, job.metadata) == (7, False, [])
    assert job.constraints.max_task_retry_count == 0 and job.constraints.max_wall_clock_time > dt.timedelta(
        days=999
    )
    _not_modified(lambda: client.get_job(job_id, etag=job.etag, match_condition=MatchConditions.IfModified))
    # Tasks: a read with If-Unmodified-Since in the past is 412; delete with a stale ETag keeps the task.
    limited = bm.BatchTaskConstraints(max_task_retry_count=4)
    client.create_task(
        job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/sh -c 'echo hi'", constraints=limited)
    )
    task = wait_task_completed(client, job_id, "t")
    # PUT task replaces: constraints left out are the defaults again (the job's retry count: 0).
    assert task.constraints is not None and task.constraints.max_task_retry_count == 4
    client.replace_task(job_id, "t", bm.BatchTask())
    task = client.get_task(job_id, "t")
    assert task.constraints is not None and task.constraints.max_task_retry_count == 0
    with pytest.raises(HttpResponseError) as caught:
        client.get_task(job_id, "t", if_unmodified_since=task.last_modified - HOUR)
    _condition_not_met(caught)
    with pytest.raises(ResourceModifiedError) as caught:
        client.delete_task(
            job_id, "t", etag="0x8D0000000000002", match_condition=MatchConditions.IfNotModified
        )
    _condition_not_met(caught)
    # Files: If-Modified-Since at the file's own time is 304; an hour before, the file is served.
    old = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert b"".join(client.download_task_file(job_id, "t", "stdout.txt", if_modified_since=old)) == b"hi\n"
    now = dt.datetime.now(dt.UTC)
    _not_modified(
        lambda: b"".join(client.download_task_file(job_id, "t", "stdout.txt", if_modified_since=now))
    )
    client.delete_task(job_id, "t", etag=task.etag, match_condition=MatchConditions.IfNotModified)
    assert not list(client.list_tasks(job_id))


def test_job_schedule_conditions(client: BatchClient) -> None:
    sid = unique("condsched")
    never = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    client.create_job_schedule(
        bm.BatchJobScheduleCreateOptions(
            id=sid,
            schedule=bm.BatchJobScheduleConfiguration(do_not_run_until=never),
            job_specification=bm.BatchJobSpecification(pool_info=bm.BatchPoolInfo(pool_id="nopool")),
        )
    )
    schedule = client.get_job_schedule(sid)
    etag = schedule.etag
    _not_modified(lambda: client.get_job_schedule(sid, etag=etag, match_condition=MatchConditions.IfModified))
    patch = bm.BatchJobScheduleUpdateOptions(metadata=[bm.BatchMetadataItem(name="k", value="v")])
    with pytest.raises(ResourceModifiedError) as caught:
        client.update_job_schedule(
            sid, patch, etag="0x8D0000000000000", match_condition=MatchConditions.IfNotModified
        )
    _condition_not_met(caught)
    assert client.get_job_schedule(sid).etag == etag
    client.update_job_schedule(sid, patch, etag=etag, match_condition=MatchConditions.IfNotModified)
    assert client.get_job_schedule(sid).etag != etag
    client.begin_delete_job_schedule(sid, polling_interval=0.05).result(timeout=10)
