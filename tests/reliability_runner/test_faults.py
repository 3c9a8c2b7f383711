"""Faults survived by ``runner submit``: crashing and overrunning tasks, 20 jobs at once,
Ctrl-C in each phase, and Azurite killed (SIGKILL) in the middle of an upload.

Each test ends with every expected output present exactly once: the job's tasks
(listed through Batch), the blobs under its prefixes (listed through Storage) and
the files in ``--dest`` are compared with sets computed from the inputs.
(A start task failing on every node is covered by tests/e2e/test_failures.py.)
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runner.batch import Batch
from runner.errors import RunnerError
from runner.outputs import Outputs, load_file
from runner.storage import Storage
from tests.conftest import start_azurite
from tests.reliability_runner.conftest import (
    RUNNER,
    Lines,
    OwnTarget,
    blob_names,
    cmd,
    env,
    files_under,
    run,
    sdk,
    task_ids,
)

#: A per-file command whose result is computable here: the input's size in bytes.
SIZE_CMD = "wc -c < {input} > {output_dir}/n"


def write_inputs(root: Path, sizes: dict[str, int]) -> None:
    for rel, size in sizes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((b"w " * (size // 2 + 1))[:size])


def assert_size_job_complete(out: Outputs, job_id: str, inputs: Path, dest: Path) -> None:
    """Every input has exactly one task, one input blob, one result blob and one result file,
    and each result is that input's own size."""
    files = sorted(p.relative_to(inputs).as_posix() for p in inputs.rglob("*") if p.is_file())
    ids = [str(i) for i in range(1, len(files) + 1)]
    assert task_ids(out, job_id) == sorted(ids)
    expected_inputs = sorted([f"{job_id}/manifest.json"] + [f"{job_id}/inputs/{f}" for f in files])
    assert blob_names(out, out.input_container, f"{job_id}/") == expected_inputs
    outputs = blob_names(out, out.output_container, f"{job_id}/")
    results = [b for b in outputs if b.endswith("/n")]
    assert sorted(results) == sorted(f"{job_id}/{i}/n" for i in ids), outputs
    assert files_under(dest) == sorted(f"files/{f}.out/n" for f in files)
    for rel in files:
        got = int((dest / "files" / f"{rel}.out" / "n").read_text().split()[0])
        assert got == (inputs / rel).stat().st_size, rel


def test_crashing_task_is_retried_then_reported_with_exit_code_and_stderr(
    tmp_path: Path, fast_pool: Path
) -> None:
    write_inputs(tmp_path / "in", {"crash.txt": 10})
    job_id = "rel-crash"
    command = "echo attempt failed on {input}: marker-7f3a >&2; exit 3"
    res = run(
        fast_pool, "--json", "submit", str(tmp_path / "in"), "--command", command,
        "--retries", "2", "--job-id", job_id, "--dest", str(tmp_path / "r"),
    )  # fmt: skip
    assert res.returncode == 10, res.stderr
    task = sdk(load_file(fast_pool)).get_task(job_id, "1")
    assert task.execution_info is not None
    assert (task.execution_info.retry_count, task.execution_info.exit_code) == (2, 3)
    failure = json.loads(res.stdout)["failures"][0]
    assert failure["exitCode"] == 3 and "marker-7f3a" in failure["stderrTail"]
    assert "exit code 3" in res.stderr and "marker-7f3a" in res.stderr
    assert "Traceback" not in res.stderr


def test_task_over_its_wall_clock_limit_is_terminated_and_reported(tmp_path: Path, fast_pool: Path) -> None:
    write_inputs(tmp_path / "in", {"slow.txt": 10, "quick.txt": 10})
    job_id = "rel-wallclock"
    command = "case {input} in *slow*) sleep 60;; esac; wc -c < {input} > {output_dir}/n"
    res = run(
        fast_pool, "--json", "submit", str(tmp_path / "in"), "--command", command,
        "--max-wall-clock", "2", "--job-id", job_id, "--dest", str(tmp_path / "r"),
    )  # fmt: skip
    assert res.returncode == 10, res.stderr
    doc = json.loads(res.stdout)
    assert [f["input"] for f in doc["failures"]] == ["slow.txt"]
    task = sdk(load_file(fast_pool)).get_task(job_id, doc["failures"][0]["taskId"])
    assert task.execution_info is not None and task.execution_info.failure_info is not None
    assert task.execution_info.failure_info.code == "MaxWallClockTimeExpiry"
    assert "MaxWallClockTimeExpiry" in res.stderr
    # The task that finished in time still brought its result back.
    assert (tmp_path / "r" / "files" / "quick.txt.out" / "n").read_text().split()[0] == "10"


