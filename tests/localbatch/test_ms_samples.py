"""Microsoft's published Python Batch samples (azure-batch-samples), and what they need of the service.

``test_samples_run_as_on_azure`` runs ``scripts/run_ms_samples.py`` on a clone of
Azure-Samples/azure-batch-samples when ``AZURE_BATCH_SAMPLES`` names one (it takes minutes
and needs root for a private network namespace; skipped otherwise). The other test runs in
``make test``: what the samples of the azure-batch 5 era ask of the service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.storage.blob import BlobServiceClient

from tests.conftest import Azurite
from tests.localbatch.conftest import RawBatch, container_sas_url, new_job, unique, wait_task_completed

SAMPLES = os.environ.get("AZURE_BATCH_SAMPLES")
SCRIPT = Path(__file__).parents[2] / "scripts" / "run_ms_samples.py"


def test_api_2018_versions_and_node_agent_skus_as_the_mpi_sample_uses_them(raw: RawBatch) -> None:
    """Azure still serves every api-version newer than September 2017 (batch-api-status); the MPI
    sample of October 2018 (azure-batch 5.0.0, 2018-03-01.6.1) picks its image from
    ``GET /nodeagentskus``, an operation later versions dropped for ``GET /supportedimages``."""
    for version in ("2018-03-01.6.1", "2018-08-01.7.0"):
        old = RawBatch(raw.server, api_version=version)
        status, body, _ = old.send("GET", "/nodeagentskus")
        assert status == 200, body
        assert body is not None
        hpc = [
            (sku["id"], sku["osType"], ref["sku"])
            for sku in body["value"]
            for ref in sku["verifiedImageReferences"]
            if ref["publisher"] == "microsoft-dsvm" and ref["offer"] == "ubuntu-hpc"
        ]
        assert ("batch.node.ubuntu 22.04", "linux", "2204") in hpc
        assert not [s for s in body["value"] if "16.04" in s["id"] or "centos" in s["id"]]  # retired
        assert old.send("GET", "/pools")[0] == 200
    status, body, _ = RawBatch(raw.server, api_version="2017-09-01.6.0").send("GET", "/pools")
    assert status == 400 and body is not None and body["code"] == "InvalidQueryParameterValue"  # removed
    status, _, _ = raw.send("GET", "/nodeagentskus")  # 2025-06-01 has no such operation
    assert status == 404


def test_blob_source_resource_files_of_api_2018_03(
    raw: RawBatch, client: BatchClient, shared_pool: str, azurite: Azurite, blobs: BlobServiceClient
) -> None:
    """Before 2018-12-01.8.0 a resource file's URL was ``blobSource`` (the MPI sample's inputs);
    the MPI sample runs its resource files as programs: Batch's default fileMode is 0770 on Linux."""
    container = unique("blobsource")
    blobs.create_container(container)
    blobs.get_blob_client(container, "in.txt").upload_blob(b"#!/bin/sh\necho from blobSource\n")
    base, query = container_sas_url(azurite, container, read=True).split("?", 1)
    job_id = new_job(client, shared_pool)
    task = {
        "id": "t",
        "commandLine": "./in.txt",  # Linux nodes give resource files mode 0770 unless fileMode says otherwise
        "resourceFiles": [{"blobSource": f"{base}/in.txt?{query}", "filePath": "in.txt"}],
    }
    old = RawBatch(raw.server, api_version="2018-03-01.6.1")
    status, body, _ = old.send("POST", f"/jobs/{job_id}/tasks", json.dumps(task).encode())
    assert status == 201, body
    done = wait_task_completed(client, job_id, "t")
    assert done.execution_info.result == "success"
    assert b"".join(client.download_task_file(job_id, "t", "stdout.txt")) == b"from blobSource\n"
    assert done.resource_files[0].http_url.startswith(base)  # stored in today's terms
    task["id"] = "current"
    status, body, _ = raw.send("POST", f"/jobs/{job_id}/tasks", json.dumps(task).encode())
    assert status == 400 and body is not None and body["code"] == "InvalidRequestBody"  # not in 2025-06-01
    blobs.delete_container(container)


@pytest.mark.skipif(
    not SAMPLES,
    reason="set AZURE_BATCH_SAMPLES to a clone of Azure-Samples/azure-batch-samples (runs minutes, as root)",
)
@pytest.mark.timeout(1800)  # the first run also makes a virtualenv per SDK generation
def test_samples_run_as_on_azure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(SAMPLES), "--logs", str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
