"""``runner submit``, ``results``: docs/architecture.md, "Data flow of runner submit", steps 2-8,
and "Job life cycle".

The caller (the CLI) has already validated the inputs (:func:`runner.inputs.expand`)
and resolved the target (step 1). Then:

2. with the result cache (:mod:`runner.cache`), the files whose results a valid entry
   holds do not run (nor does the merge when the merged result's entry is valid; with
   nothing to run, no task is added and the results come straight from the cache); the
   other inputs are uploaded in parallel to ``<job-id>/inputs/<relative path>``;
   unchanged blobs (same MD5) are skipped;
3. the node code is uploaded under its content hash (unless ``--command``);
4. the manifest ``<job-id>/manifest.json`` is written, then the job is
   created (an existing job with the same id is reused: resume);
5. missing tasks are added (the SDK chunks them), existing ones skipped;
6. with ``--wait``, the job is monitored with one ``get_job_task_counts`` per
   poll; while nothing runs, :mod:`runner.pool_watch` says why (or fails fast);
   a merge blocked by a failed per-file task is reported as skipped;
7. results are downloaded (also when some tasks failed) and summarised;
8. with ``--cleanup``, the job and its blobs are deleted once every task
   succeeded and the results are safely downloaded.

Job life cycle: a watched job stays active until the runner has seen its end;
it then completes when everything succeeded and is kept active (said in the
error) when tasks failed, so that ``runner retry`` can rerun them.

Resume: the same command with ``--job-id`` of an existing job. Its manifest
must list the same inputs (same content) and options, otherwise nothing is
changed and a :class:`UsageError` says why.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runner import cache as result_cache
from runner import delta_merge, image_eol, pack_tars, partial_merge, polling
from runner import manifest as mf
from runner.batch_types import TaskCounts, TaskFailure, TaskInfo, TaskState
from runner.errors import (
    JobEnded,
    JobStillRunning,
    NotFoundError,
    RunnerError,
    TaskFailures,
    UnreachableError,
    UsageError,
    WaitTimeout,
)
from runner.inputs import InputFile
from runner.nodecode import ensure_node_code
from runner.pack_recovery import split_packs_with_missing_inputs
from runner.packing import FileToRun, PackPolicy, PlannedTask, group, parse_pack
from runner.pool_watch import PoolWatcher, Slowness
from runner.prefetch import Prefetch
from runner.progress import Reporter
from runner.results import JobResults, PlannedDownload, download, rerun_lines
from runner.storage import CorruptDownload, UploadItem
from runner.targets import AuthMode, Session
from runner.task_access import TaskAccess, task_access
from runner.tasks import (
    MAX_MERGE_GROUP_SIZE,
    MERGE_GROUP_SIZE,
    MERGE_TASK_ID,
    PlannedInput,
    PlanOptions,
    counts_blob,
    plan,
    safe_node_name,
    validate_command_template,
)

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SAS_MARGIN = timedelta(hours=1)


@dataclass(frozen=True)
class SubmitOptions:
    numwords: int = 3
    aggregate: bool = True
    dest: Path | None = None
    wait: bool = True
    timeout: timedelta = timedelta(hours=2)
    retries: int = 0
    max_wall_clock: timedelta | None = None
    command: str | None = None
    keep: bool = True
    poll_interval: float = 0.5
    merge_group_size: int = MERGE_GROUP_SIZE
    #: ``--pack`` as given; ``None`` (not given): ``auto``, or ``none`` with ``--command``.
    pack: str | None = None
    #: A poll taking longer than this is warned about (the service stopped answering).
    unresponsive_after: float = 30.0
    #: Read and write the result cache (:mod:`runner.cache`); the CLI's default is on.
    cache: bool = False
    #: ``--allow-failures``: the corpus merge runs on the files that succeeded.
    allow_failures: bool = False

    def validate(self) -> None:
        if self.numwords < 1:
            raise UsageError("--numwords must be at least 1")
        if self.retries < 0:
            raise UsageError("--retries must be >= 0")
        if self.timeout <= timedelta(0):
            raise UsageError("--timeout must be positive")
        if self.max_wall_clock is not None and self.max_wall_clock <= timedelta(0):
            raise UsageError("--max-wall-clock must be positive")
        if not 2 <= self.merge_group_size <= MAX_MERGE_GROUP_SIZE:
            raise UsageError(f"--merge-group-size must be between 2 and {MAX_MERGE_GROUP_SIZE}")
        if self.command is not None:
            validate_command_template(self.command)
        if self.allow_failures and (self.command is not None or not self.aggregate):
            raise UsageError(
                "--allow-failures lets the corpus merge run without the files that failed",
                hint="it has no merge to apply to with --command or --no-aggregate: drop one of them",
            )
        self.pack_policy()
        check_dest(self.dest if self.dest is not None else default_dest("x").parent, "--dest")

    def pack_policy(self) -> PackPolicy:
        """The packing in force: ``--pack`` when given, else ``auto`` (``none`` with ``--command``)."""
        if self.pack is None:
            return PackPolicy("none" if self.command is not None else "auto")
        return parse_pack(self.pack)


#: A user delegation key (which signs the SAS URLs with --auth entra) lasts at most 7 days.
MAX_DELEGATION = timedelta(days=7)


def check_sas_lifetime(timeout: timedelta, auth: AuthMode) -> None:
    """The SAS URLs live ``timeout`` + :data:`SAS_MARGIN`; with Entra ID that must fit in a
    user delegation key (and its 5-minute start/end slack)."""
    limit = MAX_DELEGATION - SAS_MARGIN - timedelta(minutes=15)
    if auth is AuthMode.ENTRA and timeout > limit:
        raise UsageError(
            f"--timeout can be at most {int(limit.total_seconds())} seconds with --auth entra",
            hint="the SAS URLs live --timeout + 1 h and a user delegation key at most 7 days",
        )


@dataclass(frozen=True)
class Submitted:
    """What ``--no-wait`` returns: the job is running."""

    job_id: str
    tasks_added: int
    uploaded: int
    skipped: int


def new_job_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"wc-{stamp}-{secrets.token_hex(2)}"


def validate_job_id(job_id: str) -> None:
    if not _JOB_ID.match(job_id):
        raise UsageError(
            f"invalid job id {job_id!r}",
            hint="1-64 characters: letters, digits, hyphens and underscores",
        )
    if result_cache.is_reserved_job_id(job_id):
        raise UsageError(f"job id {job_id!r} is reserved (the result cache's blobs are under cache/)")


def _counts_urls(
    session: Session, access: TaskAccess, manifest: mf.Manifest, expiry: datetime
) -> dict[str, str]:
    """The URL (read-only SAS, or plain with the pool identity) of each counts blob the merges read
    (names are deterministic), by task id."""
    out = session.outputs
    node_names = {t.task_id: t.node_name for t in manifest.tasks}
    urls = {}
    for step in manifest.merge_steps:
        for tid in step.sources:  # a cached file's counts are read in place, in its cache entry
            blob = result_cache.counts_source(manifest, tid) or counts_blob(
                manifest.job_id, tid, node_names.get(tid)
            )
            urls[tid] = access.read_url(out.output_container, blob, expiry)
        if step.order is not None:  # the final merge of a job grouped by reads: its input order
            urls[step.order] = access.read_url(out.input_container, step.order, expiry)
    urls.update(delta_merge.read_urls(access, out.output_container, out.input_container, manifest, expiry))
    return urls


def default_dest(job_id: str) -> Path:
    return Path("results") / job_id


def check_dest(dest: Path, what: str = "--dest") -> None:
    """Refuse, before anything is created, a destination that cannot become a writable directory.

    ``dest`` may not exist yet; then its nearest existing ancestor must be a
    writable directory (the results go in subdirectories created later).
    """
    probe = dest
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        shown = dest if probe == dest else f"{dest} (its parent {probe})"
        raise UsageError(f"{what} {shown} is not a directory", hint="pass a directory for the results")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {dest}: no permission to write in {probe}")


def submit(
    session: Session,
    inputs: list[InputFile],
    opts: SubmitOptions,
    job_id: str,
    reporter: Reporter,
) -> JobResults | Submitted:
    """Run steps 2-8; return the results (``--wait``) or what was submitted (``--no-wait``).

    Raises :class:`TaskFailures` (carrying the partial results) when a task failed.
    """
    out = session.outputs
    storage, batch = session.storage, session.batch
    limit = opts.merge_group_size**2
    if opts.aggregate and opts.command is None and len(inputs) > limit:
        raise UsageError(
            f"{len(inputs):,} input files are more than the aggregate merges in two levels ({limit:,})",
            hint="pass --no-aggregate, a larger --merge-group-size, or split the inputs into several jobs",
        )
    if not batch.pool_exists(out.pool_id):
        # Batch accepts a job on a pool that does not exist; its tasks would wait forever.
        raise NotFoundError(
            f"pool {out.pool_id} does not exist on this target",
            hint="run `pulumi up` (Azure) or `runner local up` (local)",
        )
    manifest, resuming = _manifest_for(session, inputs, opts, job_id)
    policy = opts.pack_policy() if not resuming else parse_pack(manifest.pack)
    packed = policy.mode != "none"
    # Packed tasks run nodetask's `pack`, also for --command.
    code = ensure_node_code(storage, out.application_container) if opts.command is None or packed else None
    job_cache = None
    if opts.cache:  # the files whose results are reused do not run (runner.cache)
        shape = result_cache.ResultShape.of(
            code_sha256=code.sha256 if code else None,
            command=opts.command,
            numwords=opts.numwords,
            packed=packed,
        )
        manifest, job_cache = result_cache.before_tasks(
            storage, out.output_container, manifest, inputs, shape, reporter.info, lookup=not resuming
        )
        if not resuming:  # few files changed since a cached corpus: one merge (runner.delta_merge)
            manifest = delta_merge.choose(storage, out.output_container, manifest, job_cache, reporter.info)
            result_cache.before_merge(storage, out.output_container, manifest, job_cache)
        if manifest.cached and not resuming:  # pack only the files that run
            manifest = _packed(manifest, policy)
    cached = set(manifest.cached)

    # 2. inputs (a bundled pack's files in one tar: runner.pack_tars)
    in_tar = pack_tars.bundled_files(manifest)
    local = {t.task_id: i.path for t, i in zip(manifest.tasks, inputs, strict=True)}
    with tempfile.TemporaryDirectory(prefix="runner-packs-") as tars:
        items = [
            UploadItem(local[t.task_id], t.blob)
            for t in manifest.tasks
            if t.task_id not in cached.union(in_tar)
        ]
        plain = len(items)
        items += _input_tars(manifest, local, Path(tars))
        if resuming:
            _refuse_changed_inputs(session, manifest, items, local)
        total_bytes = sum(i.path.stat().st_size for i in items)
        with reporter.transfer(_upload_label(plain + len(in_tar), len(items)), total_bytes) as advance:
            summary = storage.upload_files(out.input_container, items, advance)
    reporter.info(f"inputs: {summary.uploaded} uploaded, {summary.skipped} unchanged")

    # 3. node code
    access = task_access(session)  # SAS URLs, or plain ones and the pool identity
    code_url = ""
    expiry = datetime.now(timezone.utc) + opts.timeout + SAS_MARGIN
    if code is not None:
        code_url = access.read_url(out.application_container, code.blob_name, expiry)
        # The blob is named by its content hash; 12 hex digits identify it and fit 80 columns.
        short = code.blob_name.rsplit("/", 1)[-1][:12]
        reporter.info(f"node code: nodetask {short} ({'uploaded' if code.uploaded else 'already there'})")

    # 4. manifest, job
    mf.save(storage, out.input_container, manifest)
    if manifest.allow_failures:
        partial_merge.write_placeholders(session, manifest)
    if not manifest.cached_merge and (
        manifest.delta is not None or any(s.order for s in manifest.merge_steps)
    ):
        delta_merge.write_order(storage, out.input_container, manifest)
    uses_deps = opts.aggregate and opts.command is None
    created = batch.ensure_job(job_id, out.pool_id, uses_task_dependencies=uses_deps)
    reporter.info(f"job {job_id}: {'created' if created else 'exists, resuming'} on pool {out.pool_id}")

    # 5. tasks
    plan_opts = PlanOptions(
        job_id=job_id,
        numwords=opts.numwords,
        retries=opts.retries,
        max_wall_clock=opts.max_wall_clock,
        code_url=code_url,
        output_container_url=access.write_url(out.output_container, expiry),
        command_template=opts.command,
        identity_id=access.identity_id,
        allow_failures=manifest.allow_failures,
    )
    planned = [
        PlannedInput(t.task_id, t.input, access.read_url(out.input_container, t.blob, expiry))
        for t in manifest.tasks
        if t.task_id not in cached
    ]
    counts = _counts_urls(session, access, manifest, expiry) if uses_deps else None
    bundles = {
        p.task_id: (
            access.read_url(out.input_container, pack_tars.input_tar_blob(job_id, p.task_id), expiry),
            access.read_url(out.output_container, pack_tars.results_tar_blob(job_id, p.task_id), expiry),
        )
        for p in (manifest.packs if pack_tars.bundled(manifest) else ())
    }
    specs = plan(
        planned,
        plan_opts,
        aggregate=uses_deps and not manifest.cached_merge,
        counts_urls=counts,
        merge_group_size=manifest.merge_group_size,
        n_files=len(manifest.tasks),
        tasks=_planned_tasks(manifest),
        delta=manifest.merge_steps[0] if manifest.delta is not None and not manifest.cached_merge else None,
        bundles=bundles,
        steps=manifest.merge_plan(),
    )
    if not specs:  # every result came from the cache: the job runs no task (runner.cache)
        batch.terminate_job(job_id, reason="AllTasksComplete", wait=False)
        reporter.info(f"job {job_id}: no task to run, every result from the cache")
        if not opts.wait:
            return Submitted(job_id, 0, summary.uploaded, summary.skipped)
        index = job_cache.index if job_cache is not None else None
        return collect(session, manifest, opts.dest or default_dest(job_id), reporter, keep=opts.keep,
                       index=index, tasks=[], ended=True)  # fmt: skip
    # The job runs tasks on the pool (not one whose every result came from the cache).
    if created and (eol := image_eol.check(batch, out.pool_id, datetime.now(timezone.utc))):
        log.warning("%s", eol)
    added = batch.add_tasks(job_id, specs)
    reporter.info(f"tasks: {added} added, {len(specs) - added} already there")
    # Every task is in. Job life cycle (docs/architecture.md): nobody watches a --no-wait
    # job, so it completes with its last task; a watched one stays active until the
    # runner has seen its end (failed tasks can then be rerun: `runner retry`). A job
    # created now already stays (noAction); a resumed one may have been set to complete.
    if not (opts.wait and created):
        batch.complete_when_tasks_done(job_id, complete=not opts.wait)

    if not opts.wait:
        return Submitted(job_id, added, summary.uploaded, summary.skipped)
    return watch(session, manifest, opts, reporter, index=job_cache.index if job_cache is not None else None)


def watch(
    session: Session,
    manifest: mf.Manifest,
    opts: SubmitOptions,
    reporter: Reporter,
    *,
    on_results: Callable[[JobResults], None] | None = None,
    index: dict[str, result_cache.Entry] | None = None,
) -> JobResults:
    """Steps 6-8: monitor, then collect (``index``: the listing of ``cache/`` the submission
    read, see :func:`collect`). When monitoring ends otherwise (Ctrl-C, timeout, a pool that
    cannot run tasks, an unreachable service), the job is left to complete by itself with
    its last task: nobody watches it any more. While the merge runs, the per-file results
    already come down (:mod:`runner.prefetch`)."""
    dest = opts.dest or default_dest(manifest.job_id)
    early = Prefetch(session, manifest, dest)
    try:
        _, tasks = _monitor(session, manifest, opts, reporter, on_poll=early.poll)
        while (
            split := split_packs_with_missing_inputs(session, manifest, opts.timeout, reporter)
        ) is not None:
            manifest = split  # a pack's missing input fails that file alone: the others run again
            early.cancel()  # it watched the tasks of the old plan
            early = Prefetch(session, manifest, dest)
            _, tasks = _monitor(session, manifest, opts, reporter, on_poll=early.poll)
    except UnreachableError:
        early.cancel()
        raise  # it cannot be told either
    except (KeyboardInterrupt, RunnerError):
        early.cancel()
        _let_complete(session, manifest.job_id)
        raise
    return collect(
        session,
        manifest,
        dest,
        reporter,
        keep=opts.keep,
        on_results=on_results,
        index=index,
        prefetched=early.finish(),
        tasks=tasks,  # the list that confirmed the end: final, not read again
    )


def results(session: Session, manifest: mf.Manifest, opts: SubmitOptions, reporter: Reporter) -> JobResults:
    """``runner results``: collect a finished job (a merge blocked by a failure counts as
    finished, a terminated job too: what never ran is *pending*). A job still running is
    :class:`JobStillRunning`, or with ``opts.wait`` watched until it ends, as ``submit`` does."""
    job_id = manifest.job_id
    job = session.batch.get_job(job_id)
    if job.state == "active" and _confirmed(session, manifest) is None:
        if not opts.wait:
            c = session.batch.task_counts(job_id)
            raise JobStillRunning(
                f"job {job_id} is still running: {c.completed} of {len(manifest.task_ids)} task(s) completed",
                hint=f"`runner results {job_id} --wait` waits for the rest (`runner status {job_id}`)",
            )
        return watch(session, manifest, opts, reporter)
    if opts.wait and job.state == "active":  # ended before anyone watched: a pack may need its split
        split = split_packs_with_missing_inputs(session, manifest, opts.timeout, reporter)
        if split is not None:
            return watch(session, split, opts, reporter)
    return collect(session, manifest, opts.dest or default_dest(job_id), reporter, keep=opts.keep)


def _let_complete(session: Session, job_id: str) -> None:
    """Best effort, one quick request (Ctrl-C must stay quick): ``onAllTasksComplete:
    terminateJob``; an error here must not hide the first."""
    try:
        session.batch.complete_when_tasks_done(job_id, quick=True)
    except RunnerError as err:
        log.warning("job %s may stay active: %s", job_id, err)


def _refuse_changed_inputs(
    session: Session, manifest: mf.Manifest, items: list[UploadItem], local: Mapping[str, Path]
) -> None:
    """On resume, refuse (before anything is uploaded) inputs whose content changed since their
    task was added: its results are those of the old content, and Batch cannot rerun a task
    that succeeded. Inputs whose task does not exist yet (interrupted upload) may change."""
    storage, out = session.storage, session.outputs
    changed = storage.changed(out.input_container, items)
    if not changed:
        return
    task_of = {t.blob: t for t in manifest.tasks}
    existing = (
        session.batch.existing_task_ids(manifest.job_id)
        if session.batch.job_exists(manifest.job_id)
        else set()
    )
    runs = manifest.task_of
    tars = {pack_tars.input_tar_blob(manifest.job_id, p.task_id): p for p in manifest.packs}
    stale = [
        task_of[i.blob_name].input
        for i in changed
        if i.blob_name in task_of and runs[task_of[i.blob_name].task_id] in existing
    ]
    changed_tars = [i.blob_name for i in changed if (p := tars.get(i.blob_name)) and p.task_id in existing]
    stale += _changed_in_tars(session, manifest, changed_tars, local)  # which files of the pack
    if stale:
        names = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise UsageError(
            f"{len(stale)} input(s) changed since job {manifest.job_id} ran them: {names}",
            hint="their results are of the old content: submit the changed files under a new --job-id",
        )


def _changed_in_tars(
    session: Session, manifest: mf.Manifest, blobs: list[str], local: Mapping[str, Path]
) -> list[str]:
    """The inputs whose local bytes differ from their member in these (changed) input tars of
    packs that exist: one download per changed tar, only on a resume that changed something."""
    by_id = manifest.by_task
    stale: list[str] = []
    for blob in blobs:
        data = session.storage.try_download_bytes(session.outputs.input_container, blob) or b""
        stale += [by_id[fid].input for fid in pack_tars.changed_members(data, local)]
    return stale


def _upload_label(files: int, blobs: int) -> str:
    """``uploading 1,001 input files in 21 blobs`` (packs' files go in one tar each)."""
    packed = "" if blobs == files else f" in {blobs:,} blob{'' if blobs == 1 else 's'}"
    return f"uploading {files:,} input files{packed}"


def _input_tars(manifest: mf.Manifest, local: Mapping[str, Path], workdir: Path) -> list[UploadItem]:
    """The bundled packs' input tars, built under ``workdir`` (:mod:`runner.pack_tars`)."""
    try:
        return pack_tars.input_tars(manifest, local, workdir)
    except OSError as exc:
        raise UsageError(
            f"cannot pack the inputs of job {manifest.job_id}: {exc.filename or ''} {exc.strerror or exc}",
            hint="check that every input file is still there and readable, then submit again",
        ) from None


def _planned_tasks(manifest: mf.Manifest) -> list[PlannedTask]:
    """The manifest's per-file Batch tasks (packs and single files), in file order."""
    packs = {p.task_id: p.file_ids for p in manifest.packs}
    return [PlannedTask(tid, packs.get(tid, (tid,))) for tid in manifest.file_task_ids]


def _packed(manifest: mf.Manifest, policy: PackPolicy) -> mf.Manifest:
    """``manifest`` with its packs made (:func:`runner.packing.group`) of the files that run:
    not those whose results came from the result cache."""
    cached = set(manifest.cached)
    files = [FileToRun(t.task_id, t.input, t.size) for t in manifest.tasks if t.task_id not in cached]
    grouped = group(files, policy)
    packs = tuple(mf.ManifestPack(t.task_id, t.file_ids) for t in grouped if t.file_ids != (t.task_id,))
    return replace(manifest, packs=packs)


def _manifest_for(
    session: Session, inputs: list[InputFile], opts: SubmitOptions, job_id: str
) -> tuple[mf.Manifest, bool]:
    """The new job's manifest, or the existing one when resuming (checked against the inputs);
    and whether it is a resume."""
    out = session.outputs
    tasks = tuple(
        mf.ManifestTask(
            task_id=str(n),
            input=i.relpath,
            blob=mf.input_blob(job_id, i.relpath),
            node_name=safe_node_name(i.relpath),
            size=i.size,
        )
        for n, i in enumerate(inputs, start=1)
    )
    policy = opts.pack_policy()
    fresh = mf.Manifest(
        job_id=job_id,
        created=mf.now_iso(),
        numwords=opts.numwords,
        aggregate=opts.aggregate and opts.command is None,
        command=opts.command,
        retries=opts.retries,
        tasks=tasks,
        merge_group_size=opts.merge_group_size,
        max_wall_clock=opts.max_wall_clock.total_seconds() if opts.max_wall_clock else None,
        allow_failures=opts.allow_failures,
        pack=policy.mode,
        merge_groups="reads",
    )
    fresh = _packed(fresh, policy)
    existing = mf.load(session.storage, out.input_container, job_id)
    if existing is None:
        if session.batch.job_exists(job_id):
            raise UsageError(
                f"job {job_id} exists but was not submitted by runner (no manifest)",
                hint="choose another --job-id",
            )
        return fresh, False
    if [t.input for t in existing.tasks] != [t.input for t in tasks]:
        raise UsageError(
            f"job {job_id} was submitted with other inputs; resume it with the same paths",
            hint="or choose another --job-id",
        )
    if opts.pack is None:  # not given: the job keeps how its tasks were shaped
        fresh = replace(fresh, pack=existing.pack)
    _refuse_changed_options(existing, fresh)
    return existing, True


def _refuse_changed_options(existing: mf.Manifest, fresh: mf.Manifest) -> None:
    """A resume keeps what made the job's tasks: every option that went into them must be the
    same (the others, --dest, --timeout, --wait, --keep/--cleanup, apply to this run only)."""
    mismatched = [
        f"{name} {_shown(a)} (now {_shown(b)})"
        for name, a, b in (
            ("--numwords", existing.numwords, fresh.numwords),
            ("--aggregate", existing.aggregate, fresh.aggregate),
            ("--command", existing.command, fresh.command),
            ("--retries", existing.retries, fresh.retries),
            ("--max-wall-clock", existing.max_wall_clock, fresh.max_wall_clock),
            ("--merge-group-size", existing.merge_group_size, fresh.merge_group_size),
            ("--allow-failures", existing.allow_failures, fresh.allow_failures),
            ("--pack", existing.pack, fresh.pack),
        )
        if a != b
    ]
    if mismatched:
        raise UsageError(
            f"job {existing.job_id} was submitted with {'; '.join(mismatched)}",
            hint="a resume keeps the job's options: repeat them, or choose another --job-id",
        )


def _shown(value: object) -> str:
    if value is None:
        return "unset"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _merge_blocked(c: TaskCounts, manifest: mf.Manifest) -> bool:
    """Nothing runs, something failed, and only merge tasks can still be waiting: worth a look
    (:func:`_confirmed`) whether they wait on a failure and can never run (with
    ``--allow-failures``: on a pack failed at staging, see :mod:`runner.merge_replan`)."""
    merges = len(manifest.merge_steps)
    return merges > 0 and c.failed > 0 and c.running == 0 and 1 <= c.active <= merges


def monitor(
    session: Session,
    manifest: mf.Manifest,
    opts: SubmitOptions,
    reporter: Reporter,
    *,
    on_poll: Callable[[TaskCounts], None] | None = None,
) -> TaskCounts:
    """Poll task counts until every task completed (or the merge is blocked); return the last counts.
    ``on_poll`` sees the counts of every poll that does not end the wait.

    One request per poll while tasks run. While tasks wait and none runs, the pool is
    looked at (:class:`~runner.pool_watch.PoolWatcher`: why nothing runs, or a fast
    failure) and the job too (:func:`_check_job_active`). A poll slower than
    ``opts.unresponsive_after`` is warned about; tasks going back to waiting (their
    node was preempted or left) are said. The end is confirmed by one task list (for a
    job polled by its list, the last poll's: no other request).
    """
    return _monitor(session, manifest, opts, reporter, on_poll=on_poll)[0]


def _monitor(
    session: Session,
    manifest: mf.Manifest,
    opts: SubmitOptions,
    reporter: Reporter,
    *,
    on_poll: Callable[[TaskCounts], None] | None = None,
) -> tuple[TaskCounts, list[TaskInfo]]:
    """:func:`monitor`, which also returns the task list that confirmed the end."""
    total = len(manifest.task_ids)
    deadline = time.monotonic() + opts.timeout.total_seconds()
    policy = polling.policy_for(session.outputs.batch_account_url, opts.poll_interval)
    pacer = polling.Pacer(policy, total)
    last: TaskCounts | None = None
    pool = PoolWatcher(session, reporter)
    host = session.outputs.batch_account_url
    slow = Slowness(
        opts.unresponsive_after,
        lambda: reporter.info(
            f"Batch ({host}) has not answered for {opts.unresponsive_after:g} s; still trying "
            f"(Ctrl-C stops waiting, the job keeps running)"
        ),
    )
    with reporter.tasks(total) as update:
        while True:
            with slow.watch():
                counts, listed = poll_tasks(session, manifest.job_id, total)
                update(counts)
                _say_requeued(last, counts, reporter)
                ending = counts.completed >= total or _merge_blocked(counts, manifest)
                if ending and (tasks := _confirmed(session, manifest, listed)) is not None:
                    return counts, tasks
                if on_poll is not None:
                    on_poll(counts)
                if counts.running == 0 and counts.active > 0:
                    pool.check()
                    _check_job_active(session, manifest.job_id)
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"job {manifest.job_id} did not finish within {opts.timeout}",
                    hint=f"it keeps running: `runner status {manifest.job_id}`, "
                    f"then `runner results {manifest.job_id}`",
                )
            pause = pacer.pause(counts.completed, changed=counts != last)
            last = counts
            time.sleep(pause)


