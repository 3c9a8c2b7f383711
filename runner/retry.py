"""``runner retry JOB``: run a job's failed tasks again, then wait and collect as ``submit`` does.

Contracts (docs/architecture.md, "Job life cycle"):

* Only an *active* job can rerun tasks (Batch reactivates tasks of active jobs
  only). A job watched by ``runner submit`` is kept active when tasks failed;
  a completed one is refused with one line that says what to do.
* Every failed task is reactivated (Batch's reactivate: the task runs again,
  its retry count starts over). A merge that waited on a failed task needs
  nothing: once its dependencies succeed, Batch runs it.
* A failed packed task reruns whole (the files of it that succeeded give the
  same results again); the error files of its files are deleted first, so
  that what comes back says only what failed this time.
* While the retry runs the job stays active; at the end the same rule as
  ``submit`` applies (all succeeded: it completes; failures again: kept active).
"""

from __future__ import annotations

import logging

from nodetask.packed import ERROR_FILE
from runner import manifest as mf
from runner.errors import UsageError
from runner.progress import Reporter
from runner.results import JobResults
from runner.submit import SubmitOptions, watch
from runner.targets import Session

log = logging.getLogger(__name__)


def retry(session: Session, job_id: str, opts: SubmitOptions, reporter: Reporter) -> JobResults:
    """Reactivate every failed task of ``job_id``, then monitor and collect (``opts``: dest,
    timeout, keep, poll interval). Raises :class:`~runner.errors.TaskFailures` if some fail again."""
    manifest = mf.require(session.storage, session.outputs.input_container, job_id)
    job = session.batch.get_job(job_id)
    failed = sorted(t.id for t in session.batch.list_tasks(job_id, only_failed=True))
    if job.state != "active":
        what = f"its {len(failed)} failed task(s) cannot run again" if failed else "nothing is left to run"
        raise UsageError(
            f"job {job_id} is {job.state}: {what} (Batch reruns tasks of active jobs only)",
            hint="submit the failed files under a new --job-id" if failed else f"`runner results {job_id}`",
        )
    session.batch.complete_when_tasks_done(job_id, complete=False)  # stays active while we watch
    packs = {p.task_id: p.file_ids for p in manifest.packs}
    for task_id in failed:
        for file_id in packs.get(task_id, ()):
            session.storage.delete_prefix(
                session.outputs.output_container, f"{job_id}/{file_id}/{ERROR_FILE}"
            )
        session.batch.reactivate_task(job_id, task_id)
    shown = ", ".join(failed[:10]) + (", …" if len(failed) > 10 else "")
    reporter.info(
        f"job {job_id}: {len(failed)} failed task(s) reactivated ({shown})"
        if failed
        else f"job {job_id}: no failed task to rerun"
    )
    return watch(session, manifest, opts, reporter)
