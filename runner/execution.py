"""What happened in a job, task by task: the data behind ``report``, ``--trace`` and ``status``.

Contracts:

* :func:`gather` reads a job with a bounded number of requests, whatever its
  size: the job, the pool, one listing of the pool's nodes, one ``$select``
  listing of the tasks (pages of 1,000), the manifest, one listing of the
  job's output blobs, the ``results.tar`` of at most :data:`MAX_PACK_TARS` failed
  bundled packs (:data:`MAX_PACK_TAR_BYTES` in all), and the stderr tail of at
  most :data:`MAX_STDERR_TAILS` failed tasks. Never a request per task otherwise.
* Times are what Batch says: ``created`` is the task's creation time,
  ``start``/``end`` those of its *last* attempt (Batch keeps no earlier ones),
  so the queue wait of a retried task includes its earlier attempts.
* Batch keeps no history of a pool's size. Node counts over time are derived
  from what is known (the allocation time of nodes still in the pool, the
  first and last task of nodes that left it), and :attr:`Execution.notes` says
  so. Slots are inferred: Batch tells the node, not the slot; tasks of one node
  are packed onto the lowest free slot in start order.
* Files, not only tasks (:attr:`Execution.files`): each input file's state,
  from its task and the same output listing. A file carried by a packed task
  shares its state, except in a failed pack, where a file with results and no
  ``nodetask_error.txt`` is done and the others failed. A failed pack's record
  names its failed files as its input.
* A bundled pack (:mod:`runner.pack_tars`) has no blob per file, only its
  ``results.tar``: for a failed one the tar is read (:mod:`runner.pack_outcomes`),
  so its files are told apart the same way, and a failed file carries the first
  line of its ``nodetask_error.txt`` (:attr:`FileStatus.error`). Past
  :data:`MAX_PACK_TARS` failed packs or :data:`MAX_PACK_TAR_BYTES`, the others'
  tars are not read: their files are all shown failed, and
  :attr:`Execution.unread_packs` and a note say so. A
  bundled pack's bytes out are its ``results.tar``'s size (from the listing).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from nodetask.bundle import RESULTS_TAR
from nodetask.packed import ERROR_FILE
from runner import manifest as mf
from runner import pack_tars
from runner.batch_types import STDERR_FILE, JobInfo, NodeInfo, PoolInfo, TaskInfo
from runner.errors import NotFoundError
from runner.pack_outcomes import FailedPack, PackOutcomes, read_outcomes
from runner.partial_merge import MissingInput, missing_in
from runner.targets import Session
from runner.tasks import MERGE_TASK_ID, counts_blob

log = logging.getLogger(__name__)

#: Failed tasks whose stderr tail is read (one request each); the rest are grouped by exit code.
MAX_STDERR_TAILS = 100
#: Failed bundled packs whose ``results.tar`` is read (one request each) to tell their files apart.
MAX_PACK_TARS = 20
#: And no more than these bytes of them in all (their sizes as listed).
MAX_PACK_TAR_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TaskRecord:
    """One task as the report, the trace and ``status`` show it."""

    id: str
    input: str
    kind: str  # "file", "partial-merge" or "merge"
    state: str
    result: str | None
    exit_code: int | None
    failure: str | None  # "category: code" when Batch reports a failure other than an exit code
    node_id: str | None
    created: datetime | None
    start: datetime | None
    end: datetime | None
    retries: int
    requeues: int
    bytes_in: int | None
    bytes_out: int | None
    slot: int | None = None
    stderr_tail: str = ""

    @property
    def queue_wait(self) -> timedelta | None:
        if self.created is None or self.start is None:
            return None
        return max(self.start - self.created, timedelta(0))

    @property
    def duration(self) -> timedelta | None:
        if self.start is None or self.end is None:
            return None
        return max(self.end - self.start, timedelta(0))

    @property
    def failed(self) -> bool:
        return self.result == "failure"


@dataclass(frozen=True)
class FileStatus:
    """One input file: its file id, input path, the Batch task that runs it, and its state
    (``done``, ``failed``, ``running`` or ``waiting``, as :func:`~runner.exec_summary.status_word`)."""

    file_id: str
    input: str
    task_id: str
    status: str
    #: A failed file's own error, when known (a bundled pack's ``nodetask_error.txt``, first line).
    error: str | None = None


@dataclass(frozen=True)
class Outputs:
    """What one listing of ``<job>/`` in the output container says, by file (or task) id, and
    what the results tars of failed bundled packs say (:attr:`tars`)."""

    sizes: dict[str, int]
    errors: set[str]
    #: The size of each ``<job>/<id>/results.tar`` by task id (bundled packs that wrote theirs).
    results_tars: dict[str, int] = field(default_factory=dict)
    tars: PackOutcomes = field(default_factory=PackOutcomes)


@dataclass(frozen=True)
class Execution:
    """A job's tasks, nodes and pool at one moment (:attr:`gathered_at`)."""

    job: JobInfo
    pool: PoolInfo | None
    nodes: tuple[NodeInfo, ...]
    tasks: tuple[TaskRecord, ...]
    gathered_at: datetime
    notes: tuple[str, ...] = field(default=())
    #: ``--allow-failures``: the inputs the corpus result was merged without, and why.
    missing_from_corpus: tuple[MissingInput, ...] = field(default=())
    files: tuple[FileStatus, ...] = ()
    #: Failed bundled packs whose ``results.tar`` was not read (past :data:`MAX_PACK_TARS`).
    unread_packs: tuple[str, ...] = ()
    #: What ``status`` says of those and of tars gone or unreadable (also in :attr:`notes`).
    pack_notes: tuple[str, ...] = ()

    @property
    def packed(self) -> bool:
        """Some task carries files other than its own id (``status`` then lists the files)."""
        return any(f.task_id != f.file_id for f in self.files)

    @property
    def slots_per_node(self) -> int:
        return self.pool.task_slots_per_node if self.pool is not None else 1

    @property
    def failed(self) -> list[TaskRecord]:
        return [t for t in self.tasks if t.failed]


