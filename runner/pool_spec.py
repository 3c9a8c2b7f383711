"""The one pool definition shared by the Pulumi program and the local target.

``infra/`` turns a :class:`PoolSpec` into ``azure-native`` Batch pool arguments;
``runner local up`` turns the same object into a Batch data-plane ``add_pool``
request against localbatch. Both read the start task, task slots and node-count
semantics from here, so the two targets cannot drift.

This module imports no SDK: it is plain data plus the autoscale formula.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_POOL_ID = "wordcount-pool"

# A current, cheap, general-purpose size (2 vCPU, 8 GiB) available in most regions.
DEFAULT_VM_SIZE = "Standard_D2s_v5"

# The start task makes sure python3 is on the node (Ubuntu LTS images ship it;
# we install it if an image does not) and fails loudly, with a message on
# stderr, when it cannot. It needs a shell, so it asks for one explicitly: Batch
# does not run command lines through a shell.
START_TASK_COMMAND = (
    "/bin/sh -c 'command -v python3 >/dev/null 2>&1 || "
    "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3); "
    'command -v python3 >/dev/null 2>&1 || { echo "start task: python3 is not available '
    "on this node and could not be installed\" >&2; exit 1; }; python3 --version'"
)


@dataclass(frozen=True)
class ImageSpec:
    """A marketplace image and the Batch node agent SKU that matches it."""

    publisher: str = "canonical"
    offer: str = "ubuntu-24_04-lts"
    sku: str = "server"
    version: str = "latest"
    node_agent_sku_id: str = "batch.node.ubuntu 24.04"


@dataclass(frozen=True)
class StartTaskSpec:
    """The pool's start task: run on every node as it joins the pool."""

    command_line: str = START_TASK_COMMAND
    wait_for_success: bool = True
    max_task_retry_count: int = 1
    # apt-get needs root on Azure; localbatch runs it as the current user.
    run_elevated: bool = True


@dataclass(frozen=True)
class AutoscaleSpec:
    """Autoscale between ``min_nodes`` and ``max_nodes`` on pending tasks.

    ``spot_percent`` of the nodes (rounded down) are Spot nodes; each preempted Spot
    node is replaced by a dedicated one, so the nodes that can run stay the target.
    """

    min_nodes: int = 0
    max_nodes: int = 4
    evaluation_interval_minutes: int = 5
    spot_percent: int = 0

    def formula(self, task_slots_per_node: int) -> str:
        """Batch autoscale formula: scale on pending tasks, to ``min_nodes`` when idle."""
        slots = max(1, task_slots_per_node)
        head = [
            "$samples = $PendingTasks.GetSamplePercent(TimeInterval_Minute * 5);",
            "$pending = $samples < 70 ? max(0, $PendingTasks.GetSample(1)) : "
            "max($PendingTasks.GetSample(1), avg($PendingTasks.GetSample(TimeInterval_Minute * 5)));",
            f"$wanted = ($pending + {slots - 1}) / {slots};",
        ]
        nodes = f"max({self.min_nodes}, min({self.max_nodes}, $wanted))"
        if self.spot_percent <= 0:
            targets = [f"$TargetDedicatedNodes = {nodes};", "$TargetLowPriorityNodes = 0;"]
        else:
            targets = [
                f"$nodes = {nodes};",
                f"$spot = floor($nodes * {self.spot_percent} / 100);",
                "$preempted = max(0, $PreemptedNodeCount.GetSample(1));",
                "$TargetLowPriorityNodes = $spot;",
                "$TargetDedicatedNodes = $nodes - $spot + min($spot, $preempted);",
            ]
        return "\n".join([*head, *targets, "$NodeDeallocationOption = taskcompletion;"])


@dataclass(frozen=True)
class PoolSpec:
    """Everything that defines the pool, whichever target creates it."""

    pool_id: str = DEFAULT_POOL_ID
    vm_size: str = DEFAULT_VM_SIZE
    dedicated_nodes: int = 2
    spot_nodes: int = 0
    task_slots_per_node: int = 1
    image: ImageSpec = field(default_factory=ImageSpec)
    start_task: StartTaskSpec = field(default_factory=StartTaskSpec)
    autoscale: AutoscaleSpec | None = None
    tags: dict[str, str] = field(default_factory=lambda: {"app": "azbatch-runner"})

    def __post_init__(self) -> None:
        if self.dedicated_nodes < 0:
            raise ValueError("dedicated_nodes must be >= 0")
        if self.spot_nodes < 0:
            raise ValueError("spot_nodes must be >= 0")
        if self.task_slots_per_node < 1:
            raise ValueError("task_slots_per_node must be >= 1")
        if self.autoscale is not None and self.autoscale.max_nodes < self.autoscale.min_nodes:
            raise ValueError("autoscale max_nodes must be >= min_nodes")
        if self.autoscale is not None and not 0 <= self.autoscale.spot_percent <= 100:
            raise ValueError("autoscale spot_percent must be between 0 and 100")
