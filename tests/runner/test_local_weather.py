"""``runner local up --weather FILE --weather-seed N``: the local target runs with that weather."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError
from typer.testing import CliRunner, Result

from runner.cli import app


def _run(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"RUNNER_HOME": str(home)}, catch_exceptions=False)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "rh"
    yield home
    _run(home, "local", "down")


def test_local_up_passes_the_weather_to_localbatch(home: Path, tmp_path: Path) -> None:
    # Bad input first, before anything starts: a profile that does not exist, a seed alone.
    missing = _run(home, "local", "up", "--weather", str(tmp_path / "none.json"))
    assert missing.exit_code == 2 and "none.json: no such file" in missing.stderr
    assert _run(home, "local", "up", "--weather-seed", "3").exit_code == 2
    # A fifth of the requests throttled: the runner's own provisioning retries through it.
    profile = tmp_path / "stormy.json"
    profile.write_text(json.dumps({"throttle_rate": 0.2, "throttle_status": 429, "retry_after": 0}))
    up = _run(home, "local", "up", "--weather", str(profile), "--weather-seed", "3")
    assert up.exit_code == 0, up.stderr
    outputs = json.loads((home / "local" / "outputs.json").read_text())
    credential = AzureNamedKeyCredential(outputs["batchAccountName"], outputs["batchAccountKey"])
    # An SDK client that does not retry sees the throttling: 429 TooManyRequests, Retry-After.
    client = BatchClient(outputs["batchAccountUrl"], credential, retry_total=0)
    refused: list[HttpResponseError] = []
    for _ in range(40):
        try:
            list(client.list_pools())
        except HttpResponseError as exc:
            refused.append(exc)
    assert 0 < len(refused) < 40
    assert {(e.status_code, e.error.code if e.error else None) for e in refused} == {(429, "TooManyRequests")}
    assert all(e.response is not None and e.response.headers.get("Retry-After") == "0" for e in refused)
    # Without --weather, `up` keeps the running localbatch (and its weather) as it is.
    again = _run(home, "local", "up")
    assert again.exit_code == 0 and "already running" in again.stderr
