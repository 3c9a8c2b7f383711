"""Which target a command talks to, and the clients for it.

Resolution, in order:

1. ``--outputs FILE``: that file (any target: CI machines without Pulumi).
2. ``--target STACK`` or ``RUNNER_STACK``: that Pulumi stack's outputs.
3. otherwise, or ``--target local``: the embedded local target
   (Azurite + localbatch under ``$RUNNER_HOME/local``), started when needed.

The local target never silently becomes another one: if its services cannot
start, the command fails. :meth:`Target.describe` is what the CLI prints
before doing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from azure.core.credentials import TokenCredential

from runner.errors import UsageError
from runner.outputs import Outputs, from_pulumi, load_file

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


@dataclass
class Session:
    """A resolved target with its clients: what every command needs."""

    target: Target
    outputs: Outputs
    auth: AuthMode

    def __post_init__(self) -> None:
        from runner.batch import Batch
        from runner.storage import Storage

        if self.auth is AuthMode.ENTRA:
            plain = [
                url
                for url in (self.outputs.batch_account_url, self.outputs.storage_blob_endpoint)
                if not url.lower().startswith("https://")
            ]
            if plain:
                raise UsageError(
                    "--auth entra needs https endpoints (tokens are never sent in clear)",
                    hint="the local target uses shared keys: drop --auth entra",
                )
        credential = credential_for(self.auth)
        self.batch = Batch(self.outputs, credential=credential)
        self.storage = Storage(self.outputs, credential=credential)
