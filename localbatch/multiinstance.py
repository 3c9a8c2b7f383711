"""Multi-instance tasks (``multiInstanceSettings``), run as Batch runs them for MPI.

* **Add**: ``numberOfInstances`` (default 1, at most the account's node limit per pool),
  ``coordinationCommandLine`` (required), ``commonResourceFiles`` (as resource files); a
  ``requiredSlots`` other than 1 is refused (400 ``InvalidPropertyValue``), as the spec says
  "for multi-instance Tasks, this must be 1".
* **Scheduling**: the task stays ``active`` until ``numberOfInstances`` nodes of its pool are
  idle (whole nodes, one instance each); on a pool without ``enableInterNodeCommunication`` or
  with ``taskSlotsPerNode`` > 1 it is never scheduled and stays ``active``, as Batch's MPI
  documentation says it does.
* **Run**: on every node (the primary's first) the common resource files are downloaded into the
  task's root directory (``AZ_BATCH_TASK_SHARED_DIR``, one above the working directory) and the
  coordination command runs; when every one has exited 0 the primary runs the task's command
  line (with its ``resourceFiles`` and ``outputFiles``, on the primary only). A coordination
  command that fails fails the task (retried per its constraints) without running the command
  line. When the primary ends, every instance's processes end (a coordination command's
  background services included: its process group is killed) and the subtasks complete.
  Terminating the task (or its job) ends all instances at once.
* **Environment**: ``AZ_BATCH_HOST_LIST`` (``ip,ip``), ``AZ_BATCH_NODE_LIST`` (``ip;ip``),
  ``AZ_BATCH_MASTER_NODE`` (``ip:port``), ``AZ_BATCH_IS_CURRENT_NODE_MASTER`` (``true``/``false``),
  ``AZ_BATCH_TASK_SHARED_DIR``. Every local node's IP is 127.0.0.1, so the lists repeat it.
* **Subtasks** (``GET .../subtasksinfo``): ids 1 .. N-1 (the primary is the task itself), each
  with its node (``nodeInfo.taskRootDirectory`` readable through the node's files), state,
  times, exit code (its coordination command's) and result. Stored (``subtasks`` table, by the
  task's seq), so they survive a restart; a new run of the task (a retry, a requeue) replaces them.
* **Job preparation**: before the task starts, the job's preparation task runs on every node it
  takes that has not run it (primary and the others); the task is ``preparing`` meanwhile, its
  nodes held. With ``waitForSuccess`` a failure there sends it back to ``active`` and keeps the
  job's tasks off that node (they are then never picked). Each instance sees its own node's
  ``AZ_BATCH_JOB_PREP_DIR``.
* **Restart** (SIGTERM or a crash): the task is requeued as every running task is (``active``,
  ``requeueCount`` + 1, no retry counted); the process groups its instances left running (the
  coordination commands' background services included) are ended on start, found by their
  ``AZ_BATCH_TASK_DIR``; their subtasks are listed ``completed``/``failure`` (``TaskEnded``,
  category ``servererror``) until the rerun replaces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from localbatch import taskstate, transfer
from localbatch.models import NodeState, ResourceFile, TaskSpec, _resource_files, iso, utcnow
from localbatch.node import Execution, Outcome, failure_info, kill_orphaned_group, node_root, task_dir
from localbatch.store import SubtaskRow
from localbatch.transfer import TransferError

if TYPE_CHECKING:
    from localbatch.pools import NodeRuntime
    from localbatch.scheduler import Service
    from localbatch.store import TaskRow

log = logging.getLogger(__name__)

RESTART_ENDED = "The subtask was ended: the service restarted; its task was requeued"
MASTER_PORT = 6000  # the port Batch names in AZ_BATCH_MASTER_NODE (reserved for its own use)


@dataclass(frozen=True)
class Settings:
    """A stored task's multi-instance settings."""

    instances: int
    coordination: str
    common_files: tuple[ResourceFile, ...]

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Settings | None:
        raw = spec.get("multiInstanceSettings")
        if not raw:
            return None
        return cls(
            int(raw.get("numberOfInstances") or 1),
            str(raw["coordinationCommandLine"]),
            _resource_files(raw.get("commonResourceFiles")),
        )


