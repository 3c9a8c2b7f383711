"""A result cache across jobs: an unchanged file is never recomputed, a changed one always is.

No SDK here: every Storage call goes through :mod:`runner.storage`.

Contracts:

* **Key.** A file's key is the SHA-256 of (:data:`KEY_FORMAT`, the input's content
  SHA-256, its node name, the :class:`ResultShape` of the job: the node code's hash
  (``nodetask.pyz`` is named by its content hash) or the ``--command`` template, and
  ``--numwords``). The node name is in it because result names are made from it
  (``<stem>_OUTPUT<ext>``) and a command sees it; the folder is not (a moved file hits).
  A changed input (same name, new content) has another key: a miss by construction.
* **Entry.** The blobs ``cache/<key>/<name>`` in the output container, one per result
  blob the file's task wrote under ``<job-id>/<file-id>/<name>``. Each carries metadata
  recorded when it was written: ``files`` (how many blobs the entry has), ``size`` and
  ``md5`` (base64 of its Content-MD5, which Storage keeps with the blob and which any
  rewrite of the blob replaces). Entries are written once (``If-None-Match: *``), by
  server-side copy, and never changed; ``runner clean JOB`` (which deletes ``<job-id>/``)
  leaves them; ``runner cache prune`` deletes them.
* **Valid.** Every blob of the entry is listed with its recorded size and MD5, their
  number is ``files``, and no copy is unfinished. Anything else (a blob missing,
  truncated, rewritten; a half-written entry) is *corrupt*: a miss, never trusted; the
  file runs and its result replaces the entry.
* **Lookup** is one listing of ``cache/`` (one request per 5,000 blobs), never a request
  per file. **Reuse** copies a hit's blobs server-side to ``<job-id>/<file-id>/``, then
  one listing of ``<job-id>/`` checks every copy's size and MD5 against the entry
  before any task is added; a file whose copy does not check out runs (its copies are
  deleted first).
* **Publish**, after the job's results are collected: each file whose task succeeded
  and whose key has no valid entry gets one, copied from ``<job-id>/<file-id>/``. A
  result blob without a Content-MD5 (uploaded in blocks: over a few MB) could never be
  verified, so such a file gets no entry (it runs again next time).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from runner.batch_types import TaskInfo, TaskState
from runner.errors import UsageError
from runner.inputs import InputFile
from runner.manifest import Manifest
from runner.results import JobResults, TaskOutcome
from runner.storage import BlobEntry, CopyItem, Storage

log = logging.getLogger(__name__)

CACHE_PREFIX = "cache/"
#: Part of every key: bump it when what an entry holds changes meaning.
KEY_FORMAT = 1
_CHUNK = 4 * 1024 * 1024
_KEY = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ResultShape:
    """What, besides the input file, determines a file's results."""

    #: ``nodetask:<sha256 of nodetask.pyz>`` or ``command:<template>``.
    code: str
    numwords: int

    @classmethod
    def of(
        cls, *, code_sha256: str | None, command: str | None, numwords: int, packed: bool = False
    ) -> ResultShape:
        """``packed``: a --command run packs files (the command sees another path for its input)."""
        if command is not None:
            return cls(f"command{'-packed' if packed else ''}:{command}", numwords)
        if not code_sha256:
            raise ValueError("the node code's hash is needed without --command")
        return cls(f"nodetask:{code_sha256}", numwords)


@dataclass(frozen=True)
class CacheFile:
    """A file of the job as the cache sees it."""

    file_id: str
    path: Path
    node_name: str


def content_sha256(path: Path) -> str:
    """Hex SHA-256 of a local file; an unreadable file is a :class:`UsageError` naming it."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return digest.hexdigest()


def file_key(content: str, node_name: str, shape: ResultShape) -> str:
    """The key of one file (hex SHA-256): see the module's contract."""
    parts = [KEY_FORMAT, content, node_name, shape.code, shape.numwords]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=True).encode("ascii")).hexdigest()


def keys_for(files: Iterable[CacheFile], shape: ResultShape) -> dict[str, str]:
    """``{file id: key}``; inputs are hashed in a few threads (hashlib releases the GIL)."""
    listed = list(files)
    with ThreadPoolExecutor(max_workers=4) as pool:
        contents = list(pool.map(lambda f: content_sha256(f.path), listed))
    return {f.file_id: file_key(c, f.node_name, shape) for f, c in zip(listed, contents, strict=True)}


