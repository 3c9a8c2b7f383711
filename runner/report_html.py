"""The execution report: one self-contained HTML file (Plotly's bundled plotly.js, inline).

Contracts:

* :func:`render` returns a complete HTML document that needs no network: the
  chart library, styles and data are inline.
* Every value that came from data (input names, stderr, ids) is HTML-escaped
  in markup, and the JSON in the page's script cannot close its ``<script>``.
* The timeline (``#timeline``) draws one bar per task that ran (trace names
  ``run: …``) while that stays readable; above :data:`MAX_BARS` tasks, or when
  most bars would be thinner than a pixel, it shows per-slot occupancy per time
  bin instead (a heatmap) and marks failed tasks on it. The page states which.
* Once every chart is drawn, ``<body>`` gets ``data-rendered="ok"``; a script
  error sets ``data-error``.
"""

from __future__ import annotations

import html
import json
import statistics
from datetime import datetime, timedelta
from typing import Any

from runner.exec_summary import Summary, node_count_series
from runner.execution import Execution, TaskRecord
from runner.trace import iso

#: Above this many tasks that ran, the timeline aggregates.
MAX_BARS = 2000
#: Width of the timeline's plot area the aggregation rule assumes, in pixels.
PLOT_WIDTH_PX = 1100
#: Time bins of the aggregated timeline (about two pixels each).
BINS = 550

_COLOURS = {
    "succeeded": "#2f7ed8",
    "retried": "#f28f43",
    "failed": "#d62728",
    "merge": "#8e44ad",
    "partial-merge": "#b07cc6",
}


def plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # the bundled plotly.min.js: no network

    return str(get_plotlyjs())


def human(td: timedelta | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``; '-' when unknown."""
    if td is None:
        return "-"
    s = td.total_seconds()
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int((s % 3600) // 60):02d} min"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def short_node(node_id: str | None) -> str:
    """A node id short enough for an axis label (Azure's are ~70 characters); hovers show it whole."""
    node = node_id or "?"
    return node if len(node) <= 18 else f"{node[:8]}…{node[-6:]}"


def row_label(t: TaskRecord) -> str:
    return f"{short_node(t.node_id)} / slot {(t.slot or 0) + 1}"


def _category(t: TaskRecord) -> str:
    if t.failed:
        return "failed"
    if t.kind != "file":
        return t.kind
    return "retried" if t.retries or t.requeues else "succeeded"


def _hover(t: TaskRecord) -> str:
    parts = [
        f"task {t.id}: {t.input}",
        f"node {t.node_id}, slot {(t.slot or 0) + 1}",
        f"queued {human(t.queue_wait)}, ran {human(t.duration)}",
        f"state {t.state}" + (f", exit code {t.exit_code}" if t.exit_code is not None else ""),
    ]
    if t.retries or t.requeues:
        parts.append(f"retries {t.retries}, requeues {t.requeues}")
    return "<br>".join(html.escape(p) for p in parts)


def ran(ex: Execution) -> list[TaskRecord]:
    return [t for t in ex.tasks if t.start is not None and t.node_id is not None]


def aggregated(ex: Execution, summary: Summary) -> bool:
    """Whether the timeline shows occupancy instead of one bar per task."""
    tasks = ran(ex)
    if len(tasks) > MAX_BARS:
        return True
    wall = summary.wall.total_seconds()
    if not tasks or wall <= 0:
        return False
    widths = [(_end(t, ex) - _start(t)).total_seconds() / wall * PLOT_WIDTH_PX for t in tasks]
    return len(tasks) > 50 and statistics.median(widths) < 1.0


def _start(t: TaskRecord) -> datetime:
    assert t.start is not None
    return t.start


def _end(t: TaskRecord, ex: Execution) -> datetime:
    return t.end or ex.gathered_at


def _rows(ex: Execution) -> list[str]:
    labels = {row_label(t): (t.node_id or "", t.slot or 0) for t in ran(ex)}
    return sorted(labels, key=lambda k: labels[k])


def timeline_bars(ex: Execution) -> list[dict[str, Any]]:
    """One horizontal bar trace per category; each bar spans a task's start to its end."""
    by_cat: dict[str, list[TaskRecord]] = {}
    for t in ran(ex):
        by_cat.setdefault(_category(t), []).append(t)
    traces = []
    for cat in _COLOURS:
        tasks = by_cat.get(cat, [])
        if not tasks:
            continue
        traces.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": f"run: {cat}",
                "y": [row_label(t) for t in tasks],
                "base": [iso(t.start) for t in tasks],
                "x": [max((_end(t, ex) - _start(t)).total_seconds() * 1000, 1.0) for t in tasks],
                "text": ["merge" if t.kind == "merge" else "" for t in tasks],
                "textposition": "inside",
                "hovertext": [_hover(t) for t in tasks],
                "hoverinfo": "text",
                "marker": {
                    "color": _COLOURS[cat],
                    "line": {"color": "#7a1010" if cat == "failed" else "rgba(0,0,0,0.25)", "width": 1},
                },
            }
        )
    return traces


