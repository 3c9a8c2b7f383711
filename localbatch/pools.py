"""Pools and their simulated nodes: creation, resizing, allocation, start tasks, node
operations, weather on nodes and autoscale operations.

:class:`PoolsAndNodes` is the part of :class:`~localbatch.scheduler.Service` that owns
``pools`` (documents, keyed by lower-cased id) and ``nodes`` (:class:`NodeRuntime`, keyed
by id). It runs on the event-loop thread like the rest of the service. A node joins in
``creating`` (weather's allocation delay, pool ``resizing``), then ``starting``, runs the
pool's start task and becomes ``idle``; it leaves through ``leavingpool`` once what runs on
it has ended (or, for ``taskcompletion``, finished).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from localbatch import autoscaling, errors, nodelog
from localbatch.etags import new_etag
from localbatch.models import NodeState, iso, parse_duration, start_task_spec_from_json, utcnow
from localbatch.node import Execution, base_environment, failure_info, node_root
from localbatch.views import public

if TYPE_CHECKING:
    from localbatch.scheduler import RunningTask, ServiceConfig
    from localbatch.store import Store

log = logging.getLogger(__name__)
_BUSY_OR_IDLE = {NodeState.IDLE.value, NodeState.RUNNING.value}

# The state a node is in while it reboots, reimages or deallocates.
_RESTART_STATES = {
    "reboot": NodeState.REBOOTING,
    "reimage": NodeState.REIMAGING,
    "deallocate": NodeState.DEALLOCATING,
}

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

    def render(self, base: str) -> dict[str, Any]:
        """The node as Batch's GET returns it (internal ``_`` keys left out)."""
        out = {"odata.metadata": f"{base}/$metadata#nodes/@Element", **public(self.doc)}
        out["url"] = f"{base}/pools/{quote(self.doc['_poolId'])}/nodes/{self.id}"
        out["runningTasksCount"] = len(self.running)
        out["runningTaskSlotsCount"] = self.used
        return out

    @property
    def schedulable(self) -> bool:
        return (
            self.doc["state"] in (NodeState.IDLE.value, NodeState.RUNNING.value)
            and self.doc.get("schedulingState", "enabled") == "enabled"
            and self.after_tasks is None
        )


class PoolsAndNodes:
    """Pools and nodes (see module docstring); mixed into the service, which provides the rest."""

    store: Store
    config: ServiceConfig
    pools: dict[str, dict[str, Any]]
    nodes: dict[str, NodeRuntime]
    running: dict[int, RunningTask]
    autoscaler: autoscaling.Autoscaler

    def wake(self) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Any) -> None:
        raise NotImplementedError

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
        nodelog.record(self.config.data_dir, node_id, f"allocated to pool {pool['id']}, state {doc['state']}")
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
            if not {node.doc["state"], state.value} <= _BUSY_OR_IDLE:  # not per task: too many lines
                nodelog.record(self.config.data_dir, node.id, f"state {node.doc['state']} -> {state.value}")
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
            NodeState.DEALLOCATING.value: "OperationNotValidOnNode",
        }.get(state, "OperationNotValidOnNode")
        raise errors.conflict(code, f"The operation is not valid on a node in state {state}.")

    def restart_node(self, pool_id: str, node_id: str, kind: str, option: str) -> None:
        """Reboot, reimage or deallocate (``kind``) a node; ``option`` says what happens to its
        running tasks."""
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
        self._set_node_state(node, _RESTART_STATES[kind])
        self._spawn(self._restart(node, kind))

    async def _restart(self, node: NodeRuntime, kind: str) -> None:
        state = _RESTART_STATES[kind]
        while node.running:
            await asyncio.sleep(0.02)
        if kind == "deallocate":
            if self._present(node, state):
                self._set_node_state(node, NodeState.DEALLOCATED)
            return
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

    def start_node(self, pool_id: str, node_id: str) -> None:
        """Start a deallocated node: it boots and runs the start task again."""
        node = self.node(pool_id, node_id)
        if node.doc["state"] != NodeState.DEALLOCATED.value:
            raise errors.conflict("OperationNotValidOnNode", "Only a deallocated node can be started.")
        node.doc["lastBootTime"] = iso(utcnow())
        node.doc.pop("startTaskInfo", None)
        self._set_node_state(node, NodeState.STARTING)
        self._spawn(self._join_node(node))

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
