from __future__ import annotations

from pathlib import PurePosixPath

from runner import manifest as mf
from runner.results import local_names


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
