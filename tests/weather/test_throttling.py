"""Throttling and transient 5xx, injected by a proxy: the SDKs' retry policies carry the run.

Batch throttles with 429 and 503 ``ServerBusy`` carrying ``Retry-After``; Storage
with 503 ``ServerBusy`` and 500 ``OperationTimedOut``. The runner configures the
SDKs' own retry policies (runner/batch.py, runner/storage.py) and has no loop
of its own: with those policies turned off, this run fails.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from typer.testing import CliRunner

from runner.cli import app
from runner.outputs import Outputs, write_file
from tests.e2e.test_submit import reference_counts, top, write_corpus
from tests.weather.faultproxy import Fault, FaultProxy, from_sdk, via


def _batch_faults() -> list[Fault]:
    return [
        Fault(429, "TooManyRequests", retry_after=1, count=2, every=3),
        Fault(503, "ServerBusy", retry_after=1, count=2, every=4),
        Fault(500, "InternalError", count=2, every=5),
    ]


def _storage_faults() -> list[Fault]:
    return [
        Fault(503, "ServerBusy", retry_after=1, count=2, every=3, only=from_sdk),
        Fault(500, "OperationTimedOut", count=2, every=4, only=from_sdk),
    ]


def test_submit_succeeds_through_injected_throttling_and_5xx(tmp_path: Path, target_outputs: Outputs) -> None:
    texts = write_corpus(tmp_path / "in", {f"f{i}.txt": 40 for i in range(4)})
    with (
        FaultProxy(target_outputs.batch_account_url, _batch_faults()) as bp,
        FaultProxy(target_outputs.storage_blob_endpoint, _storage_faults()) as sp,
    ):
        outputs = dataclasses.replace(
            target_outputs,
            batch_account_url=via(target_outputs.batch_account_url, bp),
            storage_blob_endpoint=via(target_outputs.storage_blob_endpoint, sp),
        )
        path = tmp_path / "outputs.json"
        write_file(path, outputs)
        res = CliRunner().invoke(
            app,
            ["--outputs", str(path), "--json", "submit", str(tmp_path / "in"), "--job-id", "weather-thr"],
            catch_exceptions=False,
        )
        assert res.exit_code == 0, res.stderr
        doc = json.loads(res.stdout)
        for f in doc["files"]:
            assert f["top"] == top(reference_counts(texts[f["input"]]), 3)
        assert [(f.status, f.served) for f in bp.faults + sp.faults] == [
            (f.status, f.count) for f in bp.faults + sp.faults
        ]
        # Retry-After is honoured: the request after a 429/503 that said "1" came a second later.
        for proxy in (bp, sp):
            recs = proxy.records
            for i, r in enumerate(recs):
                if r.faulted and r.status in (429, 503):
                    later = [x for x in recs[i + 1 :] if x.method == r.method and x.path == r.path]
                    assert later and later[0].at - r.at >= 0.9, (r, later[:1])
