"""Batch's error model: one exception type, rendered as the service's error body.

A :class:`BatchError` raised anywhere while handling a request becomes a JSON
response shaped exactly like the Batch service's::

    {"odata.metadata": ".../$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
     "code": "TaskNotFound",
     "message": {"lang": "en-US", "value": "The specified task does not exist.\\nRequestId:...\\nTime:..."},
     "values": [{"key": "...", "value": "..."}]}

Messages never contain keys or SAS tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR_ENTITY = "Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"


@dataclass
class BatchError(Exception):
    """An error the service reports to the client with ``status`` and Batch ``code``."""

    status: int
    code: str
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (``Retry-After``)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def error_body(base_url: str, err: BatchError, request_id: str, time_iso: str) -> dict[str, object]:
    """The JSON body of an error response."""
    body: dict[str, object] = {
        "odata.metadata": f"{base_url}/$metadata#{ERROR_ENTITY}",
        "code": err.code,
        "message": {"lang": "en-US", "value": f"{err.message}\nRequestId:{request_id}\nTime:{time_iso}"},
    }
    if err.values:
        body["values"] = [{"key": k, "value": v} for k, v in err.values]
    return body


# Constructors for the common cases, so call sites stay short and codes stay consistent.


def not_found(kind: str) -> BatchError:
    """404 ``<Kind>NotFound`` (``kind`` is Pool, Job, Task, Node or File)."""
    what = {"Node": "node", "File": "file", "JobSchedule": "job schedule"}.get(kind, kind.lower())
    return BatchError(404, f"{kind}NotFound", f"The specified {what} does not exist.")


def exists(kind: str) -> BatchError:
    """409 ``<Kind>Exists``."""
    return BatchError(409, f"{kind}Exists", f"The specified {kind.lower()} already exists.")


def invalid_property(name: str, value: object, reason: str) -> BatchError:
    """400 ``InvalidPropertyValue`` naming the property and why."""
    return BatchError(
        400,
        "InvalidPropertyValue",
        "The value provided for one of the properties in the request body is invalid.",
        [("PropertyName", name), ("PropertyValue", _short(value)), ("Reason", reason)],
    )


def missing_property(name: str) -> BatchError:
    """400 ``MissingRequiredProperty``."""
    return BatchError(
        400,
        "MissingRequiredProperty",
        "A required property was not specified in the request body.",
        [("PropertyName", name)],
    )


def invalid_body(reason: str) -> BatchError:
    """400 ``InvalidRequestBody``: the body is not valid JSON or not the expected shape."""
    return BatchError(
        400,
        "InvalidRequestBody",
        "The specified Request Body is not syntactically valid.",
        [("Reason", reason)],
    )


def invalid_query(name: str, value: str, reason: str) -> BatchError:
    """400 ``InvalidQueryParameterValue``."""
    return BatchError(
        400,
        "InvalidQueryParameterValue",
        "Value for one of the query parameters specified in the request URI is invalid.",
        [("QueryParameterName", name), ("QueryParameterValue", _short(value)), ("Reason", reason)],
    )


def conflict(code: str, message: str) -> BatchError:
    """409 with a state-conflict code (``JobCompleted``, ``TaskCompleted``, ...)."""
    return BatchError(409, code, message)


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 200 else text[:200] + "..."


def server_busy(status: int, retry_after: int) -> BatchError:
    """503 ``ServerBusy`` or 429 ``TooManyRequests``, with ``Retry-After`` (throttling)."""
    if status == 429:
        err = BatchError(429, "TooManyRequests", "The request rate is too high; retry after the delay given.")
    else:
        busy = "The server is currently unable to receive requests. Please retry your request."
        err = BatchError(503, "ServerBusy", busy)
    err.headers["Retry-After"] = str(retry_after)
    return err


def transient_internal_error() -> BatchError:
    """500 ``InternalServerError`` that a retry of the same request may not meet."""
    return BatchError(
        500, "InternalServerError", "The server encountered an internal error. Please retry the request."
    )
