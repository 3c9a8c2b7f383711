"""CLI behaviour that needs no server: option validation and credential checks."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from runner.cli import app

CONTRACT = {
    "batchAccountName": "acct",
    "batchAccountUrl": "https://acct.westeurope.batch.azure.com",
    "storageAccountName": "st",
    "storageBlobEndpoint": "https://st.blob.core.windows.net/",
    "poolId": "pool",
    "inputContainer": "input",
    "outputContainer": "output",
    "applicationContainer": "application",
}


def _run(tmp_path: Path, outputs: dict[str, str], *args: str) -> Result:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return CliRunner().invoke(app, ["--outputs", str(path), *args], catch_exceptions=False)


def test_missing_keys_in_sharedkey_mode_is_a_clear_error(tmp_path: Path) -> None:
    res = _run(tmp_path, CONTRACT, "jobs")
    assert res.exit_code == 16  # AuthModeMismatch: shared keys against an Entra ID target
    assert "no Batch key in the outputs" in res.stderr


def test_entra_refuses_plain_http_endpoints(tmp_path: Path) -> None:
    res = _run(tmp_path, {**CONTRACT, "batchAccountUrl": "http://127.0.0.1:1"}, "--auth", "entra", "jobs")
    assert res.exit_code == 16  # AuthModeMismatch: --auth entra against a keys-only target
    assert "needs https endpoints" in res.stderr


def test_invalid_options_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a b c")
    for args in (
        ["submit", str(tmp_path / "a.txt"), "--numwords", "0"],
        ["submit", str(tmp_path / "a.txt"), "--job-id", "bad id!"],
        ["submit", str(tmp_path / "a.txt"), "--command", "echo no placeholder"],
        ["submit", str(tmp_path / "a.txt"), "--timeout", "0"],
    ):
        res = _run(tmp_path, CONTRACT, *args)
        assert res.exit_code == 2, (args, res.stderr)
        assert res.stderr.startswith("error: ") or "error:" in res.stderr


def test_outputs_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = {k: v for k, v in CONTRACT.items() if k != "poolId"}
    res = _run(tmp_path, broken, "outputs")
    assert res.exit_code == 2
    assert "outputs.json" in res.stderr and "poolId" in res.stderr


def test_entra_timeout_must_fit_a_user_delegation_key(tmp_path: Path) -> None:
    """The SAS URLs live --timeout + 1 h; a user delegation key at most 7 days: refused up front."""
    (tmp_path / "a.txt").write_text("a b c")
    res = _run(
        tmp_path, CONTRACT, "--auth", "entra", "submit", str(tmp_path / "a.txt"), "--timeout", "601000"
    )
    assert res.exit_code == 2, res.stderr
    assert "--timeout can be at most 600300 seconds with --auth entra" in res.stderr