@dataclass
class Instance:
    """One instance of a running multi-instance task: its node, directory, environment, record."""

    index: int  # 0: the primary
    node: NodeRuntime
    directory: Path
    env: dict[str, str]
    doc: dict[str, Any] = field(default_factory=dict)  # the subtask as listed (index >= 1)
    pgid: int | None = None
    execution: Execution | None = None

    def row(self) -> SubtaskRow:
        """This instance as the store keeps it (its marker: what its processes carry, see
        :func:`~localbatch.node.kill_orphaned_group`)."""
        return (self.index, self.doc, self.pgid, f"AZ_BATCH_TASK_DIR={self.directory}")

    def set_state(self, state: str) -> None:
        now = iso(utcnow())
        if self.doc.get("state"):
            self.doc["previousState"] = self.doc["state"]
            self.doc["previousStateTransitionTime"] = self.doc["stateTransitionTime"]
        self.doc["state"] = state
        self.doc["stateTransitionTime"] = now


class MultiExecution:
    """Runs every instance of one multi-instance task; quacks like :class:`~localbatch.node.Execution`
    for the scheduler (``run``, ``end``, ``fresh``, ``on_spawn``)."""

    def __init__(
        self,
        owner: MultiInstance,
        seq: int,
        job: str,
        settings: Settings,
        spec: TaskSpec,
        instances: list[Instance],
    ):
        self.owner = owner
        self.seq = seq
        self.job = job
        self.settings = settings
        self.spec = spec
        self.instances = instances
        self.fresh = False
        self.ended_by: str | None = None
        self.on_spawn: Any = None
        self.refusal: dict[str, Any] | None = None  # see Execution.refusal (containers)
        self._auto_storage = owner.service.config.auto_storage

    def end(self, reason: str) -> None:
        """End every instance (idempotent)."""
        if self.ended_by is None:
            self.ended_by = reason
        for inst in self.instances:
            if inst.execution is not None:
                inst.execution.end(reason)
        self._kill_groups()

    async def run(self) -> Outcome:
        """Coordination on every node, then the command line on the primary; never raises for failures."""
        start = utcnow()
        try:
            if self.refusal is not None:  # no instance can start (containers): no process anywhere
                return Outcome(start, utcnow(), None, self.refusal)
            failed = await self._coordinate(start)
            if failed is not None:
                return failed
            primary = self.instances[0]
            primary.execution = Execution(self.spec, primary.directory, primary.env, self._auto_storage)
            primary.execution.on_spawn = self.on_spawn
            if self.ended_by:
                primary.execution.end(self.ended_by)
            outcome = await primary.execution.run()
            outcome.start_time = start
            return outcome
        finally:
            self._kill_groups()
            self.owner.finished(self)

    async def _coordinate(self, start: Any) -> Outcome | None:
        """Stage the common files and run the coordination command everywhere; the failure, if any."""
        outcomes = await asyncio.gather(*(self._coordinate_one(inst) for inst in self.instances))
        for inst, outcome in zip(self.instances, outcomes, strict=True):
            if inst.index:
                inst.doc["exitCode"] = outcome.exit_code
                if outcome.failure:
                    inst.doc["failureInfo"] = outcome.failure
        self.owner.save(self)
        if self.ended_by:
            reason = self.ended_by
            return Outcome(
                start, utcnow(), None, failure_info("TaskEnded", "The task was ended: " + reason), reason
            )
        for outcome in outcomes:
            if not outcome.succeeded:
                return replace(
                    outcome, start_time=start, end_time=utcnow(), retryable=outcome.exit_code is not None
                )
        return None

    async def _coordinate_one(self, inst: Instance) -> Outcome:
        start = utcnow()
        try:
            await asyncio.to_thread(self._stage_common, inst.directory)
        except TransferError as exc:
            return Outcome(start, utcnow(), None, failure_info(exc.code, exc.message))
        spec = replace(
            self.spec,
            command_line=self.settings.coordination,
            resource_files=(),
            output_files=(),
            max_retries=0,
            exit_conditions={},
        )
        inst.execution = Execution(spec, inst.directory, inst.env, self._auto_storage)
        inst.execution.on_spawn = functools.partial(self._spawned, inst)
        if self.ended_by:
            inst.execution.end(self.ended_by)
        return await inst.execution.run()

    def _spawned(self, inst: Instance, pid: int) -> None:
        inst.pgid = pid
        self.owner.save(self, inst)

    def _stage_common(self, directory: Path) -> None:
        """Worker thread: a fresh task root directory (for a requeued task), then the common files in it."""
        if self.fresh:
            shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        if not self.settings.common_files:
            return
        jobs, modes = transfer.plan_downloads(self.settings.common_files, directory, self._auto_storage)
        for job in jobs:
            job()
        transfer.apply_modes(modes)

    def _kill_groups(self) -> None:
        """End what the coordination commands left running (background services): their process groups."""
        for inst in self.instances:
            if inst.pgid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(inst.pgid, signal.SIGKILL)


