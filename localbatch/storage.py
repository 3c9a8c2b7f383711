"""Blob and HTTP access for resource and output files; the only module importing azure.storage.blob.

Functions are synchronous (call them from worker threads; they are
thread-safe). Connections are reused: container clients are cached per
container URL (bounded), plain HTTP downloads share one urllib3 pool, so a
task's files cost a request each, not a connection each. Errors come out as
:class:`StorageFailure` whose message names the container/blob but never a
SAS token or key; log redaction (:mod:`localbatch.logredact`) is installed
before the first connection is made. The storage SDK retries 3 times with a
short back-off (about 8 s in all, not its default of about a minute), so a task
whose storage is down fails in seconds. Uploads never follow a symlink in the
last component of the path (``O_NOFOLLOW``) and only send regular files.

A file may name a pool identity (``identity``: its ARM resource id) instead of
carrying a SAS: the request then goes to the plain URL with that identity's
bearer token (:mod:`localbatch.node_identity`), which no message or log shows.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote, urlsplit

import urllib3

from localbatch import logredact, node_identity

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

# azure.storage.blob is imported on first use, not at import time: it is a third of the
# server's start-up time, and many servers (tests, `runner local up`) never touch a blob.

HTTP_TIMEOUT_SECONDS = 60.0
SINGLE_PUT_BYTES = 64 * 2**20
PUT_BLOB_API_VERSION = "2023-11-03"
#: x-ms-version of plain requests with a bearer token (OAuth needs 2017-11-09 or later).
BEARER_API_VERSION = PUT_BLOB_API_VERSION
_CACHE_SIZE = 64


class StorageFailure(Exception):
    """A download or upload failed; ``status`` is the HTTP status when known."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def public_url(url: str) -> str:
    """A URL without its query string (no SAS), for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _ClientCache:
    """A bounded, thread-safe LRU of container clients (each keeps its connection pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, ContainerClient] = OrderedDict()

    def get(self, key: str, make: Callable[[], ContainerClient]) -> ContainerClient:
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
        client = make()
        with self._lock:
            self._clients[key] = client
            while len(self._clients) > _CACHE_SIZE:
                self._clients.popitem(last=False)
        return client


_cache = _ClientCache()
_http_lock = threading.Lock()
_http: urllib3.PoolManager | None = None
# Storage SDK retries: ExponentialRetry(initial_backoff, increment_base, retry_total).
RETRY_INITIAL_BACKOFF = 0.5
RETRY_INCREMENT_BASE = 2
RETRY_TOTAL = 3


def _http_pool() -> urllib3.PoolManager:
    """The one urllib3 pool of plain HTTP downloads (made on first use, after log redaction)."""
    global _http
    with _http_lock:
        if _http is None:
            logredact.install()
            _http = urllib3.PoolManager(
                num_pools=16, maxsize=8, timeout=urllib3.Timeout(total=HTTP_TIMEOUT_SECONDS)
            )
        return _http


def _client_options() -> dict[str, Any]:
    policy = _blob().ExponentialRetry(
        initial_backoff=RETRY_INITIAL_BACKOFF, increment_base=RETRY_INCREMENT_BASE, retry_total=RETRY_TOTAL
    )
    return {"retry_policy": policy}


@dataclass(frozen=True)
class AutoStorage:
    """The storage account linked to the Batch account (auto-storage)."""

    blob_endpoint: str
    account_name: str
    account_key: str

    def container(self, name: str) -> ContainerClient:
        return _cache.get(
            f"auto:{self.blob_endpoint}/{name}",
            lambda: _blob().ContainerClient(
                self.blob_endpoint,
                name,
                credential={"account_name": self.account_name, "account_key": self.account_key},
                **_client_options(),
            ),
        )


