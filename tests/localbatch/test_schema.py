"""Request validation is the SDK's models: types, required properties and enums, at any depth.

localbatch.schema compiles the installed SDK's models; these tests tie it back to
the SDK: its docstrings' "Required." are the schema's required properties, every
body the SDK serialises from a fully populated model passes the type checks, and
through the service a wrong type deep in a body is refused naming its path, a
missing required property is ``MissingRequiredProperty``, and fully populated
models sent by the SDK client are accepted and stored as the service reads them.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.batch import BatchClient
from azure.batch import models as bm
from azure.batch._utils.model_base import SdkJSONEncoder
from azure.batch.models import _enums, _models
from azure.core.exceptions import ResourceNotFoundError

from localbatch import bodies, models, schema, schemagen
from localbatch.errors import BatchError
from tests.localbatch.conftest import RawBatch, unique

# The schema as the SDK alone declares it (no localbatch limits or rules).
BARE = schema.Validator({}, {})
# The optional properties localbatch's LIMITS make required (the service needs them).
MADE_REQUIRED = {
    ("BatchAutoPoolSpecification", "pool"),
    ("BatchNodeIdentityReference", "resourceId"),
    ("OutputFileDestination", "container"),
}


def _sdk_class(name: str) -> Any:
    cls = getattr(_models, name)
    cls()  # the SDK maps attributes to wire names on first construction
    return cls


def _docstring_required(name: str) -> set[str]:
    cls = _sdk_class(name)
    ivars = re.findall(r":ivar (\w+): (.*?)(?=\n:ivar |\n:vartype |\Z)", inspect.getdoc(cls) or "", re.S)
    return {cls._attr_to_rest_field[a]._rest_name for a, text in ivars if re.search(r"\bRequired\.", text)}


def test_required_properties_are_the_sdk_docstrings() -> None:
    """No server: for every SDK model, "Required." in its docstring <=> required in the schema."""
    assert len(models.SCHEMA.models) > 100
    for name, compiled in models.SCHEMA.models.items():
        declared = _docstring_required(name)
        assert {f.name for f in BARE.models[name].fields.values() if f.required} == declared, name
        made = {p for m, p in MADE_REQUIRED if m == name}
        assert {f.name for f in compiled.required} == declared | made, name
    with pytest.raises(KeyError, match=r"BatchTaskCreateOptions\.comandLine"):
        schema.compile_models({("BatchTaskCreateOptions", "comandLine"): schema.Limit(max_length=1)}, {})


def test_schema_data_is_current_and_the_server_never_loads_the_sdk() -> None:
    """The committed ``schema_data.json`` is what the installed SDK generates (an SDK upgrade
    cannot drift silently), and a server that has compiled its validation from it has imported
    nothing of ``azure`` nor the contract reader (parsing the SDK cost the server ~11 MB)."""
    committed = schemagen.DATA_FILE.read_text(encoding="utf-8")
    assert committed == schemagen.generate(), "stale: run `python -m localbatch.schemagen --write`"
    assert schema.load_tables().sdk == json.loads(committed)["sdk"]
    code = (
        "import sys, localbatch.cli, localbatch.server\n"
        "from localbatch.models import SCHEMA\n"
        "assert len(SCHEMA.models) > 100\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'azure'"
        " or m.startswith(('localbatch.contract', 'localbatch.schemagen'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]", run.stdout


def _python_value(f: schema.Field, depth: int) -> Any:
    """A value of ``f``'s type as an SDK user passes it (timedelta, datetime, model objects)."""
    if f.kind == "model":
        return _populated(f.model, depth + 1)
    if f.kind in ("list", "dict"):
        assert f.item is not None
        item = _python_value(f.item, depth)
        return [item] if f.kind == "list" else {"k1": item}
    if f.kind == "enum":
        assert f.values
        return sorted(f.values.values())[-1]
    return {
        "str": "x1",
        "int": 7,
        "float": 1.5,
        "bool": True,
        "duration": timedelta(hours=1, minutes=30, seconds=2.5),
        "datetime": datetime(2026, 12, 1, 17, 0, 5, 250000, tzinfo=timezone.utc),
    }.get(f.kind, "x1")


