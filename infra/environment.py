"""``BatchEnvironment``: every long-lived resource the runner needs, as one component.

Children (logical names are short and stable: renaming one replaces the resource;
:attr:`BatchEnvironment.children` holds them all by name):

* ``rg``: the resource group;
* ``storage``: a StorageV2 / Standard_LRS account, HTTPS only, TLS 1.2 minimum, no
  public blob access, no cross-tenant replication; shared-key access disabled in
  ``entra`` mode;
* ``input``, ``output``, ``application``: private blob containers;
* ``batch-identity``: the user-assigned identity the Batch account reaches its
  auto-storage account with (no storage keys, in both modes), with
  ``batch-identity-blob`` (its Storage Blob Data Contributor role); neither with
  ``autoStorageIdentity: false`` (``sharedKey`` mode: auto-storage uses the keys);
* ``batch``: the Batch account (Batch-service allocation mode), auto-storage linked
  to ``storage``; data-plane auth is SharedKey + Entra ID, or Entra ID only;
* ``pool``: the pool of the shared :class:`runner.pool_spec.PoolSpec`, with simplified
  node communication and (unless ``trustedLaunch false``) trusted launch;
* ``entra`` mode only: the deploying principal's roles ``deployer-batch`` (Azure
  Batch Data Contributor on the account) and ``deployer-blob`` (Storage Blob Data
  Contributor on storage), and the same for ``dataAccessGroupId`` (``group-batch``,
  ``group-blob``);
* ``poolIdentity: true``: ``pool-identity`` on the pool, with Storage Blob Data Reader
  on ``input`` and ``application`` and Contributor on ``output``;
* ``network: private``: see :mod:`infra.network`; ``diagnostics: true``: see
  :mod:`infra.diagnostics`.

The typed output attributes are exactly the outputs contract of docs/architecture.md
(:data:`OUTPUT_KEYS`, :meth:`BatchEnvironment.exports`); account keys are Pulumi
secrets and ``None`` in ``entra`` mode. With ``poolIdentity: true`` the pool identity's
resource id is exported too (:data:`POOL_IDENTITY_OUTPUT_KEY`): in ``entra`` mode the
runner then gives tasks their files through it (``identityReference``), without SAS.
"""

from __future__ import annotations

import pulumi
from pulumi import Output, ResourceOptions
from pulumi_azure_native import authorization, batch, managedidentity, resources, storage

from infra import network
from infra.config import BatchEnvironmentArgs
from infra.diagnostics import diagnostics
from infra.network_config import NetworkConfig
from infra.pool import AzurePoolOptions, pool_args
from infra.roles import BuiltInRole, assign
from infra.scope import Scope

COMPONENT_TYPE = "azbatch:infra:BatchEnvironment"

INPUT_CONTAINER = "input"
OUTPUT_CONTAINER = "output"
APPLICATION_CONTAINER = "application"
CONTAINERS = (INPUT_CONTAINER, OUTPUT_CONTAINER, APPLICATION_CONTAINER)

SECRET_OUTPUT_KEYS = ("batchAccountKey", "storageAccountKey")
"""Outputs that hold account keys: Pulumi secrets, exported only in ``sharedKey`` mode."""

OUTPUT_KEYS = (
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
)
"""The outputs contract (docs/architecture.md): the only keys the runner reads."""

POOL_IDENTITY_OUTPUT_KEY = "poolIdentityResourceId"
"""The contract's optional key: the pool identity's ARM id, exported only with ``poolIdentity: true``."""

_SERVICE_PRINCIPAL = authorization.PrincipalType.SERVICE_PRINCIPAL


def _storage_network(config: NetworkConfig) -> tuple[storage.PublicNetworkAccess, storage.NetworkRuleSetArgs]:
    """Public access and firewall of the storage account: open, closed, or open to ``allowedIpRanges``."""
    if not config.private:
        rules = storage.NetworkRuleSetArgs(default_action=storage.DefaultAction.ALLOW)
        return storage.PublicNetworkAccess.ENABLED, rules
    rules = storage.NetworkRuleSetArgs(
        default_action=storage.DefaultAction.DENY,
        bypass=storage.Bypass.AZURE_SERVICES,
        ip_rules=[
            storage.IPRuleArgs(i_p_address_or_range=item, action=storage.Action.ALLOW)
            for item in config.allowed_ip_ranges
        ],
    )
    access = (
        storage.PublicNetworkAccess.ENABLED
        if config.allowed_ip_ranges
        else storage.PublicNetworkAccess.DISABLED
    )
    return access, rules


