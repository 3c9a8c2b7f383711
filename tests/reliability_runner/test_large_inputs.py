"""Large inputs: a 1 GB file and 10,000 small files, with the runner's peak memory bounded.

Both run with ``--no-wait`` on a pool of no nodes (the tasks stay queued): what is
checked is the runner's part (streaming upload with MD5, task submission), measured
through the kernel's high-water mark of the runner's memory (``VmHWM``). Running 10,000 tasks or counting
1 GB on the simulated nodes would take minutes on 2 cores and test localbatch, not
the runner. Uploads are checked blob by blob (count, size, Content-MD5) and tasks by
count, against values computed here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runner.batch import Batch
from runner.outputs import load_file
from runner.storage import Storage
from tests.reliability_runner.conftest import run, run_measured

#: Both cases: the runner's memory is bounded by the number of files (one record each),
#: never by their bytes.
RSS_LIMIT_MB = 300


def _write_1gb(path: Path) -> tuple[int, bytes]:
    """1 GiB of text from a repeated 1 MiB block, in 64 large writes; returns (size, md5)."""
    line = b"streaming keeps memory flat\n"
    block = (line * ((1 << 20) // len(line) + 1))[: 1 << 20]
    chunk = block * 16
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "wb") as handle:
        for _ in range(64):
            handle.write(chunk)
            digest.update(chunk)
    return 64 * len(chunk), digest.digest()


@pytest.mark.slow
def test_a_1gb_file_is_streamed_with_bounded_memory(tmp_path: Path, idle_pool: Path) -> None:
    out = load_file(idle_pool)
    inputs = tmp_path / "in"
    inputs.mkdir()
    size, md5 = _write_1gb(inputs / "huge.txt")
    job_id = "rel-1gb"
    args = ["--job-id", job_id, "--no-wait", "--pack", "none"]  # 10,000 tasks, one per file
    res = run_measured(idle_pool, "--json", "submit", str(inputs), *args)
    try:
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["tasksAdded"] == 2  # the file's task and the merge
        assert res.max_rss_mb < RSS_LIMIT_MB, f"peak RSS {res.max_rss_mb:.0f} MB for a 1 GiB input"
        print(f"1 GiB upload: runner peak RSS {res.max_rss_mb:.0f} MB")
        blob = Storage(out)._client.get_blob_client(out.input_container, f"{job_id}/inputs/huge.txt")
        props = blob.get_blob_properties()
        assert props.size == size
        remote_md5 = props.content_settings.content_md5
        assert remote_md5 is not None and bytes(remote_md5) == md5
    finally:
        cleaned = run(idle_pool, "clean", job_id)
        assert cleaned.returncode == 0, cleaned.stderr


@pytest.mark.slow
def test_10000_small_files_are_uploaded_and_submitted_once_with_bounded_memory(
    tmp_path: Path, idle_pool: Path
) -> None:
    out = load_file(idle_pool)
    inputs = tmp_path / "in"
    expected: dict[str, bytes] = {}
    for i in range(10_000):
        rel = f"d{i % 50:02d}/f{i:05d}.txt"
        expected[rel] = f"w{i % 13} x{i} y\n".encode()
    for folder in {rel.split("/")[0] for rel in expected}:
        (inputs / folder).mkdir(parents=True)
    for rel, content in expected.items():
        (inputs / rel).write_bytes(content)
    job_id = "rel-10k"
    args = ["--job-id", job_id, "--no-wait", "--pack", "none"]  # 10,000 tasks, one per file
    res = run_measured(idle_pool, "--json", "submit", str(inputs), *args)
    assert res.returncode == 0, res.stderr
    assert res.max_rss_mb < RSS_LIMIT_MB, f"peak RSS {res.max_rss_mb:.0f} MB for 10,000 inputs"
    print(f"10,000 inputs: runner peak RSS {res.max_rss_mb:.0f} MB")
    merges = {f"merge-{k}" for k in range(1, 21)} | {"merge"}  # groups of 500, then the final merge
    assert json.loads(res.stdout)["tasksAdded"] == 10_000 + len(merges)
    blobs = {b.name: b.size for b in Storage(out).list_blobs(out.input_container, f"{job_id}/inputs/")}
    assert blobs == {f"{job_id}/inputs/{rel}": len(content) for rel, content in expected.items()}
    batch = Batch(out)
    counts = batch.task_counts(job_id)
    assert (counts.active, counts.running, counts.completed) == (10_000 + len(merges), 0, 0)
    ids = batch.existing_task_ids(job_id)
    assert ids == {str(i) for i in range(1, 10_001)} | merges
    # The manifest maps every task to its own input: no name lost or doubled.
    manifest = json.loads(Storage(out).download_bytes(out.input_container, f"{job_id}/manifest.json"))
    by_task = {t["id"]: t["input"] for t in manifest["tasks"]}
    assert sorted(by_task.values()) == sorted(expected) and set(by_task) == ids - merges
    assert batch.delete_job(job_id) is True  # the blobs stay: deleting 10,000 takes a minute
