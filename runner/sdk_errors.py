"""The translation every SDK call shares: azure-core's exceptions -> :class:`RunnerError`.

``runner.batch`` and ``runner.storage`` each wrap their SDK calls in
:func:`translated`, giving the service's name, its endpoint host and how to
read an HTTP error of that service (status and error codes differ). Messages
never include a URL, a header or a token: only the host and what we were doing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from runner.errors import AuthError, RunnerError, UnreachableError

FromHttp = Callable[[HttpResponseError, str], RunnerError]


@contextmanager
def translated(service: str, endpoint: str, what: str, from_http: FromHttp) -> Iterator[None]:
    """Re-raise SDK errors as RunnerErrors: unreachable, no Entra token, or ``from_http``."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError):
        raise UnreachableError(
            f"{service} endpoint {endpoint} is unreachable while {what}",
            hint="is the target running? (`runner local status` for the local target)",
        ) from None
    except ClientAuthenticationError as exc:
        if exc.status_code is None:  # no answer from the service: the credential itself failed
            raise AuthError(
                f"could not get an Entra ID token while {what}",
                hint="sign in (`az login`) or configure DefaultAzureCredential",
            ) from None
        raise from_http(exc, what) from None
    except HttpResponseError as exc:
        raise from_http(exc, what) from None
