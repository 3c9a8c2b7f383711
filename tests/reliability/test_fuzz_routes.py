"""Property-based fuzzing of every route localbatch serves: never a 5xx, always Batch's error body.

Routes come from the installed SDK itself (every ``build_*_request`` in
``azure/batch/_operations/_operations.py``: its method and URL template), so a
route the SDK can call is a route fuzzed here, whether localbatch implements it
or not. Requests are sent byte for byte with ``http.client`` and signed by the
SDK's ``BatchSharedKeyAuthPolicy`` (so they reach the handlers), or left
unsigned / badly signed (then they must be refused with 403, before any handler).

For every response: the status is below 500, a 4xx carries Batch's error body
(``code``, ``message.lang``, ``message.value``), and the server still answers
``GET /pools`` when each test ends. Destructive verbs (DELETE, terminate) only
get random ids; the fuzz pool, job and task are dedicated to this module and
everything the fuzzing created (ids start with ``fz-``) is deleted afterwards.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import azure.batch
import pytest
from azure.batch import BatchClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import LocalBatch
from tests.reliability.conftest import (
    API_VERSION,
    FinishedTask,
    RawResponse,
    assert_batch_error,
    assert_serving,
    batch_client,
    build,
    finished_task,
    send,
    sign,
    signed,
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)
# Valid HTTP methods, including ones Batch does not use. A request that is not HTTP at all (an
# unknown method token, a request line over 8 KiB) is refused by the HTTP parser before any
# application code, with its own plain 400, as every HTTP front end does; it is out of scope here.
HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "HEAD", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "MKCOL"]
MAX_TARGET = 8000
PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    """One SDK operation: HTTP method and URL template such as ``/jobs/{jobId}/tasks/{taskId}``."""

    method: str
    template: str

    @property
    def destructive(self) -> bool:
        return self.method == "DELETE" or self.template.endswith("/terminate") or "remove" in self.template

    @property
    def has_body(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH"}


@cache
def sdk_routes() -> tuple[Route, ...]:
    """Every (method, URL template) the installed SDK can send."""
    source = Path(azure.batch.__file__).parent / "_operations" / "_operations.py"
    routes: set[Route] = set()
    for block in source.read_text().split("\ndef build_")[1:]:
        url = re.search(r'_url = "([^"]+)"', block)
        method = re.search(r'HttpRequest\(method="(\w+)"', block)
        if url and method:
            routes.add(Route(method.group(1), url.group(1)))
    assert len(routes) > 40, routes
    return tuple(sorted(routes, key=lambda r: (r.template, r.method)))


def known(t: FinishedTask, placeholder: str) -> str:
    """A real id for a URL placeholder (the fuzz pool, node, job, completed task, a task file)."""
    return {
        "poolId": t.pool_id,
        "nodeId": t.node_id,
        "jobId": t.job_id,
        "taskId": t.task_id,
        "filePath": "stdout.txt",
    }.get(placeholder, "x")


@pytest.fixture(scope="module")
def client(localbatch: LocalBatch) -> BatchClient:
    return batch_client(localbatch)


@pytest.fixture(scope="module")
def targets(localbatch: LocalBatch, client: BatchClient) -> Iterator[FinishedTask]:
    """Real resources the fuzzing may address (never deleted or terminated by it)."""
    t = finished_task(client, "fz")
    pool_id, job_id = t.pool_id, t.job_id
    yield t
    # The fuzz resources survived the fuzzing; then everything is removed.
    assert client.get_job(job_id).id == job_id
    assert client.get_pool(pool_id).id == pool_id
    assert_serving(localbatch)
    for job in client.list_jobs():
        if job.id == job_id or job.id.startswith("fz-"):
            client.begin_delete_job(job.id, polling_interval=1).result()
    for pool in client.list_pools():
        if pool.id == pool_id or pool.id.startswith("fz-"):
            client.begin_delete_pool(pool.id, polling_interval=1).result()


# ---------------------------------------------------------------------------- strategies

_printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
_unicode = st.characters(exclude_categories=["Cs"])

NEST_DEPTHS = [100, 5000, 200_000]


# One path segment, already percent-encoded as it goes on the wire.
junk_segment = st.one_of(
    st.text(_unicode, max_size=40).map(lambda s: quote(s, safe="")),
    st.text(_unicode, min_size=100, max_size=300).map(lambda s: quote(s, safe="")),  # very long
    st.sampled_from(
        [
            "..",
            ".",
            "%2e%2e",
            "a%2Fb",
            "%00",
            "%ZZ",
            "%",
            "%FF%FE",
            "%C3%28",
            "$metadata",
            "'",
            "(",
            "%3B",  # a raw ";" is cut from the signed path by the SDK's urlparse; the SDK always sends %3B
            "*",
            "nodes",
            "tasks",
            "files",
            "x" * 1024,
            "%E2%80%AE",
            "%20",
            "%0D",
            "%09",
            "%0B%0C%1C%1D%1E%85",
        ]
    ),
)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


def _json_type(value: Any) -> str:
    return type(value).__name__ if not isinstance(value, bool) else "bool"


def _valid_bodies(t: FinishedTask) -> dict[str, dict[str, Any]]:
    """A valid body per body-carrying route suffix; mutations start from these."""
    return {
        "/pools": {
            "id": "fz-",
            "vmSize": "standard_d2s_v5",
            "targetDedicatedNodes": 0,
            "taskSlotsPerNode": 1,
        },
        "/jobs": {"id": "fz-", "poolInfo": {"poolId": t.pool_id}, "priority": 0},
        "tasks": {"id": "fz-", "commandLine": "/bin/true", "constraints": {"maxTaskRetryCount": 0}},
        "addtaskcollection": {"value": [{"id": "fz-", "commandLine": "/bin/true"}]},
        "resize": {"targetDedicatedNodes": 1},
        "terminate": {"terminateReason": "fuzz"},
        "pool": {"startTask": {"commandLine": "/bin/true"}},
        "job": {"priority": 1},
        "task": {"constraints": {"maxTaskRetryCount": 1}},
    }


def _body_key(template: str) -> str:
    tail = template.rsplit("/", 1)[-1]
    if template in ("/pools", "/jobs"):
        return template
    if tail in ("{poolId}",):
        return "pool"
    if tail in ("{jobId}",):
        return "job"
    if tail in ("{taskId}",):
        return "task"
    return tail if tail in ("tasks", "addtaskcollection", "resize", "terminate") else "job"


@st.composite
def mutated_body(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A valid body with one thing wrong: a value of another JSON type, a key dropped, or an extra key.

    Replacement values always have another JSON type than the original, so a
    command line never becomes some other string and a node count never another number.
    """
    body = json.loads(json.dumps(base))
    if "id" in body:
        body["id"] = "fz-" + draw(st.uuids()).hex
    if "value" in body:
        body["value"][0]["id"] = "fz-" + draw(st.uuids()).hex
    target = body["value"][0] if "value" in body and draw(st.booleans()) else body
    key = draw(st.sampled_from(sorted(target)))
    action = draw(st.sampled_from(["retype", "drop", "extra"]))
    if action == "retype":
        original = _json_type(target[key])
        target[key] = draw(json_value.filter(lambda v: _json_type(v) != original))
    elif action == "drop":
        del target[key]
    else:
        target[draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in target))] = draw(json_value)
    return body


