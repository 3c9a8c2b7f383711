"""Fixtures for localbatch tests: SDK clients against the session servers, and helpers.

Every test uses its own ids (``unique()``), so tests never see each other's
pools, jobs or tasks on the shared session server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import (
    BlobServiceClient,
    ContainerSasPermissions,
    generate_container_sas,
)

from tests.conftest import Azurite, LocalBatch

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(fn: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll ``fn`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def batch_client(server: LocalBatch, **kwargs: object) -> BatchClient:
    return BatchClient(server.url, AzureNamedKeyCredential(server.account_name, server.account_key), **kwargs)


@pytest.fixture(scope="session")
def client(localbatch: LocalBatch) -> BatchClient:
    return batch_client(localbatch)


@pytest.fixture(scope="session")
def blobs(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def container_sas_url(azurite: Azurite, container: str, **perms: bool) -> str:
    sas = generate_container_sas(
        azurite.account_name,
        container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(**perms),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    return f"{azurite.blob_endpoint}/{container}?{sas}"


def wait_nodes_idle(
    client: BatchClient, pool_id: str, count: int, timeout: float = 30.0
) -> list[bm.BatchNode]:
    def ready() -> list[bm.BatchNode] | None:
        nodes = list(client.list_nodes(pool_id))
        if len(nodes) == count and all(n.state == "idle" for n in nodes):
            return nodes
        return None

    return wait_for(ready, timeout)


def wait_task_completed(
    client: BatchClient, job_id: str, task_id: str, timeout: float = 30.0
) -> bm.BatchTask:
    return wait_for(
        lambda: t if (t := client.get_task(job_id, task_id)).state == "completed" else None, timeout
    )


@pytest.fixture(scope="session")
def shared_pool(client: BatchClient) -> Iterator[str]:
    """A pool of 2 nodes x 2 slots without a start task, for tests that only need somewhere to run."""
    pool_id = unique("lbpool")
    client.create_pool(
        bm.BatchPoolCreateOptions(
            id=pool_id, vm_size="standard_d2s_v5", target_dedicated_nodes=2, task_slots_per_node=2
        )
    )
    wait_nodes_idle(client, pool_id, 2)
    yield pool_id
    client.begin_delete_pool(pool_id, polling_interval=0.1).result()


def new_job(client: BatchClient, pool_id: str, **kwargs: object) -> str:
    job_id = unique("job")
    client.create_job(
        bm.BatchJobCreateOptions(id=job_id, pool_info=bm.BatchPoolInfo(pool_id=pool_id), **kwargs)
    )
    return job_id


class RawBatch:
    """Raw REST calls signed by the SDK's own SharedKey policy (for malformed-input and auth tests).

    ``tamper`` is a policy run after signing, to alter a request the way an attacker would.
    """

    def __init__(self, server: LocalBatch, key: str | None = None, api_version: str = "2025-06-01") -> None:
        from azure.batch._patch import BatchSharedKeyAuthPolicy

        self.server = server
        self.api_version = api_version
        self.auth = BatchSharedKeyAuthPolicy(
            AzureNamedKeyCredential(server.account_name, key or server.account_key)
        )

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        tamper: object | None = None,
        sign: bool = True,
    ) -> tuple[int, dict[str, object] | None, dict[str, str]]:
        import json

        from azure.core import PipelineClient
        from azure.core.rest import HttpRequest

        policies: list[object] = [self.auth] if sign else []
        if tamper is not None:
            policies.append(tamper)
        query = {"api-version": self.api_version, **(params or {})}
        hdrs = {"Content-Type": "application/json; odata=minimalmetadata", **(headers or {})}
        with PipelineClient(self.server.url, policies=policies) as pc:
            req = HttpRequest(method, f"{self.server.url}{path}", params=query, headers=hdrs, content=body)
            resp = pc.send_request(req)
            text = resp.read()
            parsed = (
                json.loads(text)
                if text and resp.headers.get("Content-Type", "").startswith("application/json")
                else None
            )
            return resp.status_code, parsed, dict(resp.headers)


@pytest.fixture(scope="session")
def raw(localbatch: LocalBatch) -> RawBatch:
    return RawBatch(localbatch)


@pytest.fixture(scope="session")
def hostile_job(client: BatchClient) -> str:
    """A job on a pool without nodes: tasks the fuzzers manage to add never run."""
    pool_id = unique("nodes0")
    client.create_pool(bm.BatchPoolCreateOptions(id=pool_id, vm_size="x", target_dedicated_nodes=0))
    return new_job(client, pool_id, uses_task_dependencies=True)
