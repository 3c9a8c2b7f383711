"""Resource files in, output files out: Batch's file staging around a task.

* :func:`plan_downloads` runs before the process starts: ``httpUrl`` (plain
  HTTP GET, e.g. a blob SAS URL), ``storageContainerUrl`` (+ ``blobPrefix``),
  and ``autoStorageContainerName`` (the linked account's key, which never
  reaches the task). ``filePath`` is relative to the working directory and may
  not escape it; ``fileMode`` is applied afterwards (:func:`apply_modes`).
* :func:`plan_uploads` runs after the process exits, before the task is
  completed: every ``filePattern`` (relative to the working directory; ``**``
  and ``../stdout.txt``-style paths within the task directory are allowed) is
  matched per its ``uploadCondition``.

A file with ``identity`` (Batch's ``identityReference``) is fetched or sent
with a bearer token of that pool identity instead of a SAS; an identity the pool
does not have, or whose token cannot be had, fails the task before any transfer
(``ResourceContainerAccessDenied`` for resource files, ``FileUploadMiscError``
for output files, category ``usererror``), naming the identity.

Both return *jobs*: one callable per file, which the caller runs on
:data:`POOL`, shared by all tasks, so the files of one task and of different
tasks transfer concurrently over the connections :mod:`localbatch.storage`
keeps. A job raises :class:`TransferError` (Batch's failureInfo code and a
message that never contains a SAS token).

Symlinks, as a hostile task may leave them (:func:`match_pattern`): a
symlinked directory is never descended into, in the static part of a pattern
or under a wildcard, so a pattern can neither leave the task directory nor
loop; a symlink to a regular file inside the task directory is uploaded once,
under the symlink's own name; a symlink leading out of the task directory,
and anything that is not a regular file (FIFO, socket, device), is skipped.
Walks check a :class:`threading.Event` so an ended task stops walking.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import queue
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from localbatch import node_identity, storage
from localbatch.models import OutputFile, ResourceFile, UploadCondition

T = TypeVar("T")
Job = Callable[[], None]
TRANSFER_THREADS = 8


class TransferError(Exception):
    """File staging failed; ``code`` is Batch's failureInfo code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TransferCancelled(Exception):
    """The task was ended while its files were being listed or matched."""


