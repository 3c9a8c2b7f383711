"""``--allow-failures`` with a pack split for a missing input (issue 16): the pack's other files,
run again as a new task, are in the corpus; only the file whose blob is gone is missing from it,
with its reason, and the console, ``summary.tsv``, ``--json`` and the report say the same.

One real job on a pool that starts with no node, so that one input blob can be deleted before the
pack runs (Batch then fails the pack at file staging), as in tests/e2e/test_packing.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections import Counter
from pathlib import Path

from azure.batch import models as bm
from azure.core.exceptions import ResourceNotFoundError
from typer.testing import Result

from runner.batch import Batch
from runner.outputs import Outputs, write_file
from runner.pool_spec import PoolSpec
from runner.storage import Storage
from tests.e2e.test_failures import _sdk_client
from tests.e2e.test_submit import invoke, reference_counts, top, write_corpus

FILES = {"a.txt": 30, "gone.txt": 20, "m.txt": 25, "sub/c.txt": 40, "y.txt": 10, "z.txt": 15}


def test_allow_failures_with_a_split_pack_merges_the_rerun_files(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    pool = PoolSpec(pool_id="pack-partial", dedicated_nodes=0)
    Batch(target_outputs).create_pool(pool)
    path = tmp_path / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs, pool_id=pool.pool_id))
    texts = write_corpus(tmp_path / "in", FILES)
    job, dest = "e2e-pack-partial", tmp_path / "r"
    sent = invoke(
        path,
        "submit",
        str(tmp_path / "in"),
        "--job-id",
        job,
        "--no-wait",
        "-n",
        "3",
        "--allow-failures",
        "--pack",
        "3",
    )
    assert sent.exit_code == 0, sent.stderr
    Storage(target_outputs).delete_prefix(target_outputs.input_container, f"{job}/inputs/gone.txt")
    client = _sdk_client(target_outputs)
    resize = bm.BatchPoolResizeOptions(target_dedicated_nodes=1)
    client.begin_resize_pool(pool.pool_id, resize, polling_interval=0.1).result()
    try:
        deadline = time.monotonic() + 60
        while client.get_task(job, "p1").state != bm.BatchTaskState.COMPLETED:
            assert time.monotonic() < deadline, "the pack did not fail at staging"
            time.sleep(0.1)

        res = invoke(path, "--json", "results", job, "--wait", "--dest", str(dest), "--timeout", "60")
        report = invoke(path, "report", job, "--output", str(tmp_path / "report.html"))
    finally:
        client.begin_delete_pool(pool.pool_id, polling_interval=0.1).result()
    print(res.stderr)  # what the user saw, for a failing run's report
    assert res.exit_code == 10, res.stderr  # a file failed, and the exit code says so
    doc = json.loads(res.stdout)
    files = {f["input"]: f for f in doc["files"]}
    assert (files["gone.txt"]["status"], files["gone.txt"]["runBy"]) == ("failed", "p1")
    runs = {rel: (f["status"], f["runBy"]) for rel, f in files.items() if rel != "gone.txt"}
    by_task = {rel: run_by for rel, (status, run_by) in runs.items() if status == "succeeded"}
    assert by_task == {"a.txt": "p1-2", "m.txt": "p1-2", "sub/c.txt": "p2", "y.txt": "p2", "z.txt": "p2"}
    good = sum((reference_counts(t) for rel, t in texts.items() if rel != "gone.txt"), start=Counter[str]())
    assert doc["corpus"]["status"] == "succeeded"
    assert (doc["corpus"]["top"], doc["corpus"]["words"]) == (top(good, 3), sum(good.values()))
    [missing] = doc["missingFromCorpus"]
    assert missing["input"] == "gone.txt"
    assert f"{job}/inputs/gone.txt" in missing["why"] and "missing" in missing["why"], missing
    said = res.stderr.split("merged without")[-1]
    assert "the corpus is merged without 1 of 6 file(s)" in res.stderr, res.stderr
    assert "(gone.txt)" in said and not any(f"({rel})" in said for rel in runs), said
    rows = [r.split("\t") for r in (dest / "summary.tsv").read_text(encoding="utf-8").splitlines()]
    lacking = [r for r in rows if len(r) > 2 and r[2] == "missing from corpus"]
    assert [(r[1], f"{job}/inputs/gone.txt" in r[-1]) for r in lacking] == [("gone.txt", True)], rows
    assert report.exit_code == 0, report.stderr
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    summary = page[
        page.index('<section id="summary">') : page.index("</section>", page.index('id="summary"'))
    ]
    assert "merged without 1 of 6 file(s)" in summary and "(gone.txt)" in summary, summary
    assert not any(f"({rel})" in summary for rel in runs), summary
    assert invoke(path, "clean", job).exit_code == 0


def test_a_watching_submit_re_adds_both_merge_levels_after_the_rerun(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    """The same while `runner submit` watches, with merges in two levels (groups of 3): the
    partial merge of the split pack's files and the final merge wait, then run on the rerun."""
    pool = PoolSpec(pool_id="pack-partial-2", dedicated_nodes=0)
    Batch(target_outputs).create_pool(pool)
    path = tmp_path / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs, pool_id=pool.pool_id))
    texts = write_corpus(tmp_path / "in", FILES)
    job, client, done = "e2e-pack-partial-2", _sdk_client(target_outputs), list[Result]()
    args = ["--json", "submit", str(tmp_path / "in"), "--job-id", job, "-n", "3", "--allow-failures"]
    args += ["--pack", "3", "--merge-group-size", "3", "--timeout", "60", "--dest", str(tmp_path / "r")]
    watcher = threading.Thread(target=lambda: done.append(invoke(path, *args)))
    watcher.start()
    try:
        deadline = time.monotonic() + 60
        while not done:  # p1, p2, merge-1, merge-2, merge: all added, none can run yet
            with contextlib.suppress(ResourceNotFoundError):
                if len(list(client.list_tasks(job))) == 5:
                    break
            assert time.monotonic() < deadline, "the tasks were not added"
            time.sleep(0.1)
        Storage(target_outputs).delete_prefix(target_outputs.input_container, f"{job}/inputs/gone.txt")
        resize = bm.BatchPoolResizeOptions(target_dedicated_nodes=1)
        client.begin_resize_pool(pool.pool_id, resize, polling_interval=0.1).result()
        watcher.join(90)
    finally:
        client.begin_delete_pool(pool.pool_id, polling_interval=0.1).result()
    [res] = done
    assert res.exit_code == 10, res.stderr
    assert "merge(s) merge-1, merge added again without task(s) p1" in res.stderr, res.stderr
    doc = json.loads(res.stdout)
    good = sum((reference_counts(t) for rel, t in texts.items() if rel != "gone.txt"), start=Counter[str]())
    assert (doc["corpus"]["top"], doc["corpus"]["words"]) == (top(good, 3), sum(good.values()))
    assert [m["input"] for m in doc["missingFromCorpus"]] == ["gone.txt"]
    assert invoke(path, "clean", job).exit_code == 0
