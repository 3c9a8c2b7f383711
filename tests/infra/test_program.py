"""The whole program, ``infra/__main__.py``, run under mocks as ``pulumi up`` would run it."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings
from pulumi.runtime.stack import Stack

from infra.config import InfraConfigError
from infra.environment import COMPONENT_TYPE, OUTPUT_KEYS, POOL_IDENTITY_OUTPUT_KEY, SECRET_OUTPUT_KEYS
from tests.infra.mocks import AzureMocks, Resolved, resolve, start_engine

PROGRAM = Path(__file__).resolve().parents[2] / "infra" / "__main__.py"


def run_program(config: dict[str, str], mocks: AzureMocks | None = None) -> tuple[AzureMocks, Resolved]:
    """Run the program file with ``config``; return the mocks and the stack's resolved exports."""
    mocks = mocks if mocks is not None else start_engine(config)
    exported: dict[str, Resolved] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        runpy.run_path(str(PROGRAM), run_name="__main__")
        stack = settings.get_root_resource()
        assert isinstance(stack, Stack)
        outputs = {key: pulumi.Output.from_input(value) for key, value in stack.outputs.items()}
        resolved: pulumi.Output[Resolved] = pulumi.Output.from_input(resolve(outputs))
        return resolved.apply(lambda r: exported.setdefault("r", r))

    program()
    return mocks, exported["r"]


def test_program_with_default_config_exports_the_contract() -> None:
    mocks, exports = run_program({})
    assert list(exports.values) == list(OUTPUT_KEYS)
    assert {key for key, secret in exports.secret.items() if secret} == set(SECRET_OUTPUT_KEYS)
    assert exports.values["batchAccountKey"] == mocks.batch_key
    assert exports.values["storageAccountKey"] == mocks.storage_key
    components = [r for r in mocks.resources if r.type == COMPONENT_TYPE]
    assert [c.name for c in components] == ["azbatch"]
    # The component, rg, storage, 3 containers, Batch identity and its role, account, pool.
    assert len(mocks.resources) == 10


def test_program_in_entra_mode_exports_no_secret() -> None:
    _, exports = run_program({"authMode": "entra"})
    assert list(exports.values) == [key for key in OUTPUT_KEYS if key not in SECRET_OUTPUT_KEYS]
    assert not any(exports.secret.values())


@pytest.mark.parametrize(
    "config",
    [
        {"network": "private", "allowedIpRanges": "203.0.113.7"},
        {"poolIdentity": "true", "authMode": "entra"},
        {"diagnostics": "true"},
        {"autoscale": "true", "autoscaleSpotPercent": "50", "trustedLaunch": "false"},
    ],
)
def test_options_add_no_output_key_but_the_pool_identity(config: dict[str, str]) -> None:
    """The outputs contract is fixed: no option exports anything beyond it, except the pool
    identity's resource id (the contract's optional key) with ``poolIdentity: true``."""
    mocks, exports = run_program(config)
    expected = [k for k in OUTPUT_KEYS if config.get("authMode") != "entra" or k not in SECRET_OUTPUT_KEYS]
    if config.get("poolIdentity") == "true":
        expected.append(POOL_IDENTITY_OUTPUT_KEY)
        (identity,) = [r for r in mocks.resources if r.name == "pool-identity"]
        assert exports.values[POOL_IDENTITY_OUTPUT_KEY] == identity.state["id"]
        assert "/userAssignedIdentities/" in identity.state["id"]
        assert not exports.secret[POOL_IDENTITY_OUTPUT_KEY]
    assert list(exports.values) == expected


def test_program_with_invalid_config_declares_nothing() -> None:
    config = {"nodeCount": "-2"}
    mocks = start_engine(config)
    with pytest.raises(InfraConfigError, match="azbatch:nodeCount"):
        run_program(config, mocks)
    assert mocks.resources == []


def test_importing_the_modules_declares_nothing() -> None:
    mocks = start_engine({})

    @pulumi.runtime.test
    def import_modules() -> None:
        # Execute each module's top level afresh (the engine waits for anything it declares).
        for module in sorted(PROGRAM.parent.glob("*.py")):
            if module.name != "__main__.py":
                runpy.run_path(str(module), run_name=f"infra.{module.stem}")

    import_modules()
    assert mocks.resources == []
