"""The service: pools, simulated nodes, jobs and the task scheduler.

All state changes happen on the event-loop thread (request handlers and
scheduler coroutines), so no locks are needed; SQLite calls are short.
Process execution, downloads and uploads never block the loop (see
:mod:`localbatch.node`).

Scheduling: a single coroutine waits on an :class:`asyncio.Event` that is set
whenever tasks are added, slots free up or dependencies may have changed; a
pass assigns the oldest runnable tasks of each pool's active jobs to nodes
with free slots (spread across nodes). Dependencies: a task with
``dependsOn`` is stored ``blocked`` and released when all the tasks it names
completed with a dependency action of ``satisfy`` (success, by default).

Lifecycle rules follow the service: a failed task (non-zero exit) is retried
up to ``maxTaskRetryCount`` (-1 = forever); resource-file and upload errors
are not retried; ``onTaskFailure=performexitoptionsjobaction`` and
``onAllTasksComplete=terminatejob`` end the job; tasks running on a node
that goes away (pool delete/resize, server restart, reboot, preemption, an
unusable node) or of a job disabled with ``requeue`` are requeued
(``requeueCount`` + 1). Pools and nodes live in :mod:`localbatch.pools`,
autoscale in :mod:`localbatch.autoscaling`, job schedules in :mod:`localbatch.jobschedules`, job
manager/preparation/release tasks in :mod:`localbatch.jobtasks`, auto pools in
:mod:`localbatch.autopools`, the weather in
:mod:`localbatch.weather` (under it a picked task may wait ``task_latency``
before it runs, and task counts may lag).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from localbatch import (
    autopools,
    autoscaling,
    errors,
    jobschedules,
    jobtasks,
    multiinstance,
    storage,
    taskstate,
    weather,
)
from localbatch.containers import refusal as container_refusal
from localbatch.errors import BatchError
from localbatch.etags import new_etag
from localbatch.models import (
    MAX_WALL_CLOCK_DEFAULT,
    JobState,
    NodeState,
    TaskSpec,
    TaskState,
    iso,
    parse_duration,
    task_spec_from_json,
    utcnow,
)
from localbatch.node import (
    MAX_TIMER_SECONDS,
    Execution,
    Outcome,
    failure_info,
    kill_orphaned_group,
    node_root,
    task_dir,
)
from localbatch.pools import NodeRuntime, PoolsAndNodes
from localbatch.store import Store, TaskRow

__all__ = ["NodeRuntime", "RunningTask", "Service", "ServiceConfig", "TaskRow", "new_etag"]

log = logging.getLogger(__name__)

DEPENDENCY_DEBOUNCE_SECONDS = 0.05
# A task ended for one of these reasons goes back to the queue with requeueCount + 1, as Batch does.
REQUEUE_REASONS = frozenset(
    {"NodeRemoved", "NodePreempted", "NodeUnusable", "NodeRestarted", "NodeSchedulingDisabled", "JobDisabled"}
)
MAX_DEPENDENCIES = 100_000


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: Path
    account_name: str
    account_url: str
    auto_storage: storage.AutoStorage | None
    max_nodes_per_pool: int = 64
    autoscale_nodes: int = 1  # unused: autoscale formulas are evaluated (kept for `serve --autoscale-nodes`)
    weather: weather.Weather = weather.CALM
    autoscale_min_interval: float = 300.0  # Batch's minimum autoScaleEvaluationInterval; lower for tests
    schedule_min_interval: float = 60.0  # Batch's minimum recurrenceInterval and startWindow; lower for tests


@dataclass
class RunningTask:
    seq: int
    job: str
    node_id: str
    slots: int
    execution: Execution | multiinstance.MultiExecution
    spec: TaskSpec


_TERMINABLE = frozenset(
    {JobState.ACTIVE.value, JobState.DISABLING.value, JobState.DISABLED.value, JobState.ENABLING.value}
)
# Node states a restart leaves as they are.
_STAY_DOWN = frozenset(
    {
        NodeState.START_TASK_FAILED.value,
        NodeState.PREEMPTED.value,
        NodeState.UNUSABLE.value,
        NodeState.DEALLOCATED.value,
    }
)
# Node states a restart resumes by joining the node again (start task included).
_REJOIN = frozenset(
    {NodeState.CREATING.value, NodeState.STARTING.value, NodeState.REBOOTING.value, NodeState.REIMAGING.value}
)


class Service(PoolsAndNodes):
    """Everything the REST handlers operate on (see module docstring); pools and nodes are
    :class:`~localbatch.pools.PoolsAndNodes`."""

    def __init__(self, store: Store, config: ServiceConfig) -> None:
        self.store = store
        self.config = config
        self.pools: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, NodeRuntime] = {}
        self.running: dict[int, RunningTask] = {}
        self._wake = asyncio.Event()
        self._dirty_jobs: set[str] = set()
        self._last_dep_eval: dict[str, float] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._counts_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self.autoscaler = autoscaling.Autoscaler(self)
        self.schedules = jobschedules.JobSchedules(self)
        self.jobtasks = jobtasks.JobTasks(self)
        self.autopools = autopools.AutoPools(self)
        self.multi = multiinstance.MultiInstance(self)
        # Tasks picked by the scheduler, waiting out the weather's task latency: seq -> (job, node, slots).
        self._dispatching: dict[int, tuple[str, NodeRuntime, int]] = {}
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # set once state is loaded; requests wait for it

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load state, requeue what was running, bring nodes back, start scheduling."""
        now = iso(utcnow())
        for row in self.store.tasks_in_state(TaskState.RUNNING.value):
            if row.pgid and row.node_id:
                marker = self._task_dir_marker(row.node_id, row.job, row.task_id)
                await asyncio.to_thread(kill_orphaned_group, row.pgid, marker)
        requeued = self.store.requeue_running(now, new_etag())
        if requeued:
            log.info("requeued %d task(s) that were running when the service stopped", requeued)
        for doc in self.store.load_docs("pools"):
            self.pools[doc["id"].lower()] = doc
        for doc in self.store.load_docs("jobs"):
            self.jobs[doc["id"].lower()] = doc
            if doc["usesTaskDependencies"]:
                self._dirty_jobs.add(doc["id"].lower())
        for doc in self.store.load_docs("nodes"):
            pool = self.pools.get(doc["_poolId"].lower())
            if pool is None:
                self.store.delete_node(doc["id"])
                continue
            node = NodeRuntime(doc, int(pool["taskSlotsPerNode"]))
            self.nodes[node.id] = node
            if doc["state"] == NodeState.LEAVING_POOL.value:
                self._spawn(self._finish_node_removal(node))
                continue
            if doc["state"] in _STAY_DOWN:
                continue
            if doc["state"] == NodeState.DEALLOCATING.value:
                self._set_node_state(node, NodeState.DEALLOCATED)
                continue
            info = doc.get("startTaskInfo") or {}
            if doc["state"] in _REJOIN or (pool.get("startTask") and info.get("state") != "completed"):
                if doc["state"] != NodeState.CREATING.value:
                    self._set_node_state(node, NodeState.STARTING)
                self._spawn(self._join_node(node))
            else:
                self._set_node_state(node, NodeState.IDLE)
        for key, pool in list(self.pools.items()):
            if pool["state"] == "deleting":
                self._spawn(self._finish_pool_delete(key))
        for key, job in list(self.jobs.items()):
            if job["state"] == JobState.DELETING.value:
                self._spawn(self._finish_job_delete(key))
            elif job["state"] == JobState.TERMINATING.value:
                self._maybe_complete_job(key)
            else:
                self._arm_job_wall_clock(job)
        for pool in self.pools.values():
            if pool.get("enableAutoScale") and pool["state"] == "active":
                self.autoscaler.start(pool)
        self.schedules.load()
        self.multi.load()
        self._loop_task = asyncio.create_task(self._schedule_loop())
        self.ready.set()
        self.wake()

    def _task_dir_marker(self, node_id: str, job_key: str, task_id: str) -> str:
        job = self.store.load_job_id(job_key) or job_key
        return f"AZ_BATCH_TASK_DIR={task_dir(node_root(self.config.data_dir, node_id), job, task_id)}"

    async def stop(self) -> None:
        """End every process (state stays: running tasks are requeued at next start)."""
        self._stopping = True
        self.schedules.stop()
        self.jobtasks.stop()
        for rt in list(self.running.values()):
            rt.execution.end("ServiceShutdown")
        for node in self.nodes.values():
            if node.start_execution is not None:
                node.start_execution.end("ServiceShutdown")
        tasks = list(self._background) + self.autoscaler.stop_all()
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    # ------------------------------------------------------------------ jobs

    def job(self, job_id: str) -> dict[str, Any]:
        doc = self.jobs.get(job_id.lower())
        if doc is None:
            raise errors.not_found("Job")
        return doc

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        key = body["id"].lower()
        if key in self.jobs:
            if self.jobs[key]["state"] == JobState.DELETING.value:
                raise errors.conflict("JobBeingDeleted", "The specified job has been marked for deletion.")
            raise errors.exists("Job")
        pool_id = self.autopools.pool_for(body)  # an auto pool is created here
        now = iso(utcnow())
        constraints = {"maxWallClockTime": MAX_WALL_CLOCK_DEFAULT, "maxTaskRetryCount": 0}
        constraints.update(body.get("constraints") or {})
        doc: dict[str, Any] = {
            "priority": 0,
            "maxParallelTasks": -1,
            "allowTaskPreemption": False,
            "usesTaskDependencies": False,
            "onAllTasksComplete": "noaction",
            "onTaskFailure": "noaction",
            **body,
            "constraints": constraints,
            "eTag": new_etag(),
            "lastModified": now,
            "creationTime": now,
            "state": JobState.ACTIVE.value,
            "stateTransitionTime": now,
            "executionInfo": {"startTime": now, "poolId": pool_id},
        }
        self.jobs[key] = doc
        self.store.put_job(doc)
        self._arm_job_wall_clock(doc)
        self.jobtasks.job_created(doc)
        return doc

    def _arm_job_wall_clock(self, job: dict[str, Any]) -> None:
        """Terminate the job (reason ``MaxWallClockTimeExpiry``) when its constraint runs out."""
        limit = (job.get("constraints") or {}).get("maxWallClockTime")
        if not limit or limit == MAX_WALL_CLOCK_DEFAULT or job["state"] != JobState.ACTIVE.value:
            return
        created = datetime.strptime(job["creationTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        remaining = (created + parse_duration(limit) - utcnow()).total_seconds()
        key = job["id"].lower()
        asyncio.get_running_loop().call_later(
            max(0.0, min(remaining, MAX_TIMER_SECONDS)),
            self._job_wall_clock_expired,
            key,
            job["creationTime"],
        )

    def _job_wall_clock_expired(self, key: str, creation_time: str) -> None:
        job = self.jobs.get(key)
        # The same id may belong to a newer job by now: match the creation time too.
        if job is not None and job["creationTime"] == creation_time and job["state"] == JobState.ACTIVE.value:
            self._terminate(key, "MaxWallClockTimeExpiry")
            self.wake()

    def _set_job_state(self, job: dict[str, Any], state: JobState) -> None:
        now = iso(utcnow())
        job["previousState"] = job["state"]
        job["previousStateTransitionTime"] = job["stateTransitionTime"]
        job.update(state=state.value, stateTransitionTime=now, eTag=new_etag(), lastModified=now)
        if state is JobState.COMPLETED:
            job["executionInfo"]["endTime"] = now

    def update_job(self, job_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        job = self.job(job_id)
        self._check_job_writable(job)
        for key in (
            "priority",
            "maxParallelTasks",
            "onAllTasksComplete",
            "onTaskFailure",
            "metadata",
            "allowTaskPreemption",
        ):
            if key in patch and patch[key] is not None:
                job[key] = patch[key]
        if patch.get("constraints"):
            job["constraints"].update(patch["constraints"])
        now = iso(utcnow())
        job.update(eTag=new_etag(), lastModified=now)
        self.store.put_job(job)
        if job["onAllTasksComplete"] == "terminatejob":
            self._check_all_complete(job["id"].lower())
        self.wake()
        return job

    def _check_job_writable(self, job: dict[str, Any]) -> None:
        if job["state"] == JobState.DELETING.value:
            raise errors.conflict("JobBeingDeleted", "The specified job has been marked for deletion.")
        if job["state"] == JobState.TERMINATING.value:
            raise errors.conflict("JobBeingTerminated", "The specified job is being terminated.")
        if job["state"] == JobState.COMPLETED.value:
            raise errors.conflict("JobCompleted", "The specified job is already in a completed state.")

    def terminate_job(self, job_id: str, reason: str = "UserTerminate") -> None:
        job = self.job(job_id)
        self._check_job_writable(job)
        self._terminate(job["id"].lower(), reason)

    def _terminate(self, key: str, reason: str) -> None:
        job = self.jobs[key]
        if job["state"] not in _TERMINABLE:
            return
        self._set_job_state(job, JobState.TERMINATING)
        job["executionInfo"]["terminateReason"] = reason
        self.store.put_job(job)
        # As the service does: running tasks are ended; active tasks stay active and,
        # the job no longer being active, are never scheduled.
        for rt in list(self.running.values()):
            if rt.job == key:
                rt.execution.end("JobTerminated")
        self._maybe_complete_job(key)

    def _maybe_complete_job(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None or job["state"] != JobState.TERMINATING.value:
            return
        if any(rt.job == key for rt in self.running.values()):
            return
        if not self.jobtasks.release(key):  # the job's release tasks run first; their end calls back
            return
        self._set_job_state(job, JobState.COMPLETED)
        self.store.put_job(job)
        self._job_ended(job)

    def _job_ended(self, job: dict[str, Any]) -> None:
        """A job completed or is gone: what depends on its end (its auto pool, its schedule) moves on."""
        self.autopools.job_ended(job)
        self.schedules.job_ended(job)

    def disable_job(self, job_id: str, option: str) -> dict[str, Any]:
        """Disable a job: no new task starts; running ones are requeued, terminated or waited for."""
        job = self.job(job_id)
        state = job["state"]
        if state in (JobState.DISABLING.value, JobState.DISABLED.value):
            raise errors.conflict("JobDisabled", "The specified job is disabled.")
        if state != JobState.ACTIVE.value:
            self._check_job_writable(job)
            raise errors.conflict("JobNotActive", "The specified job is not in active state.")
        key = job["id"].lower()
        self._set_job_state(job, JobState.DISABLING)
        self.store.put_job(job)
        if option != "wait":
            reason = "JobDisabled" if option == "requeue" else "JobDisabledTerminate"
            for rt in list(self.running.values()):
                if rt.job == key:
                    rt.execution.end(reason)
        self._maybe_disabled(key)
        return job

    def _maybe_disabled(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None or job["state"] != JobState.DISABLING.value:
            return
        if any(rt.job == key for rt in self.running.values()):
            return
        self._set_job_state(job, JobState.DISABLED)
        self.store.put_job(job)

    def enable_job(self, job_id: str) -> dict[str, Any]:
        """Enable a disabled job: its tasks are scheduled again."""
        job = self.job(job_id)
        if job["state"] not in (JobState.DISABLING.value, JobState.DISABLED.value):
            self._check_job_writable(job)
            raise errors.conflict("OperationInvalidForCurrentState", "Only a disabled job can be enabled.")
        self._set_job_state(job, JobState.ACTIVE)
        self.store.put_job(job)
        self.wake()
        return job

    def delete_job(self, job_id: str) -> None:
        job = self.job(job_id)
        if job["state"] == JobState.DELETING.value:
            return
        self._set_job_state(job, JobState.DELETING)
        self.store.put_job(job)
        key = job["id"].lower()
        for rt in list(self.running.values()):
            if rt.job == key:
                rt.execution.end("JobDeleted")
        self._spawn(self._finish_job_delete(key))

    async def _finish_job_delete(self, key: str) -> None:
        while any(rt.job == key for rt in self.running.values()) or not self.jobtasks.release(key):
            await asyncio.sleep(0.02)
        job = self.jobs.pop(key, None)
        if job is None:
            return
        self.store.delete_job(job["id"])
        self._job_ended(job)
        roots = [node_root(self.config.data_dir, n.id) / "workitems" / job["id"] for n in self.nodes.values()]
        for root in roots:
            await asyncio.to_thread(shutil.rmtree, root, True)

    def task_counts(self, job_id: str) -> dict[str, Any]:
        """The job's task counts; under weather, a snapshot up to ``task_counts_lag`` seconds old."""
        key = self.job(job_id)["id"].lower()
        lag = self.config.weather.task_counts_lag
        cached = self._counts_cache.get(key)
        if lag > 0 and cached is not None and time.monotonic() - cached[0] < lag:
            return cached[1]
        result = self._task_counts_now(key)
        if lag > 0:
            self._counts_cache[key] = (time.monotonic(), result)
        return result

    def _task_counts_now(self, key: str) -> dict[str, Any]:
        counts = {"active": 0, "running": 0, "completed": 0, "succeeded": 0, "failed": 0}
        slots = dict(counts)
        for state, result, n, s in self.store.task_counts(key):
            bucket = "running" if state in ("running", "preparing") else state
            counts[bucket] += n
            slots[bucket] += int(s or 0)
            if state == "completed":
                which = "succeeded" if result == "success" else "failed"
                counts[which] += n
                slots[which] += int(s or 0)
        return {"taskCounts": counts, "taskSlotCounts": slots}

    # ------------------------------------------------------------------ tasks

    def active_job_for_add(self, job_id: str) -> dict[str, Any]:
        job = self.job(job_id)
        self._check_job_writable(job)
        return job

    def add_tasks(self, job: dict[str, Any], tasks: list[dict[str, Any]]) -> list[tuple[bool, str, str]]:
        """Insert validated tasks in one transaction; return (added, etag, time) per task."""
        key = job["id"].lower()
        now = iso(utcnow())
        rows = []
        etags = []
        for t in tasks:
            etag = new_etag()
            etags.append(etag)
            deps = t.get("dependsOn") or {}
            self.multi.added(key, t)
            rows.append(
                {
                    "id": t["id"],
                    "spec": json.dumps(t, separators=(",", ":")),
                    "time": now,
                    "etag": etag,
                    "blocked": 1 if (deps.get("taskIds") or deps.get("taskIdRanges")) else 0,
                    "slots": int(t.get("requiredSlots") or 1),
                }
            )
        added = self.store.insert_tasks(key, rows)
        if any(added):
            if job["usesTaskDependencies"]:
                self._dirty_jobs.add(key)
            self.wake()
        return [(ok, etag, now) for ok, etag in zip(added, etags, strict=True)]

    def task(self, job_id: str, task_id: str) -> tuple[dict[str, Any], TaskRow]:
        job = self.job(job_id)
        row = self.store.get_task(job["id"].lower(), task_id.lower())
        if row is None:
            raise errors.not_found("Task")
        return job, row

    def terminate_task(self, job_id: str, task_id: str) -> None:
        job, row = self.task(job_id, task_id)
        if row.state == TaskState.COMPLETED.value:
            return
        rt = self.running.get(row.seq)
        if rt is not None:
            rt.execution.end("UserTerminate")
            return
        now = iso(utcnow())
        failure = failure_info("TaskEnded", "The task was ended by a user request")
        taskstate.move(
            self.store,
            row,
            "completed",
            at=now,
            end_time=now,
            result="failure",
            failure=json.dumps(failure),
            dep_ok=0,
        )
        self.jobtasks.task_completed(job["id"].lower(), row.task_id)
        self._after_completion(job["id"].lower(), failed=True, job_action=None)

    def delete_task(self, job_id: str, task_id: str) -> None:
        job, row = self.task(job_id, task_id)
        rt = self.running.get(row.seq)
        if rt is not None:
            rt.execution.end("TaskDeleted")
        self.store.delete_task(row.seq)
        if row.node_id:
            directory = task_dir(node_root(self.config.data_dir, row.node_id), job["id"], row.task_id)
            self._spawn(asyncio.to_thread(shutil.rmtree, directory, True))

    def reactivate_task(self, job_id: str, task_id: str) -> None:
        job, row = self.task(job_id, task_id)
        self._check_job_writable(job)
        if row.state != TaskState.COMPLETED.value or row.result != "failure":
            raise errors.conflict(
                "TaskNotFailed" if row.state == TaskState.COMPLETED.value else "TaskNotCompleted",
                "Only a task that completed with a failure can be reactivated.",
            )
        spec = row.spec_json()
        deps = spec.get("dependsOn") or {}
        taskstate.move(
            self.store,
            row,
            "active",
            start_time=None,
            end_time=None,
            exit_code=None,
            result=None,
            failure=None,
            retry_count=0,
            node_id=None,
            dep_ok=0,
            blocked=1 if (deps.get("taskIds") or deps.get("taskIdRanges")) else 0,
        )
        if job["usesTaskDependencies"]:
            self._dirty_jobs.add(job["id"].lower())
        self.wake()

    # ------------------------------------------------------------------ scheduling

    async def _schedule_loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._schedule_pass()
            except Exception:  # the scheduler must survive any bug: log, keep scheduling
                log.exception("scheduler pass failed")
                await asyncio.sleep(0.1)

    def _schedule_pass(self) -> None:
        self._evaluate_dependencies()
        for pool_key, pool in self.pools.items():
            if pool["state"] != "active":
                continue
            free_nodes = [n for n in self.nodes.values() if n.pool_key == pool_key and n.schedulable]
            free = sum(max(0, n.slots - n.used) for n in free_nodes)
            if free <= 0:
                continue
            jobs = sorted(
                (
                    j
                    for j in self.jobs.values()
                    if j["state"] == JobState.ACTIVE.value and self.pool_of_job(j).lower() == pool_key
                ),
                key=lambda j: -int(j.get("priority") or 0),
            )
            if not jobs:
                continue
            limits = self._parallel_limits(jobs)
            want = free + len(limits) * free + len(self._dispatching)
            want += self.multi.waiting([j["id"].lower() for j in jobs])  # they must not crowd others out
            rows = self.store.runnable([j["id"].lower() for j in jobs], want)
            for row in rows:
                if row.seq in self._dispatching:
                    continue
                if self.multi.is_multi(row):  # whole nodes, numberOfInstances of them
                    if self.multi.dispatch(row, pool, free_nodes):
                        free = sum(max(0, n.slots - n.used) for n in free_nodes)
                    continue
                if row.job in limits:
                    if limits[row.job] <= 0:
                        continue
                    limits[row.job] -= 1
                candidates = [
                    n
                    for n in free_nodes
                    if n.slots - n.used >= row.slots
                    and n.schedulable
                    and not self.jobtasks.refuses(row.job, n.id)
                ]
                if not candidates:
                    continue
                node = max(candidates, key=lambda n: (n.slots - n.used, n.id))
                self._dispatch(row, node)
                free -= row.slots
                if free <= 0:
                    break

    def _parallel_limits(self, jobs: list[dict[str, Any]]) -> dict[str, int]:
        limits: dict[str, int] = {}
        for j in jobs:
            cap = int(j.get("maxParallelTasks") or -1)
            if cap > 0:
                key = j["id"].lower()
                running = sum(1 for rt in self.running.values() if rt.job == key)
                picked = sum(1 for job, _, _ in self._dispatching.values() if job == key)
                limits[key] = cap - running - picked
        return limits

    def _dispatch(self, row: TaskRow, node: NodeRuntime) -> None:
        """Start the task now, or after the weather's task latency (its slots held meanwhile)."""
        if self.jobtasks.prepare(row, node):  # it waits for the job preparation task on that node
            return
        w = self.config.weather
        delay = w.seconds("task_latency", w.task_latency, f"{row.job}/{row.task_id}/{row.retry_count}")
        if delay <= 0:
            self._start_task(row, node)
            return
        node.used += row.slots
        self._dispatching[row.seq] = (row.job, node, row.slots)
        asyncio.get_running_loop().call_later(delay, self._dispatched, row.seq)

    def _dispatched(self, seq: int) -> None:
        picked = self._dispatching.pop(seq, None)
        if picked is None or self._stopping:
            return
        job_key, node, slots = picked
        node.used -= slots
        row = self.store.get_task_by_seq(seq)
        job = self.jobs.get(job_key)
        runnable = row is not None and row.state == TaskState.ACTIVE.value and not row.blocked
        job_active = job is not None and job["state"] == JobState.ACTIVE.value
        node_ok = self.nodes.get(node.id) is node and node.schedulable and node.slots - node.used >= slots
        if row is not None and runnable and job_active and node_ok:
            self._start_task(row, node)
        self.wake()

    def _start_task(self, row: TaskRow, node: NodeRuntime) -> None:
        job = self.jobs[row.job]
        now = iso(utcnow())
        taskstate.move(
            self.store,
            row,
            "running",
            at=now,
            node_id=node.id,
            start_time=now,
            end_time=None,
            result=None,
            failure=None,
        )
        spec = task_spec_from_json(row.spec_json(), job)
        plain = taskstate.execution(self, job, node, row.task_id, spec)
        plain.env.update(self.jobtasks.task_environment(job, node))
        execution = self.multi.execution(row, spec, plain.directory, plain.env) or plain
        # A requeued task starts over, as on a new node: files of the lost run must not be uploaded.
        execution.fresh = row.requeue_count > 0 and row.node_id is None
        seq = row.seq
        execution.on_spawn = lambda pid: self.store.update_task(seq, pgid=pid)
        execution.refusal = container_refusal(row.spec, self.pools.get(node.pool_key))  # no container engine
        rt = RunningTask(row.seq, row.job, node.id, row.slots, execution, spec)
        self.running[row.seq] = rt
        node.used += row.slots
        node.running.add(row.seq)
        self._set_node_state(node, NodeState.RUNNING, persist=False)
        self._spawn(self._run_task(rt))

    async def _run_task(self, rt: RunningTask) -> None:
        try:
            outcome = await rt.execution.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in one execution must not stop the service
            log.exception("task %s failed inside localbatch", rt.seq)
            now = utcnow()
            outcome = Outcome(
                now,
                now,
                None,
                failure_info("InternalError", "localbatch failed to run the task", "servererror"),
            )
        finally:
            node = self.nodes.get(rt.node_id)
            self.running.pop(rt.seq, None)
            if node is not None:
                node.used -= rt.slots
                node.running.discard(rt.seq)
                if not node.running and node.doc["state"] == NodeState.RUNNING.value:
                    self._set_node_state(node, NodeState.IDLE, persist=False)
        if self._stopping:
            return
        self._finish(rt, outcome, self.nodes.get(rt.node_id))
        if node is not None and node.after_tasks and not node.running:
            self._restart_node(node, node.after_tasks)
        self._maybe_disabled(rt.job)
        self.wake()

    def _finish(self, rt: RunningTask, outcome: Outcome, node: NodeRuntime | None) -> None:
        row = self.store.get_task_by_seq(rt.seq)
        job = self.jobs.get(rt.job)
        if row is None or job is None or row.state != TaskState.RUNNING.value:
            return
        now = iso(utcnow())
        if outcome.ended_by in REQUEUE_REASONS:
            taskstate.move(
                self.store,
                row,
                "active",
                at=now,
                node_id=None,
                requeue_count=row.requeue_count + 1,
                last_requeue_time=now,
            )
            return
        if node is not None:
            node.doc["totalTasksRun"] += 1
            if outcome.succeeded:
                node.doc["totalTasksSucceeded"] += 1
        retries = rt.spec.max_retries
        if (
            outcome.retryable
            and not outcome.succeeded
            and job["state"] == JobState.ACTIVE.value
            and (retries == -1 or row.retry_count < retries)
        ):
            taskstate.move(
                self.store,
                row,
                "active",
                at=now,
                exit_code=outcome.exit_code,
                retry_count=row.retry_count + 1,
                last_retry_time=now,
            )
            return
        failed = not outcome.succeeded
        pre = outcome.exit_code is None and outcome.failure is not None and outcome.ended_by is None
        opts = rt.spec.exit_options(outcome.exit_code, failed, pre_processing=pre)
        taskstate.move(
            self.store,
            row,
            "completed",
            at=now,
            start_time=iso(outcome.start_time),
            end_time=iso(outcome.end_time),
            exit_code=outcome.exit_code,
            result="failure" if failed else "success",
            failure=json.dumps(outcome.failure) if outcome.failure else None,
            dep_ok=1 if opts.dependency_action == "satisfy" else 0,
        )
        self.jobtasks.task_completed(rt.job, row.task_id)
        self._after_completion(rt.job, failed, opts.job_action)
        if node is not None:
            self._maybe_lose_node(node, f"{job['id']}/{row.task_id}/{row.retry_count}")

    def _after_completion(self, key: str, failed: bool, job_action: str | None) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        if job["usesTaskDependencies"]:
            self._dirty_jobs.add(key)
        if job["state"] == JobState.ACTIVE.value:
            action = job_action or ("terminate" if failed else "none")
            if failed and job["onTaskFailure"] == "performexitoptionsjobaction" and action == "terminate":
                self._terminate(key, "TaskFailed")
            elif job["onAllTasksComplete"] == "terminatejob":
                self._check_all_complete(key)
        self._maybe_complete_job(key)

    def _check_all_complete(self, key: str) -> None:
        job = self.jobs[key]
        active = job["state"] == JobState.ACTIVE.value
        if active and self.store.count_unfinished(key) == 0 and self.store.task_counts(key):
            self._terminate(key, "AllTasksComplete")

    def _evaluate_dependencies(self) -> None:
        if not self._dirty_jobs:
            return
        now = time.monotonic()
        for key in list(self._dirty_jobs):
            last = self._last_dep_eval.get(key, 0.0)
            if now - last < DEPENDENCY_DEBOUNCE_SECONDS:
                asyncio.get_running_loop().call_later(DEPENDENCY_DEBOUNCE_SECONDS, self.wake)
                continue
            self._dirty_jobs.discard(key)
            self._last_dep_eval[key] = now
            if key not in self.jobs:
                continue
            for seq, spec_text in self.store.blocked_tasks(key):
                deps = json.loads(spec_text).get("dependsOn") or {}
                wanted = {str(t).lower() for t in deps.get("taskIds") or []}
                for rng in deps.get("taskIdRanges") or []:
                    if len(wanted) > MAX_DEPENDENCIES:
                        break
                    wanted.update(str(n) for n in range(int(rng["start"]), int(rng["end"]) + 1))
                if self.store.count_satisfied(key, wanted) == len(wanted):
                    self.store.update_task(seq, blocked=0)

    # ------------------------------------------------------------------ files

    def task_directory(self, job: dict[str, Any], row: TaskRow) -> Path:
        if not row.node_id:
            raise BatchError(
                409,
                "TaskNotStarted" if row.state == "active" else "FileNotFound",
                "The task has not run on a node yet, so it has no files.",
            )
        if row.node_id not in self.nodes:
            # As the service answers once the node that ran the task left the pool.
            raise BatchError(409, "TaskFilesUnavailable", "The node files for the task are not available.")
        return task_dir(node_root(self.config.data_dir, row.node_id), job["id"], row.task_id)

    def node_directory(self, node: NodeRuntime) -> Path:
        return node_root(self.config.data_dir, node.id)

    def pool_of_job(self, job: dict[str, Any]) -> str:
        """The pool the job runs on (its auto pool's id for an auto pool job)."""
        return str(job["executionInfo"].get("poolId") or job["poolInfo"].get("poolId"))
