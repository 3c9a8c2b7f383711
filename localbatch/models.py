"""Request validation and the typed values the scheduler runs.

Bodies arrive as JSON; ``validate_*`` check them the way the service does
(required properties, types, id rules, enum values, limits) and return a
normalised JSON dict that is stored as-is and echoed back by GETs. The
scheduler turns stored dicts into frozen dataclasses with ``*_from_json``.

Errors are :class:`~localbatch.errors.BatchError` 400s naming the property.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from localbatch.errors import BatchError, invalid_property, missing_property

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_WALL_CLOCK_DEFAULT = "P10675199DT2H48M5.4775807S"
RETENTION_DEFAULT = "P7D"
_DURATION_RE = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


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


def parse_duration(text: str) -> timedelta:
    """ISO 8601 duration (``PT1H30M``, ``P1DT2H``, ``PT0.5S``) -> timedelta."""
    m = _DURATION_RE.match(text)
    if not m or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
    try:
        return timedelta(
            weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
        )
    except OverflowError:
        return timedelta.max


# ----------------------------------------------------------------------------- generic checks


def _obj(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_property(name, value, "expected a JSON object")
    return value


def _opt_str(body: dict[str, Any], key: str, prefix: str, max_len: int = 32768) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_property(prefix + key, value, "expected a string")
    if len(value) > max_len:
        raise invalid_property(prefix + key, value[:64], f"longer than {max_len} characters")
    return value


def _req_str(body: dict[str, Any], key: str, prefix: str, max_len: int = 32768) -> str:
    value = _opt_str(body, key, prefix, max_len)
    if value is None:
        raise missing_property(prefix + key)
    if value == "":
        raise invalid_property(prefix + key, value, "must not be empty")
    return value


_INT_STRING_RE = re.compile(r"[+-]?[0-9]{1,19}")


def _as_int(value: Any) -> int | None:
    """``value`` as an integer property, or None if it is not one.

    Like the service's JSON reader, a string holding a decimal integer is accepted:
    the ``az batch`` commands send ``"targetDedicatedNodes": "2"``.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_STRING_RE.fullmatch(value.strip()):
        return int(value)
    return None


def _opt_int(body: dict[str, Any], key: str, prefix: str, lo: int, hi: int) -> int | None:
    """Check an optional integer property; a numeric string is stored back as the integer."""
    value = body.get(key)
    if value is None:
        return None
    number = _as_int(value)
    if number is None:
        raise invalid_property(prefix + key, value, "expected an integer")
    if not lo <= number <= hi:
        raise invalid_property(prefix + key, value, f"must be between {lo} and {hi}")
    body[key] = number
    return number


