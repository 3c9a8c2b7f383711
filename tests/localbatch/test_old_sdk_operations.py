"""azure-batch 14 (msrest) on the newer operations: sample2's image selection, node counts, job disable.

Skipped without ``OLD_AZURE_BATCH_PYTHON`` (``make test`` sets it), like ``test_old_sdk.py``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Azurite, start_localbatch

OLD_PYTHON = os.environ.get("OLD_AZURE_BATCH_PYTHON")
CLIENT = Path(__file__).parent / "clients" / "pools_and_images_azure_batch_14.py"


@pytest.mark.skipif(not OLD_PYTHON, reason="set OLD_AZURE_BATCH_PYTHON to a python with azure-batch==14.2.0")
def test_sample2_image_selection_node_counts_and_job_disable(tmp_path: Path, azurite: Azurite) -> None:
    server = start_localbatch(tmp_path / "lb", azurite)
    try:
        run = subprocess.run(
            [str(OLD_PYTHON), str(CLIENT), server.url, server.account_name],
            env={**os.environ, "BATCH_ACCOUNT_KEY": server.account_key},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.process.stop()
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [line.split("\t") for line in run.stdout.splitlines()]
    assert ["image", "batch.node.ubuntu 22.04", "22_04-lts"] in lines
    assert ["counts", "1", "1"] in lines
    assert ["job", "active"] in lines
