"""The job's task options rebuilt from its manifest, for tasks added after ``submit``.

Pack recovery (:mod:`runner.pack_recovery`) and the merges re-added under
``--allow-failures`` (:mod:`runner.merge_replan`) add tasks to a job that exists:
they must carry exactly the options the manifest recorded, and URLs that reach
what they read (SAS or the pool identity: :mod:`runner.task_access`) for the
run's ``timeout`` plus an hour, as ``submit``'s do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from runner import manifest as mf
from runner.nodecode import ensure_node_code
from runner.targets import Session
from runner.task_access import TaskAccess, task_access
from runner.tasks import PlanOptions


@dataclass(frozen=True)
class Replan:
    """What new tasks of a job are built with: its options, how URLs are made, until when."""

    opts: PlanOptions
    access: TaskAccess
    expiry: datetime


def job_plan(session: Session, manifest: mf.Manifest, timeout: timedelta) -> Replan:
    """The options of ``manifest``'s job (node code uploaded if it is not there)."""
    out = session.outputs
    access = task_access(session)
    expiry = datetime.now(timezone.utc) + timeout + timedelta(hours=1)
    code = ensure_node_code(session.storage, out.application_container)
    opts = PlanOptions(
        job_id=manifest.job_id,
        numwords=manifest.numwords,
        retries=manifest.retries,
        max_wall_clock=None if (wall := manifest.max_wall_clock) is None else timedelta(seconds=wall),
        code_url=access.read_url(out.application_container, code.blob_name, expiry),
        output_container_url=access.write_url(out.output_container, expiry),
        command_template=manifest.command,
        identity_id=access.identity_id,
        allow_failures=manifest.allow_failures,
    )
    return Replan(opts, access, expiry)
