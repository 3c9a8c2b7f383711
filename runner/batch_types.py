"""The runner's plain data about Batch: states, counts, tasks, jobs, nodes, pools. No SDK here.

:mod:`runner.batch` (the only module that imports ``azure.batch``) turns SDK models
into these frozen dataclasses at its edge, so progress, results, reports and views
read Batch's state without importing the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

STDERR_FILE = "stderr.txt"
STDOUT_FILE = "stdout.txt"
START_TASK_STDERR = "startup/stderr.txt"


class TaskState(str, Enum):
    ACTIVE = "active"
    PREPARING = "preparing"
    RUNNING = "running"
    COMPLETED = "completed"


@dataclass(frozen=True)
class TaskCounts:
    active: int
    running: int
    completed: int
    succeeded: int
    failed: int

    @property
    def total(self) -> int:
        return self.active + self.running + self.completed


@dataclass(frozen=True)
class TaskInfo:
    id: str
    display_name: str
    state: TaskState
    exit_code: int | None
    result: str | None
    failure_category: str | None
    failure_code: str | None
    failure_message: str | None
    retry_count: int
    # When and where it ran (None until known; the node id stays with the last attempt).
    node_id: str | None = None
    creation_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    requeue_count: int = 0


@dataclass(frozen=True)
class TaskFailure:
    """A failed task as the user sees it."""

    task_id: str
    display_name: str
    exit_code: int | None
    failure_category: str | None
    failure_code: str | None
    failure_message: str | None
    stderr_tail: str

    def describe(self) -> str:
        if self.exit_code is not None and self.failure_code in (None, "FailureExitCode"):
            why = f"exit code {self.exit_code}"
        else:
            why = f"{self.failure_category or 'failure'}: {self.failure_code or '?'}"
            if self.failure_message:
                why += f" ({self.failure_message})"
        return f"task {self.task_id} ({self.display_name}): {why}"


@dataclass(frozen=True)
class JobInfo:
    id: str
    state: str
    pool_id: str | None
    creation_time: datetime | None
    display_name: str | None
    terminate_reason: str | None = None  # set once completed: AllTasksComplete, UserTerminate, …
    end_time: datetime | None = None  # when it completed


@dataclass(frozen=True)
class ImageSupport:
    """The pool's image as Batch's supported-images list knows it (``listed`` False: not there)."""

    image: str  # publisher:offer:sku
    node_agent_sku_id: str
    listed: bool
    end_of_life: datetime | None = None


@dataclass(frozen=True)
class NodeInfo:
    id: str
    state: str
    start_task_exit_code: int | None
    start_task_failure: str | None
    allocation_time: datetime | None = None
    state_transition_time: datetime | None = None
    running_tasks: int | None = None
    total_tasks_run: int | None = None


@dataclass(frozen=True)
class PoolInfo:
    """A pool's size and state as Batch reports it now (Batch keeps no history of node counts)."""

    id: str
    state: str
    allocation_state: str | None
    vm_size: str | None
    task_slots_per_node: int
    current_dedicated: int
    current_low_priority: int
    target_dedicated: int | None
    target_low_priority: int | None
    auto_scale: bool


@dataclass(frozen=True)
class PoolHealth:
    """The pool's nodes, and which of them cannot run tasks because their start task failed."""

    nodes: tuple[NodeInfo, ...]
    failed: tuple[NodeInfo, ...]

    @property
    def all_failed(self) -> bool:
        return bool(self.nodes) and len(self.failed) == len(self.nodes)


@dataclass(frozen=True)
class ResizeError:
    code: str
    message: str


@dataclass(frozen=True)
class PoolStatus:
    """What a pool says about its size: enough to tell a user why nothing runs."""

    id: str
    allocation_state: str  # steady, resizing, stopping
    allocation_since: datetime | None
    current_nodes: int  # dedicated + low-priority (spot)
    target_nodes: int
    autoscale: bool
    autoscale_interval: timedelta | None
    resize_errors: tuple[ResizeError, ...]
