"""Autoscale pools: sample the service metrics, evaluate the formula, resize.

Each pool with ``enableAutoScale`` has one coroutine that records a sample of
its metrics every ``min(30 s, interval)`` (Batch samples every 30 s) and
evaluates its formula when enabled and then every ``autoScaleEvaluationInterval``.
The outcome is kept as the pool's ``autoScaleRun`` (``results`` or ``error``);
a successful run sets the pool's targets and resizes it with the formula's
``$NodeDeallocationOption``. The language itself is :mod:`localbatch.autoscale`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from localbatch import autoscale
from localbatch.errors import BatchError
from localbatch.models import NodeState, iso, parse_duration, utcnow

if TYPE_CHECKING:
    from localbatch.scheduler import Service

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = "PT15M"
BATCH_SAMPLE_PERIOD = 30.0


def formula_error(exc: autoscale.FormulaError) -> BatchError:
    """The service's 400 for a formula that is not valid."""
    return BatchError(
        400,
        "InvalidAutoScaleFormula",
        "The specified autoscale formula is invalid.",
        [("Message", exc.message[:500])],
    )


def check_formula(text: str) -> list[autoscale.Statement]:
    try:
        return autoscale.parse(text)
    except autoscale.FormulaError as exc:
        raise formula_error(exc) from None


