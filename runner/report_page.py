"""The execution report's page: markup around the Vega-Lite charts of :mod:`runner.report_html`.

Contract: :func:`render` returns one self-contained HTML document (no network
needed); every value that came from data is escaped; :func:`write` writes it
atomically and returns the path.
"""

from __future__ import annotations

import html
import shlex
from pathlib import Path

from runner.exec_summary import FailureGroup, Summary, summarize
from runner.execution import Execution
from runner.report_html import (
    aggregated,
    chart_data,
    figures,
    human,
    human_bytes,
    script_json,
    short_node,
    vega_js,
)
from runner.trace import write_atomic

_CSS = """
body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#eef1f6}
header{background:#1d3557;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px;font-weight:600} header p{margin:4px 0 0;opacity:.85;font-size:13px}
main{padding:18px 28px;max-width:1400px}
section{background:#fff;border-radius:8px;padding:14px 18px;margin:0 0 16px;box-shadow:0 1px 3px #0002}
h2{font-size:16px;margin:0 0 10px}
#timeline,#queue,#nodes,#durations,#waits{display:block;width:100%}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.card{background:#f6f8fb;border-radius:6px;padding:8px 12px}
.card b{display:block;font-size:19px} .card span{font-size:12px;color:#5a6478}
.card.bad b{color:#c0392b}
.row{display:grid;grid-template-columns:1fr 1fr;gap:16px}
table{border-collapse:collapse;font-size:13px;width:100%} td,th{padding:4px 8px;text-align:left;
border-bottom:1px solid #e3e7ee} th{color:#5a6478;font-weight:600}
pre{background:#1d2330;color:#e9edf5;padding:8px 10px;border-radius:4px;font-size:12px;overflow:auto}
code{background:#eef1f6;padding:1px 4px;border-radius:3px;font-size:12px}
.note{font-size:12px;color:#5a6478} .fail p{font-size:13px;margin:4px 0}
.fail h3{color:#c0392b;font-size:14px;margin:8px 0 4px}
"""

