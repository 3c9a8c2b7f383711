"""Auto pools: pools the service creates for a job (or a job schedule) and deletes when it ends.

The contract (Batch's, from ``BatchAutoPoolSpecification`` in the REST spec):

* a job whose ``poolInfo`` holds an ``autoPoolSpecification`` gets a pool made from its ``pool``
  specification when the job is created; its id is ``<autoPoolIdPrefix>_<GUID>`` (the GUID alone
  without a prefix), shown in the job's ``executionInfo.poolId`` (``poolInfo`` stays as given).
* ``poolLifetimeOption`` ``job``: the pool is the job's alone and is deleted when the job
  completes or is deleted. ``jobschedule``: the pool is made with the schedule's first job,
  shared by the schedule's jobs, and deleted when the schedule completes or is deleted; valid only
  in a job schedule's ``jobSpecification`` (400 ``InvalidPropertyValue`` on a plain job).
* ``keepAlive`` true: the pool is kept when its lifetime ends (delete it yourself).

The pool specification is validated as a pool add is, with the service's node limits.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from localbatch import errors, models
from localbatch.errors import BatchError

if TYPE_CHECKING:
    from localbatch.scheduler import Service

log = logging.getLogger(__name__)

SPEC = "poolInfo.autoPoolSpecification"


def _spec(job: dict[str, Any]) -> dict[str, Any] | None:
    spec = (job.get("poolInfo") or {}).get("autoPoolSpecification")
    return spec if isinstance(spec, dict) else None


class AutoPools:
    """Creation and deletion of auto pools (see module docstring)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def pool_for(self, body: dict[str, Any]) -> str:
        """The id of the pool a new job runs on: ``poolInfo.poolId``, or its auto pool (made now)."""
        spec = _spec(body)
        if spec is None:
            return str(body["poolInfo"]["poolId"])
        lifetime = spec["poolLifetimeOption"]
        schedule_id = body.get("_scheduleId")
        if lifetime == "jobschedule":
            if not schedule_id:
                raise errors.invalid_property(
                    f"{SPEC}.poolLifetimeOption",
                    lifetime,
                    "valid only in a job schedule's jobSpecification",
                )
            return self._schedule_pool(str(schedule_id), spec)
        return self._create(spec)

    def _schedule_pool(self, schedule_id: str, spec: dict[str, Any]) -> str:
        schedule = self.service.schedules.docs.get(schedule_id.lower())
        pool_id = (schedule or {}).get("_autoPoolId")
        pool = self.service.pools.get(str(pool_id).lower()) if pool_id else None
        if pool is not None and pool["state"] != "deleting":
            return str(pool_id)
        pool_id = self._create(spec)
        if schedule is not None:
            schedule["_autoPoolId"] = pool_id
            self.service.store.put_job_schedule(schedule)
        return pool_id

    def _create(self, spec: dict[str, Any]) -> str:
        prefix = spec.get("autoPoolIdPrefix")
        pool_id = f"{prefix}_{uuid.uuid4()}" if prefix else str(uuid.uuid4())
        body = {**(spec.get("pool") or {}), "id": pool_id}
        try:
            body = models.validate_pool(body, self.service.config.max_nodes_per_pool)
        except BatchError as exc:
            exc.values = [(k, f"{SPEC}.pool.{v}" if k == "PropertyName" else v) for k, v in exc.values]
            raise
        self.service.create_pool(body)
        log.info("created auto pool %s", pool_id)
        return pool_id

    def job_ended(self, job: dict[str, Any]) -> None:
        """A job completed or was deleted: delete its auto pool if its lifetime is the job's."""
        spec = _spec(job)
        if spec is not None and spec["poolLifetimeOption"] == "job":
            self._end(spec, job["executionInfo"].get("poolId"))

    def schedule_ended(self, schedule: dict[str, Any]) -> None:
        """A job schedule completed or was deleted: delete the auto pool its jobs shared."""
        spec = _spec(schedule.get("jobSpecification") or {})
        if spec is not None and spec["poolLifetimeOption"] == "jobschedule":
            self._end(spec, schedule.get("_autoPoolId"))

    def _end(self, spec: dict[str, Any], pool_id: str | None) -> None:
        if spec.get("keepAlive") or not pool_id:
            return
        pool = self.service.pools.get(pool_id.lower())
        if pool is not None and pool["state"] != "deleting":
            log.info("deleting auto pool %s: its lifetime ended", pool_id)
            self.service.delete_pool(pool_id)
