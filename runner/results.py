"""Download a job's results and read them back.

Layout under ``dest`` (default ``results/<job-id>/``):

* ``corpus_OUTPUT.txt``, ``corpus_counts.json``: the aggregate (when it ran);
* ``files/<input relative dir>/<stem>_OUTPUT<ext>`` and ``<stem>_counts.json``:
  per input, with the tutorial's names built from the *original* file name
  (the node saw a sanitised one), so same basenames in different folders do
  not collide. Inputs of one folder whose counts names would be the same
  (``x.txt`` and ``x.md``) get ``<name>_counts.json`` (``x.txt_counts.json``)
  instead: :func:`local_names`. No two blobs are ever written to one path;
* with ``--command``: ``files/<input relative path>.out/...``: everything the
  command wrote to its output directory;
* ``files/<input relative path>.error.txt``: why a file failed inside a packed
  task (nodetask's ``nodetask_error.txt`` for that file).

Outcomes are per file. A file run by a packed task (:mod:`runner.packing`)
shares that task's state, except in a failed pack: there a file whose own
results exist and that has no error file *succeeded*, the others *failed*,
each reported as its own failure (the pack's exit code, the file's error).

A bundled pack (:mod:`runner.pack_tars`) delivers its files' results in one blob,
``<job-id>/<pack id>/results.tar``: it is downloaded once (to ``.runner-packs/`` under
``dest``, removed once unpacked) and each member ``<file id>/<name>`` goes where the blob
``<job-id>/<file id>/<name>`` would, so the local tree is the same as when each result is its
own blob. A member's name is data, never a path: it must name a file of that pack, be a plain
relative name (:func:`nodetask.bundle.member_parts`) of a regular file; anything else is
logged and left out.

Downloads run in parallel. Top words come from the counts JSON (nodetask's
schema 1: ``top`` and ``totals.words``).
"""

from __future__ import annotations

import logging
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from nodetask.bundle import RESULTS_TAR, member_parts, read_member
from nodetask.merge import CORPUS_COUNTS
from nodetask.packed import ERROR_FILE
from nodetask.results import COUNTS_SUFFIX
from runner import cache_bundle, pack_tars
from runner.atomic import write_atomic
from runner.batch_types import TaskFailure, TaskInfo, TaskState
from runner.counts_head import load_fields
from runner.errors import UsageError
from runner.manifest import Manifest, ManifestTask
from runner.partial_merge import MissingInput, missing_from
from runner.progress import Reporter
from runner.storage import BlobInfo, DownloadItem, Storage
from runner.tasks import MERGE_TASK_ID, report_names

if TYPE_CHECKING:
    from runner.cache import CachedBlob

log = logging.getLogger(__name__)


