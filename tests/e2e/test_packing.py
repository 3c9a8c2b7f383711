"""Packing end to end (issue 16): packed and unpacked runs give the same results, also when the
pack's node is preempted under localbatch's weather, and a file that fails inside a pack is that
file's failure, rerun by `runner retry`."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential

from runner import manifest as mf
from runner.batch import Batch
from runner.outputs import Outputs, write_file
from runner.pool_spec import PoolSpec
from runner.storage import Storage
from tests.conftest import Azurite, start_localbatch
from tests.e2e.test_submit import invoke, reference_counts, top, write_corpus
from tests.weather.faultproxy import Fault, FaultProxy, from_sdk, via
from tests.weather.test_pool_states import needs_weather

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


@dataclass(frozen=True)
class Unpacked:
    """The corpus run with ``--pack none`` on the calm session target."""

    inputs: Path
    dest: Path
    tree: dict[str, bytes]


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory, outputs_file: Path) -> Unpacked:
    """One unpacked run of :data:`CORPUS` (job ``e2e-pack-none``), the reference of every packed run."""
    root = tmp_path_factory.mktemp("unpacked")
    write_corpus(root / "in", CORPUS)
    dest = root / "none"
    args = ["--pack", "none", "--job-id", "e2e-pack-none", "--dest", str(dest), "-n", "5"]
    res = invoke(outputs_file, "--json", "submit", str(root / "in"), *args)
    assert res.exit_code == 0, res.stderr
    assert {f["status"] for f in json.loads(res.stdout)["files"]} == {"succeeded"}
    return Unpacked(root / "in", dest, _tree(dest))


def test_packed_and_unpacked_results_are_byte_identical(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs, unpacked: Unpacked
) -> None:
    n = len(CORPUS)
    tasks = sorted(t.id for t in Batch(target_outputs).list_tasks("e2e-pack-none"))
    assert tasks == sorted([*(str(i) for i in range(1, n + 1)), "merge"])
    assert mf.require(Storage(target_outputs), target_outputs.input_container, "e2e-pack-none").packs == ()
    dest = tmp_path / "auto"
    args = ["--pack", "auto", "--job-id", "e2e-pack-auto", "--dest", str(dest), "-n", "5"]
    res = invoke(outputs_file, "--json", "submit", str(unpacked.inputs), *args)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert {f["status"] for f in doc["files"]} == {"succeeded"}
    assert doc["corpus"]["status"] == "succeeded"
    assert sorted(t.id for t in Batch(target_outputs).list_tasks("e2e-pack-auto")) == ["merge", "p1"]
    manifest = mf.require(Storage(target_outputs), target_outputs.input_container, "e2e-pack-auto")
    assert [p.file_ids for p in manifest.packs] == [tuple(str(i) for i in range(1, n + 1))]  # one task
    assert {f["runBy"] for f in doc["files"]} == {"p1"}
    tree = _tree(dest)
    assert len(tree) == 2 * n + 2  # every file's two results, the corpus's two
    assert tree == unpacked.tree
    # A resume may not change how the job's tasks are shaped.
    resume = ["--job-id", "e2e-pack-auto", "--dest", str(dest), "-n", "5"]
    again = invoke(outputs_file, "submit", str(unpacked.inputs), "--pack", "none", *resume)
    assert again.exit_code == 2 and "--pack auto (now none)" in again.stderr
    # Without --pack, a resume keeps the job's packing (here: none, not the default auto).
    resume = ["--job-id", "e2e-pack-none", "--dest", str(tmp_path / "none"), "-n", "5"]
    kept = invoke(outputs_file, "submit", str(unpacked.inputs), *resume)
    assert kept.exit_code == 0 and "tasks: 0 added" in kept.stderr, kept.stderr


def test_bundled_merges_group_by_tars_and_give_the_bytes_of_merges_grouped_by_files(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    """12 files, merge groups of 4: unpacked, merge-1..3 (4 files each) and merge; in one bundled
    pack, one merge (one tar); in 6 packs of 2, merge-1 (4 tars: files 1..8), merge-2 and merge.
    The corpus lists its inputs as the grouping by files does ("10" before "9" in merge-3), so
    every result is the same bytes."""
    write_corpus(tmp_path / "in", {f"d/f{i:02d} é.txt": 20 + 7 * i for i in range(1, 13)})
    trees, tasks = {}, {}
    for pack in ("none", "auto", "2"):
        job = f"e2e-mergereads-{pack}-{time.time_ns()}"
        args = ["--job-id", job, "--dest", str(tmp_path / pack), "-n", "5", "--merge-group-size", "4"]
        res = invoke(outputs_file, "submit", str(tmp_path / "in"), "--pack", pack, "--no-cache", *args)
        assert res.exit_code == 0, res.stderr
        trees[pack] = _tree(tmp_path / pack)
        tasks[pack] = sorted(t.id for t in Batch(target_outputs).list_tasks(job) if t.id.startswith("merge"))
    assert tasks == {
        "none": ["merge", "merge-1", "merge-2", "merge-3"],
        "auto": ["merge"],
        "2": ["merge", "merge-1", "merge-2"],
    }
    assert trees["auto"] == trees["none"] and trees["2"] == trees["none"]
    inputs = json.loads(trees["none"]["corpus_counts.json"])["inputs"]
    assert inputs[8:] == [f"f{i:02d}__.txt" for i in (10, 11, 12, 9)], inputs  # not one merge's order


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


#: localbatch's weather for the preempted pack: the Spot node is preempted 4 s after each time it
#: is ready (a requeued task starts at the beginning of a node's life: 4 s is ample), back 0.3 s later.
PREEMPTING = {"seed": 16, "preemption_rate": 1.0, "preemption_after": [4.0, 4.0], "preempted_for": [0.3, 0.3]}
PREEMPTED_JOB = "w-pack-preempted"


def _first_task_download_of_corpus_txt(method: str, path: str, headers: dict[str, str]) -> bool:
    """The pack's download of its input (one tar per pack: runner.pack_tars)."""
    return (
        method == "GET" and not from_sdk(method, path, headers) and f"/{PREEMPTED_JOB}/packs/p1.tar" in path
    )


