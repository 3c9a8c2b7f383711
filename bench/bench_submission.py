"""Task submission: the runner's path vs. one ``create_task`` per task (not a test).

Ours: :meth:`runner.batch.Batch.add_tasks` (lists the job's existing task
ids, then the SDK's ``create_tasks``: chunks of 100 sent in parallel) adds
N no-op tasks to a job. Baseline: the naive client, the SDK's ``create_task``
once per task, for M tasks on another job. Both send the same task bodies to
the same localbatch, on a pool with 0 nodes so nothing runs and the server
only stores tasks. Rates (tasks/s) are compared, since the counts differ.

Full: N = 10,000, M = 1,000. Quick: N = 2,000, M = 200.
Goals (issue 6): >= 20x the naive rate and >= 2,000 tasks/s.

``python bench/bench_submission.py [--quick]`` prints the rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _p in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from azure.batch import BatchClient  # noqa: E402
from azure.batch import models as bm  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402
from harness import Row, local_servers, ratio_str, timed  # noqa: E402

from runner.batch import Batch  # noqa: E402
from runner.pool_spec import PoolSpec  # noqa: E402
from runner.tasks import TaskSpec  # noqa: E402

GOAL_RATIO = 20.0
GOAL_RATE = 2000.0
NOOP = "/bin/true"


def noop_specs(n: int) -> list[TaskSpec]:
    return [
        TaskSpec(id=str(i), display_name=f"noop {i}", command_line=NOOP, resource_files=(), output_files=())
        for i in range(1, n + 1)
    ]


def naive_add(client: BatchClient, job_id: str, specs: list[TaskSpec]) -> None:
    """The naive client: one request per task."""
    for s in specs:
        client.create_task(
            job_id,
            bm.BatchTaskCreateOptions(id=s.id, display_name=s.display_name, command_line=s.command_line),
        )


def run(quick: bool) -> list[Row]:
    n, m = (2_000, 200) if quick else (10_000, 1_000)
    pool = PoolSpec(pool_id="bench-idle", dedicated_nodes=0)
    with local_servers(pool, prefix="bench-submission-") as srv:
        out = srv.outputs
        batch = Batch(out)
        batch.ensure_job("ours", pool.pool_id, uses_task_dependencies=False)
        batch.ensure_job("naive", pool.pool_id, uses_task_dependencies=False)
        specs = noop_specs(n)
        t_ours = timed(lambda: batch.add_tasks("ours", specs))
        added = batch.task_counts("ours").total
        client = BatchClient(
            out.batch_account_url,
            AzureNamedKeyCredential(out.batch_account_name, out.batch_account_key or ""),
        )
        t_naive = timed(lambda: naive_add(client, "naive", specs[:m]))
        naive_added = batch.task_counts("naive").total
    if added != n or naive_added != m:
        raise RuntimeError(f"expected {n}/{m} tasks, the server holds {added}/{naive_added}")
    rate_ours, rate_naive = n / t_ours, m / t_naive
    ratio = rate_ours / rate_naive
    return [
        Row(
            f"submission: {n:,} tasks, runner add_tasks vs one create_task per task ({m:,})",
            f"{rate_ours:,.0f} tasks/s ({t_ours:.1f} s)",
            f"{rate_naive:,.0f} tasks/s ({t_naive:.1f} s)",
            ratio_str(ratio),
            f">= {GOAL_RATIO:.0f}x and >= {GOAL_RATE:,.0f} tasks/s",
            ratio >= GOAL_RATIO and rate_ours >= GOAL_RATE,
        )
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
