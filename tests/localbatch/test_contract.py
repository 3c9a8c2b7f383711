"""The contract check itself: derived from the installed SDK, it catches each kind of violation.

Each violation kind is proven on a response localbatch really sent (captured
through the official SDK's raw-response hook), altered in one place; the
unaltered responses pass. The last test runs the middleware in a real aiohttp
server and reads the violation log it writes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from aiohttp import ClientSession, web
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline import PipelineResponse
from multidict import CIMultiDict

from localbatch.contract import middleware
from localbatch.contract.check import Exchange, check_response
from localbatch.contract.spec import Contract, load
from tests import contract_allowlist
from tests.localbatch.conftest import new_job, unique, wait_task_completed


@pytest.fixture(scope="module")
def contract() -> Contract:
    return load()


Capture = Callable[..., Any]


def captured(call: Capture, *args: Any, **kwargs: Any) -> Exchange:
    """Run one SDK call and return its (last) request and response as the checker sees them."""
    seen: list[PipelineResponse] = []
    with contextlib.suppress(ResourceNotFoundError):  # a 404 is a response to check too
        call(*args, raw_response_hook=seen.append, **kwargs)
    assert seen, "the SDK made no request"
    req, resp = seen[-1].http_request, seen[-1].http_response
    url = urlsplit(req.url)
    return Exchange(
        method=req.method,
        raw_path=url.path,
        request_headers=CIMultiDict(req.headers),
        status=resp.status_code,
        headers=CIMultiDict(resp.headers),
        body=resp.body(),
        query=url.query,
    )


def with_body(ex: Exchange, doc: Any) -> Exchange:
    return Exchange(
        ex.method, ex.raw_path, ex.request_headers, ex.status, ex.headers, json.dumps(doc).encode(), ex.query
    )


def without_header(ex: Exchange, name: str) -> Exchange:
    headers = CIMultiDict(ex.headers)
    headers.popall(name, None)
    return Exchange(ex.method, ex.raw_path, ex.request_headers, ex.status, headers, ex.body, ex.query)


def problems(contract: Contract, ex: Exchange) -> list[str]:
    return [v.problem for v in check_response(contract, ex)]


@pytest.fixture(scope="module")
def finished_task(client: BatchClient, shared_pool: str) -> tuple[str, str]:
    job_id = new_job(client, shared_pool)
    client.create_task(job_id, bm.BatchTaskCreateOptions(id="t1", command_line="/bin/sh -c 'echo hi'"))
    wait_task_completed(client, job_id, "t1")
    return job_id, "t1"


def test_contract_is_derived_from_the_installed_sdk(contract: Contract) -> None:
    assert len(contract.operations) == 72
    length = contract.models["FileProperties"]["contentLength"]
    assert (length.type.kind, length.format, length.required) == ("int", "str", True)
    assert {"active", "deleting"} <= contract.enums["BatchPoolState"]
    op = contract.match("GET", "/pools/p1")
    assert op is not None and op.name == "get_pool" and op.statuses == (200,)
    assert {"ETag", "Last-Modified", "request-id", "client-request-id"} <= set(op.headers)
    files = contract.match("HEAD", "/jobs/j/tasks/t/files/wd/a%2Fb.txt")
    assert files is not None and files.name == "get_task_file_properties"
    assert contract.match("POST", "/jobs/j/tasks/t/terminate").name == "terminate_task"  # type: ignore[union-attr]
    # Empty segments are dropped, as localbatch's router drops them: `files//` is the listing.
    listing = contract.match("GET", "/pools/p/nodes/n/files//")
    assert listing is not None and listing.name == "list_node_files"


def test_real_responses_pass(
    contract: Contract, client: BatchClient, shared_pool: str, finished_task: tuple[str, str]
) -> None:
    job_id, task_id = finished_task
    exchanges = [
        captured(client.get_pool, shared_pool),
        captured(client.get_task, job_id, task_id),
        captured(lambda **kw: list(client.list_task_files(job_id, task_id, recursive=True, **kw))),
        captured(client.get_task_file_properties, job_id, task_id, "stdout.txt"),
        captured(client.get_pool, unique("missing")),
    ]
    assert [e.status for e in exchanges] == [200, 200, 200, 200, 404]
    for ex in exchanges:
        assert problems(contract, ex) == [], ex.raw_path


def test_wrong_property_type(contract: Contract, client: BatchClient, finished_task: tuple[str, str]) -> None:
    job_id, task_id = finished_task
    ex = captured(lambda **kw: list(client.list_task_files(job_id, task_id, recursive=True, **kw)))
    doc = json.loads(ex.body or b"")
    files = [f for f in doc["value"] if not f["isDirectory"]]
    assert files and isinstance(files[0]["properties"]["contentLength"], str)
    files[0]["properties"]["contentLength"] = int(files[0]["properties"]["contentLength"])
    found = problems(contract, with_body(ex, doc))
    assert len(found) == 1 and "contentLength is a number, expected an integer as a string" in found[0]


def test_unknown_property_and_annotations(contract: Contract, client: BatchClient, shared_pool: str) -> None:
    ex = captured(client.get_pool, shared_pool)
    doc = json.loads(ex.body or b"")
    assert (
        problems(contract, with_body(ex, {**doc, "odata.metadata": "https://x/$metadata#pools/@Element"}))
        == []
    )
    found = problems(contract, with_body(ex, {**doc, "targetDedicated": 2}))
    assert found == ["$.targetDedicated: unknown property of BatchPool"]


def test_bad_enum_value(contract: Contract, client: BatchClient, shared_pool: str) -> None:
    ex = captured(client.get_pool, shared_pool)
    doc = json.loads(ex.body or b"")
    found = problems(contract, with_body(ex, {**doc, "allocationState": "growing"}))
    assert found == ["$.allocationState: 'growing' is not a value of enum AllocationState"]


@pytest.mark.parametrize("header", ["ETag", "Last-Modified", "request-id", "DataServiceId"])
def test_missing_declared_header(
    contract: Contract, client: BatchClient, finished_task: tuple[str, str], header: str
) -> None:
    ex = captured(client.get_task, *finished_task)
    assert header in ex.headers
    assert problems(contract, without_header(ex, header)) == [f"header {header} is missing"]


@pytest.mark.parametrize(
    "header", ["ocp-creation-time", "ocp-batch-file-isdirectory", "ocp-batch-file-url", "ocp-batch-file-mode"]
)
def test_missing_file_header(
    contract: Contract, client: BatchClient, finished_task: tuple[str, str], header: str
) -> None:
    ex = captured(client.get_task_file_properties, *finished_task, "stdout.txt")
    assert problems(contract, without_header(ex, header)) == [f"header {header} is missing"]


def test_client_request_id_echo(contract: Contract, client: BatchClient, shared_pool: str) -> None:
    ex = captured(client.get_pool, shared_pool)
    asked = CIMultiDict(ex.request_headers)
    asked["client-request-id"] = "7d5a7c7e-0000-4000-8000-000000000001"
    asked["return-client-request-id"] = "true"
    plain = without_header(ex, "client-request-id")
    echo = Exchange(ex.method, ex.raw_path, asked, ex.status, plain.headers, ex.body, ex.query)
    assert problems(contract, echo) == [
        "header client-request-id is not echoed although return-client-request-id was true"
    ]


def test_undeclared_status_code(contract: Contract, client: BatchClient, shared_pool: str) -> None:
    ex = captured(client.get_pool, shared_pool)
    created = Exchange(ex.method, ex.raw_path, ex.request_headers, 201, ex.headers, ex.body, ex.query)
    assert problems(contract, created) == ["status 201 is not one the spec declares (200)"]
    unconditional = Exchange(ex.method, ex.raw_path, ex.request_headers, 304, ex.headers, b"", ex.query)
    assert "304 Not Modified" in problems(contract, unconditional)[0]


def test_error_body_must_be_batch_error(contract: Contract, client: BatchClient) -> None:
    ex = captured(client.get_pool, unique("missing"))
    doc = json.loads(ex.body or b"")
    assert doc["code"] == "PoolNotFound"
    doc["message"] = "not found"
    doc["values"] = [{"name": "PoolId"}]
    assert problems(contract, with_body(ex, doc)) == [
        "$.message is a string, expected an object (BatchErrorMessage)",
        "$.values[0].name: unknown property of BatchErrorDetail",
    ]


def test_middleware_logs_violations_without_header_values(tmp_path: Path) -> None:
    """A real aiohttp server with the middleware: a bad response yields JSON lines, no secret in them."""
    secret = "sig=" + quote(base64.b64encode(os.urandom(24)).decode())  # made here: none is committed
    log_file = tmp_path / "violations.jsonl"

    async def bad_pool(request: web.Request) -> web.Response:
        body = {"id": "p1", "state": "melting", "url": f"https://x/?{secret}"}
        return web.json_response(body, status=200, headers={"ETag": secret})

    async def scenario() -> list[dict[str, Any]]:
        app = web.Application()
        app.router.add_get("/pools/{pool}", bad_pool)
        middleware.install(app, log_file)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            url = f"http://127.0.0.1:{port}/pools/p1?api-version=2025-06-01"
            async with ClientSession() as session, session.get(url) as resp:
                assert resp.status == 200
        finally:
            await runner.cleanup()
        return [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]

    lines = asyncio.run(scenario())
    assert {v["operation"] for v in lines} == {"get_pool"}
    assert {v["status"] for v in lines} == {200}
    found = {v["problem"] for v in lines}
    assert "$.state: 'melting' is not a value of enum BatchPoolState" in found
    assert "header request-id is missing" in found and "header Last-Modified is missing" in found
    assert secret not in log_file.read_text(encoding="utf-8")


def test_allowlist_tolerates_only_listed_violations() -> None:
    listed = {
        "operation": "list_nodes",
        "problem": "$.value[0].ipv6Address: required property of BatchNode is missing",
    }
    other = {
        "operation": "list_nodes",
        "problem": "$.value[0].state: 'melting' is not a value of enum BatchNodeState",
    }
    assert contract_allowlist.allowed(listed)
    assert not contract_allowlist.allowed(other)
    assert not contract_allowlist.allowed({**listed, "operation": "list_pools"})


def test_check_is_not_loaded_when_off() -> None:
    """Zero cost when off: serving without --check-contract never imports the checker."""
    code = "import sys, localbatch.cli, localbatch.server; sys.exit('localbatch.contract' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_checker_failure_is_a_violation_not_a_changed_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the checker itself breaks, the client still gets the handler's answer, and the log says so."""
    log_file = tmp_path / "violations.jsonl"

    def broken(*_args: object) -> list[object]:
        raise KeyError("a checker bug")

    monkeypatch.setattr(middleware, "check_response", broken)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"id": "p1"})

    async def scenario() -> tuple[int, dict[str, Any]]:
        app = web.Application()
        app.router.add_get("/pools/{pool}", ok)
        middleware.install(app, log_file)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/pools/p1"
        try:
            async with ClientSession() as session, session.get(url) as resp:
                return resp.status, await resp.json()
        finally:
            await runner.cleanup()

    status, body = asyncio.run(scenario())
    assert (status, body) == (200, {"id": "p1"})
    [line] = [json.loads(x) for x in log_file.read_text(encoding="utf-8").splitlines()]
    assert line["problem"].startswith("the contract checker failed (KeyError)")


def test_violation_escapes_control_characters_in_the_path(contract: Contract) -> None:
    ex = Exchange("GET", "/pools/a\nFAKE LOG LINE\x1b[31m", CIMultiDict(), 200, CIMultiDict(), b"")
    violations = check_response(contract, ex)
    assert "header request-id is missing" in [v.problem for v in violations]
    assert {v.path for v in violations} == {"/pools/a\\x0aFAKE LOG LINE\\x1b[31m"}
