"""Request validation and the typed values the scheduler runs.

Bodies arrive as JSON; ``validate_*`` check them the way the service does and
return a normalised JSON dict that is stored as-is and echoed back by GETs.
Types, required properties and enum values are the SDK's models' (compiled by
:mod:`localbatch.schema`); what those cannot say is declared here, in two
tables: :data:`LIMITS` (ranges, lengths, id patterns per model property) and
:data:`RULES` (small named checks per model: one source per resource file, a
release task needs a preparation task, autoscale excludes target counts, ...).
The scheduler turns stored dicts into frozen dataclasses with ``*_from_json``.

Errors are :class:`~localbatch.errors.BatchError` 400s naming the property.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from localbatch.containers import forget_registry_password
from localbatch.errors import BatchError, invalid_property, missing_property
from localbatch.schema import Limit, Rule, Validator
from localbatch.schema import parse_duration as parse_duration

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_WALL_CLOCK_DEFAULT = "P10675199DT2H48M5.4775807S"
RETENTION_DEFAULT = "P7D"
_TARGETS = ("targetDedicatedNodes", "targetLowPriorityNodes")


class TaskState(str, Enum):
    ACTIVE = "active"
    PREPARING = "preparing"
    RUNNING = "running"
    COMPLETED = "completed"


class JobState(str, Enum):
    ACTIVE = "active"
    DISABLING = "disabling"
    DISABLED = "disabled"
    ENABLING = "enabling"
    TERMINATING = "terminating"
    COMPLETED = "completed"
    DELETING = "deleting"


class NodeState(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    CREATING = "creating"
    STARTING = "starting"
    PREEMPTED = "preempted"
    UNUSABLE = "unusable"
    REBOOTING = "rebooting"
    REIMAGING = "reimaging"
    OFFLINE = "offline"
    DEALLOCATING = "deallocating"
    DEALLOCATED = "deallocated"
    WAITING_FOR_START_TASK = "waitingforstarttask"
    START_TASK_FAILED = "starttaskfailed"
    LEAVING_POOL = "leavingpool"


class UploadCondition(str, Enum):
    TASK_SUCCESS = "tasksuccess"
    TASK_FAILURE = "taskfailure"
    TASK_COMPLETION = "taskcompletion"


# ----------------------------------------------------------------------------- time helpers


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    """Batch's timestamp format (UTC, ``Z``)."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ----------------------------------------------------------------------------- declared checks
#
# Types, required properties and enum values come from the SDK's models (localbatch.schema);
# what they cannot say is declared here: LIMITS per (model, property), RULES per model.

_ID_REASON = "ids are 1-64 characters of letters, digits, hyphens and underscores"
_TASK_MODELS = (
    "BatchTaskCreateOptions",
    "BatchStartTask",
    "BatchJobManagerTask",
    "BatchJobPreparationTask",
    "BatchJobReleaseTask",
)
_POOL_MODELS = ("BatchPoolCreateOptions", "BatchPoolSpecification")
MAX_INSTANCES = 64  # localbatch's node limit per pool (``ServiceConfig.max_nodes_per_pool``)
_RETRIES = Limit(lo=-1)
_SLOTS = Limit(lo=1, hi=256)
_NODES = Limit(lo=0)
_NAME = Limit(max_length=1024)

