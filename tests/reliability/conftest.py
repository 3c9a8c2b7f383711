"""Helpers for reliability and security tests: raw HTTP requests signed by the SDK itself.

Malformed traffic cannot go through ``BatchClient`` (it validates and serializes),
so these tests build an ``azure.core`` ``HttpRequest``, sign it with the SDK's own
``BatchSharedKeyAuthPolicy`` (never a re-implementation of the signing), and send the
exact bytes with ``http.client``. Every response is checked against Batch's contract:
never a 5xx, and a 4xx carries Batch's error body.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch._patch import BatchSharedKeyAuthPolicy
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

from tests.conftest import LocalBatch
from tests.localbatch.conftest import unique, wait_for

__all__ = ["unique", "wait_for"]  # shared with tests/localbatch, re-exported for these tests

API_VERSION = "2025-06-01"


@dataclass(frozen=True)
class RawResponse:
    """What came back, undecoded."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def batch_client(server: LocalBatch, *, name: str | None = None, key: str | None = None) -> BatchClient:
    """The real SDK client, optionally with another account name or key."""
    credential = AzureNamedKeyCredential(name or server.account_name, key or server.account_key)
    return BatchClient(server.url, credential, retry_total=0)


@dataclass(frozen=True)
class FinishedTask:
    """A pool with one idle node and a job holding one completed task: real targets for file routes."""

    pool_id: str
    node_id: str
    job_id: str
    task_id: str


def finished_task(client: BatchClient, prefix: str) -> FinishedTask:
    pool_id, job_id = unique(f"{prefix}pool"), unique(f"{prefix}job")
    client.create_pool(
        bm.BatchPoolCreateOptions(id=pool_id, vm_size="standard_d2s_v5", target_dedicated_nodes=1)
    )
    node = wait_for(
        lambda: next((n for n in client.list_nodes(pool_id) if n.state == "idle"), None), timeout=30
    )
    client.create_job(bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id)))
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="done", command_line="/bin/echo done"))
    wait_for(lambda: client.get_task(job_id, "done").state == "completed", timeout=30)
    return FinishedTask(pool_id, node.id, job_id, "done")


def sign(request: HttpRequest, account_name: str, account_key: str, ocp_date: str | None = None) -> None:
    """Add ``ocp-date`` (if given) and a SharedKey ``Authorization`` computed by the SDK's policy."""
    if ocp_date is not None:
        request.headers["ocp-date"] = ocp_date
    policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential(account_name, account_key))
    policy.on_request(PipelineRequest(request, PipelineContext(None)))


def build(
    server: LocalBatch,
    method: str,
    path: str,
    *,
    query: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
) -> HttpRequest:
    """An unsigned request; ``path`` is sent as given (already percent-encoded).

    ``query`` defaults to the current api-version; pass ``""`` for none. A body gets
    its Content-Length (and a JSON Content-Type unless one is in ``headers``).
    """
    q = f"api-version={API_VERSION}" if query is None else query
    url = server.url + path + (f"?{q}" if q else "")
    request = HttpRequest(method, url, content=body)
    for name, value in headers:
        request.headers[name] = value
    if body is not None:
        if "content-type" not in {k.lower() for k in request.headers}:
            request.headers["Content-Type"] = "application/json; odata=minimalmetadata; charset=utf-8"
        request.headers["Content-Length"] = str(len(body))
    return request


def send(
    server: LocalBatch, request: HttpRequest, *, url: str | None = None, timeout: float = 30.0
) -> RawResponse:
    """Send ``request`` byte for byte (optionally to another ``url``) and read the whole answer."""
    parts = urlsplit(url or request.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    body = request.content if isinstance(request.content, bytes) else None
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.putrequest(request.method, target, skip_host=False, skip_accept_encoding=True)
        for name, value in request.headers.items():
            if name.lower() == "content-length" and body is None:
                continue
            conn.putheader(name, value)
        if body is None and request.method in {"POST", "PUT", "PATCH"}:
            conn.putheader("Content-Length", "0")
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def signed(
    server: LocalBatch,
    method: str,
    path: str,
    *,
    query: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
) -> RawResponse:
    request = build(server, method, path, query=query, headers=headers, body=body)
    sign(request, server.account_name, server.account_key)
    return send(server, request)


def assert_batch_error(resp: RawResponse, method: str) -> dict[str, Any] | None:
    """A 4xx/5xx must not be 5xx, and must carry Batch's error body (HEAD has no body)."""
    assert resp.status < 500, f"{resp.status}: {resp.body[:300]!r}"
    if resp.status < 400:
        return None
    assert "request-id" in resp.headers
    if method == "HEAD":
        return None
    err = resp.json()
    assert isinstance(err, dict), err
    assert isinstance(err.get("code"), str) and err["code"], err
    message = err.get("message")
    assert isinstance(message, dict), err
    assert message.get("lang") == "en-US", err
    assert isinstance(message.get("value"), str) and message["value"], err
    return err


def assert_serving(server: LocalBatch) -> None:
    """The server still answers a valid ``GET /pools``."""
    resp = signed(server, "GET", "/pools")
    assert resp.status == 200, resp
    assert isinstance(resp.json()["value"], list)


def rfc1123(when: datetime) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")
