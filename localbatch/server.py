"""The HTTP face of localbatch: Batch's data-plane REST API on aiohttp.

One catch-all aiohttp route feeds :meth:`BatchApi.handle`, which, in order:
reads the body (at most 1 MiB + 1 byte), verifies the SharedKey signature,
checks ``api-version``, refuses oversized bodies (413 ``RequestBodyTooLarge``),
then dispatches through the route table (:mod:`localbatch.routes`) on the
raw path's segments (so ``%2F`` inside a file path survives). Every
response carries ``request-id`` and ``DataServiceVersion``; errors use
Batch's body. Nothing executes before authentication passes, and any bug is
caught here, logged, and answered with a 500 in Batch's shape.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import logging
import mimetypes
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from aiohttp import web

from localbatch import (
    api_versions,
    bodies,
    conditions,
    errors,
    images,
    jobschedules,
    models,
    odata,
    routes,
    updates,
)
from localbatch.applications import ApplicationOperations
from localbatch.auth import RequestVerifier, SignedRequest
from localbatch.errors import BatchError
from localbatch.nodeops import NodeOperations
from localbatch.scheduler import NodeRuntime, Service, TaskRow, new_etag
from localbatch.store import TASK_FILTER_COLUMNS
from localbatch.views import job_view, pool_view, task_url, task_view

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_TASKS_PER_COLLECTION = 100
JSON_TYPE = "application/json;odata=minimalmetadata"
AUTOSCALE_RUN_ENTITY = "Microsoft.Azure.Batch.Protocol.Entities.AutoScaleRun"
# The first URL segment of a conditional resource -> the Service attribute holding its documents.
#: Where the service keeps each conditional resource's documents, by lower-case id.
RESOURCE_DOCUMENTS: dict[str, Callable[[Service], dict[str, dict[str, Any]]]] = {
    "pools": lambda service: service.pools,
    "jobs": lambda service: service.jobs,
    "jobschedules": lambda service: service.schedules.docs,
}


@dataclass
class Ctx:
    """One request, after authentication."""

    request: web.Request
    method: str
    segments: list[str]
    raw_segments: list[str]
    query: dict[str, str]
    body: bytes
    base: str
    api_version: str
    request_id: str

    def json(self) -> Any:
        """The parsed body; an object loses its OData annotations (``odata.type``: never stored)."""
        if not self.body:
            raise errors.invalid_body("the request body is empty")
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise errors.invalid_body(f"the body is not valid JSON ({type(exc).__name__})") from None
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if not k.startswith("odata.")}
        return value


Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]


def _http_date(iso_text: str) -> str:
    return format_datetime(_parse_iso(iso_text), usegmt=True)


def _parse_iso(iso_text: str) -> datetime:
    return datetime.strptime(iso_text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


class BatchApi(NodeOperations, ApplicationOperations):
    """Request boundary and route handlers (node users, logs, extensions, applications: the mixins)."""

    def __init__(self, service: Service, verifier: RequestVerifier) -> None:
        self.service = service
        self.verifier = verifier
        self._requests = itertools.count()

    # ------------------------------------------------------------------ boundary

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        base = f"{request.scheme}://{request.host}"
        try:
            response = await self._handle(request, request_id, base)
        except BatchError as exc:
            response = self._error(base, exc, request_id)
        except Exception:  # request boundary: a bug must never take the server down
            # The raw path: no query string, and no decoded control characters in the log.
            log.exception(
                "internal error handling %s %s", request.method, request.raw_path.partition("?")[0][:500]
            )
            response = self._error(
                base,
                BatchError(500, "InternalServerError", "The server encountered an internal error."),
                request_id,
            )
        response.headers["request-id"] = request_id
        response.headers["DataServiceVersion"] = "3.0"
        client_id = request.headers.get("client-request-id")
        if client_id and request.headers.get("return-client-request-id", "").lower() == "true":
            response.headers["client-request-id"] = client_id
        return response

    @staticmethod
    def _error(base: str, exc: BatchError, request_id: str) -> web.Response:
        if exc.status == 304:  # Not Modified: never a body
            return web.Response(status=304, headers=exc.headers)
        body = errors.error_body(base, exc, request_id, models.iso(models.utcnow()))
        return web.Response(
            status=exc.status,
            body=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": JSON_TYPE, **exc.headers},
        )

    async def _handle(self, request: web.Request, request_id: str, base: str) -> web.StreamResponse:
        await self.service.ready.wait()
        body, too_large = await _read_body(request)
        raw_path, _, raw_query = request.raw_path.partition("?")
        declared = request.headers.get("Content-Length")
        length = int(declared) if too_large and declared and declared.isdigit() else len(body)
        headers = [(k, v) for k, v in request.headers.items()]
        signed = SignedRequest(request.method, raw_path, raw_query, headers, length, request.secure)
        self.verifier.verify(signed)
        parsed = parse_qs(raw_query, keep_blank_values=True)
        query = {k: v[0] for k, v in parsed.items()}
        version = api_versions.check(query.get("api-version"))
        _check_content_md5(request.headers.get("Content-MD5"), body, too_large)
        if too_large:
            raise BatchError(
                413,
                "RequestBodyTooLarge",
                "The request body is too large and exceeds the maximum permissible limit.",
                [("MaxLimit", str(MAX_BODY_BYTES))],
            )
        self._weather_refusal(next(self._requests))
        raw_segments = [s for s in raw_path.split("/") if s != ""]
        ctx = Ctx(
            request,
            request.method,
            [unquote(s) for s in raw_segments],
            raw_segments,
            query,
            body,
            base,
            version,
            request_id,
        )
        return await self._route(ctx)

    def _weather_refusal(self, ordinal: int) -> None:
        """Weather: refuse the request (throttled or a transient 500) before anything is done."""
        w = self.service.config.weather
        key = str(ordinal)
        if w.chance("throttle", w.throttle_rate, key):
            raise errors.server_busy(w.throttle_status, w.retry_after)
        if w.chance("server_error", w.server_error_rate, key):
            raise errors.transient_internal_error()

    async def _route(self, ctx: Ctx) -> web.StreamResponse:
        """Dispatch through the route table (:mod:`localbatch.routes`)."""
        methods = routes.match(ctx.segments)
        if methods is None:
            raise BatchError(
                404, "InvalidUri", "The requested URI does not represent any resource on the server."
            )
        name = methods.get(ctx.method)
        if name is None:
            raise BatchError(
                405, "UnsupportedHttpVerb", f"The resource doesn't support the HTTP verb {ctx.method[:16]}."
            )
        handler: Handler = getattr(self, name)
        shape = routes.shape_of(ctx.segments)
        if (ctx.method, shape) in conditions.CONDITIONAL and conditions.asked(ctx.request.headers):
            current = self._version(ctx)
            if current is not None:  # a missing resource: the handler answers its 404
                conditions.check(ctx.request.headers, ctx.method, current)
        ctx.body = api_versions.upgrade_body(ctx.body, ctx.api_version)
        bodies.check_request(ctx.method, shape, ctx.body, ctx.api_version != api_versions.CURRENT)
        return await handler(ctx)

    def _version(self, ctx: Ctx) -> conditions.Version | None:
        """The ETag and last change of the resource a conditional request names (None: no such one)."""
        seg = ctx.segments
        if len(seg) >= 4 and seg[0].lower() == "jobs" and seg[2].lower() == "tasks":
            try:
                _job, row = self.service.task(seg[1], seg[3])
            except BatchError:
                return None
            return conditions.Version(row.etag, _parse_iso(row.last_modified))
        # Every other conditional resource is a document in a dict of the service, by lower-case id.
        where = RESOURCE_DOCUMENTS.get(seg[0].lower())
        doc = where(self.service).get(seg[1].lower()) if where is not None and len(seg) >= 2 else None
        if doc is None:
            return None
        return conditions.Version(doc["eTag"], _parse_iso(doc["lastModified"]))

    # ------------------------------------------------------------------ response helpers

    @staticmethod
    def _json(
        status: int, body: Any, etag: str | None = None, last_modified: str | None = None
    ) -> web.Response:
        headers = {"Content-Type": JSON_TYPE}
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = _http_date(last_modified)
        return web.Response(status=status, body=json.dumps(body).encode("utf-8"), headers=headers)

    @staticmethod
    def _empty(
        status: int, url: str | None = None, etag: str | None = None, last_modified: str | None = None
    ) -> web.Response:
        headers: dict[str, str] = {}
        if url:
            headers["DataServiceId"] = url
            headers["Location"] = url
        if etag:
            headers["ETag"] = etag
        if last_modified:
            headers["Last-Modified"] = _http_date(last_modified)
        return web.Response(status=status, headers=headers)

    def _page(
        self, ctx: Ctx, entity: str, items: list[dict[str, Any]], next_token: str | None
    ) -> web.Response:
        body: dict[str, Any] = {"odata.metadata": f"{ctx.base}/$metadata#{entity}", "value": items}
        if next_token:
            path = "/" + "/".join(ctx.raw_segments)
            body["odata.nextLink"] = (
                f"{ctx.base}{path}?api-version={quote(ctx.api_version)}&$skiptoken={next_token}"
            )
            if ctx.query.get("$select"):  # as the service does: the projection stays visible on every page
                body["odata.nextLink"] += f"&$select={quote(ctx.query['$select'])}"
        return self._json(200, body)

    def _list_state(self, ctx: Ctx) -> odata.PageState:
        token = ctx.query.get("$skiptoken")
        if token:
            return odata.PageState.decode(token)
        return odata.PageState(
            None,
            ctx.query.get("$filter") or None,
            ctx.query.get("$select") or None,
            odata.parse_maxresults(ctx.query.get("maxresults")),
        )

    def _list_docs(self, ctx: Ctx, entity: str, docs: list[dict[str, Any]]) -> web.Response:
        """Filter, select and page a small list of rendered entities (sorted by id)."""
        state = self._list_state(ctx)
        docs.sort(key=lambda d: str(d["id"]).lower())
        if state.filter:
            pred = odata.predicate(odata.parse_filter(state.filter))
            docs = [d for d in docs if pred(d)]
        if state.after is not None:
            docs = [d for d in docs if str(d["id"]).lower() > str(state.after)]
        page = docs[: state.maxresults]
        select = odata.parse_select(state.select)
        token = None
        if len(docs) > state.maxresults:
            token = odata.PageState(
                str(page[-1]["id"]).lower(), state.filter, state.select, state.maxresults
            ).encode()
        items = [_strip_meta(odata.project(d, select)) for d in page]
        return self._page(ctx, entity, items, token)

    # ------------------------------------------------------------------ pools

    async def create_pool(self, ctx: Ctx) -> web.StreamResponse:
        body = models.validate_pool(ctx.json(), self.service.config.max_nodes_per_pool)
        doc = self.service.create_pool(body)
        url = f"{ctx.base}/pools/{quote(doc['id'])}"
        return self._empty(201, url, doc["eTag"], doc["lastModified"])

    def _pool_view(self, ctx: Ctx, doc: dict[str, Any]) -> dict[str, Any]:
        ded, low = self.service.pool_counts(doc["id"].lower())
        return pool_view(ctx.base, doc, ded, low)

    async def list_pools(self, ctx: Ctx) -> web.StreamResponse:
        docs = [self._pool_view(ctx, d) for d in self.service.pools.values()]
        return self._list_docs(ctx, "pools", docs)

    async def get_pool(self, ctx: Ctx) -> web.StreamResponse:
        doc = self.service.pool(ctx.segments[1])
        view = odata.project(self._pool_view(ctx, doc), odata.parse_select(ctx.query.get("$select")))
        return self._json(200, view, doc["eTag"], doc["lastModified"])

    async def pool_exists(self, ctx: Ctx) -> web.StreamResponse:
        doc = self.service.pools.get(ctx.segments[1].lower())
        if doc is None:
            return web.Response(status=404)
        return self._empty(200, None, doc["eTag"], doc["lastModified"])

    async def delete_pool(self, ctx: Ctx) -> web.StreamResponse:
        self.service.delete_pool(ctx.segments[1])
        return self._empty(202)

    async def patch_pool(self, ctx: Ctx) -> web.StreamResponse:
        doc = self.service.pool(ctx.segments[1])
        body = models.require_body_object(ctx.json(), "pool update")
        empty = not self.service.pool_nodes(doc["id"])
        updates.merge_pool(doc, body, empty, self.service.config.max_nodes_per_pool)
        doc.update(eTag=new_etag(), lastModified=models.iso(models.utcnow()))
        self.service.store.put_pool(doc)
        return self._empty(200, f"{ctx.base}/pools/{quote(doc['id'])}", doc["eTag"], doc["lastModified"])

    async def resize_pool(self, ctx: Ctx) -> web.StreamResponse:
        body = models.validate_resize(ctx.json(), self.service.config.max_nodes_per_pool)
        self.service.resize_pool(
            ctx.segments[1], body.get("targetDedicatedNodes"), body.get("targetLowPriorityNodes")
        )
        doc = self.service.pool(ctx.segments[1])
        return self._empty(202, f"{ctx.base}/pools/{quote(doc['id'])}", doc["eTag"], doc["lastModified"])

    def _pool_done(self, ctx: Ctx, doc: dict[str, Any], status: int = 200) -> web.Response:
        return self._empty(status, f"{ctx.base}/pools/{quote(doc['id'])}", doc["eTag"], doc["lastModified"])

    async def enable_autoscale(self, ctx: Ctx) -> web.StreamResponse:
        body = models.validate_enable_autoscale(ctx.json())
        doc = self.service.enable_autoscale(
            ctx.segments[1], body.get("autoScaleFormula"), body.get("autoScaleEvaluationInterval")
        )
        return self._pool_done(ctx, doc)

    async def disable_autoscale(self, ctx: Ctx) -> web.StreamResponse:
        return self._pool_done(ctx, self.service.disable_autoscale(ctx.segments[1]))

    async def evaluate_autoscale(self, ctx: Ctx) -> web.StreamResponse:
        body = models.validate_evaluate_autoscale(ctx.json())
        run = self.service.evaluate_autoscale(ctx.segments[1], body["autoScaleFormula"])
        doc = self.service.pool(ctx.segments[1])
        headers = {"DataServiceId": f"{ctx.base}/pools/{quote(doc['id'])}/evaluateautoscale"}
        resp = self._json(
            200,
            {
                "odata.metadata": f"{ctx.base}/$metadata#{AUTOSCALE_RUN_ENTITY}",
                **run,
            },
            doc["eTag"],
            doc["lastModified"],
        )
        resp.headers.update(headers)
        return resp

    async def remove_nodes(self, ctx: Ctx) -> web.StreamResponse:
        body = models.validate_remove_nodes(ctx.json())
        doc = self.service.remove_nodes(ctx.segments[1], body["nodeList"], body["nodeDeallocationOption"])
        return self._pool_done(ctx, doc, 202)

    async def stop_resize(self, ctx: Ctx) -> web.StreamResponse:
        return self._pool_done(ctx, self.service.stop_resize(ctx.segments[1]), 202)

    async def replace_pool_properties(self, ctx: Ctx) -> web.StreamResponse:
        body = models.validate_replace_pool(ctx.json())
        return self._pool_done(ctx, self.service.replace_pool_properties(ctx.segments[1], body), 204)

    def _optional_json(self, ctx: Ctx) -> Any:
        return ctx.json() if ctx.body.strip() else None

    async def restart_node(self, ctx: Ctx) -> web.StreamResponse:
        kind = ctx.segments[4].lower()
        model, key = models.NODE_RESTART_OPTIONS[kind]  # the route table admits only these three
        option = models.validate_option(self._optional_json(ctx), model, key, "requeue", f"node {kind}")
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        self.service.restart_node(ctx.segments[1], node.id, kind, option)
        return self._node_done(ctx, node, 202)

    async def start_node(self, ctx: Ctx) -> web.StreamResponse:
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        self.service.start_node(ctx.segments[1], node.id)
        return self._node_done(ctx, node, 202)

    async def node_scheduling(self, ctx: Ctx) -> web.StreamResponse:
        enable = ctx.segments[4].lower() == "enablescheduling"
        option = "requeue"
        if not enable:
            option = models.validate_option(
                self._optional_json(ctx),
                "BatchNodeDisableSchedulingOptions",
                "nodeDisableSchedulingOption",
                "requeue",
                "disable scheduling",
            )
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        self.service.set_node_scheduling(ctx.segments[1], node.id, enable, option)
        return self._node_done(ctx, node, 200)

    def _node_done(self, ctx: Ctx, node: NodeRuntime, status: int) -> web.Response:
        """A node action's answer: DataServiceId, and an ETag/Last-Modified of the change."""
        url = f"{ctx.base}/pools/{quote(ctx.segments[1])}/nodes/{node.id}"
        return self._empty(status, url, new_etag(), models.iso(models.utcnow()))

    async def delete_node_file(self, ctx: Ctx) -> web.StreamResponse:
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        await _delete_file(self.service.node_directory(node), unquote("/".join(ctx.raw_segments[5:])), ctx)
        return self._empty(200)

    # ------------------------------------------------------------------ account

    async def list_supported_images(self, ctx: Ctx) -> web.StreamResponse:
        return self._list_indexed(ctx, "supportedimages", images.supported_images())

    async def list_node_counts(self, ctx: Ctx) -> web.StreamResponse:
        return self._list_indexed(ctx, "poolnodecounts", self.service.node_counts())

    async def list_usage_metrics(self, ctx: Ctx) -> web.StreamResponse:
        # Batch reports usage in aggregated hourly buckets; a local account has none to bill.
        return self._list_indexed(ctx, "poolusagemetrics", [])

    def _node_view(self, ctx: Ctx, node: NodeRuntime) -> dict[str, Any]:
        return node.render(ctx.base)

    async def list_nodes(self, ctx: Ctx) -> web.StreamResponse:
        docs = [self._node_view(ctx, n) for n in self.service.pool_nodes(ctx.segments[1])]
        return self._list_docs(ctx, "nodes", docs)

    async def get_node(self, ctx: Ctx) -> web.StreamResponse:
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        full = self._node_view(ctx, node)
        view = odata.project(full, odata.parse_select(ctx.query.get("$select")))
        # A node has no stored ETag: one from its rendering changes whenever the node does.
        etag = "0x" + hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:15].upper()
        return self._json(200, view, etag, full.get("stateTransitionTime") or models.iso(models.utcnow()))

    async def list_node_files(self, ctx: Ctx) -> web.StreamResponse:
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        root = self.service.node_directory(node)
        prefix = f"{ctx.base}/pools/{quote(ctx.segments[1])}/nodes/{node.id}/files"
        return await self._list_files(ctx, root, prefix)

    async def get_node_file(self, ctx: Ctx) -> web.StreamResponse:
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        root = self.service.node_directory(node)
        rel = unquote("/".join(ctx.raw_segments[5:]))
        url = f"{ctx.base}/pools/{quote(ctx.segments[1])}/nodes/{node.id}/files/{quote(rel)}"
        return await self._serve_file(ctx, root, rel, url)

    # ------------------------------------------------------------------ jobs

    async def create_job(self, ctx: Ctx) -> web.StreamResponse:
        body = models.validate_job(ctx.json())
        doc = self.service.create_job(body)
        return self._empty(201, f"{ctx.base}/jobs/{quote(doc['id'])}", doc["eTag"], doc["lastModified"])

    async def list_jobs(self, ctx: Ctx) -> web.StreamResponse:
        docs = [job_view(ctx.base, d) for d in self.service.jobs.values()]
        return self._list_docs(ctx, "jobs", docs)

    async def get_job(self, ctx: Ctx) -> web.StreamResponse:
        doc = self.service.job(ctx.segments[1])
        view = odata.project(job_view(ctx.base, doc), odata.parse_select(ctx.query.get("$select")))
        return self._json(200, view, doc["eTag"], doc["lastModified"])

    async def delete_job(self, ctx: Ctx) -> web.StreamResponse:
        self.service.delete_job(ctx.segments[1])
        return self._empty(202)

    async def patch_job(self, ctx: Ctx) -> web.StreamResponse:
        body = models.require_body_object(ctx.json(), "job update")
        if ctx.method == "PUT":  # replace: an updatable property left out is reset to its default
            body = updates.replacement(body, updates.JOB_DEFAULTS)
        probe = {"id": "x", "poolInfo": {"poolId": "x"}}
        probe.update({k: v for k, v in body.items() if k not in ("id", "poolInfo")})
        models.validate_job(probe)
        for key in body.keys() - {"id", "poolInfo"}:
            body[key] = probe[key]  # validated values, normalized (e.g. "5" -> 5)
        doc = self.service.update_job(ctx.segments[1], body)
        return self._empty(200, f"{ctx.base}/jobs/{quote(doc['id'])}", doc["eTag"], doc["lastModified"])

    def _job_done(self, ctx: Ctx, doc: dict[str, Any], status: int) -> web.Response:
        return self._empty(status, f"{ctx.base}/jobs/{quote(doc['id'])}", doc["eTag"], doc["lastModified"])

    async def disable_job(self, ctx: Ctx) -> web.StreamResponse:
        option = models.validate_option(
            ctx.json(), "BatchJobDisableOptions", "disableTasks", None, "job disable"
        )
        return self._job_done(ctx, self.service.disable_job(ctx.segments[1], option), 202)

    async def enable_job(self, ctx: Ctx) -> web.StreamResponse:
        return self._job_done(ctx, self.service.enable_job(ctx.segments[1]), 202)

    async def terminate_job(self, ctx: Ctx) -> web.StreamResponse:
        reason = "UserTerminate"
        if ctx.body:
            body = models.require_body_object(ctx.json(), "terminate")
            if isinstance(body.get("terminateReason"), str) and body["terminateReason"]:
                reason = body["terminateReason"][:256]
        self.service.terminate_job(ctx.segments[1], reason)
        doc = self.service.job(ctx.segments[1])
        return self._empty(202, f"{ctx.base}/jobs/{quote(doc['id'])}", doc["eTag"], doc["lastModified"])

    async def task_counts(self, ctx: Ctx) -> web.StreamResponse:
        counts = self.service.task_counts(ctx.segments[1])
        job = self.service.job(ctx.segments[1])
        return self._json(
            200,
            {"odata.metadata": f"{ctx.base}/$metadata#taskcountsresult/@Element", **counts},
            job["eTag"],
            job["lastModified"],
        )

    async def list_job_prep_release_status(self, ctx: Ctx) -> web.StreamResponse:
        job = self.service.job(ctx.segments[1])
        entries = self.service.jobtasks.status(ctx.base, job)
        return self._list_indexed(ctx, "jobpreparationandreleasetaskstatuslist", entries)

    # ------------------------------------------------------------------ job schedules

    def _schedule_done(self, ctx: Ctx, doc: dict[str, Any], status: int) -> web.Response:
        url = f"{ctx.base}/jobschedules/{quote(doc['id'])}"
        return self._empty(status, url, doc["eTag"], doc["lastModified"])

    async def create_job_schedule(self, ctx: Ctx) -> web.StreamResponse:
        minimum = self.service.config.schedule_min_interval
        body = jobschedules.validate_schedule(ctx.json(), minimum, create=True)
        return self._schedule_done(ctx, self.service.schedules.create(body), 201)

    async def list_job_schedules(self, ctx: Ctx) -> web.StreamResponse:
        docs = [jobschedules.schedule_view(ctx.base, d) for d in self.service.schedules.docs.values()]
        return self._list_docs(ctx, "jobschedules", docs)

    async def get_job_schedule(self, ctx: Ctx) -> web.StreamResponse:
        doc = self.service.schedules.get(ctx.segments[1])
        view = jobschedules.schedule_view(ctx.base, doc)
        view = odata.project(view, odata.parse_select(ctx.query.get("$select")))
        return self._json(200, view, doc["eTag"], doc["lastModified"])

    async def job_schedule_exists(self, ctx: Ctx) -> web.StreamResponse:
        doc = self.service.schedules.docs.get(ctx.segments[1].lower())
        if doc is None:
            return web.Response(status=404)
        return self._empty(200, None, doc["eTag"], doc["lastModified"])

    async def delete_job_schedule(self, ctx: Ctx) -> web.StreamResponse:
        self.service.schedules.delete(ctx.segments[1])
        return self._empty(202)

    async def update_job_schedule(self, ctx: Ctx) -> web.StreamResponse:
        body = jobschedules.validate_patch(ctx.json(), self.service.config.schedule_min_interval)
        doc = self.service.schedules.update(ctx.segments[1], body, replace=False)
        return self._schedule_done(ctx, doc, 200)

    async def replace_job_schedule(self, ctx: Ctx) -> web.StreamResponse:
        minimum = self.service.config.schedule_min_interval
        body = jobschedules.validate_schedule(ctx.json(), minimum, create=False)
        doc = self.service.schedules.update(ctx.segments[1], body, replace=True)
        return self._schedule_done(ctx, doc, 200)

    async def disable_job_schedule(self, ctx: Ctx) -> web.StreamResponse:
        return self._schedule_done(ctx, self.service.schedules.disable(ctx.segments[1]), 204)

    async def enable_job_schedule(self, ctx: Ctx) -> web.StreamResponse:
        return self._schedule_done(ctx, self.service.schedules.enable(ctx.segments[1]), 204)

    async def terminate_job_schedule(self, ctx: Ctx) -> web.StreamResponse:
        return self._schedule_done(ctx, self.service.schedules.terminate(ctx.segments[1]), 202)

    async def list_jobs_from_schedule(self, ctx: Ctx) -> web.StreamResponse:
        doc = self.service.schedules.get(ctx.segments[1])
        docs = [job_view(ctx.base, j) for j in self.service.schedules.jobs_of(doc)]
        return self._list_docs(ctx, "jobs", docs)

    # ------------------------------------------------------------------ tasks

    def _check_dependencies_allowed(self, job: dict[str, Any], task: dict[str, Any]) -> None:
        deps = task.get("dependsOn") or {}
        if (deps.get("taskIds") or deps.get("taskIdRanges")) and not job.get("usesTaskDependencies"):
            raise BatchError(
                409,
                "TaskDependenciesNotSpecifiedOnJob",
                "The task has dependencies but the job does not specify usesTaskDependencies.",
            )

    async def add_task(self, ctx: Ctx) -> web.StreamResponse:
        job = self.service.job(ctx.segments[1])
        task = models.validate_task(ctx.json())
        job = self.service.active_job_for_add(ctx.segments[1])
        self._check_dependencies_allowed(job, task)
        [(added, etag, now)] = self.service.add_tasks(job, [task])
        if not added:
            raise errors.exists("Task")
        return self._empty(201, task_url(ctx.base, job["id"], task["id"]), etag, now)

    async def add_task_collection(self, ctx: Ctx) -> web.StreamResponse:
        self.service.job(ctx.segments[1])
        body = models.require_body_object(ctx.json(), "task collection")
        values = body.get("value")
        if values is None:
            raise errors.missing_property("value")
        if not isinstance(values, list):
            raise errors.invalid_property("value", "...", "expected a JSON array of tasks")
        if len(values) > MAX_TASKS_PER_COLLECTION:
            raise BatchError(
                400,
                "InvalidPropertyValue",
                "The value provided for one of the properties in the request body is invalid.",
                [
                    ("PropertyName", "value"),
                    ("PropertyValue", str(len(values))),
                    ("Reason", f"A task collection may hold at most {MAX_TASKS_PER_COLLECTION} tasks."),
                ],
            )
        job = self.service.active_job_for_add(ctx.segments[1])
        results: list[dict[str, Any] | None] = [None] * len(values)
        valid: list[tuple[int, dict[str, Any]]] = []
        seen: set[str] = set()
        for i, raw in enumerate(values):
            task_id = ""
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                task_id = raw["id"]
            try:
                task = models.validate_task(raw)
                self._check_dependencies_allowed(job, task)
                if task["id"].lower() in seen:
                    raise errors.exists("Task")
                seen.add(task["id"].lower())
                valid.append((i, task))
            except BatchError as exc:
                results[i] = _task_result_error(task_id, exc)
        outcomes = self.service.add_tasks(job, [t for _, t in valid]) if valid else []
        for (i, task), (added, etag, now) in zip(valid, outcomes, strict=True):
            if added:
                results[i] = {
                    "status": "success",
                    "taskId": task["id"],
                    "eTag": etag,
                    "lastModified": now,
                    "location": task_url(ctx.base, job["id"], task["id"]),
                }
            else:
                results[i] = _task_result_error(task["id"], errors.exists("Task"))
        body = {"odata.metadata": f"{ctx.base}/$metadata#taskaddresult", "value": results}
        return self._json(200, body, job["eTag"], job["lastModified"])

    async def list_tasks(self, ctx: Ctx) -> web.StreamResponse:
        job = self.service.job(ctx.segments[1])
        state = self._list_state(ctx)
        where: str = ""
        args: list[odata.Literal] = []
        if state.filter:
            node = odata.parse_filter(state.filter)
            where, args = odata.to_sql(node, TASK_FILTER_COLUMNS, state.filter)
        select = odata.parse_select(state.select)
        after = int(state.after) if isinstance(state.after, int) else 0
        rows = self.service.store.list_tasks(job["id"].lower(), where, args, after, state.maxresults + 1)
        token = None
        if len(rows) > state.maxresults:
            rows = rows[: state.maxresults]
            token = odata.PageState(rows[-1].seq, state.filter, state.select, state.maxresults).encode()
        pool_id = self.service.pool_of_job(job)
        items = [_strip_meta(odata.project(task_view(ctx.base, r, job, pool_id), select)) for r in rows]
        return self._page(ctx, "tasks", items, token)

    async def get_task(self, ctx: Ctx) -> web.StreamResponse:
        job, row = self.service.task(ctx.segments[1], ctx.segments[3])
        view = task_view(ctx.base, row, job, self.service.pool_of_job(job))
        view = odata.project(view, odata.parse_select(ctx.query.get("$select")))
        response = self._json(200, view, row.etag, row.last_modified)
        response.headers["DataServiceId"] = task_url(ctx.base, job["id"], row.task_id)
        return response

    async def delete_task(self, ctx: Ctx) -> web.StreamResponse:
        self.service.delete_task(ctx.segments[1], ctx.segments[3])
        return self._empty(200)

    async def update_task(self, ctx: Ctx) -> web.StreamResponse:
        job, row = self.service.task(ctx.segments[1], ctx.segments[3])
        body = models.require_body_object(ctx.json(), "task update")
        spec = row.spec_json()
        probe = {"id": spec["id"], "commandLine": spec["commandLine"], "constraints": body.get("constraints")}
        models.validate_task(probe)
        if body.get("constraints") is not None:
            spec["constraints"] = body["constraints"]
        else:  # PUT replaces: "if omitted, the Task is given the default constraints"
            spec.pop("constraints", None)
        now = models.iso(models.utcnow())
        etag = new_etag()
        self.service.store.update_task(row.seq, spec=json.dumps(spec), etag=etag, last_modified=now)
        return self._empty(200, task_url(ctx.base, job["id"], row.task_id), etag, now)

    async def terminate_task(self, ctx: Ctx) -> web.StreamResponse:
        self.service.terminate_task(ctx.segments[1], ctx.segments[3])
        return self._task_headers(ctx, 204)

    async def reactivate_task(self, ctx: Ctx) -> web.StreamResponse:
        self.service.reactivate_task(ctx.segments[1], ctx.segments[3])
        return self._task_headers(ctx, 204)

    def _task_headers(self, ctx: Ctx, status: int) -> web.Response:
        """An empty answer with the task's DataServiceId, ETag and Last-Modified, as the spec declares."""
        job, row = self.service.task(ctx.segments[1], ctx.segments[3])
        return self._empty(status, task_url(ctx.base, job["id"], row.task_id), row.etag, row.last_modified)

    def _task_dir(self, ctx: Ctx) -> tuple[dict[str, Any], TaskRow, Path]:
        job, row = self.service.task(ctx.segments[1], ctx.segments[3])
        return job, row, self.service.task_directory(job, row)

    async def list_task_files(self, ctx: Ctx) -> web.StreamResponse:
        job, row, directory = self._task_dir(ctx)
        prefix = f"{task_url(ctx.base, job['id'], row.task_id)}/files"
        return await self._list_files(ctx, directory, prefix)

    async def get_task_file(self, ctx: Ctx) -> web.StreamResponse:
        job, row, directory = self._task_dir(ctx)
        rel = unquote("/".join(ctx.raw_segments[5:]))
        url = f"{task_url(ctx.base, job['id'], row.task_id)}/files/{quote(rel)}"
        return await self._serve_file(ctx, directory, rel, url)

    async def delete_task_file(self, ctx: Ctx) -> web.StreamResponse:
        _job, _row, directory = self._task_dir(ctx)
        await _delete_file(directory, unquote("/".join(ctx.raw_segments[5:])), ctx)
        return self._empty(200)

    # ------------------------------------------------------------------ files

    async def _list_files(self, ctx: Ctx, root: Path, url_prefix: str) -> web.StreamResponse:
        recursive = ctx.query.get("recursive", "").lower() == "true"
        entries = await asyncio.to_thread(_scan, root, recursive)
        docs = []
        for rel, st, is_dir in entries:
            props: dict[str, Any] = {
                "creationTime": models.iso(datetime.fromtimestamp(st.st_ctime, timezone.utc)),
                "lastModified": models.iso(datetime.fromtimestamp(st.st_mtime, timezone.utc)),
                "contentLength": str(0 if is_dir else st.st_size),  # the spec: int64 as a string
                "contentType": "application/octet-stream",
                "fileMode": f"0{st.st_mode & 0o777:o}",
            }
            docs.append(
                {
                    "id": rel,
                    "name": rel,
                    "url": f"{url_prefix}/{quote(rel)}",
                    "isDirectory": is_dir,
                    "properties": props,
                }
            )
        for d in docs:
            d.pop("id")
        return self._list_indexed(ctx, "files", docs)

    def _list_indexed(self, ctx: Ctx, entity: str, docs: list[dict[str, Any]]) -> web.Response:
        """Filter, select and page (by position) a list of rendered entities, in the given order."""
        state = self._list_state(ctx)
        if state.filter:
            pred = odata.predicate(odata.parse_filter(state.filter))
            docs = [d for d in docs if pred(d)]
        start = int(state.after) if isinstance(state.after, int) else 0
        select = odata.parse_select(state.select)
        page = [odata.project(d, select) for d in docs[start : start + state.maxresults]]
        token = None
        if start + state.maxresults < len(docs):
            token = odata.PageState(
                start + state.maxresults, state.filter, state.select, state.maxresults
            ).encode()
        return self._page(ctx, entity, page, token)

    async def _serve_file(self, ctx: Ctx, root: Path, rel: str, url: str) -> web.StreamResponse:
        path = _safe_join(root, rel)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except OSError:
            raise errors.not_found("File") from None
        is_dir = os.path.isdir(path)
        if conditions.asked(ctx.request.headers):
            mtime = datetime.fromtimestamp(st.st_mtime, timezone.utc)
            conditions.check(
                ctx.request.headers, ctx.method, conditions.Version(f"0x{st.st_mtime_ns:X}", mtime)
            )
        if is_dir and ctx.method == "GET":
            raise BatchError(400, "InvalidFilePath", "The specified path is a directory, not a file.")
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers = {
            "Content-Type": ctype,
            "ocp-creation-time": format_datetime(
                datetime.fromtimestamp(st.st_ctime, timezone.utc), usegmt=True
            ),
            "ocp-batch-file-isdirectory": "true" if is_dir else "false",
            "ocp-batch-file-url": url,
            "ocp-batch-file-mode": f"0{st.st_mode & 0o777:o}",
            "ETag": f"0x{st.st_mtime_ns:X}",
            "Last-Modified": format_datetime(datetime.fromtimestamp(st.st_mtime, timezone.utc), usegmt=True),
        }
        if ctx.method == "HEAD":
            headers["Content-Length"] = str(0 if is_dir else st.st_size)
            resp = web.StreamResponse(status=200, headers=headers)
            resp.content_length = 0 if is_dir else st.st_size
            return resp
        data = await asyncio.to_thread(path.read_bytes)
        rng = ctx.request.headers.get("ocp-range")
        status = 200
        if rng:
            data = _apply_range(data, rng)
        return web.Response(status=status, body=data, headers=headers)


