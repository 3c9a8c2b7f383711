"""Request bodies hold only the properties Batch defines: anything else is refused, as the service does.

The Batch service parses bodies with OData against closed entity types, so a
property the type does not define (at any depth) fails the request with 400
``InvalidRequestBody`` and the reason "The property 'X' does not exist on type
'Microsoft.Azure.Batch.Protocol.Entities.T'. Make sure to only use property
names that are defined by the type." (Batch's documented answer, e.g. for
``lengthOfTime`` on a software entitlement renewal). It never stores or echoes
such a property.

The defined properties come from the installed SDK's models (generated from
the REST spec; as :mod:`localbatch.schemagen` wrote them, the SDK is never
imported), compiled once into :data:`localbatch.models.SCHEMA`, the schema the
handlers' type validation uses too, so the check follows the spec localbatch
implements. OData
annotations (``odata.type``, ...) are allowed, and the retired properties of
:data:`localbatch.models.RETIRED` pass through to be refused with their own
reason.
"""

from __future__ import annotations

import json
from typing import Any

from localbatch.errors import invalid_body
from localbatch.models import RETIRED, SCHEMA
from localbatch.schema import Field

# (method, route shape as routes.shape_of writes it) -> (SDK model of the body, the service's entity name).
BODY_MODELS: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "pools"): ("BatchPoolCreateOptions", "PoolAddParameter"),
    ("PATCH", "pools/{}"): ("BatchPoolUpdateOptions", "PoolPatchParameter"),
    ("POST", "pools/{}/updateproperties"): ("BatchPoolReplaceOptions", "PoolUpdatePropertiesParameter"),
    ("POST", "pools/{}/resize"): ("BatchPoolResizeOptions", "PoolResizeParameter"),
    ("POST", "pools/{}/removenodes"): ("BatchNodeRemoveOptions", "NodeRemoveParameter"),
    ("POST", "pools/{}/enableautoscale"): ("BatchPoolEnableAutoScaleOptions", "PoolEnableAutoScaleParameter"),
    ("POST", "pools/{}/evaluateautoscale"): (
        "BatchPoolEvaluateAutoScaleOptions",
        "PoolEvaluateAutoScaleParameter",
    ),
    ("POST", "pools/{}/nodes/{}/users"): ("BatchNodeUserCreateOptions", "ComputeNodeUser"),
    ("PUT", "pools/{}/nodes/{}/users/{}"): ("BatchNodeUserReplaceOptions", "NodeUpdateUserParameter"),
    ("POST", "pools/{}/nodes/{}/uploadbatchservicelogs"): (
        "UploadBatchServiceLogsOptions",
        "UploadBatchServiceLogsConfiguration",
    ),
    ("POST", "jobs"): ("BatchJobCreateOptions", "JobAddParameter"),
    ("PATCH", "jobs/{}"): ("BatchJobUpdateOptions", "JobPatchParameter"),
    ("PUT", "jobs/{}"): ("BatchJob", "JobUpdateParameter"),
    ("POST", "jobs/{}/disable"): ("BatchJobDisableOptions", "JobDisableParameter"),
    ("POST", "jobs/{}/terminate"): ("BatchJobTerminateOptions", "JobTerminateParameter"),
    ("POST", "jobs/{}/tasks"): ("BatchTaskCreateOptions", "TaskAddParameter"),
    ("POST", "jobs/{}/addtaskcollection"): ("BatchTaskGroup", "TaskAddCollectionParameter"),
    ("PUT", "jobs/{}/tasks/{}"): ("BatchTask", "TaskUpdateParameter"),
    ("POST", "jobschedules"): ("BatchJobScheduleCreateOptions", "JobScheduleAddParameter"),
    ("PATCH", "jobschedules/{}"): ("BatchJobScheduleUpdateOptions", "JobSchedulePatchParameter"),
    ("PUT", "jobschedules/{}"): ("BatchJobSchedule", "JobScheduleUpdateParameter"),
}