#: A job of at most this many tasks is watched through its task list: one request (one page)
#: as for the counts, but exact at once, where Batch documents task counts as eventually
#: consistent (they can lag the tasks by seconds: a small job would wait that long for its end).
LIST_POLL_MAX_TASKS = 100


def poll_tasks(session: Session, job_id: str, total: int) -> tuple[TaskCounts, list[TaskInfo] | None]:
    """The job's task counts for one poll, with the task list they come from: for a job of at
    most :data:`LIST_POLL_MAX_TASKS` tasks, its list (one page); else Batch's counts (one
    ``get_job_task_counts``) and ``None``."""
    if total > LIST_POLL_MAX_TASKS:
        return session.batch.task_counts(job_id), None
    tasks = session.batch.list_tasks(job_id)
    done = [t for t in tasks if t.state is TaskState.COMPLETED]
    running = sum(t.state in (TaskState.PREPARING, TaskState.RUNNING) for t in tasks)
    succeeded = sum(t.result == "success" for t in done)
    waiting = len(tasks) - len(done) - running
    return TaskCounts(waiting, running, len(done), succeeded, len(done) - succeeded), tasks


def _say_requeued(last: TaskCounts | None, now: TaskCounts, reporter: Reporter) -> None:
    """Every task is added before monitoring starts, so more tasks waiting than at the last
    poll means tasks went back to waiting: retried after a failure (``--retries``),
    reactivated, or requeued because their node was preempted or left the pool."""
    if last is None:
        return
    back = now.active - last.active
    if back > 0:
        reporter.info(
            f"{back} task(s) back to waiting: retried after a failure, or requeued "
            "(their node was preempted or left the pool)"
        )