def test_twenty_jobs_at_once_complete_without_cross_talk(tmp_path: Path, fast_pool: Path) -> None:
    out = load_file(fast_pool)
    jobs = {f"rel-many-{j:02d}": {f"j{j}-a.txt": 7 + j, f"sub/j{j}-b.txt": 100 + 3 * j} for j in range(20)}
    for job_id, sizes in jobs.items():
        write_inputs(tmp_path / job_id / "in", sizes)

    def one(job_id: str) -> subprocess.CompletedProcess[str]:
        base = tmp_path / job_id
        return run(
            fast_pool, "-q", "submit", str(base / "in"), "--command", SIZE_CMD,
            "--job-id", job_id, "--dest", str(base / "r"), timeout=400,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = dict(zip(jobs, pool.map(one, jobs), strict=True))
    for job_id, res in results.items():
        assert res.returncode == 0, (job_id, res.stderr)
        assert_size_job_complete(out, job_id, tmp_path / job_id / "in", tmp_path / job_id / "r")


def _resume_command(stderr: str) -> list[str]:
    """The printed resume command. The runs here have a very wide console (``env``), so
    BUG R1 (wrapping at the console width) does not hide the rest of the contract."""
    match = re.search(r"is resumable: (.+)$", stderr, re.MULTILINE)
    assert match, stderr
    program, *args = shlex.split(match.group(1))
    assert program == str(RUNNER), program  # the program as invoked: `runner` may not be on PATH
    return args


def test_resume_command_is_printed_on_one_line(tmp_path: Path, fast_pool: Path) -> None:
    write_inputs(tmp_path / "in", {f"big{i}.txt": 24_000_000 for i in range(4)})
    dest = tmp_path / "a-results-directory-with-a-long-name"
    job_id = "rel-sigint-oneline"
    argv = cmd(fast_pool, "submit", str(tmp_path / "in"), "--dest", str(dest), "--job-id", job_id)
    proc = Lines(argv, env=env(COLUMNS="80"))  # what a pipe or a CI log gets
    proc.wait_for(lambda line: "input file(s)" in line)
    proc.interrupt()
    code, stderr, _ = proc.finish()
    assert code == 130, stderr
    line = next(line for line in stderr.splitlines() if "is resumable: " in line)
    printed = shlex.split(line.split("is resumable: ", 1)[1])[1:]
    assert printed[-2:] == ["--job-id", job_id] and str(dest) in printed


@pytest.mark.parametrize("phase", ["upload", "tasks", "monitor"])
def test_ctrl_c_in_each_phase_exits_130_and_the_printed_command_completes(
    tmp_path: Path, fast_pool: Path, phase: str
) -> None:
    out = load_file(fast_pool)
    job_id = f"rel-sigint-{phase}"
    inputs = tmp_path / "in"
    if phase == "upload":  # a few large files: the upload takes a while
        sizes = {f"big{i}.txt": 24_000_000 + i for i in range(6)}
    elif phase == "tasks":  # many files: planning and adding the tasks takes a while
        sizes = {f"d{i % 7}/f{i}.txt": 1 + i for i in range(400)}
    else:
        sizes = {f"f{i}.txt": 10 + i for i in range(6)}
    write_inputs(inputs, sizes)
    command = SIZE_CMD if phase != "monitor" else "sleep 1; " + SIZE_CMD
    dest = tmp_path / "r"
    argv = cmd(fast_pool, "submit", str(inputs), "--command", command, "--dest", str(dest))
    argv += ["--job-id", job_id]
    marker = {
        "upload": lambda line: "input file(s)" in line,
        "tasks": lambda line: line.startswith(f"job {job_id}: created"),
        "monitor": lambda line: line.startswith("tasks "),
    }[phase]
    proc = Lines(argv)
    proc.wait_for(marker)
    proc.interrupt()
    code, stderr, _ = proc.finish()
    assert code == 130, stderr
    before = stderr.split("interrupted")[0]
    # The interrupt landed in the phase under test (the next phase had not been announced).
    next_phase = {"upload": "inputs:", "tasks": "tasks:", "monitor": "downloading"}[phase]
    assert not any(line.startswith(next_phase) for line in before.splitlines()), stderr
    if phase == "tasks":
        assert len(task_ids(out, job_id)) < len(sizes)  # interrupted before all were added
    if phase == "monitor":
        assert f"{len(sizes)}/{len(sizes)} done" not in before, stderr  # tasks were still running
    resume = _resume_command(stderr)
    assert resume.count("--job-id") == 1

    again = subprocess.run(
        [str(Path(argv[0])), *resume], capture_output=True, text=True, env=env(), timeout=400
    )
    assert again.returncode == 0, again.stderr
    assert_size_job_complete(out, job_id, inputs, dest)
    tasks = sdk(out).list_tasks(job_id)
    assert all(t.execution_info is not None and t.execution_info.exit_code == 0 for t in tasks)


def _drop_unreadable_blobs(storage: Storage, container: str, prefix: str) -> list[str]:
    """Delete blob records whose data Azurite lost (see the test's docstring); return their names."""
    lost = []
    for blob in storage.list_blobs(container, prefix):
        try:
            storage.download_bytes(container, blob.name)
        except RunnerError:
            lost.append(blob.name)
    for name in lost:
        storage.delete_prefix(container, name)
    return lost


def test_azurite_killed_during_upload_then_restarted(tmp_path: Path, own_target: OwnTarget) -> None:
    """SIGKILL Azurite while the runner uploads; start it again on the same port and data dir.

    Observed and required: the runner does not outlive a ~3 s outage with the SDK's retries
    (a refused connection is retried once, by design, so a target that is down is reported in
    seconds); it fails with one clear line, and the same command resumes the job.
    Azurite keeps its blob and extent metadata in memory and saves them separately every few
    seconds, so after a SIGKILL it can forget containers, or keep a blob record whose data it
    lost (HEAD says the blob is there, GET says 404). Azure Storage never does either; the
    harness restores the containers and drops such records, so the test measures the runner.
    """
    out = own_target.outputs
    storage = Storage(out)
    job_id = "rel-azurite-kill"
    inputs = tmp_path / "in"
    write_inputs(inputs, {f"big{i}.txt": 16_000_000 + i for i in range(10)})
    dest = tmp_path / "r"
    argv = cmd(own_target.outputs_file, "submit", str(inputs), "--command", SIZE_CMD)
    argv += ["--job-id", job_id, "--dest", str(dest)]
    proc = Lines(argv)
    proc.wait_for(lambda line: "input file(s)" in line)
    deadline = time.monotonic() + 60
    while not storage.list_blobs(out.input_container, f"{job_id}/inputs/"):  # the upload is under way
        assert time.monotonic() < deadline and proc.proc.poll() is None, "".join(proc.seen)
        time.sleep(0.02)
    own_target.azurite.process.kill()
    code, stderr, _ = proc.finish(timeout=120)
    assert code == 6, stderr  # UnreachableError
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unreachable" in errors[0] and "Traceback" not in stderr, stderr
    assert not Batch(out).job_exists(job_id)  # the job is created after the upload

    restarted = start_azurite(own_target.azurite.data_dir, port=own_target.azurite.process.port)
    try:
        storage.ensure_containers([out.input_container, out.output_container, out.application_container])
        lost = _drop_unreadable_blobs(storage, out.input_container, f"{job_id}/")
        again = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=300)
        assert again.returncode == 0, again.stderr
        assert_size_job_complete(out, job_id, inputs, dest)
        print(f"azurite kill: first run exit {code}; rerun completed; blob records Azurite lost: {lost}")
    finally:
        restarted.process.stop()
