"""Properties Batch does not define are refused (400 InvalidRequestBody, naming them), never stored.

The service parses bodies against closed OData types: an unknown property at any
depth fails the request with the reason "The property 'X' does not exist on type
'...'". Checked through the SDK (a model given a raw mapping sends what it holds)
and raw REST for the shapes the SDK cannot make.
"""

from __future__ import annotations

import json
import re

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from tests.localbatch.conftest import RawBatch, new_job, unique


def _reason(err: dict[str, object] | None) -> str:
    assert err is not None and err["code"] == "InvalidRequestBody", err
    values = err.get("values")
    assert isinstance(values, list)
    return next(str(v["value"]) for v in values if v["key"] == "Reason")


def test_unknown_properties_are_refused_at_any_depth(
    raw: RawBatch, client: BatchClient, shared_pool: str
) -> None:
    job_id = new_job(client, shared_pool)
    pool_id, new_job_id = unique("up"), unique("uj")
    cases: list[tuple[str, str, object, str, str]] = [
        ("POST", "/pools", {"id": pool_id, "vmSize": "x", "colour": "red"}, "colour", "PoolAddParameter"),
        (
            "POST",
            "/pools",
            {"id": pool_id, "vmSize": "x", "startTask": {"commandLine": "true", "sudo": True}},
            "sudo",
            "StartTask",
        ),
        ("POST", "/jobs", {"id": new_job_id, "poolInfo": {"poolId": "p", "zone": 1}}, "zone", "PoolInfo"),
        (
            "POST",
            f"/jobs/{job_id}/tasks",
            {"id": "t1", "commandLine": "x", "Id": "t2"},
            "Id",
            "TaskAddParameter",
        ),
        (
            "POST",
            f"/jobs/{job_id}/tasks",
            {"id": "t1", "commandLine": "x", "environmentSettings": [{"name": "A", "value": "1", "x": 2}]},
            "x",
            "EnvironmentSetting",
        ),
        (
            "POST",
            f"/jobs/{job_id}/addtaskcollection",
            {"value": [{"id": "t3", "commandLine": "x"}, {"id": "t4", "commandLine": "x", "\u001b[2J": 1}]},
            "\\x1b[2J",
            "TaskAddParameter",
        ),
        ("PATCH", f"/jobs/{job_id}", {"priority": 5, "owner": "me"}, "owner", "JobPatchParameter"),
        ("PATCH", f"/pools/{shared_pool}", {"metadata": [], "tier": "gold"}, "tier", "PoolPatchParameter"),
    ]
    for method, path, body, name, entity in cases:
        status, err, _ = raw.send(method, path, json.dumps(body).encode())
        assert status == 400, (path, body, err)
        reason = _reason(err)
        assert f"The property '{name}' does not exist on type" in reason, reason
        assert reason.endswith("Make sure to only use property names that are defined by the type.")
        assert f"Microsoft.Azure.Batch.Protocol.Entities.{entity}'" in reason, reason
    # Nothing half-done: no pool, job or task was made, and the patches changed nothing.
    assert pool_id not in {p.id for p in client.list_pools()}
    assert new_job_id not in {j.id for j in client.list_jobs()}
    assert not list(client.list_tasks(job_id))
    assert client.get_job(job_id).priority == 0
    # Through the SDK too: a model built from a raw mapping sends every key it holds.
    with pytest.raises(HttpResponseError) as caught:
        client.create_job(
            bm.BatchJobCreateOptions({"id": new_job_id, "poolInfo": {"poolId": "p"}, "tags": []})
        )
    assert caught.value.status_code == 400 and caught.value.error is not None
    assert caught.value.error.code == "InvalidRequestBody"
    # What the service defines still passes: OData annotations, and retired properties keep their own refusal.
    ok = {"odata.type": "Microsoft.Azure.Batch.Protocol.Entities.Task", "id": "t5", "commandLine": "x"}
    assert raw.send("POST", f"/jobs/{job_id}/tasks", json.dumps(ok).encode())[0] == 201
    retired = {"id": pool_id, "vmSize": "x", "cloudServiceConfiguration": {"osFamily": "6"}}
    status, err, _ = raw.send("POST", "/pools", json.dumps(retired).encode())
    assert (status, (err or {}).get("code")) == (400, "InvalidPropertyValue")
    # A property an earlier api-version defines (2025-06-01 dropped it) is accepted from a client
    # that sends that api-version (azure-batch 14's), and only then.
    tagged = {"id": pool_id, "vmSize": "x", "targetNodeCommunicationMode": "default"}
    status, err, _ = raw.send("POST", "/pools", json.dumps(tagged).encode())
    assert status == 400 and "'targetNodeCommunicationMode' does not exist" in _reason(err)
    older = RawBatch(raw.server, api_version="2024-02-01.19.0")
    assert older.send("POST", "/pools", json.dumps(tagged).encode())[0] == 201
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()
    _, task, _ = raw.send("GET", f"/jobs/{job_id}/tasks/t5")
    assert task is not None and task["id"] == "t5" and "odata.type" not in task


def test_body_models_and_conditional_operations_follow_the_sdk() -> None:
    """No server: every listed body model is one of the SDK's (a typo would switch the check
    off), and every operation the SDK sends conditional headers to (but files) is conditional."""
    from localbatch import bodies, conditions
    from localbatch.contract import spec

    contract = spec.load()
    assert all(model in contract.models for model, _entity in bodies.BODY_MODELS.values())
    declared = {
        (op.method, re.sub(r"\{[^}]+\}", "{}", op.template.strip("/")))
        for op in contract.operations
        if op.conditional and "/files/" not in op.template
    }
    assert declared == conditions.CONDITIONAL