def _confirmed(
    session: Session, manifest: mf.Manifest, listed: list[TaskInfo] | None = None
) -> list[TaskInfo] | None:
    """Check the end with the task list (``listed``, just read, or read here): Batch documents
    task counts as possibly lagging. The list when the job ended, else ``None``.

    Done when every per-file task completed and every merge either completed or
    depends on a task that failed or is itself blocked (Batch's default: it never runs).
    """
    tasks = listed if listed is not None else session.batch.list_tasks(manifest.job_id)
    states = {t.id: t for t in tasks}
    per_file = [states.get(tid) for tid in manifest.file_task_ids]
    if any(t is None or t.state is not TaskState.COMPLETED for t in per_file):
        return None
    stuck = partial_merge.blocking_failures(manifest, states)
    for step in manifest.merge_steps:
        merge = states.get(step.task_id)
        if merge is not None and merge.state is TaskState.COMPLETED:
            continue
        if not any(tid in stuck for tid in step.dependencies):
            return None  # it can still run
        stuck.add(step.task_id)
    final = states.get(MERGE_TASK_ID)
    if MERGE_TASK_ID in stuck and (final is None or final.state is not TaskState.COMPLETED):
        log.info("the merge is blocked by failed tasks: not waiting for it")
    return tasks


def _check_job_active(session: Session, job_id: str) -> None:
    """Fail at once when the job was terminated with tasks that never ran: they never will be.

    Decided from the job and the task list, never from task counts: Batch documents
    counts as possibly lagging, and a job that completed normally between the counts
    and the job read would look cancelled.
    """
    job = session.batch.get_job(job_id)
    if job.state != "completed":
        return
    never_ran = [t.id for t in session.batch.list_tasks(job_id) if t.state is not TaskState.COMPLETED]
    if not never_ran:
        return  # it finished: the next poll confirms it
    reason = job.terminate_reason or "terminated"
    why = "cancelled" if reason == "UserTerminate" else reason
    raise JobEnded(
        f"job {job_id} was terminated ({why}) with {len(never_ran)} task(s) that never ran",
        hint=f"what did finish: `runner results {job_id}`; to run it all: submit under a new --job-id",
    )


