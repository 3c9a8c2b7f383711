"""The report in a real browser: headless Chromium (Debian's package) over the DevTools protocol.

In CI (``CI`` set) a missing chromium fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.report.browser import chromium_path, file_url, open_page
from tests.report.conftest import Job, invoke

MARKS = {
    "rendered": "document.body.dataset.rendered || ''",
    "error": "document.body.dataset.error || ''",
    "bars": "document.querySelectorAll('#timeline .mark-rect path').length",
    "charts": "document.querySelectorAll('.vega-embed svg').length",
}


@pytest.fixture(scope="module", autouse=True)
def _chromium() -> None:
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: CI must install it (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")


def _report(job: Job, path: Path) -> Path:
    res = invoke(job.outputs_file, "report", job.id, "-o", str(path))
    assert res.exit_code == 0, res.stderr
    return path


def test_report_renders_one_mark_per_task_without_console_errors(word_job: Job, tmp_path: Path) -> None:
    html = _report(word_job, tmp_path / "report.html")
    page = open_page(file_url(html), MARKS)
    assert page.values["rendered"] == "ok", page.values
    assert page.console_errors == [] and page.exceptions == []
    assert page.values["charts"] == 5
    assert page.requests == [file_url(html)]  # offline: the page itself, nothing else
    assert page.values["bars"] == word_job.n_tasks
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 20_000
    (tmp_path / "report.png").write_bytes(page.screenshot)


def test_failed_job_renders_and_hostile_names_stay_text(failing_job: Job, tmp_path: Path) -> None:
    html = _report(failing_job, tmp_path / "report.html")
    page = open_page(file_url(html), {**MARKS, "hostile": "document.querySelectorAll('main img').length"})
    assert page.values["rendered"] == "ok", page.values
    assert page.console_errors == [] and page.exceptions == []
    assert page.values["bars"] == failing_job.n_tasks
    assert page.values["hostile"] == 0  # the input named like an <img> tag is text, not markup


def test_a_script_error_is_seen(tmp_path: Path) -> None:
    """The harness itself: a page that throws is reported (so the checks above can fail)."""
    page_file = tmp_path / "broken.html"
    page_file.write_text("<html><body><script>console.error('boom'); undefinedFn();</script></body></html>")
    page = open_page(file_url(page_file), {"rendered": "document.body.dataset.rendered || ''"}, timeout=3)
    assert page.console_errors == ["boom"]
    assert len(page.exceptions) == 1 and "undefinedFn" in page.exceptions[0]
