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

from runner.errors import NoIdentityError, RunnerError, TlsError, UnreachableError

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
        raise from_http(exc, what) from None
    except HttpResponseError as exc:
        raise from_http(exc, what) from None