class Autoscaler:
    """The autoscale side of :class:`~localbatch.scheduler.Service` (same event-loop thread)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.histories: dict[str, autoscale.SampleHistory] = {}
        self.loops: dict[str, asyncio.Task[None]] = {}

    def interval(self, pool: dict[str, Any]) -> float:
        return parse_duration(pool.get("autoScaleEvaluationInterval") or DEFAULT_INTERVAL).total_seconds()

    def start(self, pool: dict[str, Any]) -> None:
        """(Re)start the pool's loop: a first evaluation now, then one per interval."""
        key = pool["id"].lower()
        self.stop(key)
        period = min(BATCH_SAMPLE_PERIOD, max(0.05, self.interval(pool)))
        history = self.histories.get(key)
        if history is None or history.period != period:
            self.histories[key] = autoscale.SampleHistory(period)
        self.loops[key] = asyncio.create_task(self._loop(key))

    def stop(self, key: str) -> None:
        task = self.loops.pop(key, None)
        if task is not None:
            task.cancel()

    def stop_all(self) -> list[asyncio.Task[None]]:
        tasks = list(self.loops.values())
        for t in tasks:
            t.cancel()
        self.loops.clear()
        return tasks

    async def _loop(self, key: str) -> None:
        next_eval = 0.0
        while True:
            pool = self.service.pools.get(key)
            if pool is None or not pool.get("enableAutoScale") or pool["state"] != "active":
                return
            history = self.histories[key]
            now = time.time()
            history.record(self.sample(key), now)
            if now >= next_eval:
                interval = self.interval(pool)
                next_eval = now + interval
                try:
                    self.run(pool, pool["autoScaleFormula"], apply=True)
                except Exception:  # a background boundary: a bug must not stop the pool's autoscale
                    log.exception("autoscale evaluation of pool %s failed inside localbatch", pool["id"])
            await asyncio.sleep(history.period)

    def sample(self, key: str) -> dict[str, float]:
        """The pool's service metrics now: tasks of its active jobs by state."""
        svc = self.service
        active = running = succeeded = failed = 0
        for job in svc.jobs.values():
            if job["state"] != "active" or job["poolInfo"]["poolId"].lower() != key:
                continue
            for state, result, n, _slots in svc.store.task_counts(job["id"].lower()):
                if state == "active":
                    active += n
                elif state in ("running", "preparing"):
                    running += n
                elif state == "completed":
                    succeeded += n if result == "success" else 0
                    failed += n if result != "success" else 0
        pool = svc.pools.get(key) or {}
        nodes = [n for n in svc.nodes.values() if n.pool_key == key]
        return {
            "$ActiveTasks": float(active),
            "$RunningTasks": float(running),
            "$PendingTasks": float(active + running),
            "$SucceededTasks": float(succeeded),
            "$FailedTasks": float(failed),
            "$TaskSlotsPerNode": float(pool.get("taskSlotsPerNode", 1)),
            "$SampleNodeCount": float(len(nodes)),
        }

    def variables(self, pool: dict[str, Any]) -> dict[str, autoscale.Value]:
        key = pool["id"].lower()
        svc = self.service
        ded, low = svc.pool_counts(key)
        nodes = [n for n in svc.nodes.values() if n.pool_key == key]
        usable = (NodeState.IDLE.value, NodeState.RUNNING.value)
        return {
            "$TargetDedicatedNodes": float(pool.get("targetDedicatedNodes") or 0),
            "$TargetLowPriorityNodes": float(pool.get("targetLowPriorityNodes") or 0),
            "$NodeDeallocationOption": "requeue",
            "$CurrentDedicatedNodes": float(ded),
            "$CurrentLowPriorityNodes": float(low),
            "$PreemptedNodeCount": float(sum(n.doc["state"] == NodeState.PREEMPTED.value for n in nodes)),
            "$UsableNodeCount": float(sum(n.doc["state"] in usable for n in nodes)),
            "$TaskSlotsPerNode": float(pool.get("taskSlotsPerNode", 1)),
        }

    def run(self, pool: dict[str, Any], formula: str, apply: bool) -> dict[str, Any]:
        """Evaluate ``formula`` for the pool; return the AutoScaleRun (and resize if ``apply``).

        Raises the 400 ``InvalidAutoScaleFormula`` for a formula that does not parse.
        """
        statements = check_formula(formula)
        key = pool["id"].lower()
        history = self.histories.get(key)
        if history is None:
            history = self.histories[key] = autoscale.SampleHistory(BATCH_SAMPLE_PERIOD)
        if not history.samples:
            history.record(self.sample(key))
        variables = self.variables(pool)
        ctx = autoscale.Context(variables, history, time.time())
        run: dict[str, Any] = {"timestamp": iso(utcnow())}
        try:
            assigned = autoscale.evaluate(statements, ctx)
            targets = self._targets(variables)
        except autoscale.FormulaError as exc:
            run["error"] = {
                "code": "InvalidAutoScaleFormula",
                "message": "The autoscale evaluation failed due to an invalid formula.",
                "values": [{"name": "Message", "value": exc.message[:500]}],
            }
        else:
            shown = {**{k: variables[k] for k in autoscale.SETTABLE}, **assigned}
            run["results"] = ";".join(f"{k}={autoscale.render(v)}" for k, v in shown.items())
            if apply:
                self._apply(pool, *targets)
        if apply:
            pool["autoScaleRun"] = run
            self.service.store.put_pool(pool)
        return run

    def _targets(self, variables: dict[str, autoscale.Value]) -> tuple[int, int, str]:
        limit = self.service.config.max_nodes_per_pool
        out: list[int] = []
        for name in ("$TargetDedicatedNodes", "$TargetLowPriorityNodes"):
            value = variables[name]
            if not isinstance(value, float):
                raise autoscale.FormulaError(f"{name} must be a number", "evaluate")
            out.append(max(0, min(limit, int(value))))
        option = variables["$NodeDeallocationOption"]
        if not isinstance(option, str) or option.lower() not in autoscale.DEALLOCATION_OPTIONS:
            raise autoscale.FormulaError(
                "$NodeDeallocationOption must be one of " + ", ".join(autoscale.DEALLOCATION_OPTIONS),
                "evaluate",
            )
        return out[0], out[1], option.lower()

    def _apply(self, pool: dict[str, Any], dedicated: int, low: int, option: str) -> None:
        if (pool["targetDedicatedNodes"], pool["targetLowPriorityNodes"]) == (dedicated, low):
            return
        log.info("autoscale: pool %s to %d dedicated, %d low-priority nodes", pool["id"], dedicated, low)
        pool["targetDedicatedNodes"] = dedicated
        pool["targetLowPriorityNodes"] = low
        pool.pop("resizeErrors", None)
        pool["allocationStateTransitionTime"] = iso(utcnow())
        self.service.resize_nodes(pool, option)
