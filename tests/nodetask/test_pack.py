"""The zipapp: reproducible bytes, and it runs from the archive alone under ``python3 -I``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from nodetask.pack import build_pyz
from tests.nodetask.reference import generate_text, reference_counts


def _isolated(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # -I -S: no PYTHONPATH, no site-packages (so no editable install), cwd outside the repository.
    return subprocess.run(
        [sys.executable, "-I", "-S", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_build_is_byte_for_byte_reproducible(tmp_path: Path) -> None:
    a = build_pyz(tmp_path / "a" / "nodetask.pyz")
    b = build_pyz(tmp_path / "b" / "other-name.pyz")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    with zipfile.ZipFile(a) as zf:
        names = zf.namelist()
        assert names[0] == "__main__.py"
        assert names[1:] == sorted(names[1:])
        assert "nodetask/cli.py" in names and "nodetask/__init__.py" in names
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_pyz_runs_isolated_and_matches_reference(tmp_path: Path) -> None:
    pyz = build_pyz(tmp_path / "nodetask.pyz")
    work = tmp_path / "work"
    work.mkdir()
    data = generate_text(seed=21, pieces=10000)
    (work / "input.txt").write_bytes(data)
    args = ["--filepath", "input.txt", "--numwords", "4", "--workers", "2", "--min-parallel-bytes", "0"]
    proc = _isolated([str(pyz), *args, "--chunk-size", "50"], work)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((work / "input_counts.json").read_text(encoding="utf-8"))
    assert doc["counts"] == dict(reference_counts(data))
    assert (work / "input_OUTPUT.txt").read_text(encoding="utf-8").startswith("Word\tCount\n")

    bad = _isolated([str(pyz), "--filepath", "missing.txt", "--numwords", "4"], work)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1


def test_pyz_imports_nodetask_from_the_archive(tmp_path: Path) -> None:
    pyz = build_pyz(tmp_path / "nodetask.pyz")
    code = f"import sys; sys.path.insert(0, {str(pyz)!r}); import nodetask.cli; print(nodetask.cli.__file__)"
    proc = _isolated(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(pyz / "nodetask" / "cli.py")
