"""The local target's identity: a token endpoint speaking Azure's managed-identity protocol.

``python -m runner.token_endpoint --data-dir DIR [--lifetime SECONDS]`` serves,
on 127.0.0.1, the App Service flavour of the protocol that azure-identity's
``ManagedIdentityCredential`` (and so ``DefaultAzureCredential``) uses when
``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set::

    GET /msi/token?api-version=2019-08-01&resource=RESOURCE
    X-IDENTITY-HEADER: <the secret>
    -> 200 {"access_token": JWT, "expires_on": "<epoch s>", "resource": RESOURCE, "token_type": "Bearer"}

Contracts:

* The secret comes from ``$RUNNER_IDENTITY_HEADER`` (never the command line);
  a request without it is refused (401), as App Service refuses it.
* Tokens are issued only for the Batch (``https://batch.core.windows.net/``)
  and Storage (``https://storage.azure.com``) resources; any other resource
  is a 400 whose message names the ones it serves.
* Two identities: the runner's (no identity named) and the pool's user-assigned
  identity :data:`POOL_IDENTITY_RESOURCE_ID`, asked for by ``mi_res_id`` as
  App Service allows (``client_id``/``object_id`` of it too), each with its own
  ``oid``. Any other identity named is a 400 naming the one it serves.
* A token is a JWT whose claims the local services check (``aud``, an Entra
  ``iss``, ``iat``/``nbf``/``exp``, ``oid``/``tid``); its signature is not a real
  one: nothing offline can verify an Entra ID signature. Tokens are worth
  nothing outside this machine's local target.
* When it listens it writes its URL to ``DIR/endpoint`` (atomically) and logs
  one line per token issued (resource and lifetime, never the token).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("runner.token_endpoint")

HEADER_ENV = "RUNNER_IDENTITY_HEADER"
TOKEN_PATH = "/msi/token"
BATCH_RESOURCE = "https://batch.core.windows.net/"
STORAGE_RESOURCE = "https://storage.azure.com"
#: resource as asked (scope minus "/.default") -> the audience of the token.
RESOURCES = {
    "https://batch.core.windows.net/": BATCH_RESOURCE,
    "https://batch.core.windows.net": BATCH_RESOURCE,
    "https://storage.azure.com/": STORAGE_RESOURCE,
    "https://storage.azure.com": STORAGE_RESOURCE,
}
#: A fixed, made-up tenant and identity: the local target has one identity.
TENANT_ID = "00000000-0000-4000-8000-00000000a2b0"
OBJECT_ID = "00000000-0000-4000-8000-0000000100ca"
DEFAULT_LIFETIME_SECONDS = 3600
#: The local pool's user-assigned identity (made-up subscription; the outputs' ``poolIdentityResourceId``).
POOL_IDENTITY_RESOURCE_ID = (
    f"/subscriptions/{TENANT_ID}/resourceGroups/azbatch-local"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pool-identity"
)
POOL_OBJECT_ID = "00000000-0000-4000-8000-0000000200ca"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_token(
    audience: str, lifetime: float, now: float | None = None, object_id: str = OBJECT_ID
) -> tuple[str, int]:
    """An unsigned-in-effect JWT for ``audience`` (as identity ``object_id``) and its expiry (epoch s)."""
    issued = int(now if now is not None else time.time())
    expires = issued + int(lifetime)
    header = {"alg": "RS256", "typ": "JWT", "kid": "azbatch-local"}
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{TENANT_ID}/",
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "oid": object_id,
        "sub": object_id,
        "tid": TENANT_ID,
        "appid": object_id,
        "idtyp": "app",
        "uti": uuid.uuid4().hex,
        "ver": "1.0",
    }
    parts = [_b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims)]
    # Not a signature anyone can check: the local services verify claims only.
    parts.append(_b64url(os.urandom(32)))
    return ".".join(parts), expires


def _identity(query: dict[str, list[str]]) -> str | None:
    """The object id of the identity a request names (the runner's when it names none); None if unknown."""
    named = {k: (query.get(k) or [""])[0] for k in ("mi_res_id", "msi_res_id", "client_id", "object_id")}
    named = {k: v for k, v in named.items() if v}
    if not named:
        return OBJECT_ID
    pool = {POOL_IDENTITY_RESOURCE_ID.lower(), POOL_OBJECT_ID}
    return POOL_OBJECT_ID if all(v.lower() in pool for v in named.values()) else None


class _Handler(BaseHTTPRequestHandler):
    server: _TokenServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines are not logged: do_GET logs what matters, without secrets

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != TOKEN_PATH:
            self._send(404, {"statusCode": 404, "message": "not found"})
            return
        given = self.headers.get("X-IDENTITY-HEADER", "")
        if not given or not hmac.compare_digest(given.encode(), self.server.secret.encode()):
            self._send(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"})
            return
        query = parse_qs(parts.query)
        resource = (query.get("resource") or [""])[0]
        audience = RESOURCES.get(resource)
        if audience is None:
            self._send(
                400,
                {
                    "statusCode": 400,
                    "message": f"this local identity issues tokens for {BATCH_RESOURCE} and "
                    f"{STORAGE_RESOURCE} only",
                },
            )
            return
        object_id = _identity(query)
        if object_id is None:
            self._send(
                400,
                {
                    "statusCode": 400,
                    "message": "this local target has one user-assigned identity: "
                    f"mi_res_id={POOL_IDENTITY_RESOURCE_ID}",
                },
            )
            return
        token, expires = make_token(audience, self.server.lifetime, object_id=object_id)
        who = " as the pool identity" if object_id == POOL_OBJECT_ID else ""
        log.info("issued a token for %s%s, valid %ds", audience, who, int(self.server.lifetime))
        self._send(
            200,
            {
                "access_token": token,
                "expires_on": str(expires),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": object_id,
            },
        )


class _TokenServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, secret: str, lifetime: float) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.secret = secret
        self.lifetime = lifetime


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner.token_endpoint", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="where the endpoint file is written")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free port)")
    p.add_argument(
        "--lifetime", type=float, default=DEFAULT_LIFETIME_SECONDS, help="seconds a token is valid"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = os.environ.get(HEADER_ENV, "")
    if not secret:
        print(f"token endpoint: ${HEADER_ENV} is not set", file=sys.stderr)
        return 2
    if not 1 <= args.lifetime <= 24 * 3600:
        print("token endpoint: --lifetime must be between 1 and 86400 seconds", file=sys.stderr)
        return 2
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "endpoint").unlink(missing_ok=True)
    server = _TokenServer(args.port, secret, args.lifetime)
    url = f"http://127.0.0.1:{server.server_address[1]}{TOKEN_PATH}"

    def stop(_sig: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tmp = data_dir / f".endpoint.{os.getpid()}.tmp"
    tmp.write_text(url + "\n", encoding="utf-8")
    os.replace(tmp, data_dir / "endpoint")
    log.info("token endpoint listening on %s", url)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        (data_dir / "endpoint").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