# Properties earlier api-versions define that 2025-06-01 (the SDK's) dropped: accepted from a
# client that sends an earlier api-version, as the service accepts them (the azure-batch 14 SDK,
# api-version 2024-02-01.19.0, has all but maxTasksPerNode, renamed taskSlotsPerNode in 2020-09-01).
LEGACY_PROPERTIES: dict[str, frozenset[str]] = {
    "BatchPoolCreateOptions": frozenset(
        {"applicationLicenses", "resourceTags", "targetNodeCommunicationMode", "maxTasksPerNode"}
    ),
    "BatchPoolUpdateOptions": frozenset({"targetNodeCommunicationMode"}),
    "BatchPoolReplaceOptions": frozenset({"targetNodeCommunicationMode"}),
    "BatchPoolSpecification": frozenset(
        {
            "applicationLicenses",
            "resourceTags",
            "targetNodeCommunicationMode",
            "maxTasksPerNode",
            *RETIRED,  # an auto pool's: refused by its own check, with the retirement named
        }
    ),
    "DataDisk": frozenset({"storageAccountType"}),
    "BatchTaskCreateOptions": frozenset({"authenticationTokenSettings"}),
    "BatchJobManagerTask": frozenset({"authenticationTokenSettings"}),
}

ENTITY_PREFIX = "Microsoft.Azure.Batch.Protocol.Entities."


def check_request(method: str, shape: str | None, body: bytes, legacy: bool = False) -> None:
    """Refuse (400 ``InvalidRequestBody``) a body with a property its operation's type does not define.

    ``shape`` is the route's (:func:`localbatch.routes.shape_of`); ``legacy``: the request's
    api-version is an earlier one (:data:`LEGACY_PROPERTIES` are defined). An operation without a
    listed body, an empty body or one that is not JSON passes: the handler reports those itself.
    """
    entry = BODY_MODELS.get((method, shape or ""))
    if entry is None or not body.strip():
        return
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return
    model, entity = entry
    _check_object(value, model, entity, legacy, top=True)


def _walk(value: Any, f: Field, legacy: bool) -> None:
    """Walk ``value`` as the compiled SDK field ``f``; raise on the first property no model defines.

    Values of the wrong JSON type are left to the handlers' validation.
    """
    if f.kind == "model":
        _check_object(value, f.model, None, legacy)
    elif f.kind == "list" and isinstance(value, list) and f.item is not None:
        item = f.item
        if item.kind == "model":  # the common case (tasks, resource files, settings): no hop
            for element in value:
                _check_object(element, item.model, None, legacy)
        else:
            for element in value:
                _walk(element, item, legacy)
    elif f.kind == "dict" and isinstance(value, dict) and f.item is not None:
        for element in value.values():
            _walk(element, f.item, legacy)


def _check_object(value: Any, model: str, entity: str | None, legacy: bool, top: bool = False) -> None:
    """``entity``: the service's name of the type (None: derived from the SDK's)."""
    schema = SCHEMA.models.get(model)
    if schema is None or not isinstance(value, dict):
        return
    unknown = value.keys() - schema.fields.keys()
    if unknown and legacy:
        unknown -= LEGACY_PROPERTIES.get(model, frozenset())
    for key in unknown:
        if not (isinstance(key, str) and (key.startswith("odata.") or (top and key in RETIRED))):
            raise _unknown(key, entity or _entity_name(model))
    for f in schema.nested:
        if f.name in value:
            _walk(value[f.name], f, legacy)


def _entity_name(model: str) -> str:
    """The service's name of a nested type: the SDK's name without its ``Batch`` prefix."""
    return {"BatchTaskCreateOptions": "TaskAddParameter"}.get(model, model.removeprefix("Batch"))


def _unknown(key: str, entity: str) -> Exception:
    shown = key[:128].encode("unicode_escape").decode("ascii")
    return invalid_body(
        f"The property '{shown}' does not exist on type '{ENTITY_PREFIX}{entity}'. "
        "Make sure to only use property names that are defined by the type."
    )
