"""``--allow-failures`` and a pack that failed at file staging: the merges wait, then are re-added.

With ``--allow-failures`` a pack's failure at staging (Batch could not download one of its
resource files: an input blob deleted after the pack was added) *blocks* the merges instead of
satisfying them (:attr:`runner.tasks.TaskSpec.blocks_dependents_at_staging`). Had they run at
once, they would have read the placeholders of every file of the pack, also of the files that
:mod:`runner.pack_recovery` runs again as a new task (``p1-2``), and the corpus would have lacked
them. Contract:

* :func:`runner.partial_merge.staging_blockers`: the packs that failed at staging and that a
  merge still waits for. Read from Batch alone, so that a runner started later
  (``runner results --wait``) decides the same: a merge that has not started and was
  created before the pack ended was planned with the pack among its dependencies; one
  created after it was re-added here, without it. A merge the job lacks (deleted, and the
  runner stopped before adding it again) waits too.
* :func:`rewire_merges`, once the pack's other files run again: every merge that has not started
  is deleted and added again (same id, same sources, so the same resource files) depending on
  the tasks that now carry its files, minus those packs. The merges then run after the rerun,
  and the corpus lacks only the files whose input is gone, as their placeholder says
  (:func:`runner.partial_merge.mark_missing`). Meanwhile the job is kept from completing
  (``onAllTasksComplete: noAction``): a job with no task left to run would end and take none.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from runner import cache as result_cache
from runner import manifest as mf
from runner.batch_types import TaskState
from runner.partial_merge import staging_blockers
from runner.progress import Reporter
from runner.replan import job_plan
from runner.targets import Session
from runner.tasks import MergeStep, TaskSpec, counts_blob, merge_task, through_identity

log = logging.getLogger(__name__)


def without(step: MergeStep, dropped: set[str]) -> MergeStep:
    """``step`` depending on its tasks but ``dropped`` (it still reads every source's counts)."""
    deps = tuple(d for d in step.dependencies if d not in dropped)
    if deps == step.dependencies:
        return step
    return replace(step, source_range=None, depends_on=deps)


def rewire_merges(session: Session, manifest: mf.Manifest, timeout: timedelta, reporter: Reporter) -> bool:
    """Re-add the merges that wait for a pack failed at staging, without it; ``True`` if any was.

    ``manifest``: the plan with the pack's other files carried by their new task (already added).
    ``timeout`` bounds the lifetime of the merges' SAS URLs (plus an hour), as for ``submit``."""
    job_id = manifest.job_id
    states = {t.id: t for t in session.batch.list_tasks(job_id)}
    dropped = staging_blockers(manifest, states)
    if not dropped:
        return False
    steps = [
        s
        for s in manifest.merge_steps
        if s.task_id not in states or states[s.task_id].state is TaskState.ACTIVE
    ]
    specs = _merge_specs(session, manifest, [without(s, dropped) for s in steps], timeout)
    session.batch.complete_when_tasks_done(job_id, complete=False)
    for step in reversed(steps):  # the final merge first: none is left waiting on a deleted one
        session.batch.delete_task(job_id, step.task_id)
    session.batch.add_tasks(job_id, specs)
    names = ", ".join(s.task_id for s in steps)
    reporter.info(
        f"merge(s) {names} added again without task(s) {', '.join(sorted(dropped))}: "
        "they run once the files run again are done"
    )
    log.info("job %s: merges %s re-added without %s", job_id, names, sorted(dropped))
    return True


def _merge_specs(
    session: Session, manifest: mf.Manifest, steps: list[MergeStep], timeout: timedelta
) -> list[TaskSpec]:
    """The Batch tasks of ``steps`` with the job's options, each counts blob through a read URL."""
    out = session.outputs
    job = job_plan(session, manifest, timeout)
    opts, access, expiry = job.opts, job.access, job.expiry
    node_names = {t.task_id: t.node_name for t in manifest.tasks}
    urls = {}
    for step in steps:
        for tid in step.sources:
            blob = result_cache.counts_source(manifest, tid) or counts_blob(
                manifest.job_id, tid, node_names.get(tid)
            )
            urls[tid] = access.read_url(out.output_container, blob, expiry)
    specs = [merge_task(step, opts, urls) for step in steps]
    return specs if opts.identity_id is None else [through_identity(s, opts.identity_id) for s in specs]