def task_kind(task_id: str) -> str:
    if task_id == MERGE_TASK_ID:
        return "merge"
    return "partial-merge" if task_id.startswith(f"{MERGE_TASK_ID}-") else "file"


def sort_key(task_id: str) -> tuple[int, int, str]:
    """File tasks by number, then partial merges, then the final merge."""
    if task_id.isdigit():
        return (0, int(task_id), "")
    if task_id == MERGE_TASK_ID:
        return (2, 0, "")
    return (1, 0, task_id)


def gather(session: Session, job_id: str, *, stderr_tails: bool = True) -> Execution:
    """Everything the report needs about ``job_id``, in a bounded number of requests."""
    batch = session.batch
    job = batch.get_job(job_id)
    notes: list[str] = []
    pool: PoolInfo | None = None
    nodes: tuple[NodeInfo, ...] = ()
    if job.pool_id:
        try:
            pool = batch.get_pool(job.pool_id)
            nodes = batch.pool_health(job.pool_id).nodes
        except NotFoundError:
            notes.append(f"pool {job.pool_id} no longer exists: node data comes from the tasks only")
    infos = batch.list_tasks(job_id)
    man = mf.load(session.storage, session.outputs.input_container, job_id)
    if man is None:
        notes.append("no runner manifest: inputs and input sizes are unknown")
    outputs, pack_notes = _job_outputs(session, job_id, man, infos)
    notes += pack_notes
    records = [_record(t, man, outputs) for t in sorted(infos, key=lambda t: sort_key(t.id))]
    files = file_states(man, {r.id: r for r in records}, outputs) if man is not None else ()
    records = assign_slots(records)
    if stderr_tails:
        records = _with_stderr(session, job_id, records, notes)
    notes.append(
        "Batch keeps no history of node counts: nodes over time are those still in the pool "
        "(from their allocation time) and those that ran a task (from their first task)"
    )
    notes.append("slots are inferred (Batch reports the node of a task, not its slot)")
    missing = _missing(session, job_id, records) if man is not None and man.allow_failures else ()
    now = datetime.now(timezone.utc)
    return Execution(
        job,
        pool,
        nodes,
        tuple(records),
        now,
        tuple(notes),
        missing_from_corpus=missing,
        files=files,
        unread_packs=outputs.tars.unread,
        pack_notes=tuple(pack_notes),
    )


