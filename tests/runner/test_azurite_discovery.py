"""The runner installed outside the clone (issue 13, ``pipx install``): ``runner local up`` finds
Azurite (the clone's node_modules, the user data dir, PATH) or installs the pinned version with npm
into the user data dir, saying so; without npm, one line says what to install.

Offline: the installed copy is the runner's packages copied out of the clone (a wheel cannot be
built here without the network: the venv's setuptools is older than the build needs), and npm is
a stand-in script that installs the clone's own Azurite, recording how it was called. A real
``npm install`` needs the registry and is not tested.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import services
from runner.errors import ServiceError

CLONE = Path(services.__file__).resolve().parents[1]
REAL_AZURITE = (CLONE / "node_modules" / ".bin" / "azurite-blob").resolve()

FAKE_NPM = """#!/bin/sh
# A stand-in for npm: records its arguments, then installs (a link to) the clone's Azurite.
printf '%s\\n' "$@" > "$NPM_ARGS"
[ -n "$NPM_FAIL" ] && { echo "npm ERR! code E404" >&2; exit 1; }
while [ "$1" != "--prefix" ]; do shift; done
/bin/mkdir -p "$2/node_modules/.bin" && /bin/ln -s "$REAL_AZURITE" "$2/node_modules/.bin/azurite-blob"
"""


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No clone, no Azurite on PATH, an empty RUNNER_HOME; PATH holds node and the stand-in npm."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = shutil.which("node")
    assert node, "the tests need node (Azurite runs on it)"
    (bin_dir / "node").symlink_to(node)
    (bin_dir / "npm").write_text(FAKE_NPM)
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setattr(services, "PROJECT_ROOT", tmp_path / "site-packages")
    monkeypatch.delenv(services.AZURITE_BIN_ENV, raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("RUNNER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NPM_ARGS", str(tmp_path / "npm-args"))
    monkeypatch.setenv("REAL_AZURITE", str(REAL_AZURITE))
    return tmp_path


def test_the_pinned_azurite_is_installed_once_into_the_user_data_dir_and_runs(
    outside: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NPM_FAIL", "1")
    with pytest.raises(ServiceError) as failed:
        services.azurite_executable()
    assert "E404" in str(failed.value) and "failed (exit 1)" in str(failed.value)
    home = outside / "home"
    assert list(home.iterdir()) == []  # nothing half-written

    monkeypatch.delenv("NPM_FAIL")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="runner.services"):
        installed = services.azurite_executable()
    assert (
        installed == home / f"azurite-{services.AZURITE_VERSION}" / "node_modules" / ".bin" / "azurite-blob"
    )
    args = (outside / "npm-args").read_text().split()
    assert args[0] == "install" and f"azurite@{services.AZURITE_VERSION}" in args
    said = [r.getMessage() for r in caplog.records if "installing Azurite" in r.getMessage()]
    assert len(said) == 1 and str(installed.parents[2]) in said[0], said

    (outside / "bin" / "npm").unlink()  # found in the user data dir from now on, npm or not
    assert services.azurite_executable() == installed
    proc = services.start_azurite(outside / "data")
    try:
        assert proc.url.startswith("http://127.0.0.1:")
    finally:
        proc.stop()


def test_installed_outside_the_clone_without_npm_local_up_says_what_to_install(outside: Path) -> None:
    """A copy of the packages outside the clone, run from elsewhere: one error line, exit 3."""
    site = outside / "site"
    for pkg in ("runner", "nodetask", "localbatch"):
        shutil.copytree(CLONE / pkg, site / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (outside / "bin" / "npm").unlink()
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200", "NO_COLOR": "1"}
    probe = "import runner.services as s; print(s.PROJECT_ROOT)"
    root = subprocess.run([sys.executable, "-c", probe], env=env, cwd=outside, capture_output=True, text=True)
    assert Path(root.stdout.strip()) == site  # not the clone: its node_modules cannot be used
    main = "import sys; from runner.cli import main; sys.argv = ['runner', *sys.argv[1:]]; main()"
    proc = subprocess.run(
        [sys.executable, "-c", main, "--json", "local", "up"],
        env=env, cwd=outside, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "npm is not on PATH" in errors[0] and "apt install npm" in errors[0], (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not list((outside / "home").glob("azurite-*")), "nothing half-installed"


def test_the_pinned_version_is_the_one_package_json_pins() -> None:
    pinned = json.loads((CLONE / "package.json").read_text())["dependencies"]["azurite"]
    assert pinned == services.AZURITE_VERSION
