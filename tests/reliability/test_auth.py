"""localbatch refuses every request not signed by the account's key, and refused creates create nothing.

Requests are signed by the SDK's own ``BatchSharedKeyAuthPolicy``; each case then
changes one thing the signature covers (key, account, path, query, body, date) and
checks the 403 ``AuthenticationFailed`` answer and, with a valid client, that
nothing was created.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from tests.conftest import LocalBatch, new_account_key
from tests.reliability.conftest import (
    API_VERSION,
    RawResponse,
    assert_batch_error,
    batch_client,
    build,
    rfc1123,
    send,
    sign,
    signed,
    unique,
)


@pytest.fixture(scope="module")
def client(localbatch: LocalBatch) -> BatchClient:
    return batch_client(localbatch)


@pytest.fixture(scope="module")
def auth_pool(client: BatchClient) -> str:
    """A pool with no nodes: jobs need one, nothing here needs to run."""
    pool_id = unique("authpool")
    client.create_pool(
        bm.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v5", target_dedicated_nodes=0)
    )
    return pool_id


def job_body(job_id: str, pool_id: str) -> bytes:
    return json.dumps({"id": job_id, "poolInfo": {"poolId": pool_id}}).encode()


def assert_refused(resp: RawResponse) -> None:
    err = assert_batch_error(resp, "POST")
    assert resp.status == 403, resp
    assert err is not None and err["code"] == "AuthenticationFailed", err


def forge(request: HttpRequest, body: bytes) -> HttpRequest:
    """The same request with another body, keeping every header (and so the signature)."""
    forged = HttpRequest(request.method, request.url, content=body)
    for name, value in request.headers.items():
        forged.headers[name] = value
    forged.headers["Content-Length"] = str(len(body))
    return forged


def assert_no_job(client: BatchClient, job_id: str) -> None:
    with pytest.raises(ResourceNotFoundError):
        client.get_job(job_id)


def test_sdk_wrong_key_and_wrong_account_are_refused(
    localbatch: LocalBatch, client: BatchClient, auth_pool: str
) -> None:
    for bad in (
        batch_client(localbatch, key=new_account_key()),
        batch_client(localbatch, name="otheraccount"),
    ):
        job_id = unique("refused")
        with pytest.raises(HttpResponseError) as info:
            bad.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=auth_pool)))
        assert info.value.status_code == 403
        assert info.value.error is not None and info.value.error.code == "AuthenticationFailed"
        assert_no_job(client, job_id)
    # The same request with the right credentials is accepted: the refusals above were about the signature.
    job_id = unique("accepted")
    client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=auth_pool)))
    assert client.get_job(job_id).id == job_id


def test_missing_or_malformed_authorization_is_refused(
    localbatch: LocalBatch, client: BatchClient, auth_pool: str
) -> None:
    job_id = unique("noauth")
    body = job_body(job_id, auth_pool)
    unsigned = build(localbatch, "POST", "/jobs", body=body)
    unsigned.headers["ocp-date"] = rfc1123(datetime.now(timezone.utc))
    assert_refused(send(localbatch, unsigned))
    for value in ("SharedKey", "SharedKey nocolon", f"SharedKey {localbatch.account_name}:", "Basic abc:def"):
        request = build(localbatch, "POST", "/jobs", body=body)
        sign(request, localbatch.account_name, localbatch.account_key)
        request.headers["Authorization"] = value
        assert_refused(send(localbatch, request))
    assert_no_job(client, job_id)


def test_tampered_path_query_and_body_are_refused(
    localbatch: LocalBatch, client: BatchClient, auth_pool: str
) -> None:
    job_a, job_b = unique("tamp"), unique("tamp")
    assert len(job_a) == len(job_b)
    for job_id in (job_a, job_b):
        client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=auth_pool)))
    task = json.dumps({"id": "t1", "commandLine": "/bin/true"}).encode()

    # Path: signed for job A's tasks, sent to job B's.
    request = build(localbatch, "POST", f"/jobs/{job_a}/tasks", body=task)
    sign(request, localbatch.account_name, localbatch.account_key)
    assert_refused(send(localbatch, request, url=request.url.replace(job_a, job_b)))

    # Query: an added parameter, and a changed value.
    request = build(localbatch, "POST", f"/jobs/{job_a}/tasks", body=task)
    sign(request, localbatch.account_name, localbatch.account_key)
    assert_refused(send(localbatch, request, url=request.url + "&timeout=30"))
    request = build(
        localbatch, "POST", f"/jobs/{job_a}/tasks", query=f"api-version={API_VERSION}&timeout=30", body=task
    )
    sign(request, localbatch.account_name, localbatch.account_key)
    assert_refused(send(localbatch, request, url=request.url.replace("timeout=30", "timeout=31")))

    # Body: longer than the signed Content-Length, original signature.
    original = job_body(job_a + "x", auth_pool)
    request = build(localbatch, "POST", "/jobs", body=original)
    sign(request, localbatch.account_name, localbatch.account_key)
    forged_id = unique("tamp") + "xy"
    assert_refused(send(localbatch, forge(request, job_body(forged_id, auth_pool))))
    assert_no_job(client, forged_id)

    assert [t.id for t in client.list_tasks(job_a)] == []
    assert [t.id for t in client.list_tasks(job_b)] == []
    assert_no_job(client, job_a + "x")
    # Untampered, the very same task request is accepted.
    assert signed(localbatch, "POST", f"/jobs/{job_a}/tasks", body=task).status == 201
    assert [t.id for t in client.list_tasks(job_a)] == ["t1"]


@pytest.mark.parametrize(
    ("offset_minutes", "accepted"),
    [(-16, False), (16, False), (-60 * 24, False), (60 * 24, False), (-4, True), (4, True)],
)
def test_request_date_must_be_within_15_minutes(
    localbatch: LocalBatch, client: BatchClient, auth_pool: str, offset_minutes: int, accepted: bool
) -> None:
    job_id = unique("skew")
    request = build(localbatch, "POST", "/jobs", body=job_body(job_id, auth_pool))
    when = datetime.now(timezone.utc) + timedelta(minutes=offset_minutes)
    sign(request, localbatch.account_name, localbatch.account_key, ocp_date=rfc1123(when))
    resp = send(localbatch, request)
    if accepted:
        assert resp.status == 201, resp
        assert client.get_job(job_id).id == job_id
    else:
        assert_refused(resp)
        assert_no_job(client, job_id)


def test_garbage_date_is_refused(localbatch: LocalBatch, client: BatchClient, auth_pool: str) -> None:
    job_id = unique("baddate")
    request = build(localbatch, "POST", "/jobs", body=job_body(job_id, auth_pool))
    sign(request, localbatch.account_name, localbatch.account_key, ocp_date="not a date")
    assert_refused(send(localbatch, request))
    assert_no_job(client, job_id)


def test_same_length_body_not_matching_signed_content_md5_is_refused(
    localbatch: LocalBatch, client: BatchClient, auth_pool: str
) -> None:
    # SharedKey covers the body only through Content-Length and, when sent, Content-MD5 (as on
    # Azure). With Content-MD5 signed, a same-length forged body must not be accepted.
    original = job_body(unique("md5") + "x", auth_pool)
    digest = base64.b64encode(hashlib.md5(original).digest()).decode()
    request = build(localbatch, "POST", "/jobs", headers=[("Content-MD5", digest)], body=original)
    sign(request, localbatch.account_name, localbatch.account_key)
    forged_id = unique("md5") + "x"
    forged = job_body(forged_id, auth_pool)
    assert len(forged) == len(original)
    resp = send(localbatch, forge(request, forged))
    try:
        err = assert_batch_error(resp, "POST")
        assert resp.status in (400, 403), resp
        assert err is not None and err["code"] in (
            "Md5Mismatch",
            "AuthenticationFailed",
            "InvalidHeaderValue",
        )
    finally:
        assert_no_job(client, forged_id)
    # The untampered request with its Content-MD5 is accepted.
    assert send(localbatch, request).status == 201
