"""Hostile input never gets a 500 and never stops the server (property-based)."""

from __future__ import annotations

import json
from typing import Any

from azure.batch import BatchClient
from azure.batch import models as bm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.localbatch.conftest import RawBatch, new_job, wait_task_completed

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "id",
        "commandLine",
        "poolInfo",
        "poolId",
        "value",
        "constraints",
        "resourceFiles",
        "outputFiles",
        "dependsOn",
        "exitConditions",
        "environmentSettings",
        "vmSize",
        "targetDedicatedNodes",
        "startTask",
        "taskSlotsPerNode",
        "maxWallClockTime",
        "maxTaskRetryCount",
        "filePattern",
        "httpUrl",
        "filePath",
        "taskIds",
        "taskIdRanges",
        "start",
        "end",
        "requiredSlots",
        "usesTaskDependencies",
    ]
)
# Objects shaped like Batch bodies (known keys, random values), nested one level.
_shaped = st.dictionaries(_keys, _json | st.dictionaries(_keys, _json, max_size=4), max_size=6)


def _post(raw: RawBatch, path: str, body: Any) -> int:
    status, err, headers = raw.send("POST", path, json.dumps(body).encode())
    assert status < 500, (path, body, err)
    assert headers.get("request-id")
    return status


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_shaped)
def test_random_task_bodies(raw: RawBatch, hostile_job: str, body: dict[str, Any]) -> None:
    _post(raw, f"/jobs/{hostile_job}/tasks", body)
    _post(raw, f"/jobs/{hostile_job}/addtaskcollection", {"value": [body, {"id": "x", **body}]})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_shaped)
def test_random_pool_and_job_bodies(raw: RawBatch, body: dict[str, Any]) -> None:
    body = {**body, "targetDedicatedNodes": 0} if isinstance(body.get("targetDedicatedNodes"), int) else body
    _post(raw, "/jobs", body)
    _post(raw, "/pools", body)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.lists(
        st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s and s not in (".", "..")), max_size=6
    ),
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD"]),
    query=st.dictionaries(
        st.sampled_from(["$filter", "$select", "maxresults", "$skiptoken", "recursive"]),
        st.text(max_size=20),
        max_size=3,
    ),
)
def test_random_paths_and_queries(raw: RawBatch, path: list[str], method: str, query: dict[str, str]) -> None:
    from urllib.parse import quote

    url = "/" + "/".join(quote(p, safe="") for p in path)
    status, err, _ = raw.send(
        method, url, b"{}" if method in ("POST", "PUT", "PATCH") else None, params=query
    )
    assert status < 500, (method, url, query, err)


def test_deeply_nested_json_is_400(raw: RawBatch) -> None:
    for body in (b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000):
        status, err, _ = raw.send("POST", "/jobs", body)
        assert status == 400 and err is not None and err["code"] == "InvalidRequestBody"


def test_deep_filter_is_400(raw: RawBatch, hostile_job: str) -> None:
    for flt in (
        "(" * 3000 + "state eq 'x'" + ")" * 3000,
        " and ".join(["state eq 'x'"] * 300),
        "not " * 900 + "id eq 'a'",
    ):
        status, err, _ = raw.send("GET", f"/jobs/{hostile_job}/tasks", params={"$filter": flt})
        assert status == 400 and err is not None and err["code"] == "InvalidQueryParameterValue"


def test_control_characters_in_paths(raw: RawBatch, client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool)
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/true"))
    wait_task_completed(client, job_id, "t")
    for path in (
        "/pools/x%0Ay",
        f"/jobs/{job_id}/tasks/t/files/%00",
        f"/jobs/{job_id}/tasks/t/files/a%00b",
        f"/jobs/{job_id}/tasks/t/files/%0A",
        "/jobs/%0D%0A",
        "/%00",
    ):
        status, err, headers = raw.send("GET", path)
        assert 400 <= status < 500, (path, status)
        assert err is not None and err["message"]["lang"] == "en-US" and headers.get("request-id")
