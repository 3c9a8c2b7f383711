"""Monitoring cost per poll: the runner's task counts vs. listing every task (not a test).

A job holds N tasks (added with :meth:`runner.batch.Batch.add_tasks` on a
pool with 0 nodes, so they stay active). A counting proxy (see
:class:`harness.TcpProxy`) sits in front of localbatch and counts HTTP
requests and the bytes localbatch sends back (headers included).

Ours: one poll is :meth:`runner.batch.Batch.task_counts` (the SDK's
``get_job_task_counts``), as ``runner submit`` polls. Baseline: the
tutorial's poll, the SDK's ``list_tasks`` iterated to the end (every task,
every property; the service pages by 1,000). Several polls of each are
averaged.

Full: N = 10,000. Quick: N = 2,000.
Goals (issue 6): O(1) requests per poll (here: exactly 1), >= 100x fewer bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for _p in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from azure.batch import BatchClient  # noqa: E402
from azure.core.credentials import AzureNamedKeyCredential  # noqa: E402
from bench_submission import noop_specs  # noqa: E402
from harness import Row, TcpProxy, local_servers, port_of, ratio_str, size_str, with_endpoints  # noqa: E402

from runner.batch import Batch  # noqa: E402
from runner.outputs import Outputs  # noqa: E402
from runner.pool_spec import PoolSpec  # noqa: E402

GOAL_BYTES_RATIO = 100.0
JOB = "monitored"


def poll_cost(proxy: TcpProxy, poll: Callable[[], object], polls: int) -> tuple[float, float, float]:
    """(requests, response bytes, seconds) per poll, averaged over ``polls`` calls of ``poll``."""
    before = proxy.snapshot()
    t0 = time.perf_counter()
    for _ in range(polls):
        poll()
    elapsed = time.perf_counter() - t0
    after = proxy.snapshot()
    return (
        (after.requests - before.requests) / polls,
        (after.response_bytes - before.response_bytes) / polls,
        elapsed / polls,
    )


def measure(
    outputs: Outputs, job_id: str, expected: int, polls: int, *, with_listing: bool = True
) -> dict[str, tuple[float, float, float]]:
    """Poll costs through a fresh counting proxy in front of ``outputs``' Batch endpoint.

    ``ours`` always; ``tutorial`` (listing every task) when ``with_listing``.
    """
    with TcpProxy(port_of(outputs.batch_account_url), count=True) as proxy:
        proxied = with_endpoints(outputs, batch_port=proxy.port)
        batch = Batch(proxied)
        client = BatchClient(
            proxied.batch_account_url,
            AzureNamedKeyCredential(proxied.batch_account_name, proxied.batch_account_key or ""),
        )
        seen: set[int] = set()

        def counts_poll() -> None:
            seen.add(batch.task_counts(job_id).total)

        def list_poll() -> None:
            seen.add(sum(1 for _ in client.list_tasks(job_id)))

        batch.task_counts(job_id)  # opens the connection: not counted below
        ours = poll_cost(proxy, counts_poll, polls * 5)
        costs = {"ours": ours}
        if with_listing:
            costs["tutorial"] = poll_cost(proxy, list_poll, polls)
        if seen != {expected}:
            raise RuntimeError(f"expected {expected} tasks in every poll, saw {sorted(seen)}")
    return costs


def run(quick: bool) -> list[Row]:
    n = 2_000 if quick else 10_000
    pool = PoolSpec(pool_id="bench-idle", dedicated_nodes=0)
    with local_servers(pool, prefix="bench-monitoring-") as srv:
        batch = Batch(srv.outputs)
        batch.ensure_job(JOB, pool.pool_id, uses_task_dependencies=False)
        batch.add_tasks(JOB, noop_specs(n))
        cost = measure(srv.outputs, JOB, n, polls=2)
    (o_req, o_bytes, o_s), (t_req, t_bytes, t_s) = cost["ours"], cost["tutorial"]
    return [
        Row(
            f"monitoring: requests per poll, {n:,}-task job (task counts vs list every task)",
            f"{o_req:g} request ({o_s * 1000:.1f} ms)",
            f"{t_req:g} requests ({t_s * 1000:.0f} ms)",
            ratio_str(t_req / o_req),
            "O(1): 1 request per poll",
            o_req == 1,
        ),
        Row(
            f"monitoring: response bytes per poll, {n:,}-task job",
            size_str(o_bytes),
            size_str(t_bytes),
            ratio_str(t_bytes / o_bytes),
            f">= {GOAL_BYTES_RATIO:.0f}x fewer bytes",
            t_bytes / o_bytes >= GOAL_BYTES_RATIO,
        ),
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
