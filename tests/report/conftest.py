"""Real local jobs for the report tests, submitted once per session through the runner's CLI.

``word_job``: 12 small text files counted by nodetask, plus the merge task.
``failing_job``: a ``--command`` job with ``--retries 1`` where 4 of 10 inputs exit 3 with the
same stderr (one of them named like markup), one exits 5 (two failure groups), and one fails
its first attempt only (a retried success).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from runner.cli import app
from tests.e2e.test_submit import write_corpus
from tests.runner.conftest import outputs_file, storage_outputs, target_outputs

__all__ = ["outputs_file", "storage_outputs", "target_outputs"]


@dataclass(frozen=True)
class Job:
    id: str
    outputs_file: Path
    dest: Path
    n_tasks: int
    submit: Result


def invoke(outputs_file: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--outputs", str(outputs_file), *args], catch_exceptions=False)


@pytest.fixture(scope="session")
def word_job(tmp_path_factory: pytest.TempPathFactory, outputs_file: Path) -> Job:
    root = tmp_path_factory.mktemp("words")
    write_corpus(root / "in", {f"part-{i:02d}.txt": 300 + 40 * i for i in range(12)})
    dest = root / "results"
    args = ["--job-id", "report-words", "--dest", str(dest), "--pack", "none"]  # a task per file
    res = invoke(outputs_file, "submit", str(root / "in"), *args)
    assert res.exit_code == 0, res.stderr
    return Job("report-words", outputs_file, dest, 13, res)


HOSTILE = "<img src=x onerror=alert(1)>-bad"
FAILING_SCRIPT = """\
case "$1" in
  *bad*) echo "cannot parse: unexpected byte 0xff" >&2; exit 3 ;;
  *worse*) echo "out of memory" >&2; exit 5 ;;
  *flaky*) [ -e "$FLAKY_MARK" ] || { touch "$FLAKY_MARK"; echo "transient" >&2; exit 9; } ;;
esac
wc -w < "$1" > "$2/words.txt"
"""


@pytest.fixture(scope="session")
def failing_job(tmp_path_factory: pytest.TempPathFactory, outputs_file: Path) -> Job:
    root = tmp_path_factory.mktemp("failing")
    script = root / "job.sh"
    script.write_text(f"FLAKY_MARK={root / 'flaky-seen'}\n{FAILING_SCRIPT}")
    names = ["ok-1", "bad-1", "ok-2", "bad-2", "ok-3", "bad-3", "worse-1", "ok-4", HOSTILE, "flaky-1"]
    write_corpus(root / "in", {f"{n}.txt": 50 for n in names})
    dest = root / "results"
    res = invoke(
        outputs_file,
        "submit",
        str(root / "in"),
        "--job-id",
        "report-failing",
        "--dest",
        str(dest),
        "--command",
        f"/bin/sh {script} {{input}} {{output_dir}}",
        "--retries",
        "1",
        "--report",
    )
    assert res.exit_code == 10, res.stderr
    return Job("report-failing", outputs_file, dest, len(names), res)
