"""The security keys under mocks: the exact inputs of what each one adds, and its absence when off."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra.roles import BuiltInRole
from runner.pool_spec import AutoscaleSpec
from tests.infra.conftest import Deployment
from tests.infra.mocks import AzureMocks, RecordedResource
from tests.infra.test_security_config import GROUP, SUBNET, WORKSPACE

Deploy = Callable[[dict[str, str]], Deployment]

STORAGE = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
BATCH = "azure-native:batch:BatchAccount"
POOL = "azure-native:batch:Pool"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
ROLE = "azure-native:authorization:RoleAssignment"
VNET = "azure-native:network:VirtualNetwork"
SUBNET_TYPE = "azure-native:network:Subnet"
PUBLIC_IP = "azure-native:network:PublicIPAddress"
NAT = "azure-native:network:NatGateway"
ENDPOINT = "azure-native:network:PrivateEndpoint"
ZONE_GROUP = "azure-native:network:PrivateDnsZoneGroup"
ZONE = "azure-native:privatedns:PrivateZone"
LINK = "azure-native:privatedns:VirtualNetworkLink"
WORKSPACE_TYPE = "azure-native:operationalinsights:Workspace"
SETTING = "azure-native:monitor:DiagnosticSetting"
# What the provider adds to every subnet it sends (network policies on private endpoints: off).
PROVIDER_SUBNET_DEFAULTS = {
    "privateEndpointNetworkPolicies": "Disabled",
    "privateLinkServiceNetworkPolicies": "Enabled",
}
NETWORK_TYPES = {VNET, SUBNET_TYPE, PUBLIC_IP, NAT, ENDPOINT, ZONE_GROUP, ZONE, LINK}


def named(mocks: AzureMocks, name: str) -> RecordedResource:
    found = [r for r in mocks.resources if r.name == name]
    assert len(found) == 1, name
    return found[0]


def role_id(deployment: Deployment, role: BuiltInRole) -> str:
    return (
        f"/subscriptions/{deployment.mocks.subscription_id}"
        f"/providers/Microsoft.Authorization/roleDefinitions/{role.value}"
    )


def types(mocks: AzureMocks) -> set[str]:
    return {r.type for r in mocks.resources}


# --- trusted launch -------------------------------------------------------------------------


def test_trusted_launch_off_leaves_the_security_profile_out(deploy: Deploy) -> None:
    vm = deploy({"trustedLaunch": "false"}).mocks.one(POOL).inputs["deploymentConfiguration"]
    assert "securityProfile" not in vm["virtualMachineConfiguration"]


def test_simplified_communication_whatever_the_options(deploy: Deploy) -> None:
    pool = deploy({"trustedLaunch": "false", "network": "private"}).mocks.one(POOL).inputs
    assert pool["targetNodeCommunicationMode"] == "Simplified"


# --- auto-storage ---------------------------------------------------------------------------


def test_auto_storage_with_keys_needs_no_identity_or_role(deploy: Deploy) -> None:
    mocks = deploy({"autoStorageIdentity": "false"}).mocks
    account = mocks.one(BATCH).inputs
    assert account["autoStorage"] == {
        "storageAccountId": mocks.one(STORAGE).state["id"],
        "authenticationMode": "StorageKeys",
    }
    assert "identity" not in account
    assert not types(mocks) & {IDENTITY, ROLE}


# --- network: public (default) and private ----------------------------------------------------


def test_public_network_declares_no_network_resource(deploy: Deploy) -> None:
    mocks = deploy({}).mocks
    assert not types(mocks) & NETWORK_TYPES
    assert mocks.one(BATCH).inputs["publicNetworkAccess"] == "Enabled"
    assert "networkProfile" not in mocks.one(BATCH).inputs
    assert mocks.one(STORAGE).inputs["publicNetworkAccess"] == "Enabled"
    assert mocks.one(STORAGE).inputs["networkRuleSet"] == {
        "defaultAction": "Allow",
        "bypass": "AzureServices",
    }


def test_private_network_creates_the_network_and_keeps_nodes_off_the_internet(deploy: Deploy) -> None:
    mocks = deploy({"network": "private"}).mocks
    vnet = mocks.one(VNET)
    assert vnet.inputs["addressSpace"] == {"addressPrefixes": ["10.20.0.0/22"]}
    nodes, endpoints = named(mocks, "nodes"), named(mocks, "endpoints")
    nat, address = mocks.one(NAT), mocks.one(PUBLIC_IP)
    assert nodes.inputs == {
        "resourceGroupName": vnet.inputs["resourceGroupName"],
        "virtualNetworkName": vnet.state["name"],
        "addressPrefix": "10.20.0.0/23",
        "natGateway": {"id": nat.state["id"]},
        "defaultOutboundAccess": False,
        **PROVIDER_SUBNET_DEFAULTS,
    }
    assert endpoints.inputs["addressPrefix"] == "10.20.2.0/28"
    assert endpoints.inputs["defaultOutboundAccess"] is False
    assert "natGateway" not in endpoints.inputs
    assert nat.inputs["sku"] == {"name": "Standard"}
    assert nat.inputs["publicIpAddresses"] == [{"id": address.state["id"]}]
    assert address.inputs["sku"] == {"name": "Standard"}
    assert address.inputs["publicIPAllocationMethod"] == "Static"
    assert mocks.one(POOL).inputs["networkConfiguration"] == {
        "subnetId": nodes.state["id"],
        "publicIPAddressConfiguration": {"provision": "NoPublicIPAddresses"},
        "dynamicVnetAssignmentScope": "none",  # the provider's default
    }


def test_private_network_closes_both_accounts(deploy: Deploy) -> None:
    mocks = deploy({"network": "private"}).mocks
    batch, storage = mocks.one(BATCH).inputs, mocks.one(STORAGE).inputs
    assert batch["publicNetworkAccess"] == "Disabled"
    assert "networkProfile" not in batch
    assert storage["publicNetworkAccess"] == "Disabled"
    assert storage["networkRuleSet"] == {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": []}


def test_private_endpoints_for_batch_node_management_and_blobs(deploy: Deploy) -> None:
    mocks = deploy({"network": "private"}).mocks
    subnet_id = named(mocks, "endpoints").state["id"]
    targets = {"pe-batch": BATCH, "pe-node": BATCH, "pe-blob": STORAGE}
    groups = {"pe-batch": "batchAccount", "pe-node": "nodeManagement", "pe-blob": "blob"}
    zones = {"pe-batch": "privatelink.batch.azure.com", "pe-node": "privatelink.batch.azure.com"}
    zones["pe-blob"] = "privatelink.blob.core.windows.net"
    assert sorted(r.name for r in mocks.of_type(ENDPOINT)) == sorted(targets)
    for name, target in targets.items():
        endpoint = named(mocks, name)
        assert endpoint.inputs["subnet"] == {"id": subnet_id, **PROVIDER_SUBNET_DEFAULTS}, name
        assert endpoint.inputs["privateLinkServiceConnections"] == [
            {
                "name": groups[name],
                "privateLinkServiceId": mocks.one(target).state["id"],
                "groupIds": [groups[name]],
            }
        ], name
        zone_group = named(mocks, f"{name}-dns").inputs
        zone = next(z for z in mocks.of_type(ZONE) if z.inputs["privateZoneName"] == zones[name])
        assert zone_group["privateEndpointName"] == endpoint.state["name"], name
        assert zone_group["privateDnsZoneConfigs"] == [
            {"name": groups[name], "privateDnsZoneId": zone.state["id"]}
        ], name


def test_private_dns_zones_are_global_and_linked_to_the_network(deploy: Deploy) -> None:
    mocks = deploy({"network": "private"}).mocks
    vnet_id = mocks.one(VNET).state["id"]
    zones = {z.state["name"]: z for z in mocks.of_type(ZONE)}
    assert set(zones) == {"privatelink.batch.azure.com", "privatelink.blob.core.windows.net"}
    links = mocks.of_type(LINK)
    assert sorted(link.inputs["privateZoneName"] for link in links) == sorted(zones)
    for link in links:
        assert link.inputs["location"] == "global"
        assert link.inputs["virtualNetwork"] == {"id": vnet_id}
        assert link.inputs["registrationEnabled"] is False
    assert all(zone.inputs["location"] == "global" for zone in zones.values())


def test_allowed_ip_ranges_open_the_firewalls_to_them_only(deploy: Deploy) -> None:
    mocks = deploy({"network": "private", "allowedIpRanges": "203.0.113.7,198.51.100.0/24"}).mocks
    batch, storage = mocks.one(BATCH).inputs, mocks.one(STORAGE).inputs
    assert batch["publicNetworkAccess"] == "Enabled"
    assert batch["networkProfile"] == {
        "accountAccess": {
            "defaultAction": "Deny",
            "ipRules": [
                {"action": "Allow", "value": "203.0.113.7"},
                {"action": "Allow", "value": "198.51.100.0/24"},
            ],
        },
        "nodeManagementAccess": {"defaultAction": "Deny"},
    }
    assert storage["publicNetworkAccess"] == "Enabled"
    assert storage["networkRuleSet"] == {
        "defaultAction": "Deny",
        "bypass": "AzureServices",
        "ipRules": [
            {"iPAddressOrRange": "203.0.113.7", "action": "Allow"},
            {"iPAddressOrRange": "198.51.100.0/24", "action": "Allow"},
        ],
    }


def test_an_existing_subnet_replaces_the_created_network(deploy: Deploy) -> None:
    mocks = deploy({"network": "private", "subnetId": SUBNET}).mocks
    assert not types(mocks) & {VNET, SUBNET_TYPE, PUBLIC_IP, NAT}
    assert mocks.one(POOL).inputs["networkConfiguration"]["subnetId"] == SUBNET
    assert {e.inputs["subnet"]["id"] for e in mocks.of_type(ENDPOINT)} == {SUBNET}
    vnet_id = SUBNET.rsplit("/subnets/", 1)[0]
    assert {link.inputs["virtualNetwork"]["id"] for link in mocks.of_type(LINK)} == {vnet_id}


# --- pool identity --------------------------------------------------------------------------


def test_pool_identity_off_gives_the_pool_no_identity(deploy: Deploy) -> None:
    mocks = deploy({}).mocks
    assert "identity" not in mocks.one(POOL).inputs
    assert [r.name for r in mocks.of_type(IDENTITY)] == ["batch-identity"]


@pytest.mark.parametrize("auth_mode", ["sharedKey", "entra"])
def test_pool_identity_reads_inputs_and_writes_outputs_only(deploy: Deploy, auth_mode: str) -> None:
    deployment = deploy({"poolIdentity": "true", "authMode": auth_mode})
    mocks = deployment.mocks
    identity = named(mocks, "pool-identity").state
    assert mocks.one(POOL).inputs["identity"] == {
        "type": "UserAssigned",
        "userAssignedIdentities": [identity["id"]],
    }
    containers = {c.inputs["containerName"]: c.state["id"] for c in mocks.of_type(CONTAINER)}
    expected = {
        "input": BuiltInRole.STORAGE_BLOB_DATA_READER,
        "application": BuiltInRole.STORAGE_BLOB_DATA_READER,
        "output": BuiltInRole.STORAGE_BLOB_DATA_CONTRIBUTOR,
    }
    grants = [r.inputs for r in mocks.of_type(ROLE) if r.inputs["principalId"] == identity["principalId"]]
    assert sorted((g["scope"], g["roleDefinitionId"]) for g in grants) == sorted(
        (containers[name], role_id(deployment, role)) for name, role in expected.items()
    )
    assert all(g["principalType"] == "ServicePrincipal" for g in grants)


# --- data access group ----------------------------------------------------------------------


def test_data_access_group_gets_the_deployer_roles_as_a_group(deploy: Deploy) -> None:
    deployment = deploy({"authMode": "entra", "dataAccessGroupId": GROUP})
    mocks = deployment.mocks
    grants = {r.name: r.inputs for r in mocks.of_type(ROLE)}
    assert set(grants) == {
        "batch-identity-blob",
        "deployer-batch",
        "deployer-blob",
        "group-batch",
        "group-blob",
    }
    assert grants["group-batch"] == {
        "principalId": GROUP,
        "principalType": "Group",
        "roleDefinitionId": role_id(deployment, BuiltInRole.AZURE_BATCH_DATA_CONTRIBUTOR),
        "scope": mocks.one(BATCH).state["id"],
    }
    assert grants["group-blob"] == {
        "principalId": GROUP,
        "principalType": "Group",
        "roleDefinitionId": role_id(deployment, BuiltInRole.STORAGE_BLOB_DATA_CONTRIBUTOR),
        "scope": mocks.one(STORAGE).state["id"],
    }
    assert grants["deployer-batch"]["principalId"] == mocks.deployer_object_id


# --- diagnostics ----------------------------------------------------------------------------


def test_diagnostics_off_declares_no_workspace_or_setting(deploy: Deploy) -> None:
    assert not types(deploy({}).mocks) & {WORKSPACE_TYPE, SETTING}


def settings_by_resource(mocks: AzureMocks) -> dict[str, dict[str, Any]]:
    return {s.inputs["resourceUri"]: s.inputs for s in mocks.of_type(SETTING)}


def test_diagnostics_create_a_workspace_and_send_batch_and_blob_logs(deploy: Deploy) -> None:
    mocks = deploy({"diagnostics": "true", "logRetentionDays": "90"}).mocks
    workspace = mocks.one(WORKSPACE_TYPE)
    assert workspace.inputs["sku"] == {"name": "PerGB2018"}
    assert workspace.inputs["retentionInDays"] == 90
    batch_id, storage_id = mocks.one(BATCH).state["id"], mocks.one(STORAGE).state["id"]
    settings = settings_by_resource(mocks)
    all_logs = [{"categoryGroup": "allLogs", "enabled": True}]
    assert settings == {
        batch_id: {
            "name": "azbatch",
            "resourceUri": batch_id,
            "workspaceId": workspace.state["id"],
            "logs": all_logs,
            "metrics": [{"category": "AllMetrics", "enabled": True}],
        },
        f"{storage_id}/blobServices/default": {
            "name": "azbatch",
            "resourceUri": f"{storage_id}/blobServices/default",
            "workspaceId": workspace.state["id"],
            "logs": all_logs,
            "metrics": [{"category": "Transaction", "enabled": True}],
        },
    }


def test_diagnostics_into_an_existing_workspace(deploy: Deploy) -> None:
    mocks = deploy({"diagnostics": "true", "logAnalyticsWorkspaceId": WORKSPACE}).mocks
    assert not mocks.of_type(WORKSPACE_TYPE)
    assert {s["workspaceId"] for s in settings_by_resource(mocks).values()} == {WORKSPACE}
    assert len(mocks.of_type(SETTING)) == 2


# --- spot in autoscale ----------------------------------------------------------------------


def test_autoscale_without_spot_keeps_dedicated_nodes_only(deploy: Deploy) -> None:
    formula = deploy({"autoscale": "true"}).mocks.one(POOL).inputs["scaleSettings"]["autoScale"]["formula"]
    assert "$TargetLowPriorityNodes = 0;" in formula
    assert "$PreemptedNodeCount" not in formula


def test_autoscale_fills_a_share_with_spot_and_replaces_preempted_ones(deploy: Deploy) -> None:
    config = {"autoscale": "true", "minNodes": "1", "maxNodes": "10", "autoscaleSpotPercent": "75"}
    formula = deploy(config).mocks.one(POOL).inputs["scaleSettings"]["autoScale"]["formula"]
    assert formula == AutoscaleSpec(min_nodes=1, max_nodes=10, spot_percent=75).formula(1)
    lines = formula.splitlines()
    assert lines[3:] == [
        "$nodes = max(1, min(10, $wanted));",
        "$spot = floor($nodes * 75 / 100);",
        "$preempted = max(0, $PreemptedNodeCount.GetSample(1));",
        "$TargetLowPriorityNodes = $spot;",
        "$TargetDedicatedNodes = $nodes - $spot + min($spot, $preempted);",
        "$NodeDeallocationOption = taskcompletion;",
    ]


def test_vnet_address_prefix_sizes_the_created_network(deploy: Deploy) -> None:
    mocks = deploy({"network": "private", "vnetAddressPrefix": "10.64.0.0/16"}).mocks
    assert mocks.one(VNET).inputs["addressSpace"] == {"addressPrefixes": ["10.64.0.0/16"]}
    assert named(mocks, "nodes").inputs["addressPrefix"] == "10.64.0.0/17"
    assert named(mocks, "endpoints").inputs["addressPrefix"] == "10.64.128.0/28"
