"""Packing small input files into Batch tasks (``runner submit --pack auto|none|N``). No SDK here.

On Azure a task costs seconds before it does anything (scheduling, one
resource-file download and one output upload per file), so one task per
small file is the slowest and most expensive way to process many of them.
:func:`group` turns the files to run into tasks:

* Files are taken in the order given (file-id order) and never split. A file
  of :data:`LARGE_FILE` bytes or more is *large*: it stays one per task (it
  is counted by all the node's CPUs at once, so packing gains nothing) and
  keeps its file id as task id, as with ``--pack none``.
* Consecutive small files fill a pack until it holds :data:`TARGET_BYTES`
  bytes or its file cap (:data:`AUTO_MAX_FILES` for ``auto``, N for
  ``--pack N``); that many packs are then made even: the small files are
  spread over them in order, each pack about the same share of files and
  bytes (:func:`_balanced`), unless that would break a limit below.
  A pack of two or more files is the task ``p<k>``
  (``p1..pK`` in order); a pack left with one file is that file's own task.
* Batch's limits hold whatever the cap: a pack is also closed before its
  resource files (one per file plus the node code: a SAS URL, which percent-
  encodes the relative path, and a node path) could pass
  :data:`MAX_RESOURCE_BYTES` (half of Batch's 1 MB limit on a task and on an
  add-collection request, which the SDK splits), estimated from each path's
  length (:func:`resource_bytes`); ``--pack N`` stops at
  :data:`MAX_PACK_FILES`; the
  command line does not grow with the pack (the node finds the files in
  ``in/<file id>/``, see :mod:`nodetask.packed`); one ``outputFiles`` entry
  per task (``out/<file id>/...`` lands at ``<job-id>/<file id>/...``).

The planner takes ``(file id, input, size)`` triples and assumes nothing
about the ids (the result cache hands it only the files to run, so they need
not be contiguous). Deterministic: the same files and policy give the same
tasks, so the manifest that records them is reproducible.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runner.errors import UsageError

#: A pack is closed once it holds this many bytes. bench/bench_packing.py under the
#: ``azure-like`` weather: a task's fixed cost (0.2-0.5 s there, 2-7 s on Azure) is what
#: nodetask needs for about 10-20 MB, so packs of 16 MiB keep it under a tenth of the work
#: while a 200 x 1 MB corpus still makes enough tasks for a few node slots.
TARGET_BYTES = 16 * 1024 * 1024
#: At most this many files per pack with ``--pack auto``: each file is a resource-file
#: download on the node, and a failed pack is rerun whole by `runner retry`.
AUTO_MAX_FILES = 50
#: The largest ``--pack N``: the resource files of one task stay below about 0.4 MB.
MAX_PACK_FILES = 500
#: A pack's resource files stay under this many bytes (estimated, :func:`resource_bytes`).
MAX_RESOURCE_BYTES = 512 * 1024
#: Files this large run one per task (nodetask counts them with every CPU of the node).
LARGE_FILE = 8 * 1024 * 1024
PACK_PREFIX = "p"


@dataclass(frozen=True, slots=True)
class FileToRun:
    """A file the job must run: its file id (``"1".."N"``), relative path, size in bytes."""

    file_id: str
    input: str
    size: int


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One Batch task of per-file work: its id and the file ids it carries (in order)."""

    task_id: str
    file_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PackPolicy:
    """``--pack``: ``mode`` is ``"auto"``, ``"none"`` or the file cap as digits."""

    mode: str

    @property
    def max_files(self) -> int:
        if self.mode == "none":
            return 1
        return AUTO_MAX_FILES if self.mode == "auto" else int(self.mode)

    @property
    def target_bytes(self) -> int:
        return TARGET_BYTES


def parse_pack(text: str) -> PackPolicy:
    """``auto``, ``none`` or a number 1..:data:`MAX_PACK_FILES`; anything else is a UsageError."""
    value = text.strip().lower()
    if value in ("auto", "none"):
        return PackPolicy(value)
    if not value.isdigit() or not 1 <= int(value) <= MAX_PACK_FILES:
        raise UsageError(
            f"--pack must be auto, none or a number of files from 1 to {MAX_PACK_FILES} (got {text!r})"
        )
    return PackPolicy(str(int(value)))


def resource_bytes(relpath: str) -> int:
    """An upper estimate of one file's resource-file entry in a task's JSON: its SAS URL
    (host, container, ``<job-id>/inputs/``, the path percent-encoded: at most 3 bytes per
    UTF-8 byte, a user-delegation SAS) and its node path (``in/<id>/<name>``, at most 255)."""
    return 3 * len(relpath.encode("utf-8")) + 1024


