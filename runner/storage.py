"""Blob Storage for the runner: the only module that imports ``azure.storage.blob``.

Contracts:

* :class:`Storage` is built from :class:`~runner.outputs.Outputs`: shared key
  by default, or a ``TokenCredential`` (Entra ID), in which case SAS tokens
  are user-delegation SAS.
* Uploads and downloads run in parallel (a thread pool) and report bytes to a
  progress callback. An upload is skipped when the blob exists with the same
  Content-MD5 (computed locally, streaming) and size; uploads always set it.
  When the blob names share a directory prefix (``<job-id>/inputs/``), the
  existing blobs are found with one listing of that prefix (one request per
  5,000 blobs), not one HEAD per blob; otherwise each blob gets a HEAD.
* SAS: read-only and scoped to one blob for inputs, node code and the counts
  files the merge tasks read; create+write only for the output container
  (Batch ``outputFiles``). Nothing gets a read or list SAS on a whole
  container. Expiry is given by the caller.
* Copies (the result cache's, :mod:`runner.cache`) are server-side Copy Blob requests
  inside one container, in parallel; listings for it carry metadata and copy state.
* Every SDK error leaves this module as a :class:`~runner.errors.RunnerError`
  chosen by status code; messages never include a URL, a header or a token.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from runner.errors import AuthError, NotFoundError, RemoteError, RunnerError, UsageError
from runner.outputs import Outputs
from runner.sdk_errors import translated
from runner.sync_sdk import without_aiohttp_transport

with without_aiohttp_transport():  # sync clients only: aiohttp is not imported (runner.sync_sdk)
    from azure.storage.blob import (
        BlobLeaseClient,
        BlobSasPermissions,
        BlobServiceClient,
        ContainerSasPermissions,
        ContentSettings,
        ExponentialRetry,
        UserDelegationKey,
        generate_blob_sas,
        generate_container_sas,
    )

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]
#: Blobs per Blob Batch delete request (the service's limit).
DELETE_BATCH = 256
_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class UploadItem:
    """A local file and the blob it goes to."""

    path: Path
    blob_name: str


@dataclass(frozen=True)
class UploadSummary:
    uploaded: int
    skipped: int
    bytes_uploaded: int


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    #: The version listed (Storage's ETag): a rewritten blob has another one.
    etag: str | None = None


@dataclass(frozen=True)
class BlobEntry:
    """A listed blob with what :mod:`runner.cache` verifies: size, Content-MD5, metadata, copy state."""

    name: str
    size: int
    md5: bytes | None
    metadata: dict[str, str]
    last_modified: datetime | None
    #: ``None`` when the blob was not made by a copy, else Storage's copy status (``success``, ...).
    copy_status: str | None = None


@dataclass(frozen=True)
class CopyItem:
    """A server-side copy inside one container: ``source`` blob to ``dest`` blob (with ``metadata``)."""

    source: str
    dest: str
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class DownloadItem:
    """A blob and the local file it goes to; with ``md5`` (and ``size``), the bytes must hash to it."""

    blob_name: str
    dest: Path
    md5: bytes | None = None
    size: int | None = None
    #: When set, only this version is downloaded (a conditional GET: a blob rewritten since it
    #: was listed is a RemoteError, never a mix of versions).
    etag: str | None = None


class CorruptDownload(RemoteError):
    """A downloaded blob whose bytes are not those expected (``DownloadItem.md5`` / ``size``);
    nothing was written at its destination."""

    def __init__(self, blob_name: str) -> None:
        super().__init__(f"the bytes of {blob_name} did not match their recorded size and MD5")
        self.blob_name = blob_name


def file_md5(path: Path) -> bytes:
    """MD5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


def common_dir_prefix(names: list[str]) -> str:
    """The longest common prefix of ``names`` cut back to (and including) its last ``/``;
    ``""`` when there is none (or no names)."""
    if not names:
        return ""
    lo, hi = min(names), max(names)  # every name's common prefix is theirs
    n = 0
    while n < len(lo) and lo[n] == hi[n]:
        n += 1
    return lo[: lo.rfind("/", 0, n) + 1]


