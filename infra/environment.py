"""``BatchEnvironment``: every long-lived resource the runner needs, as one component.

Children (logical names are short and stable: renaming one replaces the resource):

* ``rg``: the resource group;
* ``storage``: a StorageV2 / Standard_LRS account, HTTPS only, TLS 1.2 minimum, no
  public blob access; shared-key access disabled in ``entra`` mode;
* ``input``, ``output``, ``application``: private blob containers;
* ``batch``: the Batch account (Batch-service allocation mode), auto-storage linked
  to ``storage``; data-plane auth is SharedKey + Entra ID, or Entra ID only;
* ``pool``: the pool of the shared :class:`runner.pool_spec.PoolSpec`;
* ``entra`` mode only: ``batch-identity`` (the user-assigned identity the Batch
  account uses to reach its auto-storage account without keys) with
  ``batch-identity-blob`` (its Storage Blob Data Contributor role), and the
  deploying principal's roles ``deployer-batch`` (Azure Batch Data Contributor on
  the account) and ``deployer-blob`` (Storage Blob Data Contributor on storage).

:attr:`BatchEnvironment.outputs` is exactly the outputs contract of docs/architecture.md
(:data:`OUTPUT_KEYS`); account keys are Pulumi secrets and absent in ``entra`` mode.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi import Output, ResourceOptions
from pulumi_azure_native import authorization, batch, managedidentity, resources, storage

from infra.config import InfraConfig
from infra.pool import pool_args
from infra.roles import BuiltInRole, role_definition_id

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


class BatchEnvironment(pulumi.ComponentResource):
    """Resource group, Storage, containers, Batch account and pool for one stack."""

    outputs: dict[str, Output[Any]]
    """The outputs contract, in :data:`OUTPUT_KEYS` order (no key outputs in ``entra`` mode)."""

    def __init__(self, name: str, config: InfraConfig, opts: ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self._config = config
        self._child = ResourceOptions(parent=self)
        tags = dict(config.pool.tags)
        self.role_assignments: dict[str, authorization.RoleAssignment] = {}
        self.batch_identity: managedidentity.UserAssignedIdentity | None = None

        self.resource_group = resources.ResourceGroup(
            "rg", resources.ResourceGroupArgs(location=config.location, tags=tags), opts=self._child
        )
        self.storage_account = self._storage_account(tags)
        self.containers = {
            container: storage.BlobContainer(
                container,
                storage.BlobContainerArgs(
                    account_name=self.storage_account.name,
                    resource_group_name=self.resource_group.name,
                    container_name=container,
                    public_access=storage.PublicAccess.NONE,
                ),
                opts=self._child,
            )
            for container in CONTAINERS
        }
        # Who runs `pulumi up` (object id) and in which subscription: asked in entra mode only.
        client = (
            authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
            if config.entra
            else None
        )
        self.batch_account = (
            self._entra_batch_account(tags, client)
            if client is not None
            else self._shared_key_batch_account(tags)
        )
        self.pool = batch.Pool(
            "pool",
            pool_args(config.pool, self.batch_account.name, self.resource_group.name),
            opts=self._child,
        )
        if client is not None:
            self._grant_deployer(client)

        self.outputs = self._outputs()
        self.register_outputs(dict(self.outputs))

    def _storage_account(self, tags: dict[str, str]) -> storage.StorageAccount:
        return storage.StorageAccount(
            "storage",
            storage.StorageAccountArgs(
                resource_group_name=self.resource_group.name,
                location=self.resource_group.location,
                kind=storage.Kind.STORAGE_V2,
                sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
                enable_https_traffic_only=True,
                minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
                allow_blob_public_access=False,
                allow_shared_key_access=not self._config.entra,
                default_to_o_auth_authentication=self._config.entra,
                tags=tags,
            ),
            opts=self._child,
        )

    def _shared_key_batch_account(self, tags: dict[str, str]) -> batch.BatchAccount:
        return batch.BatchAccount(
            "batch",
            batch.BatchAccountArgs(
                resource_group_name=self.resource_group.name,
                location=self.resource_group.location,
                pool_allocation_mode=batch.PoolAllocationMode.BATCH_SERVICE,
                allowed_authentication_modes=[
                    batch.AuthenticationMode.SHARED_KEY,
                    batch.AuthenticationMode.AAD,
                ],
                auto_storage=batch.AutoStorageBasePropertiesArgs(
                    storage_account_id=self.storage_account.id,
                    authentication_mode=batch.AutoStorageAuthenticationMode.STORAGE_KEYS,
                ),
                tags=tags,
            ),
            opts=self._child,
        )

    def _entra_batch_account(
        self, tags: dict[str, str], client: Output[authorization.GetClientConfigResult]
    ) -> batch.BatchAccount:
        # Without shared keys, Batch reaches its auto-storage account with a managed
        # identity. A user-assigned one can be granted its role before the account exists.
        identity = managedidentity.UserAssignedIdentity(
            "batch-identity",
            managedidentity.UserAssignedIdentityArgs(
                resource_group_name=self.resource_group.name,
                location=self.resource_group.location,
                tags=tags,
            ),
            opts=self._child,
        )
        self.batch_identity = identity
        identity_blob = self._role_assignment(
            "batch-identity-blob",
            principal_id=identity.principal_id,
            role=BuiltInRole.STORAGE_BLOB_DATA_CONTRIBUTOR,
            scope=self.storage_account.id,
            principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
            subscription_id=client.subscription_id,
        )
        return batch.BatchAccount(
            "batch",
            batch.BatchAccountArgs(
                resource_group_name=self.resource_group.name,
                location=self.resource_group.location,
                pool_allocation_mode=batch.PoolAllocationMode.BATCH_SERVICE,
                allowed_authentication_modes=[batch.AuthenticationMode.AAD],
                identity=batch.BatchAccountIdentityArgs(
                    type=batch.ResourceIdentityType.USER_ASSIGNED,
                    user_assigned_identities=[identity.id],
                ),
                auto_storage=batch.AutoStorageBasePropertiesArgs(
                    storage_account_id=self.storage_account.id,
                    authentication_mode=batch.AutoStorageAuthenticationMode.BATCH_ACCOUNT_MANAGED_IDENTITY,
                ),
                tags=tags,
            ),
            opts=ResourceOptions(parent=self, depends_on=[identity_blob]),
        )

    def _grant_deployer(self, client: Output[authorization.GetClientConfigResult]) -> None:
        """Give the principal running ``pulumi up`` data access to Batch and blobs."""
        # Azure rejects an assignment whose principal type is wrong, and cannot be asked
        # which kind the deployer is: the stack says so (deployerPrincipalType).
        principal_type = authorization.PrincipalType(self._config.deployer_type.value)
        self._role_assignment(
            "deployer-batch",
            principal_id=client.object_id,
            role=BuiltInRole.AZURE_BATCH_DATA_CONTRIBUTOR,
            scope=self.batch_account.id,
            principal_type=principal_type,
            subscription_id=client.subscription_id,
        )
        self._role_assignment(
            "deployer-blob",
            principal_id=client.object_id,
            role=BuiltInRole.STORAGE_BLOB_DATA_CONTRIBUTOR,
            scope=self.storage_account.id,
            principal_type=principal_type,
            subscription_id=client.subscription_id,
        )

    def _role_assignment(
        self,
        name: str,
        *,
        principal_id: pulumi.Input[str],
        role: BuiltInRole,
        scope: pulumi.Input[str],
        subscription_id: Output[str],
        principal_type: authorization.PrincipalType,
    ) -> authorization.RoleAssignment:
        assignment = authorization.RoleAssignment(
            name,
            authorization.RoleAssignmentArgs(
                principal_id=principal_id,
                principal_type=principal_type,
                role_definition_id=subscription_id.apply(lambda sub: role_definition_id(sub, role)),
                scope=scope,
            ),
            opts=self._child,
        )
        self.role_assignments[name] = assignment
        return assignment

    def _outputs(self) -> dict[str, Output[Any]]:
        account = self.batch_account
        outputs: dict[str, Output[Any]] = {
            "batchAccountName": account.name,
            "batchAccountUrl": account.account_endpoint.apply(lambda endpoint: f"https://{endpoint}"),
        }
        if not self._config.entra:
            keys = batch.list_batch_account_keys_output(
                account_name=account.name,
                resource_group_name=self.resource_group.name,
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            outputs["batchAccountKey"] = Output.secret(keys.primary)
        outputs["storageAccountName"] = self.storage_account.name
        if not self._config.entra:
            storage_keys = storage.list_storage_account_keys_output(
                account_name=self.storage_account.name,
                resource_group_name=self.resource_group.name,
                opts=pulumi.InvokeOutputOptions(parent=self),
            )
            outputs["storageAccountKey"] = Output.secret(
                storage_keys.apply(lambda result: result.keys[0].value)
            )
        outputs["storageBlobEndpoint"] = self.storage_account.primary_endpoints.blob
        outputs["poolId"] = self.pool.name
        outputs["inputContainer"] = self.containers[INPUT_CONTAINER].name
        outputs["outputContainer"] = self.containers[OUTPUT_CONTAINER].name
        outputs["applicationContainer"] = self.containers[APPLICATION_CONTAINER].name
        return outputs
