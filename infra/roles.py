"""Built-in Azure role definitions that the ``entra`` mode assigns.

Built-in roles have the same GUID in every tenant and cloud, so they are
constants; :func:`role_definition_id` turns one into the subscription-scoped
resource id that a role assignment refers to.
"""

from __future__ import annotations

from enum import Enum


class BuiltInRole(str, Enum):
    """The role definition GUIDs (the ``name`` of each built-in role)."""

    AZURE_BATCH_DATA_CONTRIBUTOR = "6aaa78f1-f7de-44ca-8722-c64a23943cae"
    """Manage Batch pools and jobs (data plane ``jobs/*``), not the account itself."""
    STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    """Read, write and delete blobs and containers; get user delegation keys (for SAS)."""


def role_definition_id(subscription_id: str, role: BuiltInRole) -> str:
    """``/subscriptions/<id>/providers/Microsoft.Authorization/roleDefinitions/<guid>``."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role.value}"