@contextmanager
def translate_errors(what: str, endpoint: str) -> Iterator[None]:
    """Turn SDK errors into RunnerErrors (see :mod:`runner.sdk_errors`); ``what`` says what we were doing."""
    with translated("Storage", endpoint, what, _from_http):
        yield


def _from_http(exc: HttpResponseError, what: str) -> RunnerError:
    status = exc.status_code or 0
    raw = getattr(exc, "error_code", None) or ""
    code = str(getattr(raw, "value", raw))  # the SDK gives a StorageErrorCode enum or a str
    if status in (401, 403):
        return AuthError(
            f"Storage rejected the credentials while {what} ({status} {code or 'AuthenticationFailed'})",
            hint="check storageAccountKey in the outputs, or your role assignments with --auth entra",
        )
    if status == 404:
        return NotFoundError(f"not found while {what} ({code or 'NotFound'})")
    if status in (429, 500, 503):
        return RemoteError(
            f"Storage error while {what}: {status} {code}".rstrip(),
            hint="the service is busy or throttling and still was after 4 retries: try again later",
        )
    return RemoteError(f"Storage error while {what}: {status} {code}".rstrip())


class Storage:
    """Blob operations against one Storage account."""

    def __init__(
        self,
        outputs: Outputs,
        *,
        credential: TokenCredential | None = None,
        max_workers: int = 8,
        ca_bundle: str | None = None,
    ) -> None:
        """``ca_bundle``: the CA file that verifies this endpoint's TLS (the local target's only)."""
        self.account_name = outputs.storage_account_name
        self.endpoint = outputs.storage_blob_endpoint.rstrip("/")
        self._host = urlparse(self.endpoint).netloc
        self._key = outputs.storage_account_key
        self._token_credential = credential
        self._container_urls: dict[str, str] = {}
        cred: Any
        if credential is not None:
            cred = credential
        elif self._key:
            cred = {"account_name": self.account_name, "account_key": self._key}
        else:
            raise AuthError("no Storage key in the outputs", hint="use --auth entra or add storageAccountKey")
        self._client = BlobServiceClient(
            self.endpoint,
            credential=cred,
            retry_policy=_retry_policy(),
            connection_timeout=10,
            **_verify_kwargs(ca_bundle),
        )
        self.max_workers = max_workers
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_lock = threading.Lock()

    # -- containers -------------------------------------------------------------------

    def ensure_containers(self, names: list[str]) -> None:
        """Create the containers that do not exist yet."""
        for name in names:
            with translate_errors(f"creating container {name}", self._host):
                try:
                    self._client.create_container(name)
                    log.info("created container %s", name)
                except ResourceExistsError:
                    pass

    # -- single blobs -----------------------------------------------------------------

    def blob_exists(self, container: str, name: str) -> bool:
        with translate_errors(f"checking blob {name}", self._host):
            return bool(self._client.get_blob_client(container, name).exists())

    def upload_bytes(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        overwrite: bool = True,
        metadata: dict[str, str] | None = None,
    ) -> None:
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        with translate_errors(f"uploading {name}", self._host):
            self._client.get_blob_client(container, name).upload_blob(
                data,
                overwrite=overwrite,
                content_settings=ContentSettings(content_md5=bytearray(md5)),
                metadata=metadata,
            )

    def download_bytes(self, container: str, name: str) -> bytes:
        with translate_errors(f"downloading {name}", self._host):
            return bytes(self._client.get_blob_client(container, name).download_blob().readall())

    def try_download_bytes(self, container: str, name: str) -> bytes | None:
        """Like :meth:`download_bytes` but ``None`` when the blob does not exist."""
        with translate_errors(f"downloading {name}", self._host):
            try:
                return bytes(self._client.get_blob_client(container, name).download_blob().readall())
            except ResourceNotFoundError:
                return None

    def list_blobs(self, container: str, prefix: str) -> list[BlobInfo]:
        with translate_errors(f"listing {container}/{prefix}", self._host):
            return [
                BlobInfo(b.name, int(b.size or 0), b.etag)
                for b in self._client.get_container_client(container).list_blobs(name_starts_with=prefix)
            ]

    def delete_prefix(self, container: str, prefix: str) -> int:
        """Delete every blob under ``prefix`` with Blob Batch requests of :data:`DELETE_BATCH`
        (one request per 256 blobs, not one per blob); returns how many were deleted. A blob
        already gone is fine; any other refusal is a :class:`RemoteError` naming how many."""
        names = [b.name for b in self.list_blobs(container, prefix)]
        return self.delete_names(container, names, where=f"under {container}/{prefix}")

    # -- leases (runner/submit_lock.py) --------------------------------------------------

    def try_lease(self, container: str, name: str, seconds: int, body: bytes) -> str | None:
        """Take a ``seconds`` lease on blob ``name`` (created when missing) and write ``body``
        under it; the lease id, or ``None`` when someone else holds the blob's lease.

        The blob is created first if missing (a free lock's marker usually is: its holder
        deleted it), then leased, then written: three requests."""
        blob = self._client.get_blob_client(container, name)
        with translate_errors(f"leasing {name}", self._host):
            for _ in range(3):
                try:
                    blob.upload_blob(b"", overwrite=False)
                except ResourceExistsError:
                    pass  # there already: leased by someone, or free to lease
                except HttpResponseError as exc:
                    if exc.status_code != 412:  # 412: there already, under someone's lease
                        raise
                try:
                    lease = blob.acquire_lease(lease_duration=seconds)
                except ResourceNotFoundError:
                    continue  # deleted since (its holder released it): make it again
                except HttpResponseError as exc:
                    if exc.status_code in (409, 412):  # LeaseAlreadyPresent, or written under a lease
                        return None
                    raise
                blob.upload_blob(body, overwrite=True, lease=lease)
                return str(lease.id)
        return None

    def renew_lease(self, container: str, name: str, lease_id: str) -> bool:
        """Renew our lease; ``False`` when it was lost (broken, or taken after it expired)."""
        lease = BlobLeaseClient(self._client.get_blob_client(container, name), lease_id=lease_id)
        with translate_errors(f"renewing the lease of {name}", self._host):
            try:
                lease.renew()
            except (ResourceNotFoundError, ResourceExistsError):
                return False
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    return False
                raise
        return True

    def break_lease(self, container: str, name: str) -> None:
        """Break the blob's lease at once, whoever holds it (a holder known to be dead)."""
        lease = BlobLeaseClient(self._client.get_blob_client(container, name))
        gone = contextlib.suppress(ResourceNotFoundError, ResourceExistsError)  # or no lease any more
        with translate_errors(f"breaking the lease of {name}", self._host), gone:
            lease.break_lease(lease_break_period=0)

    def end_lease(self, container: str, name: str, lease_id: str) -> None:
        """Delete the blob we hold the lease of (one request, no retry: also used on Ctrl-C)."""
        lost = contextlib.suppress(ResourceNotFoundError, ResourceExistsError)  # it expires by itself
        with translate_errors(f"deleting {name}", self._host), lost:
            self._client.get_blob_client(container, name).delete_blob(lease=lease_id, retry_total=0)

    # -- parallel transfers -----------------------------------------------------------

    def upload_files(
        self, container: str, items: list[UploadItem], progress: ProgressFn | None = None
    ) -> UploadSummary:
        """Upload in parallel; skip blobs whose Content-MD5 and size match the local file.

        What exists is learnt from one listing of the names' common directory prefix,
        or (no common prefix) from one HEAD per blob. ``progress`` receives byte deltas
        (skipped files count as done).
        """
        lock = threading.Lock()
        counts = {"uploaded": 0, "skipped": 0, "bytes": 0}
        prefix = common_dir_prefix([item.blob_name for item in items])
        remote: dict[str, tuple[int, bytes | None]] | None = None
        if prefix:
            remote = self._list_md5(container, prefix)

        def remote_of(item: UploadItem) -> tuple[int, bytes | None] | None:
            if remote is not None:
                return remote.get(item.blob_name)
            try:
                props = self._client.get_blob_client(container, item.blob_name).get_blob_properties()
            except ResourceNotFoundError:
                return None
            md5 = props.content_settings.content_md5
            return int(props.size or 0), (bytes(md5) if md5 is not None else None)

        def one(item: UploadItem) -> None:
            try:
                size = item.path.stat().st_size
                md5 = file_md5(item.path)
            except OSError as exc:
                raise UsageError(f"cannot read {item.path}: {exc.strerror}") from None
            with translate_errors(f"uploading {item.blob_name}", self._host):
                if remote_of(item) == (size, md5):
                    with lock:
                        counts["skipped"] += 1
                    if progress:
                        progress(size)
                    return
                done = [0]

                def hook(current: int, _total: int | None) -> None:
                    delta = current - done[0]
                    done[0] = current
                    if progress and delta > 0:
                        progress(delta)

                with open(item.path, "rb") as handle:
                    self._client.get_blob_client(container, item.blob_name).upload_blob(
                        handle,
                        length=size,
                        overwrite=True,
                        content_settings=ContentSettings(
                            content_type="application/octet-stream", content_md5=bytearray(md5)
                        ),
                        progress_hook=hook,
                    )
                if progress and size > done[0]:
                    progress(size - done[0])
            with lock:
                counts["uploaded"] += 1
                counts["bytes"] += size

        self._run_parallel(one, items)
        return UploadSummary(counts["uploaded"], counts["skipped"], counts["bytes"])

    def changed(self, container: str, items: list[UploadItem]) -> list[UploadItem]:
        """The items whose blob exists with another size or Content-MD5 than the local file
        (one listing of the names' common prefix, or one HEAD per blob; local files hashed)."""
        prefix = common_dir_prefix([item.blob_name for item in items])
        out = []
        remote = self._list_md5(container, prefix) if prefix else None
        for item in items:
            if remote is not None:
                found = remote.get(item.blob_name)
            else:
                with translate_errors(f"checking blob {item.blob_name}", self._host):
                    try:
                        props = self._client.get_blob_client(container, item.blob_name).get_blob_properties()
                    except ResourceNotFoundError:
                        continue
                md5 = props.content_settings.content_md5
                found = (int(props.size or 0), bytes(md5) if md5 is not None else None)
            if found is None:
                continue
            try:
                local = (item.path.stat().st_size, file_md5(item.path))
            except OSError as exc:
                raise UsageError(f"cannot read {item.path}: {exc.strerror}") from None
            if found != local:
                out.append(item)
        return out

    def _list_md5(self, container: str, prefix: str) -> dict[str, tuple[int, bytes | None]]:
        """Name -> (size, Content-MD5) of every blob under ``prefix`` (one listing)."""
        found: dict[str, tuple[int, bytes | None]] = {}
        with translate_errors(f"listing {prefix}", self._host):
            for b in self._client.get_container_client(container).list_blobs(name_starts_with=prefix):
                md5 = b.content_settings.content_md5
                found[b.name] = (int(b.size or 0), bytes(md5) if md5 is not None else None)
        return found

    def download_files(
        self, container: str, items: list[DownloadItem], progress: ProgressFn | None = None
    ) -> None:
        """Download in parallel to each item's ``dest`` (parents created, written atomically).

        Every ``dest`` must be distinct (``ValueError`` otherwise): two parallel
        downloads to one path would race on its temporary file. An item with ``md5`` whose
        bytes do not hash to it (or are not ``size`` long) is :class:`CorruptDownload`.
        """
        if len({item.dest for item in items}) != len(items):
            raise ValueError("two downloads to the same local path")

        def one(item: DownloadItem) -> None:
            item.dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = item.dest.with_name(item.dest.name + ".part")
            digest, size = hashlib.md5(usedforsecurity=False), 0
            with translate_errors(f"downloading {item.blob_name}", self._host):
                cond: dict[str, Any] = (
                    {"etag": item.etag, "match_condition": MatchConditions.IfNotModified} if item.etag else {}
                )
                stream = self._client.get_blob_client(container, item.blob_name).download_blob(**cond)
                with open(tmp, "wb") as handle:
                    for chunk in stream.chunks():
                        handle.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        if progress:
                            progress(len(chunk))
            if item.md5 is not None and (digest.digest() != item.md5 or size != (item.size or size)):
                tmp.unlink()
                raise CorruptDownload(item.blob_name)
            tmp.replace(item.dest)

        self._run_parallel(one, items)

    def _run_parallel(self, fn: Callable[[Any], None], items: list[Any]) -> None:
        """Run ``fn`` over ``items`` in threads; on the first error (or Ctrl-C) cancel what has
        not started, wait for what has, and re-raise."""
        if not items:
            return
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items))) as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                for future in as_completed(futures):
                    exc = future.exception()
                    if exc is not None:
                        raise exc
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    # -- server-side copies and listings with metadata (runner.cache) -------------------

    def list_entries(self, container: str, prefix: str) -> list[BlobEntry]:
        """Every blob under ``prefix`` with its metadata and copy state: one listing (one request
        per 5,000 blobs)."""
        with translate_errors(f"listing {container}/{prefix}", self._host):
            return [
                BlobEntry(
                    b.name,
                    int(b.size or 0),
                    bytes(b.content_settings.content_md5) if b.content_settings.content_md5 else None,
                    dict(b.metadata or {}),
                    b.last_modified,
                    b.copy.status if b.copy is not None and b.copy.id else None,
                )
                for b in self._client.get_container_client(container).list_blobs(
                    name_starts_with=prefix, include=["metadata", "copy"]
                )
            ]

    def copy_blobs(
        self, container: str, items: list[CopyItem], *, if_missing: bool = False, wait: float = 120.0
    ) -> dict[str, str]:
        """Copy blobs server-side (Copy Blob, in parallel; sources: :meth:`_copy_source_url`).

        Copies Storage runs in the background are waited for (at most ``wait`` seconds
        each). Properties, Content-MD5 included, come with the copy; ``metadata`` replaces
        the source's. Returns ``{dest: outcome}`` for every copy that did not succeed:
        ``exists`` (``if_missing`` and the destination exists: left alone), ``missing``
        (no source blob), or Storage's copy status (``failed``, ``aborted``, ``pending``
        after ``wait``). Other refusals (credentials, a busy service after retries) raise
        a :class:`RunnerError`.
        """
        expiry = datetime.now(timezone.utc) + timedelta(minutes=15)
        outcomes: dict[str, str] = {}
        lock = threading.Lock()

        def one(item: CopyItem) -> None:
            with translate_errors(f"copying {item.source} to {item.dest}", self._host):
                status = self._copy_one(container, item, expiry, if_missing, wait)
            if status != "success":
                with lock:
                    outcomes[item.dest] = status

        self._run_parallel(one, items)
        return outcomes

    def _copy_one(
        self, container: str, item: CopyItem, expiry: datetime, if_missing: bool, wait: float
    ) -> str:
        """One Copy Blob, waited for: its final status, ``"exists"`` (``if_missing``) or ``"missing"``."""
        source = self._copy_source_url(container, item.source, expiry)
        dest = self._client.get_blob_client(container, item.dest)
        cond: dict[str, Any] = {}
        if if_missing:
            cond = {"match_condition": MatchConditions.IfMissing}
        try:
            started = dest.start_copy_from_url(source, metadata=item.metadata, **cond)
        except ResourceNotFoundError:
            return "missing"
        except ResourceExistsError:
            return "exists"
        except HttpResponseError as exc:
            if if_missing and exc.status_code == 412:
                return "exists"
            raise
        status = str(started.get("copy_status") or "success")
        deadline = time.monotonic() + wait
        pause = 0.05
        while status == "pending" and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            status = str(dest.get_blob_properties().copy.status or "success")
        return status

    def _copy_source_url(self, container: str, name: str, expiry: datetime) -> str:
        """The source of a copy inside this account: with a shared key, the plain URL (Storage
        authorizes a same-account source with the copy request's own signature, and copies
        it internally: Azurite fetches a SAS URL over HTTP, twice as slow); with Entra ID, a
        read-only SAS of that blob (user delegation)."""
        if self._token_credential is None:
            return f"{self._container_base_url(container)}/{quote(name, safe='~/')}"
        return self.blob_read_url(container, name, expiry)

    def delete_names(self, container: str, names: list[str], *, where: str = "") -> int:
        """Delete these blobs with Blob Batch requests of :data:`DELETE_BATCH`; a blob already gone
        is fine; returns how many were asked for. Any other refusal is a :class:`RemoteError`
        (naming ``where`` they were: by default, the container)."""
        where = where or f"in {container}"
        client = self._client.get_container_client(container)
        failed = 0
        with translate_errors(f"deleting {len(names)} blob(s) {where}", self._host):
            for start in range(0, len(names), DELETE_BATCH):
                part = names[start : start + DELETE_BATCH]
                for resp in client.delete_blobs(*part, raise_on_any_failure=False):
                    if resp.status_code not in (200, 202, 404):
                        failed += 1
        if failed:
            raise RemoteError(f"Storage refused to delete {failed} of {len(names)} blob(s) {where}")
        return len(names)

    # -- SAS --------------------------------------------------------------------------

    def blob_read_url(self, container: str, name: str, expiry: datetime) -> str:
        """URL of one blob with a read-only SAS scoped to that blob."""
        sas = generate_blob_sas(
            self.account_name,
            container,
            name,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
            start=_start(),
            **self._sas_signer(expiry),
        )
        # The SDK's own URL quoting (as BlobClient.url does), without building a client per URL:
        # plans with 100,000 inputs sign 100,000 URLs.
        return f"{self._container_base_url(container)}/{quote(name, safe='~/')}?{sas}"

    def blob_url(self, container: str, name: str) -> str:
        """URL of one blob without any SAS (for a reader with its own identity)."""
        return f"{self._container_base_url(container)}/{quote(name, safe='~/')}"

    def container_url(self, container: str) -> str:
        """Container URL without any SAS (for a writer with its own identity)."""
        return self._container_base_url(container)

    def _container_base_url(self, container: str) -> str:
        url = self._container_urls.get(container)
        if url is None:
            url = self._container_urls[container] = self._client.get_container_client(container).url.rstrip(
                "/"
            )
        return url

    def container_write_url(self, container: str, expiry: datetime) -> str:
        """Container URL with a create+write only SAS (for Batch ``outputFiles``)."""
        return self._container_url(container, ContainerSasPermissions(create=True, write=True), expiry)

    def _container_url(self, container: str, permission: ContainerSasPermissions, expiry: datetime) -> str:
        sas = generate_container_sas(
            self.account_name,
            container,
            permission=permission,
            expiry=expiry,
            start=_start(),
            **self._sas_signer(expiry),
        )
        return f"{self._client.get_container_client(container).url}?{sas}"

    def _sas_signer(self, expiry: datetime) -> dict[str, Any]:
        if self._token_credential is None:
            return {"account_key": self._key}
        with self._delegation_lock:
            key = self._delegation_key
            if key is None or _parse_time(key.signed_expiry) < expiry:
                with translate_errors("getting a user delegation key", self._host):
                    key = self._client.get_user_delegation_key(_start(), expiry + timedelta(minutes=5))
                self._delegation_key = key
        return {"user_delegation_key": key}


