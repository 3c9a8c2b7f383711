"""`runner results` of a job still running: exit 12 and say so, or wait with --wait."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from runner.cli import app
from tests.e2e.test_submit import write_corpus


def _invoke(outputs_file: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--outputs", str(outputs_file), *args], catch_exceptions=False)


def test_results_of_a_running_job_exit_12_then_wait_gives_them(tmp_path: Path, outputs_file: Path) -> None:
    write_corpus(tmp_path / "in", {"a.txt": 10, "b.txt": 12})
    job_id = "e2e-results-running"
    go = tmp_path / "go"
    command = f"while ! test -e {go}; do sleep 0.1; done; wc -w < {{input}} > {{output_dir}}/n"
    sub = _invoke(
        outputs_file, "submit", str(tmp_path / "in"), "--job-id", job_id, "--command", command, "--no-wait"
    )
    assert sub.exit_code == 0, sub.stderr

    early = _invoke(outputs_file, "--json", "results", job_id, "--dest", str(tmp_path / "r"))
    assert early.exit_code == 12, early.stderr
    assert f"job {job_id} is still running: 0 of 2 task(s) completed" in early.stderr
    assert f"runner results {job_id} --wait" in early.stderr
    assert early.stdout == "" and not (tmp_path / "r").exists()

    go.touch()

    done = _invoke(outputs_file, "--json", "results", job_id, "--dest", str(tmp_path / "r"), "--wait")
    assert done.exit_code == 0, done.stderr
    assert [f["status"] for f in json.loads(done.stdout)["files"]] == ["succeeded", "succeeded"]
    assert (tmp_path / "r" / "files" / "b.txt.out" / "n").read_text().strip() == "12"
