"""``serve --check-contract FILE``: check every response localbatch sends against the Batch contract.

:func:`install` adds an aiohttp middleware that runs :func:`check.check_response`
on each response just before it is sent and appends one JSON line per
violation to FILE (``operation``, ``method``, ``path``, ``status``,
``problem``; never a header value). The line is written and flushed before
the response leaves, so a client that got its answer can read the verdict.
Off by default: without the option nothing here is even imported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from localbatch.contract.check import Exchange, Violation, check_response
from localbatch.contract.spec import Contract, load

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ViolationLog:
    """Appends violations to a JSON-lines file (opened per write: the file may be rotated by tests)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)

    def write(self, violations: list[Violation]) -> None:
        lines = "".join(json.dumps(v.as_dict()) + "\n" for v in violations)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(lines)


def exchange(request: web.Request, response: web.StreamResponse) -> Exchange:
    """The checker's view of one aiohttp request and the response about to be sent."""
    body: bytes | None = None
    if isinstance(response, web.Response):
        raw = response.body
        body = bytes(raw) if isinstance(raw, (bytes, bytearray)) else (b"" if raw is None else None)
    return Exchange(
        method=request.method,
        raw_path=request.raw_path.partition("?")[0],
        request_headers=request.headers,
        status=response.status,
        headers=response.headers,
        body=body,
        query=request.query_string,
    )


def middleware(contract: Contract, sink: ViolationLog) -> Middleware:
    """The aiohttp middleware that checks each response and records its violations in ``sink``."""

    @web.middleware
    async def check_contract(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        try:
            violations = check_response(contract, exchange(request, response))
        except Exception as exc:  # a checker bug must never change the answer: it is reported instead
            log.exception("the contract checker failed on %s", request.method)
            problem = f"the contract checker failed ({type(exc).__name__}): fix localbatch/contract"
            path = request.raw_path.partition("?")[0][:300]
            violations = [Violation("unknown", request.method, path, response.status, problem)]
        if violations:
            log.warning(
                "%d contract violation(s) in %s %s", len(violations), request.method, violations[0].operation
            )
            sink.write(violations)
        return response

    return check_contract


def install(app: web.Application, path: Path) -> None:
    """Check every response of ``app`` against the contract; violations go to ``path`` (JSON lines)."""
    contract = load()
    app.middlewares.append(middleware(contract, ViolationLog(path)))
    log.info(
        "checking responses against the Batch contract (%d operations); violations to %s",
        len(contract.operations),
        path,
    )
