"""Packing end to end (issue 16): packed and unpacked runs give the same results, and a file that
fails inside a pack is that file's failure, rerun by `runner retry`."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner import manifest as mf
from runner.batch import Batch
from runner.outputs import Outputs
from runner.storage import Storage
from tests.e2e.test_submit import invoke, write_corpus

CORPUS = {
    "a/book.txt": 300,
    "a/book.md": 120,  # same stem in one folder
    "b/deep/er/book.txt": 200,  # same basename, nested
    "names/with space é#?%.txt": 150,
    "日本/語 #1.txt": 90,
    "corpus.txt": 60,
    "empty.txt": 0,
}
#: Where and in which job the task ran (two jobs here): the only lines of a report that differ.
_WHERE = re.compile(rb"^(Node|Task|Job): .*\n", re.MULTILINE)


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in ("summary.tsv", ".runner-job"):  # these name the job
            data = p.read_bytes()
            out[str(p.relative_to(root))] = _WHERE.sub(b"", data) if "_OUTPUT" in p.name else data
    return out


def test_packed_and_unpacked_results_are_byte_identical(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    write_corpus(tmp_path / "in", CORPUS)
    trees = {}
    for mode in ("none", "auto"):
        job = f"e2e-pack-{mode}"
        dest = tmp_path / mode
        args = ["--pack", mode, "--job-id", job, "--dest", str(dest), "-n", "5"]
        res = invoke(outputs_file, "--json", "submit", str(tmp_path / "in"), *args)
        assert res.exit_code == 0, res.stderr
        doc = json.loads(res.stdout)
        assert {f["status"] for f in doc["files"]} == {"succeeded"}
        assert doc["corpus"]["status"] == "succeeded"
        trees[mode] = _tree(dest)
        tasks = sorted(t.id for t in Batch(target_outputs).list_tasks(job))
        manifest = mf.require(Storage(target_outputs), target_outputs.input_container, job)
        if mode == "none":
            assert tasks == sorted([*(str(i) for i in range(1, len(CORPUS) + 1)), "merge"])
            assert manifest.packs == ()
        else:
            assert tasks == ["merge", "p1"]  # seven small files, one task
            assert [p.file_ids for p in manifest.packs] == [tuple(str(i) for i in range(1, len(CORPUS) + 1))]
            assert {f["runBy"] for f in doc["files"]} == {"p1"}
    assert len(trees["auto"]) == 2 * len(CORPUS) + 2  # every file's two results, the corpus's two
    assert trees["auto"] == trees["none"]
    # A resume may not change how the job's tasks are shaped.
    resume = ["--job-id", "e2e-pack-auto", "--dest", str(tmp_path / "auto"), "-n", "5"]
    again = invoke(outputs_file, "submit", str(tmp_path / "in"), "--pack", "none", *resume)
    assert again.exit_code == 2 and "--pack auto (now none)" in again.stderr
    # Without --pack, a resume keeps the job's packing (here: none, not the default auto).
    resume = ["--job-id", "e2e-pack-none", "--dest", str(tmp_path / "none"), "-n", "5"]
    kept = invoke(outputs_file, "submit", str(tmp_path / "in"), *resume)
    assert kept.exit_code == 0 and "tasks: 0 added" in kept.stderr, kept.stderr


def test_a_broken_file_in_a_pack_fails_alone_and_retry_reruns_it(tmp_path: Path, outputs_file: Path) -> None:
    write_corpus(tmp_path / "in", {"good 1.txt": 30, "bad.txt": 30, "sub/good2.txt": 40})
    fixed = tmp_path / "fixed"
    command = (
        f"test -e {fixed} || case {{input}} in *bad*) echo bad input >&2; exit 3;; esac; "
        "wc -w < {input} > {output_dir}/words.txt"
    )
    job, dest = "e2e-pack-broken", tmp_path / "r"
    args = ["--json", "submit", str(tmp_path / "in"), "--command", command, "--pack", "10", "--job-id", job]
    res = invoke(outputs_file, *args, "--dest", str(dest))
    assert res.exit_code == 10, res.stderr
    doc = json.loads(res.stdout)
    states = {f["input"]: (f["status"], f["runBy"]) for f in doc["files"]}
    assert states == {"bad.txt": ("failed", "p1"), "good 1.txt": ("succeeded", "p1"),
                      "sub/good2.txt": ("succeeded", "p1")}  # fmt: skip
    [failure] = doc["failures"]
    assert (failure["taskId"], failure["input"]) == ("p1", "bad.txt")
    assert "exited with code 3" in failure["stderrTail"]
    assert (dest / "files" / "good 1.txt.out" / "words.txt").read_text().strip() == "30"
    assert (dest / "files" / "sub" / "good2.txt.out" / "words.txt").read_text().strip() == "40"
    assert "exited with code 3" in (dest / "files" / "bad.txt.error.txt").read_text(encoding="utf-8")
    assert "1 file(s) or task(s) of job e2e-pack-broken failed" in res.stderr
    assert "task p1 (bad.txt)" in res.stderr
    # `status` and the execution report speak of files too.
    status = invoke(outputs_file, "--json", "status", job)
    assert status.exit_code == 0, status.stderr
    files = {f["input"]: (f["status"], f["taskId"]) for f in json.loads(status.stdout)["files"]}
    assert files == {
        "bad.txt": ("failed", "p1"),
        "good 1.txt": ("done", "p1"),
        "sub/good2.txt": ("done", "p1"),
    }
    assert "files of job" in status.stderr
    report = invoke(outputs_file, "report", job, "--output", str(tmp_path / "report.html"))
    assert report.exit_code == 0, report.stderr
    assert "bad.txt (1 of 3 files failed)" in (tmp_path / "report.html").read_text(encoding="utf-8")

    fixed.write_text("")
    again = invoke(outputs_file, "--json", "retry", job, "--dest", str(dest))
    assert again.exit_code == 0, again.stderr
    doc = json.loads(again.stdout)
    assert {f["status"] for f in doc["files"]} == {"succeeded"} and doc["failures"] == []
    assert (dest / "files" / "bad.txt.out" / "words.txt").read_text().strip() == "30"
    assert not (dest / "files" / "bad.txt.error.txt").exists()
