"""The command line reads the way users type it (issue 15, ergonomics).

Global options after the command, ``-h``, no ``<bool>`` metavars or
``{paths}...`` in help, examples at the end of every command's help, exit
codes in ``submit``'s. Real runs use the session's Azurite + localbatch
through ``typer.testing.CliRunner``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from runner.cli import app
from runner.cli_style import hoist, usage_piece

COMMANDS = [["submit"], ["status"], ["jobs"], ["logs"], ["results"], ["cancel"], ["clean"], ["outputs"]]
LOCAL = [["local", "up"], ["local", "down"], ["local", "status"]]


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "120"})


def _flat(text: str) -> str:
    """Help text without box drawing and line breaks, so wrapped phrases can be found."""
    return " ".join(text.replace("│", " ").split())


def test_global_options_after_the_command_are_accepted(tmp_path: Path, outputs_file: Path) -> None:
    (tmp_path / "a.txt").write_text("after after the command")
    res = _invoke("submit", str(tmp_path / "a.txt"), "--json", "--job-id", "rt-ergo-after",
                  "--dest", str(tmp_path / "r"), "--outputs", str(outputs_file), "-q")  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["corpus"]["top"][0] == {"word": "after", "count": 2}
    assert "target:" not in res.stderr  # -q after the command was honoured too
    jobs = _invoke("jobs", "-q", "--outputs", str(outputs_file), "--json")
    assert jobs.exit_code == 0, jobs.stderr
    assert "rt-ergo-after" in {j["jobId"] for j in json.loads(jobs.stdout)}
    status = _invoke("status", "rt-ergo-after", f"--outputs={outputs_file}", "-vv", "--json")
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["jobId"] == "rt-ergo-after"


def test_target_after_the_command_reaches_the_target_resolution() -> None:
    res = _invoke("jobs", "--target", "no-such-stack-xyz", "--outputs", "/nonexistent/outputs.json")
    assert res.exit_code == 2, res.stderr
    assert "No such option" not in res.stderr and "/nonexistent/outputs.json" in res.stderr


def test_hoist_leaves_the_commands_own_options_and_values_alone() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    assert hoist(group, None, ["submit", "a", "--json", "-vv"]) == ["--json", "-vv", "submit", "a"]
    # A value of the command's option that looks like a global option stays where it is.
    argv = ["submit", "a", "--command", "--json", "--job-id", "-q"]
    assert hoist(group, None, argv) == argv
    assert hoist(group, None, ["submit", "--", "--json"]) == ["submit", "--", "--json"]
    # `outputs` has its own --json: it wins.
    assert hoist(group, None, ["outputs", "--json"]) == ["outputs", "--json"]
    assert hoist(group, None, ["--outputs", "f", "local", "up", "--json"]) == [
        "--outputs", "f", "--json", "local", "up",
    ]  # fmt: skip


@pytest.mark.parametrize("command", [[], *COMMANDS, *LOCAL], ids=lambda c: " ".join(c) or "runner")
def test_help_with_h_has_no_type_noise_and_ends_with_examples(command: list[str]) -> None:
    res = _invoke(*command, "-h")
    assert res.exit_code == 0, res.stderr
    text = res.stdout
    assert "Usage:" in text
    assert "<bool>" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "[OPTIONS]" in usage, usage
    if command in COMMANDS:
        examples = text[text.index("Examples:") :].splitlines()[1:]
        shown = [line.strip() for line in examples if line.strip().startswith("runner ")]
        assert len(shown) >= 2, text


def test_submit_help_says_what_a_command_runs_under_and_the_exit_codes() -> None:
    text = _flat(_invoke("submit", "--help").stdout)
    assert "Usage: runner submit [OPTIONS] PATHS..." in text
    assert "/bin/sh -c" in text and "DEST/files/<input>.out/" in text and "your privileges" in text
    assert "Exit codes: 0 success, 2 bad input" in text and "130 interrupted" in text
    root = _flat(_invoke("--help").stdout)
    assert "only errors and results" in root


def test_usage_pieces_are_plain_names() -> None:
    assert usage_piece("{paths}...") == "PATHS..."
    assert usage_piece("{PATHS...}...") == "PATHS..."
    assert usage_piece("{job}") == "JOB"
    assert usage_piece("[job]") == "[JOB]"
    assert usage_piece("[OPTIONS]") == "[OPTIONS]"
