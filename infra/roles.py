"""Built-in Azure role definitions the program assigns, and the assignment itself.

Built-in roles have the same GUID in every tenant and cloud, so they are
constants; :func:`role_definition_id` turns one into the subscription-scoped
resource id that a role assignment refers to; :func:`assign` declares one
assignment as a child of the component.
"""

from __future__ import annotations

from enum import Enum

import pulumi
from pulumi import Output
from pulumi_azure_native import authorization

from infra.scope import Scope


class BuiltInRole(str, Enum):
    """The role definition GUIDs (the ``name`` of each built-in role)."""

    AZURE_BATCH_DATA_CONTRIBUTOR = "6aaa78f1-f7de-44ca-8722-c64a23943cae"
    """Manage Batch pools and jobs (data plane ``jobs/*``), not the account itself."""
    STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    """Read, write and delete blobs and containers; get user delegation keys (for SAS)."""
    STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    """Read and list blobs and containers."""


def role_definition_id(subscription_id: str, role: BuiltInRole) -> str:
    """``/subscriptions/<id>/providers/Microsoft.Authorization/roleDefinitions/<guid>``."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role.value}"


def assign(
    scope: Scope,
    name: str,
    *,
    principal_id: pulumi.Input[str],
    principal_type: authorization.PrincipalType,
    role: BuiltInRole,
    target: pulumi.Input[str],
    subscription_id: Output[str],
) -> authorization.RoleAssignment:
    """Grant ``role`` on the resource id ``target`` to a principal (the kind must be right)."""
    return scope.keep(
        name,
        authorization.RoleAssignment(
            name,
            authorization.RoleAssignmentArgs(
                principal_id=principal_id,
                principal_type=principal_type,
                role_definition_id=subscription_id.apply(lambda sub: role_definition_id(sub, role)),
                scope=target,
            ),
            opts=scope.opts(),
        ),
    )
