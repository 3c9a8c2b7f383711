"""Why nothing runs: the pool, in words a user can act on, while tasks wait.

:func:`runner.submit.monitor` calls :meth:`PoolWatcher.check` on every poll in
which tasks wait and none runs (so the user hears within one poll interval).
It reads the pool (one GET) and its nodes (one listing) and:

* raises :class:`~runner.errors.StartTaskFailed` (exit 9) when the start task
  failed on every node, and :class:`~runner.errors.PoolCannotGrow` (exit 13)
  when a fixed-size pool has no node and its resize stopped with errors
  (``resizeErrors``, allocation ``steady``): Batch does not retry that resize,
  so the tasks can never run until someone acts;
* otherwise reports one line when what it would say changes (at most once
  a minute for the same situation, as "since N min" moves): resizing, nodes
  booting, all nodes unusable or preempted, a fixed pool of 0 nodes, an
  autoscale pool at 0 (normal: it says when autoscale evaluates next), resize
  errors while some nodes run.

:class:`Slowness` warns when one poll takes longer than a threshold (30 s):
a service that stops answering is said, not silent.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from runner.batch_types import PoolHealth, PoolStatus
from runner.errors import PoolCannotGrow, StartTaskFailed
from runner.progress import Reporter
from runner.targets import Session

QUOTA_DOC = "docs/azure.md#prerequisites"
_READY = {"idle", "running"}
_BOOTING = {"creating", "starting", "waitingforstarttask", "rebooting", "reimaging"}


def _minutes(since: datetime | None) -> str:
    if since is None:
        return ""
    mins = int((datetime.now(timezone.utc) - since).total_seconds() // 60)
    return f" since {mins} min" if mins >= 1 else " since less than a minute"


def _errors(status: PoolStatus) -> str:
    return "; ".join(f"{e.code}: {e.message}".rstrip(": ") for e in status.resize_errors)


def describe(status: PoolStatus, health: PoolHealth) -> str | None:
    """One line on why the pool runs nothing, or ``None`` when it has nodes ready."""
    states = Counter(n.state.lower() for n in health.nodes)
    ready = sum(states[s] for s in _READY)
    head = f"pool {status.id}: {ready}/{status.target_nodes} nodes ready"
    if status.resize_errors:
        return f"{head}, resize error {_errors(status)} (see {QUOTA_DOC})"
    if ready:
        return None
    if status.allocation_state == "resizing":
        return f"{head}, resizing{_minutes(status.allocation_since)}"
    booting = sum(states[s] for s in _BOOTING)
    if booting:
        return f"{head} ({booting} starting)"
    if health.nodes:
        kinds = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        return f"{head} ({kinds}): no task can run until Batch recovers or replaces them"
    if status.autoscale:
        every = status.autoscale_interval or timedelta(minutes=15)
        mins = max(1, int(every.total_seconds() // 60))
        return f"pool {status.id}: waiting for the pool to scale up (autoscale evaluates every {mins} min)"
    return (
        f"pool {status.id} has no nodes (target {status.target_nodes}): no task can run until it is "
        "resized (Azure: `pulumi config set nodeCount N` then `pulumi up`)"
    )


def _cannot_grow(status: PoolStatus) -> bool:
    """Batch's word that the target is out of reach: a fixed-size pool with no node whose
    resize ended (``steady``) with errors. An autoscale pool tries again at its next evaluation."""
    return (
        bool(status.resize_errors)
        and status.current_nodes == 0
        and not status.autoscale
        and status.allocation_state == "steady"
    )


class PoolWatcher:
    """Reports (or fails on) a pool that runs nothing; see the module docstring."""

    REPEAT = timedelta(minutes=1)

    def __init__(self, session: Session, reporter: Reporter) -> None:
        self.session = session
        self.reporter = reporter
        self._said: str | None = None
        self._said_at = datetime.min.replace(tzinfo=timezone.utc)

    def check(self) -> None:
        pool_id = self.session.outputs.pool_id
        batch = self.session.batch
        health = batch.pool_health(pool_id)
        if health.all_failed and any(n.state.lower() == "starttaskfailed" for n in health.failed):
            self._start_task_failed(health)
        status = batch.pool_status(pool_id)
        if _cannot_grow(status):
            raise PoolCannotGrow(
                f"pool {pool_id}: 0/{status.target_nodes} nodes, resize error {_errors(status)}: "
                "Batch stopped resizing, no task can run",
                hint=f"raise the quota or pick another VM size or region (see {QUOTA_DOC}); the job "
                "waits for the pool and completes once its tasks ran, `runner cancel JOB` ends it now",
            )
        self._say(describe(status, health))

    def _say(self, line: str | None) -> None:
        now = datetime.now(timezone.utc)
        if line is None:
            self._said = None
            return
        if line != self._said or now - self._said_at >= self.REPEAT:
            self._said, self._said_at = line, now
            self.reporter.info(line)

    def _start_task_failed(self, health: PoolHealth) -> None:
        pool_id = self.session.outputs.pool_id
        node_errors = []
        for node in health.failed:
            tail = self.session.batch.node_start_task_stderr(pool_id, node.id)
            node_errors.append((node.id, tail or node.start_task_failure or f"state {node.state}"))
        raise StartTaskFailed(
            f"the start task failed on all {len(health.nodes)} node(s) of pool {pool_id}: no task can run",
            node_errors=node_errors,
            hint="fix the pool's start task (runner/pool_spec.py), then recreate the pool",
        )


class Slowness:
    """``with slowness.watch(): ...`` calls ``warn`` once if the block takes ``after`` seconds."""

    def __init__(self, after: float, warn: Callable[[], None]) -> None:
        self.after = after
        self.warn = warn

    @contextmanager
    def watch(self) -> Iterator[None]:
        timer = threading.Timer(self.after, self.warn)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
