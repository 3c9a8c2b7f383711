from __future__ import annotations

import io
import tarfile
from dataclasses import replace
from pathlib import Path, PurePosixPath

from nodetask.packed import ERROR_FILE
from runner import manifest as mf
from runner.results import TARS_DIR, PlannedDownload, _Destinations, _unpack, local_names
from runner.storage import DownloadItem


def _manifest(*inputs: str) -> mf.Manifest:
    tasks = tuple(
        mf.ManifestTask(str(i), rel, mf.input_blob("j", rel), PurePosixPath(rel).name, 1)
        for i, rel in enumerate(inputs, start=1)
    )
    return mf.Manifest("j", mf.now_iso(), 3, True, None, 0, tasks)


def test_local_names_follow_the_tutorial_when_nothing_collides() -> None:
    names = local_names(_manifest("book.txt", "d/book.txt", "notes"))
    assert [(str(n.report), str(n.counts)) for n in names.values()] == [
        ("files/book_OUTPUT.txt", "files/book_counts.json"),
        ("files/d/book_OUTPUT.txt", "files/d/book_counts.json"),
        ("files/notes_OUTPUT", "files/notes_counts.json"),
    ]


def test_local_names_never_share_a_path_even_through_chains() -> None:
    # x.txt, x.md and x all want x_counts.json; then x.txt's x.txt_counts.json is x.txt.md's.
    inputs = ("x.txt", "x.md", "x.txt.md", "y.txt", "x")
    names = local_names(_manifest(*inputs))
    counts = {rel: str(names[str(i)].counts) for i, rel in enumerate(inputs, start=1)}
    assert counts == {
        "x.txt": "files/x.txt_counts.json",
        "x.md": "files/x.md_counts.json",
        "x.txt.md": "files/x.txt.md_counts.json",
        "y.txt": "files/y_counts.json",
        "x": "files/x_counts.json",
    }
    paths = [p for n in names.values() for p in (n.report, n.counts)]
    assert len(set(paths)) == len(paths)


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data) if kind == tarfile.REGTYPE else 0
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_a_results_tar_unpacks_to_the_per_file_tree_and_its_names_are_data(tmp_path: Path) -> None:
    """runner.results: a bundled pack's members go where their blobs would; a member that names
    another pack's file, escapes, is a link or is not a plain name is left out."""
    manifest = replace(
        _manifest("a/x.txt", "b/y.txt", "c.txt"), pack="auto", packs=(mf.ManifestPack("p1", ("1", "2")),)
    )
    dest = tmp_path / "dest"
    tar_path = dest / TARS_DIR / "p1.tar"
    tar_path.parent.mkdir(parents=True)
    with tarfile.open(tar_path, "w") as tar:
        _member(tar, "1/x_counts.json", b"{}")
        _member(tar, "1/x_OUTPUT.txt", b"report")
        _member(tar, f"2/{ERROR_FILE}", b"why\n")
        _member(tar, "3/c_counts.json")  # file 3 is not in p1
        _member(tar, "1/../../../escape.txt")
        _member(tar, "/abs/1/x.txt")
        _member(tar, "2/link", kind=tarfile.SYMTYPE)
        _member(tar, "2/evil\x1b[2Jname")
    planned = PlannedDownload("p1", DownloadItem("j/p1/results.tar", tar_path), tar_path.stat().st_size)
    local: dict[str, list[Path]] = {}
    _unpack(planned, {"1", "2"}, _Destinations(manifest, dest), local)
    files = sorted(
        str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and TARS_DIR not in p.parts
    )
    assert files == ["files/a/x_OUTPUT.txt", "files/a/x_counts.json", "files/b/y.txt.error.txt"]
    assert (dest / "files/a/x_OUTPUT.txt").read_bytes() == b"report"
    assert sorted(local) == ["1", "2"] and not any(tmp_path.parent.glob("escape.txt"))
    assert not (tmp_path / "escape.txt").exists()
