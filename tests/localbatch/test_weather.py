"""Azure's weather (``serve --weather``): each element shown through the official SDK.

Every test starts its own localbatch with a short, bounded profile (one or
two elements) and stops it; the session server stays calm. Assertions on
timing use the service's own timestamps or states held for seconds, never the
test's wall clock as a measure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from localbatch import weather
from tests.conftest import Azurite, LocalBatch, new_account_key, start_localbatch
from tests.localbatch.conftest import RawBatch, batch_client, new_job, unique, wait_for, wait_nodes_idle


@contextmanager
def weathered_server(tmp_path: Path, azurite: Azurite, profile: dict[str, Any]) -> Iterator[LocalBatch]:
    """A localbatch of its own under ``profile``, stopped at the end."""
    path = tmp_path / "weather.json"
    path.write_text(json.dumps(profile), encoding="utf-8")
    server = start_localbatch(tmp_path / "lb", azurite, extra_args=["--weather", str(path)])
    try:
        yield server
    finally:
        server.process.stop()


@contextmanager
def weathered(tmp_path: Path, azurite: Azurite, profile: dict[str, Any]) -> Iterator[BatchClient]:
    """An SDK client of a localbatch of its own under ``profile``."""
    with weathered_server(tmp_path, azurite, profile) as server:
        yield batch_client(server)


def _pool(client: BatchClient, dedicated: int = 0, low: int = 0, pool_id: str = "", **kw: Any) -> str:
    pool_id = pool_id or unique("wx")
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id,
            vm_size="standard_d2s_v5",
            target_dedicated_nodes=dedicated,
            target_low_priority_nodes=low,
            **kw,
        )
    )
    return pool_id


def _states(client: BatchClient, pool_id: str) -> list[str]:
    return sorted(str(getattr(n.state, "value", n.state)) for n in client.list_nodes(pool_id))


def test_allocation_delay_keeps_the_pool_resizing_and_nodes_creating(
    tmp_path: Path, azurite: Azurite
) -> None:
    with weathered(tmp_path, azurite, {"allocation_delay": 3.0, "boot_delay": 1.0}) as client:
        pool_id = _pool(client, dedicated=2)
        assert client.get_pool(pool_id).allocation_state == "resizing"
        assert _states(client, pool_id) == ["creating", "creating"]
        wait_for(lambda: "starting" in _states(client, pool_id), timeout=20)
        wait_nodes_idle(client, pool_id, 2, timeout=20)
        pool = client.get_pool(pool_id)
        assert pool.allocation_state == "steady" and pool.current_dedicated_nodes == 2


def test_task_latency_delays_each_task_start(tmp_path: Path, azurite: Azurite) -> None:
    with weathered(tmp_path, azurite, {"task_latency": 1.5}) as client:
        pool_id = _pool(client, dedicated=1)
        wait_nodes_idle(client, pool_id, 1)
        job_id = new_job(client, pool_id)
        client.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
        assert client.get_task(job_id, "t").state == "active"  # a node is idle, yet the task waits
        task = wait_for(lambda: t if (t := client.get_task(job_id, "t")).state == "completed" else None)
        assert task.execution_info is not None and task.execution_info.start_time is not None
        assert task.execution_info.start_time - task.creation_time >= timedelta(seconds=1.5)


def test_task_counts_lag_the_task_list(tmp_path: Path, azurite: Azurite) -> None:
    with weathered(tmp_path, azurite, {"task_counts_lag": 4.0}) as client:
        pool_id = _pool(client)  # no nodes: tasks stay active
        job_id = new_job(client, pool_id)
        assert client.get_job_task_counts(job_id).task_counts.active == 0
        client.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
        assert [t.id for t in client.list_tasks(job_id)] == ["t"]
        assert client.get_job_task_counts(job_id).task_counts.active == 0  # the snapshot lags
        wait_for(lambda: client.get_job_task_counts(job_id).task_counts.active == 1, timeout=20, interval=0.5)


@pytest.mark.parametrize(("status", "code"), [(429, "TooManyRequests"), (503, "ServerBusy")])
def test_throttling_and_transient_500s(tmp_path: Path, azurite: Azurite, status: int, code: str) -> None:
    profile = {
        "seed": 3,
        "throttle_rate": 0.3,
        "throttle_status": status,
        "retry_after": 0,
        "server_error_rate": 0.2,
    }
    with weathered_server(tmp_path, azurite, profile) as server:
        client = batch_client(server, retry_backoff_factor=0.05)  # short backoff keeps the test quick
        pool_id = _pool(client)  # the SDK's own retries carry this one through
        for _ in range(4):
            assert client.get_pool(pool_id).id == pool_id
        seen: dict[int, int] = {}
        bare = batch_client_no_retry(client)
        for _ in range(40):
            try:
                bare.get_pool(pool_id)
                seen[200] = seen.get(200, 0) + 1
            except HttpResponseError as exc:
                seen[exc.status_code or 0] = seen.get(exc.status_code or 0, 0) + 1
                assert exc.error is not None
                if exc.status_code == status:
                    assert exc.error.code == code and exc.response.headers["Retry-After"] == "0"
                else:
                    assert exc.status_code == 500 and exc.error.code == "InternalServerError"
        assert set(seen) == {200, status, 500}, seen


def batch_client_no_retry(client: BatchClient) -> BatchClient:
    endpoint = client._config.endpoint  # the same server and credential, without the SDK's retries
    return BatchClient(endpoint, client._config.credential, retry_total=0)


def test_preemption_and_unusable_nodes_requeue_their_tasks(tmp_path: Path, azurite: Azurite) -> None:
    profile = {"preemption_rate": 1.0, "preemption_after": 1.0, "unusable_rate": 1.0, "unusable_after": 1.0}
    with weathered(tmp_path, azurite, profile) as client:
        pool_id = _pool(client, dedicated=1, low=1)
        job_id = new_job(client, pool_id)
        for tid in ("a", "b"):
            client.create_task(job_id, bm.BatchTaskCreateOptions(id=tid, command_line="/bin/sleep 30"))
        wait_for(lambda: _states(client, pool_id) == ["preempted", "unusable"], timeout=20)
        by_kind = {bool(n.is_dedicated): n.state for n in client.list_nodes(pool_id)}
        assert by_kind == {True: "unusable", False: "preempted"}
        tasks = wait_for(
            lambda: (
                ts
                if all(ts := list(client.list_tasks(job_id))) and all(t.state == "active" for t in ts)
                else None
            ),
            timeout=20,
        )
        assert len(tasks) == 2
        assert all(t.execution_info is not None and t.execution_info.requeue_count == 1 for t in tasks)
        pool = client.get_pool(pool_id)
        assert (pool.current_dedicated_nodes, pool.current_low_priority_nodes) == (1, 1)


def test_preempted_node_comes_back(tmp_path: Path, azurite: Azurite) -> None:
    profile = {"seed": 1, "preemption_rate": 1.0, "preemption_after": 0.5, "preempted_for": 1.0}
    with weathered(tmp_path, azurite, profile) as client:
        pool_id = _pool(client, low=1)
        wait_for(lambda: _states(client, pool_id) == ["preempted"], timeout=20)
        wait_for(lambda: _states(client, pool_id) in (["idle"], ["starting"]), timeout=20)


def _failures_predicted(profile: dict[str, Any], pool_id: str, count: int) -> int:
    sky = weather.from_mapping(profile)
    rate = sky.start_task_failure_rate
    return sum(sky.chance("start_task_failure", rate, f"{pool_id}/{i}") for i in range(count))


def test_start_task_fails_on_some_nodes(tmp_path: Path, azurite: Azurite) -> None:
    profile = {"seed": 11, "start_task_failure_rate": 0.5}
    with weathered(tmp_path, azurite, profile) as client:
        start = bm.BatchStartTask(command_line="/bin/true", wait_for_success=True)
        pool_id = _pool(client, dedicated=6, pool_id="wx-start", start_task=start)
        expected = _failures_predicted(profile, pool_id, 6)
        done = ("idle", "starttaskfailed")
        nodes = wait_for(
            lambda: (
                ns
                if len(ns := list(client.list_nodes(pool_id))) == 6 and all(n.state in done for n in ns)
                else None
            )
        )
        failed = [n for n in nodes if n.state == "starttaskfailed"]
        assert len(failed) == expected and 0 < expected < 6  # the seed decides, the same each run
        info = failed[0].start_task_info
        assert info is not None and info.exit_code == 1 and info.result == "failure"
        assert info.failure_info is not None and info.failure_info.code == "FailureExitCode"


def test_core_quota_leaves_the_pool_short_with_a_resize_error(tmp_path: Path, azurite: Azurite) -> None:
    with weathered(tmp_path, azurite, {"dedicated_node_quota": 2}) as client:
        pool_id = _pool(client, dedicated=3)
        wait_nodes_idle(client, pool_id, 2)
        pool = client.get_pool(pool_id)
        assert pool.allocation_state == "steady"
        assert (pool.target_dedicated_nodes, pool.current_dedicated_nodes) == (3, 2)
        assert [e.code for e in pool.resize_errors or []] == ["AccountCoreQuotaReached"]
        client.begin_resize_pool(
            pool_id, bm.BatchPoolResizeOptions(target_dedicated_nodes=2), polling_interval=0.1
        ).result()
        assert not client.get_pool(pool_id).resize_errors  # errors describe the last resize only


def test_allocation_failures_leave_the_pool_short(tmp_path: Path, azurite: Azurite) -> None:
    with weathered(tmp_path, azurite, {"allocation_failure_rate": 1.0}) as client:
        pool_id = _pool(client, dedicated=2)
        pool = client.get_pool(pool_id)
        assert pool.allocation_state == "steady" and pool.current_dedicated_nodes == 0
        assert [e.code for e in pool.resize_errors or []] == ["AllocationFailed"]
        assert list(client.list_nodes(pool_id)) == []


def test_lost_node_takes_its_task_files(tmp_path: Path, azurite: Azurite) -> None:
    with weathered_server(tmp_path, azurite, {"node_loss_rate": 1.0}) as server:
        client = batch_client(server)
        pool_id = _pool(client, dedicated=1)
        [first] = wait_nodes_idle(client, pool_id, 1)
        job_id = new_job(client, pool_id)
        client.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/echo hi"))
        task = wait_for(lambda: t if (t := client.get_task(job_id, "t")).state == "completed" else None)
        assert task.node_info is not None and task.node_info.node_id == first.id
        [second] = wait_for(
            lambda: [n for n in client.list_nodes(pool_id) if n.id != first.id and n.state == "idle"]
        )
        assert second.id != first.id
        with pytest.raises(HttpResponseError) as err:
            b"".join(client.download_task_file(job_id, "t", "stdout.txt"))
        assert err.value.status_code == 409
        status, doc, _ = RawBatch(server).send("GET", f"/jobs/{job_id}/tasks/t/files/stdout.txt")
        assert status == 409 and doc is not None and doc["code"] == "TaskFilesUnavailable"


# ---------------------------------------------------------------------- the profile itself


def test_decisions_are_deterministic_from_the_seed() -> None:
    a, b, c = weather.Weather(seed=5), weather.Weather(seed=5), weather.Weather(seed=6)
    keys = [f"p/{i}" for i in range(200)]
    pick = [a.chance("x", 0.5, k) for k in keys]
    assert pick == [b.chance("x", 0.5, k) for k in keys]
    assert pick != [c.chance("x", 0.5, k) for k in keys]
    assert 60 < sum(pick) < 140
    assert all(2.0 <= a.seconds("d", (2.0, 3.0), k) <= 3.0 for k in keys)
    assert weather.CALM.calm and not weather.load("azure-like").calm


@pytest.mark.parametrize(
    ("profile", "key"),
    [
        ({"throttle_rate": 2}, "throttle_rate"),
        ({"allocation_delay": [5, 1]}, "allocation_delay"),
        ({"allocation_delay": 99999}, "allocation_delay"),
        ({"throttle_status": 500}, "throttle_status"),
        ({"dedicated_node_quota": -1}, "dedicated_node_quota"),
        ({"no_such_thing": 1}, "no_such_thing"),
        ({"task_counts_lag": "soon"}, "task_counts_lag"),
    ],
)
def test_bad_profiles_name_the_key(profile: dict[str, Any], key: str) -> None:
    with pytest.raises(weather.WeatherError, match=key):
        weather.from_mapping(profile)


def test_toml_profile_and_bad_file_at_serve(tmp_path: Path) -> None:
    good = tmp_path / "w.toml"
    good.write_text("seed = 4\nallocation_delay = [1, 2]\nthrottle_status = 429\n", encoding="utf-8")
    sky = weather.load(str(good), seed=9)
    assert (sky.seed, sky.allocation_delay, sky.throttle_status) == (9, (1.0, 2.0), 429)
    bad = tmp_path / "bad.json"
    bad.write_text('{"preemption_rate": 7}', encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "localbatch",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--account-name",
            "a",
            "--weather",
            str(bad),
        ],
        env={**os.environ, "LOCALBATCH_ACCOUNT_KEY": new_account_key()},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "preemption_rate" in proc.stderr


def test_azure_like_preset_serves_with_a_seed(tmp_path: Path, azurite: Azurite) -> None:
    server = start_localbatch(
        tmp_path / "lb", azurite, extra_args=["--weather", "azure-like", "--weather-seed", "1"]
    )
    try:
        client = batch_client(server)
        pool_id = _pool(client, dedicated=1)
        # azure-like allocates for 18-48 s: the node is still being created.
        assert client.get_pool(pool_id).allocation_state == "resizing"
        assert _states(client, pool_id) == ["creating"]
    finally:
        server.process.stop()
