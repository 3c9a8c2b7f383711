"""Output-file pattern matching: glob's answers on a tree without symlinks, none of glob's walks through them.

The matcher walks without following symlinks; on a tree with no symlinks it
must find exactly what :func:`glob.glob` (``recursive=True``, what localbatch
used before) finds, hidden names included, so no pattern a task relies on
changes meaning.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from localbatch.transfer import match_pattern

_TREE = [
    "a.txt",
    "b.json",
    ".hidden.txt",
    "sub/c.txt",
    "sub/d.log",
    "sub/deeper/e.txt",
    "sub/.h/f.txt",
    ".dot/g.txt",
    "x[1].txt",
    "other/sub/h.txt",
]
_PATTERNS = [
    "*.txt",
    "*",
    "**/*",
    "**/*.txt",
    "sub/*",
    "sub/**",
    "sub/**/*.txt",
    "**/sub/*.txt",
    "?.json",
    "s*/*.log",
    ".*",
    ".dot/*",
    "sub/.h/*",
    "x[[]1].txt",
    "a.txt",
    "../stdout.txt",
    "../**/*.txt",
    "nothing/*",
    "sub/deeper/e.txt",
]


def _glob(pattern: str, wd: Path) -> list[tuple[str, str]]:
    """What the glob-based matcher returned: (path, name relative to the static base), files only."""
    parts = pattern.split("/")
    static = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        static.append(part)
    base = wd.joinpath(*static) if static else wd
    rest = parts[len(static) :]
    if not rest:
        return [(os.path.normpath(base), base.name)] if base.is_file() else []
    found = sorted(glob.glob(str(base.joinpath(*rest)), recursive=True))
    return [(os.path.normpath(f), Path(f).relative_to(base).as_posix()) for f in found if Path(f).is_file()]


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    wd = tmp_path / "wd"
    for rel in _TREE:
        (wd / rel).parent.mkdir(parents=True, exist_ok=True)
        (wd / rel).write_text(rel)
    (tmp_path / "stdout.txt").write_text("out")
    return tmp_path


@pytest.mark.parametrize("pattern", _PATTERNS)
def test_same_matches_as_glob_without_symlinks(task_dir: Path, pattern: str) -> None:
    wd = task_dir / "wd"
    ours = sorted((os.path.normpath(p), rel) for p, rel in match_pattern(pattern, wd, task_dir))
    assert ours == sorted(_glob(pattern, wd))


def test_patterns_never_leave_the_task_directory(task_dir: Path) -> None:
    wd = task_dir / "wd"
    outside = task_dir.parent / "outside.txt"
    outside.write_text("secret")
    for pattern in ("../../outside.txt", "../../*.txt", "/etc/passwd", "../../**/*.txt"):
        assert match_pattern(pattern, wd, task_dir) == [], pattern