LIMITS: dict[tuple[str, str], Limit] = {
    **{(m, "id"): Limit(pattern=ID_RE, reason=_ID_REASON) for m in _TASK_MODELS if m != "BatchStartTask"},
    ("BatchJobCreateOptions", "id"): Limit(pattern=ID_RE, reason=_ID_REASON),
    ("BatchPoolCreateOptions", "id"): Limit(pattern=ID_RE, reason=_ID_REASON),
    **{(m, "commandLine"): Limit(max_length=8000) for m in _TASK_MODELS},
    **{(m, "displayName"): _NAME for m in ("BatchTaskCreateOptions", "BatchJobManagerTask")},
    **{(m, "displayName"): _NAME for m in ("BatchJobCreateOptions", *_POOL_MODELS)},
    **{(m, "vmSize"): Limit(max_length=256) for m in _POOL_MODELS},
    **{(m, "autoScaleFormula"): Limit(max_length=8192) for m in _POOL_MODELS},
    ("BatchPoolEnableAutoScaleOptions", "autoScaleFormula"): Limit(max_length=8192),
    ("BatchPoolEvaluateAutoScaleOptions", "autoScaleFormula"): Limit(max_length=8192),
    **{(m, "taskSlotsPerNode"): _SLOTS for m in _POOL_MODELS},
    **{(m, k): _NODES for m in (*_POOL_MODELS, "BatchPoolResizeOptions") for k in _TARGETS},
    ("BatchTaskCreateOptions", "requiredSlots"): _SLOTS,
    ("BatchJobManagerTask", "requiredSlots"): _SLOTS,
    ("BatchTaskConstraints", "maxTaskRetryCount"): _RETRIES,
    ("BatchJobConstraints", "maxTaskRetryCount"): _RETRIES,
    ("BatchStartTask", "maxTaskRetryCount"): _RETRIES,
    ("BatchJobCreateOptions", "priority"): Limit(lo=-1000, hi=1000),
    ("BatchJobCreateOptions", "maxParallelTasks"): Limit(lo=-1),
    ("BatchTaskIdRange", "start"): Limit(lo=0),
    ("BatchTaskIdRange", "end"): Limit(lo=0),
    ("BatchAutoPoolSpecification", "autoPoolIdPrefix"): Limit(
        max_length=20, pattern=ID_RE, reason="letters, digits, - and _ only"
    ),
    ("BatchAutoPoolSpecification", "pool"): Limit(required=True),
    ("BatchPoolInfo", "poolId"): Limit(max_length=64),
    ("EnvironmentSetting", "name"): _NAME,
    ("BatchNodeIdentityReference", "resourceId"): Limit(required=True, max_length=1024),
    ("OutputFileDestination", "container"): Limit(required=True),
    ("ResourceFile", "fileMode"): Limit(
        pattern=re.compile(r"0?[0-7]{3,4}"), reason="must be an octal mode such as 0755"
    ),
    ("BatchNodeRemoveOptions", "nodeList"): Limit(lo=1, hi=100),
    ("BatchMetadataItem", "value"): Limit(allow_empty=True),
    ("MultiInstanceSettings", "coordinationCommandLine"): Limit(required=True, max_length=8000),
    ("MultiInstanceSettings", "numberOfInstances"): Limit(lo=1, hi=MAX_INSTANCES),
}


def _unsupported(*keys: str) -> Rule:
    """A rule refusing properties localbatch does not run (rather than ignoring them)."""

    def rule(body: dict[str, Any], prefix: str) -> None:
        for key in keys:
            if body.get(key) is not None:
                raise invalid_property(prefix + key, "...", "not supported by localbatch")

    rule.__name__ = "unsupported_" + "_".join(keys)
    return rule


def _ordered_range(body: dict[str, Any], prefix: str) -> None:
    if body["start"] > body["end"]:
        raise invalid_property(prefix[:-1], "...", "start must not be greater than end")


def _one_source(item: dict[str, Any], prefix: str) -> None:
    """A resource file: exactly one source; a URL needs filePath, a prefix needs a container."""
    sources = [k for k in ("autoStorageContainerName", "storageContainerUrl", "httpUrl") if item.get(k)]
    if len(sources) != 1:
        raise invalid_property(
            prefix[:-1],
            "...",
            "exactly one of autoStorageContainerName, storageContainerUrl and httpUrl is required",
        )
    if item.get("httpUrl") and not item.get("filePath"):
        raise missing_property(prefix + "filePath")
    if item.get("httpUrl") and item.get("blobPrefix"):
        raise invalid_property(prefix + "blobPrefix", "...", "blobPrefix is only valid with a container")


def _relative_file_path(item: dict[str, Any], prefix: str) -> None:
    fp = item.get("filePath")
    if fp is not None and (fp.startswith("/") or ".." in fp.replace("\\", "/").split("/")):
        raise invalid_property(prefix + "filePath", fp, "must be relative to the task working directory")


def _http_container(item: dict[str, Any], prefix: str) -> None:
    if not item["containerUrl"].lower().startswith(("http://", "https://")):
        raise invalid_property(prefix + "containerUrl", "...", "must be an http(s) URL")


def _dependency_ids(deps: dict[str, Any], prefix: str) -> None:
    for i, tid in enumerate(deps.get("taskIds") or []):
        check_id(tid, f"{prefix}taskIds[{i}]")


def _pool_or_auto_pool(info: dict[str, Any], prefix: str) -> None:
    """``poolInfo``: ``poolId`` or ``autoPoolSpecification``, exactly one."""
    if info.get("autoPoolSpecification") is not None:
        if info.get("poolId") is not None:
            raise invalid_property(
                prefix[:-1], "...", "give either poolId or autoPoolSpecification, not both"
            )
    elif not info.get("poolId"):
        raise missing_property(prefix + "poolId")


