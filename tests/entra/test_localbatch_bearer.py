"""localbatch and Entra ID: bearer tokens over HTTPS through the real SDK; each refusal names its check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from localbatch.auth import Authenticator, AuthMode, BearerVerifier, SignedRequest
from localbatch.errors import BatchError
from tests.conftest import Azurite, LocalBatch, new_account_key
from tests.entra.helpers import StaticToken, TlsBatch, batch_token, start_tls_localbatch


@pytest.fixture(scope="module")
def entra_only(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Iterator[TlsBatch]:
    server = start_tls_localbatch(tmp_path_factory.mktemp("lb-aad"), azurite.blob_endpoint, modes="AAD")
    yield server
    server.process.stop()


def _detail(exc: HttpResponseError) -> str:
    body = json.loads(exc.response.text())
    assert body["code"] == "AuthenticationFailed"
    return " ".join(v["value"] for v in body.get("values", []) if v["key"] == "AuthenticationErrorDetail")


def test_tokens_for_batch_are_accepted_with_or_without_the_trailing_slash(entra_only: TlsBatch) -> None:
    for audience in ("https://batch.core.windows.net/", "https://batch.core.windows.net"):
        credential = batch_token(audience=audience)
        assert isinstance(list(entra_only.client(credential).list_pools()), list)
        assert credential.calls >= 1


def test_skew_of_five_minutes_is_allowed(entra_only: TlsBatch) -> None:
    now = time.time()
    expired_4min = batch_token(lifetime=60, now=now - 300)  # exp 4 min ago
    list(entra_only.client(expired_4min).list_pools())
    early = batch_token(lifetime=3600, now=now + 240)  # nbf in 4 min
    list(entra_only.client(early).list_pools())


@pytest.mark.parametrize(
    ("label", "credential", "words"),
    [
        ("audience", lambda: batch_token(audience="https://storage.azure.com"), "audience"),
        ("expired", lambda: batch_token(lifetime=60, now=time.time() - 420), "expired"),
        ("not yet valid", lambda: batch_token(now=time.time() + 420), "not yet valid"),
        ("not a JWT", lambda: StaticToken("not-a-jwt"), "not a JWT"),
    ],
)
def test_refusals_name_the_failed_check(
    entra_only: TlsBatch, label: str, credential: object, words: str
) -> None:
    with pytest.raises(HttpResponseError) as info:
        list(entra_only.client(credential()).list_pools())  # type: ignore[operator]
    assert info.value.status_code == 401, label
    assert words in _detail(info.value), label


def test_wrong_issuer_is_refused(entra_only: TlsBatch) -> None:
    good = batch_token()
    header, payload, sig = good.token.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["iss"] = "https://evil.example/"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(HttpResponseError) as info:
        list(entra_only.client(StaticToken(f"{header}.{forged}.{sig}")).list_pools())
    assert info.value.status_code == 401 and "issuer" in _detail(info.value)


def test_entra_only_account_refuses_shared_key(entra_only: TlsBatch) -> None:
    client = entra_only.client(AzureNamedKeyCredential("localbatch", new_account_key()))
    with pytest.raises(HttpResponseError) as info:
        list(client.list_pools())
    assert info.value.status_code == 401 and "SharedKey" in _detail(info.value)


def test_both_modes_when_asked(tmp_path: Path, azurite: Azurite) -> None:
    key = new_account_key()
    server = start_tls_localbatch(tmp_path, azurite.blob_endpoint, modes="SharedKey,AAD", account_key=key)
    try:
        list(server.client(AzureNamedKeyCredential("localbatch", key)).list_pools())
        list(server.client(batch_token()).list_pools())
    finally:
        server.process.stop()


def test_the_local_ca_is_needed_to_talk_to_it(entra_only: TlsBatch) -> None:
    from azure.batch import BatchClient

    with pytest.raises(ServiceRequestError):
        list(BatchClient(entra_only.url, batch_token(), connection_retry=0).list_pools())


def test_bearer_over_plain_http_is_refused(localbatch: LocalBatch) -> None:
    """The SDK never sends a token over http; a raw request that does is refused (401)."""
    token = batch_token().token
    req = urllib.request.Request(
        f"{localbatch.url}/pools?api-version=2025-06-01", headers={"Authorization": f"Bearer {token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 401
    # An account that takes tokens still refuses them without TLS.
    auth = Authenticator(frozenset({AuthMode.AAD}), None, BearerVerifier())
    plain = SignedRequest("GET", "/pools", "", [("Authorization", f"Bearer {token}")], 0, secure=False)
    with pytest.raises(BatchError) as refused:
        auth.verify(plain)
    assert refused.value.status == 401 and "HTTPS only" in str(refused.value.values)
    auth.verify(SignedRequest("GET", "/pools", "", [("Authorization", f"Bearer {token}")], 0, secure=True))


@pytest.mark.parametrize(
    "args",
    [
        ["--oauth", "basic"],  # no certificate
        ["--auth-modes", "AAD"],  # no --oauth
        ["--auth-modes", "Kerberos"],
    ],
)
def test_contradicting_options_exit_2(tmp_path: Path, args: list[str]) -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "localbatch",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--account-name",
            "a",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            "LOCALBATCH_ACCOUNT_KEY": new_account_key(),
        },
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "localbatch:" in res.stderr
