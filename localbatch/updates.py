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

from localbatch.models import MAX_WALL_CLOCK_DEFAULT

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