def collect(
    session: Session,
    manifest: mf.Manifest,
    dest: Path,
    reporter: Reporter,
    *,
    keep: bool = True,
    on_results: Callable[[JobResults], None] | None = None,
    index: dict[str, result_cache.Entry] | None = None,
    prefetched: Mapping[str, PlannedDownload] | None = None,
    tasks: list[TaskInfo] | None = None,
    ended: bool = False,
) -> JobResults:
    """Download results (the cached ones from their entries: ``index``, the listing of ``cache/``
    a submission read, spares another), gather failures, cache what ran and succeeded; raise
    :class:`TaskFailures` if any task failed. ``on_results`` sees the results first (before
    ``--cleanup`` deletes the job's blobs); ``prefetched``: what :mod:`runner.prefetch`
    downloaded already (not fetched again unless changed). ``tasks``: the job's task list
    as the caller just read it at the job's end (else it is listed here); ``ended``: the
    caller terminated the job already (no task ran), so it is not told to complete again."""
    out = session.outputs
    listed = tasks if tasks is not None else session.batch.list_tasks(manifest.job_id)
    states = {t.id: t for t in listed}
    states.update(result_cache.cached_states(manifest))
    cached = result_cache.sources(session.storage, out.output_container, manifest, index)
    failures: list[TaskFailure] = (
        session.batch.failed_tasks(manifest.job_id)
        if any(s.result == "failure" for s in states.values())
        else []
    )
    try:
        results = download(
            session.storage,
            out.output_container,
            manifest,
            dest,
            states,
            target=session.target.label,
            failures=failures,
            reporter=reporter,
            cached=cached,
            prefetched=prefetched,
        )
    except CorruptDownload as err:
        raise result_cache.drop_corrupt(session.storage, out.output_container, manifest, err) from None
    _say_reruns(results, reporter)
    if manifest.cached:  # --json says how many files came from the result cache
        cache_doc = {"files": len(manifest.tasks), "fromCache": len(manifest.cached)}
        results = dataclasses.replace(results, extra={**results.extra, "cache": cache_doc})
    if manifest.cache_keys:
        _publish(session, manifest, results, reporter, index)
    if on_results is not None:
        on_results(results)
    if failures:
        what = "file(s) or task(s)" if manifest.packs else "task(s)"  # a failed pack: its failed files
        raise TaskFailures(
            f"{len(results.failures)} {what} of job {manifest.job_id} failed",
            failures=list(results.failures),
            result=results,
            hint=_after_failures(session, manifest.job_id),
        )
    if keep:
        if not ended:  # nothing to rerun: leave the quota
            session.batch.complete_when_tasks_done(manifest.job_id)
    else:
        cleanup(session, manifest.job_id)
        reporter.info(f"job {manifest.job_id} and its blobs deleted (--cleanup)")
    return results


