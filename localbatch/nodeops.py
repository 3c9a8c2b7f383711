"""Node operations that cannot be real on one machine, answered as the service answers them.

* **Node users** (add, replace, delete): kept on the node's document (``_users``,
  never rendered), with Batch's checks and codes (409 ``NodeUserExists``, 404
  ``NodeUserNotFound``); no account is made on this machine, and a password is
  never stored (only that one was given).
* **Remote login settings**: the node's IP address and a port (50000 + the
  node's ordinal, as Batch's inbound NAT pool numbers them); nothing listens there.
* **Upload Batch service logs**: the node's service log (:mod:`localbatch.nodelog`)
  lines in ``[startTime, endTime]`` are really uploaded to the container SAS URL
  given, as ``{poolId}/{nodeId}/{request id}/localbatch-node-agent.log``; the answer
  names that virtual directory and the number of files (0 when no line is in range).
* **Extensions**: the pool's ``virtualMachineConfiguration.extensions``, provisioned
  (``protectedSettings`` never echoed); an unknown name is 404 ``ResourceNotFound``.

A mixin of :class:`localbatch.server.BatchApi`: handlers take its ``Ctx`` and
use its response helpers.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from localbatch import errors, models, nodelog, storage
from localbatch.errors import BatchError
from localbatch.etags import new_etag

if TYPE_CHECKING:
    from localbatch.pools import NodeRuntime
    from localbatch.scheduler import Service
    from localbatch.server import Ctx

ENTITIES = "Microsoft.Azure.Batch.Protocol.Entities"
REMOTE_LOGIN_BASE_PORT = 50000
MAX_USER_EXPIRY = timedelta(days=7)
USER_FIELDS = ("isAdmin", "expiryTime", "sshPublicKey")


class NodeOperations:
    """Node users, remote login settings, service log upload and extensions."""

    service: Service

    if TYPE_CHECKING:

        def _json(
            self, status: int, body: Any, etag: str | None = None, last_modified: str | None = None
        ) -> web.Response: ...

        def _empty(
            self,
            status: int,
            url: str | None = None,
            etag: str | None = None,
            last_modified: str | None = None,
        ) -> web.Response: ...

        def _node_done(self, ctx: Ctx, node: NodeRuntime, status: int) -> web.Response: ...

        def _list_indexed(self, ctx: Ctx, entity: str, docs: list[dict[str, Any]]) -> web.Response: ...

    # ------------------------------------------------------------------ users

    async def add_node_user(self, ctx: Ctx) -> web.StreamResponse:
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        body = models.require_body_object(ctx.json(), "node user")
        name = body.get("name")
        if name is None:
            raise errors.missing_property("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 20 or not name.isprintable():
            raise errors.invalid_property("name", name, "a user name is 1-20 printable characters")
        users: dict[str, Any] = node.doc.setdefault("_users", {})
        if name.lower() in users:
            raise BatchError(409, "NodeUserExists", "The specified node user already exists.")
        if body.get("isAdmin") is not None and not isinstance(body["isAdmin"], bool):
            raise errors.invalid_property("isAdmin", body["isAdmin"], "expected true or false")
        users[name.lower()] = {"name": name, "isAdmin": bool(body.get("isAdmin")), **_credentials(body)}
        return self._user_changed(ctx, node, 201)

    async def update_node_user(self, ctx: Ctx) -> web.StreamResponse:
        """Replace: a password, SSH key or expiry left out is removed (the expiry: a day from now)."""
        node, key = self._user(ctx)
        body = models.require_body_object(ctx.json(), "node user update")
        user = node.doc["_users"][key]
        node.doc["_users"][key] = {"name": user["name"], "isAdmin": user["isAdmin"], **_credentials(body)}
        return self._user_changed(ctx, node, 200)

    async def delete_node_user(self, ctx: Ctx) -> web.StreamResponse:
        node, key = self._user(ctx)
        del node.doc["_users"][key]
        self.service.store.put_node(node.doc)
        return self._empty(200)

    def _user(self, ctx: Ctx) -> tuple[NodeRuntime, str]:
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        key = ctx.segments[5].lower()
        if key not in node.doc.get("_users", {}):
            raise BatchError(404, "NodeUserNotFound", "The specified node user does not exist.")
        return node, key

    def _user_changed(self, ctx: Ctx, node: NodeRuntime, status: int) -> web.Response:
        self.service.store.put_node(node.doc)
        return self._node_done(ctx, node, status)

    # ------------------------------------------------------------------ remote login, logs, extensions

    async def remote_login_settings(self, ctx: Ctx) -> web.StreamResponse:
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        body = {
            "odata.metadata": f"{ctx.base}/$metadata#{ENTITIES}.RemoteLoginSettings",
            "remoteLoginIPAddress": node.doc.get("ipAddress", "127.0.0.1"),
            "remoteLoginPort": REMOTE_LOGIN_BASE_PORT + int(node.doc.get("_ordinal", 0)),
        }
        return self._json(200, body, *_node_version(node))

    async def upload_node_logs(self, ctx: Ctx) -> web.StreamResponse:
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        body = models.require_body_object(ctx.json(), "upload batch service logs")
        container_url = body.get("containerUrl")
        if container_url is None:
            raise errors.missing_property("containerUrl")
        if not isinstance(container_url, str) or not storage.is_container_url(container_url):
            raise errors.invalid_property(
                "containerUrl", "...", "expected the URL of a container, with a SAS"
            )
        if body.get("identityReference") is not None:
            raise errors.invalid_property(
                "identityReference", "...", "not supported by localbatch: use a SAS"
            )
        start = _required_time(body, "startTime")
        end = _optional_time(body, "endTime")
        lines = nodelog.lines_between(self.service.config.data_dir, node.id, start, end)
        directory = f"{ctx.segments[1]}/{node.id}/{ctx.request_id}"
        if lines:
            await asyncio.to_thread(_upload_lines, container_url, f"{directory}/{nodelog.FILE_NAME}", lines)
        result = {
            "odata.metadata": f"{ctx.base}/$metadata#{ENTITIES}.UploadBatchServiceLogsResult",
            "virtualDirectoryName": directory,
            "numberOfFilesUploaded": 1 if lines else 0,
        }
        return self._json(200, result, *_node_version(node))

    async def node_extensions(self, ctx: Ctx) -> web.StreamResponse:
        """The pool's VM extensions, provisioned on every node; 404 for a name the pool does not have."""
        node = self.service.node(ctx.segments[1], ctx.segments[3])
        pool = self.service.pool(ctx.segments[1])
        extensions = (pool.get("virtualMachineConfiguration") or {}).get("extensions") or []
        views = [_extension_view(e, node) for e in extensions if isinstance(e, dict)]
        if len(ctx.segments) == 6:
            found = [v for v in views if v["vmExtension"].get("name") == ctx.segments[5]]
            if not found:
                raise BatchError(
                    404, "ResourceNotFound", "The specified extension does not exist on the node."
                )
            entity = f"{ENTITIES}.NodeVMExtension"
            return self._json(
                200, {"odata.metadata": f"{ctx.base}/$metadata#{entity}", **found[0]}, *_node_version(node)
            )
        return self._list_indexed(ctx, "nodeextensions", views)


