"""The default stack against the security baseline table of docs/azure.md (the doc cannot drift).

The test deploys the default configuration under mocks, lists the security-relevant
inputs of every resource it declares (:data:`SECURITY_INPUTS`, by resource type) and
compares them, row for row, with the table under "Security baseline" in
docs/azure.md. A resource the table does not list, a row for a resource that does
not exist, and a value that differs all fail. Resource ids, principal ids and role
definition ids are rendered as ``id(<logical name>)``, ``principal(<identity>)`` and
``role(<built-in role>)``, since the mocks make them random.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.roles import BuiltInRole
from tests.infra.conftest import Deployment
from tests.infra.mocks import AzureMocks, RecordedResource

Deploy = Callable[[dict[str, str]], Deployment]

AZURE_MD = Path(__file__).resolve().parents[2] / "docs" / "azure.md"
SECTION = "### Security baseline"
NO_INPUT = "(none)"
ABSENT = "absent"

_VM = "deploymentConfiguration.virtualMachineConfiguration"
SECURITY_INPUTS: dict[str, tuple[str, ...]] = {
    "azure-native:resources:ResourceGroup": (),
    "azure-native:storage:StorageAccount": (
        "enableHttpsTrafficOnly",
        "minimumTlsVersion",
        "allowBlobPublicAccess",
        "allowSharedKeyAccess",
        "defaultToOAuthAuthentication",
        "allowCrossTenantReplication",
        "publicNetworkAccess",
        "networkRuleSet.defaultAction",
    ),
    "azure-native:storage:BlobContainer": ("publicAccess",),
    "azure-native:managedidentity:UserAssignedIdentity": (),
    "azure-native:authorization:RoleAssignment": (
        "principalId",
        "principalType",
        "roleDefinitionId",
        "scope",
    ),
    "azure-native:batch:BatchAccount": (
        "allowedAuthenticationModes",
        "autoStorage.authenticationMode",
        "identity.type",
        "publicNetworkAccess",
        "networkProfile",
    ),
    "azure-native:batch:Pool": (
        "targetNodeCommunicationMode",
        f"{_VM}.securityProfile.securityType",
        f"{_VM}.securityProfile.uefiSettings.secureBootEnabled",
        f"{_VM}.securityProfile.uefiSettings.vTpmEnabled",
        "networkConfiguration",
        "identity",
        "startTask.userIdentity.autoUser.elevationLevel",
    ),
}
"""What is security-relevant per resource type (inputs as the provider receives them)."""


def _lookup(inputs: dict[str, Any], path: str) -> Any:
    value: Any = inputs
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return ABSENT
        value = value[part]
    return value


def _symbol(mocks: AzureMocks, names: dict[str, str], value: Any) -> Any:
    """Random ids as stable symbols: id(<name>), principal(<name>), role(<role>)."""
    if isinstance(value, list):
        return [_symbol(mocks, names, item) for item in value]
    if not isinstance(value, str):
        return value
    for role in BuiltInRole:
        if value.endswith(f"/roleDefinitions/{role.value}"):
            return f"role({role.name})"
    for recorded in mocks.resources:
        if recorded.state.get("id") == value:
            return f"id({names[value]})"
        if recorded.state.get("principalId") == value:
            return f"principal({recorded.name})"
    return value


def _render(value: Any) -> str:
    if isinstance(value, str) and re.fullmatch(r"(id|principal|role)\(.+\)|absent", value):
        return value
    return json.dumps(value, separators=(", ", ": "))


def actual_baseline(deployment: Deployment) -> dict[tuple[str, str], str]:
    mocks = deployment.mocks
    names = {r.state["id"]: r.name for r in mocks.resources if "id" in r.state}
    rows: dict[tuple[str, str], str] = {}
    for recorded in mocks.resources:
        if recorded.type not in SECURITY_INPUTS:
            assert recorded.type == "azbatch:infra:BatchEnvironment", f"no baseline for {recorded.type}"
            continue
        paths = SECURITY_INPUTS[recorded.type]
        if not paths:
            rows[(recorded.name, NO_INPUT)] = ""
        for path in paths:
            rows[(recorded.name, path)] = _render(_symbol(mocks, names, _lookup(recorded.inputs, path)))
    return rows


def _cell(text: str) -> str:
    return text.strip().strip("`").strip()


def documented_baseline() -> dict[tuple[str, str], str]:
    """The rows of the table under SECTION: (resource, input) -> value, values normalised."""
    text = AZURE_MD.read_text()
    assert SECTION in text, f"docs/azure.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    rows: dict[tuple[str, str], str] = {}
    for line in section.splitlines():
        cells = [cell for cell in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 3 or set(cells[0].strip()) <= {"-", " ", ":"}:
            continue
        resource, path, value = _cell(cells[0]), _cell(cells[1]), _cell(cells[2])
        if resource == "resource":
            continue  # the header
        if path == NO_INPUT:
            rows[(resource, path)] = ""
            continue
        # JSON values are normalised; symbols (id(...), principal(...), role(...), absent) stay.
        with contextlib.suppress(json.JSONDecodeError):
            value = json.dumps(json.loads(value), separators=(", ", ": "))
        assert (resource, path) not in rows, f"the table lists {resource} {path} twice"
        rows[(resource, path)] = value
    return rows


def test_the_default_stack_matches_the_documented_baseline(deploy: Deploy) -> None:
    actual = actual_baseline(deploy({}))
    documented = documented_baseline()
    assert sorted(set(actual) - set(documented)) == [], "rows missing from docs/azure.md"
    assert sorted(set(documented) - set(actual)) == [], "rows in docs/azure.md the stack does not have"
    differing = {key: (documented[key], value) for key, value in actual.items() if documented[key] != value}
    assert differing == {}, "docs/azure.md (left) differs from the stack (right)"


def test_every_resource_of_the_default_stack_is_in_the_table(deploy: Deploy) -> None:
    deployment = deploy({})
    resources: list[RecordedResource] = deployment.mocks.resources
    declared = {r.name for r in resources if r.type in SECURITY_INPUTS}
    assert declared == {resource for resource, _ in documented_baseline()}
