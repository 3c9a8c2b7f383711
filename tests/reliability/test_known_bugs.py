"""Regression tests for the localbatch bugs the fuzzing found (see test_fuzz_routes.py).

Each was reported with this repro (REL-3..REL-5) and fixed in localbatch; the
fuzzing strategies now generate these inputs again too.
"""

from __future__ import annotations

import pytest

from tests.conftest import LocalBatch
from tests.reliability.conftest import FinishedTask, assert_batch_error, batch_client, finished_task, signed


@pytest.fixture(scope="module")
def done(localbatch: LocalBatch) -> FinishedTask:
    return finished_task(batch_client(localbatch), "bug")


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000])
def test_deeply_nested_json_is_a_400(localbatch: LocalBatch, body: bytes) -> None:
    resp = signed(localbatch, "POST", "/jobs", body=body)
    err = assert_batch_error(resp, "POST")
    assert resp.status == 400 and err is not None


@pytest.mark.parametrize("path", ["/pools/x%0Ay", "/jobs/%0A/tasks"])
def test_newline_in_path_gets_batch_error(localbatch: LocalBatch, path: str) -> None:
    resp = signed(localbatch, "GET", path)
    err = assert_batch_error(resp, "GET")
    assert resp.status == 404 and err is not None


@pytest.mark.parametrize("kind", ["task", "node"])
def test_nul_in_file_path_is_not_a_500(localbatch: LocalBatch, done: FinishedTask, kind: str) -> None:
    pool_id, node_id, job_id, task_id = done.pool_id, done.node_id, done.job_id, done.task_id
    base = (
        f"/jobs/{job_id}/tasks/{task_id}/files"
        if kind == "task"
        else f"/pools/{pool_id}/nodes/{node_id}/files"
    )
    for name in ("%00", "a%00b"):
        resp = signed(localbatch, "GET", f"{base}/{name}")
        err = assert_batch_error(resp, "GET")
        assert 400 <= resp.status < 500 and err is not None