# -- entries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryBlob:
    """One blob of an entry: its name below ``cache/<key>/``, as listed."""

    name: str
    size: int
    md5: bytes | None


@dataclass(frozen=True)
class Entry:
    key: str
    blobs: tuple[EntryBlob, ...]
    created: datetime | None
    valid: bool

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs)

    def blob_names(self) -> list[str]:
        return [f"{CACHE_PREFIX}{self.key}/{b.name}" for b in self.blobs]


def _b64(md5: bytes) -> str:
    return base64.b64encode(md5).decode("ascii")


def _checks_out(blob: BlobEntry, count: int) -> bool:
    meta = blob.metadata
    return (
        blob.md5 is not None
        and blob.copy_status in (None, "success")
        and meta.get("files") == str(count)
        and meta.get("size") == str(blob.size)
        and meta.get("md5") == _b64(blob.md5)
    )


def _entry(key: str, listed: list[BlobEntry]) -> Entry:
    blobs = tuple(EntryBlob(b.name.split("/", 2)[2], b.size, b.md5) for b in listed)
    times = [b.last_modified for b in listed if b.last_modified is not None]
    valid = bool(listed) and all(_checks_out(b, len(listed)) for b in listed)
    return Entry(key, blobs, min(times) if times else None, valid)


def read_index(storage: Storage, container: str) -> dict[str, Entry]:
    """Every entry of the cache, valid or not, by key: ONE listing of ``cache/``."""
    grouped: dict[str, list[BlobEntry]] = {}
    for blob in storage.list_entries(container, CACHE_PREFIX):
        parts = blob.name.split("/", 2)
        if len(parts) == 3 and _KEY.match(parts[1]) and parts[2]:
            grouped.setdefault(parts[1], []).append(blob)
        else:
            log.debug("not a cache entry blob, ignored: %s", blob.name)
    return {key: _entry(key, listed) for key, listed in grouped.items()}


# -- reuse ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reuse:
    """What the lookup decided: ``hits`` (file id -> entry; their results are in place and
    verified), ``misses`` (file ids to run, in order) and how many wanted entries were corrupt."""

    hits: dict[str, Entry]
    misses: list[str]
    corrupt: int


def partition(keys: Mapping[str, str], index: Mapping[str, Entry]) -> Reuse:
    """Split the files by whether their key has a valid entry (nothing copied yet)."""
    hits = {fid: index[key] for fid, key in keys.items() if key in index and index[key].valid}
    corrupt = len({key for key in keys.values() if key in index and not index[key].valid})
    return Reuse(hits, [fid for fid in keys if fid not in hits], corrupt)


def restore(storage: Storage, container: str, job_id: str, hits: Mapping[str, Entry]) -> set[str]:
    """Copy every hit's blobs to ``<job-id>/<file-id>/`` and verify them (one listing of
    ``<job-id>/``); return the file ids whose results are in place. The others' copies are
    deleted: they must run."""
    items = [
        CopyItem(f"{CACHE_PREFIX}{entry.key}/{b.name}", f"{job_id}/{fid}/{b.name}")
        for fid, entry in hits.items()
        for b in entry.blobs
    ]
    failed = storage.copy_blobs(container, items)
    listed: dict[str, list[BlobEntry]] = {}
    for blob in storage.list_entries(container, f"{job_id}/"):
        listed.setdefault(blob.name.split("/", 2)[1], []).append(blob)
    good, bad = set(), []
    for fid, entry in hits.items():
        there = {b.name.split("/", 2)[2]: b for b in listed.get(fid, [])}
        want = {b.name: b for b in entry.blobs}
        ok = there.keys() == want.keys() and all(
            there[n].size == w.size and there[n].md5 == w.md5 and f"{job_id}/{fid}/{n}" not in failed
            for n, w in want.items()
        )
        if ok:
            good.add(fid)
        else:
            log.warning("cached results of file %s did not check out after the copy: it runs", fid)
            bad += [b.name for b in listed.get(fid, [])]
    if bad:
        storage.delete_names(container, bad)
    return good


