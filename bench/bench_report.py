"""Execution report: how long headless Chromium takes to draw it, at 10 and 10,000 tasks.

Synthetic jobs (8 node slots, tasks back to back, 1% failed) are rendered by
``runner.report_page`` and opened in Debian's chromium through the DevTools
protocol (``tests/report/browser.py``); the page itself measures the time from
its first script to the last chart drawn (``data-render-ms``). Three cases:
10 tasks (one bar each), 10,000 tasks with one SVG bar per task forced (what
the aggregation avoids when bars would be under a pixel), and 10,000 tasks as the
report draws them by default (slot occupancy per time bin). The charts are
Vega-Lite (vl-convert-python's inline bundle), picked over Plotly by this
measurement: 10,000 bars drew in 1.7 s (Vega, SVG; 1.3 s canvas) against 9.7 s
(Plotly's bundled plotly.js, SVG bars), on the shared 2-core machine, 2026-12-01.
Usage: ``python bench/bench_report.py [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Row
from runner import report_html, report_page
from runner.batch_types import JobInfo, PoolInfo
from runner.execution import Execution, TaskRecord, assign_slots
from tests.report.browser import chromium_path, file_url, open_page

NODES, SLOTS = 4, 2


def synthetic(n: int) -> Execution:
    """``n`` tasks spread over NODES x SLOTS, 0.5-2 s each, created at once."""
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    clocks = [t0] * (NODES * SLOTS)
    tasks = []
    for i in range(n):
        k = min(range(len(clocks)), key=lambda j: clocks[j])
        start = clocks[k] + timedelta(milliseconds=20)
        end = start + timedelta(seconds=0.5 + (i * 7919 % 1500) / 1000)
        clocks[k] = end
        failed = i % 100 == 99
        tasks.append(
            TaskRecord(
                id=str(i + 1), input=f"corpus/part-{i:05d}.txt", kind="file", state="completed",
                result="failure" if failed else "success", exit_code=3 if failed else 0, failure=None,
                node_id=f"node-{k // SLOTS}", created=t0, start=start, end=end, retries=0, requeues=0,
                bytes_in=4096, bytes_out=512,
            )
        )  # fmt: skip
    job = JobInfo("bench-report", "completed", "pool", t0, None)
    pool = PoolInfo("pool", "active", "steady", "Standard_D2s_v5", SLOTS, NODES, 0, NODES, 0, False)
    return Execution(job, pool, (), tuple(assign_slots(tasks)), max(clocks))


def measure(ex: Execution, *, force_bars: bool) -> tuple[float, int, int]:
    """(render ms, timeline marks, HTML bytes) of the report of ``ex``."""
    saved = report_html.aggregated, report_page.aggregated
    if force_bars:
        report_html.aggregated = report_page.aggregated = lambda ex, s: False  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
            path = report_page.write(Path(tmp) / "report.html", ex)
            page = open_page(
                file_url(path),
                {
                    "ms": "Number(document.body.dataset.renderMs || -1)",
                    "marks": "document.querySelectorAll('#timeline .mark-rect path').length",
                },
                timeout=120,
            )
            return float(page.values["ms"]), int(page.values["marks"]), path.stat().st_size
    finally:
        report_html.aggregated, report_page.aggregated = saved


def run(quick: bool) -> list[Row]:
    if chromium_path() is None:
        return [Row("report render (chromium missing)", "-", "-", "-", "(reported)", None)]
    big = 2000 if quick else 10_000
    small_ms, small_marks, _ = measure(synthetic(10), force_bars=False)
    bars_ms, bars_marks, bars_size = measure(synthetic(big), force_bars=True)
    agg_ms, _, agg_size = measure(synthetic(big), force_bars=False)
    return [
        Row(
            f"report render in headless Chromium: 10 tasks ({small_marks} bars)",
            f"{small_ms:.0f} ms", "-", "-", "(reported)", None,
        ),
        Row(
            f"report render: {big:,} tasks, default (occupancy heatmap) vs one SVG bar per task",
            f"{agg_ms:.0f} ms ({agg_size / 1e6:.1f} MB)",
            f"{bars_ms:.0f} ms ({bars_marks:,} bars, {bars_size / 1e6:.1f} MB)",
            f"{bars_ms / max(agg_ms, 1):.1f}x", "< 2 s", agg_ms < 2000,
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row.case}: {row.ours} | baseline {row.baseline} | {row.ratio} | goal {row.goal}")
