"""``runner submit --allow-failures``: the corpus merge runs on the files that succeeded.

Contract (the Batch side is in :mod:`runner.tasks`):

* :func:`write_placeholders`, before the tasks are added, writes a placeholder
  (:func:`runner.tasks.placeholder`) in place of every counts blob a merge reads
  and that does not exist yet; a task that succeeds overwrites its own. A merge's
  resource files therefore always exist, whichever of its sources failed.
* :func:`blocking_failures`: with the option, no failure blocks a merge (Batch
  satisfies dependents whatever the outcome), so the runner waits for the merges;
  but a pack that failed at file staging blocks them (:func:`staging_blockers`) until
  :mod:`runner.merge_replan` re-adds them after the pack's other files ran again.
* :func:`mark_missing`: a file whose input is gone says why in its placeholder.
* :func:`missing_from` reads the corpus counts file's ``missing`` list (written by
  ``nodetask merge --allow-missing``) and says for each input why it is missing:
  the failure of its task, when Batch reported one.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.batch_types import TaskFailure, TaskInfo, TaskState
from runner.errors import RunnerError
from runner.tasks import counts_blob, placeholder

if TYPE_CHECKING:
    from runner.manifest import Manifest
    from runner.targets import Session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MissingInput:
    """An input whose counts are not in the corpus result, and why."""

    task_id: str
    input: str
    why: str

    def to_json(self) -> dict[str, str]:
        return {"taskId": self.task_id, "input": self.input, "why": self.why}


def _placeholders(manifest: Manifest) -> dict[str, bytes]:
    """Every counts blob a merge reads -> the placeholder that stands in for it."""
    by_task = manifest.by_task
    wanted: dict[str, bytes] = {}
    inputs_of: dict[str, list[tuple[str, str]]] = {}
    for step in manifest.merge_steps:
        pairs: list[tuple[str, str]] = []
        for tid in step.sources:
            task = by_task.get(tid)
            mine = [(tid, task.input)] if task else inputs_of.get(tid, [])
            pairs += mine
            blob = counts_blob(manifest.job_id, tid, task.node_name if task else None)
            wanted[blob] = placeholder(mine)
        inputs_of[step.task_id] = pairs
    return wanted


def write_placeholders(session: Session, manifest: Manifest) -> int:
    """Write the placeholders whose counts blob does not exist yet; return how many."""
    storage, container = session.storage, session.outputs.output_container
    existing = {b.name for b in storage.list_blobs(container, f"{manifest.job_id}/")}
    todo = {name: body for name, body in _placeholders(manifest).items() if name not in existing}

    def one(item: tuple[str, bytes]) -> None:
        name, body = item
        try:
            storage.upload_bytes(container, name, body, overwrite=False)
        except RunnerError:
            if not storage.blob_exists(container, name):  # else: its task wrote it meanwhile
                raise

    with ThreadPoolExecutor(max_workers=storage.max_workers) as pool:
        list(pool.map(one, todo.items()))
    log.info("job %s: %d counts placeholder(s) written", manifest.job_id, len(todo))
    return len(todo)


def mark_missing(session: Session, manifest: Manifest, file_id: str, why: str) -> None:
    """Overwrite the placeholder of ``file_id``'s counts with one that also says ``why`` it is
    missing (kept by ``nodetask merge --allow-missing`` in the corpus's ``missing`` list, so the
    console, ``--json``, ``summary.tsv`` and the report give that reason)."""
    task = manifest.by_task[file_id]
    body = json.dumps({"missing": [{"task": file_id, "input": task.input, "why": why}]}).encode()
    blob = counts_blob(manifest.job_id, file_id, task.node_name)
    session.storage.upload_bytes(session.outputs.output_container, blob, body, overwrite=True)


def failed_at_staging(info: TaskInfo) -> bool:
    """Batch's shape of a task that never ran: a failure with no exit code."""
    return info.state is TaskState.COMPLETED and info.exit_code is None and info.failure_code is not None


def staging_blockers(manifest: Manifest, states: dict[str, TaskInfo]) -> set[str]:
    """The packs failed at staging that a merge still waits for (``states``: the job's tasks by id)."""
    packs = {p.task_id for p in manifest.packs}
    failed = [states[p] for p in packs if p in states and failed_at_staging(states[p])]
    if not failed:
        return set()
    merges = [states.get(step.task_id) for step in manifest.merge_steps]
    waiting = [m for m in merges if m is None or m.state is TaskState.ACTIVE]

    def waits_for(merge: TaskInfo | None, pack: TaskInfo) -> bool:
        if merge is None or merge.creation_time is None or pack.end_time is None:
            return True
        return merge.creation_time < pack.end_time

    return {p.id for p in failed if any(waits_for(m, p) for m in waiting)}


def blocking_failures(manifest: Manifest, states: dict[str, TaskInfo]) -> set[str]:
    """The failed tasks whose dependents never run. With ``--allow-failures``, only the packs
    failed at staging that a merge still waits for, until :func:`runner.merge_replan.rewire_merges`
    has re-added the merges without them."""
    if manifest.allow_failures:
        return staging_blockers(manifest, states)
    return {tid for tid, t in states.items() if t.state is TaskState.COMPLETED and t.result == "failure"}


def missing_from(corpus_counts: Path, failures: list[TaskFailure]) -> tuple[MissingInput, ...]:
    """The inputs the corpus result lacks (its ``missing`` list), each with why."""
    try:
        data = corpus_counts.read_bytes()
    except OSError:
        return ()
    why = {f.task_id: f.describe().removeprefix(f"task {f.task_id} ({f.display_name}): ") for f in failures}
    return missing_in(data, why)


def missing_in(corpus_counts: bytes | None, why: dict[str, str]) -> tuple[MissingInput, ...]:
    """The ``missing`` list of a corpus counts document; ``why`` by task id, when known."""
    try:
        data = json.loads(corpus_counts or b"")
    except ValueError:
        return ()
    items = data.get("missing") if isinstance(data, dict) else None
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        tid = str(item.get("task", "?"))
        reason = why.get(tid) or str(item.get("why") or "its task did not succeed")
        out.append(MissingInput(tid, str(item.get("input", "?")), reason))
    return tuple(out)