@needs_weather
def test_a_preempted_pack_is_requeued_and_gives_the_unpacked_bytes(
    tmp_path: Path, azurite: Azurite, target_outputs: Outputs, unpacked: Unpacked
) -> None:
    """Issue 16's "packed run under the weather profile with a preempted node". A proxy between the
    tasks and Azurite holds the pack's first download of its input tar for longer than its node lives
    (20 s against 4 s), so the pack is certainly running when the node goes: nothing waits on the
    clock. Batch requeues it, it starts over on the returned node, and the job completes with the
    unpacked run's bytes; the requeue is said once, for the pack; `status` shows every file done."""
    profile = tmp_path / "weather.json"
    profile.write_text(json.dumps(PREEMPTING))
    lb = start_localbatch(tmp_path / "lb", azurite, extra_args=["--weather", str(profile)])
    released = threading.Event()
    hold = Fault(hang=20.0, release=released, count=1, only=_first_task_download_of_corpus_txt)
    try:
        with FaultProxy(azurite.blob_endpoint, faults=[hold]) as proxy:
            outputs = dataclasses.replace(
                target_outputs,
                batch_account_url=lb.url,
                batch_account_key=lb.account_key,
                batch_account_name=lb.account_name,
                storage_blob_endpoint=via(azurite.blob_endpoint, proxy),
            )  # the pool's name as on the session target: the reports' "Pool:" lines are the same
            Batch(outputs).create_pool(PoolSpec(pool_id=outputs.pool_id, dedicated_nodes=0, spot_nodes=1))
            write_file(tmp_path / "outputs.json", outputs)
            dest = tmp_path / "packed"
            args = ["--job-id", PREEMPTED_JOB, "--dest", str(dest), "-n", "5", "--timeout", "120"]
            res = invoke(tmp_path / "outputs.json", "--json", "submit", str(unpacked.inputs), *args)
            status = invoke(tmp_path / "outputs.json", "--json", "status", PREEMPTED_JOB)
            client = BatchClient(lb.url, AzureNamedKeyCredential(lb.account_name, lb.account_key))
            tasks = {t.id: t.execution_info for t in client.list_tasks(PREEMPTED_JOB)}
            released.set()  # the held request's thread ends with the proxy
    finally:
        lb.process.stop()
    assert res.exit_code == 0 and status.exit_code == 0, res.stderr + status.stderr
    assert hold.served == 1 and sorted(tasks) == ["merge", "p1"]
    pack = tasks["p1"]
    assert pack is not None and pack.requeue_count >= 1 and pack.exit_code == 0
    files = json.loads(res.stdout)["files"]
    assert sorted(f["input"] for f in files) == sorted(CORPUS)  # each file once
    for f in files:
        assert (f["status"], f["runBy"], f["requeues"]) == ("succeeded", "p1", pack.requeue_count), f
    assert _tree(dest) == unpacked.tree  # no output of the lost run, none missing
    assert not list(dest.rglob("*.part")) and not list(dest.rglob("*.error.txt"))
    times = "time" if pack.requeue_count == 1 else "times"
    said = f"task p1 (7 files: a/book.md … 日本/語 #1.txt): requeued {pack.requeue_count} {times}"
    assert said in res.stderr and res.stderr.count("): requeued") == 1, res.stderr  # once: the pack
    shown = json.loads(status.stdout)["files"]
    assert sorted((f["input"], f["status"], f["taskId"]) for f in shown) == [
        (rel, "done", "p1") for rel in sorted(CORPUS)
    ]


