"""Nothing can run: the runner says why within one poll, and fails fast where Batch says so.

What localbatch shows today is used as it is (a pool of 0 nodes, an autoscale pool
at 0, nodes whose start task failed). A pool's resize errors come from localbatch's
weather profile (``serve --weather``; those tests are skipped when localbatch lacks
the flag) and, always, from a proxy that adds Batch's ``resizeErrors`` to the pool
as the service reports them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from typer.testing import CliRunner, Result

from runner import manifest as mf
from runner.batch import Batch
from runner.cli import app
from runner.outputs import Outputs, write_file
from runner.pool_spec import AutoscaleSpec, PoolSpec
from runner.progress import NullReporter
from runner.submit import SubmitOptions, monitor
from runner.targets import AuthMode, Session, Target, TargetKind
from runner.tasks import TaskSpec
from tests.conftest import Azurite, LocalBatch, start_localbatch
from tests.e2e.test_submit import write_corpus
from tests.weather.faultproxy import Fault, FaultProxy, via


def _completes_by_itself(outputs: Outputs, job_id: str) -> bool:
    """Whether the job is set to complete with its last task (nobody watches it any more)."""
    client = BatchClient(
        outputs.batch_account_url,
        AzureNamedKeyCredential(outputs.batch_account_name, outputs.batch_account_key or ""),
    )
    mode = client.get_job(job_id).all_tasks_complete_mode
    return str(getattr(mode, "value", mode)).lower() == "terminatejob"


def _invoke(outputs: Outputs, tmp_path: Path, *args: str) -> Result:
    path = tmp_path / f"outputs-{outputs.pool_id}.json"
    write_file(path, outputs)
    return CliRunner().invoke(app, ["--outputs", str(path), *args], catch_exceptions=False)


def _weather_supported() -> bool:
    """Whether this localbatch has its weather profile (``serve --weather``, localbatch/weather.py)."""
    return importlib.util.find_spec("localbatch.weather") is not None


needs_weather = pytest.mark.skipif(
    not _weather_supported(), reason="localbatch has no `serve --weather` flag (the weather profile)"
)


@pytest.fixture
def own_localbatch(
    request: pytest.FixtureRequest, tmp_path: Path, azurite: Azurite, target_outputs: Outputs
) -> Iterator[tuple[LocalBatch, Outputs]]:
    """A localbatch of the test's own, started with ``request.param`` (extra serve arguments)."""
    lb = start_localbatch(tmp_path / "lb", azurite, extra_args=list(request.param))
    try:
        yield (
            lb,
            dataclasses.replace(
                target_outputs,
                batch_account_url=lb.url,
                batch_account_key=lb.account_key,
                batch_account_name=lb.account_name,
            ),
        )
    finally:
        lb.process.stop()


def test_a_pool_of_zero_nodes_is_said_at_once(tmp_path: Path, target_outputs: Outputs) -> None:
    pool = PoolSpec(pool_id="zero-nodes", dedicated_nodes=0)
    Batch(target_outputs).create_pool(pool)
    outputs = dataclasses.replace(target_outputs, pool_id=pool.pool_id)
    write_corpus(tmp_path / "in", {"a.txt": 5})
    res = _invoke(outputs, tmp_path, "submit", str(tmp_path / "in"), "--job-id", "w-zero", "--timeout", "3")
    assert res.exit_code == 8, res.stderr
    assert "pool zero-nodes has no nodes (target 0): no task can run until it is resized" in res.stderr
    assert res.stderr.count("has no nodes") == 1  # said once, not on every poll
    assert _completes_by_itself(target_outputs, "w-zero")  # not left active for ever


@pytest.mark.parametrize("own_localbatch", [("--autoscale-nodes", "0")], indirect=True)
def test_an_autoscale_pool_at_zero_is_waiting_for_scale_up(
    tmp_path: Path, own_localbatch: tuple[LocalBatch, Outputs]
) -> None:
    _, outputs = own_localbatch
    pool = PoolSpec(pool_id="autoscale-zero", autoscale=AutoscaleSpec(min_nodes=0, max_nodes=2))
    Batch(outputs).create_pool(pool)
    outputs = dataclasses.replace(outputs, pool_id=pool.pool_id)
    write_corpus(tmp_path / "in", {"a.txt": 5})
    res = _invoke(outputs, tmp_path, "submit", str(tmp_path / "in"), "--job-id", "w-auto", "--timeout", "3")
    assert res.exit_code == 8, res.stderr
    assert (
        "pool autoscale-zero: waiting for the pool to scale up (autoscale evaluates every 5 min)"
        in res.stderr
    )


def _with_resize_error(method: str, path: str, body: bytes) -> bytes:
    """The pool as Batch reports one whose resize stopped on the core quota."""
    if method != "GET" or path.split("?")[0] != "/pools/quota-short":
        return body
    doc = json.loads(body)
    doc.update(
        targetDedicatedNodes=2,
        allocationState="steady",
        resizeErrors=[
            {
                "code": "AccountCoreQuotaReached",
                "message": "The specified account has reached VM core quota limit",
            }
        ],
    )
    return json.dumps(doc).encode()


