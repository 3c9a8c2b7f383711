"""Translate the shared :class:`runner.pool_spec.PoolSpec` into ``azure-native`` pool arguments.

This is the only place that maps the pool definition onto the Batch management
API; it adds nothing of its own to the pool definition (no second start task,
image or slot count), so the Azure pool and the local pool cannot drift. What only
Azure has comes in :class:`AzurePoolOptions`: node communication is always
``Simplified`` (classic is retired), trusted launch (secure boot and vTPM) unless
turned off, and on request a subnet without public IP addresses and a
user-assigned pool identity. Pure functions, no resources.
"""

from __future__ import annotations

from dataclasses import dataclass

from pulumi import Input
from pulumi_azure_native import batch

from runner.pool_spec import AutoscaleSpec, ImageSpec, PoolSpec, StartTaskSpec


@dataclass(frozen=True)
class AzurePoolOptions:
    """Pool settings that exist on Azure only (the local target has no VMs or networks).

    ``subnet_id`` puts the nodes in that subnet without public IP addresses;
    ``identity_id`` is the resource id of a user-assigned identity for the nodes.
    """

    trusted_launch: bool = True
    subnet_id: Input[str] | None = None
    identity_id: Input[str] | None = None


def iso_minutes(minutes: int) -> str:
    """An ISO 8601 duration of whole minutes, as Batch expects (``PT5M``)."""
    return f"PT{minutes}M"


def scale_settings(spec: PoolSpec) -> batch.ScaleSettingsArgs:
    """Fixed scale (dedicated + spot nodes) or autoscale on pending tasks."""
    if spec.autoscale is not None:
        return batch.ScaleSettingsArgs(auto_scale=autoscale_settings(spec.autoscale, spec))
    return batch.ScaleSettingsArgs(
        fixed_scale=batch.FixedScaleSettingsArgs(
            target_dedicated_nodes=spec.dedicated_nodes,
            target_low_priority_nodes=spec.spot_nodes,
            # Shrinking never kills running work: nodes leave once their tasks are done.
            node_deallocation_option=batch.ComputeNodeDeallocationOption.TASK_COMPLETION,
        )
    )


def autoscale_settings(autoscale: AutoscaleSpec, spec: PoolSpec) -> batch.AutoScaleSettingsArgs:
    """The autoscale formula of the shared spec and its evaluation interval."""
    return batch.AutoScaleSettingsArgs(
        formula=autoscale.formula(spec.task_slots_per_node),
        evaluation_interval=iso_minutes(autoscale.evaluation_interval_minutes),
    )


def start_task(task: StartTaskSpec) -> batch.StartTaskArgs:
    """The pool's start task; elevated runs as the pool-wide admin auto-user."""
    identity = batch.UserIdentityArgs(
        auto_user=batch.AutoUserSpecificationArgs(
            scope=batch.AutoUserScope.POOL,
            elevation_level=(
                batch.ElevationLevel.ADMIN if task.run_elevated else batch.ElevationLevel.NON_ADMIN
            ),
        )
    )
    return batch.StartTaskArgs(
        command_line=task.command_line,
        wait_for_success=task.wait_for_success,
        max_task_retry_count=task.max_task_retry_count,
        user_identity=identity,
    )


def trusted_launch() -> batch.SecurityProfileArgs:
    """Trusted launch with secure boot and a virtual TPM (generation 2 sizes and images)."""
    return batch.SecurityProfileArgs(
        security_type=batch.SecurityTypes.TRUSTED_LAUNCH,
        uefi_settings=batch.UefiSettingsArgs(secure_boot_enabled=True, v_tpm_enabled=True),
    )


def deployment_configuration(image: ImageSpec, secure: bool) -> batch.DeploymentConfigurationArgs:
    """A marketplace image and the node agent SKU that matches it; trusted launch when ``secure``."""
    return batch.DeploymentConfigurationArgs(
        virtual_machine_configuration=batch.VirtualMachineConfigurationArgs(
            image_reference=batch.ImageReferenceArgs(
                publisher=image.publisher,
                offer=image.offer,
                sku=image.sku,
                version=image.version,
            ),
            node_agent_sku_id=image.node_agent_sku_id,
            security_profile=trusted_launch() if secure else None,
        )
    )


def network_configuration(subnet_id: Input[str] | None) -> batch.NetworkConfigurationArgs | None:
    """Nodes in ``subnet_id`` with no public IP address (outbound through the subnet's NAT)."""
    if subnet_id is None:
        return None
    return batch.NetworkConfigurationArgs(
        subnet_id=subnet_id,
        public_ip_address_configuration=batch.PublicIPAddressConfigurationArgs(
            provision=batch.IPAddressProvisioningType.NO_PUBLIC_IP_ADDRESSES
        ),
    )


def pool_identity(identity_id: Input[str] | None) -> batch.BatchPoolIdentityArgs | None:
    """The pool's user-assigned identity, whose tokens the nodes can request."""
    if identity_id is None:
        return None
    return batch.BatchPoolIdentityArgs(
        type=batch.PoolIdentityType.USER_ASSIGNED, user_assigned_identities=[identity_id]
    )


def metadata(tags: dict[str, str]) -> list[batch.MetadataItemArgs]:
    """The spec's tags as Batch pool metadata (what data-plane clients see), sorted by name."""
    return [batch.MetadataItemArgs(name=name, value=value) for name, value in sorted(tags.items())]


def pool_args(
    spec: PoolSpec,
    account_name: Input[str],
    resource_group_name: Input[str],
    azure: AzurePoolOptions | None = None,
) -> batch.PoolArgs:
    """Arguments of the ``azure-native`` Batch pool for ``spec`` in the given account."""
    azure = azure if azure is not None else AzurePoolOptions()
    return batch.PoolArgs(
        account_name=account_name,
        resource_group_name=resource_group_name,
        pool_name=spec.pool_id,
        vm_size=spec.vm_size,
        deployment_configuration=deployment_configuration(spec.image, azure.trusted_launch),
        target_node_communication_mode=batch.NodeCommunicationMode.SIMPLIFIED,
        network_configuration=network_configuration(azure.subnet_id),
        identity=pool_identity(azure.identity_id),
        scale_settings=scale_settings(spec),
        start_task=start_task(spec.start_task),
        task_slots_per_node=spec.task_slots_per_node,
        metadata=metadata(spec.tags),
        tags=dict(spec.tags),
    )