def _chunks(files: Iterable[FileToRun], policy: PackPolicy) -> Iterable[list[FileToRun]]:
    current: list[FileToRun] = []
    size = resources = 0
    for f in files:
        if f.size >= LARGE_FILE or policy.max_files == 1:
            yield [f]
            continue
        entry = resource_bytes(f.input)
        if current and resources + entry > MAX_RESOURCE_BYTES:
            yield current
            current, size, resources = [], 0, 0
        current.append(f)
        size += f.size
        resources += entry
        if len(current) >= policy.max_files or size >= policy.target_bytes:
            yield current
            current, size, resources = [], 0, 0
    if current:
        yield current


def _weight(f: FileToRun, policy: PackPolicy) -> int:
    """A small file's share of a pack, scaled to an integer: the larger of its share of the
    file cap and of the byte target (``max(1/cap, size/target)`` times ``cap * target``)."""
    return max(policy.target_bytes, f.size * policy.max_files)


def _even_cuts(weights: list[int], k: int) -> list[int]:
    """Where ``k`` consecutive parts of ``weights`` end (each non-empty) so that each holds about
    ``1/k`` of the total: the cut nearest each ``j/k`` of the running sum (the earlier on a tie)."""
    sums = [0]
    for w in weights:
        sums.append(sums[-1] + w)
    n, total = len(weights), sums[-1]
    cuts: list[int] = []
    for j in range(1, k):
        lo, hi = (cuts[-1] if cuts else 0) + 1, n - (k - j)
        i = min(max(bisect.bisect_left(sums, -(-j * total // k)), lo), hi)
        if i > lo and abs(sums[i - 1] * k - j * total) <= abs(sums[i] * k - j * total):
            i -= 1
        cuts.append(i)
    return [*cuts, n]


def _balanced(
    files: Sequence[FileToRun], chunks: list[list[FileToRun]], policy: PackPolicy
) -> list[list[FileToRun]]:
    """The greedy ``chunks`` of ``files`` with their small files spread evenly over as many packs
    (60 files capped at 17 give 15/15/15/15, not 17/17/17/9), the files' order kept; the greedy
    ones when an even pack would break a limit (each even pack must be one chunk for
    :func:`_chunks`). Tasks stay in the order they close (at their last file), as the greedy's."""
    if policy.max_files == 1:
        return chunks
    large = [c for c in chunks if len(c) == 1 and c[0].size >= LARGE_FILE]
    small = [c for c in chunks if not (len(c) == 1 and c[0].size >= LARGE_FILE)]
    if len(small) < 2:
        return chunks
    pool = [f for c in small for f in c]
    cuts = _even_cuts([_weight(f, policy) for f in pool], len(small))
    even = [pool[a:b] for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]
    if any(sum(1 for _ in _chunks(c, policy)) != 1 for c in even):
        return chunks
    place = {f.file_id: i for i, f in enumerate(files)}
    return sorted([*even, *large], key=lambda c: place[c[-1].file_id])


def group(files: Sequence[FileToRun], policy: PackPolicy) -> list[PlannedTask]:
    """The tasks that run ``files``, in the order they fill up (a large file at once); every
    file in exactly one task, none split, a pack's files in the order given."""
    seen: set[str] = set()
    for f in files:
        if f.file_id in seen:
            raise ValueError(f"file id {f.file_id} given twice")
        seen.add(f.file_id)
    tasks: list[PlannedTask] = []
    packs = 0
    for chunk in _balanced(files, list(_chunks(files, policy)), policy):
        if len(chunk) == 1:
            tasks.append(PlannedTask(chunk[0].file_id, (chunk[0].file_id,)))
        else:
            packs += 1
            tasks.append(PlannedTask(f"{PACK_PREFIX}{packs}", tuple(f.file_id for f in chunk)))
    return tasks


def pack_help() -> str:
    """The ``--pack`` help text, with the figures the planner uses."""
    return (
        "Group small input files into tasks: auto (default; files up to "
        f"{TARGET_BYTES // 2**20} MiB per task and at most {AUTO_MAX_FILES} files, "
        f"files of {LARGE_FILE // 2**20} MiB or more alone; measured with bench/bench_packing.py), "
        f"none (one task per file) or N (at most N files per task, 1..{MAX_PACK_FILES}). "
        "With --command, tasks are packed only when --pack is given: the command then runs "
        "once per file inside the task."
    )