def is_container_url(url: str) -> bool:
    """Whether ``url`` looks like a container URL (http(s), a host, a container in the path),
    checked without the storage SDK (its import takes a third of a second)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.path.strip("/") != ""


def container_from_url(url: str, identity: str | None = None) -> ContainerClient:
    """A (cached) client for a container URL, usually with a SAS, or plain with ``identity`` (a pool
    identity's tokens); ValueError if it is not one."""
    if identity is None:
        return _cache.get(url, lambda: _blob().ContainerClient.from_container_url(url, **_client_options()))
    plain = public_url(url)
    return _cache.get(
        f"mi:{identity.lower()}:{plain}",
        lambda: _blob().ContainerClient.from_container_url(
            plain, credential=node_identity.IdentityCredential(identity), **_client_options()
        ),
    )


def _bearer_headers(identity: str | None) -> dict[str, str]:
    """The headers that authenticate a plain request as ``identity`` (none without one)."""
    if identity is None:
        return {}
    token = node_identity.storage_token(identity)
    return {"Authorization": f"Bearer {token}", "x-ms-version": BEARER_API_VERSION}


def _blob() -> Any:
    logredact.install()
    import azure.storage.blob

    return azure.storage.blob


def _azure_error() -> type[Exception]:
    from azure.core.exceptions import AzureError

    return AzureError


def _status(exc: Exception) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


DEFAULT_FILE_MODE = 0o770


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[BinaryIO]:
    """Write a new file that replaces ``target`` when complete (a symlink there is replaced, not followed).

    The temporary name is short and fixed in length, so any ``target`` name a file system
    accepts can be written (a name near 255 bytes plus a suffix would not be). The file's mode is
    0770, Batch's default for a resource file on a Linux node (a ``fileMode`` is applied after).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".lb-{secrets.token_hex(8)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, DEFAULT_FILE_MODE)
    try:
        os.fchmod(fd, DEFAULT_FILE_MODE)  # whatever the umask
        with open(fd, "wb") as fh:
            yield fh
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def download_url(url: str, target: Path, identity: str | None = None) -> None:
    """GET ``url`` (e.g. a blob SAS URL, or a plain blob URL with ``identity``) into ``target``."""
    headers = _bearer_headers(identity)
    retries = urllib3.Retry(2, redirect=0 if identity else 3)  # a token never follows a redirect
    try:
        resp = _http_pool().request("GET", url, headers=headers, preload_content=False, retries=retries)
    except (urllib3.exceptions.HTTPError, ValueError) as exc:
        raise StorageFailure(f"downloading {public_url(url)} failed: {type(exc).__name__}") from None
    try:
        if resp.status >= 400:
            raise StorageFailure(
                f"downloading {public_url(url)} failed with HTTP status {resp.status}", resp.status
            )
        with _replacing(target) as fh:
            shutil.copyfileobj(resp, fh, 1 << 20)
    except urllib3.exceptions.HTTPError as exc:
        raise StorageFailure(f"downloading {public_url(url)} failed: {type(exc).__name__}") from None
    finally:
        resp.release_conn()


def list_blob_names(container: ContainerClient, prefix: str | None) -> list[str]:
    try:
        return [b.name for b in container.list_blobs(name_starts_with=prefix or None)]
    except _azure_error() as exc:
        raise StorageFailure(
            f"could not list container {public_url(container.url)}: {type(exc).__name__}", _status(exc)
        ) from None


def download_blob(container: ContainerClient, name: str, dest: Path) -> None:
    """Download blob ``name`` to ``dest/<name>`` (refusing names that escape ``dest``)."""
    target = (dest / name).resolve()
    if not str(target).startswith(str(dest.resolve()) + os.sep):
        raise StorageFailure(f"blob name escapes the target directory: {name}")
    try:
        with _replacing(target) as fh:
            container.download_blob(name).readinto(fh)
    except _azure_error() as exc:
        raise StorageFailure(
            f"could not download {name} from container {public_url(container.url)}: {type(exc).__name__}",
            _status(exc),
        ) from None


def upload_file(container_url: str, blob_name: str, path: Path, identity: str | None = None) -> None:
    """Upload the regular file ``path`` as ``blob_name`` into the container at ``container_url`` (a SAS
    URL, or a plain URL with ``identity``), overwriting; never through a final symlink.

    Files up to :data:`SINGLE_PUT_BYTES` go as one Put Blob request on the shared urllib3 pool (what
    the storage SDK would send, without its per-request pipeline); larger ones through the SDK
    (blocks in parallel). Connection errors and 5xx are retried 3 times.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise StorageFailure(f"cannot read {path.name} to upload it: {exc.strerror}") from None
    with open(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StorageFailure(f"{path.name} is not a regular file: not uploaded")
        if st.st_size <= SINGLE_PUT_BYTES:
            _put_blob(container_url, blob_name, fh, st.st_size, identity)
        else:
            _upload_stream(container_from_url(container_url, identity), blob_name, fh)


def _put_blob(container_url: str, blob_name: str, fh: BinaryIO, size: int, identity: str | None) -> None:
    parts = urlsplit(container_url)
    url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/{quote(blob_name)}?{parts.query}"
    where = f"{blob_name} to container {public_url(container_url)}"
    headers = {
        **_bearer_headers(identity),
        "x-ms-blob-type": "BlockBlob",
        "x-ms-version": PUT_BLOB_API_VERSION,
        "Content-Type": "application/octet-stream",
        "Content-Length": str(size),
    }
    retries = urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504), redirect=0)
    try:
        resp = _http_pool().request("PUT", url, body=fh, headers=headers, retries=retries)
    except (urllib3.exceptions.HTTPError, ValueError) as exc:
        raise StorageFailure(f"could not upload {where}: {type(exc).__name__}") from None
    if resp.status >= 300:
        raise StorageFailure(f"could not upload {where}: HTTP status {resp.status}", resp.status)


def _upload_stream(container: ContainerClient, blob_name: str, fh: Any) -> None:
    try:
        container.upload_blob(blob_name, fh, overwrite=True)
    except _azure_error() as exc:
        raise StorageFailure(
            f"could not upload {blob_name} to container {public_url(container.url)}: {type(exc).__name__}",
            _status(exc),
        ) from None
