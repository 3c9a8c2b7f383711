"""``python -m localbatch serve``: keys never on the command line, readiness, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from azure.batch import models as bm

from tests.conftest import LocalBatch, new_account_key
from tests.localbatch.conftest import batch_client, wait_for

CMD = [sys.executable, "-m", "localbatch", "serve", "--port", "0", "--account-name", "cliacct"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALBATCH_")}
    env.update(extra)
    return env


def test_missing_or_bad_key_exits_2(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*CMD, "--data-dir", str(tmp_path / "a")], env=_env(), capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 2 and "LOCALBATCH_ACCOUNT_KEY" in missing.stderr
    bad = subprocess.run(
        [*CMD, "--data-dir", str(tmp_path / "b")],
        env=_env(LOCALBATCH_ACCOUNT_KEY="not base64!!"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "not base64!!" not in bad.stderr


def test_key_file_endpoint_and_sigterm(tmp_path: Path) -> None:
    key = new_account_key()
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [*CMD, "--data-dir", str(data), "--account-key-file", str(key_file)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = wait_for(lambda: (data / "endpoint").exists() and (data / "endpoint").read_text().strip())
        assert url.startswith("http://127.0.0.1:")
        assert key not in " ".join(proc.args)  # type: ignore[arg-type]
        client = batch_client(LocalBatch(url, "cliacct", key, data, None))  # type: ignore[arg-type]
        client.create_job(bm.BatchJobCreateOptions(id="j", pool_info=bm.BatchPoolInfo(pool_id="p")))
        assert client.get_job("j").state == "active"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"localbatch listening on {url}" in out.splitlines()
    assert key not in out
    assert not (data / "endpoint").exists()
    assert (data / "state.db").exists() and oct(data.stat().st_mode & 0o777) == oct(0o700)
