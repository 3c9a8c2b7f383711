"""Per-file results downloaded while the merge runs (runner.prefetch), on the real local target.

One ``--no-wait`` job of three small files; the test then plays the poll that
sees every per-file task completed while the merge is still counted as
running, and checks what the early download leaves and what ``download``
then does: a result fetched early is complete (the blob's bytes) and not
fetched again; one rewritten since (as a retry rewrites it) is fetched again;
a download by a stale ETag is refused and leaves no file.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner import manifest as mf
from runner.batch_types import TaskCounts
from runner.cli import app
from runner.errors import RemoteError
from runner.outputs import Outputs
from runner.prefetch import Prefetch
from runner.progress import NullReporter
from runner.results import download
from runner.storage import DownloadItem
from runner.targets import AuthMode, Session, Target, TargetKind
from runner.tasks import MERGE_TASK_ID


def _wait_completed(session: Session, job_id: str, total: int) -> None:
    deadline = time.monotonic() + 60
    while session.batch.task_counts(job_id).completed < total:
        assert time.monotonic() < deadline, f"job {job_id} did not complete"
        time.sleep(0.05)


def test_results_come_down_while_the_merge_runs_and_changed_ones_again(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, words in enumerate(("a b b", "c c c d", "e f f f f")):
        (corpus / f"t{i}.txt").write_text(f"{words}\n" * 50, encoding="utf-8")
    job_id = "prefetch-1"
    args = ["--outputs", str(outputs_file), "-q", "submit", str(corpus), "--job-id", job_id, "--no-wait"]
    args += ["--pack", "none"]  # a result blob per file (a pack's results tar: tests/e2e/test_packing.py)
    res = CliRunner().invoke(app, [*args, "--numwords", "3"], catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    session = Session(Target(TargetKind.FILE, outputs_file=outputs_file), target_outputs, AuthMode.SHAREDKEY)
    out, storage = target_outputs, session.storage
    manifest = mf.load(storage, out.input_container, job_id)
    assert manifest is not None and len(manifest.merge_steps) == 1
    n_file_tasks = len(manifest.file_task_ids)
    dest = tmp_path / "results"

    early = Prefetch(session, manifest, dest)
    early.poll(TaskCounts(active=1, running=n_file_tasks, completed=0, succeeded=0, failed=0))
    assert not early.started  # per-file tasks still running: nothing to fetch yet
    _wait_completed(session, job_id, len(manifest.task_ids))
    early.poll(TaskCounts(active=0, running=1, completed=n_file_tasks, succeeded=n_file_tasks, failed=0))
    assert early.started
    fetched = early.finish()

    per_file = [b for b in storage.list_blobs(out.output_container, f"{job_id}/") if "/merge/" not in b.name]
    assert sorted(fetched) == sorted(b.name for b in per_file) and len(per_file) == 6  # report + counts x 3
    for name, planned in fetched.items():  # complete: the blob's bytes, nothing of the merge
        assert planned.item.dest.read_bytes() == storage.download_bytes(out.output_container, name)
        assert planned.task_id != MERGE_TASK_ID and not list(dest.rglob("*.part"))
    assert not (dest / "corpus_OUTPUT.txt").exists()

    rewritten_name = next(n for n in sorted(fetched) if "_OUTPUT" in n)  # a report: the counts stay readable
    kept_name = next(n for n in sorted(fetched) if n != rewritten_name)
    kept = fetched[kept_name].item.dest
    kept_inode = kept.stat().st_ino
    rewritten = b"R" * fetched[rewritten_name].size  # the same size: only the version tells
    storage.upload_bytes(out.output_container, rewritten_name, rewritten)
    stale = DownloadItem(rewritten_name, tmp_path / "stale.txt", fetched[rewritten_name].item.etag)
    with pytest.raises(RemoteError):  # the listed version or nothing, never another one
        storage.download_files(out.output_container, [stale])
    assert not (tmp_path / "stale.txt").exists()

    states = {t.id: t for t in session.batch.list_tasks(job_id)}
    results = download(
        storage,
        out.output_container,
        manifest,
        dest,
        states,
        target="test",
        failures=[],
        reporter=NullReporter(),
        prefetched=fetched,
    )
    assert fetched[rewritten_name].item.dest.read_bytes() == rewritten
    assert kept.stat().st_ino == kept_inode  # not downloaded again
    assert results.corpus is not None and results.corpus.words == 12 * 50
    assert all(r.words is not None for r in results.files)
