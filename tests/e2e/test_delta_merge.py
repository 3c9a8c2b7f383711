"""A corpus with a few files changed merges as one delta task from the cached corpus
(runner.delta_merge) on real Azurite + localbatch, and gives the ``--no-cache`` corpus."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from runner.batch import Batch
from runner.outputs import Outputs
from tests.e2e.test_submit import invoke, make_text

N_FILES = 30
GROUP = ["--merge-group-size", "6"]  # 30 files: merge-1..5 and merge in a full merge


def _submit(outputs_file: Path, corpus: Path, job: str, dest: Path, *extra: str) -> str:
    args = ["submit", str(corpus), "-n", "4", "--job-id", job, "--dest", str(dest), "--timeout", "120"]
    res = invoke(outputs_file, *args, *GROUP, *extra)
    assert res.exit_code == 0, res.stderr
    return res.stderr


def _corpus(dest: Path) -> tuple[bytes, bytes]:
    """The corpus counts, and its report without the lines that say where it ran."""
    report = (dest / "corpus_OUTPUT.txt").read_bytes().splitlines(keepends=True)
    kept = b"".join(x for x in report if not x.startswith((b"Task: ", b"Job:  ", b"Node: ", b"Pool: ")))
    return (dest / "corpus_counts.json").read_bytes(), kept


def test_few_changed_files_merge_as_one_delta_task_equal_to_a_full_merge(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    salt = secrets.token_hex(6)  # content no other test made: the cache holds none of it
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(N_FILES):
        (corpus / f"f{i:02d} é.txt").write_text(f"{salt} mot{i} {make_text(i, 40)}", encoding="utf-8")
    (corpus / "f03 é.txt").write_text(
        f"{salt} vanishing{salt} ünïcödé 猫 {make_text(3, 40)}", encoding="utf-8"
    )
    job = f"delta-{salt}"
    _submit(outputs_file, corpus, f"{job}-a", tmp_path / "a", "--cache")

    # One file changed (its unique words drop to 0), one removed (the file ids after it shift).
    (corpus / "f03 é.txt").write_text(f"{salt} 猫 猫 {make_text(3, 40)}", encoding="utf-8")
    (corpus / "f11 é.txt").unlink()
    stderr = _submit(outputs_file, corpus, f"{job}-b", tmp_path / "b", "--cache")
    assert "delta merge" in stderr
    tasks = {t.id for t in Batch(target_outputs).list_tasks(f"{job}-b")}
    assert "merge" in tasks and not any(t.startswith("merge-") for t in tasks), tasks
    assert len(tasks) == 2, tasks  # the changed file's task and the one merge

    _submit(outputs_file, corpus, f"{job}-c", tmp_path / "c", "--no-cache")
    assert _corpus(tmp_path / "b") == _corpus(tmp_path / "c")
    counts = json.loads(_corpus(tmp_path / "b")[0])
    assert f"vanishing{salt}" not in counts["counts"] and "ünïcödé" not in counts["counts"]
    assert counts["counts"]["猫"] == 2 and len(counts["inputs"]) == N_FILES - 1
