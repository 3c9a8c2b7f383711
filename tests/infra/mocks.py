"""Pulumi mocks that answer like Azure Resource Manager, and a harness to run the program.

Nothing here reaches Azure or the Pulumi engine: ``pulumi.runtime.set_mocks``
replaces the engine, :class:`AzureMocks` plays the provider. It records every
resource and invoke so tests can assert on the exact inputs the program sent,
and generates fresh random account keys per run, so an expected key is never a
literal in a test.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.mocks import MockCallArgs, MockResourceArgs

PROJECT = "azbatch"
STACK = "test"
LOCATION = "westeurope"


# Resources ARM names within the resource group: type -> (provider path, input that names it).
_PLAIN_RESOURCES = {
    "azure-native:network:VirtualNetwork": ("Microsoft.Network/virtualNetworks", "virtualNetworkName"),
    "azure-native:network:PublicIPAddress": ("Microsoft.Network/publicIPAddresses", "publicIpAddressName"),
    "azure-native:network:NatGateway": ("Microsoft.Network/natGateways", "natGatewayName"),
    "azure-native:network:PrivateEndpoint": ("Microsoft.Network/privateEndpoints", "privateEndpointName"),
    "azure-native:privatedns:PrivateZone": ("Microsoft.Network/privateDnsZones", "privateZoneName"),
    "azure-native:operationalinsights:Workspace": (
        "Microsoft.OperationalInsights/workspaces",
        "workspaceName",
    ),
}
# Resources that live under another: type -> (input naming the parent, id segment, input naming it).
_CHILD_RESOURCES = {
    "azure-native:network:Subnet": ("virtualNetworkName", "subnets", "subnetName"),
    "azure-native:network:PrivateDnsZoneGroup": (
        "privateEndpointName",
        "privateDnsZoneGroups",
        "privateDnsZoneGroupName",
    ),
    "azure-native:privatedns:VirtualNetworkLink": (
        "privateZoneName",
        "virtualNetworkLinks",
        "virtualNetworkLinkName",
    ),
    "azure-native:monitor:DiagnosticSetting": ("resourceUri", "diagnosticSettings", "name"),
}


@dataclass
class RecordedResource:
    """One resource registration as the engine received it (inputs in camelCase)."""

    type: str
    name: str
    inputs: dict[str, Any]
    state: dict[str, Any]


@dataclass
class AzureMocks(pulumi.runtime.Mocks):
    """Realistic ARM state for the resource types and invokes the program uses."""

    subscription_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deployer_object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    batch_key: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(64)).decode())
    storage_key: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(64)).decode())
    resources: list[RecordedResource] = field(default_factory=list)
    calls: list[MockCallArgs] = field(default_factory=list)

    def of_type(self, token: str) -> list[RecordedResource]:
        """Every recorded resource of one type token, in registration order."""
        return [r for r in self.resources if r.type == token]

    def one(self, token: str) -> RecordedResource:
        """The single recorded resource of ``token`` (fails when there are none or several)."""
        found = self.of_type(token)
        assert len(found) == 1, f"expected one {token}, got {[r.name for r in found]}"
        return found[0]

    def by_id(self, resource_id: str) -> RecordedResource:
        """The recorded resource whose ARM id is ``resource_id``."""
        for recorded in self.resources:
            if recorded.state.get("id") == resource_id:
                return recorded
        raise AssertionError(f"no resource with id {resource_id}")

    def _arm_id(self, resource_group: str, provider: str, name: str) -> str:
        group_id = f"/subscriptions/{self.subscription_id}/resourceGroups/{resource_group}"
        return f"{group_id}/providers/{provider}/{name}"

    def _child_id(self, group: str, typ: str, parent: str, segment: str, name: str) -> str:
        if typ == "azure-native:monitor:DiagnosticSetting":
            return f"{parent}/providers/Microsoft.Insights/diagnosticSettings/{name}"
        provider = {
            "azure-native:network:Subnet": "Microsoft.Network/virtualNetworks",
            "azure-native:network:PrivateDnsZoneGroup": "Microsoft.Network/privateEndpoints",
            "azure-native:privatedns:VirtualNetworkLink": "Microsoft.Network/privateDnsZones",
        }[typ]
        return self._arm_id(group, provider, f"{parent}/{segment}/{name}")

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        suffix = secrets.token_hex(4)
        state = dict(inputs)
        group = str(inputs.get("resourceGroupName", ""))
        if args.typ == "azbatch:infra:BatchEnvironment":
            # A component: the engine registers it, no provider is involved.
            state = {}
        elif args.typ == "azure-native:resources:ResourceGroup":
            name = inputs.get("resourceGroupName") or f"{args.name}{suffix}"
            state.update(
                name=name,
                location=inputs.get("location") or LOCATION,
                id=f"/subscriptions/{self.subscription_id}/resourceGroups/{name}",
            )
        elif args.typ == "azure-native:storage:StorageAccount":
            name = inputs.get("accountName") or f"{args.name}{suffix}"
            state.update(
                name=name,
                id=self._arm_id(group, "Microsoft.Storage/storageAccounts", name),
                primaryEndpoints={
                    "blob": f"https://{name}.blob.core.windows.net/",
                    "queue": f"https://{name}.queue.core.windows.net/",
                    "table": f"https://{name}.table.core.windows.net/",
                    "file": f"https://{name}.file.core.windows.net/",
                },
                provisioningState="Succeeded",
            )
        elif args.typ == "azure-native:storage:BlobContainer":
            name = inputs.get("containerName") or f"{args.name}{suffix}"
            account = inputs["accountName"]
            state.update(
                name=name,
                id=self._arm_id(
                    group,
                    "Microsoft.Storage/storageAccounts",
                    f"{account}/blobServices/default/containers/{name}",
                ),
            )
        elif args.typ == "azure-native:batch:BatchAccount":
            name = inputs.get("accountName") or f"{args.name}{suffix}"
            location = inputs.get("location") or LOCATION
            state.update(
                name=name,
                id=self._arm_id(group, "Microsoft.Batch/batchAccounts", name),
                accountEndpoint=f"{name}.{location}.batch.azure.com",
                provisioningState="Succeeded",
            )
        elif args.typ == "azure-native:batch:Pool":
            name = inputs["poolName"]
            account = inputs["accountName"]
            state.update(
                name=name,
                id=self._arm_id(group, "Microsoft.Batch/batchAccounts", f"{account}/pools/{name}"),
                allocationState="Steady",
                provisioningState="Succeeded",
            )
        elif args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            name = inputs.get("resourceName") or f"{args.name}{suffix}"
            state.update(
                name=name,
                id=self._arm_id(group, "Microsoft.ManagedIdentity/userAssignedIdentities", name),
                principalId=str(uuid.uuid4()),
                clientId=str(uuid.uuid4()),
                tenantId=self.tenant_id,
            )
        elif args.typ == "azure-native:authorization:RoleAssignment":
            name = str(uuid.uuid4())
            state.update(
                name=name,
                id=f"{inputs['scope']}/providers/Microsoft.Authorization/roleAssignments/{name}",
            )
        elif args.typ in _CHILD_RESOURCES:
            parent_key, segment, name_key = _CHILD_RESOURCES[args.typ]
            name = inputs.get(name_key) or f"{args.name}{suffix}"
            state.update(name=name, id=self._child_id(group, args.typ, inputs[parent_key], segment, name))
        elif args.typ in _PLAIN_RESOURCES:
            provider, name_key = _PLAIN_RESOURCES[args.typ]
            name = inputs.get(name_key) or f"{args.name}{suffix}"
            state.update(name=name, id=self._arm_id(group, provider, name))
            if args.typ == "azure-native:operationalinsights:Workspace":
                state["customerId"] = str(uuid.uuid4())
        else:
            raise AssertionError(f"the program declared an unexpected resource type {args.typ}")
        identity = inputs.get("identity")
        if identity and args.typ in {"azure-native:batch:BatchAccount", "azure-native:batch:Pool"}:
            # ARM answers with a map of identity id -> its principal, not the input's list of ids.
            state["identity"] = {
                "type": identity["type"],
                "userAssignedIdentities": {
                    identity_id: {"principalId": str(uuid.uuid4()), "clientId": str(uuid.uuid4())}
                    for identity_id in identity.get("userAssignedIdentities", [])
                },
            }
        self.resources.append(RecordedResource(args.typ, args.name, inputs, state))
        return f"{args.name}-id" if "id" not in state else str(state["id"]), state

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.calls.append(args)
        if args.token == "azure-native:authorization:getClientConfig":
            return {
                "clientId": str(uuid.uuid4()),
                "objectId": self.deployer_object_id,
                "subscriptionId": self.subscription_id,
                "tenantId": self.tenant_id,
            }, []
        if args.token == "azure-native:batch:listBatchAccountKeys":
            return {
                "accountName": args.args["accountName"],
                "primary": self.batch_key,
                "secondary": base64.b64encode(secrets.token_bytes(64)).decode(),
            }, []
        if args.token == "azure-native:storage:listStorageAccountKeys":
            return {
                "keys": [
                    {"keyName": "key1", "value": self.storage_key, "permissions": "FULL"},
                    {
                        "keyName": "key2",
                        "value": base64.b64encode(secrets.token_bytes(64)).decode(),
                        "permissions": "FULL",
                    },
                ]
            }, []
        raise AssertionError(f"the program called an unexpected function {args.token}")


def start_engine(config: dict[str, str]) -> AzureMocks:
    """Reset Pulumi's global runtime state and start a mocked engine with ``config``.

    ``config`` maps project keys (``nodeCount``) to string values, as the engine hands
    them to a program: the keys are prefixed with the project name (``azbatch:nodeCount``).
    """
    set_all_config({f"{PROJECT}:{key}": value for key, value in config.items()}, [])
    # A fresh root stack per test: set_mocks creates one only when there is none.
    settings.ROOT.set(None)
    mocks = AzureMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=STACK, preview=False)
    return mocks


@dataclass(frozen=True)
class Resolved:
    """Output values and whether each one is a Pulumi secret."""

    values: dict[str, Any]
    secret: dict[str, bool]


async def resolve(outputs: dict[str, pulumi.Output[Any]]) -> Resolved:
    """Await every output (value and secretness)."""
    values = {key: await output.future() for key, output in outputs.items()}
    secret = {key: await output.is_secret() for key, output in outputs.items()}
    return Resolved(values, secret)
