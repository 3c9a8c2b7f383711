"""Applications of the account, and subtasks of multi-instance tasks, as the service lists them.

* **Applications** (``GET /applications``, ``GET /applications/{id}``): localbatch
  has no application packages to deploy, so the account's applications are those
  its pools reference (``applicationPackageReferences``: the last segment of
  ``applicationId``, with the versions referenced; ``default`` when none is). With
  no reference the list is empty, as for an account with no applications, and
  any id is 404 ``ApplicationNotFound``.
* **Subtasks** (``GET /jobs/{jobId}/tasks/{taskId}/subtasksinfo``): those of a
  multi-instance task (:mod:`localbatch.multiinstance`); an empty list for any other
  task, as the service answers (404 for a task that does not exist).
* **Node agent SKUs** (``GET /nodeagentskus``, api-versions before 2020-09-01 only):
  the supported images grouped by node agent SKU.

A mixin of :class:`localbatch.server.BatchApi`.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from localbatch import api_versions, images
from localbatch.errors import BatchError

if TYPE_CHECKING:
    from localbatch.scheduler import Service
    from localbatch.server import Ctx


class ApplicationOperations:
    """List/get applications; list subtasks."""

    service: Service

    if TYPE_CHECKING:

        def _json(
            self, status: int, body: Any, etag: str | None = None, last_modified: str | None = None
        ) -> web.Response: ...

        def _list_indexed(self, ctx: Ctx, entity: str, docs: list[dict[str, Any]]) -> web.Response: ...

    async def list_applications(self, ctx: Ctx) -> web.StreamResponse:
        return self._list_indexed(ctx, "applications", self._applications())

    async def get_application(self, ctx: Ctx) -> web.StreamResponse:
        wanted = ctx.segments[1].lower()
        found = [a for a in self._applications() if a["id"].lower() == wanted]
        if not found:
            raise BatchError(404, "ApplicationNotFound", "The specified application does not exist.")
        app = found[0]
        etag = "0x" + hashlib.sha256(json.dumps(app, sort_keys=True).encode()).hexdigest()[:15].upper()
        latest = max(
            (p["lastModified"] for p in self.service.pools.values() if self._references(p, app["id"])),
            default=None,
        )
        body = {"odata.metadata": f"{ctx.base}/$metadata#applications/@Element", **app}
        return self._json(200, body, etag, latest)

    async def list_node_agent_skus(self, ctx: Ctx) -> web.StreamResponse:
        """``GET /nodeagentskus``: only the api-versions that define it; others never had the URI."""
        if not api_versions.has_node_agent_skus(ctx.api_version):
            raise BatchError(
                404, "InvalidUri", "The requested URI does not represent any resource on the server."
            )
        return self._list_indexed(ctx, "nodeagentskus", images.node_agent_skus())

    async def list_subtasks(self, ctx: Ctx) -> web.StreamResponse:
        _, row = self.service.task(
            ctx.segments[1], ctx.segments[3]
        )  # 404 for a job or task that does not exist
        return self._list_indexed(ctx, "subtasksinfo", self.service.multi.subtasks(row.job, row.key))

    def _applications(self) -> list[dict[str, Any]]:
        versions: dict[str, set[str]] = {}
        for pool in self.service.pools.values():
            for ref in pool.get("applicationPackageReferences") or []:
                app_id = _application_id(ref)
                if app_id:
                    version = ref.get("version") if isinstance(ref.get("version"), str) else None
                    versions.setdefault(app_id, set()).add(version or "default")
        return [
            {"id": app_id, "displayName": app_id, "versions": sorted(v)}
            for app_id, v in sorted(versions.items(), key=lambda kv: kv[0].lower())
        ]

    @staticmethod
    def _references(pool: dict[str, Any], app_id: str) -> bool:
        refs = pool.get("applicationPackageReferences") or []
        return any(_application_id(r) == app_id for r in refs)


def _application_id(ref: Any) -> str | None:
    """``applicationId`` may be a name or an ARM resource id: its last segment either way."""
    if not isinstance(ref, dict) or not isinstance(ref.get("applicationId"), str):
        return None
    return ref["applicationId"].rstrip("/").rsplit("/", 1)[-1] or None
