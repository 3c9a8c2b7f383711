"""The execution report's charts: Vega-Lite specifications rendered by the inline Vega bundle.

Contracts:

* :func:`vega_js` is the Vega + Vega-Lite + vega-embed bundle that ships with
  ``vl-convert-python``: the page needs no network.
* :func:`chart_data` and :func:`figures` build the page's datasets and one
  Vega-Lite spec per chart element (``timeline``, ``queue``, ``nodes``,
  ``durations``, ``waits``); specs name their data (``tasks``, ``occupancy``,
  ``nodes``, ``queue``), and the page attaches the datasets once.
* The timeline draws one bar per task that ran while that stays readable
  (measured: 10,000 SVG bars draw in ~1.7 s in headless Chromium, where Plotly
  took ~9.7 s; ``bench/bench_report.py``); above :data:`MAX_BARS` tasks, or when
  most bars would be thinner than a pixel, it shows per-slot occupancy per time
  bin instead and marks failed tasks on it.
* :func:`script_json` output cannot close the page's ``<script>``; values from
  data reach the page only as JSON (tooltips are sanitised by vega-tooltip).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import statistics
from bisect import bisect_right
from datetime import datetime, timedelta
from typing import Any

from runner.exec_summary import Summary, node_count_series
from runner.execution import Execution, TaskRecord
from runner.trace import iso, seconds

log = logging.getLogger(__name__)

#: Above this many tasks that ran, the timeline aggregates.
MAX_BARS = 10_000
#: Width of the timeline's plot area, in pixels (the aggregation rule assumes it).
PLOT_WIDTH_PX = 1100
#: Time bins of the aggregated timeline (two pixels each).
BINS = 550

#: Task categories in legend order, with their colours.
COLOURS = {
    "succeeded": "#2f7ed8",
    "retried": "#f28f43",
    "failed": "#d62728",
    "partial-merge": "#b07cc6",
    "merge": "#8e44ad",
    "running": "#9aa5b8",
}


#: The Vega-Lite version bundled and named in every spec's ``$schema``.
VEGA_LITE_VERSION = "v6.4"
_GLOBALS = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"


def vega_js() -> str:
    """The charts' JavaScript (vega, vega-lite, vega-embed as bundled by vl-convert: no network).

    Bundling costs seconds of CPU, the same each time, so the bundle is kept in
    ``RUNNER_HOME/cache/`` under a name made of vl-convert's version, the Vega-Lite version
    and the globals it exports; a cache that cannot be read or written is only slower.
    """
    import vl_convert

    from runner.atomic import write_atomic
    from runner.home import runner_home

    version = importlib.metadata.version("vl-convert-python")
    tag = hashlib.sha256(f"{version}|{VEGA_LITE_VERSION}|{_GLOBALS}".encode()).hexdigest()
    path = runner_home() / "cache" / f"vega-bundle-{tag[:16]}.js"
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    bundle = str(vl_convert.javascript_bundle(_GLOBALS, VEGA_LITE_VERSION))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, bundle)
    except OSError as exc:
        log.debug("the chart bundle is not cached (%s): the next report bundles it again", exc)
    return bundle


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
    return node if len(node) <= 12 else f"{node[:5]}…{node[-6:]}"


def row_label(t: TaskRecord) -> str:
    return f"{short_node(t.node_id)} / slot {(t.slot or 0) + 1}"


def _category(t: TaskRecord) -> str:
    if t.failed:
        return "failed"
    if t.state != "completed":
        return "running"
    if t.kind != "file":
        return t.kind
    return "retried" if t.retries or t.requeues else "succeeded"


def ran(ex: Execution) -> list[TaskRecord]:
    return [t for t in ex.tasks if t.start is not None and t.node_id is not None]


def _start(t: TaskRecord) -> datetime:
    assert t.start is not None
    return t.start


def _end(t: TaskRecord, ex: Execution) -> datetime:
    return t.end or ex.gathered_at


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


def rows(ex: Execution) -> list[str]:
    """Timeline rows (node slots) in node, then slot order."""
    labels = {row_label(t): (t.node_id or "", t.slot or 0) for t in ran(ex)}
    return sorted(labels, key=lambda k: labels[k])


def task_datum(t: TaskRecord, ex: Execution) -> dict[str, Any]:
    return {
        "id": t.id,
        "input": t.input,
        "node": t.node_id,
        "row": row_label(t) if t.start is not None and t.node_id else None,
        "cat": _category(t),
        "state": t.state,
        "exit": t.exit_code,
        "created": iso(t.created),
        "start": iso(t.start),
        "end": iso(_end(t, ex)) if t.start is not None else None,
        "wait": seconds(t.queue_wait),
        "ran": seconds(t.duration),
        "retries": t.retries,
        "requeues": t.requeues,
    }


def occupancy(ex: Execution, summary: Summary) -> list[dict[str, Any]]:
    """Busy fraction of each slot in each of :data:`BINS` time bins (non-zero bins only)."""
    index = {r: i for i, r in enumerate(rows(ex))}
    if summary.start is None or summary.end is None or not index:
        return []
    span = max((summary.end - summary.start).total_seconds(), 1e-3)
    width = span / BINS
    busy = [[0.0] * BINS for _ in index]
    for t in ran(ex):
        lo = (_start(t) - summary.start).total_seconds()
        hi = (_end(t, ex) - summary.start).total_seconds()
        line = busy[index[row_label(t)]]
        for b in range(max(int(lo // width), 0), min(int(hi // width) + 1, BINS)):
            overlap = min(hi, (b + 1) * width) - max(lo, b * width)
            if overlap > 0:
                line[b] += overlap / width
    at = [iso(summary.start + timedelta(seconds=b * width)) for b in range(BINS + 1)]
    return [
        {"row": r, "t0": at[b], "t1": at[b + 1], "busy": round(min(v, 1.0), 3)}
        for r, i in index.items()
        for b, v in enumerate(busy[i])
        if v > 0
    ]


def queue_series(ex: Execution, summary: Summary) -> list[dict[str, Any]]:
    """Tasks waiting (created, not started) and running, sampled at :data:`BINS` + 1 times."""
    if summary.start is None or summary.end is None:
        return []
    created = sorted(c for c in (t.created or t.start for t in ex.tasks) if c is not None)
    started = sorted(_start(t) for t in ex.tasks if t.start is not None)
    ended = sorted(_end(t, ex) for t in ex.tasks if t.start is not None and t.end is not None)
    span = (summary.end - summary.start) / BINS
    out = []
    for b in range(BINS + 1):
        at = summary.end if b == BINS else summary.start + span * b  # no rounding short of the end
        c, s_, e = (bisect_right(xs, at) for xs in (created, started, ended))
        out.append({"t": iso(at), "state": "waiting", "n": max(c - s_, 0)})
        out.append({"t": iso(at), "state": "running", "n": max(s_ - e, 0)})
    return out


def chart_data(ex: Execution, summary: Summary) -> dict[str, list[dict[str, Any]]]:
    """The page's datasets, shared by its charts."""
    agg = aggregated(ex, summary)
    return {
        "tasks": [task_datum(t, ex) for t in ex.tasks],
        "occupancy": occupancy(ex, summary) if agg else [],
        "nodes": [{"t": iso(t), "n": n} for t, n in node_count_series(ex)],
        "queue": queue_series(ex, summary),
    }


