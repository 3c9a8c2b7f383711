"""The ``network`` keys: public endpoints (default) or private networking, validated.

``network: private`` puts the pool in a virtual network without public IP
addresses and reaches Batch and Storage through private endpoints. The program
creates the virtual network from ``vnetAddressPrefix`` (split in two: the first
half for the nodes, a /28 of the second half for the private endpoints), or uses
the existing subnet ``subnetId`` for both. ``allowedIpRanges`` lists the public
IPv4 addresses or ranges (machines running ``runner`` from outside the network)
that may still reach the two accounts' public endpoints; without it, public
network access is disabled on both. Pure data and checks, no resources.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from infra.reader import ConfigEnum, ConfigReader

DEFAULT_VNET_PREFIX = "10.20.0.0/22"
# Smallest and largest virtual network the program creates: /24 leaves 123 node addresses.
_VNET_PREFIX_LENGTHS = (16, 24)
_ENDPOINT_SUBNET_LENGTH = 28
_DOCKER_BRIDGE = ipaddress.ip_network("172.17.0.0/16")
# Batch and Storage accept at most 200 IP rules per endpoint.
MAX_IP_RULES = 200
# What Azure firewalls cannot match (RFC 1918, shared, loopback, link-local, multicast, reserved):
# requests from such addresses arrive through a network, not from the internet.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(block)
    for block in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_SUBNET_ID = re.compile(
    r"^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+)"
    r"/subnets/[^/]+$",
    re.IGNORECASE,
)


class NetworkMode(ConfigEnum):
    """Where the pool's nodes live and how clients reach the accounts."""

    PUBLIC = "public"
    """Batch-managed networking: nodes with public IPs, public account endpoints."""
    PRIVATE = "private"
    """A virtual network, no public IPs on nodes, private endpoints for Batch and blobs."""


@dataclass(frozen=True)
class NetworkConfig:
    """The validated network keys (see the module docstring)."""

    mode: NetworkMode = NetworkMode.PUBLIC
    vnet_prefix: str = DEFAULT_VNET_PREFIX
    subnet_id: str | None = None
    allowed_ip_ranges: tuple[str, ...] = ()

    @property
    def private(self) -> bool:
        """True with ``network: private``."""
        return self.mode is NetworkMode.PRIVATE

    @property
    def node_subnet_prefix(self) -> str:
        """The nodes' subnet of a created virtual network: its first half."""
        first, _ = ipaddress.ip_network(self.vnet_prefix).subnets(prefixlen_diff=1)
        return str(first)

    @property
    def endpoint_subnet_prefix(self) -> str:
        """The private endpoints' subnet of a created virtual network: a /28 opening its second half."""
        _, second = ipaddress.ip_network(self.vnet_prefix).subnets(prefixlen_diff=1)
        return str(next(second.subnets(new_prefix=_ENDPOINT_SUBNET_LENGTH)))

    @property
    def existing_vnet_id(self) -> str | None:
        """The virtual network that holds ``subnet_id`` (its private DNS zones link to it)."""
        if self.subnet_id is None:
            return None
        match = _SUBNET_ID.match(self.subnet_id)
        return match.group(1) if match else None


def _vnet_prefix(read: ConfigReader) -> str:
    value = read.string("vnetAddressPrefix", DEFAULT_VNET_PREFIX)
    try:
        network = ipaddress.ip_network(value)
    except ValueError:
        raise read.error(
            "vnetAddressPrefix",
            f"must be an IPv4 network in CIDR form with no host bits (10.20.0.0/22), got {value!r}",
        ) from None
    shortest, longest = _VNET_PREFIX_LENGTHS
    if network.version != 4 or not shortest <= network.prefixlen <= longest or not network.is_private:
        raise read.error(
            "vnetAddressPrefix",
            f"must be a private IPv4 range from /{shortest} to /{longest} (10.20.0.0/22), got {value!r}",
        )
    if network.overlaps(_DOCKER_BRIDGE):
        raise read.error(
            "vnetAddressPrefix",
            f"{value!r} overlaps {_DOCKER_BRIDGE}, Docker's default bridge on the nodes (Batch advises "
            "against it for a pool's network); choose another range",
        )
    return str(network)


def _ip_rule(read: ConfigReader, item: str) -> str:
    try:
        network = ipaddress.ip_network(item)
    except ValueError:
        raise read.error(
            "allowedIpRanges",
            f"{item!r} is not an IPv4 address or CIDR range without host bits (203.0.113.7, 203.0.113.0/24)",
        ) from None
    if not isinstance(network, ipaddress.IPv4Network) or any(network.overlaps(b) for b in _NOT_PUBLIC):
        raise read.error(
            "allowedIpRanges",
            f"{item!r} is not a public IPv4 address or range (Azure firewalls match public ones)",
        )
    if network.prefixlen == 31:
        raise read.error(
            "allowedIpRanges", f"{item!r}: Azure Storage refuses /31 ranges; list the two addresses"
        )
    # Azure Storage takes a single address without /32.
    return str(network.network_address) if network.prefixlen == 32 else str(network)


def _allowed_ip_ranges(read: ConfigReader) -> tuple[str, ...]:
    raw = read.optional_string("allowedIpRanges") or ""
    items = [item for item in re.split(r"[,\s]+", raw) if item]
    rules = tuple(dict.fromkeys(_ip_rule(read, item) for item in items))
    if len(rules) > MAX_IP_RULES:
        raise read.error("allowedIpRanges", f"at most {MAX_IP_RULES} ranges, got {len(rules)}")
    return rules


def read_network(read: ConfigReader) -> NetworkConfig:
    """Read ``network``, ``vnetAddressPrefix``, ``subnetId`` and ``allowedIpRanges``."""
    mode = read.choice("network", NetworkMode, NetworkMode.PUBLIC)
    vnet_prefix = _vnet_prefix(read)
    subnet_id = read.optional_string("subnetId")
    if subnet_id is not None and not _SUBNET_ID.match(subnet_id):
        raise read.error(
            "subnetId",
            "must be a subnet resource id (/subscriptions/<id>/resourceGroups/<group>/providers/"
            f"Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>), got {subnet_id!r}",
        )
    ranges = _allowed_ip_ranges(read)
    if mode is NetworkMode.PUBLIC:
        for name, default in (
            ("vnetAddressPrefix", DEFAULT_VNET_PREFIX),
            ("subnetId", None),
            ("allowedIpRanges", None),
        ):
            if read.is_set(name, default):
                raise read.error(name, "applies only with network private")
    if subnet_id is not None and read.is_set("vnetAddressPrefix", DEFAULT_VNET_PREFIX):
        raise read.error(
            "vnetAddressPrefix", "set either vnetAddressPrefix (a new network) or subnetId, not both"
        )
    return NetworkConfig(mode=mode, vnet_prefix=vnet_prefix, subnet_id=subnet_id, allowed_ip_ranges=ranges)
