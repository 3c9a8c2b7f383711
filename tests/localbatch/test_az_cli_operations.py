"""`az batch` drives the newer operations too: supported images, node counts, autoscale, job disable.

Skipped without ``AZ_CLI`` (``make test`` sets it), like ``test_az_cli.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm

from tests.conftest import LocalBatch
from tests.localbatch.conftest import new_job, unique, wait_nodes_idle
from tests.localbatch.test_az_cli import AZ, Az

pytestmark = pytest.mark.skipif(
    not AZ, reason="set AZ_CLI to an `az` with the batch commands (make test does)"
)


def test_az_supported_images_node_counts_job_disable(
    tmp_path: Path, localbatch: LocalBatch, client: BatchClient
) -> None:
    az = Az(localbatch, tmp_path / "azure")
    images = az.ok("pool", "supported-images", "list", "--filter", "osType eq 'linux'")
    assert images and all(i["osType"] == "linux" for i in images)
    assert any(i["nodeAgentSkuId"] == "batch.node.ubuntu 24.04" for i in images)
    pool_id = unique("azops")
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=1))
    try:
        wait_nodes_idle(client, pool_id, 1)
        counts = {c["poolId"]: c for c in az.ok("pool", "node-counts", "list")}
        assert counts[pool_id]["dedicated"]["idle"] == 1
        job_id = new_job(client, pool_id)
        az.ok("job", "disable", "--job-id", job_id, "--disable-tasks", "requeue")
        assert client.get_job(job_id).state in ("disabling", "disabled")
        az.ok("job", "enable", "--job-id", job_id)
        assert client.get_job(job_id).state == "active"
    finally:
        client.begin_delete_pool(pool_id, polling_interval=0.1).result()


def test_az_pool_autoscale_enable_evaluate_disable(
    tmp_path: Path, localbatch: LocalBatch, client: BatchClient
) -> None:
    az = Az(localbatch, tmp_path / "azure")
    pool_id = unique("azas")
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=0))
    try:
        az.ok(
            "pool", "autoscale", "enable", "--pool-id", pool_id,
            "--auto-scale-formula", "$TargetDedicatedNodes = 0;", "--auto-scale-evaluation-interval", "PT5M",
        )  # fmt: skip
        run = az.ok(
            "pool", "autoscale", "evaluate", "--pool-id", pool_id,
            "--auto-scale-formula", "$TargetDedicatedNodes = min(3, 7);",
        )  # fmt: skip
        assert "$TargetDedicatedNodes=3" in run["results"]
        az.ok("pool", "autoscale", "disable", "--pool-id", pool_id)
        assert client.get_pool(pool_id).enable_auto_scale is False
    finally:
        client.begin_delete_pool(pool_id, polling_interval=0.1).result()
