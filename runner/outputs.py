"""The outputs contract: what a client needs to use a target.

The Pulumi program exports these keys and ``runner local up`` writes them to a
file; the runner reads nothing else (see docs/architecture.md, "Outputs contract").

Contracts:

* :func:`load_file` and :func:`from_pulumi` return a validated, frozen
  :class:`Outputs` or raise :class:`~runner.errors.TargetError` naming the
  source and every missing or invalid key. Error messages never contain a
  value of a secret key, nor the Pulumi CLI's stdout.
* :func:`write_file` writes atomically with mode 0600 (the file holds keys).
* :meth:`Outputs.render` masks secrets unless asked not to.
* ``poolIdentityResourceId`` is optional: the ARM id of the pool's user-assigned
  identity (``poolIdentity: true``; the local target in Entra ID mode). With
  ``--auth entra`` tasks then reach their files through it, without SAS.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runner.atomic import write_atomic
from runner.errors import TargetError

SECRET_KEYS = frozenset({"batchAccountKey", "storageAccountKey"})
MASK = "********"


@dataclass(frozen=True)
class Outputs:
    """The resolved outputs of one target (field names map to the contract's camelCase keys)."""

    batch_account_name: str
    batch_account_url: str
    storage_account_name: str
    storage_blob_endpoint: str
    pool_id: str
    input_container: str
    output_container: str
    application_container: str
    batch_account_key: str | None = None
    storage_account_key: str | None = None
    pool_identity_resource_id: str | None = None

    def __repr__(self) -> str:  # never leak keys through a repr in a traceback or log
        shown = ", ".join(f"{k}={v!r}" for k, v in self.to_dict(show_secrets=False).items())
        return f"Outputs({shown})"

    def to_dict(self, *, show_secrets: bool = False) -> dict[str, str]:
        """The contract's keys (camelCase); secrets masked unless ``show_secrets``."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            key = _camel(f.name)
            out[key] = value if show_secrets or key not in SECRET_KEYS else MASK
        return out

    def render(self, *, show_secrets: bool = False) -> str:
        """Human-readable ``key: value`` lines."""
        data = self.to_dict(show_secrets=show_secrets)
        width = max(len(k) for k in data)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in data.items())


_OPTIONAL = {"batch_account_key", "storage_account_key", "pool_identity_resource_id"}
_REQUIRED = [f.name for f in fields(Outputs) if f.name not in _OPTIONAL]
_URL_KEYS = ("batch_account_url", "storage_blob_endpoint")
_IDENTITY_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ManagedIdentity"
    r"/userAssignedIdentities/[^/]+",
    re.IGNORECASE,
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def from_mapping(data: dict[str, Any], *, source: str) -> Outputs:
    """Validate a mapping of contract keys; ``source`` names it in error messages."""
    missing: list[str] = []
    invalid: list[str] = []
    values: dict[str, str | None] = {}
    for f in fields(Outputs):
        key = _camel(f.name)
        raw = data.get(key)
        if raw is None or raw == "":
            if f.name in _REQUIRED:
                missing.append(key)
            values[f.name] = None
            continue
        if not isinstance(raw, str):
            invalid.append(f"{key} (not a string)")
            continue
        values[f.name] = raw
    for key in sorted(SECRET_KEYS):  # a key that is not base64 fails deep in request signing
        secret = values.get(_snake(key))
        if secret and not _is_base64(secret):
            invalid.append(f"{key} (not base64: copy the account key as the portal or az shows it)")
    for name in _URL_KEYS:
        url = values.get(name)
        if url and (urlparse(url).scheme not in {"http", "https"} or not urlparse(url).netloc):
            invalid.append(f"{_camel(name)} (not an http(s) URL)")
    identity = values.get("pool_identity_resource_id")
    if identity and not _IDENTITY_ID.fullmatch(identity):
        invalid.append("poolIdentityResourceId (not the resource id of a user-assigned managed identity)")
    if missing or invalid:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if invalid:
            parts.append("invalid " + ", ".join(invalid))
        raise TargetError(f"outputs from {source}: " + "; ".join(parts))
    return Outputs(**values)  # type: ignore[arg-type]


def load_file(path: Path) -> Outputs:
    """Read and validate an outputs JSON file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetError(f"outputs file {path} does not exist") from None
    except OSError as exc:
        raise TargetError(f"outputs file {path} cannot be read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TargetError(f"outputs file {path} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise TargetError(f"outputs file {path} must hold a JSON object")
    return from_mapping(data, source=str(path))


def pulumi_project_dir() -> Path:
    """Where to run ``pulumi``: the current directory when it holds a Pulumi project,
    else this project's root (its ``Pulumi.yaml``), so `runner --target dev` works from
    wherever the data is."""
    from runner.services import PROJECT_ROOT

    here = Path.cwd()
    if (here / "Pulumi.yaml").is_file() or not (PROJECT_ROOT / "Pulumi.yaml").is_file():
        return here
    return PROJECT_ROOT


def from_pulumi(stack: str | None, *, cwd: Path | None = None) -> Outputs:
    """Outputs of a Pulumi stack via ``pulumi stack output --json --show-secrets``, run in
    :func:`pulumi_project_dir` (or ``cwd``).

    The CLI's stdout holds secrets: it is parsed, never echoed.
    """
    exe = shutil.which("pulumi")
    if exe is None:
        raise TargetError(
            "the Pulumi CLI is not installed, so stack outputs cannot be read",
            hint="install it from https://www.pulumi.com/docs/install/ or pass --outputs FILE",
        )
    cmd = [exe, "stack", "output", "--json", "--show-secrets"]
    if stack:
        cmd += ["--stack", stack]
    label = f"Pulumi stack {stack!r}" if stack else "the selected Pulumi stack"
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=cwd or pulumi_project_dir(), timeout=120, check=False
        )
    except subprocess.TimeoutExpired:
        raise TargetError(f"`pulumi stack output` for {label} timed out") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no error message"])[-1]
        raise TargetError(f"cannot read outputs of {label}: {last[:300]}", hint=_pulumi_hint(proc.stderr))
    try:
        data = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise TargetError(f"`pulumi stack output` for {label} did not return JSON") from None
    if not isinstance(data, dict) or not data:
        raise TargetError(f"{label} has no outputs", hint="run `pulumi up` first")
    return from_mapping(data, source=label)


def _pulumi_hint(stderr: str) -> str:
    """What to do about a failed ``pulumi stack output``, from what the CLI said."""
    if "PULUMI_CONFIG_PASSPHRASE" in stderr:
        # A passphrase-encrypted stack (`pulumi login --local`): `--show-secrets` cannot prompt
        # when run by the runner, so the passphrase must come from the environment.
        return (
            "the stack's secrets are passphrase-encrypted: export PULUMI_CONFIG_PASSPHRASE "
            "(or PULUMI_CONFIG_PASSPHRASE_FILE) in this shell; see docs/azure.md#deploy"
        )
    return "check `pulumi stack ls` in the project directory, or name the stack as org/project/stack"


def write_file(path: Path, outputs: Outputs) -> None:
    """Write ``outputs`` (with secrets) atomically, mode 0600."""
    text = json.dumps(outputs.to_dict(show_secrets=True), indent=2, sort_keys=True) + "\n"
    write_atomic(path, text, mode=0o600)
