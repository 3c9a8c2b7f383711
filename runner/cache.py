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
* **Merged result.** Its key (:func:`merge_key`) is made of the files' keys in file order,
  the result shape, the merge group size and ``--allow-failures``: what determines the
  merged counts byte for byte. Its entry is ``cache/<key>/corpus_*``, written like a file's.
* **Bundle.** The merged entry also holds ``results.tar``, every file's results (members
  ``<file key>/<name>``), and ``results.keys``, its member list (name, size and MD5 of each
  member: :mod:`runner.cache_bundle`); both count in its ``files``. A corpus submitted again
  unchanged is found with one listing of ``cache/<merged key>/`` and its results come from
  three blobs and that list.
* **Held in a bundle.** A file whose results are members of the bundle its job writes gets no
  entry of its own (two uploads per file were most of a first run's cost): the bundle *is* its
  entry. A lookup finds such a key in the member lists of the :data:`BUNDLES_TRIED` newest
  bundles (an :class:`Entry` with :attr:`Entry.bundle`); a key in an older bundle only is a miss
  (computed again, never wrong). When a merge must read such a file's counts as a blob (a full
  merge over cached files, or the counts a delta merge subtracts), the runner first writes the
  file's own entry from the bundle (:func:`materialize`, MD5 checked), so merges read cached
  counts in place as ever. Files get entries of their own whenever no bundle is written (the
  merge failed, ``--no-aggregate``, a bundle over :data:`~runner.cache_bundle.MAX_BUNDLE`).
* **Lookup** is otherwise one listing of ``cache/`` (one request per 5,000 blobs) and at most
  :data:`BUNDLES_TRIED` member lists, never a request per file. Nothing is copied: a hit's
  results stay in its entry or bundle. The merges read a cached
  file's counts there (their resource files name ``cache/<key>/<name>``), and the results
  are downloaded from the entries (:func:`sources`), each blob checked against the size and
  MD5 the listing gave (:class:`~runner.storage.CorruptDownload`: the entry is deleted and
  the error says to submit again). The job records every key in its manifest
  (``cache_keys``, ``merge_key``, ``cached_merge``), so ``results``, resume and ``retry``
  find the same entries (a bundle-held one in any bundle that holds it). When every file and
  the merged result hit, the job runs no task:
  its Batch job is created (so ``status``, ``results``, ``jobs`` and ``clean`` know it) and
  terminated at once (``AllTasksComplete``).
* **Publish**, in :func:`runner.submit.collect` (``submit``, ``results`` of a ``--no-wait``
  job, ``retry``): the merged result, when the merge ran and every file succeeded, gets its
  entry and bundle; each file that ran and succeeded, is not held in that bundle, and whose
  key has no valid entry gets one, copied from
  ``<job-id>/<id>/`` (a bundled pack's files, whose results are members of one results tar,
  :mod:`runner.pack_tars`: uploaded from the downloaded files, with their MD5, the same entry
  blobs a copy makes). A result blob without a Content-MD5 (uploaded in blocks: over a few MB)
  could never be verified, so such a file gets no entry (it runs again next time).
* **Stats and prune** count a file held in a bundle as one entry; pruning a merged entry
  removes the results its bundle holds.
* An entry pruned between a submission and its merge or its download fails that job with
  a :class:`RemoteError` that says to submit again (nothing is recomputed silently).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from weakref import WeakKeyDictionary

from nodetask.errors import EXIT_BAD_INPUT
from runner import cache_bundle, pack_tars
from runner.batch_types import TaskInfo, TaskState
from runner.errors import RemoteError, RunnerError, UsageError
from runner.inputs import InputFile
from runner.manifest import Manifest
from runner.results import JobResults, TaskOutcome, local_name, local_names
from runner.storage import BlobEntry, CopyItem, CorruptDownload, Storage
from runner.tasks import MERGE_TASK_ID, report_names

log = logging.getLogger(__name__)

CACHE_PREFIX = "cache/"
#: Part of every key: bump it when what an entry holds changes meaning.
KEY_FORMAT = 2
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
    #: Held in this bundle (a merged entry's, :mod:`runner.cache_bundle`): ``blobs`` are its
    #: members ``<key>/<name>``, as its member list gives them, not blobs of their own.
    bundle: cache_bundle.Bundle | None = None

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs)

    def blob_names(self) -> list[str]:
        return [] if self.bundle else [f"{CACHE_PREFIX}{self.key}/{b.name}" for b in self.blobs]


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


