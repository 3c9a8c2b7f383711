"""The BatchEnvironment component under Pulumi mocks: resources, security, pool, outputs contract."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from infra.environment import COMPONENT_TYPE
from infra.roles import BuiltInRole
from runner.pool_spec import START_TASK_COMMAND, AutoscaleSpec, ImageSpec, PoolSpec
from tests.infra.conftest import Deployment
from tests.infra.mocks import LOCATION

Deploy = Callable[[dict[str, str]], Deployment]

RG = "azure-native:resources:ResourceGroup"
STORAGE = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
BATCH = "azure-native:batch:BatchAccount"
POOL = "azure-native:batch:Pool"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
ROLE = "azure-native:authorization:RoleAssignment"

# docs/architecture.md, "Outputs contract": the only keys the runner reads.
CONTRACT = [
    "batchAccountName",
    "batchAccountUrl",
    "batchAccountKey",
    "storageAccountName",
    "storageAccountKey",
    "storageBlobEndpoint",
    "poolId",
    "inputContainer",
    "outputContainer",
    "applicationContainer",
]
KEYS = {"batchAccountKey", "storageAccountKey"}


def role_id(deployment: Deployment, role: BuiltInRole) -> str:
    return (
        f"/subscriptions/{deployment.mocks.subscription_id}"
        f"/providers/Microsoft.Authorization/roleDefinitions/{role.value}"
    )


def test_shared_key_mode_declares_exactly_the_expected_resources(deploy: Deploy) -> None:
    deployment = deploy({})
    types = sorted(r.type for r in deployment.mocks.resources)
    expected = [COMPONENT_TYPE, RG, STORAGE, CONTAINER, CONTAINER, CONTAINER, BATCH, POOL, IDENTITY, ROLE]
    assert types == sorted(expected)


def test_entra_mode_adds_the_deployer_role_assignments(deploy: Deploy) -> None:
    deployment = deploy({"authMode": "entra"})
    types = sorted(r.type for r in deployment.mocks.resources)
    expected = [COMPONENT_TYPE, RG, STORAGE, CONTAINER, CONTAINER, CONTAINER, BATCH, POOL, IDENTITY]
    assert types == sorted([*expected, ROLE, ROLE, ROLE])


EVERYTHING_ON = {
    "authMode": "entra",
    "dataAccessGroupId": "0b5e3f0c-6d2a-4c1e-9f7a-2a4d8c6e1b3f",
    "network": "private",
    "poolIdentity": "true",
    "diagnostics": "true",
}


@pytest.mark.parametrize(
    "config", [{}, {"authMode": "entra"}, EVERYTHING_ON], ids=["default", "entra", "all"]
)
def test_every_resource_is_a_child_of_the_component(deploy: Deploy, config: dict[str, str]) -> None:
    deployment = deploy(config)
    # Every resource the provider saw is one the component holds, so the URN check covers them all.
    assert len(deployment.urns) == len(deployment.mocks.resources) - 1
    for name, urn in deployment.urns.items():
        assert f"::{COMPONENT_TYPE}$azure-native:" in urn, name
        assert urn.endswith(f"::{name}"), urn


@pytest.mark.parametrize(("auth_mode", "shared_key"), [("sharedKey", True), ("entra", False)])
def test_storage_account_is_locked_down(deploy: Deploy, auth_mode: str, shared_key: bool) -> None:
    deployment = deploy({"authMode": auth_mode})
    account = deployment.mocks.one(STORAGE).inputs
    group = deployment.mocks.one(RG).state
    assert account["kind"] == "StorageV2"
    assert account["sku"] == {"name": "Standard_LRS"}
    assert account["enableHttpsTrafficOnly"] is True
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["allowBlobPublicAccess"] is False
    assert account["allowSharedKeyAccess"] is shared_key
    assert account["resourceGroupName"] == group["name"]
    assert account["location"] == group["location"]


def test_containers_are_private_and_in_the_account(deploy: Deploy) -> None:
    deployment = deploy({})
    account = deployment.mocks.one(STORAGE).state
    containers = deployment.mocks.of_type(CONTAINER)
    assert sorted(c.inputs["containerName"] for c in containers) == ["application", "input", "output"]
    for container in containers:
        assert container.inputs["publicAccess"] == "None"
        assert container.inputs["accountName"] == account["name"]
        assert container.inputs["resourceGroupName"] == deployment.mocks.one(RG).state["name"]


@pytest.mark.parametrize(("auth_mode", "modes"), [("sharedKey", ["SharedKey", "AAD"]), ("entra", ["AAD"])])
def test_batch_account_uses_its_identity_for_auto_storage(
    deploy: Deploy, auth_mode: str, modes: list[str]
) -> None:
    """No storage key is involved between Batch and its auto-storage account, in either mode."""
    deployment = deploy({"authMode": auth_mode})
    mocks = deployment.mocks
    account = mocks.one(BATCH).inputs
    identity = mocks.one(IDENTITY).state
    storage_id = mocks.one(STORAGE).state["id"]
    assert account["poolAllocationMode"] == "BatchService"
    assert account["allowedAuthenticationModes"] == modes
    assert account["autoStorage"] == {
        "storageAccountId": storage_id,
        "authenticationMode": "BatchAccountManagedIdentity",
    }
    assert account["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [identity["id"]]}
    grant = next(r for r in mocks.of_type(ROLE) if r.name == "batch-identity-blob").inputs
    assert grant["principalId"] == identity["principalId"]
    assert grant["principalType"] == "ServicePrincipal"
    assert grant["scope"] == storage_id
    assert grant["roleDefinitionId"] == role_id(deployment, BuiltInRole.STORAGE_BLOB_DATA_CONTRIBUTOR)


@pytest.mark.parametrize("principal_type", ["User", "ServicePrincipal"])
def test_entra_mode_grants_the_deploying_principal_data_access(deploy: Deploy, principal_type: str) -> None:
    deployment = deploy({"authMode": "entra", "deployerPrincipalType": principal_type})
    mocks = deployment.mocks
    grants = {r.name: r.inputs for r in mocks.of_type(ROLE)}
    assert set(grants) == {"batch-identity-blob", "deployer-batch", "deployer-blob"}
    expected = {
        "deployer-batch": (mocks.one(BATCH).state["id"], BuiltInRole.AZURE_BATCH_DATA_CONTRIBUTOR),
        "deployer-blob": (mocks.one(STORAGE).state["id"], BuiltInRole.STORAGE_BLOB_DATA_CONTRIBUTOR),
    }
    for name, (scope, role) in expected.items():
        assert grants[name]["principalId"] == mocks.deployer_object_id, name
        assert grants[name]["scope"] == scope, name
        assert grants[name]["roleDefinitionId"] == role_id(deployment, role), name
        assert grants[name]["principalType"] == principal_type, name


def test_shared_key_outputs_are_exactly_the_contract(deploy: Deploy) -> None:
    deployment = deploy({})
    mocks = deployment.mocks
    values = deployment.outputs.values
    assert list(values) == CONTRACT
    batch = mocks.one(BATCH).state
    storage = mocks.one(STORAGE).state
    assert values["batchAccountName"] == batch["name"]
    assert values["batchAccountUrl"] == f"https://{batch['name']}.{LOCATION}.batch.azure.com"
    assert values["batchAccountKey"] == mocks.batch_key
    assert values["storageAccountName"] == storage["name"]
    assert values["storageAccountKey"] == mocks.storage_key
    assert values["storageBlobEndpoint"] == f"https://{storage['name']}.blob.core.windows.net/"
    assert values["poolId"] == PoolSpec().pool_id
    assert (values["inputContainer"], values["outputContainer"], values["applicationContainer"]) == (
        "input",
        "output",
        "application",
    )


def test_key_outputs_are_secrets_and_nothing_else_is(deploy: Deploy) -> None:
    deployment = deploy({})
    secret = deployment.outputs.secret
    assert {key for key, is_secret in secret.items() if is_secret} == KEYS


def test_keys_are_listed_for_the_created_accounts(deploy: Deploy) -> None:
    deployment = deploy({})
    mocks = deployment.mocks
    group = mocks.one(RG).state["name"]
    calls = {call.token: call.args for call in mocks.calls}
    assert calls["azure-native:batch:listBatchAccountKeys"] == {
        "accountName": mocks.one(BATCH).state["name"],
        "resourceGroupName": group,
    }
    assert calls["azure-native:storage:listStorageAccountKeys"] == {
        "accountName": mocks.one(STORAGE).state["name"],
        "resourceGroupName": group,
    }


def test_entra_mode_exports_no_key_and_lists_none(deploy: Deploy) -> None:
    deployment = deploy({"authMode": "entra"})
    assert list(deployment.outputs.values) == [key for key in CONTRACT if key not in KEYS]
    assert not any(deployment.outputs.secret.values())
    assert [call.token for call in deployment.mocks.calls] == ["azure-native:authorization:getClientConfig"]


def test_pool_is_the_shared_pool_spec(deploy: Deploy) -> None:
    deployment = deploy({})
    pool = deployment.mocks.one(POOL).inputs
    spec = PoolSpec()
    image = ImageSpec()
    assert pool["accountName"] == deployment.mocks.one(BATCH).state["name"]
    assert pool["resourceGroupName"] == deployment.mocks.one(RG).state["name"]
    assert pool["poolName"] == spec.pool_id
    assert pool["vmSize"] == spec.vm_size
    assert pool["deploymentConfiguration"] == {
        "virtualMachineConfiguration": {
            "imageReference": {
                "publisher": image.publisher,
                "offer": image.offer,
                "sku": image.sku,
                "version": image.version,
            },
            "nodeAgentSkuId": image.node_agent_sku_id,
            "securityProfile": {
                "securityType": "trustedLaunch",
                "uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": True},
            },
        }
    }
    assert pool["targetNodeCommunicationMode"] == "Simplified"
    assert "networkConfiguration" not in pool and "identity" not in pool
    assert pool["startTask"] == {
        "commandLine": START_TASK_COMMAND,
        "waitForSuccess": True,
        "maxTaskRetryCount": spec.start_task.max_task_retry_count,
        "userIdentity": {"autoUser": {"scope": "Pool", "elevationLevel": "Admin"}},
    }
    assert pool["taskSlotsPerNode"] == spec.task_slots_per_node
    assert pool["scaleSettings"] == {
        "fixedScale": {
            "targetDedicatedNodes": spec.dedicated_nodes,
            "targetLowPriorityNodes": spec.spot_nodes,
            "nodeDeallocationOption": "TaskCompletion",
            "resizeTimeout": "PT15M",  # the provider's default
        }
    }
    assert pool["metadata"] == [{"name": k, "value": v} for k, v in sorted(spec.tags.items())]
    assert pool["tags"] == spec.tags


def test_pool_follows_the_configuration(deploy: Deploy) -> None:
    config = {
        "poolId": "nightly",
        "vmSize": "Standard_F8s_v2",
        "nodeCount": "5",
        "spotNodeCount": "3",
        "taskSlotsPerNode": "8",
        "imagePublisher": "debian",
        "imageOffer": "debian-12",
        "imageSku": "12",
        "nodeAgentSkuId": "batch.node.debian 12",
    }
    deployment = deploy(config)
    pool = deployment.mocks.one(POOL).inputs
    assert (pool["poolName"], pool["vmSize"], pool["taskSlotsPerNode"]) == ("nightly", "Standard_F8s_v2", 8)
    assert pool["scaleSettings"]["fixedScale"]["targetDedicatedNodes"] == 5
    assert pool["scaleSettings"]["fixedScale"]["targetLowPriorityNodes"] == 3
    vm = pool["deploymentConfiguration"]["virtualMachineConfiguration"]
    assert vm["imageReference"]["publisher"] == "debian"
    assert vm["imageReference"]["offer"] == "debian-12"
    assert vm["imageReference"]["sku"] == "12"
    assert vm["nodeAgentSkuId"] == "batch.node.debian 12"
    assert deployment.outputs.values["poolId"] == "nightly"


def test_autoscale_formula_has_the_configured_bounds(deploy: Deploy) -> None:
    deployment = deploy({"autoscale": "true", "minNodes": "0", "maxNodes": "7", "taskSlotsPerNode": "2"})
    scale = deployment.mocks.one(POOL).inputs["scaleSettings"]
    assert set(scale) == {"autoScale"}
    spec = AutoscaleSpec(min_nodes=0, max_nodes=7)
    assert scale["autoScale"] == {
        "formula": spec.formula(2),
        "evaluationInterval": f"PT{spec.evaluation_interval_minutes}M",
    }
    formula = scale["autoScale"]["formula"]
    assert "$TargetDedicatedNodes = max(0, min(7, $wanted));" in formula
    assert "$pending + 1) / 2" in formula


def test_location_applies_to_the_resource_group_and_everything_in_it(deploy: Deploy) -> None:
    deployment = deploy({"location": "northeurope", "authMode": "entra"})
    mocks = deployment.mocks
    assert mocks.one(RG).inputs["location"] == "northeurope"
    for token in (STORAGE, BATCH, IDENTITY):
        assert mocks.one(token).inputs["location"] == "northeurope", token
    assert deployment.outputs.values["batchAccountUrl"].endswith(".northeurope.batch.azure.com")


def test_without_location_the_provider_default_is_used(deploy: Deploy) -> None:
    deployment = deploy({})
    assert "location" not in deployment.mocks.one(RG).inputs
    assert deployment.mocks.one(STORAGE).inputs["location"] == LOCATION
