"""Figures about a job computed from an :class:`~runner.execution.Execution` (no I/O).

Contracts:

* Wall time runs from the first task's creation to the last task's end (to
  :attr:`Execution.gathered_at` while tasks still run). Task time is the sum
  of run times (last attempts). Node time is, per node, the part of the wall
  time it was in the pool, as far as known (see :mod:`runner.execution`).
  Slot utilisation is task time / (node time x slots per node).
* Costs are estimates: ``price`` per node-hour when given, else the dated
  table :data:`PRICES` by VM size, else none. The source is always stated.
* Failures are grouped by (exit code or failure, stderr tail).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from runner.execution import Execution, TaskRecord

#: Linux pay-as-you-go list prices per node-hour, US$, East US: an estimate only.
PRICES_AS_OF = "2026-12"
PRICES: dict[str, float] = {
    "standard_a1_v2": 0.043,
    "standard_d2s_v5": 0.096,
    "standard_d4s_v5": 0.192,
    "standard_d8s_v5": 0.384,
    "standard_d2s_v3": 0.096,
    "standard_d2ds_v5": 0.113,
    "standard_e2s_v5": 0.126,
    "standard_f2s_v2": 0.085,
    "standard_f4s_v2": 0.169,
}


@dataclass(frozen=True)
class Cost:
    node_hours: float
    price_per_node_hour: float | None
    source: str  # where the price comes from, or why there is none

    @property
    def amount(self) -> float | None:
        return None if self.price_per_node_hour is None else self.node_hours * self.price_per_node_hour


@dataclass(frozen=True)
class FailureGroup:
    reason: str  # "exit code 3" or "UserError: ResourceContainerAccessDenied"
    stderr_tail: str
    tasks: tuple[TaskRecord, ...]


@dataclass(frozen=True)
class Summary:
    start: datetime | None
    end: datetime | None
    wall: timedelta
    task_time: timedelta
    node_time: timedelta
    utilisation: float | None
    bytes_in: int | None
    bytes_out: int | None
    retries: int
    requeues: int
    counts: dict[str, int]
    slowest: tuple[TaskRecord, ...]
    cost: Cost
    failures: tuple[FailureGroup, ...]


def time_window(ex: Execution) -> tuple[datetime | None, datetime | None]:
    starts = [t.created or t.start for t in ex.tasks if (t.created or t.start) is not None]
    ends = [t.end for t in ex.tasks if t.end is not None]
    start = min(starts) if starts else None  # type: ignore[type-var]
    running = any(t.state in ("running", "preparing", "active") for t in ex.tasks)
    end = ex.gathered_at if running or not ends else max(ends)
    return start, (end if start is not None else None)


def node_intervals(ex: Execution) -> dict[str, tuple[datetime, datetime]]:
    """Per node: when it was (known to be) in the pool during the job's window."""
    start, end = time_window(ex)
    if start is None or end is None:
        return {}
    out: dict[str, tuple[datetime, datetime]] = {}
    present = {n.id: n for n in ex.nodes}
    ran: dict[str, list[TaskRecord]] = defaultdict(list)
    for t in ex.tasks:
        if t.node_id is not None and t.start is not None:
            ran[t.node_id].append(t)
    for node_id in sorted(set(present) | set(ran)):
        node = present.get(node_id)
        first_task = min((t.start for t in ran[node_id] if t.start is not None), default=None)
        if node is not None:  # still in the pool: there since it was allocated
            since = node.allocation_time or first_task or start
            lo, hi = max(since, start), end
        else:  # gone: known from its tasks only
            lo = first_task or start
            hi = max((t.end or end) for t in ran[node_id])
        if hi > lo:
            out[node_id] = (lo, hi)
    return out


def node_count_series(ex: Execution) -> list[tuple[datetime, int]]:
    """A step function: (time, nodes in the pool from then on) at every change."""
    events: list[tuple[datetime, int]] = []
    for lo, hi in node_intervals(ex).values():
        events += [(lo, 1), (hi, -1)]
    series: list[tuple[datetime, int]] = []
    n = 0
    for when, delta in sorted(events, key=lambda e: (e[0], e[1])):
        n += delta
        if series and series[-1][0] == when:
            series[-1] = (when, n)
        else:
            series.append((when, n))
    return series


def price_for(vm_size: str | None, price: float | None) -> tuple[float | None, str]:
    if price is not None:
        return price, f"--price {price:g} per node-hour"
    if vm_size and vm_size.lower() in PRICES:
        return (
            PRICES[vm_size.lower()],
            f"estimate: {vm_size} Linux pay-as-you-go list price, East US, as of {PRICES_AS_OF}",
        )
    return None, f"no price known for {vm_size or 'this VM size'}: pass --price"


def group_failures(tasks: list[TaskRecord]) -> list[FailureGroup]:
    groups: dict[tuple[str, str], list[TaskRecord]] = defaultdict(list)
    for t in tasks:
        reason = t.failure or (f"exit code {t.exit_code}" if t.exit_code is not None else "failed")
        groups[(reason, t.stderr_tail)].append(t)
    out = [FailureGroup(reason, tail, tuple(ts)) for (reason, tail), ts in groups.items()]
    return sorted(out, key=lambda g: (-len(g.tasks), g.reason))


def summarize(ex: Execution, *, price: float | None = None, slowest: int = 5) -> Summary:
    start, end = time_window(ex)
    wall = (end - start) if start is not None and end is not None else timedelta(0)
    durations = [t.duration for t in ex.tasks if t.duration is not None]
    task_time = sum(durations, timedelta(0))
    node_time = sum(((hi - lo) for lo, hi in node_intervals(ex).values()), timedelta(0))
    slot_time = node_time * ex.slots_per_node
    util = task_time / slot_time if slot_time > timedelta(0) else None
    ins = [t.bytes_in for t in ex.tasks if t.bytes_in is not None]
    outs = [t.bytes_out for t in ex.tasks if t.bytes_out is not None]
    counts: dict[str, int] = defaultdict(int)
    for t in ex.tasks:
        counts[status_word(t)] += 1
    ranked = sorted(
        (t for t in ex.tasks if t.duration is not None), key=lambda t: -(t.duration or timedelta(0))
    )
    per_hour, source = price_for(ex.pool.vm_size if ex.pool else None, price)
    return Summary(
        start=start,
        end=end,
        wall=wall,
        task_time=task_time,
        node_time=node_time,
        utilisation=util,
        bytes_in=sum(ins) if ins else None,
        bytes_out=sum(outs) if outs else None,
        retries=sum(t.retries for t in ex.tasks),
        requeues=sum(t.requeues for t in ex.tasks),
        counts=dict(counts),
        slowest=tuple(ranked[:slowest]),
        cost=Cost(node_time.total_seconds() / 3600, per_hour, source),
        failures=tuple(group_failures(ex.failed)),
    )


def status_word(t: TaskRecord) -> str:
    """done, failed, running or waiting: what a user asks of a task."""
    if t.state == "completed":
        return "failed" if t.failed else "done"
    if t.state in ("running", "preparing"):
        return "running"
    return "waiting"
