"""``runner submit --allow-failures`` (issue 15): the corpus merge runs on the files that succeeded,
in two levels too, and the report (console, summary.tsv, --json) names the file missing and why.

One real job: four inputs in merge groups of two, on a pool that starts with no node so that one
input's blob can be taken away before any task runs (its task then fails to download it, as on
Azure when a blob is deleted or a SAS expires). Then the pool gets a node and the job runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

from azure.batch import models as bm

from runner import manifest as mf
from runner.batch import Batch
from runner.outputs import Outputs, write_file
from runner.pool_spec import PoolSpec
from runner.storage import Storage
from tests.e2e.test_failures import _sdk_client
from tests.e2e.test_submit import invoke, reference_counts, top, write_corpus

FILES = {"a.txt": 60, "b.txt": 50, "sub/bad.txt": 40, "z.txt": 30}


def test_allow_failures_merges_the_files_that_succeeded_and_names_the_missing_one(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    spec = PoolSpec(pool_id="e2e-partial", dedicated_nodes=0, task_slots_per_node=4)
    Batch(target_outputs).create_pool(spec)
    out = dataclasses.replace(target_outputs, pool_id=spec.pool_id)
    outputs_file = tmp_path / "outputs.json"
    write_file(outputs_file, out)
    texts = write_corpus(tmp_path / "in", FILES)
    job_id = "e2e-partial"
    # One task per file: a missing input blob fails the whole task that carries it (a pack's
    # resource files are downloaded before it runs), and this test is about one missing file.
    args = ["submit", str(tmp_path / "in"), "--job-id", job_id, "--merge-group-size", "2", "--pack", "none"]

    refused = invoke(outputs_file, *args, "--allow-failures", "--no-aggregate")
    assert refused.exit_code == 2 and "--allow-failures" in refused.stderr, refused.stderr
    first = invoke(outputs_file, *args, "--allow-failures", "--no-wait", "--dest", str(tmp_path / "r"))
    assert first.exit_code == 0, first.stderr
    resumed = invoke(outputs_file, *args, "--dest", str(tmp_path / "r"))  # the flag forgotten
    assert resumed.exit_code == 2 and "--allow-failures True (now False)" in resumed.stderr, resumed.stderr

    Storage(out).delete_prefix(out.input_container, mf.input_blob(job_id, "sub/bad.txt"))
    client = _sdk_client(out)
    client.begin_resize_pool(
        spec.pool_id, bm.BatchPoolResizeOptions(target_dedicated_nodes=1), polling_interval=0.1
    ).result()

    res = invoke(
        outputs_file, "--json", "results", job_id, "--wait", "--timeout", "180", "--dest", str(tmp_path / "r")
    )
    assert res.exit_code == 10, res.stderr  # a task failed, and says so
    doc = json.loads(res.stdout)
    good = Counter[str]()
    for rel, text in texts.items():
        if rel != "sub/bad.txt":
            good += reference_counts(text)
    assert doc["corpus"]["status"] == "succeeded"
    assert doc["corpus"]["top"] == top(good, 3)  # exactly the three good files, over two levels
    assert doc["corpus"]["words"] == sum(good.values())
    [missing] = doc["missingFromCorpus"]
    assert (missing["input"], missing["taskId"]) == ("sub/bad.txt", "3")
    failure = next(f for f in doc["failures"] if f["taskId"] == "3")
    assert failure["code"] and failure["code"] in missing["why"], (missing, failure)
    assert "the corpus is merged without 1 of 4 file(s)" in res.stderr, res.stderr
    assert "missing: task 3 (sub/bad.txt)" in res.stderr, res.stderr
    rows = (tmp_path / "r" / "summary.tsv").read_text(encoding="utf-8").splitlines()
    assert any(r.startswith("3\tsub/bad.txt\tmissing from corpus\t\t") for r in rows), rows
    report = invoke(outputs_file, "report", job_id, "--output", str(tmp_path / "report.html"))
    assert report.exit_code == 0, report.stderr
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    summary = page[
        page.index('<section id="summary">') : page.index("</section>", page.index('id="summary"'))
    ]
    assert "merged without 1 of 4 file(s)" in summary and "task 3 (sub/bad.txt)" in summary
    assert invoke(outputs_file, "clean", job_id).exit_code == 0
    client.begin_delete_pool(spec.pool_id, polling_interval=0.1).result()