def _batch_network(
    config: NetworkConfig,
) -> tuple[batch.PublicNetworkAccessType, batch.NetworkProfileArgs | None]:
    """Public access of the Batch account: open, closed, or its API open to ``allowedIpRanges`` only."""
    if not config.private:
        return batch.PublicNetworkAccessType.ENABLED, None
    if not config.allowed_ip_ranges:
        return batch.PublicNetworkAccessType.DISABLED, None
    deny = batch.EndpointAccessDefaultAction.DENY
    profile = batch.NetworkProfileArgs(
        account_access=batch.EndpointAccessProfileArgs(
            default_action=deny,
            ip_rules=[
                batch.IPRuleArgs(action=batch.IPRuleAction.ALLOW, value=item)
                for item in config.allowed_ip_ranges
            ],
        ),
        # Nodes reach node management through its private endpoint, never from outside.
        node_management_access=batch.EndpointAccessProfileArgs(default_action=deny),
    )
    return batch.PublicNetworkAccessType.ENABLED, profile


class BatchEnvironment(pulumi.ComponentResource):
    """Resource group, Storage, containers, Batch account and pool for one stack."""

    batch_account_name: Output[str]
    batch_account_url: Output[str]
    batch_account_key: Output[str] | None
    """A Pulumi secret; ``None`` in ``entra`` mode."""
    storage_account_name: Output[str]
    storage_account_key: Output[str] | None
    """A Pulumi secret; ``None`` in ``entra`` mode."""
    storage_blob_endpoint: Output[str]
    pool_id: Output[str]
    input_container: Output[str]
    output_container: Output[str]
    application_container: Output[str]

    def __init__(self, name: str, args: BatchEnvironmentArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._config = args
        tags = dict(args.pool.tags)
        group = resources.ResourceGroup(
            "rg",
            resources.ResourceGroupArgs(location=args.location, tags=tags),
            opts=ResourceOptions(parent=self),
        )
        self.resource_group = group
        self._scope = Scope(self, group.name, group.location, tags, {"rg": group})
        self.children = self._scope.children
        """Every resource of the component, by logical name."""
        # Who runs `pulumi up` (object id) and in which subscription (role definition ids).
        self._client = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))

        self.storage_account = self._storage_account()
        self.containers = {container: self._container(container) for container in CONTAINERS}
        nodes = network.node_network(self._scope, args.network) if args.network.private else None
        self.batch_account = self._batch_account()
        ready = self._private_endpoints(nodes)
        self.pool = self._pool(nodes, ready)
        if args.entra:
            self._grant_data_access()
        if args.diagnostics is not None:
            diagnostics(
                self._scope,
                args.diagnostics,
                batch_account_id=self.batch_account.id,
                storage_account_id=self.storage_account.id,
            )
        self._set_outputs()
        self.register_outputs(dict(self.exports()))

    def _storage_account(self) -> storage.StorageAccount:
        access, rules = _storage_network(self._config.network)
        scope = self._scope
        return scope.keep(
            "storage",
            storage.StorageAccount(
                "storage",
                storage.StorageAccountArgs(
                    resource_group_name=scope.resource_group_name,
                    location=scope.location,
                    kind=storage.Kind.STORAGE_V2,
                    sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
                    enable_https_traffic_only=True,
                    minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
                    allow_blob_public_access=False,
                    allow_cross_tenant_replication=False,
                    allow_shared_key_access=not self._config.entra,
                    default_to_o_auth_authentication=self._config.entra,
                    public_network_access=access,
                    network_rule_set=rules,
                    tags=scope.tags,
                ),
                opts=scope.opts(),
            ),
        )

    def _container(self, container: str) -> storage.BlobContainer:
        return self._scope.keep(
            container,
            storage.BlobContainer(
                container,
                storage.BlobContainerArgs(
                    account_name=self.storage_account.name,
                    resource_group_name=self._scope.resource_group_name,
                    container_name=container,
                    public_access=storage.PublicAccess.NONE,
                ),
                opts=self._scope.opts(),
            ),
        )

    def _identity(self, name: str) -> managedidentity.UserAssignedIdentity:
        scope = self._scope
        return scope.keep(
            name,
            managedidentity.UserAssignedIdentity(
                name,
                managedidentity.UserAssignedIdentityArgs(
                    resource_group_name=scope.resource_group_name, location=scope.location, tags=scope.tags
                ),
                opts=scope.opts(),
            ),
        )

    def _auto_storage(
        self,
    ) -> tuple[
        batch.AutoStorageBasePropertiesArgs, batch.BatchAccountIdentityArgs | None, list[pulumi.Resource]
    ]:
        """Auto-storage through the account's managed identity (default) or the storage keys."""
        if not self._config.auto_storage_identity:
            keys = batch.AutoStorageBasePropertiesArgs(
                storage_account_id=self.storage_account.id,
                authentication_mode=batch.AutoStorageAuthenticationMode.STORAGE_KEYS,
            )
            return keys, None, []
        # A user-assigned identity can be granted its role before the account exists.
        identity = self._identity("batch-identity")
        identity_blob = assign(
            self._scope,
            "batch-identity-blob",
            principal_id=identity.principal_id,
            principal_type=_SERVICE_PRINCIPAL,
            role=BuiltInRole.STORAGE_BLOB_DATA_CONTRIBUTOR,
            target=self.storage_account.id,
            subscription_id=self._client.subscription_id,
        )
        auto_storage = batch.AutoStorageBasePropertiesArgs(
            storage_account_id=self.storage_account.id,
            authentication_mode=batch.AutoStorageAuthenticationMode.BATCH_ACCOUNT_MANAGED_IDENTITY,
        )
        account_identity = batch.BatchAccountIdentityArgs(
            type=batch.ResourceIdentityType.USER_ASSIGNED, user_assigned_identities=[identity.id]
        )
        return auto_storage, account_identity, [identity_blob]

    def _batch_account(self) -> batch.BatchAccount:
        auto_storage, identity, after = self._auto_storage()
        modes = [batch.AuthenticationMode.AAD]
        if not self._config.entra:
            modes.insert(0, batch.AuthenticationMode.SHARED_KEY)
        access, profile = _batch_network(self._config.network)
        scope = self._scope
        return scope.keep(
            "batch",
            batch.BatchAccount(
                "batch",
                batch.BatchAccountArgs(
                    resource_group_name=scope.resource_group_name,
                    location=scope.location,
                    pool_allocation_mode=batch.PoolAllocationMode.BATCH_SERVICE,
                    allowed_authentication_modes=modes,
                    identity=identity,
                    auto_storage=auto_storage,
                    public_network_access=access,
                    network_profile=profile,
                    tags=scope.tags,
                ),
                opts=scope.opts(depends_on=after or None),
            ),
        )

    def _private_endpoints(self, nodes: network.NodeNetwork | None) -> list[pulumi.Resource]:
        if nodes is None:
            return []
        endpoints = network.private_endpoints(
            self._scope,
            nodes,
            batch_account_id=self.batch_account.id,
            storage_account_id=self.storage_account.id,
        )
        return [*nodes.ready, *endpoints]

    def _pool_identity(self) -> managedidentity.UserAssignedIdentity:
        """The nodes' identity: read inputs and the application, write outputs, nothing else."""
        identity = self._identity("pool-identity")
        roles = {
            INPUT_CONTAINER: BuiltInRole.STORAGE_BLOB_DATA_READER,
            APPLICATION_CONTAINER: BuiltInRole.STORAGE_BLOB_DATA_READER,
            OUTPUT_CONTAINER: BuiltInRole.STORAGE_BLOB_DATA_CONTRIBUTOR,
        }
        for container, role in roles.items():
            assign(
                self._scope,
                f"pool-identity-{container}",
                principal_id=identity.principal_id,
                principal_type=_SERVICE_PRINCIPAL,
                role=role,
                target=self.containers[container].id,
                subscription_id=self._client.subscription_id,
            )
        return identity

    def _pool(self, nodes: network.NodeNetwork | None, ready: list[pulumi.Resource]) -> batch.Pool:
        identity = self._pool_identity() if self._config.pool_identity else None
        self.pool_identity_resource_id: Output[str] | None = identity.id if identity is not None else None
        options = AzurePoolOptions(
            trusted_launch=self._config.trusted_launch,
            subnet_id=nodes.node_subnet_id if nodes is not None else None,
            identity_id=identity.id if identity is not None else None,
        )
        spec = self._config.pool
        return self._scope.keep(
            "pool",
            batch.Pool(
                "pool",
                pool_args(spec, self.batch_account.name, self._scope.resource_group_name, options),
                opts=self._scope.opts(depends_on=ready or None),
            ),
        )

    def _grant_data_access(self) -> None:
        """Give the principal running ``pulumi up`` (and ``dataAccessGroupId``) data access."""
        # Azure rejects an assignment whose principal type is wrong, and cannot be asked
        # which kind the deployer is: the stack says so (deployerPrincipalType).
        grantees: list[tuple[str, pulumi.Input[str], authorization.PrincipalType]] = [
            (
                "deployer",
                self._client.object_id,
                authorization.PrincipalType(self._config.deployer_type.value),
            )
        ]
        if self._config.data_access_group_id is not None:
            grantees.append(("group", self._config.data_access_group_id, authorization.PrincipalType.GROUP))
        for prefix, principal_id, principal_type in grantees:
            for suffix, role, target in (
                ("batch", BuiltInRole.AZURE_BATCH_DATA_CONTRIBUTOR, self.batch_account.id),
                ("blob", BuiltInRole.STORAGE_BLOB_DATA_CONTRIBUTOR, self.storage_account.id),
            ):
                assign(
                    self._scope,
                    f"{prefix}-{suffix}",
                    principal_id=principal_id,
                    principal_type=principal_type,
                    role=role,
                    target=target,
                    subscription_id=self._client.subscription_id,
                )

    def _set_outputs(self) -> None:
        account = self.batch_account
        group = self._scope.resource_group_name
        invoke = pulumi.InvokeOutputOptions(parent=self)
        self.batch_account_name = account.name
        self.batch_account_url = account.account_endpoint.apply(lambda endpoint: f"https://{endpoint}")
        self.storage_account_name = self.storage_account.name
        self.batch_account_key = None
        self.storage_account_key = None
        if not self._config.entra:
            keys = batch.list_batch_account_keys_output(
                account_name=account.name, resource_group_name=group, opts=invoke
            )
            self.batch_account_key = Output.secret(keys.primary)
            storage_keys = storage.list_storage_account_keys_output(
                account_name=self.storage_account.name, resource_group_name=group, opts=invoke
            )
            self.storage_account_key = Output.secret(storage_keys.apply(lambda result: result.keys[0].value))
        self.storage_blob_endpoint = self.storage_account.primary_endpoints.blob
        self.pool_id = self.pool.name
        self.input_container = self.containers[INPUT_CONTAINER].name
        self.output_container = self.containers[OUTPUT_CONTAINER].name
        self.application_container = self.containers[APPLICATION_CONTAINER].name

    def exports(self) -> dict[str, Output[str]]:
        """The outputs contract in :data:`OUTPUT_KEYS` order, without the keys ``entra`` mode lacks,
        then :data:`POOL_IDENTITY_OUTPUT_KEY` with ``poolIdentity: true``."""
        values: dict[str, Output[str] | None] = {
            "batchAccountName": self.batch_account_name,
            "batchAccountUrl": self.batch_account_url,
            "batchAccountKey": self.batch_account_key,
            "storageAccountName": self.storage_account_name,
            "storageAccountKey": self.storage_account_key,
            "storageBlobEndpoint": self.storage_blob_endpoint,
            "poolId": self.pool_id,
            "inputContainer": self.input_container,
            "outputContainer": self.output_container,
            "applicationContainer": self.application_container,
            POOL_IDENTITY_OUTPUT_KEY: self.pool_identity_resource_id,
        }
        return {key: value for key, value in values.items() if value is not None}