def read_entry(storage: Storage, container: str, key: str) -> Entry | None:
    """The entry of one key (valid or not), ``None`` when it has no blob: one listing of its prefix."""
    listed = storage.list_entries(container, f"{CACHE_PREFIX}{key}/")
    return _entry(key, listed) if listed else None


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


def merge_key(file_keys: Sequence[str], shape: ResultShape, group_size: int, allow_failures: bool) -> str:
    """The key of a job's merged result: its files' keys *in file order* (the merged counts list
    the inputs in the order the merges read them), the result shape, how the merges are grouped
    and ``--allow-failures`` (``nodetask merge --allow-missing`` writes another document)."""
    parts = [KEY_FORMAT, "merge", list(file_keys), shape.code, shape.numwords, group_size, allow_failures]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=True).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Reuse:
    """What the lookup decided: ``hits`` (file id -> its valid entry), ``misses`` (file ids to
    run, in order) and how many wanted entries were corrupt. Nothing is copied."""

    hits: dict[str, Entry]
    misses: list[str]
    corrupt: int


def partition(keys: Mapping[str, str], index: Mapping[str, Entry]) -> Reuse:
    """Split the files by whether their key has a valid entry."""
    hits = {fid: index[key] for fid, key in keys.items() if key in index and index[key].valid}
    corrupt = len({key for key in keys.values() if key in index and not index[key].valid})
    return Reuse(hits, [fid for fid in keys if fid not in hits], corrupt)


@dataclass(frozen=True)
class CachedBlob:
    """A result blob read from an entry (``source``, under ``cache/<key>/``) in place of
    ``<job-id>/<id>/<name>``; ``size`` and ``md5`` are what the download must get."""

    source: str
    name: str
    size: int
    md5: bytes | None
    #: Read as this member of ``bundle`` (:mod:`runner.cache_bundle`), not as a blob.
    member: str | None = None
    bundle: cache_bundle.Bundle | None = None


def _blobs_of(entry: Entry) -> list[CachedBlob]:
    return [
        CachedBlob(f"{CACHE_PREFIX}{entry.key}/{b.name}", b.name, b.size, b.md5)
        for b in entry.blobs
        if b.name not in (cache_bundle.BUNDLE_NAME, cache_bundle.KEYS_NAME)
    ]


def _bundled(entry: Entry, bundle: cache_bundle.Bundle) -> list[CachedBlob]:
    """A file's results (named as its entry lists them) read from the merged result's bundle."""
    return [
        CachedBlob(bundle.blob, b.name, b.size, b.md5, f"{entry.key}/{b.name}", bundle) for b in entry.blobs
    ]


def sources(
    storage: Storage, container: str, manifest: Manifest, index: Mapping[str, Entry] | None = None
) -> dict[str, list[CachedBlob]]:
    """Where the job's cached results are: ``{file id or "merge": blobs}`` for every file in
    ``manifest.cached`` that has a recorded key, and the merged result when it came from the
    cache. ``index`` (one listing of ``cache/``) is read when not given and something is cached.
    An entry gone or corrupt since the job took it is a :class:`RemoteError` naming the inputs."""
    wanted = {fid: manifest.cache_keys[fid] for fid in manifest.cached if fid in manifest.cache_keys}
    if manifest.cached_merge and manifest.merge_key:
        wanted[MERGE_TASK_ID] = manifest.merge_key
    if not wanted:
        return {}
    whole = _from_bundle(storage, container, manifest, index)
    if whole is not None:
        return whole
    if index is None or len(index) == 1:  # none, or only the merged entry (the whole-job lookup)
        index = read_index(storage, container)
        index.update(held_in_bundles(storage, container, index, _without_entry(index, wanted.values()), None))
    out, gone = {}, []
    files = {k for f, k in wanted.items() if f != MERGE_TASK_ID and index.get(k) and not index[k].bundle}
    covering = _covering(storage, container, index, files)
    for fid, key in wanted.items():
        entry = index.get(key)
        bundle = entry.bundle if entry is not None and entry.bundle else covering.get(key)
        if entry is None or not entry.valid:
            gone.append(manifest.by_task[fid].input if fid in manifest.by_task else "(corpus)")
        else:
            out[fid] = _blobs_of(entry) if bundle is None or fid == MERGE_TASK_ID else _bundled(entry, bundle)
    if gone:
        names = ", ".join(gone[:5]) + (f" and {len(gone) - 5} more" if len(gone) > 5 else "")
        raise RemoteError(
            f"{len(gone)} result(s) job {manifest.job_id} took from the cache are no longer there "
            f"(pruned or corrupt since): {names}",
            hint="submit the same inputs under a new --job-id: they are computed again",
        )
    return out