class DaemonPool:
    """Up to ``workers`` daemon worker threads, each made when the work in hand needs it.

    Unlike :class:`concurrent.futures.ThreadPoolExecutor`, nothing waits for its
    threads at interpreter exit: a transfer stuck on a dead server cannot keep a
    stopping service alive. Futures cancelled before they start never run. A new
    thread starts only when more jobs are pending (queued or running) than there
    are threads, so a service running two tasks at a time holds two, not eight
    (each thread costs memory: its stack and its own malloc arena).
    """

    def __init__(self, workers: int, name: str) -> None:
        self._workers = workers
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._pending = 0  # jobs submitted and not finished

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn()`` on a worker; its result or exception lands in the returned future."""
        fut: Future[T] = Future()
        with self._lock:
            self._pending += 1
            if self._pending > self._threads and self._threads < self._workers:
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
                self._threads += 1
        self._queue.put((fut, fn))
        return fut

    def _work(self) -> None:
        while True:
            fut, fn = self._queue.get()
            if not fut.set_running_or_notify_cancel():
                self._finished()
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to whoever waits on the future
                self._finished()
                fut.set_exception(exc)
            else:
                self._finished()  # before the result: its waiter may submit the next job at once
                fut.set_result(result)

    def _finished(self) -> None:
        with self._lock:
            self._pending -= 1


POOL = DaemonPool(TRANSFER_THREADS, "localbatch-transfer")


def _inside(base: Path, target: Path) -> bool:
    base_s, target_s = os.path.realpath(base), os.path.realpath(target)
    return target_s == base_s or target_s.startswith(base_s + os.sep)


def _storage_error(exc: storage.StorageFailure, upload: bool) -> TransferError:
    if upload:
        return TransferError("FileUploadMiscError", str(exc))
    code = "ResourceContainerAccessDenied" if exc.status in (401, 403) else "BlobDownloadMiscError"
    return TransferError(code, str(exc))


def _identity_error(exc: node_identity.IdentityUnavailable, upload: bool) -> TransferError:
    code = "FileUploadMiscError" if upload else "ResourceContainerAccessDenied"
    return TransferError(code, f"{'output' if upload else 'resource'} files: {exc}")


def _check_identity(identity: str | None, upload: bool) -> None:
    """Fail before any transfer when the pool has no such identity or no token can be had for it."""
    if identity is None:
        return
    try:
        node_identity.storage_token(identity)
    except node_identity.IdentityUnavailable as exc:
        raise _identity_error(exc, upload) from None


def _job(upload: bool, fn: Callable[..., None], *args: Any) -> Job:
    def run() -> None:
        try:
            fn(*args)
        except storage.StorageFailure as exc:
            raise _storage_error(exc, upload) from None
        except node_identity.IdentityUnavailable as exc:  # a token refresh that failed mid-job
            raise _identity_error(exc, upload) from None

    return run


# ---------------------------------------------------------------------- resource files


def plan_downloads(
    files: tuple[ResourceFile, ...], wd: Path, auto_storage: storage.AutoStorage | None
) -> tuple[list[Job], list[tuple[Path, str | None]]]:
    """The download jobs of ``files`` and the (target, fileMode) pairs to apply once they ran.

    Lists containers (network calls): run it on a worker thread.
    """
    jobs: list[Job] = []
    modes: list[tuple[Path, str | None]] = []
    for rf in files:
        rel = rf.file_path or ""
        target = wd / rel if rel else wd
        if not _inside(wd, target):
            raise TransferError("BlobDownloadMiscError", f"filePath {rel!r} escapes the working directory")
        modes.append((target, rf.file_mode))
        _check_identity(rf.identity, upload=False)
        if rf.http_url:
            jobs.append(_job(False, storage.download_url, rf.http_url, target, rf.identity))
            continue
        container = _container(rf, auto_storage)
        target.mkdir(parents=True, exist_ok=True)
        try:
            names = storage.list_blob_names(container, rf.blob_prefix)
        except storage.StorageFailure as exc:
            raise _storage_error(exc, upload=False) from None
        except node_identity.IdentityUnavailable as exc:
            raise _identity_error(exc, upload=False) from None
        jobs.extend(_job(False, storage.download_blob, container, name, target) for name in names)
    return jobs, modes


def lists_containers(files: tuple[ResourceFile, ...]) -> bool:
    """Whether planning these downloads makes network calls (container listings)."""
    return any(not rf.http_url for rf in files)


def _container(rf: ResourceFile, auto_storage: storage.AutoStorage | None) -> Any:
    if rf.storage_container_url:
        try:
            return storage.container_from_url(rf.storage_container_url, rf.identity)
        except ValueError:
            raise TransferError("BlobDownloadMiscError", "invalid storageContainerUrl") from None
    if auto_storage is None:
        raise TransferError("AutoStorageNotConfigured", "No storage account is linked to this Batch account")
    return auto_storage.container(rf.auto_storage_container_name or "")


def apply_modes(modes: list[tuple[Path, str | None]]) -> None:
    """chmod the downloaded files (every regular file under a directory target); symlinks are skipped."""
    for path, mode in modes:
        if mode is None:
            continue
        bits = int(mode, 8)
        if path.is_dir() and not path.is_symlink():
            for root, _dirs, names in os.walk(path):
                for name in names:
                    _chmod_regular(os.path.join(root, name), bits)
        else:
            _chmod_regular(str(path), bits)


def _chmod_regular(path: str, bits: int) -> None:
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.chmod(path, bits)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------- output files


def _has_magic(part: str) -> bool:
    return any(ch in part for ch in "*?[")


def _segment_matches(pattern: str, name: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False  # as glob: wildcards do not match hidden names
    return fnmatch.fnmatchcase(name, pattern)


@functools.lru_cache(maxsize=4096)
def _path_matches(patterns: tuple[str, ...], names: tuple[str, ...]) -> bool:
    if not patterns:
        return not names
    head, rest = patterns[0], patterns[1:]
    if head == "**":
        if _path_matches(rest, names):
            return True
        return bool(names) and not names[0].startswith(".") and _path_matches(patterns, names[1:])
    return bool(names) and _segment_matches(head, names[0]) and _path_matches(rest, names[1:])


def _regular_file(path: Path, task_dir: Path) -> Path | None:
    """``path`` itself if a regular file, its target if a symlink to a regular file in ``task_dir``."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            return path
        if not stat.S_ISLNK(st.st_mode):
            return None
        target = Path(os.path.realpath(path))
        if _inside(task_dir, target) and stat.S_ISREG(os.lstat(target).st_mode):
            return target
    except OSError:
        pass
    return None


