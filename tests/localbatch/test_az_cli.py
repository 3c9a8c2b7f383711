"""The Azure CLI's `az batch` commands work against localbatch with only endpoint and key changed.

`az` is a separate install (``make test`` builds ``.venv-azcli`` with a pinned
``azure-cli`` and sets ``AZ_CLI``). Without it the test is skipped and says so.
The key reaches `az` through ``AZURE_BATCH_ACCESS_KEY``, never a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient

from tests.conftest import LocalBatch
from tests.localbatch.conftest import unique, wait_for, wait_nodes_idle

AZ = os.environ.get("AZ_CLI")

pytestmark = pytest.mark.skipif(
    not AZ, reason="set AZ_CLI to an `az` with the batch commands (make test does)"
)


class Az:
    """Runs `az batch …` against one localbatch, with a private config dir and no telemetry."""

    def __init__(self, server: LocalBatch, config_dir: Path, key: str | None = None) -> None:
        self.env = {
            **os.environ,
            "AZURE_CONFIG_DIR": str(config_dir),
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "AZURE_CORE_NO_COLOR": "true",
            "AZURE_BATCH_ACCOUNT": server.account_name,
            "AZURE_BATCH_ENDPOINT": server.url,
            "AZURE_BATCH_ACCESS_KEY": key or server.account_key,
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AZ), "batch", *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def ok(self, *args: str) -> Any:
        """Run, require exit 0, return the parsed JSON output (None when there is none)."""
        done = self.run(*args, "--output", "json")
        assert done.returncode == 0, f"az batch {' '.join(args)}: {done.stderr[-2000:]}"
        return json.loads(done.stdout) if done.stdout.strip() else None


def test_az_batch_pool_job_tasks_files_and_counts(
    tmp_path: Path, localbatch: LocalBatch, client: BatchClient
) -> None:
    az = Az(localbatch, tmp_path / "azure")
    pool_id, job_id = unique("azpool"), unique("azjob")
    az.ok(
        "pool", "create", "--id", pool_id, "--vm-size", "standard_d2s_v5",
        "--target-dedicated-nodes", "1",  # sent as the JSON string "1"
        "--image", "canonical:ubuntu-24_04-lts:server", "--node-agent-sku-id", "batch.node.ubuntu 24.04",
        "--start-task-command-line", "/bin/sh -c 'echo ready > $AZ_BATCH_NODE_SHARED_DIR/ready'",
        "--start-task-wait-for-success",
    )  # fmt: skip
    try:
        wait_nodes_idle(client, pool_id, 1)
        job = {
            "id": job_id,
            "poolInfo": {"poolId": pool_id},
            "usesTaskDependencies": True,
            "onAllTasksComplete": "terminateJob",
        }
        (tmp_path / "job.json").write_text(json.dumps(job))
        az.ok("job", "create", "--json-file", str(tmp_path / "job.json"))
        tasks = [
            {"id": "a", "commandLine": "/bin/sh -c 'echo task $AZ_BATCH_TASK_ID; echo oops >&2'"},
            {"id": "b", "commandLine": "/bin/echo B", "dependsOn": {"taskIds": ["a"]}},
            {"id": "c", "commandLine": "/bin/false", "constraints": {"maxTaskRetryCount": 1}},
        ]
        (tmp_path / "tasks.json").write_text(json.dumps(tasks))
        added = az.ok("task", "create", "--job-id", job_id, "--json-file", str(tmp_path / "tasks.json"))
        assert sorted((r["taskId"], r["status"]) for r in added) == [
            ("a", "success"),
            ("b", "success"),
            ("c", "success"),
        ]
        wait_for(lambda: client.get_job(job_id).state == "completed", timeout=60)

        counts = az.ok("job", "task-counts", "show", "--job-id", job_id)["taskCounts"]
        assert (counts["completed"], counts["succeeded"], counts["failed"]) == (3, 2, 1)
        listed = az.ok(
            "task", "list", "--job-id", job_id, "--filter", "state eq 'completed'",
            "--select", "id,state,executionInfo",
            "--query", "[].{id: id, exit: executionInfo.exitCode, retries: executionInfo.retryCount}",
        )  # fmt: skip
        assert sorted((t["id"], t["exit"], t["retries"]) for t in listed) == [
            ("a", 0, 0),
            ("b", 0, 0),
            ("c", 1, 1),
        ]
        for name, expected in (("stdout.txt", "task a\n"), ("stderr.txt", "oops\n")):
            dest = tmp_path / name
            az.ok(
                "task", "file", "download", "--job-id", job_id, "--task-id", "a",
                "--file-path", name, "--destination", str(dest),
            )  # fmt: skip
            assert dest.read_text() == expected

        az.ok("pool", "resize", "--pool-id", pool_id, "--target-dedicated-nodes", "2")
        wait_nodes_idle(client, pool_id, 2)
        nodes = az.ok("node", "list", "--pool-id", pool_id, "--query", "[].startTaskInfo.state")
        assert nodes == ["completed", "completed"]

        az.ok("job", "delete", "--job-id", job_id, "--yes")
        assert not az.ok("job", "list", "--query", f"[?id=='{job_id}'].id")
    finally:
        az.run("pool", "delete", "--pool-id", pool_id, "--yes")


def test_az_batch_with_a_wrong_key_is_refused_and_does_not_echo_the_key(
    tmp_path: Path, localbatch: LocalBatch
) -> None:
    wrong = "d3Jvbmcta2V5LWZvci1sb2NhbGJhdGNoLXRlc3RzLTAwMDA="
    az = Az(localbatch, tmp_path / "azure", key=wrong)
    done = az.run("job", "create", "--id", unique("nokey"), "--pool-id", "any")
    assert done.returncode != 0
    assert "AuthenticationFailed" in done.stderr
    assert wrong not in done.stdout + done.stderr