def timeline_heatmap(ex: Execution, summary: Summary) -> list[dict[str, Any]]:
    """Busy fraction per slot per time bin, with failed tasks marked (at their end)."""
    rows = _rows(ex)
    index = {r: i for i, r in enumerate(rows)}
    assert summary.start is not None and summary.end is not None
    span = max((summary.end - summary.start).total_seconds(), 1e-3)
    width = span / BINS
    busy = [[0.0] * BINS for _ in rows]
    for t in ran(ex):
        lo = (_start(t) - summary.start).total_seconds()
        hi = (_end(t, ex) - summary.start).total_seconds()
        line = busy[index[row_label(t)]]
        for b in range(max(int(lo // width), 0), min(int(hi // width) + 1, BINS)):
            overlap = min(hi, (b + 1) * width) - max(lo, b * width)
            if overlap > 0:
                line[b] += overlap / width
    times = [iso(summary.start + timedelta(seconds=(b + 0.5) * width)) for b in range(BINS)]
    heat = {
        "type": "heatmap",
        "name": "slot occupancy",
        "x": times,
        "y": rows,
        "z": [[round(min(v, 1.0), 3) for v in line] for line in busy],
        "zmin": 0,
        "zmax": 1,
        "colorscale": [[0, "#f4f6fb"], [1, _COLOURS["succeeded"]]],
        "colorbar": {"title": {"text": "busy"}},
        "hovertemplate": "%{y}<br>%{x}<br>busy %{z:.0%}<extra></extra>",
    }
    failed = [t for t in ran(ex) if t.failed][:MAX_BARS]
    marks = {
        "type": "scatter",
        "mode": "markers",
        "name": "failed task",
        "x": [iso(_end(t, ex)) for t in failed],
        "y": [row_label(t) for t in failed],
        "hovertext": [_hover(t) for t in failed],
        "hoverinfo": "text",
        "marker": {"color": _COLOURS["failed"], "symbol": "x", "size": 8},
    }
    return [heat, marks] if failed else [heat]


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": {"text": title, "x": 0, "font": {"size": 15}},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
        "paper_bgcolor": "white",
        "plot_bgcolor": "#fbfbfd",
        "font": {"family": "DejaVu Sans, Helvetica, Arial, sans-serif", "size": 12},
        "legend": {"orientation": "h", "x": 0.4, "y": 1.02, "xanchor": "left", "yanchor": "bottom"},
    }
    base.update(extra)
    return base


def timeline_figure(ex: Execution, summary: Summary) -> dict[str, Any]:
    rows = _rows(ex)
    agg = aggregated(ex, summary)
    data = timeline_heatmap(ex, summary) if agg and rows else timeline_bars(ex)
    layout = _layout(
        "Timeline: one row per node slot" + (" (occupancy per time bin)" if agg else ""),
        barmode="overlay",
        height=max(260, 60 + 22 * len(rows)),
        xaxis={"type": "date", "title": {"text": "time (UTC)"}},
        yaxis={"type": "category", "categoryorder": "array", "categoryarray": rows[::-1], "automargin": True},
    )
    return {"data": data, "layout": layout}


def nodes_figure(ex: Execution) -> dict[str, Any]:
    series = node_count_series(ex)
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "line": {"shape": "hv", "color": "#2a9d8f", "width": 2},
            "fill": "tozeroy",
            "name": "nodes",
            "x": [iso(t) for t, _ in series],
            "y": [n for _, n in series],
        }
    ]
    layout = _layout(
        "Nodes in the pool over time",
        height=240,
        xaxis={"type": "date"},
        yaxis={"rangemode": "tozero", "dtick": 1, "title": {"text": "nodes"}},
    )
    return {"data": data, "layout": layout}


def histogram_figure(title: str, values: list[float], colour: str) -> dict[str, Any]:
    data = [{"type": "histogram", "x": values, "marker": {"color": colour}, "nbinsx": 40, "name": title}]
    layout = _layout(
        title, height=260, xaxis={"title": {"text": "seconds"}}, yaxis={"title": {"text": "tasks"}}
    )
    return {"data": data, "layout": layout}


def figures(ex: Execution, summary: Summary) -> dict[str, dict[str, Any]]:
    """The page's charts by element id."""
    durations = [t.duration.total_seconds() for t in ex.tasks if t.duration is not None]
    waits = [t.queue_wait.total_seconds() for t in ex.tasks if t.queue_wait is not None]
    return {
        "timeline": timeline_figure(ex, summary),
        "nodes": nodes_figure(ex),
        "durations": histogram_figure("Task run time", durations, "#2f7ed8"),
        "waits": histogram_figure("Queue wait (creation to start)", waits, "#e9c46a"),
    }


def script_json(value: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``<``, ``>`` or ``&`` appear literally."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
