"""Configuration: defaults shared with PoolSpec and Pulumi.yaml, parsing, and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with pulumi; no stubs installed

from infra.config import AuthMode, BatchEnvironmentArgs, InfraConfigError, PrincipalKind, load_config
from runner.pool_spec import AutoscaleSpec, ImageSpec, PoolSpec
from tests.infra.mocks import PROJECT, start_engine

PULUMI_YAML = Path(__file__).resolve().parents[2] / "Pulumi.yaml"


def project_schema() -> dict[str, dict[str, Any]]:
    schema = yaml.safe_load(PULUMI_YAML.read_text())["config"]
    assert isinstance(schema, dict)
    return schema


def as_engine_value(value: object) -> str:
    """How the engine hands a typed default to the program: as a string (booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RecordingConfig(pulumi.Config):
    """A config bag that remembers which keys the program read."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.read: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def get_int(self, key: str, default: int | None = None) -> int | None:  # type: ignore[override]
        self.read.add(key)
        return super().get_int(key, default)

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:  # type: ignore[override]
        self.read.add(key)
        return super().get_bool(key, default)


def test_defaults_are_the_shared_pool_spec() -> None:
    start_engine({})
    assert load_config() == BatchEnvironmentArgs(
        pool=PoolSpec(), auth_mode=AuthMode.SHARED_KEY, location=None
    )


def test_pulumi_yaml_declares_every_key_the_program_reads() -> None:
    start_engine({})
    recording = RecordingConfig()
    load_config(recording)
    assert set(project_schema()) == recording.read


def test_pulumi_yaml_schema_is_typed_and_described() -> None:
    for key, declaration in project_schema().items():
        assert ":" not in key, "project keys carry no namespace in Pulumi.yaml"
        assert declaration["type"] in {"string", "integer", "boolean"}, key
        assert declaration.get("description"), key
        if "default" in declaration:
            expected = {"string": str, "integer": int, "boolean": bool}[declaration["type"]]
            assert type(declaration["default"]) is expected, key
    # The region falls back to the provider's own setting (azure-native:location); the others
    # name something that exists only when the user has one (a group, a subnet, a workspace).
    assert [key for key, d in project_schema().items() if "default" not in d] == [
        "location",
        "dataAccessGroupId",
        "subnetId",
        "allowedIpRanges",
        "logAnalyticsWorkspaceId",
    ]


def test_pulumi_yaml_defaults_equal_the_program_defaults() -> None:
    defaults = {k: as_engine_value(d["default"]) for k, d in project_schema().items() if "default" in d}
    start_engine(defaults)
    from_yaml = load_config()
    start_engine({})
    assert from_yaml == load_config()


def test_every_key_is_applied() -> None:
    start_engine(
        {
            "location": "northeurope",
            "authMode": "entra",
            "deployerPrincipalType": "ServicePrincipal",
            "poolId": "big_pool-2",
            "vmSize": "Standard_F4s_v2",
            "nodeCount": "3",
            "spotNodeCount": "5",
            "autoscale": "true",
            "minNodes": "1",
            "maxNodes": "9",
            "taskSlotsPerNode": "4",
            "imagePublisher": "debian",
            "imageOffer": "debian-12",
            "imageSku": "12",
            "imageVersion": "0.20250101.1",
            "nodeAgentSkuId": "batch.node.debian 12",
        }
    )
    config = load_config()
    assert config.location == "northeurope"
    assert config.auth_mode is AuthMode.ENTRA and config.entra
    assert config.deployer_type is PrincipalKind.SERVICE_PRINCIPAL
    pool = config.pool
    assert (pool.pool_id, pool.vm_size, pool.dedicated_nodes, pool.spot_nodes, pool.task_slots_per_node) == (
        "big_pool-2",
        "Standard_F4s_v2",
        3,
        5,
        4,
    )
    assert pool.autoscale == AutoscaleSpec(min_nodes=1, max_nodes=9)
    assert pool.image == ImageSpec("debian", "debian-12", "12", "0.20250101.1", "batch.node.debian 12")
    # What the program does not configure stays the shared definition.
    assert pool.start_task == PoolSpec().start_task
    assert pool.tags == PoolSpec().tags


def test_autoscale_off_keeps_fixed_scale() -> None:
    start_engine({"autoscale": "false", "minNodes": "2", "maxNodes": "3"})
    assert load_config().pool.autoscale is None


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("nodeCount", "-1", ">= 0"),
        ("nodeCount", "two", "must be an integer"),
        ("spotNodeCount", "-3", ">= 0"),
        ("taskSlotsPerNode", "0", "between 1 and 256"),
        ("taskSlotsPerNode", "257", "between 1 and 256"),
        ("minNodes", "-1", ">= 0"),
        ("maxNodes", "0", ">= 1"),
        ("authMode", "kerberos", "sharedKey, entra"),
        ("authMode", "SharedKey", "sharedKey, entra"),
        ("deployerPrincipalType", "robot", "User, ServicePrincipal"),
        ("deployerPrincipalType", "Group", "give a group its roles with dataAccessGroupId"),
        ("autoscale", "maybe", "true or false"),
        ("poolId", "my pool", "letters, digits, hyphens or underscores"),
        ("poolId", "p" * 65, "1 to 64"),
        ("vmSize", "  ", "must not be empty"),
    ],
)
def test_invalid_value_names_the_key_and_the_allowed_values(key: str, value: str, allowed: str) -> None:
    start_engine({key: value})
    with pytest.raises(InfraConfigError) as raised:
        load_config()
    assert raised.value.key == f"{PROJECT}:{key}"
    message = str(raised.value)
    assert message.startswith(f"{PROJECT}:{key}: ")
    assert allowed in message


def test_task_slots_are_bounded_by_the_vm_size_as_batch_does() -> None:
    """Batch allows at most 4 x the VM size's vCPUs: refused here, not at `pulumi up`."""
    start_engine({"taskSlotsPerNode": "9"})  # the default Standard_D2s_v5 has 2 vCPUs
    with pytest.raises(InfraConfigError) as raised:
        load_config()
    assert raised.value.key == f"{PROJECT}:taskSlotsPerNode"
    assert "at most 8 (4 x the 2 vCPUs of vmSize Standard_D2s_v5), got 9" in str(raised.value)
    start_engine({"taskSlotsPerNode": "8"})
    assert load_config().pool.task_slots_per_node == 8
    start_engine({"vmSize": "Standard_NC24ads_A100_v4", "taskSlotsPerNode": "96"})
    assert load_config().pool.task_slots_per_node == 96
    start_engine({"vmSize": "Standard_E8-4s_v5", "taskSlotsPerNode": "32"})
    assert load_config().pool.task_slots_per_node == 32
    start_engine({"vmSize": "some_future_size", "taskSlotsPerNode": "200"})  # unknown scheme: Azure decides
    assert load_config().pool.task_slots_per_node == 200


def test_max_nodes_below_min_nodes_names_both() -> None:
    start_engine({"autoscale": "true", "minNodes": "5", "maxNodes": "2"})
    with pytest.raises(InfraConfigError) as raised:
        load_config()
    assert raised.value.key == f"{PROJECT}:maxNodes"
    assert "minNodes (5)" in str(raised.value)
    assert "got 2" in str(raised.value)


def test_config_errors_end_the_program_cleanly() -> None:
    # pulumi prints a RunError as one line, without the program's traceback.
    assert issubclass(InfraConfigError, pulumi.RunError)
