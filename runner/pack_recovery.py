"""A pack that Batch could not start because one of its inputs is gone: fail that file alone.

Batch downloads a task's resource files before it runs the task; one that cannot be
downloaded fails the whole task at file staging (``failureInfo`` set, no exit code), so
one input blob deleted after its pack was added (by hand, by a lifecycle rule, by a
`runner clean` from elsewhere) would fail every file of the pack with one error. After
monitoring, :func:`split_packs_with_missing_inputs` looks at each pack that failed that
way:

* the pack's input blobs are compared with one listing of ``<job-id>/inputs/`` (never
  the failure's message text); a file whose blob is missing is *that file's* failure:
  its error file (``<job-id>/<file id>/nodetask_error.txt``, what a pack writes for a
  file it could not process) names the blob and says what to do, and it stays with the
  failed pack, whose failure it is;
* the pack's other files are added again as a new task ``<pack>-<n>`` (``p1-2``; a single
  file: the task of its file id) with the same options, recorded in the manifest, so
  they deliver their results in this run. The merges keep depending on the failed pack:
  a corpus without the missing file is not reported as complete. With ``--allow-failures``
  the merges waited for the pack (it blocks them when it fails at staging): they are
  re-added without it, after the new task (:mod:`runner.merge_replan`), and the missing
  file's counts placeholder says why it is missing.

A bundled pack (:mod:`runner.pack_tars`) has one input blob, its input tar: there is no file
to single out when it is missing, so every file of the pack fails with the task's staging
error (:func:`runner.results.per_file_failures` says so and what to do); a resume (the same
`runner submit ... --job-id`) uploads the tar again from the local files, and `runner retry`
reruns the pack.

A pack that failed at staging with every blob present (a transient download error)
is left as it is: `runner retry` reruns it whole. `runner retry` of the failed pack
runs all its files again once the blob is back (their results are the same bytes).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from nodetask.packed import ERROR_FILE
from runner import manifest as mf
from runner import merge_replan, pack_tars, partial_merge
from runner.batch_types import TaskInfo
from runner.packing import PlannedTask
from runner.progress import Reporter
from runner.replan import job_plan
from runner.targets import Session
from runner.tasks import PlannedInput, TaskSpec, plan

log = logging.getLogger(__name__)


def _failed_at_staging(info: TaskInfo) -> bool:
    """Batch's shape of a task that never ran: a failure with no exit code."""
    return info.exit_code is None and info.failure_code is not None


def missing_input_error(job_id: str, container: str, task: mf.ManifestTask) -> str:
    """The error of a file whose input blob is gone: which blob, and what to do."""
    return (
        f"input {task.input}: its blob {container}/{task.blob} is missing (deleted after it was "
        f"uploaded?), so the packed task could not download it; the pack's other files were run "
        f"again without it. Upload it again with the same `runner submit ... --job-id {job_id}` "
        f"(a resume uploads missing inputs), then `runner retry {job_id}`\n"
    )


def _new_task_id(pack_id: str, taken: set[str]) -> str:
    base = pack_id.split("-", 1)[0]
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _split(
    manifest: mf.Manifest, pack: mf.ManifestPack, missing: set[str]
) -> tuple[mf.Manifest, PlannedTask]:
    """``manifest`` with ``pack`` keeping only its ``missing`` files and a new task for the rest."""
    kept = tuple(f for f in pack.file_ids if f in missing)
    rest = tuple(f for f in pack.file_ids if f not in missing)
    new_id = rest[0] if len(rest) == 1 else _new_task_id(pack.task_id, set(manifest.task_ids))
    packs = [mf.ManifestPack(pack.task_id, kept) if p.task_id == pack.task_id else p for p in manifest.packs]
    if len(rest) > 1:
        packs.append(mf.ManifestPack(new_id, rest))
    return replace(manifest, packs=tuple(packs)), PlannedTask(new_id, rest)