def drop_corrupt(storage: Storage, container: str, manifest: Manifest, err: CorruptDownload) -> RunnerError:
    """A cached result whose bytes did not check out when downloaded: its entry is deleted (the
    next submission computes it again) and the error to raise says so."""
    if not err.blob_name.startswith(CACHE_PREFIX):
        return err
    key = err.blob_name.split("/", 2)[1]
    storage.delete_prefix(container, f"{CACHE_PREFIX}{key}/")
    log.warning("cache entry %s did not check out when downloaded: deleted", key)
    return RemoteError(
        f"a result job {manifest.job_id} took from the cache did not check out when downloaded "
        "(its bytes are not those recorded): that cache entry is deleted",
        hint="submit the same command again under a new --job-id: the result is computed again",
    )


def _from_bundle(
    storage: Storage, container: str, manifest: Manifest, index: Mapping[str, Entry] | None
) -> dict[str, list[CachedBlob]] | None:
    """When the job takes every file and the corpus from the cache and the merged entry has a
    bundle: the corpus blobs, and every file's results as the bundle's members (named by its
    member list, MD5 checked). ``None`` otherwise (then the files come from their entries)."""
    key = manifest.merge_key
    if not manifest.cached_merge or key is None or len(manifest.cached) != len(manifest.tasks):
        return None
    entry = index.get(key) if index is not None else None
    entry = entry if entry is not None else read_entry(storage, container, key)
    bundle = entry_bundle(entry) if entry is not None else None
    members = _members(storage, container, entry) if entry is not None else None
    if entry is None or bundle is None or members is None:
        return None
    by_key: dict[str, list[cache_bundle.Member]] = {}
    for member in members:
        by_key.setdefault(member.key, []).append(member)
    out = {MERGE_TASK_ID: _blobs_of(entry)}
    for fid in manifest.cached:
        held = by_key.get(manifest.cache_keys.get(fid, ""), [])
        if not held:
            return None
        out[fid] = [CachedBlob(bundle.blob, m.result, m.size, m.md5, m.name, bundle) for m in held]
    return out


def _keys_blob(entry: Entry) -> EntryBlob | None:
    return next((b for b in entry.blobs if b.name == cache_bundle.KEYS_NAME), None)


def _members(storage: Storage, container: str, entry: Entry) -> list[cache_bundle.Member] | None:
    """The members (``<file key>/<name>``, size, MD5) of an entry's bundle, from its member list
    (``results.keys``, MD5 checked); ``None`` when it has none or it does not check out."""
    listed = _keys_blob(entry)
    if not entry.valid or listed is None or listed.md5 is None:
        return None
    blob = f"{CACHE_PREFIX}{entry.key}/{listed.name}"
    memo = _MEMBER_LISTS.setdefault(storage, {})
    known = memo.get((container, blob, listed.md5))
    if known is not None:
        return known
    data = storage.try_download_bytes(container, blob)
    if data is None or _md5(data) != listed.md5:
        return None
    members = cache_bundle.parse_members(data)
    if members is None:
        return None
    if len(memo) >= 16:
        memo.clear()
    memo[(container, blob, listed.md5)] = kept = [m for m in members if _KEY.match(m.key)]
    return kept


#: Member lists read through each Storage client (one command), by (container, blob, MD5): an
#: entry is immutable and the MD5 is the one listed, so the lookup, the delta merge and the
#: download of one command read each list once.
_MEMBER_LISTS: WeakKeyDictionary[Storage, dict[tuple[str, str, bytes], list[cache_bundle.Member]]] = (
    WeakKeyDictionary()
)