def reuse(storage: Storage, container: str, job_id: str, keys: Mapping[str, str]) -> Reuse:
    """Look the keys up (one listing), put the hits' results in place and verify them."""
    found = partition(keys, read_index(storage, container))
    if not found.hits:
        return found
    good = restore(storage, container, job_id, found.hits)
    hits = {fid: e for fid, e in found.hits.items() if fid in good}
    return Reuse(hits, [fid for fid in keys if fid not in hits], found.corrupt)


# -- publish ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    written: int
    already: int
    unverifiable: int


def publish(storage: Storage, container: str, job_id: str, succeeded: Mapping[str, str]) -> Published:
    """Write an entry for each ``{file id: key}`` (files whose task succeeded) whose key has
    no valid entry, by server-side copy of ``<job-id>/<file-id>/*``; corrupt entries of
    those keys are deleted first. One listing of ``cache/`` and one of ``<job-id>/``."""
    index = read_index(storage, container)
    outputs: dict[str, list[BlobEntry]] = {}
    for blob in storage.list_entries(container, f"{job_id}/"):
        parts = blob.name.split("/", 2)
        if len(parts) == 3 and parts[2]:
            outputs.setdefault(parts[1], []).append(blob)
    items: list[CopyItem] = []
    stale: list[str] = []
    seen: set[str] = set()
    already = unverifiable = 0
    for fid, key in succeeded.items():
        entry = index.get(key)
        if (entry is not None and entry.valid) or key in seen:
            already += 1
            continue
        blobs = outputs.get(fid, [])
        if not blobs or any(b.md5 is None for b in blobs):
            unverifiable += 1
            continue
        seen.add(key)
        if entry is not None:
            stale += entry.blob_names()
        items += [_entry_copy(b.name, key, len(blobs), b.size, b.md5 or b"") for b in blobs]
    if stale:
        storage.delete_names(container, stale)
    storage.copy_blobs(container, items, if_missing=True)
    return Published(len(seen), already, unverifiable)


def _entry_copy(source: str, key: str, count: int, size: int, md5: bytes) -> CopyItem:
    """The copy of one result blob into the entry of ``key``, with the metadata that verifies it."""
    name = source.split("/", 2)[2]
    meta = {"files": str(count), "size": str(size), "md5": _b64(md5)}
    return CopyItem(source, f"{CACHE_PREFIX}{key}/{name}", meta)


# -- stats and prune --------------------------------------------------------------------


@dataclass(frozen=True)
class CacheStats:
    entries: int
    corrupt: int
    blobs: int
    bytes: int
    oldest: datetime | None


def stats(storage: Storage, container: str) -> CacheStats:
    """Entries (valid ones), corrupt ones, blobs, bytes and the oldest entry's time: one listing."""
    index = read_index(storage, container).values()
    times = [e.created for e in index if e.created is not None]
    return CacheStats(
        entries=sum(e.valid for e in index),
        corrupt=sum(not e.valid for e in index),
        blobs=sum(len(e.blobs) for e in index),
        bytes=sum(e.size for e in index),
        oldest=min(times) if times else None,
    )


@dataclass(frozen=True)
class Pruned:
    entries: int
    blobs: int
    bytes: int


def prune(storage: Storage, container: str, older_than: timedelta, now: datetime) -> Pruned:
    """Delete every entry (valid or corrupt) written before ``now - older_than``."""
    cutoff = now - older_than
    old = [e for e in read_index(storage, container).values() if e.created is not None and e.created < cutoff]
    names = [n for e in old for n in e.blob_names()]
    storage.delete_names(container, names)
    return Pruned(len(old), len(names), sum(e.size for e in old))


_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+)\s*([wdhms])", re.ASCII)
_MAX_DURATION = timedelta(days=36500)


def parse_duration(text: str, option: str = "--older-than") -> timedelta:
    """``30d``, ``12h``, ``1d12h``, ``90m``, ``2w``, ``45s``: a positive duration, else a
    :class:`UsageError` (exit 2) naming ``option``."""
    compact = text.strip().lower()
    pieces = _DURATION.findall(compact)
    if not compact or _DURATION.sub("", compact).strip() or not pieces:
        raise UsageError(
            f"{option}: {text!r} is not a duration",
            hint="write a number and a unit: 30d, 12h, 1d12h, 90m, 2w (w d h m s)",
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in pieces)
    if seconds <= 0:
        raise UsageError(f"{option} must be positive (got {text!r})")
    if seconds > _MAX_DURATION.total_seconds():
        raise UsageError(f"{option} {text!r} is more than 100 years")
    return timedelta(seconds=seconds)


