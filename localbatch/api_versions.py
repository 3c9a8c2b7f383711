"""The ``api-version`` values localbatch answers to.

Every version listed here uses the JSON shapes localbatch implements (the
shapes have been stable since the 2018 generation for everything in scope).
They are the versions Azure still serves: every one newer than September 2017
(https://learn.microsoft.com/rest/api/batchservice/batch-api-status; the older
ones were removed in 2020 and 2021). Anything else is refused with Batch's ``InvalidQueryParameterValue`` (or
``MissingRequiredQueryParameter`` when absent).
"""

from __future__ import annotations

import json
from typing import Any

from localbatch.errors import BatchError, invalid_query

CURRENT = "2025-06-01"

SUPPORTED: frozenset[str] = frozenset(
    {
        "2025-06-01",
        "2024-07-01.20.0",
        "2024-02-01.19.0",
        "2023-11-01.18.0",
        "2023-05-01.17.0",
        "2022-10-01.16.0",
        "2022-01-01.15.0",
        "2021-06-01.14.0",
        "2020-09-01.12.0",
        "2020-03-01.11.0",
        "2019-08-01.10.0",
        "2019-06-01.9.0",
        "2018-12-01.8.0",
        "2018-08-01.7.0",
        "2018-03-01.6.1",
    }
)

#: The first version without ``GET /nodeagentskus`` (replaced by ``GET /supportedimages``).
NO_NODE_AGENT_SKUS = "2020-09-01.12.0"


def has_node_agent_skus(version: str) -> bool:
    """Whether ``version`` (a supported one) still defines ``GET /nodeagentskus``."""
    return version.split(".")[0] < NO_NODE_AGENT_SKUS.split(".")[0]


#: The first version where a resource file's URL is ``httpUrl`` (before: ``blobSource``).
HTTP_URL_SINCE = "2018-12-01.8.0"


def upgrade_body(body: bytes, version: str) -> bytes:
    """A request body of an earlier api-version in 2025-06-01's terms: a resource file's
    ``blobSource`` (before 2018-12-01.8.0) becomes ``httpUrl``. Other bodies are returned as given."""
    if version.split(".")[0] >= HTTP_URL_SINCE.split(".")[0] or b'"blobSource"' not in body:
        return body
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return body  # the handler answers for a body that is not JSON
    return json.dumps(_renamed(value), separators=(",", ":")).encode()


def _renamed(value: Any) -> Any:
    if isinstance(value, dict):
        return {("httpUrl" if k == "blobSource" else k): _renamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v) for v in value]
    return value


def check(value: str | None) -> str:
    """Return the version if it is supported; raise Batch's 400 otherwise."""
    if not value:
        raise BatchError(
            400,
            "MissingRequiredQueryParameter",
            "A query parameter that's mandatory for this request is not specified.",
            [("QueryParameterName", "api-version")],
        )
    if value not in SUPPORTED:
        raise invalid_query("api-version", value, "The specified api version is not supported.")
    return value
