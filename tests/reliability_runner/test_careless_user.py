"""A careless user (issue 13): input Batch, Storage or a node would refuse late is refused
up front, in one line with exit 2, before anything is uploaded or created.

Runs through the real CLI against the session's Azurite + localbatch; "nothing
created" is checked on the services themselves (no job, no blob).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from runner.outputs import Outputs, write_file
from tests.reliability_runner.conftest import leaks
from tests.reliability_runner.test_bad_input import assert_nothing_created, assert_one_clear_error, invoke


@pytest.mark.parametrize("value", ["inf", "nan", "1e308", "1e12", "-inf", "2592001"])
def test_timeout_out_of_range_is_one_line_before_anything_is_created(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs, value: str
) -> None:
    (tmp_path / "a.txt").write_text("a b c")
    job_id = "rel-care-timeout"
    res = invoke(outputs_file, "submit", str(tmp_path / "a.txt"), "--timeout", value, "--job-id", job_id)
    assert_one_clear_error(res, 2, "--timeout", "2,592,000")
    assert_nothing_created(target_outputs, job_id)


@pytest.mark.parametrize("value", ["inf", "nan", "1e308"])
def test_max_wall_clock_out_of_range_is_one_line(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs, value: str
) -> None:
    (tmp_path / "a.txt").write_text("a b c")
    job_id = "rel-care-wallclock"
    args = ["submit", str(tmp_path / "a.txt"), "--max-wall-clock", value, "--job-id", job_id]
    res = invoke(outputs_file, *args)
    assert_one_clear_error(res, 2, "--max-wall-clock")
    assert_nothing_created(target_outputs, job_id)


@pytest.mark.parametrize("field", ["batchAccountKey", "storageAccountKey"])
def test_a_key_that_is_not_base64_is_one_line_naming_the_key(
    tmp_path: Path, target_outputs: Outputs, field: str
) -> None:
    bad_key = "this is not base64 at all!!"
    data = {**target_outputs.to_dict(show_secrets=True), field: bad_key}
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(data))
    (tmp_path / "a.txt").write_text("a b")
    job_id = f"rel-care-b64-{field[:5].lower()}"
    for args in (["jobs"], ["submit", str(tmp_path / "a.txt"), "--job-id", job_id]):
        res = invoke(path, *args)
        assert_one_clear_error(res, 2, field, "not base64")
        assert bad_key not in res.stderr + res.stdout
        assert not leaks(res.stderr + res.stdout, target_outputs)
    assert_nothing_created(target_outputs, job_id)


@pytest.mark.parametrize("value", ["1000000", "101", "-1"])
def test_retries_out_of_range_name_the_limit(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs, value: str
) -> None:
    (tmp_path / "a.txt").write_text("a b c")
    job_id = "rel-care-retries"
    res = invoke(outputs_file, "submit", str(tmp_path / "a.txt"), "--retries", value, "--job-id", job_id)
    assert_one_clear_error(res, 2, "--retries", "0 to 100", "maxTaskRetryCount")
    assert_nothing_created(target_outputs, job_id)


def test_a_command_with_an_unbalanced_quote_is_refused_before_submitting(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    (tmp_path / "a.txt").write_text("a b c")
    job_id = "rel-care-quote"
    res = invoke(outputs_file, "submit", str(tmp_path / "a.txt"), "--job-id", job_id,
                 "--command", "grep -c 'it {input} > {output_dir}/n.txt")  # fmt: skip
    assert_one_clear_error(res, 2, "--command", "quotation", "/bin/sh -c")
    assert_nothing_created(target_outputs, job_id)


def test_a_255_byte_file_name_is_refused_naming_the_file(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    name = "n" * 251 + ".txt"  # 255 bytes: legal here, but <stem>_counts.json would be 263
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / name).write_text("long name")
    (tmp_path / "in" / "ok.txt").write_text("short name")
    job_id = "rel-care-longname"
    res = invoke(outputs_file, "submit", str(tmp_path / "in"), "--job-id", job_id)
    assert_one_clear_error(res, 2, name, "255 bytes", "shorten")
    assert "ok.txt" not in res.stderr.split("error:")[1]
    assert_nothing_created(target_outputs, job_id)


def test_a_name_at_the_limit_runs_and_its_results_come_back(tmp_path: Path, outputs_file: Path) -> None:
    # 229 bytes: the longest derived name, m…m.txt_counts.json, is 241, written as
    # .m…m.txt_counts.json.XXXXXXXX.tmp (255) on the node.
    name = "m" * 225 + ".txt"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / name).write_text("fits fits")
    res = invoke(outputs_file, "--json", "submit", str(tmp_path / "in"), "--job-id", "rel-care-fits",
                 "--dest", str(tmp_path / "r"))  # fmt: skip
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["files"][0]["top"] == [{"word": "fits", "count": 2}]
    assert Path(doc["files"][0]["counts"]).is_file()


def test_a_blob_name_over_1024_characters_is_refused(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    deep = tmp_path / "in"
    for i in range(5):
        deep = deep / (f"{i}" * 200)
    deep.mkdir(parents=True)
    (deep / "f.txt").write_text("deep")
    (tmp_path / "in" / "top.txt").write_text("top")
    job_id = "rel-care-longblob"
    res = invoke(outputs_file, "submit", str(tmp_path / "in"), "--job-id", job_id)
    assert_one_clear_error(res, 2, "1,024 characters", "f.txt")
    assert_nothing_created(target_outputs, job_id)


def test_the_fixture_outputs_are_valid(tmp_path: Path, target_outputs: Outputs) -> None:
    """The base64 check accepts real keys (Azurite's well-known key)."""
    path = tmp_path / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs))
    res = invoke(path, "jobs")
    assert res.exit_code == 0, res.stderr