def _autoscale(pool: dict[str, Any], prefix: str) -> None:
    """Autoscale: a formula, and no target counts; without it, no formula or interval."""
    auto = pool.get("enableAutoScale")
    for key in ("autoScaleFormula", "autoScaleEvaluationInterval"):
        if not auto and pool.get(key) is not None:
            raise invalid_property(prefix + key, "...", "only valid when enableAutoScale is true")
    if auto:
        if not pool.get("autoScaleFormula"):
            raise missing_property(prefix + "autoScaleFormula")
        if pool.get("targetDedicatedNodes") or pool.get("targetLowPriorityNodes"):
            raise invalid_property(
                prefix + "targetDedicatedNodes", "...", "target node counts cannot be set with autoscale"
            )


def _release_needs_preparation(job: dict[str, Any], prefix: str) -> None:
    if job.get("jobReleaseTask") is not None and job.get("jobPreparationTask") is None:
        raise invalid_property(
            prefix + "jobReleaseTask",
            "...",
            "a job release task needs a job preparation task (jobPreparationTask)",
        )


def _node_ids(body: dict[str, Any], prefix: str) -> None:
    for i, node_id in enumerate(body["nodeList"]):
        if not node_id:
            raise invalid_property(f"{prefix}nodeList[{i}]", node_id, "expected a node id")


RETIRED = {
    "cloudServiceConfiguration": "Cloud Services Configuration pools were retired by Azure "
    "on 29 February 2024; use virtualMachineConfiguration",
    "certificateReferences": "Batch account certificates were retired by Azure on 29 February 2024; "
    "use Azure Key Vault",
}


def _one_slot_per_instance(body: dict[str, Any], prefix: str) -> None:
    """A multi-instance task takes one slot on each of its nodes: ``requiredSlots`` must be 1."""
    if body.get("multiInstanceSettings") is not None and body.get("requiredSlots") not in (None, 1):
        raise invalid_property(
            prefix + "requiredSlots", body["requiredSlots"], "For multi-instance tasks it must be 1."
        )


def _refuse_retired(body: dict[str, Any], prefix: str = "") -> None:
    """Retired features are refused as today's Azure refuses them (not accepted, then failed)."""
    for key, reason in RETIRED.items():
        if body.get(key):
            raise invalid_property(prefix + key, "...", reason)


RULES: dict[str, tuple[Rule, ...]] = {
    "BatchTaskCreateOptions": (
        _unsupported("applicationPackageReferences"),  # containerSettings: accepted, see containers.py
        _one_slot_per_instance,
    ),
    "BatchStartTask": (_unsupported("containerSettings"),),
    **{
        m: (_unsupported("containerSettings", "applicationPackageReferences"),)
        for m in ("BatchJobManagerTask", "BatchJobPreparationTask", "BatchJobReleaseTask")
    },
    "ResourceFile": (_one_source, _relative_file_path),
    "OutputFileBlobContainerDestination": (_http_container,),
    "ExitCodeRangeMapping": (_ordered_range,),
    "BatchTaskIdRange": (_ordered_range,),
    "BatchTaskDependencies": (_dependency_ids,),
    "BatchJobCreateOptions": (_unsupported("networkConfiguration"), _release_needs_preparation),
    "BatchPoolInfo": (_pool_or_auto_pool,),
    # Retired features: an auto pool's refused here, a pool's before its types (validate_pool).
    "BatchPoolSpecification": (_refuse_retired, _autoscale),
    "BatchPoolCreateOptions": (_autoscale,),
    "BatchNodeRemoveOptions": (_node_ids,),
    "ContainerRegistryReference": (forget_registry_password,),  # never stored nor echoed
}

SCHEMA = Validator(LIMITS, RULES)


def check_id(value: Any, name: str = "id") -> str:
    if value is None:
        raise missing_property(name)
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise invalid_property(name, value, _ID_REASON)
    return value


def _node_count(body: dict[str, Any], max_nodes: int) -> None:
    """The server's own limit on target node counts (``serve --max-nodes``)."""
    for key in _TARGETS:
        if (body.get(key) or 0) > max_nodes:
            raise invalid_property(key, body[key], f"must be between 0 and {max_nodes}")


# ----------------------------------------------------------------------------- entities


def validate_task(body: Any) -> dict[str, Any]:
    """Validate a task-add body (``BatchTaskCreateOptions``); return it normalised."""
    return SCHEMA.validate(require_body_object(body, "task"), "BatchTaskCreateOptions")


def validate_resize(body: Any, max_nodes: int) -> dict[str, Any]:
    body = SCHEMA.validate(require_body_object(body, "resize"), "BatchPoolResizeOptions")
    _node_count(body, max_nodes)
    return body


