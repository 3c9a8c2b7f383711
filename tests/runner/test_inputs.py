from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.inputs import expand


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_directory_is_walked_recursively_with_relative_names(tmp_path: Path) -> None:
    _touch(tmp_path / "d" / "a.txt")
    _touch(tmp_path / "d" / "sub" / "a.txt")
    _touch(tmp_path / "d" / ".hidden.txt")
    got = expand([str(tmp_path / "d")])
    assert [i.relpath for i in got] == ["a.txt", "sub/a.txt"]


def test_same_basename_in_two_folders_keeps_distinct_names(tmp_path: Path) -> None:
    a = _touch(tmp_path / "x" / "book.txt")
    b = _touch(tmp_path / "y" / "book.txt")
    got = expand([str(a), str(b)])
    assert [i.relpath for i in got] == ["x/book.txt", "y/book.txt"]


def test_all_missing_paths_are_listed_at_once(tmp_path: Path) -> None:
    _touch(tmp_path / "ok.txt")
    with pytest.raises(UsageError) as info:
        expand(
            [
                str(tmp_path / "ok.txt"),
                str(tmp_path / "nope1"),
                str(tmp_path / "nope2"),
                str(tmp_path / "*.zz"),
            ]
        )
    message = str(info.value)
    assert "nope1" in message and "nope2" in message and "*.zz" in message
    assert info.value.exit_code == 2


def test_globs_expand_and_nothing_to_do_is_an_error(tmp_path: Path) -> None:
    _touch(tmp_path / "a.txt")
    _touch(tmp_path / "b.md")
    _touch(tmp_path / "deep" / "c.txt")
    got = expand([str(tmp_path / "**" / "*.txt")])
    assert [i.relpath for i in got] == ["a.txt", "deep/c.txt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="nothing to do"):
        expand([str(tmp_path / "empty")])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    f = _touch(tmp_path / "secret.txt")
    f.chmod(0)
    with pytest.raises(UsageError, match="cannot read"):
        expand([str(f)])


def test_symlink_loop_does_not_hang(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _touch(tmp_path / "d" / "a.txt")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d", target_is_directory=True)
    got = expand([str(tmp_path / "d")])
    assert [i.relpath for i in got] == ["a.txt"]
    assert "skipped" not in caplog.text  # the directory is seen again and left: not walked down to ELOOP


def test_special_characters_in_names_are_kept(tmp_path: Path) -> None:
    names = ["a b.txt", "é☃.txt", "h#a?s%h.txt"]
    for n in names:
        _touch(tmp_path / n)
    got = expand([str(tmp_path)])
    assert sorted(i.relpath for i in got) == sorted(names)


def test_names_ending_in_a_dot_are_refused_before_anything(tmp_path: Path) -> None:
    """Azure Storage drops a trailing '.' from blob names (Azurite keeps it): refuse, all named."""
    _touch(tmp_path / "in" / "ok.txt")
    _touch(tmp_path / "in" / "notes.")
    _touch(tmp_path / "in" / "v1." / "a.txt")
    with pytest.raises(UsageError) as info:
        expand([str(tmp_path / "in")])
    assert "notes." in str(info.value) and "v1./a.txt" in str(info.value)
    assert "ok.txt" not in str(info.value) and info.value.exit_code == 2
    # A dot in the common root is not part of any blob name: fine.
    _touch(tmp_path / "root." / "b.txt")
    assert [i.relpath for i in expand([str(tmp_path / "root.")])] == ["b.txt"]


def test_each_file_walked_is_its_real_path_with_its_size(tmp_path: Path) -> None:
    """Files are named by their real path: a linked file by its target's, a file under a linked
    directory by the directory's real path; a second link to a directory is not walked again."""
    root = tmp_path.resolve()
    real = root / "real"
    _touch(real / "a.txt", "aaa")
    _touch(real / "sub" / "b.txt", "bb")
    outside = _touch(root / "outside" / "o.txt", "o")
    (real / "link.txt").symlink_to(outside)
    (real / "sublink").symlink_to(real / "sub", target_is_directory=True)
    (root / "top").symlink_to(real, target_is_directory=True)
    got = expand([str(root / "top")])
    assert {i.relpath: (i.path, i.size) for i in got} == {
        "outside/o.txt": (outside, 1),
        "real/a.txt": (real / "a.txt", 3),
        "real/sub/b.txt": (real / "sub" / "b.txt", 2),
    }
