"""The delta merge: a corpus with few files changed since a cached corpus merges in ONE task.

Counts are additive and every merge keeps full counts (:mod:`nodetask.merge`), so when no merged
result of the cache matches a job exactly (:func:`runner.cache.merge_key`) but one differs in few
files, the job's corpus is that merged result's counts, minus the cached counts of the files that
left or changed, plus the counts of the files that are new or changed: one ``nodetask merge
--base --subtract --order`` task instead of ``merge-1..K`` and ``merge`` over every file.

Contracts:

* **Eligible**: a job with the aggregate, the cache on, no ``--command``, no ``--allow-failures``,
  whose merged result did not hit. No SDK here (Storage through :mod:`runner.storage`).
* **Base**: a valid merged entry of the cache listing (its ``corpus_counts.json``, bundle and
  member list, :mod:`runner.cache_bundle`) whose member list is near the size this job's would
  have. None is read when more files miss the cache than may change; else at most
  :data:`BASES_TRIED` member lists, the closest in size first, then the newest. A file key holds the
  result shape (node code, ``--numwords``), so a base sharing keys with the job has its shape;
  the merge group size only orders the inputs, which ``--order`` sets.
* **Chosen** when the files in and out number at most twice :data:`MAX_CHANGED_SHARE` of the
  job's (a changed file is one in and one out; at least 2) and at most ``--merge-group-size``
  (what one merge task may read within Batch's 1 MB task), at least one file comes in, every
  file going out has a valid cache entry with its counts, and the base's counts (read once,
  MD5 checked) list one input per member key and no ``missing``: the base holds each of its
  keys exactly once. Else today's full merge.
* **Byte for byte** the full merge's result: the order blob (``<job-id>/merge-order.json`` in
  the input container, :func:`write_order`) lists the inputs as the full merge would
  (:func:`full_merge_order`), and nodetask refuses a count, total or input that would go
  below 0 or an order that is not the result's inputs: the task fails, nothing is published.
* The merged result is published under the job's own merge key as a full merge's would be.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from nodetask.merge import CORPUS_COUNTS
from nodetask.results import COUNTS_SUFFIX
from runner import cache, cache_bundle
from runner.cache import CACHE_PREFIX, Entry, EntryBlob, JobCache, bundle_members
from runner.counts_head import load_fields
from runner.manifest import Manifest
from runner.storage import Storage
from runner.tasks import MERGE_TASK_ID, DeltaSources, merge_order_blob, merge_steps, report_names

if TYPE_CHECKING:
    from runner.task_access import TaskAccess

log = logging.getLogger(__name__)

#: At most this share of the job's files may come in or go out for a delta merge.
MAX_CHANGED_SHARE = 0.10
#: How many candidate bases' member lists are read (one small GET each).
BASES_TRIED = 3
#: A candidate's member list is within these factors of the size this job's would have.
_SIZE_BAND = (0.8, 1.25)
_MERGED = frozenset({CORPUS_COUNTS, cache_bundle.BUNDLE_NAME, cache_bundle.KEYS_NAME})


@dataclass(frozen=True)
class _Delta:
    """A base and what the job differs from it by."""

    base: Entry
    add: tuple[str, ...]  #: file ids, in file order
    subtract: tuple[str, ...]  #: blob names of cached counts
    #: The files going out whose results only the base's bundle holds: given entries of their
    #: own (:func:`runner.cache.materialize`) when this delta is chosen.
    held: tuple[Entry, ...] = ()

    @property
    def size(self) -> int:
        return len(self.add) + len(self.subtract)


def full_merge_order(manifest: Manifest) -> list[str]:
    """The ``inputs`` list a full merge of the job writes: each merge task reads its sources'
    ``<id>_counts.json`` sorted by name (:func:`nodetask.merge.collect_inputs`)."""
    by_task = manifest.by_task
    inputs_of: dict[str, list[str]] = {}
    for step in merge_steps(len(manifest.tasks), manifest.merge_group_size):
        ordered = sorted(step.sources, key=lambda tid: f"{tid}{COUNTS_SUFFIX}")
        inputs_of[step.task_id] = [
            name
            for tid in ordered
            for name in ([by_task[tid].node_name] if tid in by_task else inputs_of[tid])
        ]
    return inputs_of.get(MERGE_TASK_ID, [])


def delta_limit(n_files: int, group_size: int) -> int:
    """How many files may come in and go out of a delta merge of ``n_files``: a changed file is
    one in and one out, so twice :data:`MAX_CHANGED_SHARE` of them (at least 2), and no more than
    one merge task may read (``group_size``, within Batch's 1 MB task)."""
    return min(2 * max(1, int(n_files * MAX_CHANGED_SHARE)), group_size)


def _eligible(manifest: Manifest, job_cache: JobCache) -> bool:
    return (
        manifest.aggregate
        and manifest.command is None
        and not manifest.allow_failures
        and not manifest.cached_merge
        and manifest.merge_key is not None
        and job_cache.index is not None
        and len(manifest.tasks) >= 2
    )


def _members_size(manifest: Manifest) -> int:
    """The size of the member list this job's bundle would have (two results per file)."""
    keys = manifest.cache_keys
    seen = {f"{keys[t.task_id]}/{name}" for t in manifest.tasks for name in report_names(t.node_name)}
    return sum(cache_bundle.member_line_size(m) for m in seen)


def _candidates(manifest: Manifest, index: Mapping[str, Entry]) -> list[Entry]:
    """Merged entries near this job's size, at most :data:`BASES_TRIED`: the closest in size first
    (a corpus whose changed files kept their names has exactly the size), then the newest."""
    want = _members_size(manifest)
    low, high = want * _SIZE_BAND[0], want * _SIZE_BAND[1]
    found: list[tuple[int, float, Entry]] = []
    for entry in index.values():
        names = {b.name: b for b in entry.blobs}
        keys = names.get(cache_bundle.KEYS_NAME)
        if entry.valid and names.keys() >= _MERGED and keys is not None and low <= keys.size <= high:
            created = (entry.created or datetime.min.replace(tzinfo=timezone.utc)).timestamp()
            found.append((abs(keys.size - want), -created, entry))
    found.sort(key=lambda c: (c[0], c[1]))
    return [c[2] for c in found[:BASES_TRIED]]


def _delta(
    manifest: Manifest, index: Mapping[str, Entry], base: Entry, members: list[cache_bundle.Member]
) -> _Delta | None:
    """What the job differs from ``base`` (its ``members``) by; ``None`` when a file going out
    has neither a valid entry with its counts nor its results in the base's bundle."""
    counts_of: dict[str, str] = {}
    blobs_of: dict[str, list[EntryBlob]] = {}
    for m in members:
        blobs_of.setdefault(m.key, []).append(EntryBlob(m.result, m.size, m.md5))
        if m.result.endswith(COUNTS_SUFFIX):
            counts_of[m.key] = m.result
    held = set(counts_of)
    add = []
    for task in manifest.tasks:  # each base key stands for one file: a second file of it comes in
        key = manifest.cache_keys[task.task_id]
        if key in held:
            held.discard(key)
        else:
            add.append(task.task_id)
    subtract, in_bundle = [], []
    bundle = cache.entry_bundle(base)
    for key in sorted(held):  # in the base, not in the job: its cached counts go out
        entry = index.get(key)
        if entry is None or not entry.valid or entry.bundle is not None:
            if bundle is None:
                return None
            entry = Entry(key, tuple(blobs_of[key]), base.created, True, bundle)
            in_bundle.append(entry)
        if counts_of[key] not in {b.name for b in entry.blobs}:
            return None
        subtract.append(f"{CACHE_PREFIX}{key}/{counts_of[key]}")
    return _Delta(base, tuple(add), tuple(subtract), tuple(in_bundle))


def _base_holds_each_once(
    storage: Storage, container: str, entry: Entry, members: list[cache_bundle.Member]
) -> bool:
    """The base's counts list one input per file key of its bundle, and nothing missing."""
    listed = next((b for b in entry.blobs if b.name == CORPUS_COUNTS), None)
    data = storage.try_download_bytes(container, f"{CACHE_PREFIX}{entry.key}/{CORPUS_COUNTS}")
    if listed is None or data is None or hashlib.md5(data, usedforsecurity=False).digest() != listed.md5:
        return False
    try:
        fields = load_fields(data.decode("utf-8"), frozenset({"inputs", "missing"}))
    except (UnicodeDecodeError, ValueError):
        return False
    inputs = fields.get("inputs")
    keys = {m.key for m in members}
    return isinstance(inputs, list) and len(inputs) == len(keys) and not fields.get("missing")


def choose(
    storage: Storage, container: str, manifest: Manifest, job_cache: JobCache, say: Callable[[str], None]
) -> Manifest:
    """``manifest`` with a delta merge when a cached corpus qualifies (see the module), else as is."""
    if not _eligible(manifest, job_cache) or job_cache.index is None:
        return manifest
    index = job_cache.index
    limit = delta_limit(len(manifest.tasks), manifest.merge_group_size)
    if len(manifest.tasks) - len(job_cache.cached) > limit // 2:  # too many misses: no read at all
        return manifest
    best: _Delta | None = None
    for entry in _candidates(manifest, index):
        members = bundle_members(storage, container, entry)
        delta = _delta(manifest, index, entry, members) if members is not None else None
        if delta is None or not delta.add or delta.size > limit or (best and best.size <= delta.size):
            continue
        if members is not None and _base_holds_each_once(storage, container, entry, members):
            best = delta
    if best is None:
        return manifest
    if best.held:  # the counts going out become blobs of their own, which the merge reads
        cache.materialize(storage, container, manifest, best.held)
    base = f"{CACHE_PREFIX}{best.base.key}/{CORPUS_COUNTS}"
    sources = DeltaSources(base, best.subtract, merge_order_blob(manifest.job_id))
    say(
        f"corpus: delta merge from a cached corpus ({len(best.add):,} file(s) in, "
        f"{len(best.subtract):,} out): one merge task"
    )
    log.info("job %s: delta merge from cache entry %s", manifest.job_id, best.base.key)
    return replace(manifest, delta=sources, delta_sources=best.add)


def write_order(storage: Storage, container: str, manifest: Manifest) -> None:
    """Write the order blob the delta merge, or the final merge of a job grouped by reads
    (:meth:`runner.manifest.Manifest.merge_plan`), reads (the input container; idempotent)."""
    body = json.dumps(full_merge_order(manifest), ensure_ascii=False).encode("utf-8")
    storage.upload_bytes(container, merge_order_blob(manifest.job_id), body, overwrite=True)


def read_urls(
    access: TaskAccess, output_container: str, input_container: str, manifest: Manifest, expiry: datetime
) -> dict[str, str]:
    """The read URL of each blob the delta merge reads besides its sources, by blob name."""
    delta = manifest.delta
    if delta is None or manifest.cached_merge:
        return {}
    urls = {b: access.read_url(output_container, b, expiry) for b in (delta.base, *delta.subtract)}
    urls[delta.order] = access.read_url(input_container, delta.order, expiry)
    return urls
