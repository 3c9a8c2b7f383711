"""The translation every SDK call shares: azure-core's exceptions -> :class:`RunnerError`.

``runner.batch`` and ``runner.storage`` each wrap their SDK calls in
:func:`translated`, giving the service's name, its endpoint host and how to
read an HTTP error of that service (status and error codes differ). Messages
never include a URL, a header or a token: only the host and what we were doing.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from runner.errors import AuthError, NoIdentityError, RunnerError, TlsError, UnreachableError

FromHttp = Callable[[HttpResponseError, str], RunnerError]

_CREDENTIAL_NAME = re.compile(r"\b([A-Z][A-Za-z]*Credential)\b")


def is_tls_failure(exc: BaseException) -> bool:
    """True if a TLS error (certificate verification, handshake) is among ``exc``'s causes."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo and len(seen) < 50:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError) or type(item).__name__ == "SSLError":
            return True
        todo += [getattr(item, "inner_exception", None), item.__cause__, item.__context__]
        todo += [getattr(item, "reason", None), *item.args]
    return False


def _token_refusal(exc: HttpResponseError) -> bool:
    """True if the service refused the bearer token itself (not a missing role: that is 403
    AuthorizationFailure / AuthorizationPermissionMismatch)."""
    request = getattr(exc.response, "request", None)
    headers = getattr(request, "headers", None) or {}
    if not str(headers.get("Authorization", "")).lower().startswith("bearer "):
        return False
    code = getattr(exc, "error_code", None)
    code = getattr(code, "value", code)
    return exc.status_code == 401 or (exc.status_code == 403 and code == "AuthenticationFailed")


def _refusal_detail(exc: HttpResponseError) -> str:
    """What the service said about a refused token (Batch's AuthenticationErrorDetail, Storage's
    message), on one line, without control characters; never a header or the token."""
    text = ""
    try:
        body = exc.response.text() if exc.response is not None else ""
    except (ValueError, UnicodeDecodeError):
        body = ""
    match = re.search(r'"key":\s*"AuthenticationErrorDetail",\s*"value":\s*"([^"]{1,300})"', body)
    if match:
        text = match.group(1)
    else:
        match = re.search(r"<AuthenticationErrorDetail>([^<]{1,300})<", body) or re.search(
            r"<Message>([^<\n]{1,300})", body
        )
        text = match.group(1) if match else ""
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def token_refused(service: str, exc: HttpResponseError, what: str) -> AuthError:
    detail = _refusal_detail(exc)
    return AuthError(
        f"{service} refused the Entra ID token while {what} ({exc.status_code}"
        + (f": {detail})" if detail else ")"),
        hint="a token for another audience or an expired one: check the identity's clock and tenant, "
        "and its role assignments",
    )


def credentials_tried(exc: BaseException) -> list[str]:
    """The azure-identity credentials an authentication error says were tried, in its order."""
    names: list[str] = []
    for name in _CREDENTIAL_NAME.findall(str(getattr(exc, "message", "") or exc)):
        if name not in names and name != "DefaultAzureCredential":
            names.append(name)
    return names


@contextmanager
def translated(service: str, endpoint: str, what: str, from_http: FromHttp) -> Iterator[None]:
    """Re-raise SDK errors as RunnerErrors: TLS failure, unreachable, no Entra token, or ``from_http``."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as exc:
        if is_tls_failure(exc):
            raise TlsError(
                f"TLS verification of {service} endpoint {endpoint} failed while {what}",
                hint="its certificate is not trusted by this machine (the local target's CA is used "
                "only for the local target; elsewhere set REQUESTS_CA_BUNDLE for a private CA)",
            ) from None
        raise UnreachableError(
            f"{service} endpoint {endpoint} is unreachable while {what}",
            hint="is the target running? (`runner local status` for the local target)",
        ) from None
    except ClientAuthenticationError as exc:
        if exc.status_code is None:  # no answer from the service: the credential itself failed
            tried = ", ".join(credentials_tried(exc)) or type(exc).__name__
            raise NoIdentityError(
                f"could not get an Entra ID token while {what}; tried: {tried}",
                hint="sign in with `az login`, use a managed identity, or set AZURE_TOKEN_CREDENTIALS "
                "to the one source to use; for the local target: `runner local up --auth entra`",
            ) from None
        if _token_refusal(exc):
            raise token_refused(service, exc, what) from None
        raise from_http(exc, what) from None
    except HttpResponseError as exc:
        if _token_refusal(exc):
            raise token_refused(service, exc, what) from None
        raise from_http(exc, what) from None
