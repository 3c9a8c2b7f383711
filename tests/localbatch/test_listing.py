"""Listing: maxresults paging (odata.nextLink), $filter and $select, on tasks, jobs and pools."""

from __future__ import annotations

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.exceptions import HttpResponseError

from tests.localbatch.conftest import new_job, wait_for


@pytest.fixture(scope="module")
def finished_job(client: BatchClient, shared_pool: str) -> tuple[str, dict[str, int]]:
    """A job with 250 tasks, every 7th of which fails with exit code 3."""
    job_id = new_job(client, shared_pool)
    codes = {f"t{i:04d}": (3 if i % 7 == 0 else 0) for i in range(250)}
    client.create_tasks(
        job_id,
        [bm.BatchTaskCreateOptions(id=t, command_line=f"/bin/sh -c 'exit {c}'") for t, c in codes.items()],
    )
    wait_for(lambda: client.get_job_task_counts(job_id).task_counts.completed == len(codes), timeout=60)
    return job_id, codes


def test_paging_returns_every_task_once(
    client: BatchClient, finished_job: tuple[str, dict[str, int]]
) -> None:
    job_id, codes = finished_job
    pages = list(client.list_tasks(job_id, max_results=40).by_page())
    assert len(pages) == -(-len(codes) // 40)
    ids = [t.id for page in pages for t in page]
    assert sorted(ids) == sorted(codes) and len(ids) == len(set(ids))


def test_filter_by_state_and_result(client: BatchClient, finished_job: tuple[str, dict[str, int]]) -> None:
    job_id, codes = finished_job
    failed = {
        t.id for t in client.list_tasks(job_id, filter="executionInfo/result eq 'failure'", max_results=17)
    }
    assert failed == {t for t, c in codes.items() if c != 0}
    both = {
        t.id
        for t in client.list_tasks(
            job_id, filter="state eq 'completed' and (executionInfo/exitCode eq 3 or startswith(id, 't000'))"
        )
    }
    assert both == {t for t, c in codes.items() if c == 3 or t.startswith("t000")}
    assert not list(client.list_tasks(job_id, filter="state eq 'active'"))


def test_select_projects_properties(client: BatchClient, finished_job: tuple[str, dict[str, int]]) -> None:
    job_id, _ = finished_job
    tasks = list(client.list_tasks(job_id, select=["id", "state"], max_results=100))
    assert len(tasks) == 250
    raw = tasks[0].as_dict()
    assert set(raw) == {"id", "state"}
    one = client.get_task(job_id, "t0001", select=["id", "executionInfo"])
    assert one.execution_info.exit_code == 0 and one.command_line is None


@pytest.mark.parametrize(
    "bad",
    [
        "state eq",
        "state eq 'x' and",
        "foo(bar)",
        "state === 'x'",
        "unknownProp eq 'x'",
        "id eq datetime'2020'",
    ],
)
def test_unsupported_filter_is_400(
    client: BatchClient, finished_job: tuple[str, dict[str, int]], bad: str
) -> None:
    job_id, _ = finished_job
    with pytest.raises(HttpResponseError) as err:
        list(client.list_tasks(job_id, filter=bad))
    assert err.value.status_code == 400
    assert err.value.error.code == "InvalidQueryParameterValue"


def test_jobs_and_pools_lists(client: BatchClient, shared_pool: str) -> None:
    made = [new_job(client, shared_pool) for _ in range(3)]
    pool_ids = {p.id for p in client.list_pools(filter=f"id eq '{shared_pool}'")}
    assert pool_ids == {shared_pool}
    listed = {j.id for j in client.list_jobs(max_results=1)}
    assert set(made) <= listed
    active = {j.id for j in client.list_jobs(filter="state eq 'active'")}
    assert set(made) <= active
    nodes = list(client.list_nodes(shared_pool, select=["id", "state"]))
    assert len(nodes) == 2 and all(n.state in ("idle", "running") for n in nodes)