# ---------------------------------------------------------------------- helpers


def _strip_meta(doc: dict[str, Any]) -> dict[str, Any]:
    doc.pop("odata.metadata", None)
    return doc


def _task_result_error(task_id: str, exc: BatchError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.code, "message": {"lang": "en-US", "value": exc.message}}
    if exc.values:
        error["values"] = [{"key": k, "value": v} for k, v in exc.values]
    status = "servererror" if exc.status >= 500 else "clienterror"
    return {"status": status, "taskId": task_id, "error": error}


def _safe_join(root: Path, rel: str) -> Path:
    rel = rel.strip("/")
    if not rel or "\x00" in rel:
        raise errors.not_found("File")
    try:
        target = (root / rel).resolve()
    except (OSError, ValueError):
        raise errors.not_found("File") from None
    base = root.resolve()
    if target != base and not str(target).startswith(str(base) + os.sep):
        raise errors.not_found("File")
    return target


async def _delete_file(root: Path, rel: str, ctx: Ctx) -> None:
    """Delete a file (or, with ``recursive=true``, a directory) under ``root``, never outside it."""
    path = _safe_join(root, rel)
    if path.is_dir():
        if ctx.query.get("recursive", "").lower() != "true":
            raise BatchError(409, "DirectoryNotEmpty", "The directory is not empty; use recursive=true.")
        await asyncio.to_thread(_rmtree, path)
    elif path.is_file():
        path.unlink()
    else:
        raise errors.not_found("File")