def _missing(session: Session, job_id: str, records: list[TaskRecord]) -> tuple[MissingInput, ...]:
    """What the corpus result lacks (its counts document's ``missing`` list), with each task's failure."""
    raw = session.storage.try_download_bytes(
        session.outputs.output_container, counts_blob(job_id, MERGE_TASK_ID)
    )
    why = {r.id: r.failure or f"exit code {r.exit_code}" for r in records if r.result == "failure"}
    return missing_in(raw, why)


def _outputs(session: Session, job_id: str) -> Outputs:
    """Bytes under each ``<job>/<id>/``, the ids with an error file and those with a results
    tar, from one listing."""
    sizes: dict[str, int] = defaultdict(int)
    errors: set[str] = set()
    tars: dict[str, int] = {}
    for blob in session.storage.list_blobs(session.outputs.output_container, f"{job_id}/"):
        parts = blob.name.split("/", 2)
        if len(parts) == 3:
            sizes[parts[1]] += blob.size
            if parts[2] == ERROR_FILE:
                errors.add(parts[1])
            elif parts[2] == RESULTS_TAR:
                tars[parts[1]] = blob.size
    return Outputs(dict(sizes), errors, tars)


def _job_outputs(
    session: Session, job_id: str, man: mf.Manifest | None, infos: list[TaskInfo]
) -> tuple[Outputs, list[str]]:
    """The output listing, with what the results tars of the failed bundled packs say (at most
    :data:`MAX_PACK_TARS` read; the module docstring); and the notes on the tars left unread."""
    outputs = _outputs(session, job_id)
    if man is None or not pack_tars.bundled(man):
        return outputs, []
    sizes = outputs.results_tars
    failed = {t.id for t in infos if t.result == "failure"} & sizes.keys()
    listed = [FailedPack(p.task_id, p.file_ids, sizes[p.task_id]) for p in man.packs if p.task_id in failed]
    if not listed:
        return outputs, []
    notes: list[str] = []
    tars = read_outcomes(
        session.storage, session.outputs.output_container, job_id, listed, MAX_PACK_TARS, MAX_PACK_TAR_BYTES
    )
    if tars.unread:
        shown = ", ".join(tars.unread[:10]) + (" …" if len(tars.unread) > 10 else "")
        notes.append(
            f"results.tar read for {len(listed) - len(tars.unread)} of {len(listed)} failed packs "
            f"(at most {MAX_PACK_TARS}, {MAX_PACK_TAR_BYTES // 2**20} MiB): every file of {shown} is "
            f"shown failed; `runner results {job_id}` unpacks them all"
        )
    if tars.unreadable:
        notes.append(f"results.tar gone or unreadable: pack(s) {', '.join(tars.unreadable)}")
    return replace(outputs, tars=tars), notes


def file_states(man: mf.Manifest, records: dict[str, TaskRecord], outputs: Outputs) -> tuple[FileStatus, ...]:
    """Every input file's state (see the module docstring)."""
    from runner.exec_summary import status_word  # it imports this module

    task_of = man.task_of
    cached = set(man.cached)
    out = []
    for f in man.tasks:
        if f.task_id in cached:  # its results came from the result cache: no task ran it
            out.append(FileStatus(f.task_id, f.input, "", "cached"))
            continue
        tid = task_of[f.task_id]
        rec = records.get(tid)
        word = status_word(rec) if rec is not None else "waiting"
        if word == "failed" and tid != f.task_id and _delivered(f.task_id, outputs):
            word = "done"
        error = outputs.tars.errors.get(f.task_id) if word == "failed" else None
        out.append(FileStatus(f.task_id, f.input, tid, word, error))
    return tuple(out)


def _delivered(file_id: str, outputs: Outputs) -> bool:
    """Results and no error file: under ``<job>/<file id>/``, or in its pack's results tar."""
    if file_id in outputs.tars.delivered:
        return True
    return outputs.sizes.get(file_id, 0) > 0 and file_id not in outputs.errors


