"""The local target belongs to the user (issue 13): one home per user, one pair of services per home.

Real processes throughout: ``runner`` subprocesses, real Azurite and localbatch.
A service is "ours" when its command line names this home's data directory;
the tests count such processes in /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "XDG_"))}
    return {**base, "NO_COLOR": "1", "COLUMNS": "400", **extra}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from runner.cli import main; main()", *args]


def _run(
    home: Path, *args: str, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cmd(*args), capture_output=True, text=True, timeout=timeout, env=_env(RUNNER_HOME=str(home)), cwd=cwd
    )


def services_of(home: Path) -> dict[str, list[int]]:
    """pids of the Azurite and localbatch processes whose command line names ``home``'s data dirs."""
    found: dict[str, list[int]] = {"azurite": [], "localbatch": []}
    wanted = {
        "azurite": os.fsencode(str(home.resolve() / "local" / "azurite")),
        "localbatch": os.fsencode(str(home.resolve() / "local" / "localbatch")),
    }
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            continue
        for name, path in wanted.items():
            if path in args:
                found[name].append(int(entry.name))
    return found


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "rh"
    yield home
    _run(home, "local", "down")
    for pids in services_of(home).values():  # never leave a process behind, even when a test failed
        for pid in pids:
            os.kill(pid, signal.SIGKILL)


def test_home_defaults_to_the_user_data_dir_whatever_the_cwd(tmp_path: Path) -> None:
    data = tmp_path / "xdg"
    homes = []
    for cwd in (tmp_path / "a", tmp_path / "b"):
        cwd.mkdir()
        res = subprocess.run(
            _cmd("--json", "local", "status"),
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(XDG_DATA_HOME=str(data)),
            cwd=cwd,
        )
        assert res.returncode == 0, res.stderr
        homes.append(json.loads(res.stdout)["home"])
    assert homes[0] == homes[1] and homes[0].startswith(str(data))
    shown = subprocess.run(
        _cmd("--help"), capture_output=True, text=True, timeout=60, env=_env(XDG_DATA_HOME=str(data))
    )
    assert "RUNNER_HOME" in shown.stdout and str(data) in shown.stdout.replace("\n", "")


def test_two_local_ups_at_once_start_one_pair(home: Path) -> None:
    procs = [
        subprocess.Popen(
            _cmd("local", "up"),
            env=_env(RUNNER_HOME=str(home)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
    found = services_of(home)
    assert len(found["azurite"]) == 1 and len(found["localbatch"]) == 1, found


def test_ctrl_c_during_local_up_leaves_no_orphan(home: Path) -> None:
    proc = subprocess.Popen(
        _cmd("local", "up"), env=_env(RUNNER_HOME=str(home)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    log = home / "local" / "azurite" / "azurite.log"
    deadline = time.monotonic() + 60
    while not log.exists() and time.monotonic() < deadline:  # Azurite spawned, not yet listening
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    status = _run(home, "--json", "local", "status")
    listed = {s["name"]: s["pid"] for s in json.loads(status.stdout)["services"] if s["state"] == "running"}
    for name, pids in services_of(home).items():
        assert pids == ([listed[name]] if name in listed else []), (name, pids, listed)
    assert _run(home, "local", "down").returncode == 0
    assert services_of(home) == {"azurite": [], "localbatch": []}


def test_a_corrupt_state_file_never_starts_a_second_pair(home: Path) -> None:
    assert _run(home, "local", "up").returncode == 0
    before = services_of(home)
    (home / "local" / "state.json").write_text("{not json")
    again = _run(home, "local", "up")
    assert again.returncode == 0, again.stderr
    assert services_of(home) == before
    status = json.loads(_run(home, "--json", "local", "status").stdout)
    assert status["running"] and {s["pid"] for s in status["services"]} == {
        p for v in before.values() for p in v
    }
    assert _run(home, "local", "down").returncode == 0
    assert services_of(home) == {"azurite": [], "localbatch": []}


def test_two_first_submits_at_once_start_one_pair(home: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("alpha beta beta\n")
    procs = [
        subprocess.Popen(
            _cmd("submit", str(tmp_path / "in"), "--no-aggregate", "--dest", str(tmp_path / f"r{i}")),
            env=_env(RUNNER_HOME=str(home)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()
    found = services_of(home)
    assert len(found["azurite"]) == 1 and len(found["localbatch"]) == 1, found
