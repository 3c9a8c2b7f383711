"""A console that scales (issue 15) and a quiet that keeps results (issue 13).

Real runs of the CLI (subprocesses, console of 80 columns, not a terminal):
above 20 files the summary is the corpus row, failures grouped, and a
pointer to ``summary.tsv``; ``--table full`` prints every row; nothing is
wider than the console; ``--command`` rows list the files each task made;
``-q`` prints the results and errors but no progress.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runner.batch_types import TaskCounts
from runner.progress import PlainTaskLog
from tests.reliability_runner.conftest import cmd, env

FAIL_CMD = (
    'case {input} in *bad*) echo "cannot parse this file" >&2; exit 4;; esac; '
    "wc -w < {input} > {output_dir}/n; echo ok > {output_dir}/done.txt"
)
LONG = "a-rather-long-folder-name/with-another-long-subfolder/and-yet-one-more-level"


def _run80(outputs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd(outputs, *args), capture_output=True, text=True, env=env(COLUMNS="80"), timeout=300
    )


def _inputs(root: Path) -> list[str]:
    names = [f"{LONG}/file-{i:02d}.txt" for i in range(27)] + [f"bad-{i}.txt" for i in range(3)]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"words in {name}")
    return names


@pytest.fixture(scope="module")
def failing_job(tmp_path_factory: pytest.TempPathFactory, fast_pool: Path) -> tuple[Path, list[str], str]:
    root = tmp_path_factory.mktemp("console")
    names = _inputs(root / "in")
    res = _run80(fast_pool, "submit", str(root / "in"), "--command", FAIL_CMD, "--job-id", "rel-console",
                 "--dest", str(root / "r"))  # fmt: skip
    assert res.returncode == 10, res.stderr
    return root, names, res.stderr


def test_above_20_files_the_summary_fits_one_screen(failing_job: tuple[Path, list[str], str]) -> None:
    _root, _names, stderr = failing_job
    end = stderr[stderr.index("Job rel-console") :]
    assert len(end.splitlines()) <= 24, end
    more = next(line for line in end.splitlines() if line.startswith("30 more rows in "))
    assert more.endswith("/r/summary.tsv (--table full)"), more
    assert "30 file(s): 27 succeeded, 3 failed" in end
    # Identical failures once, with the count and the task ids.
    assert end.count("3 tasks failed: exit code 4") == 1, end
    assert end.count("cannot parse this file") == 1, end
    assert "tasks 28, 29, 30" in end and "runner logs rel-console 28 --stderr" in end
    assert all(len(line) <= 80 for line in stderr.splitlines()), stderr


def test_summary_tsv_holds_every_row_with_the_files_each_task_made(
    failing_job: tuple[Path, list[str], str],
) -> None:
    root, names, _ = failing_job
    rows = [line.split("\t") for line in (root / "r" / "summary.tsv").read_text().splitlines()]
    assert rows[0] == ["task", "input", "status", "words", "files"]
    by_input = {r[1]: r for r in rows[1:]}
    assert set(by_input) == set(names)
    assert by_input[f"{LONG}/file-00.txt"][2:] == ["succeeded", "", "done.txt n"]
    assert by_input["bad-0.txt"][2] == "failed"
    assert not list((root / "r").glob(".summary.tsv.*"))  # written atomically: no temporary left


def test_table_full_prints_every_row_in_80_columns_with_the_middle_of_paths_cut(
    failing_job: tuple[Path, list[str], str], fast_pool: Path
) -> None:
    root, _names, _ = failing_job
    res = _run80(fast_pool, "results", "rel-console", "--dest", str(root / "r"), "--table", "full")
    assert res.returncode == 10, res.stderr
    assert all(len(line) <= 80 for line in res.stderr.splitlines()), res.stderr
    rows = [line for line in res.stderr.splitlines() if "file-" in line and "│" in line]
    assert len(rows) == 27, res.stderr  # one line per row: nothing wrapped
    for i in range(27):  # the end of each path (its file name) survives the cut
        assert sum(f"file-{i:02d}.txt" in row for row in rows) == 1, (i, res.stderr)
    assert all("…" in row for row in rows)
    assert sum("done.txt, n" in row for row in rows) == 27  # the files each task produced


def test_status_at_80_columns_is_one_line_per_task_with_the_middle_of_paths_cut(
    failing_job: tuple[Path, list[str], str], fast_pool: Path
) -> None:
    res = _run80(fast_pool, "status", "rel-console")
    assert res.returncode == 0, res.stderr
    assert all(len(line) <= 80 for line in res.stderr.splitlines()), res.stderr
    rows = [line for line in res.stderr.splitlines() if "file-" in line]
    assert len(rows) == 27, res.stderr  # one line per task: nothing wrapped
    for i in range(27):  # the end of each path (its file name) survives the cut
        assert sum(f"file-{i:02d}.txt" in row for row in rows) == 1, (i, res.stderr)
    assert all("…" in row and " done " in row for row in rows), res.stderr


def test_quiet_prints_results_and_errors_but_no_progress(tmp_path: Path, fast_pool: Path) -> None:
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"q{i}.txt").write_text("quiet quiet words")
    res = _run80(fast_pool, "-q", "--json", "submit", str(tmp_path / "in"), "--job-id", "rel-quiet",
                 "--dest", str(tmp_path / "r"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "quiet (6)" in res.stderr  # the corpus row of the summary
    assert "results in " in res.stderr
    for noise in ("target:", "uploading", "inputs:", "tasks ", "job rel-quiet:"):
        assert noise not in res.stderr, (noise, res.stderr)
    assert json.loads(res.stdout)["corpus"]["top"][0] == {"word": "quiet", "count": 6}
    failed = _run80(fast_pool, "-q", "submit", str(tmp_path / "in"), "--job-id", "rel-quiet-fail",
                    "--command", "exit 5 # {input}", "--dest", str(tmp_path / "f"))  # fmt: skip
    assert failed.returncode == 10
    assert "3 tasks failed: exit code 5" in failed.stderr and "error: 3 task(s)" in failed.stderr
    assert "uploading" not in failed.stderr


def _counts(done: int, failed: int = 0, running: int = 0, total: int = 100) -> TaskCounts:
    return TaskCounts(
        active=total - done - running, running=running, completed=done,
        succeeded=done - failed, failed=failed,
    )  # fmt: skip


def test_plain_progress_is_one_line_per_10_percent_or_30_s_plus_every_failure() -> None:
    now = [0.0]
    lines: list[str] = []
    log = PlainTaskLog(100, lines.append, clock=lambda: now[0])
    for done in range(0, 101):  # one poll per task done, 1 s apart: 10 % comes first
        now[0] += 1.0
        log.update(_counts(done, running=min(2, 100 - done)))
    assert len([ln for ln in lines if "done" in ln]) == 11, lines  # 0 %, 10 %, …, 100 %
    lines.clear()
    log = PlainTaskLog(1000, lines.append, clock=lambda: now[0])
    for done in range(0, 40):  # slow: 30 s comes first
        now[0] += 5.0
        log.update(_counts(done, total=1000, running=2))
    assert 6 <= len(lines) <= 8, lines  # 200 s: the first poll, then every 30 s
    lines.clear()
    log = PlainTaskLog(100, lines.append, clock=lambda: now[0])
    log.update(_counts(1))
    for failed in (1, 2, 3):
        now[0] += 0.1
        log.update(_counts(1 + failed, failed=failed))
    assert [ln for ln in lines if "failed" in ln and "so far" in ln] == [
        f"tasks: {n} failed so far ({1 + n}/100 done)" for n in (1, 2, 3)
    ], lines


def test_a_60_file_word_count_ends_in_one_80x24_screen_with_the_corpus_row(
    tmp_path: Path, fast_pool: Path
) -> None:
    inputs = tmp_path / "in"
    for i in range(60):
        (inputs / f"{LONG}-{i // 10}").mkdir(parents=True, exist_ok=True)
        (inputs / f"{LONG}-{i // 10}" / f"doc-{i:03d}.txt").write_text("alpha beta alpha " * (i + 1))
    dest = tmp_path / "r"
    res = _run80(fast_pool, "submit", str(inputs), "--job-id", "rel-console-wc", "--dest", str(dest))
    assert res.returncode == 0, res.stderr
    end = res.stderr[res.stderr.index("Job rel-console-wc") :]
    assert len(end.splitlines()) <= 24 and all(len(line) <= 80 for line in end.splitlines()), end
    corpus = next(line for line in end.splitlines() if "all files" in line)
    assert "alpha (3660)" in corpus and "beta (1830)" in corpus, end
    assert "60 file(s): 60 succeeded" in end and "60 more rows in " in end
    rows = (dest / "summary.tsv").read_text().splitlines()
    assert len(rows) == 1 + 60 + 1 and rows[-1].startswith("merge\t(corpus)\tsucceeded\t5490\t")


def _stderr_on_a_terminal(argv: list[str], timeout: float = 240, columns: int = 100) -> tuple[int, bytes]:
    """Run ``argv`` with stderr on a pseudo-terminal (what a person sees); stdout discarded."""
    import os
    import pty
    import select
    import time

    leader, follower = pty.openpty()
    term = {k: v for k, v in env(COLUMNS=str(columns)).items() if k != "NO_COLOR"}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=follower, env={**term, "TERM": "xterm"})
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 0.5)[0]:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks)


def test_live_progress_on_a_terminal_shows_pace_eta_and_failures_in_red(
    tmp_path: Path, fast_pool: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(12):
        (inputs / f"{'bad' if i < 2 else 'ok'}-{i}.txt").write_text("x")
    argv = cmd(fast_pool, "submit", str(inputs), "--command", "sleep 0.3; " + FAIL_CMD,
               "--job-id", "rel-console-live", "--dest", str(tmp_path / "r"))  # fmt: skip
    code, shown = _stderr_on_a_terminal(argv)
    assert code == 10, shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    assert "tasks/min, ETA" in text and "12/12" in text, text
    assert "\x1b[1;31mfailed 2" in text, text  # bold red once something failed


def test_live_progress_at_80_columns_cuts_nothing(tmp_path: Path, fast_pool: Path) -> None:
    """At 80 columns the bar is short and the words are short: counts, elapsed, pace, ETA whole."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(12):
        (inputs / f"{'bad' if i < 2 else 'ok'}-{i}.txt").write_text("x")
    argv = cmd(fast_pool, "submit", str(inputs), "--command", "sleep 0.3; " + FAIL_CMD,
               "--job-id", "rel-console-live80", "--dest", str(tmp_path / "r"))  # fmt: skip
    code, shown = _stderr_on_a_terminal(argv, columns=80)
    assert code == 10, shown.decode(errors="replace")
    lines = [ln for ln in shown.decode(errors="replace").replace("\r", "\n").split("\n") if "tasks" in ln]
    bars = [ln for ln in lines if "/min ETA" in ln]
    assert bars and any("12/12" in ln for ln in bars), lines
    assert not any("…" in ln for ln in bars), bars
    assert any("\x1b[1;31mfail 2" in ln for ln in bars), bars