_BOOT = """
(function(){
  var t0 = performance.now();
  var page = JSON.parse(document.getElementById('figures').textContent);
  window.addEventListener('error', function(e){ document.body.dataset.error = String(e.message); });
  Promise.all(Object.keys(page.specs).map(function(id){
    var spec = page.specs[id];
    spec.datasets = page.data;
    return vegaEmbed('#' + id, spec, {renderer: 'svg', actions: false});
  })).then(function(){
             document.body.dataset.renderMs = String(Math.round(performance.now() - t0));
             document.body.dataset.rendered = 'ok'; },
           function(err){ document.body.dataset.error = String(err); console.error(String(err)); });
})();
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _card(label: str, value: str, bad: bool = False) -> str:
    return f'<div class="card{" bad" if bad else ""}"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _summary_cards(ex: Execution, s: Summary) -> str:
    c = s.counts
    util = "unknown" if s.utilisation is None else f"{s.utilisation:.0%}"
    cost = s.cost
    amount = ""
    if cost.amount is not None:
        amount = f"≈ US${cost.amount:.2f}" if cost.amount >= 0.01 else "< US$0.01"
    cards = [
        _card("wall time", human(s.wall)),
        _card("tasks done", str(c.get("done", 0))),
        _card("tasks failed", str(c.get("failed", 0)), bad=c.get("failed", 0) > 0),
        _card("running / waiting", f"{c.get('running', 0)} / {c.get('waiting', 0)}"),
        _card("task time (sum of run times)", human(s.task_time)),
        _card("node time", human(s.node_time)),
        _card(f"slot utilisation ({ex.slots_per_node} slot(s)/node)", util),
        _card("bytes in / out", f"{human_bytes(s.bytes_in)} / {human_bytes(s.bytes_out)}"),
        _card("retries / requeues", f"{s.retries} / {s.requeues}"),
        _card("node-hours" + (f" ({amount})" if amount else ""), f"{cost.node_hours:.3f}"),
    ]
    return (
        '<section id="summary"><h2>Summary</h2><div class="cards">'
        + "".join(cards)
        + f'</div><p class="note">cost: {_e(cost.source)}</p>{_missing(ex)}</section>'
    )


def _missing(ex: Execution) -> str:
    """``--allow-failures``: the inputs the corpus result lacks, and why."""
    if not ex.missing_from_corpus:
        return ""
    files = len(ex.files) or sum(t.kind == "file" for t in ex.tasks)  # files, not packs
    items = "".join(
        f"<li>task {_e(m.task_id)} ({_e(m.input)}): {_e(m.why)}</li>" for m in ex.missing_from_corpus
    )
    head = (
        f"the corpus is merged without {len(ex.missing_from_corpus)} of {files} file(s) (--allow-failures):"
    )
    return f'<div id="missing"><p class="bad">{_e(head)}</p><ul>{items}</ul></div>'


def _slowest(s: Summary) -> str:
    rows = "".join(
        f"<tr><td>{_e(t.id)}</td><td>{_e(t.input)}</td><td title='{_e(t.node_id or '')}'>"
        f"{_e(short_node(t.node_id))}</td>"
        f"<td>{_e(human(t.duration))}</td><td>{_e(human(t.queue_wait))}</td></tr>"
        for t in s.slowest
    )
    head = "<tr><th>task</th><th>input</th><th>node</th><th>ran</th><th>queued</th></tr>"
    return f'<section id="slowest"><h2>Slowest tasks</h2><table>{head}{rows}</table></section>'


def _failure_group(job_id: str, g: FailureGroup) -> str:
    first = g.tasks[0].id
    more = f" … ({len(g.tasks) - 50} more)" if len(g.tasks) > 50 else ""
    ids = ", ".join(t.id for t in g.tasks[:50]) + more
    names = ", ".join(t.input for t in g.tasks[:10]) + (" …" if len(g.tasks) > 10 else "")
    cmd = f"runner logs {shlex.quote(job_id)} {shlex.quote(first)} --stderr"
    tail = f"<pre>{_e(g.stderr_tail)}</pre>" if g.stderr_tail else '<p class="note">no stderr</p>'
    return (
        f'<div class="fail"><h3>{_e(g.reason)}: {len(g.tasks)} task(s)</h3>'
        f"<p>tasks {_e(ids)}<br><span class='note'>{_e(names)}</span></p>{tail}"
        f"<p class='note'>see its log: <code>{_e(cmd)}</code></p></div>"
    )


def _failures(ex: Execution, s: Summary) -> str:
    if not s.failures:
        return '<section id="failures"><h2>Failures</h2><p>No task failed.</p></section>'
    body = "".join(_failure_group(ex.job.id, g) for g in s.failures)
    return f'<section id="failures"><h2>Failures, grouped by error</h2>{body}</section>'


def _notes(ex: Execution, agg: bool) -> str:
    notes = list(ex.notes)
    if agg:
        notes.insert(0, "the timeline shows slot occupancy per time bin: single tasks would be under a pixel")
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    title = "<h2>What this report could and could not know</h2>"
    return f'<section id="notes">{title}<ul class="note">{items}</ul></section>'


def _no_tasks(ex: Execution) -> str:
    """The section that stands for the charts of a job without Batch tasks."""
    cached = sum(1 for f in ex.files if f.status == "cached")
    why = (
        f"All {cached:,} files' results came from the result cache (computed by earlier jobs on "
        "this target), the corpus result too: there is no task to chart."
        if cached
        else "The job has no tasks: there is nothing to chart."
    )
    return f'<section id="no-tasks"><h2>No Batch task ran</h2><p>{_e(why)}</p></section>'


def _header(ex: Execution, s: Summary, target: str) -> str:
    pool = ex.pool
    where = f"pool {pool.id} ({pool.vm_size}, {pool.state})" if pool else f"pool {ex.job.pool_id}"
    span = ""
    if s.start is not None and s.end is not None:
        span = f" · {s.start:%Y-%m-%d %H:%M:%S} to {s.end:%H:%M:%S} UTC"
    return (
        f"<header><h1>Job {_e(ex.job.id)} — {_e(ex.job.state)}</h1>"
        f"<p>{_e(target)} · {_e(where)} · {len(ex.tasks)} task(s){_e(span)} · "
        f"gathered {ex.gathered_at:%Y-%m-%d %H:%M:%S} UTC</p></header>"
    )


def render(ex: Execution, *, target: str = "", price: float | None = None) -> str:
    """The whole report as one HTML document."""
    s = summarize(ex, price=price)
    agg = aggregated(ex, s)
    charts = (
        '<section><div id="timeline"></div></section><section><div id="queue"></div></section>'
        '<section><div id="nodes"></div></section>'
        '<div class="row"><section><div id="durations"></div></section>'
        '<section><div id="waits"></div></section></div>'
    )
    specs, data = figures(ex, s), chart_data(ex, s)
    if not ex.tasks:  # nothing ran: say why instead of five empty charts
        charts, specs, data = _no_tasks(ex), {}, {}
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>runner report: {_e(ex.job.id)}</title><style>{_CSS}</style>"
        f"<script>{vega_js()}</script></head><body>"
        + _header(ex, s, target)
        + "<main>"
        + _summary_cards(ex, s)
        + charts
        + _failures(ex, s)
        + _slowest(s)
        + _notes(ex, agg)
        + '</main><script type="application/json" id="figures">'
        + script_json({"specs": specs, "data": data})
        + "</script>"
        + f"<script>{_BOOT}</script></body></html>"
    )


def default_path(job_id: str, dest: Path | None = None) -> Path:
    return (dest or Path("results") / job_id) / "report.html"


def write(path: Path, ex: Execution, *, target: str = "", price: float | None = None) -> Path:
    """Render and write the report atomically; returns ``path``."""
    write_atomic(path, render(ex, target=target, price=price).encode("utf-8"))
    return path