def test_a_resize_error_with_no_node_fails_fast_with_exit_13(tmp_path: Path, target_outputs: Outputs) -> None:
    pool = PoolSpec(pool_id="quota-short", dedicated_nodes=0)
    Batch(target_outputs).create_pool(pool)
    write_corpus(tmp_path / "in", {"a.txt": 5})
    with FaultProxy(target_outputs.batch_account_url, rewrite=_with_resize_error) as proxy:
        outputs = dataclasses.replace(
            target_outputs,
            pool_id=pool.pool_id,
            batch_account_url=via(target_outputs.batch_account_url, proxy),
        )
        res = _invoke(
            outputs, tmp_path, "submit", str(tmp_path / "in"), "--job-id", "w-quota", "--timeout", "60"
        )
    assert res.exit_code == 13, res.stderr
    assert (
        "pool quota-short: 0/2 nodes, resize error AccountCoreQuotaReached: "
        "The specified account has reached VM core quota limit" in res.stderr
    )
    assert "docs/azure.md#prerequisites" in res.stderr and "Traceback" not in res.stderr
    assert _completes_by_itself(target_outputs, "w-quota")  # not left active for ever


@needs_weather
def test_resize_error_from_localbatch_weather_fails_fast(
    tmp_path: Path, azurite: Azurite, target_outputs: Outputs
) -> None:
    profile = tmp_path / "weather.json"
    profile.write_text(json.dumps({"dedicated_node_quota": 0}))
    lb = start_localbatch(tmp_path / "lbw", azurite, extra_args=["--weather", str(profile)])
    try:
        outputs = dataclasses.replace(
            target_outputs,
            batch_account_url=lb.url,
            batch_account_key=lb.account_key,
            pool_id="quota-weather",
        )
        Batch(outputs).create_pool(PoolSpec(pool_id="quota-weather", dedicated_nodes=2))
        write_corpus(tmp_path / "in", {"a.txt": 5})
        res = _invoke(
            outputs, tmp_path, "submit", str(tmp_path / "in"), "--job-id", "w-qw", "--timeout", "60"
        )
    finally:
        lb.process.stop()
    assert res.exit_code == 13, res.stderr
    assert "resize error AccountCoreQuotaReached" in res.stderr


@needs_weather
def test_every_node_unusable_is_said(tmp_path: Path, azurite: Azurite, target_outputs: Outputs) -> None:
    profile = tmp_path / "weather.json"
    profile.write_text(json.dumps({"unusable_rate": 1.0, "unusable_after": 0}))
    lb = start_localbatch(tmp_path / "lbu", azurite, extra_args=["--weather", str(profile)])
    try:
        outputs = dataclasses.replace(
            target_outputs, batch_account_url=lb.url, batch_account_key=lb.account_key, pool_id="unusable"
        )
        Batch(outputs).create_pool(PoolSpec(pool_id="unusable", dedicated_nodes=1))
        write_corpus(tmp_path / "in", {"a.txt": 5})
        res = _invoke(outputs, tmp_path, "submit", str(tmp_path / "in"), "--job-id", "w-un", "--timeout", "8")
    finally:
        lb.process.stop()
    assert res.exit_code == 8, res.stderr
    assert "pool unusable: 0/1 nodes ready (1 unusable)" in res.stderr


def test_a_service_that_stops_answering_is_warned_about(tmp_path: Path, target_outputs: Outputs) -> None:
    job_id = "w-silent"
    # its first poll hangs (a one-task job is watched through its task list)
    hang = Fault(hang=2.5, count=1, only=lambda m, p, h: f"/jobs/{job_id}/tasks?" in p)
    with FaultProxy(target_outputs.batch_account_url) as proxy:
        outputs = dataclasses.replace(
            target_outputs, batch_account_url=via(target_outputs.batch_account_url, proxy)
        )
        session = Session(
            Target(TargetKind.FILE, outputs_file=tmp_path / "x.json"), outputs, AuthMode.SHAREDKEY
        )
        session.batch.ensure_job(job_id, outputs.pool_id, uses_task_dependencies=False)
        session.batch.add_tasks(job_id, [TaskSpec("1", "one", "/bin/true", (), ())])
        proxy.faults.append(hang)  # from the monitor's first poll on
        task = mf.ManifestTask("1", "one", mf.input_blob(job_id, "one"), "one", 1)
        manifest = mf.Manifest(job_id, mf.now_iso(), 3, False, "true {input}", 0, (task,))
        said: list[str] = []

        class Collect(NullReporter):
            def info(self, message: str) -> None:
                said.append(message)

        opts = SubmitOptions(timeout=timedelta(seconds=60), unresponsive_after=1.0)
        monitor(session, manifest, opts, Collect())
    assert hang.served == 1
    assert any("has not answered for 1 s; still trying" in m for m in said), said