def test_failure_lines_never_wrap_and_keep_the_cause() -> None:
    from rich.console import Console

    from runner.batch_types import TaskFailure
    from runner.report import print_failures

    name = "/".join(["a-very-long-directory-name"] * 8) + "/the-input.txt"
    failures = [
        TaskFailure("7", name, 3, "UserError", "FailureExitCode", None, "x" * 300 + "\nshort line\n"),
        TaskFailure("8", "b.txt", 1, None, "FailureExitCode", None, "same\n"),
        TaskFailure("9", "c.txt", 1, None, "FailureExitCode", None, "same\n"),
    ]
    sink = open("/dev/null", "w")  # noqa: SIM115
    console = Console(width=80, record=True, file=sink, color_system=None, force_terminal=True)
    print_failures(console, "job", failures)
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].startswith("2 tasks failed: exit code 1") and lines[1] == "  tasks 8, 9"
    task7 = next(line for line in lines if line.startswith("task 7 ("))
    assert task7.endswith("the-input.txt): exit code 3") and "…" in task7, task7
    assert "    short line" in lines
    assert [len(line) for line in lines if "xxx" in line] == [80]  # cut at the width, not wrapped
    sink.close()
    log = Console(width=80, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    print_failures(log, "job", failures)
    assert "    " + "x" * 300 in log.export_text().splitlines()  # a log keeps the line whole


def test_quiet_no_wait_still_says_which_job_was_submitted(tmp_path: Path, idle_pool: Path) -> None:
    (tmp_path / "a.txt").write_text("words")
    args = ["-q", "submit", str(tmp_path / "a.txt"), "--no-wait", "--job-id", "rel-quiet-nowait"]
    res = _run80(idle_pool, *args)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [
        "job rel-quiet-nowait submitted; follow with `runner status rel-quiet-nowait`, then "
        "`runner results rel-quiet-nowait`"
    ]


def test_a_small_job_at_80_columns_keeps_every_column_and_cuts_only_the_words(
    tmp_path: Path, fast_pool: Path
) -> None:
    """Up to 20 files every row is shown: long top words must not squeeze task, status and
    words to nothing (they did: rich shrinks every no-wrap column alike)."""
    root = tmp_path / "in"
    root.mkdir()
    for i in range(5):
        words = " ".join(f"averyveryverylongword{i}{j}" for j in range(5))
        (root / f"licence-{i}.txt").write_text(f"{words} {words}\n")
    res = _run80(fast_pool, "submit", str(root), "--job-id", "rel-narrow", "--dest", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert all(len(ln) <= 80 for ln in lines), [ln for ln in lines if len(ln) > 80]
    header = next(ln for ln in lines if "input" in ln and "top words" in ln)
    assert [c.strip() for c in header.split("┃")[1:6]] == ["task", "input", "status", "words", "top words"]
    rows = [ln for ln in lines if "licence-" in ln]
    assert len(rows) == 5 and all("succeeded" in ln and " 10 " in ln and "…" in ln for ln in rows), rows