def validate_pool(body: Any, max_nodes: int) -> dict[str, Any]:
    """A pool-add body (also a PATCH's merged probe and an auto pool's pool, with an id added)."""
    body = require_body_object(body, "pool")
    _refuse_retired(body)
    SCHEMA.validate(body, "BatchPoolCreateOptions")
    _node_count(body, max_nodes)
    return body


def validate_option(body: Any, model: str, key: str, default: str | None, what: str) -> str:
    """The one enum option ``key`` of a node/job action body, whose SDK model is ``model``.

    The allowed values are the SDK's enum for that property (compiled into :data:`SCHEMA`),
    matched case-insensitively; returns the SDK's spelling, or ``default`` when the body or key
    is absent (``None``: the option is required). Raises 400 ``MissingRequiredProperty`` or
    ``InvalidPropertyValue`` (naming the values); KeyError if ``model.key`` is no SDK enum.
    """
    values = SCHEMA.models[model].fields[key].values
    if values is None:
        raise KeyError(f"{model}.{key} is not an enum property of the SDK")
    return _enum_option(body, key, values, default, what)


# A node restart action (the URL's last segment) -> the SDK model of its body and its option.
NODE_RESTART_OPTIONS = {
    "reboot": ("BatchNodeRebootOptions", "nodeRebootOption"),
    "reimage": ("BatchNodeReimageOptions", "nodeReimageOption"),
    "deallocate": ("BatchNodeDeallocateOptions", "nodeDeallocateOption"),
}
# Earlier api-versions' targetNodeCommunicationMode: an enum the SDK (2025-06-01) no longer defines.
_COMMUNICATION_MODES = {v: v for v in ("default", "classic", "simplified")}


def _enum_option(body: Any, key: str, values: Mapping[str, str], default: str | None, what: str) -> str:
    value = None if body is None else require_body_object(body, what).get(key)
    if value is None:
        if default is None:
            raise missing_property(key)
        return default
    spelled = values.get(value.lower()) if isinstance(value, str) else None
    if spelled is None:
        raise invalid_property(key, value, "must be one of " + ", ".join(sorted(values.values())))
    return spelled


def validate_remove_nodes(body: Any) -> dict[str, Any]:
    body = SCHEMA.validate(require_body_object(body, "remove nodes"), "BatchNodeRemoveOptions")
    if body.get("nodeDeallocationOption") is None:
        body["nodeDeallocationOption"] = "requeue"
    return body


def validate_replace_pool(body: Any) -> dict[str, Any]:
    """The body of replace pool properties (PUT semantics: every property is given or reset)."""
    body = require_body_object(body, "pool properties")
    _refuse_retired(body)
    SCHEMA.validate(body, "BatchPoolReplaceOptions")
    if body["applicationPackageReferences"]:
        raise BatchError(
            409,
            "InvalidApplicationPackageReferences",
            "One or more application package references could not be satisfied: "
            "the account has no applications.",
        )
    mode = body.get("targetNodeCommunicationMode")  # an earlier api-version's property
    if mode is not None:
        body["targetNodeCommunicationMode"] = _enum_option(
            body, "targetNodeCommunicationMode", _COMMUNICATION_MODES, None, "pool properties"
        )
    return body


def validate_enable_autoscale(body: Any) -> dict[str, Any]:
    return SCHEMA.validate(require_body_object(body, "enable autoscale"), "BatchPoolEnableAutoScaleOptions")


def validate_evaluate_autoscale(body: Any) -> dict[str, Any]:
    return SCHEMA.validate(
        require_body_object(body, "evaluate autoscale"), "BatchPoolEvaluateAutoScaleOptions"
    )


def validate_job(body: Any) -> dict[str, Any]:
    """A job-add body (also a PATCH/PUT's probe and a schedule's job specification, with an id)."""
    return SCHEMA.validate(require_body_object(body, "job"), "BatchJobCreateOptions")


def require_body_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BatchError(400, "InvalidRequestBody", f"The {what} body must be a JSON object.")
    return body


# ----------------------------------------------------------------------------- typed values


@dataclass(frozen=True)
class ResourceFile:
    http_url: str | None
    storage_container_url: str | None
    auto_storage_container_name: str | None
    blob_prefix: str | None
    file_path: str | None
    file_mode: str | None
    identity: str | None = None  # identityReference.resourceId: a pool identity instead of a SAS


@dataclass(frozen=True)
class OutputFile:
    file_pattern: str
    container_url: str
    path: str | None
    condition: UploadCondition
    identity: str | None = None  # destination.container.identityReference.resourceId


