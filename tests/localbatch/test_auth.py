"""SharedKey: signed requests pass; wrong, missing, stale or tampered ones are refused and do nothing."""

from __future__ import annotations

import json
import time
from email.utils import formatdate

import pytest
from azure.batch import models as bm
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from tests.conftest import LocalBatch, new_account_key
from tests.localbatch.conftest import RawBatch, batch_client, unique


class Tamper(SansIOHTTPPolicy):  # type: ignore[misc]
    """Alters a request after it was signed."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def on_request(self, request: PipelineRequest) -> None:
        req = request.http_request
        if self.what == "path":
            req.url = req.url.replace("/jobs", "/pools", 1)
        elif self.what == "query":
            req.url = req.url + "&timeOut=5"
        elif self.what == "body":
            req.set_bytes_body(
                json.dumps({"id": unique("evil"), "poolInfo": {"poolId": "p"}, "priority": 9}).encode()
            )
        elif self.what == "account":
            req.headers["Authorization"] = req.headers["Authorization"].replace(
                "SharedKey ", "SharedKey other", 1
            )
        elif self.what == "scheme":
            req.headers["Authorization"] = req.headers["Authorization"].replace(
                "SharedKey", "SharedKeyLite", 1
            )


def _job_body() -> tuple[str, bytes]:
    job_id = unique("authjob")
    return job_id, json.dumps({"id": job_id, "poolInfo": {"poolId": "nopool"}}).encode()


def _assert_refused(status: int, err: object, expected_status: int = 403) -> None:
    assert status == expected_status
    assert isinstance(err, dict) and err["code"] == "AuthenticationFailed"
    assert any(v["key"] == "AuthenticationErrorDetail" for v in err["values"])


def test_signed_request_is_accepted(raw: RawBatch) -> None:
    job_id, body = _job_body()
    status, _, headers = raw.send("POST", "/jobs", body)
    assert status == 201 and headers["Location"].endswith(f"/jobs/{job_id}")
    assert raw.send("GET", f"/jobs/{job_id}")[0] == 200


@pytest.mark.parametrize("what", ["path", "query", "body", "account", "scheme"])
def test_tampered_requests_are_refused(raw: RawBatch, what: str) -> None:
    job_id, body = _job_body()
    status, err, _ = raw.send("POST", "/jobs", body, tamper=Tamper(what))
    _assert_refused(status, err)
    assert raw.send("GET", f"/jobs/{job_id}")[0] == 404


def test_wrong_key_missing_header_stale_date(raw: RawBatch, localbatch: LocalBatch) -> None:
    job_id, body = _job_body()
    wrong = RawBatch(localbatch, key=new_account_key())
    _assert_refused(*wrong.send("POST", "/jobs", body)[:2])
    _assert_refused(*raw.send("POST", "/jobs", body, sign=False)[:2])
    stale = formatdate(time.time() - 20 * 60, usegmt=True)
    _assert_refused(*raw.send("POST", "/jobs", body, headers={"ocp-date": stale})[:2])
    future = formatdate(time.time() + 20 * 60, usegmt=True)
    _assert_refused(*raw.send("POST", "/jobs", body, headers={"ocp-date": future})[:2])
    bearer = raw.send("GET", "/jobs", sign=False, headers={"Authorization": "Bearer abc"})
    _assert_refused(bearer[0], bearer[1], expected_status=401)
    assert "not supported" in bearer[1]["message"]["value"]  # type: ignore[index]
    # Nothing was created by any refused request.
    assert raw.send("GET", f"/jobs/{job_id}")[0] == 404


def test_sdk_with_wrong_key_is_refused(localbatch: LocalBatch) -> None:
    server = LocalBatch(
        localbatch.url, localbatch.account_name, new_account_key(), localbatch.data_dir, localbatch.process
    )
    client = batch_client(server)
    with pytest.raises(HttpResponseError) as err:
        list(client.list_jobs())
    assert err.value.status_code == 403 and err.value.error.code == "AuthenticationFailed"
    with pytest.raises((ClientAuthenticationError, HttpResponseError)):
        client.create_job(bm.BatchJobCreateOptions(id=unique("x"), pool_info=bm.BatchPoolInfo(pool_id="p")))


def test_older_api_version_client(localbatch: LocalBatch, shared_pool: str) -> None:
    """An older client generation: same shapes, dated api-version, signed the same way."""
    old = batch_client(localbatch, api_version="2023-05-01.17.0")
    job_id = unique("oldjob")
    old.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=shared_pool)))
    old.create_task(job_id, bm.BatchTaskCreateOptions(id="t", command_line="/bin/echo old"))
    assert old.get_job(job_id).id == job_id
    assert [t.id for t in old.list_tasks(job_id)] == ["t"]
    counts = old.get_job_task_counts(job_id)
    assert counts.task_counts.active + counts.task_counts.running + counts.task_counts.completed == 1
    unsupported = batch_client(localbatch, api_version="2015-01-01.1.0")
    with pytest.raises(HttpResponseError) as err:
        unsupported.get_job(job_id)
    assert err.value.status_code == 400 and err.value.error.code == "InvalidQueryParameterValue"


def test_signed_content_md5_must_match_the_body(raw: RawBatch) -> None:
    import base64
    import hashlib

    job_a, body_a = _job_body()
    job_b, body_b = _job_body()
    assert len(body_a) == len(body_b)
    md5 = base64.b64encode(hashlib.md5(body_a).digest()).decode()

    class SwapBody(SansIOHTTPPolicy):  # type: ignore[misc]
        def on_request(self, request: PipelineRequest) -> None:
            request.http_request.set_bytes_body(body_b)

    status, err, _ = raw.send("POST", "/jobs", body_a, headers={"Content-MD5": md5}, tamper=SwapBody())
    assert status == 400 and err is not None and err["code"] == "Md5Mismatch"
    assert raw.send("GET", f"/jobs/{job_b}")[0] == 404
    assert raw.send("POST", "/jobs", body_a, headers={"Content-MD5": md5})[0] == 201
    assert raw.send("GET", f"/jobs/{job_a}")[0] == 200