def _populated(name: str, depth: int = 0) -> Any:
    """An SDK model object with every property set (nested models too, to a bounded depth)."""
    cls = _sdk_class(name)
    fields = BARE.models[name].fields
    kwargs: dict[str, Any] = {}
    for attr, rest in cls._attr_to_rest_field.items():
        f = fields.get(rest._rest_name)
        if f is not None and (depth < 8 or f.required):
            kwargs[attr] = _python_value(f, depth)
    return cls(**kwargs)


def test_every_body_the_sdk_serialises_passes_the_type_checks() -> None:
    """No server: each operation's body model, fully populated and serialised by the SDK as it
    sends it (durations, date-times, enums, nested lists), passes unchanged. (The resources
    replaced by PUT are left out: the SDK drops their read-only properties, ``id`` among them,
    and their handlers validate the create model instead.)"""
    replaced = {"BatchJob", "BatchTask", "BatchJobSchedule"}
    checked = sorted({model for model, _entity in bodies.BODY_MODELS.values()} - replaced)
    for model in checked:
        sent = json.loads(json.dumps(_populated(model), cls=SdkJSONEncoder, exclude_readonly=True))
        before = copy.deepcopy(sent)
        BARE.validate(sent, model)
        assert sent == before, model  # the SDK's spelling is the service's: nothing to normalise
    assert len(checked) >= 15
    # The two ISO 8601 spellings of one duration parse alike (the SDK pads: PT01H30M02.5S).
    assert schema.parse_duration("PT01H30M02.5S") == schema.parse_duration("PT1H30M2.5S")
    assert schema.parse_duration("P1Y2M1W") == timedelta(days=365 + 60 + 7)
    assert schema.parse_duration("P99999999999D") == timedelta.max  # Batch's "unlimited"
    for bad in ("PT", "P", "P1DT", "-PT1S", "pt1h", "1 hour"):
        with pytest.raises(ValueError):
            schema.parse_duration(bad)
    # Date-times: .NET's seven fractional digits pass; an offset of 24 hours does not.
    logs = {"containerUrl": "https://h/c", "startTime": "2026-12-01T17:00:05.1234567Z"}
    BARE.validate(logs, "UploadBatchServiceLogsOptions")
    for bad in ("soon", "2026-12-01T17:00:05+24:00", "2026-13-01T00:00:00Z"):
        with pytest.raises(BatchError) as caught:
            BARE.validate({**logs, "endTime": bad}, "UploadBatchServiceLogsOptions")
        assert caught.value.values[0] == ("PropertyName", "endTime"), bad


def _named(err: dict[str, Any] | None) -> tuple[str, str]:
    assert err is not None, err
    values = {v["key"]: v["value"] for v in err.get("values", [])}
    return err["code"], values.get("PropertyName", "")


