"""SharedKey verification, rebuilt exactly as Batch clients sign requests.

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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
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
                "Bearer tokens (Microsoft Entra ID) are not supported by localbatch; use SharedKey.",
                [("AuthenticationErrorDetail", "Only SharedKey authentication is supported locally.")],
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