@dataclass(frozen=True)
class ExitOptions:
    job_action: str | None  # none | disable | terminate; None = not set (the job's default applies)
    dependency_action: str  # satisfy | block


@dataclass(frozen=True)
class TaskSpec:
    """What a task (or start task) needs to run."""

    command_line: str
    environment: tuple[tuple[str, str], ...]
    resource_files: tuple[ResourceFile, ...]
    output_files: tuple[OutputFile, ...]
    max_wall_clock: timedelta | None
    max_retries: int
    required_slots: int
    exit_conditions: dict[str, Any]

    def exit_options(self, exit_code: int | None, failed: bool, pre_processing: bool = False) -> ExitOptions:
        """The exit options that apply to this outcome (Batch's precedence)."""
        ec = self.exit_conditions
        chosen: dict[str, Any] | None = None
        if pre_processing:
            chosen = ec.get("preProcessingError")
        elif exit_code is not None:
            for item in ec.get("exitCodes") or []:
                if item.get("code") == exit_code:
                    chosen = item.get("exitOptions")
                    break
            if chosen is None:
                for item in ec.get("exitCodeRanges") or []:
                    if item["start"] <= exit_code <= item["end"]:
                        chosen = item.get("exitOptions")
                        break
        if chosen is None and failed:
            chosen = ec.get("default")
        chosen = chosen or {}
        return ExitOptions(
            job_action=chosen.get("jobAction"),
            dependency_action=(chosen.get("dependencyAction") or ("satisfy" if not failed else "block")),
        )


def _env_pairs(items: list[Any] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(e["name"]), str(e.get("value") or "")) for e in items or [])


def _identity_id(item: dict[str, Any]) -> str | None:
    ref = item.get("identityReference")
    return str(ref["resourceId"]) if isinstance(ref, dict) and ref.get("resourceId") else None


def _resource_files(items: list[Any] | None) -> tuple[ResourceFile, ...]:
    return tuple(
        ResourceFile(
            http_url=r.get("httpUrl"),
            storage_container_url=r.get("storageContainerUrl"),
            auto_storage_container_name=r.get("autoStorageContainerName"),
            blob_prefix=r.get("blobPrefix"),
            file_path=r.get("filePath"),
            file_mode=r.get("fileMode"),
            identity=_identity_id(r),
        )
        for r in items or []
    )


def task_spec_from_json(task: dict[str, Any], job: dict[str, Any]) -> TaskSpec:
    """The runnable spec of a stored task, with the job's defaults applied."""
    constraints = task.get("constraints") or {}
    job_constraints = job.get("constraints") or {}
    wall = constraints.get("maxWallClockTime")
    retries = constraints.get("maxTaskRetryCount")
    if retries is None:
        retries = job_constraints.get("maxTaskRetryCount", 0)
    env = _env_pairs(job.get("commonEnvironmentSettings")) + _env_pairs(task.get("environmentSettings"))
    outputs = tuple(
        OutputFile(
            file_pattern=o["filePattern"],
            container_url=o["destination"]["container"]["containerUrl"],
            path=o["destination"]["container"].get("path"),
            condition=UploadCondition(o["uploadOptions"]["uploadCondition"].lower()),
            identity=_identity_id(o["destination"]["container"]),
        )
        for o in task.get("outputFiles") or []
    )
    return TaskSpec(
        command_line=task["commandLine"],
        environment=env,
        resource_files=_resource_files(task.get("resourceFiles")),
        output_files=outputs,
        max_wall_clock=parse_duration(wall) if wall else None,
        max_retries=int(retries),
        required_slots=int(task.get("requiredSlots") or 1),
        exit_conditions=task.get("exitConditions") or {},
    )


def start_task_spec_from_json(st: dict[str, Any]) -> TaskSpec:
    return TaskSpec(
        command_line=st["commandLine"],
        environment=_env_pairs(st.get("environmentSettings")),
        resource_files=_resource_files(st.get("resourceFiles")),
        output_files=(),
        max_wall_clock=None,
        max_retries=int(st.get("maxTaskRetryCount") or 0),
        required_slots=1,
        exit_conditions={},
    )


def task_constraints(task: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The ``constraints`` a GET shows: the task's, with Batch's defaults."""
    c = dict(task.get("constraints") or {})
    job_c = job.get("constraints") or {}
    c.setdefault("maxWallClockTime", MAX_WALL_CLOCK_DEFAULT)
    c.setdefault("retentionTime", RETENTION_DEFAULT)
    c.setdefault("maxTaskRetryCount", job_c.get("maxTaskRetryCount", 0))
    return c
