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
that goes away (pool delete/resize, server restart) are requeued.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from localbatch import autoscaling, errors, storage, weather
from localbatch.errors import BatchError
from localbatch.models import (
    MAX_WALL_CLOCK_DEFAULT,
    JobState,
    NodeState,
    TaskSpec,
    TaskState,
    iso,
    parse_duration,
    start_task_spec_from_json,
    task_spec_from_json,
    utcnow,
)
from localbatch.node import (
    MAX_TIMER_SECONDS,
    Execution,
    Outcome,
    base_environment,
    failure_info,
    kill_orphaned_group,
    node_root,
    task_dir,
)
from localbatch.store import Store, TaskRow

log = logging.getLogger(__name__)

DEPENDENCY_DEBOUNCE_SECONDS = 0.05
# A task ended for one of these reasons goes back to the queue with requeueCount + 1, as Batch does.
REQUEUE_REASONS = frozenset(
    {"NodeRemoved", "NodePreempted", "NodeUnusable", "NodeRestarted", "NodeSchedulingDisabled", "JobDisabled"}
)
# Batch's node deallocation options and what each does with the tasks running on the node.
_END_REASONS = {
    "requeue": "NodeRemoved",
    "terminate": "NodeRemovedTerminate",
}
_COUNT_KEYS = {
    "starttaskfailed": "startTaskFailed",
    "leavingpool": "leavingPool",
    "waitingforstarttask": "waitingForStartTask",
    "upgradingos": "upgradingOS",
}
_COUNTED_STATES = (
    *("creating", "idle", "offline", "preempted", "rebooting", "reimaging", "running", "starting"),
    *("starttaskfailed", "leavingpool", "unknown", "unusable", "waitingforstarttask"),
    *("deallocated", "deallocating", "upgradingos"),
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


@dataclass
class NodeRuntime:
    """A simulated node: its document plus what runs on it now."""

    doc: dict[str, Any]
    slots: int
    used: int = 0
    running: set[int] = field(default_factory=set)
    start_execution: Execution | None = None
    generation: int = 0  # bumped on every state change: a weather timer armed earlier then does nothing
    after_tasks: str | None = None  # "reboot"/"reimage" once its running tasks complete (taskcompletion)

    @property
    def weather_key(self) -> str:
        """A stable key for weather decisions: pool id and the node's ordinal in it."""
        return f"{self.doc['_poolId']}/{self.doc.get('_ordinal', self.id)}"

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    @property
    def pool_key(self) -> str:
        return str(self.doc["_poolId"]).lower()

    @property
    def schedulable(self) -> bool:
        return (
            self.doc["state"] in (NodeState.IDLE.value, NodeState.RUNNING.value)
            and self.doc.get("schedulingState", "enabled") == "enabled"
            and self.after_tasks is None
        )


@dataclass
class RunningTask:
    seq: int
    job: str
    node_id: str
    slots: int
    execution: Execution
    spec: TaskSpec


_etag_counter = itertools.count()
_TERMINABLE = frozenset(
    {JobState.ACTIVE.value, JobState.DISABLING.value, JobState.DISABLED.value, JobState.ENABLING.value}
)
# Node states a restart leaves as they are.
_STAY_DOWN = frozenset(
    {NodeState.START_TASK_FAILED.value, NodeState.PREEMPTED.value, NodeState.UNUSABLE.value}
)


def new_etag() -> str:
    value = (time.time_ns() // 100 + next(_etag_counter)) & 0xFFFFFFFFFFFFF
    return f"0x8D{value:013X}"


class Service:
    """Everything the REST handlers operate on (see module docstring)."""

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
            if doc["state"] in (NodeState.CREATING.value, NodeState.STARTING.value):
                self._spawn(self._join_node(node))
                continue
            info = doc.get("startTaskInfo") or {}
            if pool.get("startTask") and info.get("state") != "completed":
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
        self._loop_task = asyncio.create_task(self._schedule_loop())
        self.ready.set()
        self.wake()

    def _task_dir_marker(self, node_id: str, job_key: str, task_id: str) -> str:
        job = self.store.load_job_id(job_key) or job_key
        return f"AZ_BATCH_TASK_DIR={task_dir(node_root(self.config.data_dir, node_id), job, task_id)}"

    async def stop(self) -> None:
        """End every process (state stays: running tasks are requeued at next start)."""
        self._stopping = True
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

    # ------------------------------------------------------------------ pools and nodes

    def pool(self, pool_id: str) -> dict[str, Any]:
        doc = self.pools.get(pool_id.lower())
        if doc is None:
            raise errors.not_found("Pool")
        return doc

    def pool_counts(self, pool_key: str) -> tuple[int, int]:
        ded = low = 0
        for n in self.nodes.values():
            if n.pool_key == pool_key:
                if n.doc["isDedicated"]:
                    ded += 1
                else:
                    low += 1
        return ded, low

    def pool_nodes(self, pool_id: str) -> list[NodeRuntime]:
        key = self.pool(pool_id)["id"].lower()
        return [n for n in self.nodes.values() if n.pool_key == key]

    def node(self, pool_id: str, node_id: str) -> NodeRuntime:
        key = self.pool(pool_id)["id"].lower()
        node = self.nodes.get(node_id)
        if node is None or node.pool_key != key:
            raise errors.not_found("Node")
        return node

    def create_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        key = body["id"].lower()
        if key in self.pools:
            if self.pools[key]["state"] == "deleting":
                raise errors.conflict("PoolBeingDeleted", "The specified pool has been marked for deletion.")
            raise errors.exists("Pool")
        now = iso(utcnow())
        doc: dict[str, Any] = {
            "taskSlotsPerNode": 1,
            "targetDedicatedNodes": 0,
            "targetLowPriorityNodes": 0,
            "enableAutoScale": False,
            "enableInterNodeCommunication": False,
            "resizeTimeout": "PT15M",
            "taskSchedulingPolicy": {"nodeFillType": "spread"},
            **body,
            "eTag": new_etag(),
            "lastModified": now,
            "creationTime": now,
            "state": "active",
            "stateTransitionTime": now,
            "allocationState": "steady",
            "allocationStateTransitionTime": now,
        }
        if doc["enableAutoScale"]:
            autoscaling.check_formula(doc["autoScaleFormula"])
            doc["autoScaleEvaluationInterval"] = self._check_interval(doc.get("autoScaleEvaluationInterval"))
        self.pools[key] = doc
        self.store.put_pool(doc)
        self._resize_nodes(doc)
        if doc["enableAutoScale"]:
            self.autoscaler.start(doc)
        return doc

    def _check_interval(self, value: str | None) -> str:
        """An autoScaleEvaluationInterval within Batch's bounds (the minimum is a server option)."""
        if value is None:
            return autoscaling.DEFAULT_INTERVAL
        seconds = parse_duration(value).total_seconds()
        low = self.config.autoscale_min_interval
        if not low <= seconds <= 168 * 3600:
            raise errors.invalid_property(
                "autoScaleEvaluationInterval", value, f"must be between {low:g} seconds and 168 hours"
            )
        return value

    # ------------------------------------------------------------------ autoscale operations

    def enable_autoscale(self, pool_id: str, formula: str | None, interval: str | None) -> dict[str, Any]:
        """Enable (or update) autoscale; evaluates the formula at once, as Batch does."""
        pool = self._active_pool(pool_id)
        if formula is None and not pool.get("enableAutoScale"):
            raise errors.missing_property("autoScaleFormula")
        if formula is not None:
            autoscaling.check_formula(formula)
            pool["autoScaleFormula"] = formula
        if interval is not None or not pool.get("enableAutoScale"):
            pool["autoScaleEvaluationInterval"] = self._check_interval(
                interval or pool.get("autoScaleEvaluationInterval")
            )
        now = iso(utcnow())
        pool.update(enableAutoScale=True, eTag=new_etag(), lastModified=now)
        self.store.put_pool(pool)
        self.autoscaler.start(pool)
        return pool

    def disable_autoscale(self, pool_id: str) -> dict[str, Any]:
        """Disable autoscale; the pool keeps its current targets."""
        pool = self._active_pool(pool_id)
        self.autoscaler.stop(pool["id"].lower())
        for key in ("autoScaleFormula", "autoScaleEvaluationInterval", "autoScaleRun"):
            pool.pop(key, None)
        pool.update(enableAutoScale=False, eTag=new_etag(), lastModified=iso(utcnow()))
        self.store.put_pool(pool)
        return pool

    def evaluate_autoscale(self, pool_id: str, formula: str) -> dict[str, Any]:
        """Evaluate ``formula`` on the pool without applying it (409 unless autoscale is enabled)."""
        pool = self._active_pool(pool_id)
        if not pool.get("enableAutoScale"):
            raise errors.conflict("AutoScaleNotEnabled", "Autoscale is not enabled on the specified pool.")
        return self.autoscaler.run(pool, formula, apply=False)

    def _active_pool(self, pool_id: str) -> dict[str, Any]:
        pool = self.pool(pool_id)
        if pool["state"] == "deleting":
            raise errors.conflict("PoolBeingDeleted", "The specified pool has been marked for deletion.")
        return pool

    def resize_nodes(self, pool: dict[str, Any], deallocation: str) -> None:
        """Resize the pool to its targets, removing nodes per ``deallocation`` (Batch's option)."""
        now = iso(utcnow())
        pool.update(eTag=new_etag(), lastModified=now)
        self._resize_nodes(pool, deallocation)

    def _new_node(self, pool: dict[str, Any], dedicated: bool) -> NodeRuntime:
        seed = f"{pool['id']}/{time.time_ns()}/{os.urandom(8).hex()}"
        node_id = f"tvmps_{hashlib.sha256(seed.encode()).hexdigest()}_{'d' if dedicated else 'p'}"
        now = iso(utcnow())
        vmc = pool.get("virtualMachineConfiguration") or {}
        ordinal = self._next_ordinal(pool)
        delay = self.config.weather.allocation_delay[1] > 0
        doc: dict[str, Any] = {
            "id": node_id,
            "_poolId": pool["id"],
            "_ordinal": ordinal,
            "state": (NodeState.CREATING if delay else NodeState.STARTING).value,
            "schedulingState": "enabled",
            "stateTransitionTime": now,
            "lastBootTime": now,
            "allocationTime": now,
            "ipAddress": "127.0.0.1",
            "affinityId": f"TVM:{node_id}",
            "vmSize": pool["vmSize"],
            "totalTasksRun": 0,
            "totalTasksSucceeded": 0,
            "isDedicated": dedicated,
            "nodeAgentInfo": {"version": "localbatch", "lastUpdateTime": now},
            "virtualMachineInfo": {"imageReference": vmc.get("imageReference") or {}},
        }
        if pool.get("startTask"):
            doc["startTask"] = pool["startTask"]
        node = NodeRuntime(doc, int(pool["taskSlotsPerNode"]))
        self.nodes[node_id] = node
        self.store.put_node(doc)
        root = node_root(self.config.data_dir, node_id)
        for sub in ("startup/wd", "shared", "workitems"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return node

    @staticmethod
    def _next_ordinal(pool: dict[str, Any]) -> int:
        ordinal = int(pool.get("_nodeOrdinal", 0))
        pool["_nodeOrdinal"] = ordinal + 1
        return ordinal

    def _resize_nodes(self, pool: dict[str, Any], deallocation: str = "requeue") -> None:
        """Add or remove nodes to reach the pool's targets (nodes leaving the pool do not count).

        Under weather, allocations can fail or hit the account's node quota: the
        pool then stays short of its target with the reason in ``resizeErrors``.
        """
        key = pool["id"].lower()
        for dedicated, target in (
            (True, pool["targetDedicatedNodes"]),
            (False, pool["targetLowPriorityNodes"]),
        ):
            current = [
                n
                for n in self.nodes.values()
                if n.pool_key == key
                and n.doc["isDedicated"] == dedicated
                and n.doc["state"] != NodeState.LEAVING_POOL.value
            ]
            for _ in range(int(target) - len(current)):
                if not self._may_allocate(pool, dedicated):
                    break
                node = self._new_node(pool, dedicated)
                self._spawn(self._join_node(node))
            if len(current) > target:
                current.sort(key=lambda n: (n.used, n.id))
                for node in current[: len(current) - int(target)]:
                    self._remove_node(node, deallocation)
        self.store.put_pool(pool)
        self._update_allocation_state(key)

    def _may_allocate(self, pool: dict[str, Any], dedicated: bool) -> bool:
        """Whether one more node can be allocated; if not, record the resize error on the pool."""
        w = self.config.weather
        quota = w.dedicated_node_quota if dedicated else w.low_priority_node_quota
        if quota is not None:
            used = sum(
                1
                for n in self.nodes.values()
                if n.doc["isDedicated"] == dedicated and n.doc["state"] != NodeState.LEAVING_POOL.value
            )
            if used >= quota:
                code = "AccountCoreQuotaReached" if dedicated else "AccountLowPriorityCoreQuotaReached"
                kind = "dedicated" if dedicated else "low-priority"
                self._add_resize_error(
                    pool,
                    code,
                    f"The specified account has reached its {kind} core quota ({quota} nodes under "
                    "localbatch's weather); request a quota increase or lower the pool's target.",
                )
                return False
        probe = f"{pool['id']}/{pool.get('_nodeOrdinal', 0)}"
        if w.chance("allocation_failure", w.allocation_failure_rate, probe):
            pool["_nodeOrdinal"] = int(pool.get("_nodeOrdinal", 0)) + 1  # the next attempt decides anew
            self._add_resize_error(
                pool, "AllocationFailed", "Desired number of nodes could not be allocated; try again later."
            )
            return False
        return True

    @staticmethod
    def _add_resize_error(pool: dict[str, Any], code: str, message: str) -> None:
        errors_ = pool.setdefault("resizeErrors", [])
        if not any(e["code"] == code for e in errors_):
            errors_.append({"code": code, "message": message})

    def _update_allocation_state(self, pool_key: str) -> None:
        """``resizing`` while nodes are being allocated or leave the pool, ``steady`` otherwise."""
        pool = self.pools.get(pool_key)
        if pool is None:
            return
        moving = (NodeState.LEAVING_POOL.value, NodeState.CREATING.value)
        busy = any(n.pool_key == pool_key and n.doc["state"] in moving for n in self.nodes.values())
        wanted = "resizing" if busy else "steady"
        if pool["allocationState"] != wanted:
            pool["allocationState"] = wanted
            pool["allocationStateTransitionTime"] = iso(utcnow())
            self.store.put_pool(pool)

    def _remove_node(self, node: NodeRuntime, deallocation: str = "requeue") -> None:
        """Remove a node. Its running tasks are requeued (``requeue``), ended (``terminate``)
        or finish first (``taskcompletion``, ``retaineddata``)."""
        if deallocation in _END_REASONS:
            for seq in list(node.running):
                self.running[seq].execution.end(_END_REASONS[deallocation])
        if node.start_execution is not None:
            node.start_execution.end("NodeRemoved")
        self._set_node_state(node, NodeState.LEAVING_POOL)
        self._spawn(self._finish_node_removal(node))

    async def _finish_node_removal(self, node: NodeRuntime) -> None:
        while node.running or node.start_execution is not None:
            await asyncio.sleep(0.02)
        self.nodes.pop(node.id, None)
        self.store.delete_node(node.id)
        self._update_allocation_state(node.pool_key)
        await asyncio.to_thread(shutil.rmtree, node_root(self.config.data_dir, node.id), True)

    def _set_node_state(self, node: NodeRuntime, state: NodeState, persist: bool = True) -> None:
        if node.doc["state"] != state.value:
            if state not in (NodeState.IDLE, NodeState.RUNNING):
                node.generation += 1
            node.doc["state"] = state.value
            node.doc["stateTransitionTime"] = iso(utcnow())
            if persist:
                self.store.put_node(node.doc)

    def _node_env(self, node: NodeRuntime) -> dict[str, str]:
        root = node_root(self.config.data_dir, node.id)
        env = base_environment()
        env.update(
            {
                "AZ_BATCH_NODE_ID": node.id,
                "AZ_BATCH_POOL_ID": str(node.doc["_poolId"]),
                "AZ_BATCH_NODE_ROOT_DIR": str(root),
                "AZ_BATCH_NODE_SHARED_DIR": str(root / "shared"),
                "AZ_BATCH_NODE_STARTUP_DIR": str(root / "startup"),
                "AZ_BATCH_ACCOUNT_NAME": self.config.account_name,
                "AZ_BATCH_ACCOUNT_URL": self.config.account_url,
                "AZ_BATCH_NODE_IS_DEDICATED": "true" if node.doc["isDedicated"] else "false",
            }
        )
        return env

    async def _join_node(self, node: NodeRuntime) -> None:
        """Allocate and boot a node that joins (weather delays), run the pool's start task,
        then make it idle (or starttaskfailed)."""
        try:
            if not await self._allocate(node):
                return
            await self._run_start_task(node)
            self._arm_node_weather(node)
        except asyncio.CancelledError:
            raise
        except Exception:  # a background boundary: a bug must leave a visible node state, not a dead task
            log.exception("node %s failed to join its pool", node.id)
            now = iso(utcnow())
            node.doc["startTaskInfo"] = {
                "state": "completed",
                "startTime": now,
                "endTime": now,
                "retryCount": 0,
                "result": "failure",
                "failureInfo": failure_info(
                    "InternalError", "localbatch failed to start the node", "servererror"
                ),
            }
            self._set_node_state(node, NodeState.START_TASK_FAILED)

    def _present(self, node: NodeRuntime, *states: NodeState) -> bool:
        return self.nodes.get(node.id) is node and node.doc["state"] in {s.value for s in states}

    async def _allocate(self, node: NodeRuntime) -> bool:
        """``creating`` for the weather's allocation delay, then ``starting`` for its boot delay.

        False when the node left the pool meanwhile.
        """
        w = self.config.weather
        delay = w.seconds("allocation_delay", w.allocation_delay, node.weather_key)
        if node.doc["state"] == NodeState.CREATING.value:
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._present(node, NodeState.CREATING):
                return False
            self._set_node_state(node, NodeState.STARTING)
            self._update_allocation_state(node.pool_key)
        boot = w.seconds("boot_delay", w.boot_delay, node.weather_key)
        if boot > 0:
            await asyncio.sleep(boot)
        return self._present(node, NodeState.STARTING)

    async def _run_start_task(self, node: NodeRuntime) -> None:
        pool = self.pools.get(node.pool_key)
        start = (pool or {}).get("startTask")
        if not start:
            self._set_node_state(node, NodeState.IDLE)
            self.wake()
            return
        spec = start_task_spec_from_json(start)
        wait = bool(start.get("waitForSuccess", True))
        w = self.config.weather
        if w.chance("start_task_failure", w.start_task_failure_rate, node.weather_key):
            self._fail_start_task(node, spec.max_retries, wait)
            return
        self._set_node_state(node, NodeState.WAITING_FOR_START_TASK if wait else NodeState.IDLE)
        if not wait:
            self.wake()
        retry = 0
        info: dict[str, Any] = {"state": "running", "startTime": iso(utcnow()), "retryCount": 0}
        while True:
            node.doc["startTaskInfo"] = info
            self.store.put_node(node.doc)
            directory = node_root(self.config.data_dir, node.id) / "startup"
            execution = Execution(spec, directory, self._node_env(node), self.config.auto_storage)
            node.start_execution = execution
            try:
                outcome = await execution.run()
            finally:
                node.start_execution = None
            if outcome.ended_by or node.id not in self.nodes:
                return
            if outcome.succeeded or not outcome.retryable or (0 <= spec.max_retries <= retry):
                break
            retry += 1
            info = {**info, "retryCount": retry, "lastRetryTime": iso(utcnow())}
        info = {
            **info,
            "state": "completed",
            "startTime": iso(outcome.start_time),
            "endTime": iso(outcome.end_time),
            "result": "success" if outcome.succeeded else "failure",
        }
        if outcome.exit_code is not None:
            info["exitCode"] = outcome.exit_code
        if outcome.failure:
            info["failureInfo"] = outcome.failure
        node.doc["startTaskInfo"] = info
        if outcome.succeeded or not wait:
            self._set_node_state(
                node, NodeState.IDLE if not node.running else NodeState.RUNNING, persist=False
            )
        else:
            self._set_node_state(node, NodeState.START_TASK_FAILED, persist=False)
        self.store.put_node(node.doc)
        self.wake()

    def _fail_start_task(self, node: NodeRuntime, retries: int, wait: bool) -> None:
        """The weather's start task failure: exit code 1 after all its retries."""
        now = iso(utcnow())
        node.doc["startTaskInfo"] = {
            "state": "completed",
            "startTime": now,
            "endTime": now,
            "exitCode": 1,
            "retryCount": max(0, retries),
            "result": "failure",
            "failureInfo": failure_info(
                "FailureExitCode", "The task exited with an exit code representing a failure"
            ),
        }
        self._set_node_state(node, NodeState.START_TASK_FAILED if wait else NodeState.IDLE)
        self.wake()

    # ------------------------------------------------------------------ weather on nodes

    def _arm_node_weather(self, node: NodeRuntime) -> None:
        """Arm the weather's preemption (low-priority nodes) and unusable timers on a ready node."""
        if not self._present(node, NodeState.IDLE, NodeState.RUNNING):
            return
        w = self.config.weather
        loop = asyncio.get_running_loop()
        key = node.weather_key
        gen = node.generation
        if not node.doc["isDedicated"] and w.chance("preemption", w.preemption_rate, key):
            after = w.seconds("preemption_after", w.preemption_after, key)
            loop.call_later(after, self._node_down, node, gen, NodeState.PREEMPTED)
        elif w.chance("unusable", w.unusable_rate, key):
            after = w.seconds("unusable_after", w.unusable_after, key)
            loop.call_later(after, self._node_down, node, gen, NodeState.UNUSABLE)

    def _node_down(self, node: NodeRuntime, generation: int, state: NodeState) -> None:
        """Preempt a node or make it unusable; its running tasks are requeued."""
        if node.generation != generation or not self._present(node, NodeState.IDLE, NodeState.RUNNING):
            return
        reason = "NodePreempted" if state is NodeState.PREEMPTED else "NodeUnusable"
        for seq in list(node.running):
            self.running[seq].execution.end(reason)
        self._set_node_state(node, state)
        log.info("weather: node %s is %s", node.id, state.value)
        w = self.config.weather
        back = w.seconds("preempted_for", w.preempted_for, node.weather_key)
        if state is NodeState.PREEMPTED and back > 0:
            asyncio.get_running_loop().call_later(back, self._node_back, node, node.generation)

    def _node_back(self, node: NodeRuntime, generation: int) -> None:
        """A preempted node is allocated again (start task included)."""
        if node.generation != generation or not self._present(node, NodeState.PREEMPTED):
            return
        self._set_node_state(node, NodeState.STARTING)
        self._spawn(self._join_node(node))

    def _maybe_lose_node(self, node: NodeRuntime, task_key: str) -> None:
        """Weather: the node leaves after a task, taking its files; a new node replaces it."""
        w = self.config.weather
        if not w.chance("node_loss", w.node_loss_rate, task_key):
            return
        pool = self.pools.get(node.pool_key)
        if pool is None or pool["state"] != "active" or node.doc["state"] == NodeState.LEAVING_POOL.value:
            return
        log.info("weather: node %s leaves the pool with its task files", node.id)
        self._remove_node(node)
        self._resize_nodes(pool)

    def delete_pool(self, pool_id: str) -> None:
        pool = self.pool(pool_id)
        if pool["state"] == "deleting":
            return
        now = iso(utcnow())
        pool.update(state="deleting", stateTransitionTime=now, eTag=new_etag(), lastModified=now)
        self.store.put_pool(pool)
        self._spawn(self._finish_pool_delete(pool["id"].lower()))

    async def _finish_pool_delete(self, key: str) -> None:
        for node in [n for n in self.nodes.values() if n.pool_key == key]:
            if node.doc["state"] != NodeState.LEAVING_POOL.value:
                self._remove_node(node)
        while any(n.pool_key == key for n in self.nodes.values()):
            await asyncio.sleep(0.02)
        pool = self.pools.pop(key, None)
        if pool is not None:
            self.store.delete_pool(pool["id"])

    def resize_pool(self, pool_id: str, dedicated: int | None, low: int | None) -> None:
        pool = self.pool(pool_id)
        if pool["state"] == "deleting":
            raise errors.conflict("PoolBeingDeleted", "The specified pool has been marked for deletion.")
        if pool.get("enableAutoScale"):
            raise errors.conflict(
                "AutoScalingEnabled", "Resize is not allowed on a pool with autoscale enabled."
            )
        if dedicated is not None:
            pool["targetDedicatedNodes"] = dedicated
        if low is not None:
            pool["targetLowPriorityNodes"] = low
        pool.pop("resizeErrors", None)  # they describe the last resize only
        now = iso(utcnow())
        pool.update(eTag=new_etag(), lastModified=now, allocationStateTransitionTime=now)
        self.store.put_pool(pool)
        self._resize_nodes(pool)

    # ------------------------------------------------------------------ node operations

    def node_counts(self) -> list[dict[str, Any]]:
        """Per pool, its dedicated and low-priority nodes counted by state (sorted by pool id)."""
        out = []
        for key, pool in sorted(self.pools.items()):
            kinds = {True: dict.fromkeys(_COUNTED_STATES, 0), False: dict.fromkeys(_COUNTED_STATES, 0)}
            for n in self.nodes.values():
                if n.pool_key == key and n.doc["state"] in kinds[True]:
                    kinds[bool(n.doc["isDedicated"])][n.doc["state"]] += 1
            rendered = [
                {**{_COUNT_KEYS.get(k, k): v for k, v in counts.items()}, "total": sum(counts.values())}
                for counts in (kinds[True], kinds[False])
            ]
            out.append({"poolId": pool["id"], "dedicated": rendered[0], "lowPriority": rendered[1]})
        return out

    def remove_nodes(self, pool_id: str, node_ids: list[str], option: str) -> dict[str, Any]:
        """Remove the named nodes (the pool's targets drop by as many); Batch's rules on state."""
        pool = self._active_pool(pool_id)
        if pool["allocationState"] != "steady":
            raise errors.conflict("PoolBeingResized", "The specified pool is being resized.")
        nodes = []
        for i, node_id in enumerate(node_ids):
            node = self.nodes.get(node_id)
            if node is None or node.pool_key != pool["id"].lower():
                raise errors.invalid_property(
                    f"nodeList[{i}]", node_id, "no node with this id is in the pool"
                )
            nodes.append(node)
        for node in {n.id: n for n in nodes}.values():
            target = "targetDedicatedNodes" if node.doc["isDedicated"] else "targetLowPriorityNodes"
            pool[target] = max(0, int(pool[target]) - 1)
            self._remove_node(node, option)
        pool.pop("resizeErrors", None)
        now = iso(utcnow())
        pool.update(eTag=new_etag(), lastModified=now, allocationStateTransitionTime=now)
        self.store.put_pool(pool)
        self._update_allocation_state(pool["id"].lower())
        return pool

    def stop_resize(self, pool_id: str) -> dict[str, Any]:
        """Stop a resize: nodes still being allocated are dropped, the targets become what the pool has."""
        pool = self._active_pool(pool_id)
        key = pool["id"].lower()
        for node in [n for n in self.nodes.values() if n.pool_key == key]:
            if node.doc["state"] == NodeState.CREATING.value:
                self._remove_node(node)
        staying = [
            n
            for n in self.nodes.values()
            if n.pool_key == key and n.doc["state"] != NodeState.LEAVING_POOL.value
        ]
        pool["targetDedicatedNodes"] = sum(1 for n in staying if n.doc["isDedicated"])
        pool["targetLowPriorityNodes"] = sum(1 for n in staying if not n.doc["isDedicated"])
        now = iso(utcnow())
        pool.update(eTag=new_etag(), lastModified=now)
        self.store.put_pool(pool)
        self._update_allocation_state(key)
        return pool

    def _check_node_ready(self, node: NodeRuntime) -> None:
        """409 unless the node is idle or running (the states Batch allows restarts in)."""
        state = node.doc["state"]
        if state in (NodeState.IDLE.value, NodeState.RUNNING.value):
            return
        code = {
            NodeState.REBOOTING.value: "NodeBeingRebooted",
            NodeState.REIMAGING.value: "NodeBeingReimaged",
            NodeState.CREATING.value: "NodeBeingCreated",
            NodeState.STARTING.value: "NodeBeingStarted",
            NodeState.UNUSABLE.value: "NodeStateUnusable",
        }.get(state, "OperationNotValidOnNode")
        raise errors.conflict(code, f"The operation is not valid on a node in state {state}.")

    def restart_node(self, pool_id: str, node_id: str, kind: str, option: str) -> None:
        """Reboot or reimage (``kind``) a node; ``option`` says what happens to its running tasks."""
        node = self.node(pool_id, node_id)
        self._check_node_ready(node)
        if node.after_tasks:
            raise errors.conflict(
                "OperationNotValidOnNode", "The node already waits for its tasks to restart."
            )
        if option in ("taskcompletion", "retaineddata") and node.running:
            node.after_tasks = kind
            return
        self._restart_node(node, kind, option)

    def _restart_node(self, node: NodeRuntime, kind: str, option: str = "requeue") -> None:
        node.after_tasks = None
        reason = "NodeRestarted" if option == "requeue" else "NodeRemovedTerminate"
        for seq in list(node.running):
            self.running[seq].execution.end(reason)
        self._set_node_state(node, NodeState.REBOOTING if kind == "reboot" else NodeState.REIMAGING)
        self._spawn(self._restart(node, kind))

    async def _restart(self, node: NodeRuntime, kind: str) -> None:
        state = NodeState.REBOOTING if kind == "reboot" else NodeState.REIMAGING
        while node.running:
            await asyncio.sleep(0.02)
        if kind == "reimage":  # a fresh OS disk: task and start task files are gone
            root = node_root(self.config.data_dir, node.id)
            for sub in ("workitems", "startup"):
                await asyncio.to_thread(shutil.rmtree, root / sub, True)
                (root / sub).mkdir(parents=True, exist_ok=True)
        await asyncio.sleep(0.1)
        if not self._present(node, state):
            return
        now = iso(utcnow())
        node.doc["lastBootTime"] = now
        node.doc.pop("startTaskInfo", None)
        self._set_node_state(node, NodeState.STARTING)
        await self._join_node(node)

    def set_node_scheduling(self, pool_id: str, node_id: str, enabled: bool, option: str = "requeue") -> None:
        """Enable or disable task scheduling on a node (409 if it is already so)."""
        node = self.node(pool_id, node_id)
        wanted = "enabled" if enabled else "disabled"
        if node.doc.get("schedulingState", "enabled") == wanted:
            raise errors.conflict(
                "NodeAlreadyInTargetSchedulingState",
                "The specified node is already in the target scheduling state.",
            )
        node.doc["schedulingState"] = wanted
        if not enabled and option in _END_REASONS:
            reason = "NodeSchedulingDisabled" if option == "requeue" else "NodeRemovedTerminate"
            for seq in list(node.running):
                self.running[seq].execution.end(reason)
        self.store.put_node(node.doc)
        self.wake()

    def replace_pool_properties(self, pool_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT semantics: startTask and metadata are replaced; a start task left out is removed."""
        pool = self._active_pool(pool_id)
        if body.get("startTask") is None:
            pool.pop("startTask", None)
        else:
            pool["startTask"] = body["startTask"]
        pool["metadata"] = body["metadata"]
        pool["applicationPackageReferences"] = body["applicationPackageReferences"]
        if body.get("targetNodeCommunicationMode") is not None:
            pool["targetNodeCommunicationMode"] = body["targetNodeCommunicationMode"]
        pool.update(eTag=new_etag(), lastModified=iso(utcnow()))
        self.store.put_pool(pool)
        return pool

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
            "executionInfo": {"startTime": now, "poolId": body["poolInfo"]["poolId"]},
        }
        self.jobs[key] = doc
        self.store.put_job(doc)
        self._arm_job_wall_clock(doc)
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
        for key in ("priority", "maxParallelTasks", "onAllTasksComplete", "onTaskFailure", "metadata"):
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
        self._set_job_state(job, JobState.COMPLETED)
        self.store.put_job(job)

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
        while any(rt.job == key for rt in self.running.values()):
            await asyncio.sleep(0.02)
        job = self.jobs.pop(key, None)
        if job is None:
            return
        self.store.delete_job(job["id"])
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
        self.store.update_task(
            row.seq,
            prev_state=row.state,
            prev_state_time=row.state_time,
            state="completed",
            state_time=now,
            last_modified=now,
            etag=new_etag(),
            end_time=now,
            result="failure",
            failure=json.dumps(failure),
            dep_ok=0,
        )
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
        now = iso(utcnow())
        spec = row.spec_json()
        deps = spec.get("dependsOn") or {}
        self.store.update_task(
            row.seq,
            prev_state=row.state,
            prev_state_time=row.state_time,
            state="active",
            state_time=now,
            last_modified=now,
            etag=new_etag(),
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
                    if j["state"] == JobState.ACTIVE.value and j["poolInfo"]["poolId"].lower() == pool_key
                ),
                key=lambda j: -int(j.get("priority") or 0),
            )
            if not jobs:
                continue
            limits = self._parallel_limits(jobs)
            want = free + len(limits) * free + len(self._dispatching)
            rows = self.store.runnable([j["id"].lower() for j in jobs], want)
            for row in rows:
                if row.seq in self._dispatching:
                    continue
                if row.job in limits:
                    if limits[row.job] <= 0:
                        continue
                    limits[row.job] -= 1
                candidates = [n for n in free_nodes if n.slots - n.used >= row.slots and n.schedulable]
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
        self.store.update_task(
            row.seq,
            prev_state=row.state,
            prev_state_time=row.state_time,
            state="running",
            state_time=now,
            last_modified=now,
            etag=new_etag(),
            node_id=node.id,
            start_time=now,
            end_time=None,
            result=None,
            failure=None,
        )
        spec = task_spec_from_json(row.spec_json(), job)
        env = self._node_env(node)
        env["AZ_BATCH_JOB_ID"] = job["id"]
        env["AZ_BATCH_TASK_ID"] = row.task_id
        directory = task_dir(node_root(self.config.data_dir, node.id), job["id"], row.task_id)
        execution = Execution(spec, directory, env, self.config.auto_storage)
        # A requeued task starts over, as on a new node: files of the lost run must not be uploaded.
        execution.fresh = row.requeue_count > 0 and row.node_id is None
        seq = row.seq
        execution.on_spawn = lambda pid: self.store.update_task(seq, pgid=pid)
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
        common = {
            "prev_state": row.state,
            "prev_state_time": row.state_time,
            "state_time": now,
            "last_modified": now,
            "etag": new_etag(),
        }
        if outcome.ended_by in REQUEUE_REASONS:
            self.store.update_task(
                rt.seq,
                **common,
                state="active",
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
            self.store.update_task(
                rt.seq,
                **common,
                state="active",
                exit_code=outcome.exit_code,
                retry_count=row.retry_count + 1,
                last_retry_time=now,
            )
            return
        failed = not outcome.succeeded
        pre = outcome.exit_code is None and outcome.failure is not None and outcome.ended_by is None
        opts = rt.spec.exit_options(outcome.exit_code, failed, pre_processing=pre)
        self.store.update_task(
            rt.seq,
            **common,
            state="completed",
            start_time=iso(outcome.start_time),
            end_time=iso(outcome.end_time),
            exit_code=outcome.exit_code,
            result="failure" if failed else "success",
            failure=json.dumps(outcome.failure) if outcome.failure else None,
            dep_ok=1 if opts.dependency_action == "satisfy" else 0,
        )
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
        return str(job["poolInfo"]["poolId"])
