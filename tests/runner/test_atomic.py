"""runner.atomic.write_atomic: the one way the runner writes a file no reader may see half of."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner.atomic import write_atomic
from runner.outputs import Outputs, load_file, write_file


def test_writes_text_and_bytes_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "f.txt"
    write_atomic(path, "first ✓\n")
    assert path.read_text(encoding="utf-8") == "first ✓\n"
    write_atomic(path, b"\x00second")
    assert path.read_bytes() == b"\x00second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # like open(), not mkstemp's 0600


def test_mode_is_set_and_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    write_atomic(secret, "{}", mode=0o600)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    target = tmp_path / "busy"
    (target / "child").mkdir(parents=True)  # os.replace cannot put a file over a non-empty directory
    with pytest.raises(OSError):
        write_atomic(target, "x")
    assert (target / "child").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "secret.json"]  # no temporary left


def test_outputs_file_goes_through_it(tmp_path: Path, storage_outputs: Outputs) -> None:
    path = tmp_path / "outputs.json"
    write_file(path, storage_outputs)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_file(path) == storage_outputs
