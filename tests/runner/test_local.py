"""``runner local up|status|down`` with real processes under a temporary RUNNER_HOME."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from runner import services
from runner.cli import app


def _run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"RUNNER_HOME": str(home)}, catch_exceptions=False)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "rh"
    yield home
    _run(home, "local", "down")


def _status(home: Path) -> dict[str, dict[str, object]]:
    res = _run(home, "--json", "local", "status")
    assert res.exit_code == 0, res.stderr
    return {s["name"]: s for s in json.loads(res.stdout)["services"]}


def test_local_up_status_down(home: Path) -> None:
    up = _run(home, "local", "up")
    assert up.exit_code == 0, up.stderr
    first = _status(home)
    assert all(s["state"] == "running" for s in first.values())
    outputs_path = home / "local" / "outputs.json"
    assert stat.S_IMODE(os.stat(outputs_path).st_mode) == 0o600
    key = json.loads(outputs_path.read_text())["batchAccountKey"]

    # Idempotent: nothing restarted.
    again = _run(home, "local", "up")
    assert again.exit_code == 0 and "already running" in again.stderr
    assert _status(home) == first

    # `runner outputs` masks secrets unless asked.
    shown = _run(home, "--json", "outputs")
    assert shown.exit_code == 0, shown.stderr
    assert key not in shown.stdout and json.loads(shown.stdout)["batchAccountKey"] == "********"
    assert json.loads(_run(home, "--json", "outputs", "--show-secrets").stdout)["batchAccountKey"] == key
    assert key not in _run(home, "outputs").stdout

    down = _run(home, "local", "down")
    assert down.exit_code == 0
    for s in first.values():
        assert not services.pid_alive(int(str(s["pid"])))
    assert all(s["state"] == "stopped" for s in _status(home).values())

    # Restart: the same ports (URLs stored in tasks stay valid), the same key, the data kept.
    assert _run(home, "local", "up").exit_code == 0
    restarted = _status(home)
    assert [s["url"] for s in restarted.values()] == [s["url"] for s in first.values()]
    assert json.loads(outputs_path.read_text())["batchAccountKey"] == key
    jobs = _run(home, "--json", "jobs")
    assert jobs.exit_code == 0, jobs.stderr


def test_down_leaves_processes_it_did_not_start(home: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        state = home / "local" / "state.json"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"azurite": {"pid": stranger.pid, "port": 1, "url": "http://x"}}))
        res = _run(home, "local", "down")
        assert res.exit_code == 0
        assert "nothing was running" in res.stderr
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_bad_input_exits_2_and_creates_nothing(home: Path, tmp_path: Path) -> None:
    res = _run(home, "submit", str(tmp_path / "missing1"), str(tmp_path / "missing2.txt"))
    assert res.exit_code == 2
    assert "missing1" in res.stderr and "missing2.txt" in res.stderr
    assert "target: local" in res.stderr
    assert not home.exists()