_AXIS: dict[str, Any] = {"format": "%H:%M:%S", "title": "time (UTC)"}
_TIME: dict[str, Any] = {"type": "temporal", "scale": {"type": "utc"}, "axis": _AXIS}
_TOOLTIP = [
    {"field": "id", "title": "task"},
    {"field": "input"},
    {"field": "node"},
    {"field": "wait", "title": "queued (s)"},
    {"field": "ran", "title": "ran (s)"},
    {"field": "exit", "title": "exit code"},
    {"field": "retries"},
    {"field": "requeues"},
]


def _spec(title: str, height: int, **body: Any) -> dict[str, Any]:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "title": {"text": title, "anchor": "start", "fontSize": 15},
        "width": "container",
        "height": height,
        "config": {"font": "DejaVu Sans, Helvetica, Arial, sans-serif", "view": {"stroke": None}},
        **body,
    }


def _bar_layer(row_order: list[str], present: list[str]) -> dict[str, Any]:
    return {
        "data": {"name": "tasks"},
        "transform": [{"filter": "datum.row != null"}],
        "mark": {"type": "bar", "stroke": "#00000040", "strokeWidth": 0.5},
        "encoding": {
            "y": {"field": "row", "type": "nominal", "sort": row_order, "title": None},
            "x": {"field": "start", **_TIME},
            "x2": {"field": "end"},
            "color": {
                "field": "cat",
                "type": "nominal",
                "title": None,
                "scale": {"domain": present, "range": [COLOURS[c] for c in present]},
                "legend": {"orient": "top"},
            },
            "tooltip": _TOOLTIP,
        },
    }