def _scan(root: Path, recursive: bool) -> list[tuple[str, os.stat_result, bool]]:
    out: list[tuple[str, os.stat_result, bool]] = []
    if not root.is_dir():
        return out
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except OSError:
                    continue
                out.append((p.relative_to(root).as_posix(), st, p.is_dir()))
    else:
        for p in sorted(root.iterdir()):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((p.name, st, p.is_dir()))
    return out


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _apply_range(data: bytes, header: str) -> bytes:
    spec = header.strip().lower()
    if not spec.startswith("bytes="):
        raise BatchError(
            400, "InvalidHeaderValue", "The value for ocp-range is not valid.", [("HeaderName", "ocp-range")]
        )
    start_s, _, end_s = spec[6:].partition("-")
    try:
        if start_s == "":
            return data[-int(end_s) :]
        start = int(start_s)
        end = int(end_s) if end_s else len(data) - 1
    except ValueError:
        raise BatchError(
            400, "InvalidHeaderValue", "The value for ocp-range is not valid.", [("HeaderName", "ocp-range")]
        ) from None
    return data[start : end + 1]


def _check_content_md5(sent: str | None, body: bytes, too_large: bool) -> None:
    """A signed Content-MD5 must match the body (SharedKey covers the body only through it)."""
    if not sent or too_large:
        return
    computed = base64.b64encode(hashlib.md5(body).digest()).decode("ascii")
    if not hmac.compare_digest(sent.strip().encode("ascii", "replace"), computed.encode("ascii")):
        raise BatchError(
            400,
            "Md5Mismatch",
            "The MD5 value specified in the request did not match the MD5 value calculated by the server.",
            [("ContentMd5Sent", sent[:64]), ("ContentMd5Computed", computed)],
        )


async def _read_body(request: web.Request) -> tuple[bytes, bool]:
    """Read at most MAX_BODY_BYTES + 1 bytes; return (body, too_large)."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        return b"", True
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            return b"", True
    return b"".join(chunks), False


def make_app(api: BatchApi) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    # [\s\S] and not '.': a decoded newline in the path must reach the handler too.
    app.router.add_route("*", r"/{tail:[\s\S]*}", api.handle)
    return app
