"""Tasks that Batch ran more than once: retried after a failure, requeued when their node left.

Both show in the summary (one line per such task) and in ``--json`` (``retries``,
``requeues``); a requeue also shows in progress while it happens.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from typer.testing import CliRunner

from runner.batch import Batch
from runner.cli import app
from runner.outputs import Outputs, write_file
from runner.pool_spec import PoolSpec
from tests.e2e.test_submit import write_corpus
from tests.weather.faultproxy import FaultProxy, via

RUNNER = Path(sys.executable).with_name("runner")


def _until(what: str, ok: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_retried_task_is_counted_in_the_summary(tmp_path: Path, outputs_file: Path) -> None:
    write_corpus(tmp_path / "in", {"a.txt": 5})
    marker = tmp_path / "failed-once"
    command = f"if ! test -e {marker}; then touch {marker}; exit 3; fi; wc -w < {{input}} > {{output_dir}}/n"
    args = ["--outputs", str(outputs_file), "--json", "submit", str(tmp_path / "in"), "--job-id", "w-retried"]
    args += ["--command", command, "--retries", "2"]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.stderr
    assert "task 1 (a.txt): retried 1 time" in res.stderr
    assert [(f["retries"], f["requeues"]) for f in json.loads(res.stdout)["files"]] == [(1, 0)]


def test_a_task_whose_node_left_is_requeued_and_said(tmp_path: Path, target_outputs: Outputs) -> None:
    pool = PoolSpec(pool_id="requeue", dedicated_nodes=1)
    Batch(target_outputs).create_pool(pool)
    proxy = FaultProxy(target_outputs.batch_account_url).__enter__()  # counts the runner's polls
    outputs = tmp_path / "outputs.json"
    url = via(target_outputs.batch_account_url, proxy)
    write_file(outputs, dataclasses.replace(target_outputs, pool_id=pool.pool_id, batch_account_url=url))
    client = BatchClient(
        target_outputs.batch_account_url,
        AzureNamedKeyCredential(target_outputs.batch_account_name, target_outputs.batch_account_key or ""),
    )
    write_corpus(tmp_path / "in", {"a.txt": 5})
    started, go = tmp_path / "started", tmp_path / "go"
    command = (
        f"touch {started}; while ! test -e {go}; do sleep 0.1; done; wc -w < {{input}} > {{output_dir}}/n"
    )
    err = tmp_path / "stderr.txt"
    argv = [str(RUNNER), "--outputs", str(outputs), "--json", "submit", str(tmp_path / "in")]
    argv += ["--job-id", "w-requeued", "--command", command, "--timeout", "120"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "10000"}
    with open(err, "w") as err_file:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err_file, text=True, env=env)
        try:
            _until("the task to start", started.exists)
            started.unlink()
            polls = proxy.count("GET", "/jobs/w-requeued/tasks?")
            # the runner must have seen it running (two polls of the task list, a one-task job: one
            # may have been in flight)
            _until("the runner to poll", lambda: proxy.count("GET", "/jobs/w-requeued/tasks?") >= polls + 2)
            resize = bm.BatchPoolResizeOptions(target_dedicated_nodes=0)
            client.begin_resize_pool(pool.pool_id, resize, polling_interval=0.1).result()
            _until("the runner to see the pool empty", lambda: "has no nodes" in err.read_text())
            go.touch()
            resize = bm.BatchPoolResizeOptions(target_dedicated_nodes=1)
            client.begin_resize_pool(pool.pool_id, resize, polling_interval=0.1).result()
            out = proc.communicate(timeout=120)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proxy.__exit__(None, None, None)
    text = err.read_text()
    assert proc.returncode == 0, text
    assert "1 task(s) back to waiting: retried after a failure, or requeued" in text
    assert "task 1 (a.txt): requeued 1 time" in text
    assert [(f["retries"], f["requeues"]) for f in json.loads(out)["files"]] == [(0, 1)]
    client.begin_delete_pool(pool.pool_id, polling_interval=0.1).result()
