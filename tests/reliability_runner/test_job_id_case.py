"""Job ids are case-insensitive in Batch (issue 13): ``CaseJob`` and ``casejob`` are one job.

Batch keeps an id's case as created and compares ids without it; the runner
uses the id as Batch stored it for every blob prefix and manifest lookup, so a
resume, ``status``, ``results`` and ``clean`` typed in another case reach the
same job and all of its blobs.
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.batch import Batch
from runner.outputs import Outputs
from tests.reliability_runner.conftest import blob_names
from tests.reliability_runner.test_bad_input import invoke


def test_an_id_in_another_case_resumes_reports_and_cleans_the_same_job(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("case case words")
    dest = tmp_path / "r"
    first = invoke(
        outputs_file, "submit", str(tmp_path / "in"), "--job-id", "RelCaseJob", "--dest", str(dest)
    )
    assert first.exit_code == 0, first.stderr
    assert blob_names(target_outputs, target_outputs.input_container, "RelCaseJob/")

    again = invoke(outputs_file, "--json", "submit", str(tmp_path / "in"), "--job-id", "relcasejob",
                   "--dest", str(dest))  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert "0 added" in again.stderr and "exists, resuming" in again.stderr
    assert json.loads(again.stdout)["jobId"] == "RelCaseJob"
    assert blob_names(target_outputs, target_outputs.input_container, "relcasejob/") == []

    status = invoke(outputs_file, "--json", "status", "RELCASEJOB")
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["jobId"] == "RelCaseJob"
    results = invoke(outputs_file, "results", "relCASEjob", "--dest", str(dest))
    assert results.exit_code == 0, results.stderr

    clean = invoke(outputs_file, "clean", "relcasejob")
    assert clean.exit_code == 0, clean.stderr
    assert not Batch(target_outputs).job_exists("RelCaseJob")
    for container in (target_outputs.input_container, target_outputs.output_container):
        assert blob_names(target_outputs, container, "RelCaseJob/") == [], container
