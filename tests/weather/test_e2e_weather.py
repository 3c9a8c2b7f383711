"""The end-to-end run under localbatch's weather profile (short, bounded settings).

Allocation and boot delays, task latency, task counts that lag, throttling and
transient 500s on the Batch API, spot preemption with requeue, nodes that leave
taking their task files: every output must be present exactly once, with the
right counts, and the exit code 0. Skipped when localbatch lacks
``serve --weather`` (the weather profile).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from typer.testing import CliRunner

from runner.batch import Batch
from runner.cli import app
from runner.outputs import Outputs, write_file
from runner.pool_spec import PoolSpec
from tests.conftest import Azurite, start_localbatch
from tests.e2e.test_submit import reference_counts, top, write_corpus
from tests.weather.test_pool_states import needs_weather

PROFILE = {
    "seed": 11,
    "allocation_delay": [0.3, 1.0],
    "boot_delay": [0.1, 0.4],
    "task_latency": [0.05, 0.2],
    "task_counts_lag": 1.0,
    "throttle_rate": 0.05,
    "throttle_status": 429,
    "retry_after": 1,
    "server_error_rate": 0.02,
    "preemption_rate": 0.5,
    "preemption_after": [0.5, 2.0],
    "preempted_for": [0.5, 1.0],
    "node_loss_rate": 0.1,
}


@needs_weather
def test_submit_under_azure_weather_gives_every_output_once(
    tmp_path: Path, azurite: Azurite, target_outputs: Outputs
) -> None:
    profile = tmp_path / "weather.json"
    profile.write_text(json.dumps(PROFILE))
    lb = start_localbatch(tmp_path / "lb", azurite, extra_args=["--weather", str(profile)])
    try:
        outputs = dataclasses.replace(
            target_outputs, batch_account_url=lb.url, batch_account_key=lb.account_key, pool_id="stormy"
        )
        Batch(outputs).create_pool(PoolSpec(pool_id="stormy", dedicated_nodes=1, spot_nodes=2))
        path = tmp_path / "outputs.json"
        write_file(path, outputs)
        texts = write_corpus(tmp_path / "in", {f"d{i % 3}/f{i}.txt": 200 + 10 * i for i in range(12)})
        dest = tmp_path / "r"
        args = ["--outputs", str(path), "--json", "submit", str(tmp_path / "in"), "--job-id", "stormy"]
        res = CliRunner().invoke(
            app, [*args, "--dest", str(dest), "--timeout", "240"], catch_exceptions=False
        )
    finally:
        lb.process.stop()
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert sorted(f["input"] for f in doc["files"]) == sorted(texts)
    for f in doc["files"]:
        assert f["status"] == "succeeded" and f["top"] == top(reference_counts(texts[f["input"]]), 3), f
    corpus = sum((reference_counts(t) for t in texts.values()), start=reference_counts(""))
    assert doc["corpus"]["top"] == top(corpus, 3)
    print(res.stderr)  # what the user saw, for a failing run's report
    reports = sorted(p.relative_to(dest).as_posix() for p in (dest / "files").rglob("*_OUTPUT.txt"))
    assert reports == sorted(f"files/{rel[:-4]}_OUTPUT.txt" for rel in texts)  # each exactly once
    assert not list(dest.rglob("*.task-*")) and not list(dest.rglob("*.part"))


@needs_weather
def test_a_small_job_ends_when_its_tasks_do_though_the_task_counts_lag(
    tmp_path: Path, azurite: Azurite, target_outputs: Outputs
) -> None:
    """Task counts an hour stale (Batch: eventually consistent): a job of a few tasks is
    watched through its task list, so it ends when its tasks do, well within a 60 s timeout
    (reading the counts, it waited for them until exit 8, past the timeout)."""
    profile = tmp_path / "weather.json"
    profile.write_text(json.dumps({"seed": 3, "task_counts_lag": 3600.0}))
    lb = start_localbatch(tmp_path / "lb", azurite, extra_args=["--weather", str(profile)])
    try:
        outputs = dataclasses.replace(
            target_outputs, batch_account_url=lb.url, batch_account_key=lb.account_key, pool_id="laggy"
        )
        Batch(outputs).create_pool(PoolSpec(pool_id="laggy", dedicated_nodes=1))
        path = tmp_path / "outputs.json"
        write_file(path, outputs)
        texts = write_corpus(tmp_path / "in", {f"f{i}.txt": 100 + i for i in range(3)})
        args = ["--outputs", str(path), "--json", "submit", str(tmp_path / "in"), "--job-id", "laggy"]
        res = CliRunner().invoke(
            app, [*args, "--dest", str(tmp_path / "r"), "--timeout", "60"], catch_exceptions=False
        )
    finally:
        lb.process.stop()
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert sorted(f["input"] for f in doc["files"]) == sorted(texts)
    assert all(f["status"] == "succeeded" for f in doc["files"])
