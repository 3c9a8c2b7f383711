"""Ctrl-C (issue 13): exit 130 within a second or two, in every phase, the download included,
with no traceback; the resume hint repeats the program as it was invoked.

Real processes and real SIGINTs. A completed job with large outputs makes the
download phase long enough to interrupt at several moments; each run must end
within :data:`BOUND` seconds of the signal (the runner's own grace is 1.5 s;
the hang this guards against lasted until a third Ctrl-C).
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from pathlib import Path

import pytest

from tests.reliability_runner.conftest import RUNNER, Lines, OwnTarget, cmd, run

BOUND = 8.0
BIG_CMD = "head -c 40000000 /dev/zero > {output_dir}/big; : {input}"


@pytest.fixture(scope="module")
def big_job(tmp_path_factory: pytest.TempPathFactory, fast_pool: Path) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("bigout")
    (root / "in").mkdir()
    for i in range(6):
        (root / "in" / f"f{i}.txt").write_text(f"file {i}")
    job_id = "rel-int-download"
    res = run(fast_pool, "submit", str(root / "in"), "--command", BIG_CMD, "--job-id", job_id,
              "--dest", str(root / "first"), "--no-wait")  # fmt: skip
    assert res.returncode == 0, res.stderr
    return job_id, root / "in"


def _interrupt_after(argv: list[str], marker: str, delay: float) -> tuple[int, str, float]:
    proc = Lines(argv)
    proc.wait_for(lambda line: line.startswith(marker), timeout=240)
    time.sleep(delay)
    proc.interrupt()
    sent = time.monotonic()
    code, stderr, _ = proc.finish(timeout=60)
    return code, stderr, time.monotonic() - sent


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8])
def test_ctrl_c_during_the_download_exits_130_at_once(
    tmp_path: Path, fast_pool: Path, big_job: tuple[str, Path], delay: float
) -> None:
    job_id, inputs = big_job
    argv = cmd(fast_pool, "submit", str(inputs), "--command", BIG_CMD, "--job-id", job_id,
               "--dest", str(tmp_path / "r"))  # fmt: skip
    code, stderr, took = _interrupt_after(argv, "downloading", delay)
    assert code == 130, stderr
    assert took < BOUND, (took, stderr)
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert stderr.count("interrupted") == 1, stderr
    hint = next(line for line in stderr.splitlines() if "is resumable: " in line)
    program, *args = shlex.split(hint.split("is resumable: ", 1)[1])
    assert program == str(RUNNER)  # as invoked, not a bare `runner` that may not be on PATH
    assert args[args.index("--job-id") + 1] == job_id


def test_ctrl_c_during_runner_results_exits_130(
    tmp_path: Path, fast_pool: Path, big_job: tuple[str, Path]
) -> None:
    job_id, _ = big_job
    code, stderr, took = _interrupt_after(
        cmd(fast_pool, "results", job_id, "--dest", str(tmp_path / "r")), "downloading", 0.2
    )
    assert code == 130 and took < BOUND, (code, took, stderr)
    assert "Traceback" not in stderr, stderr


def test_the_resume_hint_keeps_the_program_as_invoked() -> None:
    from runner.interrupt import resume_command

    venv = resume_command("j1", [".venv/bin/runner", "submit", "a b"])
    assert venv == ".venv/bin/runner submit 'a b' --job-id j1"
    assert resume_command("j1", ["runner", "submit", "x", "--job-id", "j1"]) == "runner submit x --job-id j1"
    spaced = resume_command("j1", ["/opt/my runner/runner", "submit", "x"])
    assert spaced.startswith("'/opt/my runner/runner' ")


def test_ctrl_c_while_storage_stopped_answering_mid_download_exits_130(
    tmp_path: Path, own_target: OwnTarget
) -> None:
    """Azurite frozen (SIGSTOP) during the download: the download threads block on their
    sockets, and joining them would hold the process for the SDK's read timeout."""
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"f{i}.txt").write_text(f"file {i}")
    job_id = "rel-int-frozen"
    done = run(own_target.outputs_file, "submit", str(tmp_path / "in"), "--command", BIG_CMD,
               "--job-id", job_id, "--dest", str(tmp_path / "first"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    proc = Lines(cmd(own_target.outputs_file, "results", job_id, "--dest", str(tmp_path / "r")))
    proc.wait_for(lambda line: line.startswith("downloading"), timeout=120)
    os.kill(own_target.azurite.process.pid, signal.SIGSTOP)
    try:
        time.sleep(0.5)
        proc.interrupt()
        sent = time.monotonic()
        code, stderr, _ = proc.finish(timeout=60)
        took = time.monotonic() - sent
    finally:
        os.kill(own_target.azurite.process.pid, signal.SIGCONT)
    assert code == 130, stderr
    assert took < BOUND, (took, stderr)
    assert "Traceback" not in stderr, stderr