def _specs(
    session: Session, manifest: mf.Manifest, tasks: list[PlannedTask], timeout: timedelta
) -> list[TaskSpec]:
    """The Batch tasks that run ``tasks`` with the job's options (no merge: it exists)."""
    out = session.outputs
    job = job_plan(session, manifest, timeout)
    opts, access, expiry = job.opts, job.access, job.expiry
    by_file = manifest.by_task
    wanted = {fid for t in tasks for fid in t.file_ids}
    inputs = [
        PlannedInput(fid, by_file[fid].input, access.read_url(out.input_container, by_file[fid].blob, expiry))
        for fid in sorted(wanted, key=int)
    ]
    return plan(inputs, opts, aggregate=False, counts_urls=None, tasks=tasks)


def split_packs_with_missing_inputs(
    session: Session, manifest: mf.Manifest, timeout: timedelta, reporter: Reporter
) -> mf.Manifest | None:
    """Fail alone the files of failed packs whose input blob is missing; add the others again.

    Returns the updated manifest (saved) when tasks were added, else ``None``. ``timeout``
    bounds the lifetime of the new tasks' SAS URLs (plus an hour), as for ``submit``."""
    packs = {p.task_id: p for p in manifest.packs}
    if not packs or pack_tars.bundled(manifest):
        return None  # a bundled pack has one input, its tar: see the module docstring
    failed = [
        t
        for t in session.batch.list_tasks(manifest.job_id, only_failed=True)
        if t.id in packs and _failed_at_staging(t)
    ]
    if not failed:
        return None
    out = session.outputs
    present = {b.name for b in session.storage.list_blobs(out.input_container, f"{manifest.job_id}/inputs/")}
    by_file = manifest.by_task
    new_tasks: list[PlannedTask] = []
    for info in failed:
        pack = packs[info.id]
        missing = {fid for fid in pack.file_ids if by_file[fid].blob not in present}
        if not missing or len(missing) == len(pack.file_ids):
            continue
        for fid in sorted(missing, key=int):
            error = missing_input_error(manifest.job_id, out.input_container, by_file[fid])
            blob = f"{manifest.job_id}/{fid}/{ERROR_FILE}"
            session.storage.upload_bytes(out.output_container, blob, error.encode("utf-8"), overwrite=True)
        manifest, task = _split(manifest, pack, missing)
        new_tasks.append(task)
        names = ", ".join(by_file[f].input for f in sorted(missing, key=int))
        reporter.info(
            f"task {pack.task_id}: input(s) missing from the input container ({names}); "
            f"its {len(task.file_ids)} other file(s) run again as task {task.task_id}"
        )
    if new_tasks:
        mf.save(session.storage, out.input_container, manifest)
        session.batch.add_tasks(manifest.job_id, _specs(session, manifest, new_tasks, timeout))
    if manifest.allow_failures and _allow_failures_merges(session, manifest, timeout, reporter):
        return manifest
    return manifest if new_tasks else None


def _allow_failures_merges(
    session: Session, manifest: mf.Manifest, timeout: timedelta, reporter: Reporter
) -> bool:
    """``--allow-failures``: each file whose blob is missing says so in its counts placeholder, and
    the merges that waited for a pack failed at staging are re-added without it, so that they
    read the counts of the files run again (:mod:`runner.merge_replan`)."""
    states = {t.id: t for t in session.batch.list_tasks(manifest.job_id)}
    blockers = partial_merge.staging_blockers(manifest, states)
    if not blockers:
        return False
    out = session.outputs
    present = {b.name for b in session.storage.list_blobs(out.input_container, f"{manifest.job_id}/inputs/")}
    blocked = {fid for p in manifest.packs if p.task_id in blockers for fid in p.file_ids}
    for t in manifest.tasks:
        if t.task_id in blocked and t.blob not in present:
            why = missing_input_error(manifest.job_id, out.input_container, t).removeprefix(
                f"input {t.input}: "
            )
            partial_merge.mark_missing(session, manifest, t.task_id, why.strip())
    return merge_replan.rewire_merges(session, manifest, timeout, reporter)
