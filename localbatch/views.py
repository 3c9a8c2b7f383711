"""Rendering of stored state into Batch's JSON shapes (GET bodies).

Internal document keys start with ``_`` and never leave the service.
``base`` is the URL the client used (``http://host:port``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from localbatch import node_identity
from localbatch.models import task_constraints
from localbatch.store import TaskRow


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def pool_view(base: str, doc: dict[str, Any], dedicated: int, low_priority: int) -> dict[str, Any]:
    out = {"odata.metadata": f"{base}/$metadata#pools/@Element", **public(doc)}
    out["url"] = f"{base}/pools/{quote(doc['id'])}"
    out["currentDedicatedNodes"] = dedicated
    out["currentLowPriorityNodes"] = low_priority
    identity = node_identity.pool_identity()  # set by the management plane on Azure: `serve --pool-identity`
    if identity is not None:
        out["identity"] = identity
    return out


def job_view(base: str, doc: dict[str, Any]) -> dict[str, Any]:
    out = {"odata.metadata": f"{base}/$metadata#jobs/@Element", **public(doc)}
    out["url"] = f"{base}/jobs/{quote(doc['id'])}"
    return out


def task_url(base: str, job_id: str, task_id: str) -> str:
    # Job and task ids are validated ([A-Za-z0-9_-]): nothing to quote.
    return f"{base}/jobs/{job_id}/tasks/{task_id}"


def task_view(base: str, row: TaskRow, job: dict[str, Any], pool_id: str) -> dict[str, Any]:
    spec = row.spec_json()
    out: dict[str, Any] = {"odata.metadata": f"{base}/$metadata#tasks/@Element"}
    out.update(spec)
    out["url"] = task_url(base, job["id"], row.task_id)
    out["eTag"] = row.etag
    out["lastModified"] = row.last_modified
    out["creationTime"] = row.creation_time
    out["state"] = row.state
    out["stateTransitionTime"] = row.state_time
    if row.prev_state:
        out["previousState"] = row.prev_state
        out["previousStateTransitionTime"] = row.prev_state_time
    out["constraints"] = task_constraints(spec, job)
    out["requiredSlots"] = row.slots
    info: dict[str, Any] = {"retryCount": row.retry_count, "requeueCount": row.requeue_count}
    if row.start_time:
        info["startTime"] = row.start_time
    if row.end_time:
        info["endTime"] = row.end_time
    if row.exit_code is not None:
        info["exitCode"] = row.exit_code
    if row.result:
        info["result"] = row.result
    if row.failure:
        info["failureInfo"] = json.loads(row.failure)
    if row.last_retry_time:
        info["lastRetryTime"] = row.last_retry_time
    if row.last_requeue_time:
        info["lastRequeueTime"] = row.last_requeue_time
    out["executionInfo"] = info
    if row.node_id:
        rel = f"workitems/{job['id']}/job-1/{row.task_id}"
        node_url = f"{base}/pools/{quote(pool_id)}/nodes/{row.node_id}"
        out["nodeInfo"] = {
            "affinityId": f"TVM:{row.node_id}",
            "nodeUrl": node_url,
            "poolId": pool_id,
            "nodeId": row.node_id,
            "taskRootDirectory": rel,
            "taskRootDirectoryUrl": f"{node_url}/files/{rel}",
        }
    return out
