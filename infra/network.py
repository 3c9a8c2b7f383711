"""Private networking (``network: private``): the pool's subnet and the accounts' private endpoints.

:func:`node_network` runs before the accounts: a virtual network ``vnet`` with the
subnets ``nodes`` (outbound through the NAT gateway ``nat`` and its static public
IP ``nat-ip``; Azure's default outbound access is off) and ``endpoints``, or,
with ``subnetId``, the existing subnet for both (its outbound access is then the
subnet owner's). :func:`private_endpoints` runs after them: the private endpoints
``pe-batch`` (group ``batchAccount``, the data plane ``runner`` calls),
``pe-node`` (``nodeManagement``, what the nodes call in simplified mode) and
``pe-blob`` (``blob``), each registered in its private DNS zone
(``dns-batch``: ``privatelink.batch.azure.com``, ``dns-blob``:
``privatelink.blob.core.windows.net``) linked to the virtual network.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi import Output
from pulumi_azure_native import network, privatedns

from infra.network_config import NetworkConfig
from infra.scope import Scope

BATCH_DNS_ZONE = "privatelink.batch.azure.com"
BLOB_DNS_ZONE = "privatelink.blob.core.windows.net"


@dataclass(frozen=True)
class NodeNetwork:
    """The subnets of a private deployment and the resources the pool must wait for."""

    node_subnet_id: Output[str]
    endpoint_subnet_id: Output[str]
    vnet_id: Output[str]
    ready: list[pulumi.Resource]


def _nat(scope: Scope) -> network.NatGateway:
    address = scope.keep(
        "nat-ip",
        network.PublicIPAddress(
            "nat-ip",
            network.PublicIPAddressInitArgs(
                resource_group_name=scope.resource_group_name,
                location=scope.location,
                sku=network.PublicIPAddressSkuArgs(name=network.PublicIPAddressSkuName.STANDARD),
                public_ip_allocation_method=network.IPAllocationMethod.STATIC,
                public_ip_address_version=network.IPVersion.I_PV4,
                tags=scope.tags,
            ),
            opts=scope.opts(),
        ),
    )
    return scope.keep(
        "nat",
        network.NatGateway(
            "nat",
            network.NatGatewayInitArgs(
                resource_group_name=scope.resource_group_name,
                location=scope.location,
                sku=network.NatGatewaySkuArgs(name=network.NatGatewaySkuName.STANDARD),
                public_ip_addresses=[network.SubResourceArgs(id=address.id)],
                tags=scope.tags,
            ),
            opts=scope.opts(),
        ),
    )


def node_network(scope: Scope, config: NetworkConfig) -> NodeNetwork:
    """The subnets the pool and the private endpoints go in (created, or the existing ``subnetId``)."""
    if config.subnet_id is not None:
        vnet_id = config.existing_vnet_id
        if vnet_id is None:  # read_network accepts only subnet ids it can parse
            raise ValueError(f"not a subnet id: {config.subnet_id!r}")
        subnet = Output.from_input(config.subnet_id)
        return NodeNetwork(subnet, subnet, Output.from_input(vnet_id), [])
    vnet = scope.keep(
        "vnet",
        network.VirtualNetwork(
            "vnet",
            network.VirtualNetworkInitArgs(
                resource_group_name=scope.resource_group_name,
                location=scope.location,
                address_space=network.AddressSpaceArgs(address_prefixes=[config.vnet_prefix]),
                tags=scope.tags,
            ),
            opts=scope.opts(),
        ),
    )
    nat = _nat(scope)
    nodes = scope.keep(
        "nodes",
        network.Subnet(
            "nodes",
            network.SubnetInitArgs(
                resource_group_name=scope.resource_group_name,
                virtual_network_name=vnet.name,
                address_prefix=config.node_subnet_prefix,
                nat_gateway=network.SubResourceArgs(id=nat.id),
                default_outbound_access=False,
            ),
            opts=scope.opts(),
        ),
    )
    # Azure changes one subnet of a network at a time: the second waits for the first.
    endpoints = scope.keep(
        "endpoints",
        network.Subnet(
            "endpoints",
            network.SubnetInitArgs(
                resource_group_name=scope.resource_group_name,
                virtual_network_name=vnet.name,
                address_prefix=config.endpoint_subnet_prefix,
                default_outbound_access=False,
            ),
            opts=scope.opts(depends_on=[nodes]),
        ),
    )
    return NodeNetwork(nodes.id, endpoints.id, vnet.id, [nodes, nat])


def _zone(scope: Scope, name: str, zone: str, vnet_id: Output[str]) -> privatedns.PrivateZone:
    private_zone = scope.keep(
        name,
        privatedns.PrivateZone(
            name,
            privatedns.PrivateZoneArgs(
                resource_group_name=scope.resource_group_name,
                private_zone_name=zone,
                location="global",
                tags=scope.tags,
            ),
            opts=scope.opts(),
        ),
    )
    scope.keep(
        f"{name}-link",
        privatedns.VirtualNetworkLink(
            f"{name}-link",
            privatedns.VirtualNetworkLinkArgs(
                resource_group_name=scope.resource_group_name,
                private_zone_name=private_zone.name,
                location="global",
                virtual_network=privatedns.SubResourceArgs(id=vnet_id),
                registration_enabled=False,
                tags=scope.tags,
            ),
            opts=scope.opts(),
        ),
    )
    return private_zone


def _endpoint(
    scope: Scope,
    name: str,
    *,
    target_id: Output[str],
    group: str,
    zone: privatedns.PrivateZone,
    subnet_id: Output[str],
) -> network.PrivateDnsZoneGroup:
    endpoint = scope.keep(
        name,
        network.PrivateEndpoint(
            name,
            network.PrivateEndpointArgs(
                resource_group_name=scope.resource_group_name,
                location=scope.location,
                subnet=network.SubnetArgs(id=subnet_id),
                private_link_service_connections=[
                    network.PrivateLinkServiceConnectionArgs(
                        name=group, private_link_service_id=target_id, group_ids=[group]
                    )
                ],
                tags=scope.tags,
            ),
            opts=scope.opts(),
        ),
    )
    return scope.keep(
        f"{name}-dns",
        network.PrivateDnsZoneGroup(
            f"{name}-dns",
            network.PrivateDnsZoneGroupArgs(
                resource_group_name=scope.resource_group_name,
                private_endpoint_name=endpoint.name,
                private_dns_zone_group_name="default",
                private_dns_zone_configs=[
                    network.PrivateDnsZoneConfigArgs(name=group, private_dns_zone_id=zone.id)
                ],
            ),
            opts=scope.opts(),
        ),
    )


def private_endpoints(
    scope: Scope, nodes: NodeNetwork, *, batch_account_id: Output[str], storage_account_id: Output[str]
) -> list[pulumi.Resource]:
    """Private endpoints and DNS for Batch (both groups) and blobs; returns what the pool waits for."""
    batch_zone = _zone(scope, "dns-batch", BATCH_DNS_ZONE, nodes.vnet_id)
    blob_zone = _zone(scope, "dns-blob", BLOB_DNS_ZONE, nodes.vnet_id)
    subnet = nodes.endpoint_subnet_id
    return [
        _endpoint(
            scope,
            "pe-batch",
            target_id=batch_account_id,
            group="batchAccount",
            zone=batch_zone,
            subnet_id=subnet,
        ),
        _endpoint(
            scope,
            "pe-node",
            target_id=batch_account_id,
            group="nodeManagement",
            zone=batch_zone,
            subnet_id=subnet,
        ),
        _endpoint(
            scope, "pe-blob", target_id=storage_account_id, group="blob", zone=blob_zone, subnet_id=subnet
        ),
    ]
