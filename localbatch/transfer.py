"""Resource files in, output files out: Batch's file staging around a task.

* :func:`fetch_resource_files` runs before the process starts: ``httpUrl``
  (plain HTTP GET, e.g. a blob SAS URL), ``storageContainerUrl`` (+
  ``blobPrefix``), and ``autoStorageContainerName`` (the linked account's
  key, which never reaches the task). ``filePath`` is relative to the
  working directory and may not escape it; ``fileMode`` is applied.
* :func:`upload_output_files` runs after the process exits, before the task
  is completed: every ``filePattern`` (relative to the working directory;
  ``**`` and ``../stdout.txt``-style paths within the task directory are
  allowed) is uploaded per its ``uploadCondition``.

Both are synchronous (worker thread) and raise :class:`TransferError` with a
message that never contains a SAS token.
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from localbatch import storage
from localbatch.models import OutputFile, ResourceFile, UploadCondition

# Shared by all tasks: transfers of one task run in parallel, a bounded number overall.
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="localbatch-transfer")


class TransferError(Exception):
    """File staging failed; ``code`` is Batch's failureInfo code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _inside(base: Path, target: Path) -> bool:
    base_s, target_s = str(base.resolve()), str(target.resolve())
    return target_s == base_s or target_s.startswith(base_s + os.sep)


def _apply_mode(path: Path, mode: str | None) -> None:
    if mode is None:
        return
    if path.is_dir():
        for p in path.rglob("*"):
            if p.is_file():
                p.chmod(int(mode, 8))
    elif path.exists():
        path.chmod(int(mode, 8))


def _storage_error(exc: storage.StorageFailure, upload: bool) -> TransferError:
    if upload:
        return TransferError("FileUploadMiscError", str(exc))
    code = "ResourceContainerAccessDenied" if exc.status in (401, 403) else "BlobDownloadMiscError"
    return TransferError(code, str(exc))


def _run_all(jobs: list[Callable[[], None]]) -> None:
    """Run transfer jobs in parallel on the shared pool; raise the first failure."""
    if len(jobs) == 1:
        jobs[0]()
        return
    futures = [_POOL.submit(job) for job in jobs]
    first: BaseException | None = None
    for fut in futures:
        exc = fut.exception()
        if exc is not None and first is None:
            first = exc
    if first is not None:
        raise first


def fetch_resource_files(
    files: tuple[ResourceFile, ...], wd: Path, auto_storage: storage.AutoStorage | None
) -> None:
    """Download all resource files into ``wd`` (see module docstring), in parallel."""
    jobs: list[Callable[[], None]] = []
    modes: list[tuple[Path, str | None]] = []
    try:
        for rf in files:
            rel = rf.file_path or ""
            target = wd / rel if rel else wd
            if not _inside(wd, target):
                raise TransferError(
                    "BlobDownloadMiscError", f"filePath {rel!r} escapes the working directory"
                )
            modes.append((target, rf.file_mode))
            if rf.http_url:
                jobs.append(functools.partial(storage.download_url, rf.http_url, target))
                continue
            if rf.storage_container_url:
                try:
                    container = storage.container_from_url(rf.storage_container_url)
                except ValueError:
                    raise TransferError("BlobDownloadMiscError", "invalid storageContainerUrl") from None
            elif auto_storage is None:
                raise TransferError(
                    "AutoStorageNotConfigured", "No storage account is linked to this Batch account"
                )
            else:
                container = auto_storage.container(rf.auto_storage_container_name or "")
            target.mkdir(parents=True, exist_ok=True)
            for name in storage.list_blob_names(container, rf.blob_prefix):
                jobs.append(functools.partial(storage.download_blob, container, name, target))
        if jobs:
            _run_all(jobs)
    except storage.StorageFailure as exc:
        raise _storage_error(exc, upload=False) from None
    for target, mode in modes:
        _apply_mode(target, mode)


def _has_magic(part: str) -> bool:
    return any(ch in part for ch in "*?[")


def match_pattern(pattern: str, wd: Path, task_dir: Path) -> list[tuple[Path, str]]:
    """Files matching ``pattern`` as (path, name relative to the pattern's static base)."""
    parts = PurePosixPath(pattern.replace("\\", "/")).parts
    static: list[str] = []
    for part in parts:
        if _has_magic(part):
            break
        static.append(part)
    base = (wd / Path(*static)) if static else wd
    if not _inside(task_dir, base):
        return []
    rest = parts[len(static) :]
    if not rest:
        return [(base, base.name)] if base.is_file() else []
    matches: list[tuple[Path, str]] = []
    for found in sorted(glob.glob(str(base / Path(*rest)), recursive=True)):
        path = Path(found)
        if path.is_file() and _inside(task_dir, path):
            matches.append((path, path.relative_to(base).as_posix()))
    return matches


def upload_output_files(outputs: tuple[OutputFile, ...], succeeded: bool, wd: Path, task_dir: Path) -> int:
    """Upload the output files whose condition holds, in parallel; return how many were uploaded."""
    jobs: list[Callable[[], None]] = []
    for out in outputs:
        if out.condition is UploadCondition.TASK_SUCCESS and not succeeded:
            continue
        if out.condition is UploadCondition.TASK_FAILURE and succeeded:
            continue
        files = match_pattern(out.file_pattern, wd, task_dir)
        if not files:
            continue
        wildcard = any(_has_magic(p) for p in PurePosixPath(out.file_pattern).parts)
        try:
            container = storage.container_from_url(out.container_url)
        except ValueError:
            raise TransferError("FileUploadMiscError", "invalid output container URL") from None
        for path, rel in files:
            if wildcard:
                name = f"{out.path.rstrip('/')}/{rel}" if out.path else rel
            else:
                name = out.path or path.name
            jobs.append(functools.partial(storage.upload_file, container, name, path))
    if jobs:
        try:
            _run_all(jobs)
        except storage.StorageFailure as exc:
            raise _storage_error(exc, upload=True) from None
    return len(jobs)