def _opt_bool(body: dict[str, Any], key: str, prefix: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid_property(prefix + key, value, "expected true or false")
    return value


def _opt_enum(body: dict[str, Any], key: str, prefix: str, allowed: set[str]) -> str | None:
    value = _opt_str(body, key, prefix)
    if value is None:
        return None
    lowered = value.lower()
    if lowered not in allowed:
        raise invalid_property(prefix + key, value, "must be one of " + ", ".join(sorted(allowed)))
    body[key] = lowered
    return lowered


def _opt_duration(body: dict[str, Any], key: str, prefix: str) -> timedelta | None:
    value = _opt_str(body, key, prefix)
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError:
        raise invalid_property(prefix + key, value, "not an ISO 8601 duration") from None


def _opt_list(body: dict[str, Any], key: str, prefix: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid_property(prefix + key, value, "expected a JSON array")
    return value


def check_id(value: Any, name: str = "id") -> str:
    if value is None:
        raise missing_property(name)
    if not isinstance(value, str) or not ID_RE.match(value):
        raise invalid_property(
            name, value, "ids are 1-64 characters of letters, digits, hyphens and underscores"
        )
    return value


def _unsupported(body: dict[str, Any], keys: tuple[str, ...], prefix: str) -> None:
    for key in keys:
        if body.get(key) is not None:
            raise invalid_property(prefix + key, "...", "not supported by localbatch")


# ----------------------------------------------------------------------------- pieces


def _validate_env(body: dict[str, Any], key: str, prefix: str) -> None:
    for i, item in enumerate(_opt_list(body, key, prefix)):
        p = f"{prefix}{key}[{i}]."
        item = _obj(item, p[:-1])
        _req_str(item, "name", p, 1024)
        _opt_str(item, "value", p)


def _validate_resource_files(body: dict[str, Any], prefix: str) -> None:
    for i, item in enumerate(_opt_list(body, "resourceFiles", prefix)):
        p = f"{prefix}resourceFiles[{i}]."
        item = _obj(item, p[:-1])
        sources = [k for k in ("autoStorageContainerName", "storageContainerUrl", "httpUrl") if item.get(k)]
        for k in ("autoStorageContainerName", "storageContainerUrl", "httpUrl", "blobPrefix", "filePath"):
            _opt_str(item, k, p)
        if len(sources) != 1:
            raise invalid_property(
                p[:-1],
                "...",
                "exactly one of autoStorageContainerName, storageContainerUrl and httpUrl is required",
            )
        if item.get("httpUrl") and not item.get("filePath"):
            raise missing_property(p + "filePath")
        if item.get("httpUrl") and item.get("blobPrefix"):
            raise invalid_property(p + "blobPrefix", "...", "blobPrefix is only valid with a container")
        fp = item.get("filePath")
        if fp is not None and (fp.startswith("/") or ".." in fp.replace("\\", "/").split("/")):
            raise invalid_property(p + "filePath", fp, "must be relative to the task working directory")
        mode = _opt_str(item, "fileMode", p)
        if mode is not None and not re.fullmatch(r"0?[0-7]{3,4}", mode):
            raise invalid_property(p + "fileMode", mode, "must be an octal mode such as 0755")
        _validate_identity_reference(item, p)


def _validate_identity_reference(item: dict[str, Any], prefix: str) -> None:
    """``identityReference``: ``{"resourceId": ARM id}``; whether the pool has it is checked on the node."""
    ref = item.get("identityReference")
    if ref is None:
        return
    ref = _obj(ref, prefix + "identityReference")
    _req_str(ref, "resourceId", prefix + "identityReference.", 1024)


def _validate_output_files(body: dict[str, Any], prefix: str) -> None:
    for i, item in enumerate(_opt_list(body, "outputFiles", prefix)):
        p = f"{prefix}outputFiles[{i}]."
        item = _obj(item, p[:-1])
        _req_str(item, "filePattern", p)
        dest = item.get("destination")
        if dest is None:
            raise missing_property(p + "destination")
        container = _obj(dest, p + "destination").get("container")
        if container is None:
            raise missing_property(p + "destination.container")
        container = _obj(container, p + "destination.container")
        url = _req_str(container, "containerUrl", p + "destination.container.")
        if not url.lower().startswith(("http://", "https://")):
            raise invalid_property(p + "destination.container.containerUrl", "...", "must be an http(s) URL")
        _opt_str(container, "path", p + "destination.container.")
        _validate_identity_reference(container, p + "destination.container.")
        opts = item.get("uploadOptions")
        if opts is None:
            raise missing_property(p + "uploadOptions")
        opts = _obj(opts, p + "uploadOptions")
        cond = _opt_enum(opts, "uploadCondition", p + "uploadOptions.", {c.value for c in UploadCondition})
        if cond is None:
            raise missing_property(p + "uploadOptions.uploadCondition")


def _validate_constraints(body: dict[str, Any], prefix: str, with_retention: bool) -> None:
    c = body.get("constraints")
    if c is None:
        return
    c = _obj(c, prefix + "constraints")
    p = prefix + "constraints."
    _opt_duration(c, "maxWallClockTime", p)
    if with_retention:
        _opt_duration(c, "retentionTime", p)
    _opt_int(c, "maxTaskRetryCount", p, -1, 2**31 - 1)


def _validate_exit_options(value: Any, name: str) -> None:
    opts = _obj(value, name)
    _opt_enum(opts, "jobAction", name + ".", {"none", "disable", "terminate"})
    _opt_enum(opts, "dependencyAction", name + ".", {"satisfy", "block"})


def _validate_exit_conditions(body: dict[str, Any]) -> None:
    ec = body.get("exitConditions")
    if ec is None:
        return
    ec = _obj(ec, "exitConditions")
    for i, item in enumerate(_opt_list(ec, "exitCodes", "exitConditions.")):
        p = f"exitConditions.exitCodes[{i}]"
        item = _obj(item, p)
        if _opt_int(item, "code", p + ".", -(2**31), 2**31 - 1) is None:
            raise missing_property(p + ".code")
        if item.get("exitOptions") is None:
            raise missing_property(p + ".exitOptions")
        _validate_exit_options(item["exitOptions"], p + ".exitOptions")
    for i, item in enumerate(_opt_list(ec, "exitCodeRanges", "exitConditions.")):
        p = f"exitConditions.exitCodeRanges[{i}]"
        item = _obj(item, p)
        for k in ("start", "end"):
            if _opt_int(item, k, p + ".", -(2**31), 2**31 - 1) is None:
                raise missing_property(f"{p}.{k}")
        if item["start"] > item["end"]:
            raise invalid_property(p, "...", "start must not be greater than end")
        if item.get("exitOptions") is None:
            raise missing_property(p + ".exitOptions")
        _validate_exit_options(item["exitOptions"], p + ".exitOptions")
    for k in ("preProcessingError", "fileUploadError", "default"):
        if ec.get(k) is not None:
            _validate_exit_options(ec[k], f"exitConditions.{k}")


def _validate_depends_on(body: dict[str, Any]) -> None:
    d = body.get("dependsOn")
    if d is None:
        return
    d = _obj(d, "dependsOn")
    for i, tid in enumerate(_opt_list(d, "taskIds", "dependsOn.")):
        check_id(tid, f"dependsOn.taskIds[{i}]")
    for i, rng in enumerate(_opt_list(d, "taskIdRanges", "dependsOn.")):
        p = f"dependsOn.taskIdRanges[{i}]"
        rng = _obj(rng, p)
        for k in ("start", "end"):
            if _opt_int(rng, k, p + ".", 0, 2**31 - 1) is None:
                raise missing_property(f"{p}.{k}")
        if rng["start"] > rng["end"]:
            raise invalid_property(p, "...", "start must not be greater than end")


# ----------------------------------------------------------------------------- entities


def validate_task(body: Any) -> dict[str, Any]:
    """Validate a task-add body; return it normalised (defaults filled)."""
    body = require_body_object(body, "task")
    check_id(body.get("id"))
    _req_str(body, "commandLine", "", 8000)
    _opt_str(body, "displayName", "", 1024)
    _validate_constraints(body, "", with_retention=True)
    _validate_env(body, "environmentSettings", "")
    _validate_resource_files(body, "")
    _validate_output_files(body, "")
    _validate_exit_conditions(body)
    _validate_depends_on(body)
    _opt_int(body, "requiredSlots", "", 1, 256)
    _unsupported(body, ("containerSettings", "applicationPackageReferences"), "")
    from localbatch import multiinstance  # here: it builds on this module's checks

    multiinstance.validate(body)
    if body.get("userIdentity") is not None:
        _obj(body["userIdentity"], "userIdentity")
    return body


def validate_start_task(value: Any, prefix: str) -> dict[str, Any]:
    st = _obj(value, prefix[:-1])
    _req_str(st, "commandLine", prefix, 8000)
    _validate_env(st, "environmentSettings", prefix)
    _validate_resource_files(st, prefix)
    _opt_int(st, "maxTaskRetryCount", prefix, -1, 2**31 - 1)
    _opt_bool(st, "waitForSuccess", prefix)
    _unsupported(st, ("containerSettings",), prefix)
    return st


def validate_resize(body: Any, max_nodes: int) -> dict[str, Any]:
    body = require_body_object(body, "resize")
    for key in ("targetDedicatedNodes", "targetLowPriorityNodes"):
        _opt_int(body, key, "", 0, max_nodes)
    return body


def validate_pool(body: Any, max_nodes: int) -> dict[str, Any]:
    body = require_body_object(body, "pool")
    _refuse_retired(body)
    check_id(body.get("id"))
    _req_str(body, "vmSize", "", 256)
    _opt_str(body, "displayName", "", 1024)
    for key in ("targetDedicatedNodes", "targetLowPriorityNodes"):
        _opt_int(body, key, "", 0, max_nodes)
    _opt_int(body, "taskSlotsPerNode", "", 1, 256)
    auto = _opt_bool(body, "enableAutoScale", "")
    for key in ("autoScaleFormula", "autoScaleEvaluationInterval"):
        if not auto and body.get(key) is not None:
            raise invalid_property(key, "...", "only valid when enableAutoScale is true")
    if auto:
        _req_str(body, "autoScaleFormula", "", 8192)
        if body.get("targetDedicatedNodes") or body.get("targetLowPriorityNodes"):
            raise invalid_property(
                "targetDedicatedNodes", "...", "target node counts cannot be set with autoscale"
            )
    _opt_duration(body, "resizeTimeout", "")
    _opt_duration(body, "autoScaleEvaluationInterval", "")
    if body.get("startTask") is not None:
        validate_start_task(body["startTask"], "startTask.")
    if body.get("virtualMachineConfiguration") is not None:
        _obj(body["virtualMachineConfiguration"], "virtualMachineConfiguration")
    _opt_list(body, "metadata", "")
    return body


DEALLOCATION_OPTIONS = {"requeue", "terminate", "taskcompletion", "retaineddata"}
RETIRED = {
    "cloudServiceConfiguration": "Cloud Services Configuration pools were retired by Azure "
    "on 29 February 2024; use virtualMachineConfiguration",
    "certificateReferences": "Batch account certificates were retired by Azure on 29 February 2024; "
    "use Azure Key Vault",
}


def _refuse_retired(body: dict[str, Any]) -> None:
    for key, reason in RETIRED.items():
        if body.get(key):
            raise invalid_property(key, "...", reason)


def validate_option(body: Any, key: str, allowed: set[str], default: str | None, what: str) -> str:
    """The one enum option of a node/job action body (``default`` when the body or key is absent)."""
    if body is None:
        if default is None:
            raise missing_property(key)
        return default
    body = require_body_object(body, what)
    value = _opt_enum(body, key, "", allowed)
    if value is None:
        if default is None:
            raise missing_property(key)
        return default
    return value


def validate_remove_nodes(body: Any) -> dict[str, Any]:
    body = require_body_object(body, "remove nodes")
    nodes = body.get("nodeList")
    if nodes is None:
        raise missing_property("nodeList")
    if not isinstance(nodes, list) or not 1 <= len(nodes) <= 100:
        raise invalid_property("nodeList", "...", "expected a JSON array of 1 to 100 node ids")
    for i, node_id in enumerate(nodes):
        if not isinstance(node_id, str) or not node_id:
            raise invalid_property(f"nodeList[{i}]", node_id, "expected a node id")
    _opt_duration(body, "resizeTimeout", "")
    if _opt_enum(body, "nodeDeallocationOption", "", DEALLOCATION_OPTIONS) is None:
        body["nodeDeallocationOption"] = "requeue"
    return body


def validate_replace_pool(body: Any) -> dict[str, Any]:
    """The body of replace pool properties (PUT semantics: every property is given or reset)."""
    body = require_body_object(body, "pool properties")
    _refuse_retired(body)
    if body.get("startTask") is not None:
        validate_start_task(body["startTask"], "startTask.")
    for key in ("applicationPackageReferences", "metadata"):
        if body.get(key) is None:
            raise missing_property(key)
        _opt_list(body, key, "")
    if body["applicationPackageReferences"]:
        raise BatchError(
            409,
            "InvalidApplicationPackageReferences",
            "One or more application package references could not be satisfied: "
            "the account has no applications.",
        )
    _opt_enum(body, "targetNodeCommunicationMode", "", {"default", "classic", "simplified"})
    return body


def validate_enable_autoscale(body: Any) -> dict[str, Any]:
    body = require_body_object(body, "enable autoscale")
    _opt_str(body, "autoScaleFormula", "", 8192)
    _opt_duration(body, "autoScaleEvaluationInterval", "")
    return body


def validate_evaluate_autoscale(body: Any) -> dict[str, Any]:
    body = require_body_object(body, "evaluate autoscale")
    _req_str(body, "autoScaleFormula", "", 8192)
    return body


def validate_job(body: Any) -> dict[str, Any]:
    body = require_body_object(body, "job")
    check_id(body.get("id"))
    _opt_str(body, "displayName", "", 1024)
    _opt_int(body, "priority", "", -1000, 1000)
    _opt_int(body, "maxParallelTasks", "", -1, 2**31 - 1)
    pool_info = body.get("poolInfo")
    if pool_info is None:
        raise missing_property("poolInfo")
    pool_info = _obj(pool_info, "poolInfo")
    if pool_info.get("autoPoolSpecification") is not None:
        _validate_auto_pool(pool_info)
    else:
        _req_str(pool_info, "poolId", "poolInfo.", 64)
    _opt_enum(body, "onAllTasksComplete", "", {"noaction", "terminatejob"})
    _opt_enum(body, "onTaskFailure", "", {"noaction", "performexitoptionsjobaction"})
    _opt_bool(body, "usesTaskDependencies", "")
    _opt_bool(body, "allowTaskPreemption", "")
    _validate_constraints(body, "", with_retention=False)
    _validate_env(body, "commonEnvironmentSettings", "")
    _opt_list(body, "metadata", "")
    _unsupported(body, ("networkConfiguration",), "")
    _validate_job_tasks(body)
    return body


def _validate_auto_pool(pool_info: dict[str, Any]) -> None:
    """``poolInfo.autoPoolSpecification`` (exclusive with ``poolId``); its pool is checked as a pool."""
    p = "poolInfo.autoPoolSpecification."
    if pool_info.get("poolId") is not None:
        raise invalid_property("poolInfo", "...", "give either poolId or autoPoolSpecification, not both")
    spec = _obj(pool_info["autoPoolSpecification"], p[:-1])
    prefix = _opt_str(spec, "autoPoolIdPrefix", p, 20)
    if prefix is not None and not ID_RE.match(prefix):
        raise invalid_property(p + "autoPoolIdPrefix", prefix, "letters, digits, - and _ only")
    if _opt_enum(spec, "poolLifetimeOption", p, {"job", "jobschedule"}) is None:
        raise missing_property(p + "poolLifetimeOption")
    _opt_bool(spec, "keepAlive", p)
    if spec.get("pool") is None:
        raise missing_property(p + "pool")
    try:
        validate_pool({**_obj(spec["pool"], p + "pool"), "id": "autopool"}, 2**31 - 1)
    except BatchError as exc:
        exc.values = [(k, f"{p}pool.{v}" if k == "PropertyName" else v) for k, v in exc.values]
        raise


def _validate_job_task(body: dict[str, Any], key: str, id_required: bool) -> dict[str, Any] | None:
    """The parts a job manager, preparation or release task shares with a task."""
    if body.get(key) is None:
        return None
    t = _obj(body[key], key)
    p = key + "."
    if id_required or t.get("id") is not None:
        check_id(t.get("id"), p + "id")
    _req_str(t, "commandLine", p, 8000)
    _validate_env(t, "environmentSettings", p)
    _validate_resource_files(t, p)
    _unsupported(t, ("containerSettings", "applicationPackageReferences"), p)
    if t.get("userIdentity") is not None:
        _obj(t["userIdentity"], p + "userIdentity")
    return t


def _validate_job_tasks(body: dict[str, Any]) -> None:
    """``jobManagerTask``, ``jobPreparationTask`` and ``jobReleaseTask`` (release needs preparation)."""
    jm = _validate_job_task(body, "jobManagerTask", id_required=True)
    if jm is not None:
        _opt_str(jm, "displayName", "jobManagerTask.", 1024)
        _validate_constraints(jm, "jobManagerTask.", with_retention=True)
        _validate_output_files(jm, "jobManagerTask.")
        _opt_int(jm, "requiredSlots", "jobManagerTask.", 1, 256)
        for flag in ("killJobOnCompletion", "runExclusive", "allowLowPriorityNode"):
            _opt_bool(jm, flag, "jobManagerTask.")
    prep = _validate_job_task(body, "jobPreparationTask", id_required=False)
    if prep is not None:
        _validate_constraints(prep, "jobPreparationTask.", with_retention=True)
        _opt_bool(prep, "waitForSuccess", "jobPreparationTask.")
        _opt_bool(prep, "rerunOnNodeRebootAfterSuccess", "jobPreparationTask.")
    release = _validate_job_task(body, "jobReleaseTask", id_required=False)
    if release is not None:
        _opt_duration(release, "maxWallClockTime", "jobReleaseTask.")
        _opt_duration(release, "retentionTime", "jobReleaseTask.")
        if prep is None:
            raise invalid_property(
                "jobReleaseTask",
                "...",
                "a job release task needs a job preparation task (jobPreparationTask)",
            )


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
