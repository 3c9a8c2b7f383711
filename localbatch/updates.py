"""PATCH merges, PUT replaces: the two update semantics of Batch's resources, for any resource.

A PATCH body changes the properties it gives and leaves the others as they
are; a PUT body (replace job, replace job schedule, update pool properties)
"fully replaces all the updatable properties": one it leaves out is reset to
its default (e.g. a job's ``constraints`` go back to no limits). So a PUT is
handled as the PATCH :func:`replacement` makes of it, through the same code.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from localbatch.errors import BatchError
from localbatch.models import MAX_WALL_CLOCK_DEFAULT, validate_pool

# A job's updatable properties (replace job, 2025-06-01) and the value each takes when left out.
JOB_DEFAULTS: dict[str, Any] = {
    "priority": 0,
    "allowTaskPreemption": False,
    "maxParallelTasks": -1,
    "onAllTasksComplete": "noaction",
    "metadata": [],
    "constraints": {"maxWallClockTime": MAX_WALL_CLOCK_DEFAULT, "maxTaskRetryCount": 0},
}


def replacement(body: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with every updatable property it leaves out (or sends as null) set to its default.

    A default that is an object is also the base of a given object (``constraints``
    with only ``maxTaskRetryCount`` resets ``maxWallClockTime``). ``body`` is not changed.
    """
    out = dict(body)
    for key, default in defaults.items():
        given = out.get(key)
        if given is None:
            out[key] = copy.deepcopy(default)
        elif isinstance(default, dict) and isinstance(given, dict):
            out[key] = {**copy.deepcopy(default), **given}
    return out


# A pool's PATCH: properties it may always change, and those it may change only while it has no node.
POOL_ANYTIME = ("startTask", "metadata", "applicationPackageReferences")
POOL_WHEN_EMPTY = (
    "displayName",
    "vmSize",
    "enableInterNodeCommunication",
    "virtualMachineConfiguration",
    "taskSlotsPerNode",
    "taskSchedulingPolicy",
    "networkConfiguration",
    "userAccounts",
    "mountConfiguration",
    "upgradePolicy",
)


def merge_pool(pool: dict[str, Any], patch: Mapping[str, Any], empty: bool, max_nodes: int) -> None:
    """Apply a pool PATCH to ``pool``: what it gives (not null) replaces, the rest stays.

    Values are validated as on create first (nothing changes on an error); a property of
    :data:`POOL_WHEN_EMPTY` on a pool with nodes (``empty`` False) is 400
    ``PropertyCannotBeUpdated`` naming it ("This field can be updated only when the pool is empty").
    """
    given = {k: patch[k] for k in (*POOL_ANYTIME, *POOL_WHEN_EMPTY) if patch.get(k) is not None}
    busy = [k for k in POOL_WHEN_EMPTY if k in given]
    if busy and not empty:
        raise BatchError(
            400,
            "PropertyCannotBeUpdated",
            "A property that cannot be updated was specified as part of the request.",
            [("PropertyName", busy[0]), ("Reason", "This field can be updated only when the pool is empty.")],
        )
    probe = validate_pool({"id": pool["id"], "vmSize": pool["vmSize"], **given}, max_nodes)
    pool.update({k: probe[k] for k in given})