class MultiInstance:
    """The service's multi-instance tasks: which tasks are, where they run, their subtasks."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.tasks: dict[str, set[str]] = {}  # job key -> keys of its multi-instance tasks
        self._picked: dict[int, list[NodeRuntime]] = {}  # seq -> nodes chosen, primary first
        # seq -> (job key, nodes held) of tasks waiting for the job preparation task on their nodes.
        self._preparing: dict[int, tuple[str, list[NodeRuntime]]] = {}

    def load(self) -> None:
        """After a restart: know the unfinished multi-instance tasks again, and end what their
        instances left running (the tasks themselves were requeued, as every running task is)."""
        for job, key in self.service.store.multi_instance_tasks():
            self.tasks.setdefault(job, set()).add(key)
        now = iso(utcnow())
        for seq, idx, doc, pgid, marker in self.service.store.live_subtasks():
            if pgid is not None:
                kill_orphaned_group(pgid, marker)
            if doc.get("state") == "running":
                doc.update(previousState="running", previousStateTransitionTime=doc["stateTransitionTime"])
                doc.update(state="completed", stateTransitionTime=now, endTime=now, result="failure")
                doc["failureInfo"] = failure_info("TaskEnded", RESTART_ENDED, "servererror")
            row = self.service.store.get_task_by_seq(seq)
            if row is not None:
                self.service.store.put_subtasks(seq, row.job, [(idx, doc, None, marker)])

    def save(self, execution: MultiExecution, inst: Instance | None = None) -> None:
        """Store the instances of a running task (only ``inst`` if given)."""
        rows = [inst.row()] if inst is not None else [i.row() for i in execution.instances]
        self.service.store.put_subtasks(execution.seq, execution.job, rows)

    def added(self, job_key: str, task: dict[str, Any]) -> None:
        """A task was added to ``job_key``: remember it if it is multi-instance."""
        if task.get("multiInstanceSettings"):
            self.tasks.setdefault(job_key, set()).add(str(task["id"]).lower())

    def waiting(self, job_keys: list[str]) -> int:
        """At most how many multi-instance tasks of these jobs may wait (rows the scheduler skips)."""
        return sum(len(self.tasks.get(key, ())) for key in job_keys)

    def is_multi(self, row: TaskRow) -> bool:
        keys = self.tasks.get(row.job)
        return keys is not None and row.key in keys

    def dispatch(self, row: TaskRow, pool: dict[str, Any], free_nodes: list[NodeRuntime]) -> bool:
        """Start ``row`` on ``numberOfInstances`` idle nodes if the pool has them; whether it started."""
        settings = Settings.of(row.spec_json())
        if settings is None:
            return False
        if not pool.get("enableInterNodeCommunication") or int(pool["taskSlotsPerNode"]) != 1:
            return False  # never scheduled, as Batch documents
        refuses = self.service.jobtasks.refuses
        idle = sorted(
            (n for n in free_nodes if n.used == 0 and n.schedulable and not refuses(row.job, n.id)),
            key=lambda n: n.id,
        )
        if len(idle) < settings.instances:
            return False
        nodes = idle[: settings.instances]
        if self.service.jobtasks.prepare_nodes(row, nodes):  # the job preparation task runs first
            for node in nodes:
                node.used += node.slots
            taskstate.move(self.service.store, row, "preparing", node_id=nodes[0].id)
            self._preparing[row.seq] = (row.job, nodes)
            return True
        self._start(row, nodes)
        return True

    def _start(self, row: TaskRow, nodes: list[NodeRuntime]) -> None:
        for node in nodes[1:]:
            node.used += node.slots
            node.running.add(row.seq)
            self.service._set_node_state(node, NodeState.RUNNING, persist=False)
        self._picked[row.seq] = nodes
        self.service._start_task(row, nodes[0])

    def prepared(self, job_key: str, node: NodeRuntime) -> None:
        """The job preparation task ended on ``node``: start the tasks that waited for it there once
        it has ended on all their nodes, or send them back to ``active`` if it failed on one (or the
        job, or a node, went away meanwhile), as Batch keeps a job's tasks off such a node."""
        jobtasks = self.service.jobtasks
        for seq, (job, nodes) in list(self._preparing.items()):
            if job != job_key or node not in nodes or not all(jobtasks.prepared(job, n.id) for n in nodes):
                continue
            del self._preparing[seq]
            for n in nodes:
                n.used -= n.slots
            row = self.service.store.get_task_by_seq(seq)
            if row is None or row.state != "preparing":
                continue  # terminated or deleted meanwhile
            job_doc = self.service.jobs.get(job)
            usable = all(
                self.service.nodes.get(n.id) is n and n.schedulable and not jobtasks.refuses(job, n.id)
                for n in nodes
            )
            if usable and job_doc is not None and job_doc["state"] == "active":
                self._start(row, nodes)
            else:
                taskstate.move(self.service.store, row, "active", node_id=None)

    def execution(
        self, row: TaskRow, spec: TaskSpec, directory: Path, env: dict[str, str]
    ) -> MultiExecution | None:
        """The execution of a multi-instance task picked by :meth:`dispatch` (``None`` for any other)."""
        nodes = self._picked.pop(row.seq, None)
        settings = Settings.of(row.spec_json()) if nodes else None
        if nodes is None or settings is None:
            return None
        job_id = self.service.jobs[row.job]["id"]
        ips = [str(n.doc.get("ipAddress") or "127.0.0.1") for n in nodes]
        shared = {
            "AZ_BATCH_HOST_LIST": ",".join(ips),
            "AZ_BATCH_NODE_LIST": ";".join(ips),
            "AZ_BATCH_MASTER_NODE": f"{ips[0]}:{MASTER_PORT}",
        }
        instances = []
        for index, node in enumerate(nodes):
            inst_dir = (
                directory
                if index == 0
                else task_dir(node_root(self.service.config.data_dir, node.id), job_id, row.task_id)
            )
            job_env = self.service.jobtasks.task_environment(self.service.jobs[row.job], node)
            inst_env = {**env, **self.service._node_env(node), **job_env, **shared}
            inst_env["AZ_BATCH_IS_CURRENT_NODE_MASTER"] = "true" if index == 0 else "false"
            inst_env["AZ_BATCH_TASK_SHARED_DIR"] = str(inst_dir)
            inst = Instance(index, node, inst_dir, inst_env)
            if index:
                inst.doc = self._subtask_doc(index, node, job_id, row.task_id)
            instances.append(inst)
        self.service.store.put_subtasks(row.seq, row.job, [i.row() for i in instances], replace=True)
        return MultiExecution(self, row.seq, row.job, settings, spec, instances)

    def _subtask_doc(self, index: int, node: NodeRuntime, job_id: str, task_id: str) -> dict[str, Any]:
        now = iso(utcnow())
        root = f"workitems/{job_id}/job-1/{task_id}"
        pool_id = str(node.doc["_poolId"])
        node_url = f"{self.service.config.account_url}/pools/{quote(pool_id)}/nodes/{quote(node.id)}"
        return {
            "id": index,
            "nodeInfo": {
                "affinityId": str(node.doc.get("affinityId") or node.id),
                "nodeUrl": node_url,
                "poolId": pool_id,
                "nodeId": node.id,
                "taskRootDirectory": root,
                "taskRootDirectoryUrl": f"{node_url}/files/{quote(root)}",
            },
            "startTime": now,
            "state": "running",
            "stateTransitionTime": now,
        }

    def finished(self, execution: MultiExecution) -> None:
        """Every instance ended: the subtasks complete, their nodes are free again."""
        failed = execution.ended_by is not None
        for inst in execution.instances[1:]:
            inst.set_state("completed")
            inst.doc["endTime"] = inst.doc["stateTransitionTime"]
            ok = not failed and inst.doc.get("exitCode") == 0 and "failureInfo" not in inst.doc
            inst.doc["result"] = "success" if ok else "failure"
            if not ok and "failureInfo" not in inst.doc:
                reason = execution.ended_by or "the primary task ended"
                inst.doc["failureInfo"] = failure_info("TaskEnded", "The subtask was ended: " + reason)
            self._release(inst.node, execution.seq)
        for inst in execution.instances:
            inst.pgid = None  # its process group was killed
        self.save(execution)
        self.service.wake()

    def _release(self, node: NodeRuntime, seq: int) -> None:
        if self.service.nodes.get(node.id) is not node:
            return
        node.used -= node.slots
        node.running.discard(seq)
        if not node.running and node.doc["state"] == NodeState.RUNNING.value:
            self.service._set_node_state(node, NodeState.IDLE, persist=False)

    def subtasks(self, job_key: str, task_key: str) -> list[dict[str, Any]]:
        """The subtasks of a task as ``subtasksinfo`` lists them (none for other tasks)."""
        row = self.service.store.get_task(job_key, task_key)
        return self.service.store.subtasks(row.seq) if row is not None else []
