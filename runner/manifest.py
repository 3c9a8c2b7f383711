"""The job manifest: ``<job-id>/manifest.json`` in the input container.

It records what a job is (file id -> input relative path, blob, node name;
which files each packed task carries; options) so that ``runner results``,
``status``, ``logs`` and resume work from any machine that can reach the
target, with nothing kept locally. It holds no secret and no SAS URL.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from runner.errors import NotFoundError, RemoteError
from runner.storage import Storage
from runner.tasks import (
    MERGE_GROUP_SIZE,
    MERGE_TASK_ID,
    DeltaSources,
    MergeStep,
    merge_dependencies,
    merge_order_blob,
    merge_steps,
    merge_steps_by_reads,
)

MANIFEST_VERSION = 1
#: How the merges group files (``options.mergeGroups``): ``files``, ``--merge-group-size`` files a
#: merge (a manifest without the key: written before ``reads``); ``reads``, that many resource
#: files a merge (:func:`runner.tasks.merge_steps_by_reads`), what ``submit`` records now.
MERGE_GROUPS = ("files", "reads")


def manifest_blob(job_id: str) -> str:
    return f"{job_id}/manifest.json"


def input_blob(job_id: str, relpath: str) -> str:
    return f"{job_id}/inputs/{relpath}"


@dataclass(frozen=True)
class ManifestTask:
    """One input file. ``task_id`` is its *file id* (``"1".."N"``): its results are at
    ``<job-id>/<file id>/`` whatever Batch task ran it (:meth:`Manifest.task_of`)."""

    task_id: str
    input: str
    blob: str
    node_name: str
    size: int


@dataclass(frozen=True)
class ManifestPack:
    """A packed Batch task (``p1..pK``) and the file ids it carries, in order."""

    task_id: str
    file_ids: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    job_id: str
    created: str
    numwords: int
    aggregate: bool
    command: str | None
    retries: int
    tasks: tuple[ManifestTask, ...]
    #: Recorded so that a resume, ``status`` and ``results`` see the same merge tasks.
    merge_group_size: int = MERGE_GROUP_SIZE
    #: ``--max-wall-clock`` in seconds (``None``: no limit); recorded so a resume can check it.
    max_wall_clock: float | None = None
    #: Ids of the files whose results came from the result cache (:mod:`runner.cache`): they
    #: have no Batch task; their results are read from their entries (``cache_keys``).
    cached: tuple[str, ...] = ()
    #: ``--allow-failures``: the merges run on the files that succeeded.
    allow_failures: bool = False
    #: ``--pack`` as given (``auto``, ``none``, N; a manifest without it: ``none``) and the
    #: packed tasks; a file in no pack runs as the task whose id is its file id.
    pack: str = "none"
    packs: tuple[ManifestPack, ...] = ()
    #: The result cache's key of every file (file id -> key; empty without the cache) and of the
    #: merged result; ``cached_merge``: the merged result came from the cache (no merge task).
    cache_keys: dict[str, str] = field(default_factory=dict)
    merge_key: str | None = None
    cached_merge: bool = False
    #: A delta merge (:mod:`runner.delta_merge`): the job's one merge starts from a cached corpus;
    #: ``delta_sources``: the file ids it adds (new or changed since that corpus).
    delta: DeltaSources | None = None
    delta_sources: tuple[str, ...] = ()
    #: One of :data:`MERGE_GROUPS`; it changes the plan only for a job with bundled packs.
    merge_groups: str = "files"

    @functools.cached_property
    def by_task(self) -> dict[str, ManifestTask]:
        """Files by file id (computed once per manifest, which is immutable: do not modify)."""
        return {t.task_id: t for t in self.tasks}

    @functools.cached_property
    def task_of(self) -> dict[str, str]:
        """The Batch task id that runs each file id (computed once: do not modify). Looked up per
        file in loops (e.g. :attr:`file_task_ids` on every poll), so a property rebuilding it
        made those loops quadratic in the number of files."""
        out = {t.task_id: t.task_id for t in self.tasks}
        out.update({fid: p.task_id for p in self.packs for fid in p.file_ids})
        return out

    @property
    def file_task_ids(self) -> list[str]:
        """The Batch tasks of per-file work (packs and single files), in file order; the files
        from the result cache have none."""
        cached = set(self.cached)
        return list(dict.fromkeys(self.task_of[t.task_id] for t in self.tasks if t.task_id not in cached))

    @property
    def task_ids(self) -> list[str]:
        """Every Batch task of the job: per-file work (none for the cached files), then the merges."""
        return self.file_task_ids + [m.task_id for m in self.merge_steps]

    @property
    def bundled(self) -> bool:
        """Whether the packs read an input tar and write a results tar (:mod:`runner.pack_tars`):
        word counting, no ``--allow-failures`` (its placeholders stand for per-file counts blobs)."""
        return bool(self.packs) and self.command is None and not self.allow_failures

    def merge_plan(self) -> list[MergeStep]:
        """The full merge's steps before their dependencies on the tasks that carry the files:
        grouped by files, or with ``reads`` and bundled packs by resource files (a pack's results
        tar is one); then the final merge of more than ``merge_group_size`` files lists the
        inputs as the grouping by files does (``MergeStep.order``, :func:`merge_order_blob`), so
        the corpus result is the same bytes whichever grouping made it."""
        n_files = len(self.tasks)
        if self.merge_groups != "reads" or not self.bundled:
            return merge_steps(n_files, self.merge_group_size)
        pack_of = {fid: p.task_id for p in self.packs for fid in p.file_ids}
        steps = merge_steps_by_reads(
            [pack_of.get(t.task_id, t.task_id) for t in self.tasks], self.merge_group_size
        )
        if n_files > self.merge_group_size:
            steps[-1] = replace(steps[-1], order=merge_order_blob(self.job_id))
        return steps

    @property
    def merge_steps(self) -> list[MergeStep]:
        """The job's merge tasks (none without the aggregate, or when the merged result came from
        the result cache), the final ``merge`` last."""
        if not self.aggregate or self.cached_merge:
            return []
        if self.delta is not None:
            cached = set(self.cached)
            runs = {f: t for f, t in self.task_of.items() if f not in cached}
            return [merge_dependencies(MergeStep(MERGE_TASK_ID, self.delta_sources, delta=self.delta), runs)]
        steps = self.merge_plan()
        return [merge_dependencies(s, self.task_of) for s in steps] if self.packs else steps

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "jobId": self.job_id,
            "created": self.created,
            "options": {
                "numwords": self.numwords,
                "aggregate": self.aggregate,
                "command": self.command,
                "retries": self.retries,
                "mergeGroupSize": self.merge_group_size,
                "mergeGroups": self.merge_groups,
                "maxWallClockSeconds": self.max_wall_clock,
                "allowFailures": self.allow_failures,
                "pack": self.pack,
            },
            "cached": list(self.cached),
            "cacheKeys": dict(self.cache_keys),
            "mergeKey": self.merge_key,
            "cachedMerge": self.cached_merge,
            "deltaMerge": None
            if self.delta is None
            else {"sources": list(self.delta_sources), **self.delta.to_json()},
            "packs": [{"id": p.task_id, "files": list(p.file_ids)} for p in self.packs],
            "tasks": [
                {"id": t.task_id, "input": t.input, "blob": t.blob, "nodeName": t.node_name, "size": t.size}
                for t in self.tasks
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        opts = data["options"]
        if int(opts.get("mergeGroupSize", MERGE_GROUP_SIZE)) < 2:
            raise ValueError("mergeGroupSize must be at least 2")
        if opts.get("mergeGroups", "files") not in MERGE_GROUPS:
            raise ValueError(f"mergeGroups must be one of {', '.join(MERGE_GROUPS)}")
        return cls(
            job_id=str(data["jobId"]),
            created=str(data["created"]),
            numwords=int(opts["numwords"]),
            aggregate=bool(opts["aggregate"]),
            command=opts.get("command"),
            retries=int(opts.get("retries", 0)),
            merge_group_size=int(opts.get("mergeGroupSize", MERGE_GROUP_SIZE)),
            merge_groups=str(opts.get("mergeGroups", "files")),
            max_wall_clock=None
            if opts.get("maxWallClockSeconds") is None
            else float(opts["maxWallClockSeconds"]),
            allow_failures=bool(opts.get("allowFailures", False)),
            pack=str(opts.get("pack", "none")),
            packs=tuple(
                ManifestPack(str(p["id"]), tuple(str(f) for f in p["files"])) for p in data.get("packs", [])
            ),
            tasks=tuple(
                ManifestTask(
                    str(t["id"]), str(t["input"]), str(t["blob"]), str(t["nodeName"]), int(t["size"])
                )
                for t in data["tasks"]
            ),
            cached=tuple(str(c) for c in data.get("cached", [])),
            cache_keys={str(k): str(v) for k, v in (data.get("cacheKeys") or {}).items()},
            merge_key=None if data.get("mergeKey") is None else str(data["mergeKey"]),
            cached_merge=bool(data.get("cachedMerge", False)),
            delta=None if not data.get("deltaMerge") else DeltaSources.from_json(data["deltaMerge"]),
            delta_sources=tuple(str(f) for f in (data.get("deltaMerge") or {}).get("sources", [])),
        )


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def save(storage: Storage, container: str, manifest: Manifest) -> None:
    body = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False).encode("utf-8")
    storage.upload_bytes(container, manifest_blob(manifest.job_id), body, overwrite=True)


def load(storage: Storage, container: str, job_id: str) -> Manifest | None:
    """The job's manifest, or ``None`` if the job has none (not submitted by this runner)."""
    raw = storage.try_download_bytes(container, manifest_blob(job_id))
    if raw is None:
        return None
    try:
        return Manifest.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        raise RemoteError(f"the manifest of job {job_id} is unreadable") from None


def require(storage: Storage, container: str, job_id: str) -> Manifest:
    manifest = load(storage, container, job_id)
    if manifest is None:
        raise NotFoundError(
            f"job {job_id} has no manifest in the input container",
            hint="was it submitted with `runner submit` to this target?",
        )
    return manifest
