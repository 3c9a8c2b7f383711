"""The pool's user-assigned identities as its nodes use them: Storage tokens from a managed-identity endpoint.

On Azure a node asks the instance metadata service for a token of one of its
pool's user-assigned identities; here the node asks the managed-identity
endpoint given to ``serve --identity-endpoint`` (the App Service protocol of
:mod:`runner.token_endpoint`), naming the identity by ``mi_res_id``, with the
header secret from ``$LOCALBATCH_IDENTITY_HEADER`` (never the command line).

Contracts:

* :func:`configure` is called once at start-up (``serve --pool-identity``, repeatable:
  the identities every pool of the account has, standing in for the management
  plane, the only place Azure sets a pool's identity). :func:`pool_identity` is
  what a pool shows as ``identity`` (``None`` without identities).
* :func:`storage_token` raises :class:`IdentityUnavailable` when the identity is
  not one of the pool's (compared case-insensitively, as ARM ids are), when no
  endpoint is configured, or when the endpoint refuses; the message names the
  identity and what to do, never a token or the header.
* Tokens are cached per identity and reused while more than a quarter of their
  lifetime (at most 5 minutes) is left; thread-safe.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import urllib3

log = logging.getLogger(__name__)

HEADER_ENV = "LOCALBATCH_IDENTITY_HEADER"
STORAGE_RESOURCE = "https://storage.azure.com/"
API_VERSION = "2019-08-01"
TIMEOUT_SECONDS = 10.0
MAX_MARGIN_SECONDS = 300.0


class IdentityUnavailable(Exception):
    """No token can be had for an identity a task's file names."""


@dataclass(frozen=True)
class NodeIdentities:
    """The account's pool identities (ARM resource ids) and where their tokens come from."""

    resource_ids: tuple[str, ...] = ()
    endpoint: str | None = None
    header: str = field(default="", repr=False)

    def has(self, resource_id: str) -> bool:
        return resource_id.lower() in {r.lower() for r in self.resource_ids}


_lock = threading.Lock()
_config = NodeIdentities()
_tokens: dict[str, tuple[str, float, float]] = {}  # lower-cased id -> (token, expires_on, margin)
_http: urllib3.PoolManager | None = None


def configure(identities: NodeIdentities) -> None:
    """Install the account's identities (start-up; replaces any earlier configuration)."""
    global _config
    with _lock:
        _config = identities
        _tokens.clear()


def pool_identity() -> dict[str, Any] | None:
    """A pool's ``identity`` as Batch shows it (``BatchPoolIdentity``), or ``None``."""
    ids = _config.resource_ids
    if not ids:
        return None
    return {"type": "UserAssigned", "userAssignedIdentities": [{"resourceId": r} for r in ids]}


def storage_token(resource_id: str) -> str:
    """A bearer token for Storage as ``resource_id``; :class:`IdentityUnavailable` if none can be had."""
    config = _config
    if not config.has(resource_id):
        raise IdentityUnavailable(
            f"the pool has no user-assigned identity {resource_id}: add it to the pool's "
            "identity.userAssignedIdentities or reference one the pool has"
        )
    key = resource_id.lower()
    now = time.time()
    with _lock:
        cached = _tokens.get(key)
    if cached is not None and cached[1] - now > cached[2]:
        return cached[0]
    if not config.endpoint:
        raise IdentityUnavailable(f"no managed-identity endpoint is set for {resource_id}")
    token, expires_on = _fetch(config, resource_id)
    margin = min(MAX_MARGIN_SECONDS, max(0.0, (expires_on - now) / 4))
    with _lock:
        _tokens[key] = (token, expires_on, margin)
    return token


def _pool() -> urllib3.PoolManager:
    global _http
    with _lock:
        if _http is None:
            timeout = urllib3.Timeout(total=TIMEOUT_SECONDS)
            _http = urllib3.PoolManager(num_pools=2, maxsize=4, timeout=timeout)
        return _http


def _fetch(config: NodeIdentities, resource_id: str) -> tuple[str, float]:
    query = urlencode({"api-version": API_VERSION, "resource": STORAGE_RESOURCE, "mi_res_id": resource_id})
    where = f"the managed-identity endpoint for {resource_id}"
    try:
        resp = _pool().request(
            "GET",
            f"{config.endpoint}?{query}",
            headers={"X-IDENTITY-HEADER": config.header},
            retries=urllib3.Retry(2, status_forcelist=(500, 502, 503, 504), backoff_factor=0.2),
        )
    except urllib3.exceptions.HTTPError as exc:
        raise IdentityUnavailable(f"{where} is unreachable: {type(exc).__name__}") from None
    if resp.status != 200:
        raise IdentityUnavailable(f"{where} answered HTTP status {resp.status}")
    try:
        body = json.loads(resp.data)
        token, expires_on = str(body["access_token"]), float(body["expires_on"])
    except (ValueError, KeyError, TypeError):
        raise IdentityUnavailable(f"{where} did not return a token") from None
    log.debug("got a Storage token for %s", resource_id)
    return token, expires_on


class IdentityCredential:
    """An azure-core ``TokenCredential`` of one pool identity (for the storage SDK's clients)."""

    def __init__(self, resource_id: str) -> None:
        self.resource_id = resource_id

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        token = storage_token(self.resource_id)
        with _lock:
            cached = _tokens.get(self.resource_id.lower())
        return AccessToken(token, int(cached[1]) if cached else int(time.time()) + 60)