def bundle_members(storage: Storage, container: str, entry: Entry) -> list[cache_bundle.Member] | None:
    """The members of a merged entry's bundle, read from its member list (one small GET, MD5
    checked); ``None`` when it has none or it does not check out."""
    return _members(storage, container, entry)


def entry_bundle(entry: Entry) -> cache_bundle.Bundle | None:
    found = [b for b in entry.blobs if b.name == cache_bundle.BUNDLE_NAME]
    if not entry.valid or not found:
        return None
    return cache_bundle.Bundle(f"{CACHE_PREFIX}{entry.key}/{found[0].name}", found[0].size, found[0].md5)


#: Fewer hits than this are downloaded per file; more are looked for in the newest bundles.
BUNDLE_MIN_HITS = 20
#: How many of the newest bundles' key lists are read (one small GET each) to cover the hits.
BUNDLES_TRIED = 3


def _covering(
    storage: Storage, container: str, index: Mapping[str, Entry], keys: set[str]
) -> dict[str, cache_bundle.Bundle]:
    """Which hits with entries of their own (file keys) the newest bundles hold too: their
    results are extracted from one download instead of one per blob. Keys no bundle holds are
    absent (downloaded from their own entries)."""
    if len(keys) < BUNDLE_MIN_HITS:
        return {}
    held = held_in_bundles(storage, container, index, keys, BUNDLES_TRIED)
    return {key: e.bundle for key, e in held.items() if e.bundle is not None}


