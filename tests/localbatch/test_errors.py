"""Error codes and hostile input: Batch's status codes and error bodies, never a 500."""

from __future__ import annotations

import json

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from tests.localbatch.conftest import RawBatch, new_job, unique


def _check_error_body(body: object, code: str) -> None:
    assert isinstance(body, dict)
    assert body["code"] == code
    assert body["odata.metadata"].endswith(
        "#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
    )
    assert body["message"]["lang"] == "en-US"
    assert "RequestId:" in body["message"]["value"]


def test_not_found_codes(client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool)
    cases = [
        (lambda: client.get_pool(unique("nopool")), "PoolNotFound"),
        (lambda: client.get_job(unique("nojob")), "JobNotFound"),
        (lambda: client.get_task(job_id, "nosuchtask"), "TaskNotFound"),
        (lambda: client.get_node(shared_pool, "tvmps_nope_d"), "NodeNotFound"),
        (
            lambda: client.create_task(unique("nojob"), bm.BatchTaskCreateOptions(id="t", command_line="x")),
            "JobNotFound",
        ),
    ]
    for call, code in cases:
        with pytest.raises(ResourceNotFoundError) as err:
            call()
        assert err.value.status_code == 404 and err.value.error.code == code


def test_conflict_codes(client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool)
    with pytest.raises(ResourceExistsError) as err:
        client.create_job(
            bm.BatchJobCreateOptions(id=job_id.upper(), pool_info=bm.BatchPoolInfo(pool_id="p"))
        )
    assert err.value.error.code == "JobExists"
    with pytest.raises(ResourceExistsError) as err:
        client.create_pool(bm.BatchPoolCreateOptions(id=shared_pool, vm_size="x"))
    assert err.value.error.code == "PoolExists"
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="dup", command_line="/bin/true"))
    with pytest.raises(ResourceExistsError) as err:
        client.create_task(job_id, bm.BatchTaskCreateOptions(id="DUP", command_line="/bin/true"))
    assert err.value.error.code == "TaskExists"
    # In a collection, duplicates are per-task client errors, and the others are added.
    result = client.create_task_collection(
        job_id,
        bm.BatchTaskGroup(
            task_values=[
                bm.BatchTaskCreateOptions(id="dup", command_line="/bin/true"),
                bm.BatchTaskCreateOptions(id="fresh", command_line="/bin/true"),
                bm.BatchTaskCreateOptions(id="bad id!", command_line="/bin/true"),
            ]
        ),
    )
    by_id = {r.task_id: r for r in result.result_values}
    assert by_id["dup"].status == "clienterror" and by_id["dup"].error.code == "TaskExists"
    assert by_id["fresh"].status == "success"
    assert by_id["bad id!"].status == "clienterror" and by_id["bad id!"].error.code == "InvalidPropertyValue"
    client.get_task(job_id, "fresh")