def bodies(t: FinishedTask, template: str) -> st.SearchStrategy[bytes]:
    base = _valid_bodies(t)[_body_key(template)]
    return st.one_of(
        mutated_body(base).map(lambda b: json.dumps(b).encode()),
        json_value.map(lambda v: json.dumps(v).encode()),  # mostly not an object, or the wrong object
        st.binary(max_size=200),  # not JSON, often invalid UTF-8
        st.text(max_size=200).map(str.encode),
        st.sampled_from(
            [
                b"",
                b"{",
                b"null",
                b"[]",
                b'"x"',
                b"1e999",
                b"NaN",
                b'{"id": "\xff\xfe"}',
                b'{"id": 1, "id": 2}',
                b"\xef\xbb\xbf{}",
                b'{"value": null}',
                b'{"value": [null]}',
                b'{"value": "x"}',
                b'{"value": [' + b",".join([b'{"id":"fz-many","commandLine":"/bin/true"}'] * 101) + b"]}",
            ]
        ),
        st.sampled_from(NEST_DEPTHS).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
        st.sampled_from(NEST_DEPTHS).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.sampled_from([70_000, 1_100_000]).map(lambda n: json.dumps({"id": "fz-" + "h" * n}).encode()),
    )


def fill(template: str, segment: st.SearchStrategy[str], t: FinishedTask | None, draw: st.DrawFn) -> str:
    """The template with each placeholder replaced by a known id (when ``t`` is given) or by junk."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if t is not None and draw(st.integers(0, 3)) > 0:
            return quote(known(t, name), safe="")
        if name == "filePath":
            return "/".join(draw(st.lists(segment, min_size=1, max_size=3)))
        return draw(segment)

    return PLACEHOLDER.sub(one, template)


query_value = st.one_of(
    st.text(_unicode, max_size=60),
    st.sampled_from(
        [
            "",
            "-1",
            "0",
            "1",
            "1001",
            "abc",
            "99999999999999999999",
            "1.5",
            " 1",
            "state eq",
            "(((",
            "id eq 'x' and",
            "state eq 'running' or or",
            "startswith(id,'a'",
            "id eq ''''",
            "executionInfo/exitCode gt 'x'",
            "id,,state",
            "*",
            "$",
            "'" * 50,
            "x" * 2000,
            "%ZZ",
        ]
    ),
)
query_name = st.sampled_from(
    ["$filter", "$select", "$expand", "maxresults", "$skiptoken", "timeout", "api-version", "x", "$top", ""]
)


def _sendable_raw(value: str) -> bool:
    return all(0x21 <= ord(c) <= 0x7E for c in value) and "#" not in value


@st.composite
def queries(draw: st.DrawFn) -> str:
    parts: list[str] = []
    version = draw(st.sampled_from([API_VERSION, API_VERSION, None, "", "2099-01-01.99.0", "latest"]))
    if version is not None:
        parts.append(f"api-version={quote(version)}")
    for name, value in draw(st.lists(st.tuples(query_name, query_value), max_size=4)):
        raw = draw(st.booleans())  # sometimes sent without encoding, as a careless client would
        parts.append(
            f"{quote(name, safe='$')}={value if raw and _sendable_raw(value) else quote(value, safe='')}"
        )
    return "&".join(parts)


header_value = st.text(_printable, max_size=80).map(str.strip)
header = st.one_of(
    st.tuples(
        st.text(string.ascii_lowercase + "-", min_size=1, max_size=20).map(lambda s: "ocp-" + s), header_value
    ),
    st.tuples(
        st.sampled_from(
            [
                "If-Match",
                "If-None-Match",
                "If-Modified-Since",
                "If-Unmodified-Since",
                "Range",
                "client-request-id",
                "return-client-request-id",
                "Accept",
                "Content-Type",
                "Content-Encoding",
                "Content-Language",
                "Transfer-Encoding-Junk",
                "X-Forwarded-For",
                "Prefer",
            ]
        ),
        st.one_of(
            header_value, st.sampled_from(["*", "bytes=5-1", "bytes=-0", "bytes=0-", '"x"', "true", "gzip"])
        ),
    ),
)


def _check(resp_method: str, resp: RawResponse) -> None:
    """A validly signed request: Batch's contract, and it got past authentication.

    The second check keeps the fuzzing honest: were the signing wrong, every
    request would stop at a 403 before any handler and the fuzzing would test nothing.
    """
    err = assert_batch_error(resp, resp_method)
    assert resp.status not in (401, 403), (resp.status, err)


def _get_routes() -> list[Route]:
    return [r for r in sdk_routes() if r.method in ("GET", "HEAD")]


def _body_routes() -> list[Route]:
    return [r for r in sdk_routes() if r.has_body]


# ---------------------------------------------------------------------------- tests


@FUZZ
@given(data=st.data())
def test_fuzz_bodies(localbatch: LocalBatch, targets: FinishedTask, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(_body_routes()))
    path = data.draw(
        st.composite(
            lambda draw: fill(route.template, junk_segment, None if route.destructive else targets, draw)
        )()
    )
    body = data.draw(bodies(targets, route.template))
    assume(len(path) < MAX_TARGET)
    content_type = data.draw(
        st.sampled_from(
            ["application/json; odata=minimalmetadata; charset=utf-8", "application/json", "text/plain", ""]
        )
    )
    headers = [("Content-Type", content_type)] if content_type else []
    _check(route.method, signed(localbatch, route.method, path, headers=headers, body=body))


@FUZZ
@given(data=st.data())
def test_fuzz_queries(localbatch: LocalBatch, targets: FinishedTask, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(_get_routes()))
    path = data.draw(st.composite(lambda draw: fill(route.template, junk_segment, targets, draw))())
    query = data.draw(queries())
    assume(len(path) + len(query) < MAX_TARGET)
    _check(route.method, signed(localbatch, route.method, path, query=query))


@FUZZ
@given(data=st.data())
def test_fuzz_ids_and_methods(localbatch: LocalBatch, targets: FinishedTask, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(sdk_routes()))
    method = data.draw(st.one_of(st.just(route.method), st.sampled_from(HTTP_METHODS)))
    path = data.draw(st.composite(lambda draw: fill(route.template, junk_segment, None, draw))())
    suffix = data.draw(st.sampled_from(["", "/", "//", "/extra", "/$value"]))
    assume(len(path) + len(suffix) < MAX_TARGET)
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    _check(method, signed(localbatch, method, path + suffix, body=body))


@FUZZ
@given(data=st.data())
def test_fuzz_headers(localbatch: LocalBatch, targets: FinishedTask, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(_get_routes()))
    path = data.draw(st.composite(lambda draw: fill(route.template, junk_segment, targets, draw))())
    assume(len(path) < MAX_TARGET)
    headers = data.draw(st.lists(header, max_size=4, unique_by=lambda h: h[0].lower()))
    resp = signed(localbatch, route.method, path, headers=headers)
    _check(route.method, resp)
    echoed = dict(headers).get("client-request-id")
    if resp.status < 400 and echoed and dict(headers).get("return-client-request-id", "").lower() == "true":
        assert resp.headers.get("client-request-id") == echoed


@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_fuzz_unsigned_is_refused(localbatch: LocalBatch, targets: FinishedTask, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(sdk_routes()))
    path = data.draw(st.composite(lambda draw: fill(route.template, junk_segment, targets, draw))())
    body = data.draw(bodies(targets, route.template)) if route.has_body else None
    query = data.draw(queries())
    assume(len(path) + len(query) < MAX_TARGET)
    request = build(localbatch, route.method, path, query=query, body=body)
    auth = data.draw(
        st.one_of(
            st.none(),
            st.just("sign-other-key"),
            header_value,
            st.builds(
                lambda a, s: f"SharedKey {a}:{s}",
                st.sampled_from([localbatch.account_name, "x", ""]),
                header_value,
            ),
        )
    )
    if auth == "sign-other-key":
        sign(request, localbatch.account_name, "a2V5" * 22)
    else:
        sign(request, localbatch.account_name, localbatch.account_key)  # for ocp-date; then replaced
        if auth is None:
            del request.headers["Authorization"]
        else:
            request.headers["Authorization"] = auth
    resp = send(localbatch, request)
    err = assert_batch_error(resp, route.method)
    assert resp.status in (401, 403), resp
    if err is not None:
        assert err["code"] == "AuthenticationFailed"


def test_server_still_serving(localbatch: LocalBatch, targets: FinishedTask) -> None:
    """Runs after the fuzzing (file order): the server answers and the fuzz resources are intact."""
    assert_serving(localbatch)
    assert signed(localbatch, "GET", f"/jobs/{targets.job_id}/tasks/{targets.task_id}").status == 200