class _RetryAfterExponentialRetry(ExponentialRetry):
    """The Storage SDK's exponential retry, waiting at least what a ``Retry-After`` header asks.

    Storage throttles with 503 ``ServerBusy`` and 500 ``OperationTimedOut`` (Azure's
    scalability targets); the SDK's policy retries those and every other 5xx except
    501/505, plus 408 and connection errors, but sleeps its own backoff only.
    """

    def sleep(self, settings: dict[str, Any], transport: Any) -> None:
        history = settings.get("history") or []
        response = getattr(history[-1], "http_response", None) if history else None
        wait = _retry_after(response.headers.get("Retry-After") if response is not None else None)
        if wait is None or wait <= self.get_backoff_time(settings):
            super().sleep(settings, transport)
            return
        transport.sleep(min(wait, _MAX_RETRY_AFTER))


#: A Retry-After longer than this is cut to it (a misbehaving proxy cannot stall the runner).
_MAX_RETRY_AFTER = 60.0


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), ``None`` if absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _retry_policy() -> ExponentialRetry:
    """Retries of every Storage request: 4, backing off 1, 3, 9 s (+-1 s jitter) or what
    ``Retry-After`` says; a refused connection only once, so a target that is down is
    reported in seconds, not minutes."""
    return _RetryAfterExponentialRetry(
        initial_backoff=1, increment_base=2, retry_total=4, retry_connect=1, random_jitter_range=1
    )


def _verify_kwargs(ca_bundle: str | None) -> dict[str, Any]:
    return {"connection_verify": ca_bundle} if ca_bundle else {}


def _start() -> datetime:
    # A little in the past: clocks on nodes and in Storage differ.
    return datetime.now(timezone.utc) - timedelta(minutes=5)


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.min.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