# -- one submission ---------------------------------------------------------------------


@dataclass(frozen=True)
class JobCache:
    """The cache's part in one submission: every file's key, and the files served from the cache."""

    keys: dict[str, str]
    cached: frozenset[str]


def is_reserved_job_id(job_id: str) -> bool:
    """A job named like the cache prefix would write into the cache (and ``clean`` delete it);
    Batch ids are case-insensitive, so every case is reserved."""
    return job_id.lower() == CACHE_PREFIX.rstrip("/")


def before_tasks(
    storage: Storage,
    container: str,
    manifest: Manifest,
    inputs: list[InputFile],
    shape: ResultShape,
    say: Callable[[str], None],
    *,
    lookup: bool = True,
) -> tuple[Manifest, JobCache]:
    """Key every file; with ``lookup``, reuse the valid entries (results put in place and
    verified: :func:`reuse`) and return the manifest with those files as ``cached``.
    ``inputs`` are in the order of ``manifest.tasks``."""
    files = [CacheFile(t.task_id, i.path, t.node_name) for t, i in zip(manifest.tasks, inputs, strict=True)]
    keys = keys_for(files, shape)
    if not lookup:
        _refuse_stale(storage, container, manifest, keys)
        return manifest, JobCache(keys, frozenset(manifest.cached))
    found = reuse(storage, container, manifest.job_id, keys)
    say(f"{len(found.hits):,} of {len(keys):,} files from cache, {len(found.misses):,} to run")
    if found.corrupt:
        say(f"{found.corrupt:,} cache entries did not check out (corrupt or incomplete): recomputed")
    cached = tuple(sorted(found.hits, key=_numeric))
    return replace(manifest, cached=cached), JobCache(keys, frozenset(cached))


def _refuse_stale(storage: Storage, container: str, manifest: Manifest, keys: Mapping[str, str]) -> None:
    """On resume: every file the job took from the cache must still have that result, i.e. a
    valid entry for its key *now* holding what is under ``<job-id>/<file-id>/``. Otherwise
    its input changed since (or the entry was pruned): a :class:`UsageError` naming them."""
    if not manifest.cached:
        return
    index = read_index(storage, container)
    there: dict[str, dict[str, bytes | None]] = {}
    for blob in storage.list_entries(container, f"{manifest.job_id}/"):
        parts = blob.name.split("/", 2)
        if len(parts) == 3:
            there.setdefault(parts[1], {})[parts[2]] = blob.md5
    stale = []
    for fid in manifest.cached:
        entry = index.get(keys.get(fid, ""))
        if entry is None or not entry.valid or {b.name: b.md5 for b in entry.blobs} != there.get(fid):
            stale.append(manifest.by_task[fid].input if fid in manifest.by_task else fid)
    if stale:
        names = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise UsageError(
            f"{len(stale)} input(s) changed since job {manifest.job_id} took them from the cache: {names}",
            hint="their results are of the old content: submit the changed files under a new --job-id",
        )


def _numeric(file_id: str) -> tuple[int, str]:
    return (int(file_id), "") if file_id.isdigit() else (0, file_id)


def cached_states(manifest: Manifest) -> dict[str, TaskInfo]:
    """What the results see of a cached file: a task that completed and succeeded, run 0 times."""
    by_task = manifest.by_task
    return {
        fid: TaskInfo(fid, by_task[fid].input, TaskState.COMPLETED, 0, "success", None, None, None, 0)
        for fid in manifest.cached
        if fid in by_task
    }


def after_collect(
    storage: Storage, container: str, job_id: str, cache: JobCache, results: JobResults
) -> Published:
    """Publish the results of every file that ran here and succeeded (not the cached ones)."""
    succeeded = {
        r.task_id: cache.keys[r.task_id]
        for r in results.files
        if r.outcome is TaskOutcome.SUCCEEDED and r.task_id in cache.keys and r.task_id not in cache.cached
    }
    if not succeeded:
        return Published(0, 0, 0)
    return publish(storage, container, job_id, succeeded)
