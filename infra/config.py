"""Validated configuration of the Pulumi program.

:func:`load_config` reads the project's configuration (the keys declared in
``Pulumi.yaml``; the engine hands them to the program as ``azbatch:<key>``) and
returns a :class:`BatchEnvironmentArgs`, the typed arguments of the
:class:`infra.environment.BatchEnvironment` component. Every rule is checked
before any resource is declared; a bad value raises :class:`InfraConfigError`, whose message names the
full key (``azbatch:nodeCount``) and the values it accepts. ``pulumi up`` shows
that one line instead of a traceback (it is a ``pulumi.RunError``). A key that
has no effect with the other keys' values (``subnetId`` without ``network
private``) is an error too, never silently ignored.

The pool itself is a :class:`runner.pool_spec.PoolSpec`: the same definition the
local target uses. Keys without a value take the defaults of ``PoolSpec``; the
defaults declared in ``Pulumi.yaml`` are the same values (a test checks it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pulumi

from infra.network_config import NetworkConfig, NetworkMode, read_network
from infra.reader import ConfigEnum, ConfigReader, InfraConfigError
from infra.vm_sizes import trusted_launch_unsupported, vcpus_of
from runner.pool_spec import AutoscaleSpec, ImageSpec, PoolSpec

__all__ = [
    "AuthMode",
    "BatchEnvironmentArgs",
    "DiagnosticsConfig",
    "InfraConfigError",
    "NetworkConfig",
    "NetworkMode",
    "PrincipalKind",
    "load_config",
]

# Batch pool ids: letters, digits, hyphens and underscores, at most 64 characters.
_POOL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Batch accepts at most 256 task slots per node (and at most 4x the node's vCPUs).
MAX_TASK_SLOTS_PER_NODE = 256
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_WORKSPACE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.OperationalInsights/workspaces/[^/]+$",
    re.IGNORECASE,
)
# A PerGB2018 workspace keeps data 30 to 730 days.
MIN_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 730


class AuthMode(ConfigEnum):
    """How clients authenticate to the Batch and Storage data planes."""

    SHARED_KEY = "sharedKey"
    """Account keys (exported as secrets); Entra ID is accepted as well."""
    ENTRA = "entra"
    """Entra ID only: shared keys are disabled and never exported."""


class PrincipalKind(ConfigEnum):
    """What kind of principal runs ``pulumi up`` (role assignments must say it in ``entra`` mode).

    Never a group: ``pulumi up`` runs as a user or a service principal, and that
    principal's object id is what receives the roles. A group is its own key
    (``dataAccessGroupId``).
    """

    USER = "User"
    SERVICE_PRINCIPAL = "ServicePrincipal"


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Where the Batch account's and the blob service's logs and metrics go.

    ``workspace_id`` is an existing Log Analytics workspace; ``None`` creates one
    that keeps data ``retention_days`` days.
    """

    workspace_id: str | None = None
    retention_days: int = MIN_RETENTION_DAYS


@dataclass(frozen=True)
class BatchEnvironmentArgs:
    """Everything the program needs, validated: the arguments of ``BatchEnvironment``.

    ``location`` is ``None`` when the stack does not set ``azbatch:location``: the
    resource group then takes the provider's ``azure-native:location``.
    ``deployer_type`` is the kind of the principal that runs ``pulumi up`` (a person
    or a CI service principal) and ``data_access_group_id`` an Entra group that gets
    the same data roles; both matter only in ``entra`` mode. ``diagnostics`` is
    ``None`` when diagnostics are off. ``auto_storage_identity`` false (``sharedKey``
    mode only) links auto-storage with the storage keys, which needs no role assignment.
    """

    pool: PoolSpec
    auth_mode: AuthMode = AuthMode.SHARED_KEY
    location: str | None = None
    deployer_type: PrincipalKind = PrincipalKind.USER
    data_access_group_id: str | None = None
    trusted_launch: bool = True
    auto_storage_identity: bool = True
    network: NetworkConfig = field(default_factory=NetworkConfig)
    pool_identity: bool = False
    diagnostics: DiagnosticsConfig | None = None

    @property
    def entra(self) -> bool:
        """True when shared keys are disabled (``authMode: entra``)."""
        return self.auth_mode is AuthMode.ENTRA


def _autoscale(read: ConfigReader) -> AutoscaleSpec | None:
    # The bounds are checked even when autoscale is off, so a stack that turns it on later
    # cannot discover a bad value only then.
    default = AutoscaleSpec()
    min_nodes = read.integer("minNodes", default.min_nodes, minimum=0)
    max_nodes = read.integer("maxNodes", default.max_nodes, minimum=1)
    if max_nodes < min_nodes:
        raise read.error("maxNodes", f"must be >= minNodes ({min_nodes}), got {max_nodes}")
    spot_percent = read.integer("autoscaleSpotPercent", default.spot_percent, minimum=0, maximum=100)
    if not read.boolean("autoscale", False):
        return None
    return AutoscaleSpec(
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        evaluation_interval_minutes=default.evaluation_interval_minutes,
        spot_percent=spot_percent,
    )


def _image(read: ConfigReader, trusted_launch: bool) -> ImageSpec:
    default = ImageSpec()
    image = ImageSpec(
        publisher=read.string("imagePublisher", default.publisher),
        offer=read.string("imageOffer", default.offer),
        sku=read.string("imageSku", default.sku),
        version=read.string("imageVersion", default.version),
        node_agent_sku_id=read.string("nodeAgentSkuId", default.node_agent_sku_id),
    )
    if trusted_launch and "gen1" in image.sku.lower():
        raise read.error(
            "imageSku",
            f"{image.sku!r} is a generation 1 image, which cannot boot with trusted launch; "
            "use the image's generation 2 SKU or set trustedLaunch false",
        )
    return image


