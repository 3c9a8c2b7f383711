"""The security keys' validation: defaults, accepted values, and errors that name the key."""

from __future__ import annotations

import pytest

from infra.config import DiagnosticsConfig, InfraConfigError, NetworkMode, load_config
from tests.infra.mocks import PROJECT, start_engine

GROUP = "0b5e3f0c-6d2a-4c1e-9f7a-2a4d8c6e1b3f"
SUBNET = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/net"
    "/providers/Microsoft.Network/virtualNetworks/hub/subnets/batch"
)
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/ops"
    "/providers/Microsoft.OperationalInsights/workspaces/central"
)


def refused(config: dict[str, str], key: str, fragment: str) -> None:
    start_engine(config)
    with pytest.raises(InfraConfigError) as raised:
        load_config()
    assert raised.value.key == f"{PROJECT}:{key}"
    assert str(raised.value).startswith(f"{PROJECT}:{key}: ")
    assert fragment in str(raised.value)


def test_security_defaults() -> None:
    start_engine({})
    config = load_config()
    assert config.trusted_launch is True
    assert config.auto_storage_identity is True
    assert config.network.mode is NetworkMode.PUBLIC and not config.network.private
    assert config.network.allowed_ip_ranges == () and config.network.subnet_id is None
    assert config.pool_identity is False
    assert config.diagnostics is None
    assert config.data_access_group_id is None
    assert config.pool.autoscale is None


@pytest.mark.parametrize(
    ("vm_size", "family"),
    [
        ("Standard_D2_v3", "generation 1 only"),
        ("Standard_A4_v2", "generation 1 only"),
        ("Standard_M128ms", "M-series up to v2"),
        ("Standard_DC4as_v5", "confidential VM series"),
    ],
)
def test_a_size_without_trusted_launch_is_refused_unless_it_is_turned_off(vm_size: str, family: str) -> None:
    refused({"vmSize": vm_size}, "vmSize", f"{vm_size} (")
    refused({"vmSize": vm_size}, "vmSize", f"{family}) does not support trusted launch")
    refused({"vmSize": vm_size}, "vmSize", "set trustedLaunch false")
    start_engine({"vmSize": vm_size, "trustedLaunch": "false"})
    config = load_config()
    assert (config.pool.vm_size, config.trusted_launch) == (vm_size, False)


@pytest.mark.parametrize(
    "vm_size", ["Standard_D2s_v5", "Standard_DS2_v2", "Standard_F8s_v2", "Standard_M32ms_v3"]
)
def test_generation_2_sizes_keep_trusted_launch(vm_size: str) -> None:
    start_engine({"vmSize": vm_size})
    assert load_config().trusted_launch is True


def test_a_generation_1_image_is_refused_with_trusted_launch() -> None:
    refused({"imageSku": "server-gen1"}, "imageSku", "generation 1 image")
    start_engine({"imageSku": "server-gen1", "trustedLaunch": "false"})
    assert load_config().pool.image.sku == "server-gen1"


def test_data_access_group_is_taken_in_entra_mode_only() -> None:
    start_engine({"authMode": "entra", "dataAccessGroupId": GROUP.upper()})
    assert load_config().data_access_group_id == GROUP
    refused({"dataAccessGroupId": GROUP}, "dataAccessGroupId", "applies only with authMode entra")
    refused({"authMode": "entra", "dataAccessGroupId": "admins"}, "dataAccessGroupId", "a GUID")


def test_private_network_keys_are_read() -> None:
    start_engine({"network": "private", "allowedIpRanges": "203.0.113.7/32, 198.51.100.0/24 203.0.113.7"})
    network = load_config().network
    assert network.private
    assert network.allowed_ip_ranges == ("203.0.113.7", "198.51.100.0/24")
    assert (network.vnet_prefix, network.node_subnet_prefix, network.endpoint_subnet_prefix) == (
        "10.20.0.0/22",
        "10.20.0.0/23",
        "10.20.2.0/28",
    )
    start_engine({"network": "private", "vnetAddressPrefix": "172.16.8.0/24"})
    network = load_config().network
    assert (network.node_subnet_prefix, network.endpoint_subnet_prefix) == (
        "172.16.8.0/25",
        "172.16.8.128/28",
    )
    start_engine({"network": "private", "subnetId": SUBNET})
    network = load_config().network
    assert network.subnet_id == SUBNET
    assert network.existing_vnet_id == SUBNET.rsplit("/subnets/", 1)[0]