def _static_base(static: list[str], wd: Path, task_dir: Path) -> Path | None:
    """Follow the static part of a pattern from ``wd`` without traversing a symlinked directory."""
    cur = wd
    root = os.path.normpath(task_dir)
    for i, part in enumerate(static):
        if part in ("", "."):
            continue
        cur = cur.parent if part == ".." else cur / part
        norm = os.path.normpath(cur)
        if norm != root and not norm.startswith(root + os.sep):
            return None
        if i < len(static) - 1 and part != ".." and (cur.is_symlink() or not cur.is_dir()):
            return None
    return cur


def match_pattern(
    pattern: str, wd: Path, task_dir: Path, cancel: threading.Event | None = None
) -> list[tuple[Path, str]]:
    """Files matching ``pattern`` as (file to read, name relative to the pattern's static base).

    See the module docstring for symlinks; raises :class:`TransferCancelled` when ``cancel`` is set.
    """
    parts = PurePosixPath(pattern.replace("\\", "/")).parts
    static: list[str] = []
    for part in parts:
        if _has_magic(part):
            break
        static.append(part)
    base = _static_base(static, wd, task_dir)
    if base is None:
        return []
    rest = tuple(parts[len(static) :])
    if not rest:
        found = _regular_file(base, task_dir)
        return [(found, base.name)] if found is not None else []
    if base.is_symlink() or not base.is_dir():
        return []
    return _walk(base, rest, task_dir, cancel)


def _walk(
    base: Path, rest: tuple[str, ...], task_dir: Path, cancel: threading.Event | None
) -> list[tuple[Path, str]]:
    max_depth = None if "**" in rest else len(rest) - 1
    matches: list[tuple[Path, str]] = []
    for root, dirs, names in os.walk(base, followlinks=False):
        if cancel is not None and cancel.is_set():
            raise TransferCancelled()
        rel_root = os.path.relpath(root, base)
        prefix: tuple[str, ...] = () if rel_root == "." else tuple(rel_root.split(os.sep))
        if max_depth is not None and len(prefix) >= max_depth:
            dirs.clear()
        dirs.sort()
        for name in sorted(names):
            rel = (*prefix, name)
            if not _path_matches(rest, rel):
                continue
            found = _regular_file(Path(root, name), task_dir)
            if found is not None:
                matches.append((found, "/".join(rel)))
    return matches


def walks(outputs: tuple[OutputFile, ...]) -> bool:
    """Whether matching these patterns walks directories (a wildcard in some pattern)."""
    return any(_has_magic(out.file_pattern) for out in outputs)


def _blob_name(out: OutputFile, rel: str, wildcard: bool) -> str:
    if wildcard:
        return f"{out.path.rstrip('/')}/{rel}" if out.path else rel
    return out.path or rel


def plan_uploads(
    outputs: tuple[OutputFile, ...],
    succeeded: bool,
    wd: Path,
    task_dir: Path,
    cancel: threading.Event | None = None,
) -> list[Job]:
    """The upload jobs of the output files whose condition holds (walks the task directory)."""
    jobs: list[Job] = []
    for out in outputs:
        if out.condition is UploadCondition.TASK_SUCCESS and not succeeded:
            continue
        if out.condition is UploadCondition.TASK_FAILURE and succeeded:
            continue
        files = match_pattern(out.file_pattern, wd, task_dir, cancel)
        if not files:
            continue
        _check_identity(out.identity, upload=True)
        wildcard = any(_has_magic(p) for p in PurePosixPath(out.file_pattern).parts)
        if not storage.is_container_url(out.container_url):
            raise TransferError("FileUploadMiscError", "invalid output container URL")
        for path, rel in files:
            name = _blob_name(out, rel, wildcard)
            jobs.append(_job(True, storage.upload_file, out.container_url, name, path, out.identity))
    return jobs