def test_a_missing_input_tar_fails_every_file_of_its_pack_and_resume_then_retry_deliver(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    """A pack's input tar (runner.pack_tars: one input blob per pack) is deleted before the pack
    runs (the pool has no node yet): Batch fails the pack at file staging. There is no file to
    single out, so each file of the pack fails with that reason and what to do; the resume the
    error names uploads the tar again from the local files, and `runner retry` delivers them all."""
    pool = PoolSpec(pool_id="pack-missing", dedicated_nodes=0)
    Batch(target_outputs).create_pool(pool)
    path = tmp_path / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs, pool_id=pool.pool_id))
    texts = write_corpus(tmp_path / "in", {"a.txt": 30, "gone.txt": 20, "sub/c.txt": 40})
    job, dest = "e2e-pack-missing", tmp_path / "r"
    sent = invoke(path, "submit", str(tmp_path / "in"), "--job-id", job, "--no-wait", "-n", "3")
    assert sent.exit_code == 0, sent.stderr
    assert "inputs: 1 uploaded, 0 unchanged" in sent.stderr  # one tar, no per-file blob
    assert "uploading 3 input files in 1 blob " in sent.stderr, sent.stderr  # says what it uploads
    storage = Storage(target_outputs)
    assert not storage.list_blobs(target_outputs.input_container, f"{job}/inputs/")
    storage.delete_prefix(target_outputs.input_container, f"{job}/packs/p1.tar")
    client = BatchClient(
        target_outputs.batch_account_url,
        AzureNamedKeyCredential(target_outputs.batch_account_name, target_outputs.batch_account_key or ""),
    )
    resize = bm.BatchPoolResizeOptions(target_dedicated_nodes=1)
    client.begin_resize_pool(pool.pool_id, resize, polling_interval=0.1).result()
    try:
        deadline = time.monotonic() + 60
        while client.get_task(job, "p1").state != bm.BatchTaskState.COMPLETED:
            assert time.monotonic() < deadline, "the pack did not fail at staging"
            time.sleep(0.1)
        res = invoke(path, "--json", "results", job, "--wait", "--dest", str(dest), "--timeout", "60")
        resumed = invoke(
            path, "submit", str(tmp_path / "in"), "--job-id", job, "-n", "3", "--dest", str(dest)
        )
        again = invoke(path, "--json", "retry", job, "--dest", str(dest), "--timeout", "60")
    finally:
        client.begin_delete_pool(pool.pool_id, polling_interval=0.1).result()
    print(res.stderr)  # what the user saw, for a failing run's report
    assert res.exit_code == 10, res.stderr
    doc = json.loads(res.stdout)
    assert {f["input"]: (f["status"], f["runBy"]) for f in doc["files"]} == {
        rel: ("failed", "p1") for rel in texts
    }
    assert doc["corpus"]["status"] == "skipped"
    assert sorted(f["input"] for f in doc["failures"]) == sorted(texts)
    why = doc["failures"][0]["stderrTail"]
    assert "could not start" in why and f"--job-id {job}" in why and f"runner retry {job}" in why, why
    assert resumed.exit_code == 10 and "inputs: 1 uploaded, 0 unchanged" in resumed.stderr, resumed.stderr
    assert again.exit_code == 0, again.stderr
    redone = json.loads(again.stdout)
    assert {f["status"] for f in redone["files"]} == {"succeeded"} and redone["failures"] == []
    corpus = sum((reference_counts(t) for t in texts.values()), start=reference_counts(""))
    assert redone["corpus"]["top"] == top(corpus, 3)
    tops = {f["input"]: f["top"] for f in redone["files"]}
    assert tops == {rel: top(reference_counts(text), 3) for rel, text in texts.items()}