def test_validation_codes(raw: RawBatch, client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool)
    cases: list[tuple[str, str, object, int, str]] = [
        ("POST", "/jobs", {"id": unique("j")}, 400, "MissingRequiredProperty"),
        ("POST", "/jobs", {"id": "a b", "poolInfo": {"poolId": "p"}}, 400, "InvalidPropertyValue"),
        ("POST", "/jobs", {"id": "x" * 65, "poolInfo": {"poolId": "p"}}, 400, "InvalidPropertyValue"),
        ("POST", "/jobs", [1, 2], 400, "InvalidRequestBody"),
        ("POST", "/pools", {"id": unique("p"), "vmSize": 5}, 400, "InvalidPropertyValue"),
        (
            "POST",
            "/pools",
            {"id": unique("p"), "vmSize": "x", "targetDedicatedNodes": -1},
            400,
            "InvalidPropertyValue",
        ),
        ("POST", f"/jobs/{job_id}/tasks", {"id": "t"}, 400, "MissingRequiredProperty"),
        ("POST", f"/jobs/{job_id}/tasks", {"id": "t", "commandLine": ["ls"]}, 400, "InvalidPropertyValue"),
        (
            "POST",
            f"/jobs/{job_id}/tasks",
            {"id": "t", "commandLine": "x", "constraints": {"maxWallClockTime": "soon"}},
            400,
            "InvalidPropertyValue",
        ),
        (
            "POST",
            f"/jobs/{job_id}/tasks",
            {
                "id": "t",
                "commandLine": "x",
                "resourceFiles": [{"httpUrl": "http://h/x", "filePath": "../../etc"}],
            },
            400,
            "InvalidPropertyValue",
        ),
        (
            "POST",
            f"/jobs/{job_id}/tasks",
            {"id": "t", "commandLine": "x", "outputFiles": [{"filePattern": "*"}]},
            400,
            "MissingRequiredProperty",
        ),
        ("POST", f"/jobs/{job_id}/addtaskcollection", {"value": "nope"}, 400, "InvalidPropertyValue"),
        (
            "POST",
            f"/jobs/{job_id}/addtaskcollection",
            {"value": [{"id": f"t{i}", "commandLine": "x"} for i in range(101)]},
            400,
            "InvalidPropertyValue",
        ),
    ]
    for method, path, body, status, code in cases:
        got, err, _ = raw.send(method, path, json.dumps(body).encode())
        assert (got, (err or {}).get("code")) == (status, code), (path, body)
        _check_error_body(err, code)
    assert not list(client.list_tasks(job_id))


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"\xff\xfe",
        b"null",
        b"[]",
        b'"str"',
        b"1e999999",
        b'{"id": {"$ne": 1}}',
        b"{" * 5000 + b"}" * 5000,
    ],
)
def test_malformed_bodies_are_400(raw: RawBatch, body: bytes) -> None:
    status, err, headers = raw.send("POST", "/jobs", body)
    assert status == 400, err
    assert err is not None and err["code"] in (
        "InvalidRequestBody",
        "InvalidPropertyValue",
        "MissingRequiredProperty",
    )
    assert headers.get("request-id")


def test_body_over_the_limit_is_413(raw: RawBatch, client: BatchClient, shared_pool: str) -> None:
    job_id = new_job(client, shared_pool)
    big = {"value": [{"id": f"t{i}", "commandLine": "x" * 8000} for i in range(100)] * 2}
    status, err, _ = raw.send("POST", f"/jobs/{job_id}/addtaskcollection", json.dumps(big).encode())
    assert status == 413 and err is not None and err["code"] == "RequestBodyTooLarge"
    # The SDK splits chunks on this code: 100 tasks of ~12 KB each still get added.
    tasks = [
        bm.BatchTaskCreateOptions(
            id=f"big{i}",
            command_line="/bin/true",
            environment_settings=[bm.EnvironmentSetting(name="PAD", value="y" * 12000)],
        )
        for i in range(100)
    ]
    result = client.create_tasks(job_id, tasks)
    assert sorted(r.task_id for r in result.result_values) == sorted(t.id for t in tasks)
    assert len(list(client.list_tasks(job_id, select=["id"]))) == 100


def test_unknown_routes_and_methods(raw: RawBatch) -> None:
    status, err, _ = raw.send("GET", "/nothing/here")
    assert status == 404 and err is not None and err["code"] == "InvalidUri"
    status, err, _ = raw.send("PATCH", "/jobs")
    assert status == 405 and err is not None and err["code"] == "UnsupportedHttpVerb"


def test_api_versions(raw: RawBatch, localbatch: object) -> None:
    status, err, _ = raw.send("GET", "/jobs", params={"api-version": "1999-01-01.0.0"})
    assert status == 400 and err is not None and err["code"] == "InvalidQueryParameterValue"
    assert {"key": "QueryParameterName", "value": "api-version"} in err["values"]


def test_client_request_id_echo(raw: RawBatch) -> None:
    status, _, headers = raw.send(
        "GET", "/jobs", headers={"client-request-id": "abc-123", "return-client-request-id": "true"}
    )
    assert status == 200 and headers["client-request-id"] == "abc-123"
    assert headers.get("request-id") and headers.get("DataServiceVersion") == "3.0"
