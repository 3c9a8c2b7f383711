"""Shared pieces of the Entra ID tests: a static token credential, a localbatch over HTTPS.

:class:`StaticToken` is a real azure-core ``TokenCredential`` (the SDK calls
it as it calls azure-identity's); it hands out one token made by the test, so
a test can send exactly the claims it means to (expired, wrong audience, …).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.batch import BatchClient
from azure.core.credentials import AccessToken

from runner import local_ca, services
from runner.token_endpoint import BATCH_RESOURCE, make_token


class StaticToken:
    """A TokenCredential that returns one fixed token (and counts how often it was asked)."""

    def __init__(self, token: str, expires_on: int | None = None) -> None:
        self.token = token
        self.expires_on = expires_on or int(time.time()) + 3600
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(self.token, self.expires_on)


def batch_token(
    lifetime: float = 600, now: float | None = None, audience: str = BATCH_RESOURCE
) -> StaticToken:
    token, expires = make_token(audience, lifetime, now=now)
    return StaticToken(token, expires)


@dataclass(frozen=True)
class TlsBatch:
    """A localbatch over HTTPS with its CA file."""

    url: str
    ca_file: Path
    process: services.ServiceProcess

    def client(self, credential: Any, **kwargs: Any) -> BatchClient:
        return BatchClient(self.url, credential, connection_verify=str(self.ca_file), **kwargs)


def start_tls_localbatch(
    tmp: Path, azurite_url: str, *, modes: str, account_key: str | None = None
) -> TlsBatch:
    """A localbatch serving HTTPS with a fresh local CA, ``--oauth basic`` and ``--auth-modes modes``."""
    tls = local_ca.ensure(tmp / "tls")
    proc = services.start_localbatch(
        tmp / "localbatch",
        account_name="localbatch",
        account_key=account_key,
        storage_blob_endpoint=azurite_url,
        storage_account_name=services.AZURITE_ACCOUNT_NAME,
        storage_account_key=None,
        extra_args=[
            *("--cert", str(tls.server_cert), "--key", str(tls.server_key)),
            *("--oauth", "basic", "--auth-modes", modes),
        ],
    )
    return TlsBatch(proc.url, tls.ca_cert, proc)
