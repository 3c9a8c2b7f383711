from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from runner.errors import TargetError
from runner.outputs import MASK, Outputs, from_mapping, from_pulumi, load_file, write_file

SECRET = "c2VjcmV0LWtleS1ub3QtdG8tbGVhaw=="


def _outputs() -> Outputs:
    return Outputs(
        batch_account_name="acct",
        batch_account_url="https://acct.westeurope.batch.azure.com",
        batch_account_key=SECRET,
        storage_account_name="store",
        storage_account_key=SECRET,
        storage_blob_endpoint="https://store.blob.core.windows.net/",
        pool_id="pool",
        input_container="input",
        output_container="output",
        application_container="application",
    )


def test_write_then_load_roundtrip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "outputs.json"
    write_file(path, _outputs())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_file(path) == _outputs()
    assert json.loads(path.read_text())["batchAccountKey"] == SECRET


def test_missing_and_invalid_keys_are_named_with_the_file(tmp_path: Path) -> None:
    data = _outputs().to_dict(show_secrets=True)
    del data["poolId"]
    del data["inputContainer"]
    data["batchAccountUrl"] = "not a url"
    path = tmp_path / "o.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TargetError) as info:
        load_file(path)
    msg = str(info.value)
    assert str(path) in msg and "poolId" in msg and "inputContainer" in msg and "batchAccountUrl" in msg
    assert SECRET not in msg


def test_secrets_are_masked_in_render_repr_and_dict() -> None:
    out = _outputs()
    assert SECRET not in out.render()
    assert SECRET not in repr(out)
    assert out.to_dict()["storageAccountKey"] == MASK
    assert SECRET in out.render(show_secrets=True)


def test_pulumi_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TargetError, match="Pulumi CLI is not installed"):
        from_pulumi("dev")


def test_pulumi_stack_without_outputs_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in `pulumi` executable: prints what `pulumi stack output --json` prints for a stack
    # that was never deployed, or fails like the real CLI for an unknown stack.
    fake = tmp_path / "pulumi"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *nosuch*) echo "error: no stack named \'nosuch\' found" >&2; exit 255;; esac\n'
        "echo '{}'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TargetError, match="has no outputs"):
        from_pulumi("dev")
    with pytest.raises(TargetError, match="no stack named"):
        from_pulumi("nosuch")


def test_pulumi_runs_in_the_project_directory_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like the real CLI, the stand-in fails outside a Pulumi project: `runner --target dev`
    from the data's directory must still find this project's stack."""
    doc = _outputs().to_dict(show_secrets=True)
    (tmp_path / "outputs.json").write_text(json.dumps(doc))
    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        "[ -f Pulumi.yaml ] || { echo 'error: no Pulumi.yaml project file found' >&2; exit 255; }\n"
        f"/bin/cat {tmp_path / 'outputs.json'}\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    elsewhere = tmp_path / "data"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = from_pulumi("dev")
    assert out.pool_id == "pool" and out.batch_account_key == SECRET
    # A directory that is itself a Pulumi project is used as it is.
    (elsewhere / "Pulumi.yaml").write_text("name: other\n")
    (tmp_path / "outputs.json").write_text("{}")
    with pytest.raises(TargetError, match="has no outputs"):
        from_pulumi("dev")


def test_a_passphrase_stack_without_the_passphrase_says_which_variable_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pulumi login --local` stacks are passphrase-encrypted: the runner's non-interactive
    `--show-secrets` read needs PULUMI_CONFIG_PASSPHRASE; the hint says so, not `stack ls`."""
    fake = tmp_path / "pulumi"
    fake.write_text(
        "#!/bin/sh\n"
        'echo \'error: constructing secrets manager of type "passphrase": passphrase must be set with '
        "PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE environment variables' >&2\n"
        "exit 255\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TargetError) as info:
        from_pulumi("dev")
    assert "PULUMI_CONFIG_PASSPHRASE" in str(info.value.hint)
    assert "docs/azure.md" in str(info.value.hint)
    assert "stack ls" not in str(info.value.hint)


def test_the_pool_identity_is_optional_and_must_be_a_user_assigned_identity_id() -> None:
    data = _outputs().to_dict(show_secrets=True)
    assert from_mapping(data, source="s").pool_identity_resource_id is None
    good = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity"
    good += "/userAssignedIdentities/pool-id"
    loaded = from_mapping({**data, "poolIdentityResourceId": good}, source="s")
    assert loaded.pool_identity_resource_id == good and loaded.to_dict()["poolIdentityResourceId"] == good
    for bad in (good + "/extra", "pool-id", good.replace("ManagedIdentity", "Storage")):
        with pytest.raises(TargetError, match="poolIdentityResourceId"):
            from_mapping({**data, "poolIdentityResourceId": bad}, source="s")
