"""Diagnostics (``diagnostics: true``): service logs and metrics into Log Analytics.

Declares, when asked, the workspace ``logs`` (PerGB2018, keeping data
``logRetentionDays`` days) unless ``logAnalyticsWorkspaceId`` names an existing
one, and two diagnostic settings named ``azbatch``: ``batch-diagnostics`` (every
log category of the Batch account, service and audit logs, and all its metrics)
and ``blob-diagnostics`` (every log category of the storage account's blob
service, reads, writes and deletes, and its transaction metrics).
"""

from __future__ import annotations

from pulumi import Output
from pulumi_azure_native import monitor, operationalinsights

from infra.config import DiagnosticsConfig
from infra.scope import Scope

SETTING_NAME = "azbatch"


def _workspace_id(scope: Scope, config: DiagnosticsConfig) -> Output[str]:
    if config.workspace_id is not None:
        return Output.from_input(config.workspace_id)
    workspace = scope.keep(
        "logs",
        operationalinsights.Workspace(
            "logs",
            operationalinsights.WorkspaceArgs(
                resource_group_name=scope.resource_group_name,
                location=scope.location,
                sku=operationalinsights.WorkspaceSkuArgs(
                    name=operationalinsights.WorkspaceSkuNameEnum.PER_GB2018
                ),
                retention_in_days=config.retention_days,
                tags=scope.tags,
            ),
            opts=scope.opts(),
        ),
    )
    return workspace.id


def _setting(
    scope: Scope, name: str, resource_uri: Output[str], workspace_id: Output[str], metric: str
) -> None:
    scope.keep(
        name,
        monitor.DiagnosticSetting(
            name,
            monitor.DiagnosticSettingArgs(
                name=SETTING_NAME,
                resource_uri=resource_uri,
                workspace_id=workspace_id,
                logs=[monitor.DiagnosticsLogSettingsArgs(category_group="allLogs", enabled=True)],
                metrics=[monitor.DiagnosticsMetricSettingsArgs(category=metric, enabled=True)],
            ),
            opts=scope.opts(),
        ),
    )


def diagnostics(
    scope: Scope, config: DiagnosticsConfig, *, batch_account_id: Output[str], storage_account_id: Output[str]
) -> None:
    """Send the Batch account's and the blob service's logs and metrics to the workspace."""
    workspace_id = _workspace_id(scope, config)
    _setting(scope, "batch-diagnostics", batch_account_id, workspace_id, "AllMetrics")
    blob_service = storage_account_id.apply(lambda account: f"{account}/blobServices/default")
    _setting(scope, "blob-diagnostics", blob_service, workspace_id, "Transaction")
