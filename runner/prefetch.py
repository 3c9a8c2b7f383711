"""Per-file results downloaded while the merge runs (``runner submit``, ``results --wait``).

When every per-file task has completed, only the merge is left to run, and
it runs on one node slot for seconds while the runner waits. The per-file
results are final by then (Batch uploads a task's output files before it
records the task completed, and a completed task does not run again unless
someone reactivates it), so :class:`Prefetch` downloads them in that wait;
:func:`runner.results.download` then fetches only what is new or changed.

Contracts:

* :meth:`Prefetch.poll` sees each poll's task counts and does nothing else
  (no request) until the counts say every per-file task completed while a
  merge is still to finish. Counts may lag, so it then lists the tasks once
  and goes on only if every per-file task is completed there; otherwise it
  waits for the completed count to grow before listing again. The polls
  themselves stay one request each.
* Once started, one listing of ``<job>/`` in the output container, then the
  blobs of the per-file tasks (never the merge's; a bundled pack's one results tar,
  :mod:`runner.pack_tars`, which :func:`runner.results.download` unpacks) are downloaded in a
  background thread, each by the ETag it was listed with (a conditional
  GET: that version or an error, never a mix), in batches so that
  :meth:`cancel` stops it within one batch. Nothing is printed.
* :meth:`finish` waits for the thread and returns what was downloaded (blob
  name -> :class:`~runner.results.PlannedDownload`). An error of the early
  download is logged and costs nothing: what is not in the map is downloaded
  by :func:`runner.results.download`, as is a blob whose ETag changed since.
* Jobs with no merge task, and ``--command`` jobs (no aggregate), never
  prefetch: there is no wait to fill.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from runner import manifest as mf
from runner.batch_types import TaskCounts, TaskState
from runner.errors import RunnerError
from runner.results import PlannedDownload, plan_downloads
from runner.targets import Session
from runner.tasks import MERGE_TASK_ID

log = logging.getLogger(__name__)

#: Downloads per batch; :meth:`Prefetch.cancel` waits for at most one batch.
BATCH = 16


class Prefetch:
    """The early download of one job's per-file results into ``dest`` (see the module docstring)."""

    def __init__(self, session: Session, manifest: mf.Manifest, dest: Path) -> None:
        self._session = session
        self._manifest = manifest
        self._dest = dest
        self._merges = len(manifest.merge_steps)
        self._file_tasks = manifest.file_task_ids
        self._tried_at = -1  # the completed count of the last task listing
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._fetched: dict[str, PlannedDownload] = {}

    @property
    def started(self) -> bool:
        return self._thread is not None

    def poll(self, counts: TaskCounts) -> None:
        """Start the early download when ``counts`` (and then the task list) say it is time."""
        if self._thread is not None or self._merges == 0 or self._cancel.is_set():
            return
        pending = counts.active + counts.running
        if counts.completed < len(self._file_tasks) or not 0 < pending <= self._merges:
            return
        if counts.completed <= self._tried_at:
            return
        self._tried_at = counts.completed
        try:
            states = {t.id: t for t in self._session.batch.list_tasks(self._manifest.job_id)}
        except RunnerError as err:
            log.info("not downloading results early: %s", err)
            return
        if any(
            (t := states.get(tid)) is None or t.state is not TaskState.COMPLETED for tid in self._file_tasks
        ):
            return  # the counts ran ahead of the list
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        out = self._session.outputs
        storage = self._session.storage
        try:
            blobs = storage.list_blobs(out.output_container, f"{self._manifest.job_id}/")
            wanted = [
                p
                for p in plan_downloads(blobs, self._manifest, self._dest)
                if p.task_id != MERGE_TASK_ID and p.item.etag is not None
            ]
            log.info("downloading %d per-file result file(s) while the merge runs", len(wanted))
            for start in range(0, len(wanted), BATCH):
                if self._cancel.is_set():
                    return
                part = wanted[start : start + BATCH]
                storage.download_files(out.output_container, [p.item for p in part])
                self._fetched.update((p.item.blob_name, p) for p in part)
        except (RunnerError, OSError) as err:  # collect downloads whatever is missing
            log.info("early download stopped: %s", err)

    def cancel(self) -> None:
        """Stop after the batch in flight and wait for it (Ctrl-C, a timeout, an error)."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join()

    def finish(self) -> dict[str, PlannedDownload]:
        """Wait for the early download; what it downloaded, by blob name."""
        if self._thread is not None:
            self._thread.join()
        return dict(self._fetched)