def _refusals(job_id: str, pool_id: str) -> list[tuple[str, str, object, str, str]]:
    """(method, path, body, code, property path) the service must answer 400 with."""
    task = {"id": "t", "commandLine": "x"}
    output = {"filePattern": "*", "destination": {"container": {"containerUrl": "https://h/c"}}}
    auto_pool = {"vmSize": "x", "taskSchedulingPolicy": {"nodeFillType": "sideways"}}
    return [
        (
            "POST",
            "/pools",
            {
                "id": unique("sp"),
                "vmSize": "x",
                "startTask": {
                    "commandLine": "x",
                    "resourceFiles": [{"httpUrl": "http://h/a", "fileMode": 755}],
                },
            },
            "InvalidPropertyValue",
            "startTask.resourceFiles[0].fileMode",
        ),
        (
            "POST",
            "/jobs",
            {
                "id": unique("sj"),
                "poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job", "pool": auto_pool}},
            },
            "InvalidPropertyValue",
            "poolInfo.autoPoolSpecification.pool.taskSchedulingPolicy.nodeFillType",
        ),
        (
            "POST",
            f"/jobs/{job_id}/tasks",
            {
                **task,
                "exitConditions": {
                    "exitCodeRanges": [{"start": 1, "end": 2, "exitOptions": {"jobAction": 1}}]
                },
            },
            "InvalidPropertyValue",
            "exitConditions.exitCodeRanges[0].exitOptions.jobAction",
        ),
        (  # no hand-written check for multi-instance settings: the SDK's model types them
            "POST",
            f"/jobs/{job_id}/tasks",
            {**task, "multiInstanceSettings": {"numberOfInstances": "two", "coordinationCommandLine": "x"}},
            "InvalidPropertyValue",
            "multiInstanceSettings.numberOfInstances",
        ),
        (
            "PATCH",
            f"/jobs/{job_id}",
            {"constraints": {"maxWallClockTime": 5}},
            "InvalidPropertyValue",
            "constraints.maxWallClockTime",
        ),
        (
            "POST",
            "/jobschedules",
            {
                "id": unique("ss"),
                "schedule": {},
                "jobSpecification": {
                    "poolInfo": {"poolId": pool_id},
                    "jobManagerTask": {**task, "environmentSettings": [{"name": "A", "value": 1}]},
                },
            },
            "InvalidPropertyValue",
            "jobSpecification.jobManagerTask.environmentSettings[0].value",
        ),
        (
            "POST",
            f"/jobs/{job_id}/tasks",
            {**task, "outputFiles": [{**output, "uploadOptions": {}}]},
            "MissingRequiredProperty",
            "outputFiles[0].uploadOptions.uploadCondition",
        ),
        (
            "POST",
            "/pools",
            {
                "id": unique("sp"),
                "vmSize": "x",
                "virtualMachineConfiguration": {"imageReference": {"offer": "o"}},
            },
            "MissingRequiredProperty",
            "virtualMachineConfiguration.nodeAgentSKUId",
        ),
        ("POST", f"/pools/{pool_id}/evaluateautoscale", {}, "MissingRequiredProperty", "autoScaleFormula"),
        (
            "POST",
            f"/jobs/{job_id}/tasks",
            {**task, "dependsOn": {"taskIdRanges": [{"start": 1}]}},
            "MissingRequiredProperty",
            "dependsOn.taskIdRanges[0].end",
        ),
        (  # an id rule of a list item (a trailing newline is no id character)
            "POST",
            f"/jobs/{job_id}/tasks",
            {**task, "dependsOn": {"taskIds": ["a", "b\n"]}},
            "InvalidPropertyValue",
            "dependsOn.taskIds[1]",
        ),
    ]


