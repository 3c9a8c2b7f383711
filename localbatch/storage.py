"""Blob access for resource and output files; the only module importing azure.storage.blob.

Functions are synchronous (run them in a worker thread). Errors come out as
:class:`StorageFailure` whose message names the container/blob but never a
SAS token or key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient, ContainerClient


class StorageFailure(Exception):
    """A download or upload failed; ``status`` is the HTTP status when known."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AutoStorage:
    """The storage account linked to the Batch account (auto-storage)."""

    blob_endpoint: str
    account_name: str
    account_key: str

    def container(self, name: str) -> ContainerClient:
        service = BlobServiceClient(
            self.blob_endpoint,
            credential={"account_name": self.account_name, "account_key": self.account_key},
        )
        return service.get_container_client(name)


def public_url(url: str) -> str:
    """A URL without its query string (no SAS), for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _status(exc: AzureError) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def download_container(container: ContainerClient, prefix: str | None, dest: Path) -> int:
    """Download every blob under ``prefix`` to ``dest/<blob name>``; return the count."""
    count = 0
    try:
        for blob in container.list_blobs(name_starts_with=prefix or None):
            target = (dest / blob.name).resolve()
            if not str(target).startswith(str(dest.resolve()) + os.sep):
                raise StorageFailure(f"blob name escapes the target directory: {blob.name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as fh:
                container.download_blob(blob.name).readinto(fh)
            count += 1
    except AzureError as exc:
        raise StorageFailure(
            f"could not download from container {public_url(container.url)}: {type(exc).__name__}",
            _status(exc),
        ) from None
    return count


def container_from_url(url: str) -> ContainerClient:
    return ContainerClient.from_container_url(url)


def upload_file(container: ContainerClient, blob_name: str, path: Path) -> None:
    """Upload ``path`` as ``blob_name`` (overwriting)."""
    try:
        with open(path, "rb") as fh:
            container.upload_blob(blob_name, fh, overwrite=True)
    except AzureError as exc:
        raise StorageFailure(
            f"could not upload {blob_name} to container {public_url(container.url)}: {type(exc).__name__}",
            _status(exc),
        ) from None
