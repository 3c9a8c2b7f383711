"""A corpus with a few files changed merges as one delta task from the cached corpus
(runner.delta_merge) on real Azurite + localbatch, and gives the ``--no-cache`` corpus."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from runner import cache
from runner import manifest as mf
from runner.batch import Batch
from runner.batch_types import TaskFailure
from runner.outputs import Outputs
from runner.results import FileResult, JobResults, TaskOutcome
from runner.storage import Storage
from runner.tasks import DeltaSources
from tests.e2e.test_submit import invoke, make_text

N_FILES = 36
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


def _files(dest: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(dest)): p.read_bytes() for p in sorted((dest / "files").glob("**/*")) if p.is_file()
    }


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

    # Two files changed (one's unique words drop to 0; the two run as one pack, so their counts
    # come from the pack's results tar), one removed (the file ids after it shift).
    (corpus / "f03 é.txt").write_text(f"{salt} 猫 猫 {make_text(3, 40)}", encoding="utf-8")
    (corpus / "f07 é.txt").write_text(f"{salt} mot7 {make_text(70, 40)}", encoding="utf-8")
    (corpus / "f11 é.txt").unlink()
    stderr = _submit(outputs_file, corpus, f"{job}-b", tmp_path / "b", "--cache")
    assert "delta merge" in stderr
    tasks = {t.id for t in Batch(target_outputs).list_tasks(f"{job}-b")}
    assert "merge" in tasks and not any(t.startswith("merge-") for t in tasks), tasks
    assert len(tasks) == 2, tasks  # the changed files' pack and the one merge
    # `results` later finds the cached files' results in the bundle that holds them (they have
    # no entry of their own), the same bytes the submission downloaded.
    again = invoke(outputs_file, "results", f"{job}-b", "--dest", str(tmp_path / "b2"))
    assert again.exit_code == 0, again.stderr
    assert _files(tmp_path / "b2") == _files(tmp_path / "b") and len(_files(tmp_path / "b")) == 2 * (
        N_FILES - 1
    )

    _submit(outputs_file, corpus, f"{job}-c", tmp_path / "c", "--no-cache")
    assert _corpus(tmp_path / "b") == _corpus(tmp_path / "c")
    counts = json.loads(_corpus(tmp_path / "b")[0])
    assert f"vanishing{salt}" not in counts["counts"] and "ünïcödé" not in counts["counts"]
    assert counts["counts"]["猫"] == 2 and len(counts["inputs"]) == N_FILES - 1


def test_a_refused_delta_merge_drops_its_base_and_only_that(storage_outputs: Outputs, tmp_path: Path) -> None:
    storage, container = Storage(storage_outputs), storage_outputs.output_container
    base, other = secrets.token_hex(32), secrets.token_hex(32)
    for key in (base, other):
        storage.upload_bytes(
            container, f"{cache.CACHE_PREFIX}{key}/corpus_counts.json", b"{}", overwrite=True
        )
    delta = DeltaSources(f"{cache.CACHE_PREFIX}{base}/corpus_counts.json", (), "j/merge-order.json")
    task = mf.ManifestTask("1", "a.txt", "j/inputs/a.txt", "a.txt", 1)
    manifest = mf.Manifest("j", "now", 4, True, None, 0, (task,), delta=delta, delta_sources=("1",))
    corpus = FileResult("merge", "(corpus)", TaskOutcome.FAILED)

    def failed(code: int) -> JobResults:
        failure = TaskFailure("merge", "corpus-wide top words", code, "UserError", None, None, "")
        return JobResults("j", "local", tmp_path, 4, (), corpus, (failure,))

    cache.after_collect(storage, container, manifest, failed(1))  # another failure: kept
    assert cache.read_entry(storage, container, base) is not None
    cache.after_collect(storage, container, manifest, failed(2))  # nodetask refused the base
    assert cache.read_entry(storage, container, base) is None
    assert cache.read_entry(storage, container, other) is not None
