"""``runner submit --allow-failures``: the corpus merge runs on the files that succeeded.

Contract (the Batch side is in :mod:`runner.tasks`):

* :func:`write_placeholders`, before the tasks are added, writes a placeholder
  (:func:`runner.tasks.placeholder`) in place of every counts blob a merge reads
  and that does not exist yet; a task that succeeds overwrites its own. A merge's
  resource files therefore always exist, whichever of its sources failed.
* :func:`blocking_failures`: with the option, no failure blocks a merge (Batch
  satisfies dependents whatever the outcome), so the runner waits for the merges.
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


def blocking_failures(manifest: Manifest, states: dict[str, TaskInfo]) -> set[str]:
    """The failed tasks whose dependents never run: none with ``--allow-failures``."""
    if manifest.allow_failures:
        return set()
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
