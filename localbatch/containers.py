"""Containers, answered honestly: localbatch has no container engine.

Batch's contract (the REST spec's ``containerSettings`` of a task): "If the Pool that will run this
Task has containerConfiguration set, this must be set as well. If the Pool that will run this Task
doesn't have containerConfiguration set, this must not be set." Batch runs such a task's command in
a container of ``imageName``. localbatch cannot, and never pretends to: a task that would need a
container (or breaks that rule) is accepted, as Batch accepts it, and then fails when it is
scheduled, the way Batch fails a container task it cannot start (no process runs, no exit code,
``result`` ``failure``, not retried: a pre-processing failure, like a resource file that cannot be
downloaded):

* ``containerSettings`` on a pool with ``containerConfiguration``: ``ContainerInvalidImage``
  (category ``usererror``, "One or more container images specified are invalid", what Batch answers
  for an image it cannot pull), the detail naming the image and saying why;
* ``containerSettings`` on a pool without ``containerConfiguration``, or none on a pool with it:
  ``ContainerInvalidSettings`` ("At least one value of specified task container settings is
  invalid"), the detail saying which rule was broken.

A registry's ``password`` is never kept (:func:`forget_registry_password`). The start task, job
manager, preparation and release tasks' ``containerSettings`` stay refused at
add (400 ``InvalidPropertyValue``, :mod:`localbatch.models`); they run on the host otherwise, as
Batch runs a start task without container settings.
"""

from __future__ import annotations

import json
from typing import Any

INVALID_IMAGE = "One or more container images specified are invalid"
INVALID_SETTINGS = "At least one value of specified task container settings is invalid"
_MAX_IMAGE_CHARS = 200


def _failure(code: str, message: str, detail: str) -> dict[str, Any]:
    details = [{"name": "Message", "value": detail}]
    return {"category": "usererror", "code": code, "message": message, "details": details}


def forget_registry_password(body: dict[str, Any], prefix: str) -> None:
    """A rule of ``ContainerRegistryReference`` (a pool's ``containerRegistries``, a task's
    ``registry``): its ``password`` is dropped as the request is validated, so it is never stored,
    echoed by a GET or logged. Nothing here pulls images, so nothing needs it."""
    body.pop("password", None)


def refusal(spec_text: str, pool: dict[str, Any] | None) -> dict[str, Any] | None:
    """The failure info of a task (its stored JSON ``spec_text``) that cannot start on ``pool``
    for want of a container engine, or ``None`` when it can run as a process on the host.

    Cheap for the common case (no container anywhere): no JSON is parsed.
    """
    vm = (pool or {}).get("virtualMachineConfiguration") or {}
    pool_containers = bool(vm.get("containerConfiguration"))
    if not pool_containers and '"containerSettings"' not in spec_text:
        return None
    settings = json.loads(spec_text).get("containerSettings")
    pool_id = str((pool or {}).get("id", ""))
    if settings and pool_containers:
        image = str(settings.get("imageName", ""))[:_MAX_IMAGE_CHARS]
        return _failure(
            "ContainerInvalidImage",
            INVALID_IMAGE,
            f"localbatch has no container engine: the image {json.dumps(image)} cannot be pulled or run. "
            "Run the command on the host instead: leave out containerSettings and use a pool without "
            "containerConfiguration.",
        )
    if settings:
        return _failure(
            "ContainerInvalidSettings",
            INVALID_SETTINGS,
            f"The pool {json.dumps(pool_id)} has no containerConfiguration, so its tasks must not have "
            "containerSettings.",
        )
    if pool_containers:
        return _failure(
            "ContainerInvalidSettings",
            INVALID_SETTINGS,
            f"The pool {json.dumps(pool_id)} has a containerConfiguration, so its tasks must have "
            "containerSettings (and localbatch has no container engine to run them).",
        )
    return None
