"""A job's own tasks: the job manager task, and the job preparation and release tasks.

The contract (Batch's, from the REST spec's ``BatchJobManagerTask``, ``BatchJobPreparationTask``
and ``BatchJobReleaseTask``):

* **Job manager**: added as a task of the job when the job is created, so it is the job's oldest
  task and scheduled first. ``runExclusive`` (default true) holds every slot of its node while it
  runs (locally: its row takes the pool's ``taskSlotsPerNode`` slots). ``killJobOnCompletion``
  (default true): when it completes, the job is terminated with reason ``JMComplete``.
* **Preparation**: runs on a node before the first task of the job there (the task is
  ``preparing`` meanwhile, its slots held), in ``workitems/<job>/job-1/<id>`` (id default
  ``jobpreparation``), retried up to its ``maxTaskRetryCount``. With ``waitForSuccess`` (default
  true) the job's tasks wait for it; if it fails, the waiting tasks go back to ``active`` and
  the job's tasks are never scheduled to that node again (other jobs still use it). Without
  ``waitForSuccess`` tasks start at once and its failure changes nothing. Tasks see
  ``AZ_BATCH_JOB_PREP_DIR`` and ``AZ_BATCH_JOB_PREP_WORKING_DIR``. A multi-instance task waits
  the same way for the preparation task on every node it takes (:meth:`JobTasks.prepare_nodes`).
* **Release**: when the job ends (terminate, completion, delete), it runs on every node that ran
  the preparation task (id default ``jobrelease``, ``maxWallClockTime`` default 15 minutes); the
  job stays ``terminating`` (or ``deleting``) until every release has ended. A preparation task
  still running then is ended first.
* ``GET /jobs/{id}/jobpreparationandreleasetaskstatus`` lists, per node, both execution infos;
  409 ``JobPreparationTaskOrReleaseTaskNotSpecified`` for a job that has neither.

Not simulated: ``rerunOnNodeRebootAfterSuccess`` (a local reboot keeps the node's record),
``allowLowPriorityNode``, ``retentionTime``. Execution state lives in the job document
(``_prep``, ``_release``: node id -> execution info); everything runs on the loop thread.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from localbatch import errors, taskstate
from localbatch.errors import BatchError
from localbatch.models import TaskSpec, iso, parse_duration, task_spec_from_json, utcnow
from localbatch.node import Execution, Outcome, node_root, task_dir

if TYPE_CHECKING:
    from localbatch.pools import NodeRuntime
    from localbatch.scheduler import Service
    from localbatch.store import TaskRow

log = logging.getLogger(__name__)

PREP_ID = "jobpreparation"
RELEASE_ID = "jobrelease"
RELEASE_WALL_CLOCK = timedelta(minutes=15)
_MANAGER_TASK_KEYS = (
    "id",
    "displayName",
    "commandLine",
    "resourceFiles",
    "outputFiles",
    "environmentSettings",
    "constraints",
    "requiredSlots",
    "userIdentity",
)


def _prep_id(job: dict[str, Any]) -> str:
    return str(job["jobPreparationTask"].get("id") or PREP_ID)


def _release_id(job: dict[str, Any]) -> str:
    return str(job["jobReleaseTask"].get("id") or RELEASE_ID)


def _spec(task: dict[str, Any], job: dict[str, Any], wall_clock: timedelta | None) -> TaskSpec:
    spec = task_spec_from_json(task, job)
    if spec.max_wall_clock is None and wall_clock is not None:
        spec = dataclasses.replace(spec, max_wall_clock=wall_clock)
    return spec


def _done_info(info: dict[str, Any], outcome: Outcome) -> None:
    info.update(state="completed", endTime=iso(outcome.end_time))
    info["result"] = "success" if outcome.succeeded else "failure"
    if outcome.exit_code is not None:
        info["exitCode"] = outcome.exit_code
    if outcome.failure is not None:
        info["failureInfo"] = outcome.failure


class JobTasks:
    """Job manager, preparation and release tasks of every job (see module docstring)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        # (job key, node id) -> the preparation or release execution running there now.
        self._preps: dict[tuple[str, str], Execution] = {}
        self._releases: dict[tuple[str, str], Execution] = {}
        # (job key, node id) -> tasks waiting for the preparation task there: (seq, slots).
        self._waiting: dict[tuple[str, str], list[tuple[int, int]]] = {}

    # ------------------------------------------------------------------ job manager

    def job_created(self, job: dict[str, Any]) -> None:
        """Add the job manager task of a new job as its first task."""
        jm = job.get("jobManagerTask")
        if not jm:
            return
        task = {k: jm[k] for k in _MANAGER_TASK_KEYS if jm.get(k) is not None}
        pool = self.service.pools.get(self.service.pool_of_job(job).lower())
        if jm.get("runExclusive", True) and pool is not None:
            task["requiredSlots"] = int(pool["taskSlotsPerNode"])
        self.service.add_tasks(job, [task])

    def task_completed(self, key: str, task_id: str) -> None:
        """A task of the job completed: if it is the job manager, maybe terminate the job."""
        job = self.service.jobs.get(key)
        jm = (job or {}).get("jobManagerTask")
        if jm and str(jm["id"]).lower() == task_id.lower() and jm.get("killJobOnCompletion", True):
            self.service._terminate(key, "JMComplete")

    # ------------------------------------------------------------------ preparation

    def refuses(self, key: str, node_id: str) -> bool:
        """Whether the job's tasks may not go to this node (its preparation task failed there)."""
        job = self.service.jobs.get(key)
        prep = (job or {}).get("jobPreparationTask")
        if not prep or not prep.get("waitForSuccess", True):
            return False
        info = (job or {}).get("_prep", {}).get(node_id)
        return bool(info and info.get("result") == "failure")

    def prepare(self, row: TaskRow, node: NodeRuntime) -> bool:
        """Before ``row`` starts on ``node``: run the job's preparation task there if it has not.

        True when the task must wait for it (it is then ``preparing``, its slots held).
        """
        job = self.service.jobs.get(row.job)
        prep = (job or {}).get("jobPreparationTask")
        if job is None or not prep:
            return False
        if self._ensure_prep(job, node) or not prep.get("waitForSuccess", True):
            return False
        node.used += row.slots
        taskstate.move(self.service.store, row, "preparing", node_id=node.id)
        self._waiting.setdefault((row.job, node.id), []).append((row.seq, row.slots))
        return True

    def prepare_nodes(self, row: TaskRow, nodes: list[NodeRuntime]) -> bool:
        """Before multi-instance task ``row`` starts on ``nodes``: run the job's preparation task on
        each that has not run it. True when the task must wait for them (``waitForSuccess``); the
        caller holds the nodes and hears of each end through ``MultiInstance.prepared``."""
        job = self.service.jobs.get(row.job)
        prep = (job or {}).get("jobPreparationTask")
        if job is None or not prep:
            return False
        done = [self._ensure_prep(job, node) for node in nodes]
        return not all(done) and bool(prep.get("waitForSuccess", True))

    def prepared(self, key: str, node_id: str) -> bool:
        """Whether the job's preparation task has ended on this node (or the job has none)."""
        job = self.service.jobs.get(key)
        if job is None or not job.get("jobPreparationTask"):
            return True
        info = job.get("_prep", {}).get(node_id)
        return bool(info and info["state"] == "completed")

    def _ensure_prep(self, job: dict[str, Any], node: NodeRuntime) -> bool:
        """Start the preparation task on ``node`` unless it ran or runs there; whether it has ended."""
        info = job.setdefault("_prep", {}).get(node.id)
        if info is not None and info["state"] == "completed":
            return True
        if info is None or (job["id"].lower(), node.id) not in self._preps:
            self._start_prep(job, node)
        return False

    def task_environment(self, job: dict[str, Any], node: NodeRuntime) -> dict[str, str]:
        """``AZ_BATCH_JOB_PREP_*`` for a task of a job with a preparation task."""
        if not job.get("jobPreparationTask"):
            return {}
        directory = self._directory(job, node.id, _prep_id(job))
        return {
            "AZ_BATCH_JOB_PREP_DIR": str(directory),
            "AZ_BATCH_JOB_PREP_WORKING_DIR": str(directory / "wd"),
        }

    def _directory(self, job: dict[str, Any], node_id: str, task_id: str) -> Path:
        return task_dir(node_root(self.service.config.data_dir, node_id), job["id"], task_id)

    def _execution(self, job: dict[str, Any], node: NodeRuntime, task_id: str, spec: TaskSpec) -> Execution:
        return taskstate.execution(self.service, job, node, task_id, spec)

    def _start_prep(self, job: dict[str, Any], node: NodeRuntime) -> None:
        key = job["id"].lower()
        task_id = _prep_id(job)
        rel = f"workitems/{job['id']}/job-1/{task_id}"
        info = {"startTime": iso(utcnow()), "state": "running", "retryCount": 0, "taskRootDirectory": rel}
        job["_prep"][node.id] = info
        self.service.store.put_job(job)
        spec = _spec(job["jobPreparationTask"], job, None)
        self._preps[(key, node.id)] = self._execution(job, node, task_id, spec)
        self.service._spawn(self._run_prep(key, node, info, spec))

    async def _run_prep(self, key: str, node: NodeRuntime, info: dict[str, Any], spec: TaskSpec) -> None:
        where = (key, node.id)
        outcome = await self._preps[where].run()
        while not outcome.succeeded and outcome.retryable and info["retryCount"] != spec.max_retries:
            info["retryCount"] += 1
            info["lastRetryTime"] = iso(utcnow())
            job = self.service.jobs.get(key)
            if job is None:
                break
            self._preps[where] = self._execution(job, node, _prep_id(job), spec)
            outcome = await self._preps[where].run()
        self._preps.pop(where, None)
        _done_info(info, outcome)
        job = self.service.jobs.get(key)
        if job is not None:
            self.service.store.put_job(job)
        self._release_waiting(key, node, outcome.succeeded)
        self.service.multi.prepared(key, node)
        self.service._maybe_complete_job(key)
        self.service.wake()

    def _release_waiting(self, key: str, node: NodeRuntime, succeeded: bool) -> None:
        """The tasks that waited for the preparation task start, or go back to ``active``."""
        job = self.service.jobs.get(key)
        for seq, slots in self._waiting.pop((key, node.id), []):
            node.used -= slots
            row = self.service.store.get_task_by_seq(seq)
            if row is None or row.state != "preparing":
                continue
            fits = self.service.nodes.get(node.id) is node and node.schedulable
            if succeeded and fits and job is not None and job["state"] == "active":
                self.service._start_task(row, node)
                continue
            taskstate.move(self.service.store, row, "active", node_id=None)

    # ------------------------------------------------------------------ release

    def release(self, key: str) -> bool:
        """The job is ending: run its release tasks (once per node); True once all have ended."""
        job = self.service.jobs.get(key)
        if job is None:
            return True
        for (job_key, _node), execution in list(self._preps.items()):
            if job_key == key:
                execution.end("JobTerminated")
        if not job.get("jobReleaseTask"):
            return True
        if any(job_key == key for job_key, _ in self._preps):
            return False  # a preparation task is ending: its end calls back
        done = job.setdefault("_release", {})
        nodes = [n for n in job.get("_prep", {}) if n in self.service.nodes]
        for node_id in nodes:
            info = done.get(node_id)
            if info is None or (info["state"] != "completed" and (key, node_id) not in self._releases):
                self._start_release(job, self.service.nodes[node_id])
        return all(done[n]["state"] == "completed" for n in nodes)

    def _start_release(self, job: dict[str, Any], node: NodeRuntime) -> None:
        key = job["id"].lower()
        task_id = _release_id(job)
        release = job["jobReleaseTask"]
        rel = f"workitems/{job['id']}/job-1/{task_id}"
        info = {"startTime": iso(utcnow()), "state": "running", "taskRootDirectory": rel}
        job["_release"][node.id] = info
        self.service.store.put_job(job)
        limit = release.get("maxWallClockTime")
        spec = _spec(
            {"commandLine": release["commandLine"], **release, "constraints": {"maxTaskRetryCount": 0}},
            job,
            parse_duration(limit) if limit else RELEASE_WALL_CLOCK,
        )
        execution = self._execution(job, node, task_id, spec)
        execution.env.update(self.task_environment(job, node))  # as every task but the preparation
        self._releases[(key, node.id)] = execution
        self.service._spawn(self._run_release(key, node.id, info))

    async def _run_release(self, key: str, node_id: str, info: dict[str, Any]) -> None:
        outcome = await self._releases[(key, node_id)].run()
        self._releases.pop((key, node_id), None)
        _done_info(info, outcome)
        job = self.service.jobs.get(key)
        if job is not None:
            self.service.store.put_job(job)
        self.service._maybe_complete_job(key)

    def stop(self) -> None:
        for execution in [*self._preps.values(), *self._releases.values()]:
            execution.end("ServiceShutdown")

    # ------------------------------------------------------------------ status

    def status(self, base: str, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The job's preparation and release task status per node, as Batch lists it."""
        if not job.get("jobPreparationTask") and not job.get("jobReleaseTask"):
            raise _not_specified()
        pool_id = self.service.pool_of_job(job)
        preps: dict[str, Any] = job.get("_prep", {})
        releases: dict[str, Any] = job.get("_release", {})
        out = []
        for node_id in sorted(preps):
            node_url = f"{base}/pools/{quote(pool_id)}/nodes/{node_id}"
            entry: dict[str, Any] = {"poolId": pool_id, "nodeId": node_id, "nodeUrl": node_url}
            for name, infos in (
                ("jobPreparationTaskExecutionInfo", preps),
                ("jobReleaseTaskExecutionInfo", releases),
            ):
                if node_id in infos:
                    info = dict(infos[node_id])
                    info["taskRootDirectoryUrl"] = f"{node_url}/files/{info['taskRootDirectory']}"
                    entry[name] = info
            out.append(entry)
        return out


def _not_specified() -> BatchError:
    return errors.conflict(
        "JobPreparationTaskOrReleaseTaskNotSpecified",
        "The specified job has neither a job preparation task nor a job release task.",
    )