@pytest.mark.parametrize(
    ("config", "key", "fragment"),
    [
        ({"network": "vpn"}, "network", "one of public, private"),
        ({"network": "Private"}, "network", "one of public, private"),
        ({"network": "private", "vnetAddressPrefix": "10.20.0.1/22"}, "vnetAddressPrefix", "no host bits"),
        (
            {"network": "private", "vnetAddressPrefix": "8.8.8.0/24"},
            "vnetAddressPrefix",
            "private IPv4 range",
        ),
        ({"network": "private", "vnetAddressPrefix": "10.0.0.0/8"}, "vnetAddressPrefix", "from /16 to /24"),
        ({"network": "private", "vnetAddressPrefix": "10.0.0.0/26"}, "vnetAddressPrefix", "from /16 to /24"),
        ({"network": "private", "vnetAddressPrefix": "fd00::/64"}, "vnetAddressPrefix", "IPv4"),
        (
            {"network": "private", "vnetAddressPrefix": "172.17.4.0/22"},
            "vnetAddressPrefix",
            "Docker's default bridge",
        ),
        (
            {"network": "private", "vnetAddressPrefix": "172.17.0.0/16"},
            "vnetAddressPrefix",
            "Docker's default bridge",
        ),
        ({"network": "private", "subnetId": "batch-subnet"}, "subnetId", "a subnet resource id"),
        ({"network": "private", "allowedIpRanges": "10.1.2.3"}, "allowedIpRanges", "not a public IPv4"),
        ({"network": "private", "allowedIpRanges": "home"}, "allowedIpRanges", "not an IPv4 address or CIDR"),
        ({"network": "private", "allowedIpRanges": "203.0.113.8/31"}, "allowedIpRanges", "/31"),
        ({"subnetId": SUBNET}, "subnetId", "applies only with network private"),
        ({"allowedIpRanges": "203.0.113.7"}, "allowedIpRanges", "applies only with network private"),
        ({"vnetAddressPrefix": "10.30.0.0/22"}, "vnetAddressPrefix", "applies only with network private"),
        (
            {"network": "private", "subnetId": SUBNET, "vnetAddressPrefix": "10.30.0.0/22"},
            "vnetAddressPrefix",
            "not both",
        ),
    ],
)
def test_invalid_network_values_name_the_key(config: dict[str, str], key: str, fragment: str) -> None:
    refused(config, key, fragment)


def test_at_most_200_allowed_ranges() -> None:
    ranges = ",".join(f"203.0.{i // 250}.{i % 250}" for i in range(201))
    refused(
        {"network": "private", "allowedIpRanges": ranges}, "allowedIpRanges", "at most 200 ranges, got 201"
    )


def test_diagnostics_keys_are_read() -> None:
    start_engine({"diagnostics": "true"})
    assert load_config().diagnostics == DiagnosticsConfig(workspace_id=None, retention_days=30)
    start_engine({"diagnostics": "true", "logRetentionDays": "90"})
    assert load_config().diagnostics == DiagnosticsConfig(workspace_id=None, retention_days=90)
    start_engine({"diagnostics": "true", "logAnalyticsWorkspaceId": WORKSPACE})
    assert load_config().diagnostics == DiagnosticsConfig(workspace_id=WORKSPACE, retention_days=30)


@pytest.mark.parametrize(
    ("config", "key", "fragment"),
    [
        ({"diagnostics": "yes please"}, "diagnostics", "true or false"),
        ({"diagnostics": "true", "logRetentionDays": "7"}, "logRetentionDays", "between 30 and 730"),
        ({"diagnostics": "true", "logRetentionDays": "731"}, "logRetentionDays", "between 30 and 730"),
        (
            {"diagnostics": "true", "logAnalyticsWorkspaceId": "central"},
            "logAnalyticsWorkspaceId",
            "resource id",
        ),
        (
            {"logAnalyticsWorkspaceId": WORKSPACE},
            "logAnalyticsWorkspaceId",
            "applies only with diagnostics true",
        ),
        ({"logRetentionDays": "60"}, "logRetentionDays", "applies only with diagnostics true"),
        (
            {"diagnostics": "true", "logAnalyticsWorkspaceId": WORKSPACE, "logRetentionDays": "60"},
            "logRetentionDays",
            "not to logAnalyticsWorkspaceId",
        ),
        ({"poolIdentity": "on"}, "poolIdentity", "true or false"),
        ({"autoStorageIdentity": "no"}, "autoStorageIdentity", "true or false"),
        (
            {"authMode": "entra", "autoStorageIdentity": "false"},
            "autoStorageIdentity",
            "must be true with authMode entra",
        ),
        ({"trustedLaunch": "off"}, "trustedLaunch", "true or false"),
        ({"autoscaleSpotPercent": "101"}, "autoscaleSpotPercent", "between 0 and 100"),
        ({"autoscaleSpotPercent": "-5"}, "autoscaleSpotPercent", "between 0 and 100"),
        ({"autoscaleSpotPercent": "half"}, "autoscaleSpotPercent", "an integer"),
    ],
)
def test_invalid_values_of_the_other_keys_name_the_key(
    config: dict[str, str], key: str, fragment: str
) -> None:
    refused(config, key, fragment)


def test_spot_percent_reaches_the_autoscale_spec() -> None:
    start_engine({"autoscale": "true", "maxNodes": "10", "autoscaleSpotPercent": "60"})
    autoscale = load_config().pool.autoscale
    assert autoscale is not None and autoscale.spot_percent == 60