def _publish(
    session: Session,
    manifest: mf.Manifest,
    results: JobResults,
    reporter: Reporter,
    index: dict[str, result_cache.Entry] | None,
) -> None:
    """Cache what ran and succeeded (:func:`runner.cache.after_collect`), from ``submit``,
    ``results`` (a ``--no-wait`` job) and ``retry`` alike. A refusal is said, not raised: the
    results are there all the same."""
    try:
        container = session.outputs.output_container
        done = result_cache.after_collect(session.storage, container, manifest, results, index)
    except RunnerError as err:
        reporter.info(f"results not cached: {err}")
        return
    if done.written:
        reporter.info(f"cache: {done.written:,} result(s) stored for later jobs")


def _say_reruns(results: JobResults, reporter: Reporter, limit: int = 20) -> None:
    """One line per task that Batch ran more than once (retried after a failure, or requeued
    because its node was preempted or left), at most ``limit`` of them."""
    lines = rerun_lines([*results.files, *([results.corpus] if results.corpus else [])])
    for line in lines[:limit]:
        reporter.info(line)
    if len(lines) > limit:
        reporter.info(f"... and {len(lines) - limit} more task(s) ran more than once (see --json)")


def _after_failures(session: Session, job_id: str) -> str:
    """What the user can do about failed tasks, from the job's state (docs/architecture.md)."""
    if session.batch.get_job(job_id).state == "active":
        return (
            f"job {job_id} is kept active so they can run again: `runner retry {job_id}`; "
            f"`runner cancel {job_id}` or `runner clean {job_id}` ends it"
        )
    return f"job {job_id} is completed, so its tasks cannot run again: submit them under a new --job-id"


def cleanup(session: Session, job_id: str) -> tuple[bool, int]:
    """Delete the job and every blob under ``<job-id>/`` in the input and output containers
    (never the result cache's ``cache/``: a job id that would reach it is refused)."""
    if result_cache.is_reserved_job_id(job_id):
        raise UsageError(f"{job_id!r} is not a job id: the result cache's blobs are under cache/")
    out = session.outputs
    deleted_job = session.batch.delete_job(job_id)
    blobs = session.storage.delete_prefix(out.output_container, f"{job_id}/")
    blobs += session.storage.delete_prefix(out.input_container, f"{job_id}/")
    return deleted_job, blobs
