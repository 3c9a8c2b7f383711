"""Resume (`runner submit --job-id` of an existing job): changed inputs and options are refused.

A resume reuses the job's tasks. A task that succeeded cannot run again in Batch, so
an input whose content changed, or an option that went into the tasks, would bring
back results that do not match what the user asked for: refused, in one line,
before anything is uploaded.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from runner.cli import app
from runner.outputs import Outputs
from runner.storage import Storage
from tests.e2e.test_submit import reference_counts, top, write_corpus


def _invoke(outputs_file: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--outputs", str(outputs_file), *args], catch_exceptions=False)


def test_a_changed_input_is_refused_on_resume_and_nothing_is_uploaded(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    texts = write_corpus(tmp_path / "in", {"a.txt": 30, "b.txt": 30})
    job_id = "e2e-changed-input"
    args = ["--json", "submit", str(tmp_path / "in"), "--job-id", job_id, "--dest", str(tmp_path / "r")]
    first = _invoke(outputs_file, *args)
    assert first.exit_code == 0, first.stderr
    (tmp_path / "in" / "a.txt").write_text("new new new content", encoding="utf-8")

    res = _invoke(outputs_file, *args)
    assert res.exit_code == 2, res.stderr
    assert f"1 input(s) changed since job {job_id} ran them: a.txt" in res.stderr
    assert res.stdout == "" and "Traceback" not in res.stderr
    # The old content stays (it matches the old results): in the pack's input tar (runner.pack_tars).
    tar = Storage(target_outputs).download_bytes(target_outputs.input_container, f"{job_id}/packs/p1.tar")
    with tarfile.open(fileobj=io.BytesIO(tar)) as members:
        held = members.extractfile("1/a.txt")
        assert held is not None and held.read().decode("utf-8") == texts["a.txt"]

    (tmp_path / "in" / "a.txt").write_text(texts["a.txt"], encoding="utf-8")  # back as it was
    again = _invoke(outputs_file, *args)
    assert again.exit_code == 0, again.stderr
    a = next(f for f in json.loads(again.stdout)["files"] if f["input"] == "a.txt")
    assert a["top"] == top(reference_counts(texts["a.txt"]), 3)


@pytest.mark.parametrize(
    ("n", "first", "resume", "said"),
    [
        (1, (), ("--numwords", "5"), "--numwords 3 (now 5)"),
        (2, ("--retries", "2"), (), "--retries 2 (now 0)"),
        (3, (), ("--retries", "1"), "--retries 0 (now 1)"),
        (4, (), ("--max-wall-clock", "60"), "--max-wall-clock unset (now 60)"),
    ],
)
def test_options_that_made_the_tasks_are_refused_on_resume(
    tmp_path: Path, outputs_file: Path, n: int, first: tuple[str, ...], resume: tuple[str, ...], said: str
) -> None:
    write_corpus(tmp_path / "in", {"a.txt": 10})
    job_id = f"e2e-resume-opt-{n}"
    base = ["submit", str(tmp_path / "in"), "--job-id", job_id, "--no-wait"]
    assert _invoke(outputs_file, *base, *first).exit_code == 0
    res = _invoke(outputs_file, *base, *resume)
    assert res.exit_code == 2, res.stderr
    assert f"job {job_id} was submitted with {said}" in res.stderr
    assert "tasks:" not in res.stderr  # refused before anything was added