def pack_label(names: list[str], failed: list[str]) -> str:
    """What a pack carries, for a person: ``3 files: a … c``, ``1 file: a``; when files of it
    failed, those (five at most) and how many of how many. ``""`` for a pack of no files."""
    if not names:
        return ""
    files = "file" if len(names) == 1 else "files"
    if failed:
        shown = ", ".join(failed[:5]) + (" …" if len(failed) > 5 else "")
        return f"{shown} ({len(failed)} of {len(names)} {files} failed)"
    return f"1 file: {names[0]}" if len(names) == 1 else f"{len(names)} files: {names[0]} … {names[-1]}"


def _pack_input(t: TaskInfo, man: mf.Manifest, outputs: Outputs) -> tuple[str, int, int]:
    """A packed task's input label (its failed files when it failed), bytes in and out (a
    bundled pack's: its results tar; else its files' blobs)."""
    pack = next((p for p in man.packs if p.task_id == t.id), None)
    if pack is None:
        return t.display_name, 0, 0
    by_file = man.by_task
    names = [by_file[fid].input for fid in pack.file_ids if fid in by_file]
    bad = [by_file[fid].input for fid in pack.file_ids if fid in by_file and not _delivered(fid, outputs)]
    label = pack_label(names, bad if t.result == "failure" else []) or t.display_name
    size_in = sum(by_file[fid].size for fid in pack.file_ids if fid in by_file)
    if pack_tars.bundled(man):
        return label, size_in, outputs.sizes.get(t.id, 0)
    return label, size_in, sum(outputs.sizes.get(fid, 0) for fid in pack.file_ids)


def _record(t: TaskInfo, man: mf.Manifest | None, outputs: Outputs) -> TaskRecord:
    entry = man.by_task.get(t.id) if man is not None else None
    label, size_in, size_out = (
        t.display_name,
        entry.size if entry is not None else None,
        outputs.sizes.get(t.id),
    )
    if entry is not None:
        label = entry.input
    elif man is not None and man.packs:
        label, size_in, size_out = _pack_input(t, man, outputs)
    failure = None
    if t.failure_code is not None and t.failure_code != "FailureExitCode":
        failure = f"{t.failure_category or 'failure'}: {t.failure_code}"
    return TaskRecord(
        id=t.id,
        input=label,
        kind=task_kind(t.id),
        state=t.state.value,
        result=t.result,
        exit_code=t.exit_code,
        failure=failure,
        node_id=t.node_id,
        created=t.creation_time,
        start=t.start_time,
        end=t.end_time,
        retries=t.retry_count,
        requeues=t.requeue_count,
        bytes_in=size_in,
        bytes_out=size_out,
    )


def assign_slots(records: list[TaskRecord]) -> list[TaskRecord]:
    """Give each task that ran a slot on its node: the lowest slot free at its start."""
    by_node: dict[str, list[TaskRecord]] = defaultdict(list)
    for r in records:
        if r.node_id is not None and r.start is not None:
            by_node[r.node_id].append(r)
    slot_of: dict[str, int] = {}
    for tasks in by_node.values():
        busy_until: list[datetime | None] = []  # per slot: end of its last task (None: still running)
        for r in sorted(tasks, key=lambda r: (r.start, sort_key(r.id))):
            assert r.start is not None
            free = [i for i, end in enumerate(busy_until) if end is not None and end <= r.start]
            slot = free[0] if free else len(busy_until)
            if slot == len(busy_until):
                busy_until.append(None)
            busy_until[slot] = r.end
            slot_of[r.id] = slot
    return [_replace_slot(r, slot_of.get(r.id)) for r in records]


def _replace_slot(r: TaskRecord, slot: int | None) -> TaskRecord:
    return r if slot is None else replace(r, slot=slot)


def _with_stderr(
    session: Session, job_id: str, records: list[TaskRecord], notes: list[str]
) -> list[TaskRecord]:
    failed = [r for r in records if r.failed]
    wanted = {r.id for r in failed[:MAX_STDERR_TAILS]}
    if len(failed) > MAX_STDERR_TAILS:
        notes.append(
            f"stderr read for the first {MAX_STDERR_TAILS} of {len(failed)} failed tasks; "
            "the others are grouped by exit code only"
        )
    out = []
    for r in records:
        if r.id in wanted:
            r = replace(r, stderr_tail=session.batch.task_file_tail(job_id, r.id, STDERR_FILE, 5))
        out.append(r)
    return out
