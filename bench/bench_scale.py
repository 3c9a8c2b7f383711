"""Scale: a job of 100,000 tasks: peak memory, submission time, cost of a poll (not a test).

A child process does what ``runner submit`` does for N inputs once the
inputs are uploaded: it plans the tasks with :func:`runner.tasks.plan`
(real read-only SAS URLs from :class:`runner.storage.Storage` for every
input, the node code, the output container, and every per-file counts
blob the merge tasks read: 200 partial merges of 500 files and the final
merge, as :func:`runner.tasks.merge_steps` plans them) and adds them with
:meth:`runner.batch.Batch.add_tasks`. The child reports its time and its
peak RSS (``VmHWM``). The pool has 0 nodes, so the tasks stay active and
localbatch holds all of them; its peak RSS is read from ``/proc`` at the end.

Then one poll, the runner's way (:meth:`runner.batch.Batch.task_counts`),
through a counting proxy: requests and bytes of a poll of the N-task job
are compared with those of a poll of a 100-task job. Neither may grow.

Full: N = 100,000. Quick: N = 5,000. Goals (issue 6): runner and localbatch
each under 300 MB; no per-poll step that grows with the number of tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _p in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench_monitoring import measure as poll_costs  # noqa: E402
from bench_submission import noop_specs  # noqa: E402
from harness import Row, local_servers, peak_rss_mb, size_str  # noqa: E402

from runner.batch import Batch  # noqa: E402
from runner.outputs import load_file, write_file  # noqa: E402
from runner.pool_spec import PoolSpec  # noqa: E402
from runner.storage import Storage  # noqa: E402
from runner.tasks import PlannedInput, PlanOptions, counts_blob, merge_steps, plan, safe_node_name  # noqa: E402

GOAL_MB = 300.0
SMALL = 100
JOB, SMALL_JOB = "scale", "small"


def child_submit(outputs_file: Path, job_id: str, n: int) -> dict[str, float]:
    """The runner's steps 4-5 for ``n`` inputs (in the child); returns seconds and peak RSS."""
    t0 = time.perf_counter()
    outputs = load_file(outputs_file)
    storage, batch = Storage(outputs), Batch(outputs)
    expiry = datetime.now(timezone.utc) + timedelta(hours=3)
    opts = PlanOptions(
        job_id=job_id,
        numwords=3,
        retries=0,
        max_wall_clock=None,
        code_url=storage.blob_read_url(outputs.application_container, "nodetask/0123abcd.pyz", expiry),
        output_container_url=storage.container_write_url(outputs.output_container, expiry),
    )
    inputs = [
        PlannedInput(
            str(i),
            f"corpus/part{i:06d}.txt",
            storage.blob_read_url(outputs.input_container, f"{job_id}/inputs/corpus/part{i:06d}.txt", expiry),
        )
        for i in range(1, n + 1)
    ]
    # As runner.submit does: a read-only URL for each counts blob a merge task reads.
    node_names = {item.task_id: safe_node_name(item.relpath) for item in inputs}
    counts_urls = {
        tid: storage.blob_read_url(
            outputs.output_container, counts_blob(job_id, tid, node_names.get(tid)), expiry
        )
        for step in merge_steps(n)
        for tid in step.sources
    }
    specs = plan(inputs, opts, aggregate=True, counts_urls=counts_urls)
    t_plan = time.perf_counter() - t0
    plan_peak = peak_rss_mb(os.getpid())
    batch.ensure_job(job_id, outputs.pool_id, uses_task_dependencies=True)
    added = batch.add_tasks(job_id, specs)
    return {
        "seconds": time.perf_counter() - t0,
        "plan_seconds": t_plan,
        "plan_peak_mb": plan_peak,
        "added": added,
        "peak_mb": peak_rss_mb(os.getpid()),
    }


def run(quick: bool) -> list[Row]:
    n = 5_000 if quick else 100_000
    pool = PoolSpec(pool_id="bench-idle", dedicated_nodes=0)
    with local_servers(pool, prefix="bench-scale-") as srv, tempfile.TemporaryDirectory() as tmp:
        outputs_file = Path(tmp) / "outputs.json"
        write_file(outputs_file, srv.outputs)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(outputs_file), JOB, str(n)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the submitting child failed: {proc.stderr[-2000:]}")
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        total = n + len(merge_steps(n))  # the merge tasks
        if child["added"] != total:
            raise RuntimeError(f"the child added {child['added']} tasks, expected {total}")
        batch = Batch(srv.outputs)
        batch.ensure_job(SMALL_JOB, pool.pool_id, uses_task_dependencies=False)
        batch.add_tasks(SMALL_JOB, noop_specs(SMALL))
        big = poll_costs(srv.outputs, JOB, total, polls=1, with_listing=False)["ours"]
        small = poll_costs(srv.outputs, SMALL_JOB, SMALL, polls=1, with_listing=False)["ours"]
        server_mb = peak_rss_mb(srv.localbatch.pid)
    rate = total / child["seconds"]
    return [
        Row(
            f"scale: runner process planning + adding {total:,} tasks (peak RSS)",
            f"{child['peak_mb']:.0f} MB (after planning: {child['plan_peak_mb']:.0f} MB)",
            "-",
            "-",
            f"< {GOAL_MB:.0f} MB",
            child["peak_mb"] < GOAL_MB,
        ),
        Row(
            f"scale: localbatch holding {total:,} tasks (peak RSS)",
            f"{server_mb:.0f} MB",
            "-",
            "-",
            f"< {GOAL_MB:.0f} MB",
            server_mb < GOAL_MB,
        ),
        Row(
            f"scale: submission time, {total:,} tasks (plan with SAS URLs + add_tasks)",
            f"{child['seconds']:.1f} s ({rate:,.0f} tasks/s; plan {child['plan_seconds']:.1f} s)",
            "-",
            "-",
            "(reported)",
            None,
        ),
        Row(
            f"scale: one poll of the {total:,}-task job vs a {SMALL}-task job",
            f"{big[0]:g} request, {size_str(big[1])}, {big[2] * 1000:.1f} ms",
            f"{small[0]:g} request, {size_str(small[1])}, {small[2] * 1000:.1f} ms",
            f"{big[1] / small[1]:.2f}x bytes",
            "no growth: 1 request, ~same bytes",
            big[0] == small[0] == 1 and big[1] <= small[1] * 1.1,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("OUTPUTS", "JOB", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        outputs_file, job_id, n = args.child
        print(json.dumps(child_submit(Path(outputs_file), job_id, int(n))))
        return 0
    for row in run(args.quick):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