def test_dest_of_another_jobs_results_is_refused_naming_that_job(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("first job words")
    dest = tmp_path / "shared"
    args = ["submit", str(tmp_path / "in"), "--dest", str(dest)]
    first = invoke(outputs_file, *args, "--job-id", "rel-care-dest-a")
    assert first.exit_code == 0, first.stderr
    before = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*"))
    job_id = "rel-care-dest-b"
    res = invoke(outputs_file, *args, "--job-id", job_id)
    assert_one_clear_error(res, 2, str(dest), "rel-care-dest-a", "another --dest")
    assert_nothing_created(target_outputs, job_id)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == before
    # The same job may come back to its own directory; `results` of another job may not.
    again = invoke(outputs_file, "results", "rel-care-dest-a", "--dest", str(dest))
    assert again.exit_code == 0, again.stderr
    (tmp_path / "in" / "b.txt").write_text("second job")
    second = invoke(outputs_file, "submit", str(tmp_path / "in"), "--job-id", "rel-care-dest-c",
                    "--dest", str(tmp_path / "c"))  # fmt: skip
    assert second.exit_code == 0, second.stderr
    other = invoke(outputs_file, "results", "rel-care-dest-c", "--dest", str(dest))
    assert_one_clear_error(other, 2, str(dest), "rel-care-dest-a")


def test_dest_with_unrecorded_results_is_refused(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    (tmp_path / "a.txt").write_text("words")
    dest = tmp_path / "old"
    (dest / "files").mkdir(parents=True)
    (dest / "corpus_OUTPUT.txt").write_text("from an older run")
    job_id = "rel-care-dest-old"
    res = invoke(outputs_file, "submit", str(tmp_path / "a.txt"), "--job-id", job_id, "--dest", str(dest))
    assert_one_clear_error(res, 2, str(dest), "another run")
    assert_nothing_created(target_outputs, job_id)


def test_a_submit_that_fails_before_any_result_leaves_no_dest_behind(
    tmp_path: Path, target_outputs: Outputs
) -> None:
    path = tmp_path / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs, pool_id="no-such-pool"))
    (tmp_path / "a.txt").write_text("words")
    dest = tmp_path / "r" / "nested"
    res = invoke(path, "submit", str(tmp_path / "a.txt"), "--job-id", "rel-care-nopool", "--dest", str(dest))
    assert_one_clear_error(res, 5, "no-such-pool")
    assert not dest.exists()
