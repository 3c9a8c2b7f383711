"""A job built by hand, task by task, for paths the runner's own plan never produces.

The tests that use it need a file task that fails on purpose and a merge that depends on it
(Batch's default: the failed dependency blocks the merge), with the runner's manifest saved
so that ``monitor``, ``collect`` and ``retry`` treat the job as one of theirs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from runner import manifest as mf
from runner.outputs import Outputs
from runner.targets import Session
from runner.tasks import MERGE_TASK_ID, OutputFileSpec, TaskSpec

COUNTS_JSON = '{"schema":1,"top":[["w",2]],"totals":{"words":2}}'


def write_counts(name: str) -> str:
    """A shell fragment writing a valid counts file ``out/<name>`` (uploaded by the task)."""
    return f"mkdir -p out && echo {json.dumps(COUNTS_JSON)} > out/{name}"


def shell_tasks(session: Session, out: Outputs, job_id: str) -> Callable[..., TaskSpec]:
    """A maker of tasks that run ``/bin/sh -c SCRIPT`` and upload ``out/**`` to the job's
    ``<job-id>/<task-id>/`` (as the runner's tasks do); keywords go to :class:`TaskSpec`
    (dependencies)."""
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    sink = OutputFileSpec("out/**/*", session.storage.container_write_url(out.output_container, expiry), "")

    def task(task_id: str, script: str, **deps: Any) -> TaskSpec:
        return TaskSpec(
            id=task_id,
            display_name=task_id,
            command_line=f"/bin/sh -c '{script}'",
            resource_files=(),
            output_files=(dataclasses.replace(sink, path=f"{job_id}/{task_id}"),),
            **deps,
        )

    return task


def two_files_and_a_merge(
    session: Session, out: Outputs, job_id: str, scripts: dict[str, str]
) -> mf.Manifest:
    """Save a manifest of files ``1`` (ok.txt) and ``2`` (bad.txt) and add three tasks to a
    new job: ``1`` and ``2`` run ``scripts["1"]`` / ``scripts["2"]``, the merge runs
    ``scripts["merge"]`` once both have completed successfully. Returns the manifest."""
    tasks = (
        mf.ManifestTask("1", "ok.txt", mf.input_blob(job_id, "ok.txt"), "ok.txt", 1),
        mf.ManifestTask("2", "bad.txt", mf.input_blob(job_id, "bad.txt"), "bad.txt", 1),
    )
    manifest = mf.Manifest(job_id, mf.now_iso(), 3, True, None, 0, tasks)
    mf.save(session.storage, out.input_container, manifest)
    task = shell_tasks(session, out, job_id)
    session.batch.ensure_job(job_id, out.pool_id, uses_task_dependencies=True)
    session.batch.add_tasks(
        job_id,
        [
            task("1", scripts["1"]),
            task("2", scripts["2"]),
            task(MERGE_TASK_ID, scripts["merge"], depends_on_range=(1, 2)),
        ],
    )
    return manifest