def _vm_size(read: ConfigReader, trusted_launch: bool) -> str:
    vm_size = read.string("vmSize", PoolSpec().vm_size)
    reason = trusted_launch_unsupported(vm_size) if trusted_launch else None
    if reason is not None:
        raise read.error(
            "vmSize",
            f"{vm_size} ({reason}) does not support trusted launch; choose a size that does "
            "(e.g. Standard_D2s_v5) or set trustedLaunch false",
        )
    return vm_size


def _task_slots(read: ConfigReader, vm_size: str) -> int:
    task_slots = read.integer(
        "taskSlotsPerNode", PoolSpec().task_slots_per_node, minimum=1, maximum=MAX_TASK_SLOTS_PER_NODE
    )
    vcpus = vcpus_of(vm_size)
    if vcpus is not None and task_slots > 4 * vcpus:
        # Batch's own limit: at most 4 x the vCPUs of the pool's VM size (and 256).
        raise read.error(
            "taskSlotsPerNode",
            f"must be at most {4 * vcpus} (4 x the {vcpus} vCPUs of vmSize {vm_size}), got {task_slots}",
        )
    return task_slots


def _pool(read: ConfigReader, trusted_launch: bool) -> PoolSpec:
    defaults = PoolSpec()
    pool_id = read.string("poolId", defaults.pool_id)
    if not _POOL_ID.match(pool_id):
        raise read.error(
            "poolId", f"must be 1 to 64 letters, digits, hyphens or underscores, got {pool_id!r}"
        )
    autoscale = _autoscale(read)
    image = _image(read, trusted_launch)
    vm_size = _vm_size(read, trusted_launch)
    return PoolSpec(
        pool_id=pool_id,
        vm_size=vm_size,
        dedicated_nodes=read.integer("nodeCount", defaults.dedicated_nodes, minimum=0),
        spot_nodes=read.integer("spotNodeCount", defaults.spot_nodes, minimum=0),
        task_slots_per_node=_task_slots(read, vm_size),
        image=image,
        start_task=defaults.start_task,
        autoscale=autoscale,
        tags=defaults.tags,
    )


def _deployer(read: ConfigReader) -> PrincipalKind:
    if read.optional_string("deployerPrincipalType") == "Group":
        raise read.error(
            "deployerPrincipalType",
            "Group is not accepted: the roles go to the principal that runs `pulumi up` "
            "(User or ServicePrincipal); give a group its roles with dataAccessGroupId",
        )
    return read.choice("deployerPrincipalType", PrincipalKind, PrincipalKind.USER)


def _group(read: ConfigReader, auth_mode: AuthMode) -> str | None:
    group = read.optional_string("dataAccessGroupId")
    if group is None:
        return None
    if not _GUID.match(group):
        raise read.error("dataAccessGroupId", f"must be an Entra group's object id (a GUID), got {group!r}")
    if auth_mode is not AuthMode.ENTRA:
        raise read.error("dataAccessGroupId", "applies only with authMode entra (sharedKey grants no roles)")
    return group.lower()


def _diagnostics(read: ConfigReader) -> DiagnosticsConfig | None:
    enabled = read.boolean("diagnostics", False)
    workspace = read.optional_string("logAnalyticsWorkspaceId")
    retention = read.integer(
        "logRetentionDays", MIN_RETENTION_DAYS, minimum=MIN_RETENTION_DAYS, maximum=MAX_RETENTION_DAYS
    )
    if workspace is not None and not _WORKSPACE_ID.match(workspace):
        raise read.error(
            "logAnalyticsWorkspaceId",
            "must be a workspace resource id (/subscriptions/<id>/resourceGroups/<group>/providers/"
            f"Microsoft.OperationalInsights/workspaces/<name>), got {workspace!r}",
        )
    for name, default in (("logAnalyticsWorkspaceId", None), ("logRetentionDays", MIN_RETENTION_DAYS)):
        if read.is_set(name, default) and not enabled:
            raise read.error(name, "applies only with diagnostics true")
    if workspace is not None and read.is_set("logRetentionDays", MIN_RETENTION_DAYS):
        raise read.error(
            "logRetentionDays",
            "applies only to a workspace the program creates, not to logAnalyticsWorkspaceId",
        )
    return DiagnosticsConfig(workspace_id=workspace, retention_days=retention) if enabled else None


def _auto_storage_identity(read: ConfigReader, auth_mode: AuthMode) -> bool:
    enabled = read.boolean("autoStorageIdentity", True)
    if not enabled and auth_mode is AuthMode.ENTRA:
        raise read.error(
            "autoStorageIdentity",
            "must be true with authMode entra: the storage account has no keys to link auto-storage with",
        )
    return enabled


def load_config(config: pulumi.Config | None = None) -> BatchEnvironmentArgs:
    """Read and validate the project configuration (default: the current project's bag)."""
    read = ConfigReader(config if config is not None else pulumi.Config())
    auth_mode = read.choice("authMode", AuthMode, AuthMode.SHARED_KEY)
    deployer_type = _deployer(read)
    trusted_launch = read.boolean("trustedLaunch", True)
    return BatchEnvironmentArgs(
        pool=_pool(read, trusted_launch),
        auth_mode=auth_mode,
        location=read.optional_string("location"),
        deployer_type=deployer_type,
        data_access_group_id=_group(read, auth_mode),
        trusted_launch=trusted_launch,
        auto_storage_identity=_auto_storage_identity(read, auth_mode),
        network=read_network(read),
        pool_identity=read.boolean("poolIdentity", False),
        diagnostics=_diagnostics(read),
    )