def _credentials(body: dict[str, Any]) -> dict[str, Any]:
    """The credentials part of a user body, validated; the password itself is dropped."""
    password, key = body.get("password"), body.get("sshPublicKey")
    if password is not None and (not isinstance(password, str) or not password):
        raise errors.invalid_property("password", "...", "expected a non-empty string")
    if key is not None and (not isinstance(key, str) or not key.startswith(("ssh-", "ecdsa-"))):
        raise errors.invalid_property("sshPublicKey", "...", "expected an OpenSSH public key")
    now = models.utcnow()
    expiry = _optional_time(body, "expiryTime") or now + timedelta(days=1)
    if expiry > now + MAX_USER_EXPIRY:
        expiry = now + MAX_USER_EXPIRY  # as the service does: capped, not refused
    out: dict[str, Any] = {"expiryTime": models.iso(expiry), "hasPassword": password is not None}
    if key is not None:
        out["sshPublicKey"] = key
    return out


def _required_time(body: dict[str, Any], key: str) -> datetime:
    value = _optional_time(body, key)
    if value is None:
        raise errors.missing_property(key)
    return value


def _optional_time(body: dict[str, Any], key: str) -> datetime | None:
    value = body.get(key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise errors.invalid_property(key, value, "expected an ISO 8601 date and time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _node_version(node: NodeRuntime) -> tuple[str, str]:
    """An ETag and Last-Modified for answers about a node (it has no stored ETag)."""
    return new_etag(), str(node.doc.get("stateTransitionTime") or models.iso(models.utcnow()))


def _extension_view(ext: dict[str, Any], node: NodeRuntime) -> dict[str, Any]:
    shown = {k: v for k, v in ext.items() if k != "protectedSettings"}
    status = {
        "code": "ProvisioningState/succeeded",
        "displayStatus": "Provisioning succeeded",
        "level": "Info",
        "time": node.doc.get("allocationTime"),
    }
    view: dict[str, Any] = {"provisioningState": "Succeeded", "vmExtension": shown}
    view["instanceView"] = {"name": ext.get("name"), "statuses": [status]}
    return view


def _upload_lines(container_url: str, blob_name: str, lines: list[str]) -> None:
    """Upload ``lines`` as one blob; a storage failure is the service's 400 naming the container."""
    with tempfile.TemporaryDirectory(prefix="nodelogs-") as tmp:
        path = Path(tmp) / nodelog.FILE_NAME
        path.write_text("".join(lines), encoding="utf-8")
        try:
            storage.upload_file(container_url, blob_name, path)
        except storage.StorageFailure as exc:
            # StorageFailure messages name the container, never its SAS.
            raise errors.invalid_property(
                "containerUrl", storage.public_url(container_url), str(exc)
            ) from None
