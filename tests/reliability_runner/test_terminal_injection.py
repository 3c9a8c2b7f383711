"""Data never reaches the terminal raw (issue 13, "Terminal injection").

Words, file names, stderr tails and error messages naming files are printed
through one escaping helper (``runner.text.safe``): an input holding
``ESC[2J`` (clear screen) or ``ESC]0;…BEL`` (set the window title), NUL bytes
or C1 controls shows them as visible escapes (``\\x1b[2J``). The runs here are
real processes (and ``CliRunner``) against the session's Azurite + localbatch;
their console is not a terminal and NO_COLOR is set, so any control character
in the output came from data.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

from typer.testing import CliRunner

from runner.cli import app
from runner.outputs import Outputs
from runner.text import safe, shorten_middle
from tests.reliability_runner.conftest import cmd, env, run

#: What a terminal would act on: C0 controls but newline, DEL, C1 controls.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
CLEAR = "\x1b[2J"
TITLE = "\x1b]0;PWNED\x07"
HOSTILE_WORDS = f"{CLEAR} {TITLE} nul\x00byte c1\x9bcsi bidi\u202eevil "


def test_safe_escapes_controls_and_keeps_printable_text() -> None:
    assert safe(CLEAR + TITLE) == "\\x1b[2J\\x1b]0;PWNED\\x07"
    assert safe("a\x00b\tc\nd\re\x7f\x9b") == "a\\x00b\\tc\\nd\\re\\x7f\\x9b"
    assert safe("bidi\u202eevil\u2066") == "bidi\\u202eevil\\u2066"
    assert safe("émigré 日本 it's ~/a b.txt") == "émigré 日本 it's ~/a b.txt"


def test_shorten_middle_keeps_the_end_and_the_width() -> None:
    path = "corpus/very/deeply/nested/folder/names/that/go/on/and/on/the-file-name.txt"
    short = shorten_middle(path, 40)
    assert len(short) == 40 and short.endswith("the-file-name.txt") and short.startswith("corpus/")
    assert "…" in short
    assert shorten_middle("short.txt", 40) == "short.txt"


def _hostile_inputs(root: Path) -> Path:
    inputs = root / "in"
    inputs.mkdir(parents=True)
    (inputs / "words.txt").write_text(HOSTILE_WORDS * 20 + "plain words here", encoding="utf-8")
    (inputs / f"name{CLEAR}x.txt").write_text("a name with an escape", encoding="utf-8")
    (inputs / "binary.bin").write_bytes(b"\x00\x00 \x07\x07 \x1b\x1b " * 30)
    return inputs


def test_hostile_words_and_names_are_escaped_in_the_summary_and_json(tmp_path: Path, fast_pool: Path) -> None:
    inputs = _hostile_inputs(tmp_path)
    res = run(fast_pool, "--json", "submit", str(inputs), "--job-id", "rel-inject",
              "--dest", str(tmp_path / "r"), "--numwords", "6")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert not CONTROL.findall(res.stderr), [m for m in CONTROL.findall(res.stderr)]
    assert not CONTROL.findall(res.stdout), [m for m in CONTROL.findall(res.stdout)]
    # Escaped, not dropped: the user still sees what the words are.
    assert "\\x1b[2J" in res.stderr and "\\x1b]0;PWNED\\x07" in res.stderr
    assert "name\\x1b[2Jx.txt" in res.stderr
    doc = json.loads(res.stdout)  # the JSON still decodes to the true words and names
    words = {w["word"] for f in doc["files"] for w in f["top"]}
    assert CLEAR in words and TITLE.split(" ")[0] in words
    assert f"name{CLEAR}x.txt" in {f["input"] for f in doc["files"]}


def test_a_failing_tasks_stderr_tail_is_escaped(tmp_path: Path, fast_pool: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    command = r"printf 'boom \033[2J \033]0;PWNED\007 \000 end\n' >&2; exit 3 # {input} {output_dir}"
    res = run(fast_pool, "submit", str(tmp_path / "in"), "--command", command,
              "--job-id", "rel-inject-stderr", "--dest", str(tmp_path / "r"))  # fmt: skip
    assert res.returncode == 10, res.stderr
    assert "exit code 3" in res.stderr
    assert not CONTROL.findall(res.stderr), res.stderr
    assert "boom \\x1b[2J \\x1b]0;PWNED\\x07" in res.stderr


def test_an_error_naming_a_hostile_path_is_escaped(tmp_path: Path, outputs_file: Path) -> None:
    missing = str(tmp_path / f"no{TITLE}such.txt")
    res = CliRunner().invoke(app, ["--outputs", str(outputs_file), "submit", missing])
    assert res.exit_code == 2, res.stderr
    assert not CONTROL.findall(res.stderr), res.stderr
    assert "no\\x1b]0;PWNED\\x07such.txt" in res.stderr


def _read_pty(argv: list[str], timeout: float = 120) -> tuple[int, bytes]:
    """Run ``argv`` with stdout on a pseudo-terminal (stderr discarded); return its output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.DEVNULL, env=env())
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks)


def test_logs_are_escaped_on_a_terminal_and_raw_in_a_pipe(tmp_path: Path, fast_pool: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    command = r"printf 'out \033]0;PWNED\007 \000 done\n'; : {input} {output_dir}"
    job_id = "rel-inject-logs"
    res = run(fast_pool, "submit", str(tmp_path / "in"), "--command", command,
              "--job-id", job_id, "--dest", str(tmp_path / "r"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    piped = subprocess.run(cmd(fast_pool, "logs", job_id, "1"), capture_output=True, env=env(), timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == b"out \x1b]0;PWNED\x07 \x00 done\n"  # a pipe gets the bytes as written
    code, shown = _read_pty(cmd(fast_pool, "logs", job_id, "1"))
    assert code == 0
    assert b"\x1b" not in shown and b"\x07" not in shown and b"\x00" not in shown, shown
    assert b"out \\x1b]0;PWNED\\x07 \\x00 done" in shown


def test_log_lines_naming_files_are_escaped() -> None:
    import logging

    from runner.text import EscapeFilter

    record = logging.LogRecord("runner", logging.WARNING, __file__, 1, "skipping %s", (TITLE,), None)
    assert EscapeFilter().filter(record)
    assert record.getMessage() == "skipping \\x1b]0;PWNED\\x07"


def test_runner_outputs_escapes_hostile_values(tmp_path: Path, target_outputs: Outputs) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({**target_outputs.to_dict(show_secrets=True), "poolId": f"pool{TITLE}"}))
    res = CliRunner().invoke(app, ["--outputs", str(path), "outputs"])
    assert res.exit_code == 0, res.stderr
    assert not CONTROL.findall(res.stdout + res.stderr), res.stdout
    assert "pool\\x1b]0;PWNED\\x07" in res.stdout