def _occupancy_layers(row_order: list[str]) -> list[dict[str, Any]]:
    heat = {
        "data": {"name": "occupancy"},
        "mark": {"type": "rect"},
        "encoding": {
            "y": {"field": "row", "type": "nominal", "sort": row_order, "title": None},
            "x": {"field": "t0", **_TIME},
            "x2": {"field": "t1"},
            "color": {
                "field": "busy",
                "type": "quantitative",
                "scale": {"domain": [0, 1], "range": ["#dce8f7", COLOURS["succeeded"]]},
                "legend": {"orient": "top", "title": "slot busy", "format": ".0%"},
            },
            "tooltip": [
                {"field": "row"},
                {"field": "t0", "type": "temporal"},
                {"field": "busy", "format": ".0%"},
            ],
        },
    }
    failed = {
        "data": {"name": "tasks"},
        "transform": [{"filter": "datum.cat == 'failed' && datum.row != null"}],
        "mark": {"type": "point", "shape": "cross", "color": COLOURS["failed"], "filled": True, "size": 60},
        "encoding": {
            "y": {"field": "row", "type": "nominal", "sort": row_order},
            "x": {"field": "end", **_TIME},
            "tooltip": _TOOLTIP,
        },
    }
    return [heat, failed]


def timeline_spec(ex: Execution, summary: Summary) -> dict[str, Any]:
    order = rows(ex)
    agg = aggregated(ex, summary)
    cats = {_category(t) for t in ran(ex)}
    present = [c for c in COLOURS if c in cats]
    layers = _occupancy_layers(order) if agg else [_bar_layer(order, present)]
    title = "Timeline: one row per node slot" + (" (slot occupancy per time bin)" if agg else "")
    return _spec(title, max(60, 24 * len(order)), layer=layers, resolve={"scale": {"color": "independent"}})


def nodes_spec(ex: Execution) -> dict[str, Any]:
    top = max((n for _, n in node_count_series(ex)), default=0)
    ticks = {"values": list(range(top + 1))} if top <= 20 else {"tickMinStep": 1}
    return _spec(
        "Nodes in the pool over time",
        160,
        data={"name": "nodes"},
        mark={"type": "area", "interpolate": "step-after", "line": True, "color": "#2a9d8f", "opacity": 0.6},
        encoding={
            "x": {"field": "t", **_TIME, "axis": {**_AXIS, "tickCount": 8}},
            "y": {"field": "n", "type": "quantitative", "title": "nodes", "axis": {**ticks, "format": "d"}},
        },
    )


def queue_spec() -> dict[str, Any]:
    return _spec(
        "Tasks waiting and running",
        160,
        data={"name": "queue"},
        mark={"type": "area", "interpolate": "step-after"},
        encoding={
            "x": {"field": "t", **_TIME, "axis": {**_AXIS, "tickCount": 8}},
            "y": {"field": "n", "type": "quantitative", "stack": "zero", "title": "tasks"},
            "color": {
                "field": "state",
                "type": "nominal",
                "title": None,
                "scale": {"domain": ["running", "waiting"], "range": [COLOURS["succeeded"], "#e9c46a"]},
                "legend": {"orient": "top"},
            },
            "order": {"field": "state", "sort": "ascending"},
        },
    )


def histogram_spec(title: str, field: str, colour: str) -> dict[str, Any]:
    return _spec(
        title,
        180,
        data={"name": "tasks"},
        transform=[{"filter": f"datum.{field} != null"}],
        mark={"type": "bar", "color": colour},
        encoding={
            "x": {"field": field, "type": "quantitative", "bin": {"maxbins": 40}, "title": "seconds"},
            "y": {"aggregate": "count", "title": "tasks"},
        },
    )


def figures(ex: Execution, summary: Summary) -> dict[str, dict[str, Any]]:
    """The page's Vega-Lite specs by element id."""
    return {
        "timeline": timeline_spec(ex, summary),
        "queue": queue_spec(),
        "nodes": nodes_spec(ex),
        "durations": histogram_spec("Task run time", "ran", COLOURS["succeeded"]),
        "waits": histogram_spec("Queue wait (creation to start)", "wait", "#e9c46a"),
    }


def script_json(value: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``<``, ``>`` or ``&`` appear literally."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
