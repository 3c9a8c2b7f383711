"""Conditional requests, as Batch evaluates them: ``If-Match``, ``If-None-Match``,
``If-Modified-Since`` and ``If-Unmodified-Since`` against a resource's ETag and
``Last-Modified``.

A condition that fails on a read (GET, HEAD) is answered 304 Not Modified
(no body, the current ``ETag``/``Last-Modified``) when it is ``If-None-Match``
or ``If-Modified-Since``, and 412 otherwise; on a write (PATCH, PUT, DELETE,
POST actions) any failed condition is 412 ``ConditionNotMet`` and nothing is
changed (Batch's "Batch status and error codes": ConditionNotMet is 304 for a
read operation, 412 for a write operation). ``If-Match``/``If-None-Match`` take
``*`` or a comma-separated list of ETags, quoted or not (``W/`` weak tags
compare by value); dates are HTTP dates compared at one-second precision; a
date that does not parse is 400 ``InvalidHeaderValue``.

Only the operations the spec declares conditional check them (:data:`CONDITIONAL`);
the others ignore the headers (files check them against the file, in the handler).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

from localbatch.errors import BatchError

HEADERS = ("If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")

# The operations that declare the four headers (2025-06-01), as (method, route shape as
# localbatch.routes.shape_of writes it): whatever their handlers are named.
_RESOURCE_ACTIONS = {
    "pools/{}": ("GET", "HEAD", "DELETE", "PATCH"),
    "pools/{}/enableautoscale": ("POST",),
    "pools/{}/resize": ("POST",),
    "pools/{}/stopresize": ("POST",),
    "pools/{}/removenodes": ("POST",),
    "jobs/{}": ("GET", "DELETE", "PATCH", "PUT"),
    "jobs/{}/disable": ("POST",),
    "jobs/{}/enable": ("POST",),
    "jobs/{}/terminate": ("POST",),
    "jobschedules/{}": ("GET", "HEAD", "DELETE", "PATCH", "PUT"),
    "jobschedules/{}/disable": ("POST",),
    "jobschedules/{}/enable": ("POST",),
    "jobschedules/{}/terminate": ("POST",),
    "jobs/{}/tasks/{}": ("GET", "DELETE", "PUT"),
    "jobs/{}/tasks/{}/terminate": ("POST",),
    "jobs/{}/tasks/{}/reactivate": ("POST",),
}
CONDITIONAL = frozenset((m, shape) for shape, methods in _RESOURCE_ACTIONS.items() for m in methods)


@dataclass(frozen=True)
class Version:
    """What the conditions are evaluated against: a resource's ETag and last change (UTC)."""

    etag: str
    last_modified: datetime


def asked(headers: Mapping[str, str]) -> bool:
    """Whether the request carries any conditional header (the fast path skips the rest)."""
    return any(h in headers for h in HEADERS)


def check(headers: Mapping[str, str], method: str, current: Version) -> None:
    """Raise the service's answer (304 or 412 ``ConditionNotMet``) if a condition fails; else return.

    The checks run in RFC 9110's order: If-Match, If-Unmodified-Since (ignored
    when If-Match is given), If-None-Match, If-Modified-Since (ignored when
    If-None-Match is given, and on writes).
    """
    read = method in ("GET", "HEAD")
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not _matches(if_match, current.etag):
            raise _failed(412, current)
    elif (since := _date(headers, "If-Unmodified-Since")) is not None and _seconds(current) > since:
        raise _failed(412, current)
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if _matches(if_none_match, current.etag):
            raise _failed(304 if read else 412, current)
    elif (since := _date(headers, "If-Modified-Since")) is not None and _seconds(current) <= since:
        raise _failed(304 if read else 412, current)


def _matches(header: str, etag: str) -> bool:
    wanted = _bare(etag)
    return any(tag == "*" or _bare(tag) == wanted for tag in (t.strip() for t in header.split(",")) if tag)


def _bare(tag: str) -> str:
    return tag.removeprefix("W/").strip('"')


def _date(headers: Mapping[str, str], name: str) -> datetime | None:
    text = headers.get(name)
    if text is None:
        return None
    try:
        value = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        value = None
    if value is None:
        raise BatchError(
            400,
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format.",
            [("HeaderName", name), ("HeaderValue", text[:64].encode("unicode_escape").decode("ascii"))],
        )
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _seconds(current: Version) -> datetime:
    return current.last_modified.replace(microsecond=0)


def _failed(status: int, current: Version) -> BatchError:
    headers = {"ETag": current.etag, "Last-Modified": format_datetime(current.last_modified, usegmt=True)}
    if status == 304:
        message = "The condition specified in the conditional header(s) was not met for a read operation."
    else:
        message = "The condition specified in the conditional header(s) was not met for a write operation."
    return BatchError(status, "ConditionNotMet", message, headers=headers)
