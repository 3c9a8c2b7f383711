"""``runner report``: the HTML report, the trace and the JSON of real local jobs."""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.report.conftest import HOSTILE, Job, invoke


def _figures(html: str) -> dict[str, Any]:
    """The page's charts: ``specs`` (Vega-Lite, by element id) and ``data`` (their datasets)."""
    m = re.search(r'<script type="application/json" id="figures">(.*?)</script>', html, re.S)
    assert m is not None
    return json.loads(m.group(1))


def _on_timeline(figs: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in figs["data"]["tasks"] if t["row"] is not None]


def _time(value: str) -> datetime:
    t = datetime.fromisoformat(value)
    assert t.tzinfo is not None, value
    return t


def test_report_json_has_every_task_with_node_and_times(word_job: Job, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = invoke(word_job.outputs_file, "--json", "report", word_job.id, "-o", str(out))
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    tasks = doc["tasks"]
    assert len(tasks) == word_job.n_tasks
    assert [t["id"] for t in tasks] == [str(i) for i in range(1, 13)] + ["merge"]
    for t in tasks:
        assert t["state"] == "completed" and t["exitCode"] == 0 and t["node"]
        created, start, end = _time(t["created"]), _time(t["start"]), _time(t["end"])
        assert created <= start <= end
        assert abs(t["duration"] - (end - start).total_seconds()) < 0.01
        assert abs(t["queueWait"] - (start - created).total_seconds()) < 0.01
        assert t["bytesOut"] and t["bytesOut"] > 0
    files, merge = tasks[:-1], tasks[-1]
    assert all(t["bytesIn"] > 0 and t["input"].startswith("part-") for t in files)
    assert merge["kind"] == "merge" and _time(merge["start"]) >= max(_time(t["end"]) for t in files)
    s = doc["summary"]
    assert s["counts"] == {"done": 13}
    assert s["wallTime"] >= max(t["duration"] for t in tasks)
    assert 0 < s["slotUtilisation"] <= 1.0
    assert s["bytesIn"] == sum(t["bytesIn"] for t in files)
    assert "Standard_D2s_v5" in s["priceSource"] and s["estimatedCost"] > 0
    assert res.stderr.count("report:") == 1 and Path(doc["report"]) == out


def test_report_html_is_self_contained_with_one_bar_per_task(word_job: Job, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    res = invoke(word_job.outputs_file, "report", word_job.id, "--output", str(out), "--price", "0.5")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == str(out)
    html = out.read_text(encoding="utf-8")
    library_end = html.index("</script>")  # the inline Vega bundle comes first (its code holds markup)
    assert "window.vegaEmbed" in html[:library_end]
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html[library_end:])  # nothing fetched
    assert len(html) > 500_000  # the library itself is inline
    figs = _figures(html)
    assert set(figs["specs"]) == {"timeline", "queue", "nodes", "durations", "waits"}
    assert [layer["mark"]["type"] for layer in figs["specs"]["timeline"]["layer"]] == ["bar"]
    bars = _on_timeline(figs)
    assert len(bars) == word_job.n_tasks
    assert sorted({t["cat"] for t in bars}) == ["merge", "succeeded"]
    assert sum(t["ran"] is not None for t in figs["data"]["tasks"]) == word_job.n_tasks
    assert max(p["n"] for p in figs["data"]["nodes"]) == 2  # the pool's two nodes
    assert "--price 0.5 per node-hour" in html and "No task failed." in html


def test_trace_tsv_has_one_line_per_task(word_job: Job, tmp_path: Path) -> None:
    trace = tmp_path / "sub" / "trace.tsv"
    res = invoke(
        word_job.outputs_file, "report", word_job.id, "-o", str(tmp_path / "r.html"), "--trace", str(trace)
    )
    assert res.exit_code == 0, res.stderr
    rows = list(csv.DictReader(trace.open(encoding="utf-8"), delimiter="\t"))
    assert len(rows) == word_job.n_tasks
    assert list(rows[0]) == [
        "id", "input", "kind", "node", "slot", "state", "result", "exitCode", "created", "start",
        "end", "queueWait", "duration", "retries", "requeues", "bytesIn", "bytesOut",
    ]  # fmt: skip
    merge = rows[-1]
    assert merge["id"] == "merge" and merge["bytesIn"] == "" and merge["retries"] == "0"
    assert _time(merge["start"]) <= _time(merge["end"])
    assert float(rows[0]["duration"]) >= 0


def test_failures_are_grouped_with_the_command_to_see_the_log(failing_job: Job, tmp_path: Path) -> None:
    written = failing_job.dest / "report.html"  # by submit --report, despite the failures
    assert written.is_file(), failing_job.submit.stderr
    assert f"report: {written}" in failing_job.submit.stderr
    html = written.read_text(encoding="utf-8")
    assert "exit code 3: 4 task(s)" in html and "exit code 5: 1 task(s)" in html
    assert html.index("exit code 3: 4 task(s)") < html.index("exit code 5: 1 task(s)")
    assert html.count("cannot parse: unexpected byte 0xff") == 1  # one group, one tail
    assert len(re.findall(rf"runner logs {failing_job.id} \d+ --stderr", html)) == 2  # one per group
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;-bad" in html
    bars = _on_timeline(_figures(html))
    assert sum(t["cat"] == "failed" for t in bars) == 5
    retried = [t for t in bars if t["cat"] == "retried"]
    assert [(t["input"], t["retries"], t["exit"]) for t in retried] == [("flaky-1.txt", 1, 0)]


def test_report_refuses_a_directory_as_output(word_job: Job, tmp_path: Path) -> None:
    res = invoke(word_job.outputs_file, "report", word_job.id, "-o", str(tmp_path))
    assert res.exit_code == 2
    assert f"--output {tmp_path} is a directory" in res.stderr


def test_report_of_a_missing_job_is_exit_5(word_job: Job, tmp_path: Path) -> None:
    res = invoke(word_job.outputs_file, "report", "no-such-job", "-o", str(tmp_path / "x.html"))
    assert res.exit_code == 5, res.stderr
    assert not (tmp_path / "x.html").exists()