def _newest_bundles(index: Mapping[str, Entry]) -> list[tuple[Entry, cache_bundle.Bundle]]:
    found = [(e, b) for e in index.values() if (b := entry_bundle(e)) is not None]
    found.sort(key=lambda eb: eb[0].created or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
    return found


def held_in_bundles(
    storage: Storage, container: str, index: Mapping[str, Entry], keys: set[str], tried: int | None
) -> dict[str, Entry]:
    """An entry (:attr:`Entry.bundle` set) for each of ``keys`` that one of the ``tried`` newest
    valid bundles of ``index`` holds (all of them with ``None``), the newest first; each bundle's
    member list read once (one small GET, MD5 checked). Keys none holds are absent."""
    out: dict[str, Entry] = {}
    if not keys:
        return out
    for entry, bundle in _newest_bundles(index)[:tried]:
        by_key: dict[str, list[EntryBlob]] = {}
        for m in _members(storage, container, entry) or ():
            if m.key in keys and m.key not in out:
                by_key.setdefault(m.key, []).append(EntryBlob(m.result, m.size, m.md5))
        out.update({k: Entry(k, tuple(b), entry.created, True, bundle) for k, b in by_key.items()})
        if len(out) == len(keys):
            break
    return out


def _without_entry(index: Mapping[str, Entry], keys: Iterable[str]) -> set[str]:
    """The keys that have no entry at all in ``index`` (a corrupt entry is recomputed instead)."""
    return {k for k in keys if k not in index}


def counts_source(manifest: Manifest, file_id: str) -> str | None:
    """The blob a merge reads for a cached file's counts (in its entry, in place), else ``None``."""
    key = manifest.cache_keys.get(file_id) if file_id in set(manifest.cached) else None
    if key is None:
        return None
    return f"{CACHE_PREFIX}{key}/{report_names(manifest.by_task[file_id].node_name)[1]}"


# -- publish ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    written: int
    already: int
    unverifiable: int


def publish(
    storage: Storage,
    container: str,
    job_id: str,
    succeeded: Mapping[str, str],
    bundle_of: tuple[Manifest, Path] | None = None,
    index: Mapping[str, Entry] | None = None,
    local: Mapping[str, list[tuple[str, Path]]] | None = None,
) -> Published:
    """Write an entry for each ``{id: key}`` (files whose task succeeded; ``merge`` for the merged
    result) whose key has no valid entry, by server-side copy of ``<job-id>/<id>/*``; corrupt
    entries of those keys are deleted first. One listing of ``cache/`` and one of ``<job-id>/``.
    With ``bundle_of`` (the job's manifest and where its results were downloaded), the merged
    entry also gets the bundle of every file's results (:mod:`runner.cache_bundle`). ``index``:
    the listing of ``cache/`` the submission read (spares a second one; an entry written since
    by another job is then found by the write itself: it is left alone). ``local``: the files
    of bundled packs (:mod:`runner.pack_tars`: their results are members of a results tar, not
    blobs), each as ``{id: [(result name, downloaded file)]}``; their entries are uploaded from
    those files (each blob with its MD5 and the same metadata a copy gets)."""
    index = read_index(storage, container) if index is None else index
    outputs: dict[str, list[BlobEntry]] = {}
    for blob in storage.list_entries(container, f"{job_id}/"):
        parts = blob.name.split("/", 2)
        if len(parts) == 3 and parts[2]:
            outputs.setdefault(parts[1], []).append(blob)
    local_data = _read_local(job_id, local or {}, outputs)
    items: list[CopyItem] = []
    bundles: dict[str, tuple[bytes, dict[str, str]]] = {}
    stale: list[str] = []
    seen: set[str] = set()
    already = unverifiable = 0
    made = _new_bundle(succeeded, bundle_of, outputs, index)
    held = {m.key for m in cache_bundle.parse_members(made[1]) or ()} if made is not None else set()
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
        if fid != MERGE_TASK_ID and key in held:
            continue  # its results are members of the merged entry's bundle: no entry of its own
        count = len(blobs) + (2 if fid == MERGE_TASK_ID and made is not None else 0)
        items += [_entry_copy(b.name, key, count, b.size, b.md5 or b"") for b in blobs]
        bundled = made if fid == MERGE_TASK_ID else None
        names = (cache_bundle.BUNDLE_NAME, cache_bundle.KEYS_NAME)
        for name, data in zip(names, bundled or (), strict=False):
            meta = {"files": str(count), "size": str(len(data)), "md5": _b64(_md5(data))}
            bundles[f"{CACHE_PREFIX}{key}/{name}"] = (data, meta)
    if stale:
        storage.delete_names(container, stale)
    uploads = {i.dest: (local_data[i.source], i.metadata or {}) for i in items if i.source in local_data}
    storage.copy_blobs(container, [i for i in items if i.source not in local_data], if_missing=True)
    _upload_new(storage, container, uploads)
    for name, (data, meta) in bundles.items():
        try:
            storage.upload_bytes(container, name, data, overwrite=False, metadata=meta)
        except RunnerError:
            if not storage.blob_exists(container, name):  # else: another job wrote it meanwhile
                raise
    return Published(len(seen), already, unverifiable)


def _new_bundle(
    succeeded: Mapping[str, str],
    bundle_of: tuple[Manifest, Path] | None,
    outputs: Mapping[str, list[BlobEntry]],
    index: Mapping[str, Entry],
) -> tuple[bytes, bytes] | None:
    """The bundle and member list of the merged entry this publish writes, if it writes one."""
    key = succeeded.get(MERGE_TASK_ID)
    entry = index.get(key or "")
    if key is None or bundle_of is None or (entry is not None and entry.valid):
        return None
    if not outputs.get(MERGE_TASK_ID):
        return None
    return _bundle(bundle_of[0], bundle_of[1], outputs, index)


def _read_local(
    job_id: str, local: Mapping[str, list[tuple[str, Path]]], outputs: dict[str, list[BlobEntry]]
) -> dict[str, bytes]:
    """The bytes of each local result (by the blob name it stands for), listed in ``outputs``
    as if it were that blob; an id with a file that cannot be read is left out (unverifiable)."""
    data: dict[str, bytes] = {}
    for fid, files in local.items():
        try:
            mine = {f"{job_id}/{fid}/{rest}": path.read_bytes() for rest, path in files}
        except OSError as exc:
            log.info("results of file %s not cached: %s", fid, exc.strerror or exc)
            continue
        data.update(mine)
        outputs[fid] = [BlobEntry(n, len(b), _md5(b), {}, None) for n, b in mine.items()]
    return data


def _upload_new(
    storage: Storage, container: str, uploads: Mapping[str, tuple[bytes, dict[str, str]]]
) -> None:
    """Upload each entry blob that does not exist yet (another job may have written it: left alone)."""

    def one(name: str) -> None:
        data, meta = uploads[name]
        try:
            storage.upload_bytes(container, name, data, overwrite=False, metadata=meta)
        except RunnerError:
            if not storage.blob_exists(container, name):
                raise

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, uploads))


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _bundle(
    manifest: Manifest, dest: Path, outputs: Mapping[str, list[BlobEntry]], index: Mapping[str, Entry]
) -> tuple[bytes, bytes] | None:
    """Every file's results as downloaded to ``dest``, each checked against its blob's MD5 (the
    job's, or its cache entry's when it came from the cache), and the list of its members'
    names (``<file key>/<name>``, one a line); ``None`` when one is missing."""
    names = local_names(manifest)
    members: list[tuple[str, Path, bytes | None]] = []
    seen: set[str] = set()
    for task in manifest.tasks:
        key = manifest.cache_keys.get(task.task_id)
        entry = index.get(key or "")
        listed = outputs.get(task.task_id)
        blobs = [(b.name.split("/", 2)[2], b.md5) for b in listed] if listed else None
        if blobs is None and entry is not None and entry.valid:  # its own entry, or a bundle's members
            blobs = [(b.name, b.md5) for b in entry.blobs]
        if key is None or not blobs:
            return None
        for rest, md5 in blobs:
            rel = local_name(task, rest, False, names.get(task.task_id))
            if f"{key}/{rest}" not in seen:  # two files of one key (same name, same content): once
                seen.add(f"{key}/{rest}")
                members.append((f"{key}/{rest}", dest.joinpath(*rel.parts), md5))
    return cache_bundle.build(members)


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


