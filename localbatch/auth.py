"""Request authentication: SharedKey (rebuilt exactly as Batch clients sign) and Entra ID tokens.

SharedKey
---------

The string to sign (see ``azure/batch/_patch.py`` ``BatchSharedKeyAuthPolicy``
and Batch's "Authenticate requests" reference) is::

    VERB\\n
    Content-Encoding\\n Content-Language\\n Content-Length\\n Content-MD5\\n
    Content-Type\\n Date\\n If-Modified-Since\\n If-Match\\n If-None-Match\\n
    If-Unmodified-Since\\n Range\\n
    ocp-*:value\\n ...            (lower-cased names, sorted, empty values skipped)
    /account/raw-path
    \\nname:value ...               (query names sorted; decoded values; first value only;
                                    empty values skipped)

Clients disagree on Content-Length for an empty body (``""`` or ``"0"``), so
every legitimate variant for the actual body is accepted; nothing else is.
The comparison uses :func:`hmac.compare_digest`. A request is refused (403
``AuthenticationFailed``) when the header is missing or malformed, names
another account, carries a wrong signature, has no date, or its date is more
than 15 minutes from the server clock.

Entra ID (bearer tokens)
------------------------
:class:`BearerVerifier` checks a JWT's claims, **not its signature** (as
Azurite's ``--oauth basic`` does: no key of Entra ID's can be had offline):
the audience is ``https://batch.core.windows.net/`` (with or without the
trailing slash), the issuer is an Entra ID issuer (``https://sts.windows.net/…``,
``https://login.microsoftonline.com/…`` and the sovereign clouds' equivalents),
and now lies within ``nbf``/``exp`` give or take 5 minutes. A token is refused
over plain HTTP. Each refusal is 401 ``AuthenticationFailed`` whose
``AuthenticationErrorDetail`` names the check that failed.

:class:`Authenticator` applies the account's allowed modes (Azure's
``allowedAuthenticationModes``: ``SharedKey``, ``AAD``); a request in a mode
the account does not allow is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any, Protocol
from urllib.parse import parse_qs

from localbatch.errors import BatchError

HEADERS_TO_SIGN = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)

MAX_CLOCK_SKEW_SECONDS = 15 * 60


@dataclass(frozen=True)
class SignedRequest:
    """What the signature covers, taken from the request as received."""

    method: str
    raw_path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body_length: int
    #: True when the request came over TLS: bearer tokens are accepted only then.
    secure: bool = False


class RequestVerifier(Protocol):
    """What the HTTP boundary calls before anything else: return, or raise a 401/403 BatchError."""

    def verify(self, req: SignedRequest, now: datetime | None = None) -> None: ...


def _refuse(detail: str) -> BatchError:
    return BatchError(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header "
        "is formed correctly including the signature.",
        [("AuthenticationErrorDetail", detail)],
    )


class SharedKeyVerifier:
    """Verifies SharedKey signatures for one account."""

    def __init__(self, account_name: str, account_key: str) -> None:
        self._account_name = account_name
        try:
            self._key = base64.b64decode(account_key, validate=True)
        except ValueError as exc:
            raise ValueError("the account key is not valid base64") from exc
        if not self._key:
            raise ValueError("the account key is empty")

    def verify(self, req: SignedRequest, now: datetime | None = None) -> None:
        """Return if the request is signed by this account's key; raise 403 otherwise."""
        headers: dict[str, str] = {}
        for name, value in req.headers:
            headers.setdefault(name.lower(), value)
        auth = headers.get("authorization", "")
        if not auth:
            raise _refuse("The Authorization header is missing.")
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() == "bearer":
            raise BatchError(
                401,
                "AuthenticationFailed",
                "Microsoft Entra ID tokens are not supported by this account; use SharedKey.",
                [
                    (
                        "AuthenticationErrorDetail",
                        "Only SharedKey is allowed (tokens need localbatch --cert/--key --oauth basic).",
                    )
                ],
            )
        if scheme != "SharedKey" or ":" not in credential:
            raise _refuse("The Authorization header is not of the form 'SharedKey account:signature'.")
        account, _, signature = credential.strip().rpartition(":")
        if account != self._account_name:
            raise _refuse(f"The account '{account[:64]}' in the Authorization header is not this account.")
        self._check_date(headers, now or datetime.now(timezone.utc))
        given = signature.encode("ascii", "replace")
        for candidate in self.signatures(req, headers):
            if hmac.compare_digest(candidate.encode("ascii"), given):
                return
        raise _refuse(
            "The MAC signature found in the HTTP request is not the same as any computed signature."
        )

    def signatures(self, req: SignedRequest, headers: Mapping[str, str]) -> Iterable[str]:
        """Every legitimate signature for this request (Content-Length variants)."""
        declared = headers.get("content-length", "")
        variants = [declared, str(req.body_length)]
        if req.body_length == 0:
            variants += ["", "0"]
        seen: set[str] = set()
        for length in variants:
            if length in seen:
                continue
            seen.add(length)
            yield self.sign(self.string_to_sign(req, headers, length))

    def string_to_sign(self, req: SignedRequest, headers: Mapping[str, str], content_length: str) -> str:
        parts = [req.method.upper()]
        for name in HEADERS_TO_SIGN:
            parts.append(content_length if name == "content-length" else headers.get(name, ""))
        text = "\n".join(parts) + "\n"
        ocp = sorted((name.lower(), value) for name, value in req.headers if "ocp-" in name.lower() and value)
        for name, value in ocp:
            text += f"{name}:{value}\n"
        text += f"/{self._account_name}{req.raw_path}"
        query = parse_qs(req.raw_query)
        for name in sorted(query):
            value = query[name][0]
            if value:
                text += f"\n{name}:{value}"
        return text

    def sign(self, string_to_sign: str) -> str:
        digest = hmac.new(self._key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    @staticmethod
    def _check_date(headers: Mapping[str, str], now: datetime) -> None:
        raw = headers.get("ocp-date") or headers.get("date")
        if not raw:
            raise _refuse("The request has neither an ocp-date nor a Date header.")
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            raise _refuse("The date header is not a valid RFC 1123 date.") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        if abs((now - when).total_seconds()) > MAX_CLOCK_SKEW_SECONDS:
            raise _refuse("The request date is more than 15 minutes away from the server time.")


BATCH_AUDIENCES = frozenset({"https://batch.core.windows.net/", "https://batch.core.windows.net"})
#: Entra ID token issuers (v1 ``sts``, v2 ``login``), public and sovereign clouds; the tenant follows.
ENTRA_ISSUER_PREFIXES = (
    "https://sts.windows.net/",
    "https://login.microsoftonline.com/",
    "https://sts.chinacloudapi.cn/",
    "https://login.chinacloudapi.cn/",
    "https://login.microsoftonline.us/",
    "https://sts.microsoftonline.de/",
    "https://sts.windows-ppe.net/",
)
TOKEN_CLOCK_SKEW_SECONDS = 5 * 60


class AuthMode(str, Enum):
    """Azure's ``allowedAuthenticationModes`` values that localbatch implements."""

    SHARED_KEY = "SharedKey"
    AAD = "AAD"


def _token_refused(detail: str) -> BatchError:
    return BatchError(
        401,
        "AuthenticationFailed",
        "Server failed to authenticate the request. The bearer token was refused.",
        [("AuthenticationErrorDetail", detail)],
    )


def _b64url_json(part: str) -> Any:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def decode_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT (header.payload.signature); ValueError if it is not one. No signature check."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise ValueError("not three base64url parts")
    try:
        header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        raise ValueError("a part is not base64url-encoded JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("the header or the payload is not a JSON object")
    return claims


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _token_refused(f"The token has no numeric '{name}' claim.")
    return float(value)


class BearerVerifier:
    """Checks an Entra ID access token's claims for Batch (see the module docstring); no signature check."""

    def __init__(self, skew_seconds: float = TOKEN_CLOCK_SKEW_SECONDS) -> None:
        self._skew = skew_seconds

    def verify_token(self, token: str, now: datetime) -> None:
        """Return if the token's claims are acceptable; raise 401 naming the failed check otherwise."""
        try:
            claims = decode_claims(token.strip())
        except ValueError as exc:
            raise _token_refused(f"The bearer token is not a JWT ({exc}).") from None
        audiences = claims.get("aud")
        given = audiences if isinstance(audiences, list) else [audiences]
        if not any(isinstance(a, str) and a in BATCH_AUDIENCES for a in given):
            raise _token_refused(
                "The token's audience is not https://batch.core.windows.net/ (invalid audience)."
            )
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer.startswith(ENTRA_ISSUER_PREFIXES):
            raise _token_refused("The token's issuer is not a Microsoft Entra ID issuer (invalid issuer).")
        at = now.timestamp()
        if at + self._skew < _number(claims, "nbf"):
            raise _token_refused("The token is not yet valid (nbf is in the future).")
        if at - self._skew > _number(claims, "exp"):
            raise _token_refused("The token is expired (exp is in the past).")


class Authenticator:
    """The account's authentication: the allowed modes, each with its verifier."""

    def __init__(
        self,
        modes: frozenset[AuthMode],
        shared_key: SharedKeyVerifier | None,
        bearer: BearerVerifier | None = None,
    ) -> None:
        if not modes:
            raise ValueError("at least one authentication mode must be allowed")
        if AuthMode.SHARED_KEY in modes and shared_key is None:
            raise ValueError("SharedKey authentication needs the account key")
        self.modes = modes
        self._shared_key = shared_key
        self._bearer = bearer or BearerVerifier()

    def verify(self, req: SignedRequest, now: datetime | None = None) -> None:
        """Return if the request authenticates in an allowed mode; raise 401/403 otherwise."""
        auth = next((v for k, v in req.headers if k.lower() == "authorization"), "")
        scheme, _, credential = auth.partition(" ")
        if scheme.lower() != "bearer":
            if AuthMode.SHARED_KEY not in self.modes:
                raise BatchError(
                    401,
                    "AuthenticationFailed",
                    "Server failed to authenticate the request. This account accepts Microsoft Entra ID "
                    "tokens only.",
                    [("AuthenticationErrorDetail", "SharedKey authentication is not allowed (AAD only).")],
                )
            assert self._shared_key is not None
            self._shared_key.verify(req, now)
            return
        if AuthMode.AAD not in self.modes:
            assert self._shared_key is not None
            self._shared_key.verify(req, now)  # refuses the bearer token, as before
            return
        if not req.secure:
            raise _token_refused("Bearer tokens are accepted over HTTPS only.")
        self._bearer.verify_token(credential, now or datetime.now(timezone.utc))