def _full_task() -> bm.BatchTaskCreateOptions:
    exit_options = bm.ExitOptions(job_action="none", dependency_action="satisfy")
    return bm.BatchTaskCreateOptions(
        id="full",
        display_name="every property localbatch runs",
        command_line="/bin/true",
        exit_conditions=bm.ExitConditions(
            exit_codes=[bm.ExitCodeMapping(code=3, exit_options=exit_options)],
            exit_code_ranges=[bm.ExitCodeRangeMapping(start=4, end=9, exit_options=exit_options)],
            pre_processing_error=exit_options,
            file_upload_error=exit_options,
            default=bm.ExitOptions(job_action="terminate", dependency_action="block"),
        ),
        resource_files=[
            bm.ResourceFile(http_url="https://h/a", file_path="in/a", file_mode="0644"),
            bm.ResourceFile(storage_container_url="https://h/c", blob_prefix="p/"),
        ],
        output_files=[
            bm.OutputFile(
                file_pattern="out/*",
                destination=bm.OutputFileDestination(
                    container=bm.OutputFileBlobContainerDestination(
                        container_url="https://h/c",
                        path="o",
                        upload_headers=[
                            bm.OutputFileUploadHeader(name="x-ms-blob-content-type", value="a/b")
                        ],
                    )
                ),
                upload_options=bm.OutputFileUploadConfiguration(upload_condition="taskcompletion"),
            )
        ],
        environment_settings=[bm.EnvironmentSetting(name="A", value="1"), bm.EnvironmentSetting(name="B")],
        affinity_info=bm.BatchAffinityInfo(affinity_id="tvmps_x_d"),
        constraints=bm.BatchTaskConstraints(
            max_wall_clock_time=timedelta(hours=1, seconds=0.5),
            retention_time=timedelta(days=2),
            max_task_retry_count=-1,
        ),
        required_slots=1,
        user_identity=bm.UserIdentity(
            auto_user=bm.AutoUserSpecification(scope="task", elevation_level="nonadmin")
        ),
        depends_on=bm.BatchTaskDependencies(
            task_ids=["a"], task_id_ranges=[bm.BatchTaskIdRange(start=1, end=3)]
        ),
    )


def _full_job(job_id: str, pool_id: str) -> bm.BatchJobCreateOptions:
    return bm.BatchJobCreateOptions(
        id=job_id,
        display_name="full",
        uses_task_dependencies=True,
        priority=-1000,
        allow_task_preemption=True,
        max_parallel_tasks=4,
        constraints=bm.BatchJobConstraints(max_wall_clock_time=timedelta(days=3), max_task_retry_count=2),
        job_preparation_task=bm.BatchJobPreparationTask(
            id="prep",
            command_line="/bin/true",
            constraints=bm.BatchTaskConstraints(max_task_retry_count=1),
            wait_for_success=True,
            rerun_on_node_reboot_after_success=False,
        ),
        job_release_task=bm.BatchJobReleaseTask(
            command_line="/bin/true",
            max_wall_clock_time=timedelta(minutes=5),
            retention_time=timedelta(hours=1),
        ),
        common_environment_settings=[bm.EnvironmentSetting(name="C", value="3")],
        pool_info=bm.BatchPoolInfo(pool_id=pool_id),
        all_tasks_complete_mode="noaction",
        task_failure_mode="performexitoptionsjobaction",
        metadata=[bm.BatchMetadataItem(name="m", value="")],
    )


def _full_pool(pool_id: str) -> bm.BatchPoolCreateOptions:
    return bm.BatchPoolCreateOptions(
        id=pool_id,
        display_name="full",
        vm_size="standard_d2s_v5",
        virtual_machine_configuration=bm.VirtualMachineConfiguration(
            image_reference=bm.BatchVmImageReference(
                publisher="canonical", offer="ubuntu-24_04-lts", sku="server", version="latest"
            ),
            node_agent_sku_id="batch.node.ubuntu 24.04",
            data_disks=[bm.DataDisk(logical_unit_number=0, disk_size_gb=8, caching="readonly")],
        ),
        resize_timeout=timedelta(minutes=15),
        target_dedicated_nodes=0,
        target_low_priority_nodes=0,
        enable_inter_node_communication=False,
        start_task=bm.BatchStartTask(
            command_line="/bin/true",
            environment_settings=[bm.EnvironmentSetting(name="S", value="1")],
            max_task_retry_count=1,
            wait_for_success=True,
        ),
        task_slots_per_node=2,
        task_scheduling_policy=bm.BatchTaskSchedulingPolicy(node_fill_type="pack"),
        user_accounts=[bm.UserAccount(name="u", password="p", elevation_level="admin")],
        metadata=[bm.BatchMetadataItem(name="m", value="v")],
    )