def _held_keys(storage: Storage, container: str, entries: Iterable[Entry]) -> set[str]:
    """The file keys the valid bundles among ``entries`` hold (each member list read once)."""
    out: set[str] = set()
    for entry in entries:
        if entry_bundle(entry) is not None:
            out.update(m.key for m in _members(storage, container, entry) or ())
    return out


def stats(storage: Storage, container: str) -> CacheStats:
    """Entries (valid ones: a file's results held in a bundle count as one), corrupt ones, blobs,
    bytes and the oldest entry's time: one listing, and each bundle's member list."""
    listed = read_index(storage, container)
    index = listed.values()
    times = [e.created for e in index if e.created is not None]
    held = _held_keys(storage, container, index) - {e.key for e in index if e.valid}
    return CacheStats(
        entries=sum(e.valid for e in index) + len(held),
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
    index = read_index(storage, container)
    old = [e for e in index.values() if e.created is not None and e.created < cutoff]
    old_keys = {e.key for e in old}
    kept = [e for e in index.values() if e.key not in old_keys]
    gone = _held_keys(storage, container, old) - _held_keys(storage, container, kept)
    gone -= {e.key for e in index.values()}  # held, but with an entry of its own: counted as that
    names = [n for e in old for n in e.blob_names()]
    storage.delete_names(container, names)
    return Pruned(len(old) + len(gone), len(names), sum(e.size for e in old))


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
    """The cache's part in one submission: every file's key, the files served from the cache, and
    the listing of ``cache/`` the lookup read (``None`` on resume: nothing was looked up)."""

    keys: dict[str, str]
    cached: frozenset[str]
    index: dict[str, Entry] | None = None


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
    """Key every file (and the merged result); with ``lookup`` (one listing of ``cache/``), return
    the manifest with the files whose key has a valid entry as ``cached`` and, when the merged
    result's key has one, ``cached_merge``. Nothing is copied: the merges read cached counts in
    place and the results are downloaded from the entries. Without ``lookup`` (resume) the keys
    must be those the job recorded. ``inputs`` are in the order of ``manifest.tasks``."""
    files = [CacheFile(t.task_id, i.path, t.node_name) for t, i in zip(manifest.tasks, inputs, strict=True)]
    keys = keys_for(files, shape)
    if not lookup:
        _refuse_stale(manifest, keys)
        return manifest, JobCache(keys, frozenset(manifest.cached))
    merged = None
    if manifest.aggregate:
        order = [keys[t.task_id] for t in manifest.tasks]
        merged = merge_key(order, shape, manifest.merge_group_size, manifest.allow_failures)
        whole = read_entry(storage, container, merged)
        if whole is not None and entry_bundle(whole) is not None and _keys_blob(whole) is not None:
            # The whole job from one entry: its bundle holds every file's results (one listing
            # of cache/<merged key>/, not of the whole cache).
            say(f"{len(keys):,} of {len(keys):,} files from cache (and the corpus result), 0 to run")
            cached = tuple(t.task_id for t in manifest.tasks)
            manifest = replace(manifest, cached=cached, cache_keys=keys, merge_key=merged, cached_merge=True)
            return manifest, JobCache(keys, frozenset(cached), {merged: whole})
    index = read_index(storage, container)
    found = partition(keys, index)
    if found.misses:  # results held only in the newest bundles (what publish writes for packs)
        wanted = _without_entry(index, (keys[fid] for fid in found.misses))
        index.update(held_in_bundles(storage, container, index, wanted, BUNDLES_TRIED))
        found = partition(keys, index)
    cached_merge = merged is not None and merged in index and index[merged].valid
    corpus = " (and the corpus result)" if cached_merge else ""
    say(f"{len(found.hits):,} of {len(keys):,} files from cache{corpus}, {len(found.misses):,} to run")
    corrupt = found.corrupt + int(merged is not None and merged in index and not cached_merge)
    if corrupt:
        say(f"{corrupt:,} cache entries did not check out (corrupt or incomplete): recomputed")
    cached = tuple(sorted(found.hits, key=_numeric))
    manifest = replace(manifest, cached=cached, cache_keys=keys, merge_key=merged, cached_merge=cached_merge)
    return manifest, JobCache(keys, frozenset(cached), index)


def materialize(storage: Storage, container: str, manifest: Manifest, entries: Iterable[Entry]) -> int:
    """Give each bundle-held entry of ``entries`` an entry of its own (its blobs written from its
    bundle's members, MD5 checked, with the metadata that verifies them), so that a merge task
    reads its counts as a blob (:func:`counts_source`). Each bundle is downloaded once; returns
    how many entries were written. A bundle that does not check out is deleted and the
    :class:`RemoteError` raised says to submit again."""
    by_bundle: dict[cache_bundle.Bundle, list[Entry]] = {}
    for entry in entries:
        if entry.bundle is not None:
            by_bundle.setdefault(entry.bundle, []).append(entry)
    uploads: dict[str, tuple[bytes, dict[str, str]]] = {}
    try:
        for bundle, held in by_bundle.items():
            data = cache_bundle.read_members(
                storage, container, bundle, [f"{e.key}/{b.name}" for e in held for b in e.blobs]
            )
            for e in held:
                for b in e.blobs:
                    body = data[f"{e.key}/{b.name}"]
                    if b.md5 is None or _md5(body) != b.md5:
                        raise CorruptDownload(bundle.blob)
                    meta = {"files": str(len(e.blobs)), "size": str(len(body)), "md5": _b64(b.md5)}
                    uploads[f"{CACHE_PREFIX}{e.key}/{b.name}"] = (body, meta)
    except CorruptDownload as err:
        raise drop_corrupt(storage, container, manifest, err) from None
    _upload_new(storage, container, uploads)
    return sum(len(held) for held in by_bundle.values())


def before_merge(storage: Storage, container: str, manifest: Manifest, job_cache: JobCache) -> None:
    """Before the tasks of a job whose merges read cached files' counts (a full merge, not the
    cached corpus nor a delta merge): every cached file held only in a bundle gets its own entry
    (:func:`materialize`), read in place by the merges as today."""
    index = job_cache.index
    if index is None or not manifest.aggregate or manifest.cached_merge or manifest.delta is not None:
        return
    held = [e for fid in manifest.cached if (e := index.get(manifest.cache_keys.get(fid, ""))) and e.bundle]
    if held:
        written = materialize(storage, container, manifest, held)
        log.info("job %s: %d cached result(s) written from bundles for the merges", manifest.job_id, written)


def _refuse_stale(manifest: Manifest, keys: Mapping[str, str]) -> None:
    """On resume: every file the job took from the cache must have the key it had then (its
    input unchanged); otherwise a :class:`UsageError` naming them. A file of a job that recorded
    no key (an older runner) counts as changed: its result cannot be tied to its content."""
    stale = [
        manifest.by_task[fid].input if fid in manifest.by_task else fid
        for fid in manifest.cached
        if manifest.cache_keys.get(fid) != keys.get(fid)
    ]
    if stale:
        names = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise UsageError(
            f"{len(stale)} input(s) changed since job {manifest.job_id} took them from the cache: {names}",
            hint="their results are of the old content: submit the changed files under a new --job-id",
        )


def _numeric(file_id: str) -> tuple[int, str]:
    return (int(file_id), "") if file_id.isdigit() else (0, file_id)


def cached_states(manifest: Manifest) -> dict[str, TaskInfo]:
    """What the results see of a cached file (and of the merged result when it came from the
    cache): a task that completed and succeeded, run 0 times."""
    by_task = manifest.by_task
    out = {
        fid: TaskInfo(fid, by_task[fid].input, TaskState.COMPLETED, 0, "success", None, None, None, 0)
        for fid in manifest.cached
        if fid in by_task
    }
    if manifest.cached_merge:
        out[MERGE_TASK_ID] = TaskInfo(
            MERGE_TASK_ID, "(corpus)", TaskState.COMPLETED, 0, "success", None, None, None, 0
        )
    return out


def _drop_refused_base(storage: Storage, container: str, manifest: Manifest, results: JobResults) -> None:
    """A delta merge (:mod:`runner.delta_merge`) that nodetask refused (exit 2: a count below 0,
    inputs other than the order: its base is not what it claims) deletes that base's entry, so
    the next submission merges in full instead of choosing it again."""
    refused = any(f.task_id == MERGE_TASK_ID and f.exit_code == EXIT_BAD_INPUT for f in results.failures)
    if manifest.delta is None or not refused:
        return
    key = manifest.delta.base.split("/", 2)[1]
    storage.delete_prefix(container, f"{CACHE_PREFIX}{key}/")
    log.warning(
        "the delta merge refused the cached corpus %s it started from (deleted): submit again under "
        "a new --job-id to merge the corpus in full",
        key,
    )


def after_collect(
    storage: Storage,
    container: str,
    manifest: Manifest,
    results: JobResults,
    index: Mapping[str, Entry] | None = None,
) -> Published:
    """Publish the results of every file that ran in this job and succeeded, and the merged result
    when the merge ran and every file succeeded (what the job recorded keys for; cached ones are
    in the cache already)."""
    _drop_refused_base(storage, container, manifest, results)
    keys, cached = manifest.cache_keys, set(manifest.cached)
    succeeded = {
        r.task_id: keys[r.task_id]
        for r in results.files
        if r.outcome is TaskOutcome.SUCCEEDED and r.task_id in keys and r.task_id not in cached
    }
    corpus = results.corpus
    whole = not results.failures and all(r.outcome is TaskOutcome.SUCCEEDED for r in results.files)
    merged = corpus is not None and corpus.outcome is TaskOutcome.SUCCEEDED
    if manifest.merge_key and not manifest.cached_merge and whole and merged:
        succeeded[MERGE_TASK_ID] = manifest.merge_key
    if not succeeded:
        return Published(0, 0, 0)
    bundle_of = (manifest, results.dest) if MERGE_TASK_ID in succeeded else None
    if index is None and bundle_of is not None:  # a later `results`: the cached files' bundles too
        index = read_index(storage, container)
        wanted = _without_entry(index, (keys[fid] for fid in cached if fid in keys))
        index.update(held_in_bundles(storage, container, index, wanted, None))
    local = _bundled_results(manifest, results.dest, succeeded)
    return publish(storage, container, manifest.job_id, succeeded, bundle_of, index, local)


def _bundled_results(manifest: Manifest, dest: Path, ids: Iterable[str]) -> dict[str, list[tuple[str, Path]]]:
    """The downloaded results (result name, local file) of each of ``ids`` that a bundled pack
    ran (:mod:`runner.pack_tars`): a word count's two files, named as the node named them."""
    in_pack = pack_tars.bundled_files(manifest)
    names = local_names(manifest) if in_pack else {}
    by_id = manifest.by_task
    out = {}
    for fid in ids:
        if fid in in_pack:
            task = by_id[fid]
            rests = report_names(task.node_name)
            out[fid] = [(r, dest.joinpath(*local_name(task, r, False, names[fid]).parts)) for r in rests]
    return out
