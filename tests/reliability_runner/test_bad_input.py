"""Bad input to ``runner submit`` and friends: one clear line, its exit code, nothing
created or lost; odd but valid input (empty, binary, invalid UTF-8, symlink loops,
huge ``--numwords``) gives correct results.

Expected word counts come from the independent reference in tests/e2e/test_submit.py
(``str.split``, strip ``string.punctuation``, drop empty tokens) on text decoded with
``errors="replace"`` (nodetask's documented decoding).
Names with spaces, Unicode, ``#``, ``?``, ``%`` and the same basename in two folders are
covered end to end by tests/e2e/test_submit.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from runner.batch import Batch
from runner.cli import app
from runner.outputs import Outputs, write_file
from tests.e2e.test_submit import reference_counts, top
from tests.reliability_runner.conftest import RUNNER, blob_names, env, leaks
from tests.reliability_runner.conftest import run as run_cli

NOBODY = 65534


def invoke(outputs_file: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--outputs", str(outputs_file), *args], catch_exceptions=False)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_nothing_created(out: Outputs, job_id: str) -> None:
    assert not Batch(out).job_exists(job_id)
    assert blob_names(out, out.input_container, f"{job_id}/") == []
    assert blob_names(out, out.output_container, f"{job_id}/") == []


def assert_one_clear_error(res: Result, code: int, *needles: str) -> None:
    assert res.exit_code == code, res.stderr
    lines = error_lines(res.stderr)
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], res.stderr


def test_all_missing_paths_are_listed_at_once_and_nothing_is_created(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    (tmp_path / "real.txt").write_text("one two")
    missing = [str(tmp_path / "nope-1.txt"), str(tmp_path / "dir" / "nope 2.txt"), str(tmp_path / "x*.md")]
    job_id = "rel-bad-missing"
    res = invoke(outputs_file, "submit", str(tmp_path / "real.txt"), *missing, "--job-id", job_id)
    assert_one_clear_error(res, 2, *missing)
    assert_nothing_created(target_outputs, job_id)


def test_a_directory_with_no_files_is_nothing_to_do(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    (tmp_path / "empty" / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden").write_text("skipped when walking")
    job_id = "rel-bad-emptydir"
    res = invoke(outputs_file, "submit", str(tmp_path / "empty"), "--job-id", job_id)
    assert_one_clear_error(res, 2, "nothing to do")
    assert_nothing_created(target_outputs, job_id)


def test_empty_binary_and_invalid_utf8_files_are_counted(tmp_path: Path, outputs_file: Path) -> None:
    rng = random.Random(7)
    data = {
        "empty.txt": b"",
        "also-empty.txt": b"",
        "whitespace.txt": b" \n\t \r\n",
        "latin1.txt": b"caf\xe9 caf\xe9 na\xefve \xff\xfe word word word\n",
        "binary.bin": bytes(rng.randrange(256) for _ in range(50_000)) + b"\x00" * 100,
        "text.txt": b"the quick brown fox, the lazy dog; the end",
    }
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, content in data.items():
        (inputs / name).write_bytes(content)
    dest = tmp_path / "r"
    res = invoke(
        outputs_file, "--json", "submit", str(inputs), "--numwords", "5",
        "--job-id", "rel-odd-bytes", "--dest", str(dest),
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    by_input = {f["input"]: f for f in doc["files"]}
    assert set(by_input) == set(data)
    total = reference_counts("")
    for name, content in data.items():
        expected = reference_counts(content.decode("utf-8", errors="replace"))
        total.update(expected)
        got = by_input[name]
        assert got["status"] == "succeeded", name
        assert (got["words"], got["top"]) == (sum(expected.values()), top(expected, 5)), name
    assert by_input["empty.txt"]["words"] == 0 and by_input["empty.txt"]["top"] == []
    assert doc["corpus"]["top"] == top(total, 5)
    # The invalid bytes were replaced and counted: 0xE9 twice, 0xEF, 0xFF, 0xFE.
    counts = json.loads(Path(by_input["latin1.txt"]["counts"]).read_text(encoding="utf-8"))
    assert counts["totals"]["invalid_bytes"] == 5
    binary = json.loads(Path(by_input["binary.bin"]["counts"]).read_text(encoding="utf-8"))
    assert binary["totals"]["invalid_bytes"] > 0 and binary["totals"]["bytes"] == len(data["binary.bin"])


def test_symlink_loops_do_not_hang_and_each_file_counts_once(tmp_path: Path, outputs_file: Path) -> None:
    root = tmp_path / "in"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "one.txt").write_text("alpha beta alpha")
    (root / "a" / "b" / "two.txt").write_text("gamma")
    (root / "a" / "b" / "up").symlink_to(root / "a", target_is_directory=True)  # a loop
    (root / "self").symlink_to(root / "self")  # a link to itself (ELOOP)
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "a" / "ev\x1b[2Jil").symlink_to("gone\x07")  # a hostile name, a dangling target
    res = invoke(outputs_file, "--json", "submit", str(root), "--job-id", "rel-symlinks", "--dest",
                 str(tmp_path / "r"))  # fmt: skip
    assert res.exit_code == 0, res.stderr
    # Each link that leads nowhere is said on stderr, escaped, and skipped. The console wraps
    # long lines: compared without whitespace.
    said = "".join(res.stderr.split())
    assert said.count("skipped") == 3, res.stderr
    for line in (
        f"skipped {root}/dangling: a symbolic link to {root}/nowhere (its target does not exist)",
        f"skipped {root}/self: a symbolic link to {root}/self (a link loop)",
        f"skipped {root}/a/ev\\x1b[2Jil: a symbolic link to gone\\x07 (its target does not exist)",
    ):
        assert "".join(line.split()) in said, res.stderr
    assert "\x1b" not in res.stderr and "\x07" not in res.stderr
    doc = json.loads(res.stdout)  # stdout is the JSON document, and only it
    assert sorted(f["input"] for f in doc["files"]) == ["b/two.txt", "one.txt"]  # from the common root
    assert doc["corpus"]["top"] == [{"word": "alpha", "count": 2}, {"word": "beta", "count": 1},
                                    {"word": "gamma", "count": 1}]  # fmt: skip

    # Named explicitly, a self-referencing link is refused with the others, in one line.
    res = invoke(outputs_file, "submit", str(root / "self"), str(root / "dangling"), "--job-id", "rel-sl2")
    assert res.exit_code == 2, res.stderr
    assert len(error_lines(res.stderr)) == 1 and "Traceback" not in res.stderr


@pytest.mark.parametrize("numwords", ["-1", "-1000000", "abc", "1.5"])
def test_numwords_zero_or_negative_or_not_a_number_exits_2(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs, numwords: str
) -> None:
    (tmp_path / "a.txt").write_text("a b c")
    job_id = "rel-bad-numwords"
    res = invoke(outputs_file, "submit", str(tmp_path / "a.txt"), "--numwords", numwords, "--job-id", job_id)
    assert res.exit_code == 2, res.stderr
    assert "Traceback" not in res.stderr and "numwords" in res.stderr
    assert_nothing_created(target_outputs, job_id)


def test_huge_numwords_works_and_reports_every_word(tmp_path: Path, outputs_file: Path) -> None:
    text = "b a c a b a d"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text(text)
    res = invoke(outputs_file, "--json", "submit", str(tmp_path / "in"), "--numwords", str(10**12),
                 "--job-id", "rel-huge-numwords", "--dest", str(tmp_path / "r"))  # fmt: skip
    assert res.exit_code in (0, 2), res.stderr
    if res.exit_code == 2:  # refusing is acceptable if it is clear
        assert len(error_lines(res.stderr)) == 1 and "numwords" in res.stderr
        return
    doc = json.loads(res.stdout)
    expected = top(reference_counts(text), 100)
    assert doc["files"][0]["top"] == expected and doc["corpus"]["top"] == expected


BAD_OUTPUTS = {
    "not-json": "{ this is not json",
    "empty": "",
    "a-list": "[1, 2, 3]",
    "missing-keys": json.dumps({"batchAccountName": "x", "batchAccountKey": "S3CR3T-KEY-VALUE-0001"}),
    "wrong-types": None,  # filled from the real outputs below
    "bad-url": None,
}


@pytest.mark.parametrize("case", sorted(BAD_OUTPUTS))
def test_malformed_outputs_file_is_one_clear_line_without_the_key(
    tmp_path: Path, target_outputs: Outputs, case: str
) -> None:
    real = target_outputs.to_dict(show_secrets=True)
    content = BAD_OUTPUTS[case]
    if case == "wrong-types":
        content = json.dumps({**real, "poolId": 7, "inputContainer": ["input"], "batchAccountUrl": None})
    elif case == "bad-url":
        content = json.dumps({**real, "storageBlobEndpoint": "ftp://" + real["storageAccountKey"]})
    assert content is not None
    path = tmp_path / "outputs.json"
    path.write_text(content)
    (tmp_path / "a.txt").write_text("a b")
    for args in (["submit", str(tmp_path / "a.txt")], ["outputs"], ["jobs"]):
        res = invoke(path, *args)
        assert_one_clear_error(res, 2, str(path))
        assert not leaks(res.stderr + res.stdout, target_outputs), res.stderr
        assert "S3CR3T-KEY-VALUE-0001" not in res.stderr + res.stdout


@pytest.mark.parametrize(
    ("field", "code", "needle"),
    [("batch_account_key", 4, "Batch rejected"), ("storage_account_key", 4, "Storage rejected")],
)
def test_wrong_key_is_one_line_exit_4_nothing_created_and_no_key_shown(
    tmp_path: Path, target_outputs: Outputs, field: str, code: int, needle: str
) -> None:
    wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk0OTg3NjU0MzIxMA=="
    path = tmp_path / "outputs.json"
    write_file(path, dataclasses.replace(target_outputs, **{field: wrong}))
    (tmp_path / "a.txt").write_text("a b")
    job_id = f"rel-wrongkey-{field[:5]}"
    for verbosity in ("-q", "-v", "-vv"):
        res = subprocess.run(
            [str(RUNNER), "--outputs", str(path), verbosity, "submit", str(tmp_path / "a.txt"),
             "--job-id", job_id],
            capture_output=True, text=True, env=env(), timeout=120,
        )  # fmt: skip
        assert res.returncode == code, res.stderr
        lines = error_lines(res.stderr)
        assert len(lines) == 1 and needle in lines[0], res.stderr
        assert "Traceback" not in res.stderr
        assert wrong not in res.stderr + res.stdout
        assert not leaks(res.stderr + res.stdout, target_outputs), res.stderr
    assert_nothing_created(target_outputs, job_id)


#: Root reads every file, and the venv's interpreter lives under /root (mode 0700), so it
#: cannot run as nobody. Instead the runner runs as root without the capabilities that
#: bypass file permissions: files owned by nobody with mode 0600 give a real EACCES.
DROP_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search"]  # fmt: skip


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and util-linux setpriv"
)
def test_unreadable_files_are_listed_and_nothing_is_created(tmp_path: Path, target_outputs: Outputs) -> None:
    inputs = tmp_path / "in"
    (inputs / "closed").mkdir(parents=True)
    (inputs / "ok.txt").write_text("fine")
    (inputs / "secret.txt").write_text("private")
    (inputs / "closed" / "inside.txt").write_text("hidden")
    for path, mode in ((inputs / "secret.txt", 0o600), (inputs / "closed", 0o700)):
        os.chown(path, NOBODY, NOBODY)
        path.chmod(mode)
    outputs_path = tmp_path / "outputs.json"
    write_file(outputs_path, target_outputs)
    job_id = "rel-bad-unreadable"
    argv = [str(RUNNER), "--outputs", str(outputs_path), "submit", str(inputs), "--job-id", job_id,
            "--dest", str(tmp_path / "r")]  # fmt: skip
    res = subprocess.run(DROP_DAC + argv, capture_output=True, text=True, timeout=120, env=env())
    assert res.returncode == 2, res.stderr
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "secret.txt (permission denied)" in lines[0] and "closed (Permission denied)" in lines[0]
    assert "ok.txt" not in lines[0]
    assert_nothing_created(target_outputs, job_id)
    assert not (tmp_path / "r").exists()


def test_dest_that_is_a_file_is_refused_before_anything_is_created(
    tmp_path: Path, outputs_file: Path, target_outputs: Outputs
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a b")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the results should go")
    job_id = "rel-bad-dest"
    res = subprocess.run(
        [str(RUNNER), "--outputs", str(outputs_file), "submit", str(tmp_path / "in"), "--job-id", job_id,
         "--dest", str(blocker)],
        capture_output=True, text=True, env=env(), timeout=120,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert len(error_lines(res.stderr)) == 1 and "Traceback" not in res.stderr
    assert_nothing_created(target_outputs, job_id)


def test_results_into_a_file_is_one_clear_line(tmp_path: Path, outputs_file: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a b")
    job_id = "rel-bad-results-dest"
    first = run_cli(
        outputs_file, "submit", str(tmp_path / "in"), "--job-id", job_id, "--dest", str(tmp_path / "r")
    )
    assert first.returncode == 0, first.stderr
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the results should go")
    res = run_cli(outputs_file, "results", job_id, "--dest", str(blocker))
    assert res.returncode not in (0, 1), res.stderr  # 1 is Python's unhandled-exception exit
    assert len(error_lines(res.stderr)) == 1 and "Traceback" not in res.stderr