def _check_action_options(raw: RawBatch, job_id: str, pool_id: str) -> None:
    """A node/job action's option takes the SDK enum's values, in any case (no hand-kept sets): a
    value outside it is refused naming them, before the (missing) node is looked up."""
    node = f"/pools/{pool_id}/nodes/nonode"
    actions = [
        (f"{node}/reboot", "nodeRebootOption", _enums.BatchNodeRebootKind),
        (f"{node}/reimage", "nodeReimageOption", _enums.BatchNodeReimageOption),
        (f"{node}/deallocate", "nodeDeallocateOption", _enums.BatchNodeDeallocateOption),
        (f"{node}/disablescheduling", "nodeDisableSchedulingOption", bm.BatchNodeDisableSchedulingOption),
        (f"/jobs/{job_id}/disable", "disableTasks", bm.DisableBatchJobOption),
    ]
    for path, key, enum in actions:
        status, err, _ = raw.send("POST", path, json.dumps({key: "sideways"}).encode())
        assert err is not None and (status, *_named(err)) == (400, "InvalidPropertyValue", key), (path, err)
        reason = {v["key"]: v["value"] for v in err["values"]}["Reason"]  # type: ignore[index]
        assert reason == "must be one of " + ", ".join(sorted(e.value for e in enum)), path
        if "nonode" in path:
            status, err, _ = raw.send("POST", path, json.dumps({key: "TaskCompletion"}).encode())
            assert (status, err and err["code"]) == (404, "NodeNotFound"), (path, err)
    status, err, _ = raw.send("POST", f"/jobs/{job_id}/disable", b"{}")
    assert (status, *_named(err)) == (400, "MissingRequiredProperty", "disableTasks")


def test_the_service_validates_as_the_sdk_models_declare(raw: RawBatch, client: BatchClient) -> None:
    """Wrong types deep in bodies name their path; required properties missing are named; fully
    populated SDK models are accepted, and what the service normalises it stores normalised."""
    pool_id, job_id = unique("schemapool"), unique("schemajob")
    client.create_pool(_full_pool(pool_id))  # no nodes: the job's tasks never run
    try:
        client.create_job(_full_job(job_id, pool_id))
        for method, path, body, code, prop in _refusals(job_id, pool_id):
            status, err, _ = raw.send(method, path, json.dumps(body).encode())
            assert (status, *_named(err)) == (400, code, prop), (method, path, err)
        assert not list(client.list_tasks(job_id)) and client.get_job(job_id).constraints.max_wall_clock_time
        _check_action_options(raw, job_id, pool_id)
        client.create_task(job_id, _full_task())
        # As clients other than this SDK send them: an integer as a string, an enum in another case.
        output = {
            **_full_task().output_files[0].as_dict(),
            "uploadOptions": {"uploadCondition": "TaskSuccess"},
        }
        sloppy = {
            "id": "n",
            "commandLine": "x",
            "constraints": {"maxTaskRetryCount": " 3"},
            "outputFiles": [output],
        }
        assert raw.send("POST", f"/jobs/{job_id}/tasks", json.dumps(sloppy).encode())[0] == 201
        task = client.get_task(job_id, "n")
        assert task.constraints.max_task_retry_count == 3
        assert task.output_files[0].upload_options.upload_condition == "tasksuccess"
        full = client.get_task(job_id, "full")
        assert full.constraints.max_wall_clock_time == timedelta(hours=1, seconds=0.5)
        assert full.exit_conditions.exit_code_ranges[0].end == 9 and full.depends_on.task_ids == ["a"]
        pool = client.get_pool(pool_id)
        assert pool.task_scheduling_policy.node_fill_type == "pack" and pool.resize_timeout == timedelta(
            minutes=15
        )
    finally:
        with contextlib.suppress(ResourceNotFoundError):
            client.begin_delete_job(job_id, polling_interval=0.05).result(timeout=10)
        client.begin_delete_pool(pool_id, polling_interval=0.05).result(timeout=10)
