"""An Azure tutorial client of the previous SDK generation (azure-batch 14, msrest) runs unchanged.

azure-batch 14 cannot be installed next to azure-batch 15, so this test needs
an interpreter that has it: set ``OLD_AZURE_BATCH_PYTHON`` (e.g. a venv made
with ``pip install azure-batch==14.2.0``). Without it the test is skipped and
says so; the api-version of that generation is also covered, SDK-independent,
by ``test_auth.py::test_older_api_version_client``.
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from tests.conftest import Azurite, start_localbatch
from tests.localbatch.conftest import unique

OLD_PYTHON = os.environ.get("OLD_AZURE_BATCH_PYTHON")
CLIENT = Path(__file__).parent / "clients" / "quickstart_azure_batch_14.py"


@pytest.mark.skipif(not OLD_PYTHON, reason="set OLD_AZURE_BATCH_PYTHON to a python with azure-batch==14.2.0")
def test_quickstart_of_azure_batch_14(tmp_path: Path, azurite: Azurite, blobs: BlobServiceClient) -> None:
    container = unique("quick")
    text = b"hello from the old quickstart\n"
    blobs.create_container(container).upload_blob("taskdata0.txt", text)
    sas = generate_blob_sas(
        azurite.account_name,
        container,
        "taskdata0.txt",
        account_key=azurite.account_key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    server = start_localbatch(tmp_path / "lb", azurite)
    try:
        env = {**os.environ, "BATCH_ACCOUNT_KEY": server.account_key}
        run = subprocess.run(
            [
                str(OLD_PYTHON),
                str(CLIENT),
                server.url,
                server.account_name,
                "-",
                f"{azurite.blob_endpoint}/{container}/taskdata0.txt?{sas}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.process.stop()
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line.split("\t") for line in run.stdout.splitlines()]
    tasks = [line for line in lines if line[0].startswith("Task")]
    assert [t[0] for t in tasks] == ["Task0", "Task1", "Task2"]
    assert all(t[1].startswith("tvmps_") and t[2] == "0" and t[3] == text.decode().strip() for t in tasks)
    assert ["counts", "3", "3", "0"] in lines
