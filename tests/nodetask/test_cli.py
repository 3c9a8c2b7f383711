"""The command line as a real process: report and JSON formats, defaults, errors and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.nodetask.process import run_nodetask
from tests.nodetask.reference import generate_text, reference_counts, reference_invalid_bytes, reference_top

SEP = "-" * 30


def expected_report(data: bytes, n: int, trailer: list[str]) -> str:
    top = reference_top(reference_counts(data), n)
    lines = ["Word\tCount", SEP, *[f"{w}:\t{c}" for w, c in top], SEP, *trailer]
    return "\n".join(lines) + "\n"


def test_report_and_counts_match_reference(tmp_path: Path) -> None:
    data = generate_text(seed=11, pieces=6000)
    (tmp_path / "book.txt").write_bytes(data)
    out = tmp_path / "out"
    env = {
        "AZ_BATCH_NODE_ID": "tvm-1",
        "AZ_BATCH_TASK_ID": "task-7",
        "AZ_BATCH_JOB_ID": "job-x",
        "AZ_BATCH_POOL_ID": "pool-y",
    }
    proc = run_nodetask(
        ["--filepath", "book.txt", "--numwords", "15", "--output-dir", str(out)], tmp_path, env
    )
    assert proc.returncode == 0, proc.stderr
    report = (out / "book_OUTPUT.txt").read_text(encoding="utf-8")
    trailer = ["Node: tvm-1", "Task: task-7", "Job:  job-x", "Pool: pool-y"]
    assert report == expected_report(data, 15, trailer)

    doc = json.loads((out / "book_counts.json").read_text(encoding="utf-8"))
    ref = reference_counts(data)
    assert doc["schema"] == 1
    assert doc["file"] == "book.txt"
    assert doc["inputs"] == ["book.txt"]
    assert doc["ignore_case"] is False
    assert doc["numwords"] == 15
    assert doc["counts"] == dict(ref)
    assert list(doc["counts"].items()) == reference_top(ref, len(ref))
    assert doc["top"] == [list(kv) for kv in reference_top(ref, 15)]
    assert doc["totals"] == {
        "words": sum(ref.values()),
        "unique_words": len(ref),
        "invalid_bytes": reference_invalid_bytes(data),
        "bytes": len(data),
    }
    assert sorted(p.name for p in out.iterdir()) == ["book_OUTPUT.txt", "book_counts.json"]


def test_defaults_write_to_cwd_without_batch_lines_and_ties_by_code_point(tmp_path: Path) -> None:
    data = "b a c, B; a. b c é e -- ...\r\n".encode()
    (tmp_path / "notes.md").write_bytes(data)
    proc = run_nodetask(["--filepath", "notes.md", "--numwords", "100"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "notes_OUTPUT.md").read_text(encoding="utf-8")
    assert report == expected_report(data, 100, [])
    words = [line.split(":\t")[0] for line in report.splitlines()[2:-1]]
    assert words == ["a", "b", "c", "B", "e", "é"]  # ties in ascending code-point order
    assert (tmp_path / "notes_counts.json").exists()


def test_ignore_case_and_workers_flags(tmp_path: Path) -> None:
    data = generate_text(seed=5, pieces=8000)
    (tmp_path / "t.txt").write_bytes(data)
    args = ["--filepath", "t.txt", "--numwords", "5", "--ignore-case", "--workers", "3"]
    proc = run_nodetask([*args, "--min-parallel-bytes", "0", "--chunk-size", "100"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "t_counts.json").read_text(encoding="utf-8"))
    assert doc["ignore_case"] is True
    assert doc["counts"] == dict(reference_counts(data, ignore_case=True))


def test_empty_file_gives_a_valid_empty_report(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    proc = run_nodetask(["--filepath", "empty.txt", "--numwords", "3"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "empty_OUTPUT.txt").read_text() == f"Word\tCount\n{SEP}\n{SEP}\n"
    doc = json.loads((tmp_path / "empty_counts.json").read_text())
    assert doc["totals"] == {"words": 0, "unique_words": 0, "invalid_bytes": 0, "bytes": 0}
    assert doc["counts"] == {} and doc["top"] == []


def _assert_bad_input(proc_dir: Path, args: list[str], needle: str) -> None:
    out = proc_dir / "out"
    proc = run_nodetask([*args, "--output-dir", str(out)], proc_dir)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert not out.exists()
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--filepath", "missing.txt", "--numwords", "3"], "not found"),
        (["--filepath", "adir", "--numwords", "3"], "directory"),
        (["--filepath", "/dev/null", "--numwords", "3"], "not a regular file"),
        (["--filepath", "ok.txt", "--numwords", "0"], "at least 1"),
        (["--filepath", "ok.txt", "--numwords", "-4"], "at least 1"),
        (["--filepath", "ok.txt", "--numwords", "ten"], "not an integer"),
        (["--filepath", "ok.txt"], "--numwords"),
        (["--filepath", "ok.txt", "--numwords", "3", "--workers", "0"], "--workers"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "ok.txt").write_text("some words here")
    _assert_bad_input(tmp_path, args, needle)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_file_without_read_permission_is_exit_2(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hidden words")
    secret.chmod(0)
    _assert_bad_input(tmp_path, ["--filepath", "secret.txt", "--numwords", "3"], "cannot read")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    _assert_bad_input(tmp_path, ["--filepath", "pipe", "--numwords", "3"], "not a regular file")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_file_that_fails_to_read_is_exit_2(tmp_path: Path) -> None:
    """/proc/self/mem opens but reading offset 0 fails with EIO, for root too."""
    _assert_bad_input(tmp_path, ["--filepath", "/proc/self/mem", "--numwords", "3"], "cannot read")