class TaskOutcome(str, Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    PENDING = "pending"


@dataclass(frozen=True)
class WordCount:
    word: str
    count: int


@dataclass(frozen=True)
class FileResult:
    task_id: str
    input: str
    outcome: TaskOutcome
    report: Path | None = None
    counts: Path | None = None
    words: int | None = None
    top: tuple[WordCount, ...] = ()
    files: tuple[Path, ...] = ()
    #: Batch's counts: runs after a failure (``--retries``), and runs started over because the
    #: node was preempted or left the pool.
    retries: int = 0
    requeues: int = 0
    #: The Batch task that ran the file, when it is not ``task_id`` (a packed task ``p<k>``).
    run_by: str | None = None

    def reruns(self) -> str | None:
        """``"task 3 (a.txt): retried 1 time, requeued 2 times"``; ``None`` if it ran once."""
        runs = _runs(self.retries, self.requeues)
        return f"task {self.task_id} ({self.input}): {runs}" if runs else None


def _runs(retries: int, requeues: int) -> str:
    parts = [
        f"{what} {n} time{'s' if n != 1 else ''}"
        for what, n in (("retried", retries), ("requeued", requeues))
        if n
    ]
    return ", ".join(parts)


def rerun_lines(files: list[FileResult]) -> list[str]:
    """One line per Batch task that ran more than once, in order: a file's own task as
    :meth:`FileResult.reruns` says it, a pack once (its files share its counts) as
    ``"task p1 (7 files: a.txt … z.txt): requeued 1 time"``."""
    packs: dict[str, list[FileResult]] = {}
    for r in files:
        if r.run_by is not None:
            packs.setdefault(r.run_by, []).append(r)
    lines: list[str] = []
    for r in files:
        if r.run_by is None:
            line = r.reruns()
        elif (carried := packs.pop(r.run_by, None)) is not None and (runs := _runs(r.retries, r.requeues)):
            names = f"{len(carried)} files: {carried[0].input} … {carried[-1].input}"
            line = f"task {r.run_by} ({names if len(carried) > 1 else r.input}): {runs}"
        else:
            line = None
        if line:
            lines.append(line)
    return lines


@dataclass(frozen=True)
class JobResults:
    job_id: str
    target: str
    dest: Path
    numwords: int
    files: tuple[FileResult, ...]
    corpus: FileResult | None
    failures: tuple[TaskFailure, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    #: Outcomes of the partial merges ``merge-1..K`` (two-level jobs only); counted as tasks.
    partial_merges: tuple[TaskOutcome, ...] = ()
    #: ``--allow-failures``: the inputs the corpus result was merged without, and why.
    missing: tuple[MissingInput, ...] = ()

    def to_json(self) -> dict[str, Any]:
        def one(r: FileResult) -> dict[str, Any]:
            return {
                "taskId": r.task_id,
                "input": r.input,
                "status": r.outcome.value,
                "report": str(r.report) if r.report else None,
                "counts": str(r.counts) if r.counts else None,
                "words": r.words,
                "top": [{"word": w.word, "count": w.count} for w in r.top],
                "files": [str(p) for p in r.files],
                "retries": r.retries,
                "requeues": r.requeues,
                "runBy": r.run_by or r.task_id,
            }

        return {
            "jobId": self.job_id,
            "target": self.target,
            "dest": str(self.dest),
            "numwords": self.numwords,
            "tasks": {
                "total": len(self.files) + len(self.partial_merges) + (1 if self.corpus else 0),
                "succeeded": sum(r.outcome is TaskOutcome.SUCCEEDED for r in self.files)
                + sum(o is TaskOutcome.SUCCEEDED for o in self.partial_merges)
                + (1 if self.corpus and self.corpus.outcome is TaskOutcome.SUCCEEDED else 0),
                "failed": len(self.failures),
            },
            "files": [one(r) for r in self.files],
            "corpus": one(self.corpus) if self.corpus else None,
            "missingFromCorpus": [m.to_json() for m in self.missing],
            "failures": [
                {
                    "taskId": f.task_id,
                    "input": f.display_name,
                    "exitCode": f.exit_code,
                    "category": f.failure_category,
                    "code": f.failure_code,
                    "message": f.failure_message,
                    "stderrTail": f.stderr_tail,
                }
                for f in self.failures
            ],
            **self.extra,
        }


def _outcome(info: TaskInfo | None) -> TaskOutcome:
    if info is None or info.state is not TaskState.COMPLETED:
        return TaskOutcome.PENDING
    return TaskOutcome.SUCCEEDED if info.result == "success" else TaskOutcome.FAILED


@dataclass(frozen=True)
class LocalNames:
    """Where a per-file task's report and counts go, relative to ``dest``."""

    report: PurePosixPath
    counts: PurePosixPath


def local_names(manifest: Manifest) -> dict[str, LocalNames]:
    """The local report and counts path of every per-file task, none shared by two inputs.

    Reports (``<stem>_OUTPUT<ext>``) are distinct for distinct names. Counts
    (``<stem>_counts.json``) are not (``x.txt``, ``x.md``): every input whose
    counts path is claimed twice uses ``<name>_counts.json``, repeated until
    nothing is shared (names are distinct within a folder, so this ends).
    """
    full: set[str] = set()
    while True:
        names = {}
        for t in manifest.tasks:
            rel = PurePosixPath(t.input)
            report, counts = report_names(rel.name)
            if t.task_id in full:
                counts = f"{rel.name}{COUNTS_SUFFIX}"
            folder = PurePosixPath("files") / rel.parent
            names[t.task_id] = LocalNames(folder / report, folder / counts)
        claims: dict[PurePosixPath, list[str]] = {}
        for tid, n in names.items():
            claims.setdefault(n.counts, []).append(tid)
        shared = {tid for tids in claims.values() if len(tids) > 1 for tid in tids} - full
        if not shared:
            return names
        full |= shared


def local_name(task: ManifestTask, rest: str, command_mode: bool, names: LocalNames | None) -> PurePosixPath:
    """Where the result blob ``<job-id>/<file id>/<rest>`` of ``task`` goes, relative to ``dest``."""
    rel = PurePosixPath(task.input)
    if rest == ERROR_FILE:
        return PurePosixPath("files") / f"{rel}.error.txt"
    if command_mode or names is None:
        return PurePosixPath("files") / f"{rel}.out" / rest
    node_report, node_counts = report_names(task.node_name)
    if rest == node_report:
        return names.report
    if rest == node_counts:
        return names.counts
    return names.report.parent / rest


@dataclass(frozen=True)
class PlannedDownload:
    """One output blob and where it goes: ``task_id`` is the file id (or the merge's) it is under."""

    task_id: str
    item: DownloadItem
    size: int


class _Destinations:
    """Local paths of result blobs under ``dest``: each path claimed by one blob only (a task
    writing unexpected names keeps both), unsafe names and blobs of no task left out."""

    def __init__(self, manifest: Manifest, dest: Path, names: dict[str, LocalNames] | None = None) -> None:
        self._by_task = manifest.by_task
        self._command_mode = manifest.command is not None
        if names is None:
            names = {} if self._command_mode else local_names(manifest)
        self._names = names
        self._dest = dest
        self._claimed: set[Path] = set()

    def of(self, blob_name: str, task_id: str, rest: str) -> Path | None:
        if task_id == MERGE_TASK_ID:
            rel = PurePosixPath(rest)
        elif task_id in self._by_task:
            rel = local_name(self._by_task[task_id], rest, self._command_mode, self._names.get(task_id))
        else:
            return None
        if ".." in rel.parts or rel.is_absolute():
            log.warning("skipping output blob with an unsafe name: %s", blob_name)
            return None
        path = self._dest.joinpath(*rel.parts)
        if path in self._claimed:
            path = path.with_name(f"{path.name}.task-{task_id}")
            log.warning("two results map to one file; %s is saved as %s", blob_name, path.name)
        self._claimed.add(path)
        return path


def _job_blobs(blobs: list[BlobInfo], skip: Mapping[str, object]) -> list[tuple[BlobInfo, str, str]]:
    """``(blob, task id, rest)`` of each result blob under ``<job-id>/<task id>/``, but the
    ids in ``skip``."""
    return [
        (blob, parts[1], parts[2])
        for blob in blobs
        if len(parts := blob.name.split("/", 2)) == 3 and parts[2] and parts[1] not in skip
    ]


#: Under ``dest``: where bundled packs' results tars are downloaded before they are unpacked.
TARS_DIR = ".runner-packs"


def _bundled_packs(manifest: Manifest) -> dict[str, tuple[str, ...]]:
    return {p.task_id: p.file_ids for p in manifest.packs} if pack_tars.bundled(manifest) else {}


def _results_tar(
    blob: BlobInfo, task_id: str, rest: str, packs: Mapping[str, object], dest: Path
) -> PlannedDownload | None:
    """The download of a bundled pack's results tar, or ``None`` when ``blob`` is not one."""
    if rest != RESULTS_TAR or task_id not in packs:
        return None
    item = DownloadItem(blob.name, dest / TARS_DIR / f"{task_id}.tar", etag=blob.etag)
    return PlannedDownload(task_id, item, blob.size)


def plan_downloads(blobs: list[BlobInfo], manifest: Manifest, dest: Path) -> list[PlannedDownload]:
    """Where each of the job's output blobs goes under ``dest`` (:class:`_Destinations`; a
    bundled pack's results tar to :data:`TARS_DIR`); the item carries the listed ETag."""
    where = _Destinations(manifest, dest)
    packs = _bundled_packs(manifest)
    out: list[PlannedDownload] = []
    for blob, task_id, rest in _job_blobs(blobs, {}):
        if (tar := _results_tar(blob, task_id, rest, packs, dest)) is not None:
            out.append(tar)
            continue
        path = where.of(blob.name, task_id, rest)
        if path is not None:
            out.append(PlannedDownload(task_id, DownloadItem(blob.name, path, etag=blob.etag), blob.size))
    return out


def already_here(planned: PlannedDownload, prefetched: Mapping[str, PlannedDownload]) -> bool:
    """``planned`` was downloaded before (:mod:`runner.prefetch`): same blob version (ETag), same
    local path, and that file is still there with the blob's size."""
    earlier = prefetched.get(planned.item.blob_name)
    if earlier is None or earlier.item.etag is None or earlier.item.etag != planned.item.etag:
        return False
    path = planned.item.dest
    try:
        return earlier.item.dest == path and path.stat().st_size == planned.size
    except OSError:
        return False


def _fetch(
    storage: Storage,
    container: str,
    manifest: Manifest,
    dest: Path,
    names: dict[str, LocalNames],
    cached: Mapping[str, Sequence[CachedBlob]],
    prefetched: Mapping[str, PlannedDownload],
    reporter: Reporter,
) -> dict[str, list[Path]]:
    """Download the job's result blobs (those of ``cached`` ids from the cache; those
    :func:`already_here` not again) to their local names under ``dest``; return the local
    files of each id."""
    where = _Destinations(manifest, dest, names)
    items: list[DownloadItem] = []
    local_files: dict[str, list[Path]] = {}
    total = skipped = 0
    packs = _bundled_packs(manifest)
    tars: list[PlannedDownload] = []
    for blob, task_id, rest in _job_blobs(storage.list_blobs(container, f"{manifest.job_id}/"), cached):
        if (tar := _results_tar(blob, task_id, rest, packs, dest)) is not None:
            tars.append(tar)
            if not (prefetched and already_here(tar, prefetched)):
                items.append(DownloadItem(blob.name, tar.item.dest))
                total += blob.size
            continue
        path = where.of(blob.name, task_id, rest)
        if path is None:
            continue
        local_files.setdefault(task_id, []).append(path)
        planned = PlannedDownload(task_id, DownloadItem(blob.name, path, etag=blob.etag), blob.size)
        if prefetched and already_here(planned, prefetched):
            skipped += 1
            continue
        items.append(DownloadItem(blob.name, path))
        total += blob.size
    if skipped:
        log.info("%d result file(s) were downloaded while the merge ran", skipped)
    bundles: dict[cache_bundle.Bundle, dict[str, list[Path]]] = {}
    for task_id, sources in cached.items():
        for source in sources:
            path = where.of(source.source, task_id, source.name)
            if path is None:
                continue
            local_files.setdefault(task_id, []).append(path)
            if source.bundle is not None and source.member is not None:
                # runner.cache_bundle; two files of the same key (same name and content) share members
                bundles.setdefault(source.bundle, {}).setdefault(source.member, []).append(path)
            else:
                size = source.size if source.md5 is not None else None
                items.append(DownloadItem(source.source, path, source.md5, size))
                total += source.size
    try:
        for bundle, members in bundles.items():
            reporter.info(f"unpacking {len(members)} cached result files from one bundle")
            cache_bundle.extract(storage, container, bundle, members)
        if items:
            with reporter.transfer(f"downloading {len(items)} result files", total) as advance:
                storage.download_files(container, items, advance)
        for tar in tars:
            _unpack(tar, set(packs[tar.task_id]), where, local_files)
        shutil.rmtree(dest / TARS_DIR, ignore_errors=True)
    except OSError as exc:
        raise UsageError(
            f"cannot write results under {dest}: {exc.strerror or exc}",
            hint=f"fix the destination, then run `runner results {manifest.job_id}`",
        ) from None
    return local_files


def _unpack(
    tar: PlannedDownload, pack_files: set[str], where: _Destinations, local_files: dict[str, list[Path]]
) -> None:
    """Write each member of a downloaded results tar where its blob would go (module docstring)."""
    blob = tar.item.blob_name
    try:
        with tarfile.open(tar.item.dest, mode="r:") as archive:
            for info in archive:
                parts, why = member_parts(info)
                if why is None and (len(parts) < 2 or parts[0] not in pack_files):
                    why = "it names no file of this pack"
                path = (
                    None if why else where.of(f"{blob} member {info.name!r}", parts[0], "/".join(parts[1:]))
                )
                if path is None:
                    log.warning("skipping member %r of %s: %s", info.name, blob, why or "unsafe name")
                    continue
                write_atomic(path, read_member(archive, info), durable=False)  # the tar can be fetched again
                local_files.setdefault(parts[0], []).append(path)
    except tarfile.TarError as exc:
        log.warning("unreadable results tar %s: %s", blob, exc)


def download(
    storage: Storage,
    container: str,
    manifest: Manifest,
    dest: Path,
    states: dict[str, TaskInfo],
    *,
    target: str,
    failures: list[TaskFailure],
    reporter: Reporter,
    cached: Mapping[str, Sequence[CachedBlob]] | None = None,
    prefetched: Mapping[str, PlannedDownload] | None = None,
) -> JobResults:
    """Download every output blob of the job into ``dest`` and summarise it.

    ``cached`` (:func:`runner.cache.sources`): the results of these ids (file ids, ``merge``) are
    read from their cache entries instead of ``<job-id>/<id>/``, each checked against its
    recorded size and MD5 (:class:`~runner.storage.CorruptDownload` otherwise). A blob in
    ``prefetched`` that :func:`already_here` says is on disk in the version listed now is not
    downloaded again; one rewritten since (a retry) is."""
    command_mode = manifest.command is not None
    names = {} if command_mode else local_names(manifest)
    local_files = _fetch(storage, container, manifest, dest, names, cached or {}, prefetched or {}, reporter)

    task_of = manifest.task_of
    by_file = {fid: states[tid] for fid, tid in task_of.items() if tid in states}
    results = []
    for task in manifest.tasks:
        one = _summarise(
            task.task_id, task.input, by_file, local_files, dest, names.get(task.task_id), command_mode
        )
        results.append(
            _in_pack(one, task_of[task.task_id], dest) if task_of[task.task_id] != task.task_id else one
        )
    failures = per_file_failures(failures, results, manifest.job_id)
    corpus = None
    partial: tuple[TaskOutcome, ...] = ()
    missing: tuple[MissingInput, ...] = ()
    if manifest.aggregate and not command_mode:
        corpus = _summarise(MERGE_TASK_ID, "(corpus)", states, local_files, dest, None, False)
        partial = tuple(_outcome(states.get(m.task_id)) for m in manifest.merge_steps if not m.is_final)
        failed = any(r.outcome is TaskOutcome.FAILED for r in results) or TaskOutcome.FAILED in partial
        if corpus.outcome is TaskOutcome.PENDING and failed:
            corpus = FileResult(MERGE_TASK_ID, "(corpus)", TaskOutcome.SKIPPED)
        if manifest.allow_failures and corpus.counts is not None:
            missing = missing_from(corpus.counts, failures)
    return JobResults(
        job_id=manifest.job_id,
        target=target,
        dest=dest,
        numwords=manifest.numwords,
        files=tuple(results),
        corpus=corpus,
        failures=tuple(failures),
        partial_merges=partial,
        missing=missing,
    )


def _summarise(
    task_id: str,
    label: str,
    states: dict[str, TaskInfo],
    local_files: dict[str, list[Path]],
    dest: Path,
    names: LocalNames | None,
    command_mode: bool,
) -> FileResult:
    """A task's outcome and results; ``names`` is ``None`` for the corpus (the merge)."""
    info = states.get(task_id)
    outcome = _outcome(info)
    retries, requeues = (info.retry_count, info.requeue_count) if info else (0, 0)
    files = tuple(sorted(local_files.get(task_id, [])))
    if command_mode:
        return FileResult(task_id, label, outcome, files=files, retries=retries, requeues=requeues)
    if names is None:
        report, counts = dest / "corpus_OUTPUT.txt", dest / CORPUS_COUNTS
    else:
        report, counts = dest.joinpath(*names.report.parts), dest.joinpath(*names.counts.parts)
    words: int | None = None
    top: tuple[WordCount, ...] = ()
    has_counts = counts.is_file()
    if has_counts:
        words, top = read_counts(counts)
    return FileResult(
        task_id,
        label,
        outcome,
        report=report if report.is_file() else None,
        counts=counts if has_counts else None,
        words=words,
        top=top,
        files=files,
        retries=retries,
        requeues=requeues,
    )


def _error_path(dest: Path, result: FileResult) -> Path:
    return dest / "files" / f"{result.input}.error.txt"


def _in_pack(result: FileResult, pack_id: str, dest: Path) -> FileResult:
    """A file's result when a packed task ran it: failed only if its own run failed."""
    if result.outcome is TaskOutcome.FAILED:
        error = _error_path(dest, result)
        delivered = result.counts is not None or (result.report is None and bool(result.files))
        if delivered and error not in result.files:
            result = replace(result, outcome=TaskOutcome.SUCCEEDED)
    if result.outcome is TaskOutcome.SUCCEEDED and error_path_stale(dest, result):
        _error_path(dest, result).unlink()  # from an earlier download, before `runner retry`
    return replace(result, run_by=pack_id)


def error_path_stale(dest: Path, result: FileResult) -> bool:
    path = _error_path(dest, result)
    return path.is_file() and path not in result.files


def per_file_failures(
    failures: list[TaskFailure], results: list[FileResult], job_id: str = "JOB"
) -> list[TaskFailure]:
    """Task failures as the user sees them: a failed pack becomes one failure per failed file
    (the pack's exit code, the file's error as its stderr tail); a pack that failed with no
    file failed (killed after its last file), and every other failure, is kept as it is."""
    failed_files: dict[str, list[FileResult]] = {}
    for r in results:
        if r.run_by is not None and r.outcome is TaskOutcome.FAILED:
            failed_files.setdefault(r.run_by, []).append(r)
    out: list[TaskFailure] = []
    for f in failures:
        files = failed_files.get(f.task_id)
        if not files:
            out.append(f)
            continue
        for r in files:
            error = next((p for p in r.files if p.name.endswith(".error.txt")), None)
            why = _read_error(error) if error is not None else _no_result(f, job_id)
            out.append(replace(f, display_name=r.input, stderr_tail=why))
    return out


def _no_result(failure: TaskFailure, job_id: str) -> str:
    """Why a file of a failed pack has no result: the pack never started (its inputs could not
    be downloaded: Batch's staging error), or it stopped before that file."""
    if failure.exit_code is None and failure.failure_code is not None:
        return (
            f"no result: the packed task could not start ({failure.failure_code}: "
            f"{failure.failure_message or 'no message'}); if an input is missing, the same "
            f"`runner submit ... --job-id {job_id}` uploads it again, then "
            f"`runner retry {job_id}`\n"
        )
    return "no result: the task stopped before this file\n"


def _read_error(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-4096:]
    except OSError:
        return ""


_SUMMARY_FIELDS = frozenset({"top", "totals"})


def read_counts(path: Path) -> tuple[int | None, tuple[WordCount, ...]]:
    """``(total words, top words)`` from a nodetask counts JSON file."""
    try:
        data = load_fields(path.read_text(encoding="utf-8"), _SUMMARY_FIELDS)  # "counts" not decoded
        top = tuple(WordCount(str(w), int(c)) for w, c in data.get("top", []))
        words = data.get("totals", {}).get("words")
        return (int(words) if words is not None else None), top
    except (OSError, ValueError, TypeError, AttributeError):
        log.warning("unreadable counts file %s", path)
        return None, ()
