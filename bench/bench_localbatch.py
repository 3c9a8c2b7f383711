"""Benchmark localbatch through the real SDK (not a test; prints a table).

Starts its own Azurite and localbatch (``runner.services``) in a temporary
directory and measures, in one run:

* adding 10,000 tasks with ``create_tasks`` (chunks of 100, ``max_concurrency=8``)
  against 1,000 tasks added one ``create_task`` at a time (per-task ratio);
* listing 10,000 tasks (all pages);
* 1,000 no-op tasks (``/bin/true``) completing on 2 nodes of 1 slot (tasks/s);
* the server's peak RSS (``VmHWM``) while it holds 100,000 tasks.

``--quick`` uses smaller counts. ``run(quick)`` returns the rows so that
``bench/run.py`` can combine benchmarks.

Usage: ``python -m bench.bench_localbatch [--quick]``
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.rest import HttpRequest

from runner import services


@dataclass(frozen=True)
class Row:
    """One benchmark result, as display strings."""

    case: str
    ours: str
    baseline: str
    ratio: str
    goal: str
    met: bool


@dataclass(frozen=True)
class Sizes:
    bulk: int
    single: int
    listed: int
    noop: int
    held: int


FULL = Sizes(bulk=10_000, single=1_000, listed=10_000, noop=1_000, held=100_000)
QUICK = Sizes(bulk=2_000, single=200, listed=2_000, noop=200, held=10_000)


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found")


def _tasks(prefix: str, n: int, command: str = "/bin/true") -> list[bm.BatchTaskCreateOptions]:
    return [bm.BatchTaskCreateOptions(id=f"{prefix}{i:06d}", command_line=command) for i in range(n)]


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark condition not met in time")
        time.sleep(0.05)


def _raw_list(client: BatchClient, first: str, limit: int) -> tuple[int, int]:
    """Follow odata.nextLink with signed raw requests; return (items, pages)."""
    url: str | None = first
    items = pages = 0
    while url and items < limit:
        if "api-version=" not in url:
            url += ("&" if "?" in url else "?") + "api-version=2025-06-01"
        resp = client.send_request(HttpRequest("GET", url))
        resp.raise_for_status()
        body = resp.json()
        items += len(body["value"])
        pages += 1
        url = body.get("odata.nextLink")
    return items, pages


def run(quick: bool = False) -> list[Row]:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-localbatch-") as tmp:
        root = Path(tmp)
        azurite = services.start_azurite(root / "azurite")
        key = base64.b64encode(os.urandom(64)).decode()
        batch = services.start_localbatch(
            root / "localbatch",
            account_name="bench",
            account_key=key,
            storage_blob_endpoint=azurite.url,
            storage_account_name=services.AZURITE_ACCOUNT_NAME,
            storage_account_key=services.AZURITE_ACCOUNT_KEY,
        )
        try:
            return _measure(BatchClient(batch.url, AzureNamedKeyCredential("bench", key)), batch.pid, sizes)
        finally:
            batch.stop()
            azurite.stop()


def _measure(client: BatchClient, pid: int, sizes: Sizes) -> list[Row]:
    rows: list[Row] = []
    # A pool without nodes holds tasks without running them.
    client.create_pool(bm.BatchPoolCreateOptions(id="holding", vm_size="x", target_dedicated_nodes=0))
    client.create_job(bm.BatchJobCreateOptions(id="hold", pool_info=bm.BatchPoolInfo(pool_id="holding")))

    start = time.perf_counter()
    client.create_tasks("hold", _tasks("bulk", sizes.bulk), max_concurrency=8)
    bulk_s = time.perf_counter() - start
    bulk_rate = sizes.bulk / bulk_s

    start = time.perf_counter()
    for task in _tasks("single", sizes.single):
        client.create_task("hold", task)
    single_s = time.perf_counter() - start
    single_rate = sizes.single / single_s
    rows.append(
        Row(
            f"add {sizes.bulk:,} tasks: create_tasks (100/chunk, 8 threads)",
            f"{bulk_rate:,.0f} tasks/s ({bulk_s:.2f} s)",
            f"{single_rate:,.0f} tasks/s one create_task at a time ({sizes.single:,} in {single_s:.2f} s)",
            f"{bulk_rate / single_rate:.1f}x",
            ">= 2,000 tasks/s",
            bulk_rate >= 2000,
        )
    )

    # Listing, twice: the raw REST pages (server + HTTP), and the SDK's list_tasks, which also
    # builds a model object per task (most of its time is that client-side deserialization).
    start = time.perf_counter()
    raw_listed, raw_pages = _raw_list(client, "/jobs/hold/tasks?maxresults=1000", sizes.listed)
    raw_s = time.perf_counter() - start
    start = time.perf_counter()
    listed = 0
    for page in client.list_tasks("hold", max_results=1000).by_page():
        listed += sum(1 for _ in page)
        if listed >= sizes.listed:
            break
    list_s = time.perf_counter() - start
    rows.append(
        Row(
            f"list {raw_listed:,} tasks ({raw_pages} pages of 1,000), raw REST",
            f"{raw_s:.2f} s ({raw_listed / raw_s:,.0f} tasks/s)",
            f"SDK list_tasks (models built client-side): {list_s:.2f} s",
            f"{list_s / raw_s:.1f}x",
            "<= 1 s raw",
            raw_s <= 1.0 and raw_listed >= sizes.listed and listed >= sizes.listed,
        )
    )

    client.create_pool(bm.BatchPoolCreateOptions(id="run", vm_size="x", target_dedicated_nodes=2))
    _wait(lambda: [n.state for n in client.list_nodes("run")] == ["idle", "idle"], 30)
    client.create_job(bm.BatchJobCreateOptions(id="noop", pool_info=bm.BatchPoolInfo(pool_id="run")))
    start = time.perf_counter()
    client.create_tasks("noop", _tasks("noop", sizes.noop), max_concurrency=8)
    _wait(lambda: client.get_job_task_counts("noop").task_counts.completed == sizes.noop, 600)
    noop_s = time.perf_counter() - start
    counts = client.get_job_task_counts("noop").task_counts
    noop_rate = sizes.noop / noop_s
    rows.append(
        Row(
            f"{sizes.noop:,} no-op tasks (/bin/true) on 2 nodes x 1 slot",
            f"{noop_rate:,.0f} tasks/s ({noop_s:.2f} s, {counts.succeeded:,} succeeded)",
            "-",
            "-",
            ">= 50 tasks/s",
            noop_rate >= 50 and counts.succeeded == sizes.noop,
        )
    )

    more = sizes.held - sizes.bulk - sizes.single
    start = time.perf_counter()
    client.create_tasks("hold", _tasks("more", more), max_concurrency=8)
    more_s = time.perf_counter() - start
    total = client.get_job_task_counts("hold").task_counts.active
    peak = _vm_hwm_mb(pid)
    rows.append(
        Row(
            f"server peak RSS holding {total:,} tasks",
            f"{peak:.0f} MB (VmHWM; last {more:,} added at {more / more_s:,.0f} tasks/s)",
            "-",
            "-",
            "< 300 MB",
            peak < 300 and total >= sizes.held,
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args(argv)
    rows = run(quick=args.quick)
    width = max(len(r.case) for r in rows)
    for r in rows:
        mark = "met" if r.met else "NOT MET"
        print(f"{r.case:<{width}}  {r.ours}  | baseline: {r.baseline}  | ratio: {r.ratio}", end="")
        print(f"  | goal {r.goal}: {mark}")
    return 0 if all(r.met for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
