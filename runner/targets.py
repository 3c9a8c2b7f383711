"""Which target a command talks to, and the clients for it.

Resolution, in order:

1. ``--outputs FILE``: that file (any target: CI machines without Pulumi).
2. ``--target STACK`` or ``RUNNER_STACK``: that Pulumi stack's outputs.
3. otherwise, or ``--target local``: the embedded local target
   (Azurite + localbatch under ``$RUNNER_HOME/local``), started when needed.

The local target never silently becomes another one: if its services cannot
start, the command fails. ``--auth`` must fit the target (:func:`_check_auth`):
entra needs https endpoints, shared keys need keys in the outputs.
:meth:`Target.describe` is what the CLI prints before doing anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from azure.core.credentials import TokenCredential

from runner.errors import AuthModeMismatch, UsageError
from runner.outputs import Outputs, from_pulumi, load_file

if TYPE_CHECKING:
    from runner.local import LocalTrust

LOCAL = "local"


class TargetKind(str, Enum):
    LOCAL = "local"
    STACK = "stack"
    FILE = "file"


class AuthMode(str, Enum):
    SHAREDKEY = "sharedkey"
    ENTRA = "entra"


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    stack: str | None = None
    outputs_file: Path | None = None

    def describe(self) -> str:
        if self.kind is TargetKind.LOCAL:
            return "local (Azurite + localbatch on this machine)"
        if self.kind is TargetKind.FILE:
            return f"outputs file {self.outputs_file}"
        return f"Pulumi stack {self.stack}"

    @property
    def label(self) -> str:
        if self.kind is TargetKind.LOCAL:
            return LOCAL
        if self.kind is TargetKind.FILE:
            return f"file:{self.outputs_file}"
        return f"stack:{self.stack}"


def resolve(target: str | None, outputs_file: Path | None) -> Target:
    """Pick the target from the global options (see the module docstring)."""
    if outputs_file is not None:
        return Target(TargetKind.FILE, outputs_file=outputs_file)
    if target is None or target.strip() == "" or target == LOCAL:
        return Target(TargetKind.LOCAL)
    if target.startswith("-"):
        raise UsageError(f"--target {target!r} is not a stack name")
    return Target(TargetKind.STACK, stack=target)


def load_outputs(target: Target, *, start_local: bool = True) -> Outputs:
    """The target's outputs; for the local target, start its services when ``start_local``."""
    if target.kind is TargetKind.FILE:
        assert target.outputs_file is not None
        return load_file(target.outputs_file)
    if target.kind is TargetKind.STACK:
        return from_pulumi(target.stack)
    from runner import local  # local imports the SDK modules: only when needed

    if start_local:
        return local.ensure_up().outputs
    return local.read_outputs()


def credential_for(auth: AuthMode) -> TokenCredential | None:
    """``None`` for shared keys; ``DefaultAzureCredential`` for Entra ID."""
    if auth is AuthMode.SHAREDKEY:
        return None
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def local_identity_credential(trust: LocalTrust) -> TokenCredential:
    """The local target's managed identity: azure-identity's ``ManagedIdentityCredential``
    pointed at the local token endpoint.

    azure-identity reads ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` from the process
    environment on every token request, so they are set in this (runner) process;
    the local target is the only thing this process talks to. No other identity
    (``az login``, a service principal) is ever used for, or sent to, the local target.
    """
    from azure.identity import ManagedIdentityCredential

    os.environ["IDENTITY_ENDPOINT"] = trust.identity_endpoint
    os.environ["IDENTITY_HEADER"] = trust.identity_header
    os.environ.pop("IDENTITY_SERVER_THUMBPRINT", None)  # else azure-identity would speak Service Fabric
    return ManagedIdentityCredential()


def _check_auth(auth: AuthMode, outputs: Outputs, local_entra: bool | None) -> None:
    """Refuse an ``--auth`` that cannot work with the target (``local_entra``: None if not local)."""
    if local_entra is not None:
        if auth is AuthMode.ENTRA and not local_entra:
            raise AuthModeMismatch(
                "--auth entra: the local target runs with shared keys",
                hint="drop --auth entra, or `runner local down` then `runner local up --auth entra`",
            )
        if auth is AuthMode.SHAREDKEY and local_entra:
            raise AuthModeMismatch(
                "the local target runs in Entra ID mode (it holds no keys)", hint="add --auth entra"
            )
        return
    if auth is AuthMode.ENTRA:
        plain = [
            url
            for url in (outputs.batch_account_url, outputs.storage_blob_endpoint)
            if not url.lower().startswith("https://")
        ]
        if plain:
            raise AuthModeMismatch(
                "--auth entra needs https endpoints (tokens are never sent in clear)",
                hint="this target uses shared keys: drop --auth entra",
            )
    elif not outputs.batch_account_key or not outputs.storage_account_key:
        which = "Batch" if not outputs.batch_account_key else "Storage"
        raise AuthModeMismatch(
            f"no {which} key in the outputs: this target is for Entra ID", hint="add --auth entra"
        )


@dataclass
class Session:
    """A resolved target with its clients: what every command needs.

    For the local target in Entra ID mode the clients use the local identity and
    trust the local CA (``ca_bundle``); for any other target, the system's CAs
    and ``DefaultAzureCredential``: the local CA is never trusted for them.
    """

    target: Target
    outputs: Outputs
    auth: AuthMode

    def __post_init__(self) -> None:
        from runner.batch import Batch
        from runner.storage import Storage

        trust = None
        local_entra = None
        if self.target.kind is TargetKind.LOCAL:
            from runner import local

            trust = local.entra_trust()
            local_entra = trust is not None
        _check_auth(self.auth, self.outputs, local_entra)
        credential = local_identity_credential(trust) if trust else credential_for(self.auth)
        ca = str(trust.ca_file) if trust else None
        self.batch = Batch(self.outputs, credential=credential, ca_bundle=ca)
        self.storage = Storage(self.outputs, credential=credential, ca_bundle=ca)
