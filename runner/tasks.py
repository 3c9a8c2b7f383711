"""The task plan of a job: what each Batch task runs, reads and writes. No SDK here.

Contracts:

* Per-file tasks have numeric ids ``"1".."N"`` (in the order of the inputs'
  relative paths), so the aggregate can depend on them with one
  ``taskIdRanges`` entry whatever N is; ``displayName`` is the input's
  relative path (truncated to Batch's 1024 characters).
* A task reads its input (a read-only SAS scoped to that blob) and the node
  code (``nodetask.pyz``, read-only SAS) as resource files, and sends what it
  writes under ``out/`` to the output container at ``<job-id>/<task-id>/``
  through ``outputFiles`` with a create+write container SAS, uploaded on task
  completion (success or failure, so partial output and logs are kept).
* The input lands on the node at ``in/<safe name>``: the basename with every
  character outside letters, digits, ``.``, ``-``, ``_`` replaced by ``_``.
  Each task has its own working directory, so these names cannot collide;
  they need no quoting on any command line (``shlex.quote`` is still applied),
  and the original name is restored on download.
* No secret is on any command line: SAS URLs live only in resource files and
  output file destinations.
* With a pool identity (``PlanOptions.identity_id``: ``--auth entra`` and the
  outputs' ``poolIdentityResourceId``) every URL is a plain one, without SAS, and
  every resource file and output destination names that identity
  (``identityReference``): no SAS exists in the job at all (:func:`through_identity`).
* The aggregate task ``merge`` depends on ``1..N`` and reads exactly their
  counts files, each through a read-only SAS scoped to that blob. Above
  :data:`MERGE_GROUP_SIZE` files (Batch's 1 MB limit on a task), partial
  merges ``merge-1..merge-K`` each take a group of consecutive tasks and
  ``merge`` depends on (and reads) theirs: see :func:`merge_steps`. A job with
  bundled packs groups by what a merge downloads instead (one resource file per
  pack's results tar, :func:`merge_steps_by_reads`), and its final merge, when the
  grouping by files would have had two levels, lists the corpus inputs as that one
  does (``--order``): the corpus result is byte for byte the same however it was grouped.
* ``--allow-failures``: every task a merge reads has ``exitConditions`` whose
  ``dependencyAction`` is ``satisfy`` for every way of failing, and the runner
  writes a *placeholder* in place of each counts blob before the tasks are added
  (:func:`placeholder`; a task that succeeds overwrites it), so a merge always
  finds its resource files and ``nodetask merge --allow-missing`` sums what is
  there and lists what is not.
* Otherwise Batch's default applies when a task fails: the dependency is not satisfied
  and the merges after it stay blocked. The runner detects that state (every
  merge either completed or waiting on a failed or blocked task) and reports
  the aggregate as *skipped* rather than waiting: a corpus-wide result
  computed from part of the corpus would look complete and be wrong.
* ``--command TEMPLATE``: ``{input}`` and ``{output_dir}`` are replaced by the
  shlex-quoted node paths; there is no aggregate; everything the command
  writes under the output directory comes back.
* Packed tasks (:mod:`runner.packing`): a task ``p<k>`` carrying several files
  reads each as ``in/<file id>/<safe name>`` and runs ``nodetask pack`` (the
  command line does not grow with the pack); one ``outputFiles`` entry sends
  ``out/<file id>/...`` to ``<job-id>/<file id>/...``, so every file's results
  are where an unpacked task puts them. A merge depends on the tasks that
  carry its files (``taskIdRanges`` when they are the plain ``1..N``,
  ``taskIds`` otherwise) and still reads every file's counts blob.
* A delta merge (:mod:`runner.delta_merge`, :class:`DeltaSources`) is the job's one ``merge``:
  a cached corpus's counts, minus cached counts, plus the counts of the files new or changed.
* Bundled packs (:mod:`runner.pack_tars`: ``plan(bundles=...)`` gives each pack's input tar
  URL): the pack reads one resource file, ``in.tar``, and runs ``nodetask pack --in-tar``; its
  one ``outputFiles`` entry sends ``out/results.tar`` to ``<job-id>/<pack id>/results.tar``.
  A merge reads such a pack's results tar once, as ``counts/<pack id>.<lo>-<hi>.tar``
  (``lo..hi``: the merge's file ids in that pack, the only members nodetask merge takes), so
  its resource files are one per pack, not one per file (``bundle_urls`` of
  :func:`merge_task`).
"""

from __future__ import annotations

import json
import re
import shlex
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import PurePosixPath

from nodetask.bundle import RESULTS_TAR
from nodetask.merge import CORPUS_COUNTS
from nodetask.results import COUNTS_SUFFIX, output_names
from runner.errors import UsageError
from runner.packing import PlannedTask

MERGE_TASK_ID = "merge"
NODE_CODE_FILE = "nodetask.pyz"
#: How a task runs nodetask: ``-S`` skips ``site`` (nodetask is standard library only), so
#: nothing a node's site-packages holds (``.pth`` files run at every start) can break it or
#: slow it: here that was 60 of a Python start's 75 CPU-ms, paid by every task.
NODE_PYTHON = ("python3", "-S")
NODE_INPUT_DIR = "in"
NODE_OUTPUT_DIR = "out"
NODE_MERGE_INPUT_DIR = "counts"
NODE_INPUT_TAR = "in.tar"
_SAFE = re.compile(r"[^\w.\-]", re.ASCII)
_MAX_DISPLAY_NAME = 1024


@dataclass(frozen=True, slots=True)
class ResourceFileSpec:
    """A file (``http_url``) or a container prefix (``container_url`` + ``blob_prefix``)."""

    file_path: str
    http_url: str | None = None
    container_url: str | None = None
    blob_prefix: str | None = None
    identity_id: str | None = None  # the pool identity that reads it (then the URL has no SAS)


@dataclass(frozen=True, slots=True)
class OutputFileSpec:
    """Files matching ``pattern`` go to ``container_url`` under ``path``."""

    pattern: str
    container_url: str
    path: str
    identity_id: str | None = None  # the pool identity that writes them (then the URL has no SAS)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One Batch task, independent of the SDK (``runner.batch`` converts it)."""

    id: str
    display_name: str
    command_line: str
    resource_files: tuple[ResourceFileSpec, ...]
    output_files: tuple[OutputFileSpec, ...]
    max_task_retry_count: int = 0
    max_wall_clock_time: timedelta | None = None
    depends_on_range: tuple[int, int] | None = None
    depends_on_ids: tuple[str, ...] = ()
    #: ``--allow-failures``: whatever way this task fails, its dependents still run (Batch's
    #: ``exitConditions`` with ``dependencyAction: satisfy``).
    satisfies_dependents_on_failure: bool = False
    #: ``--allow-failures``, a pack: a failure at file staging (an input blob gone) blocks its
    #: dependents instead, until the runner has rerun the pack's other files and re-added the
    #: merges (:mod:`runner.merge_replan`).
    blocks_dependents_at_staging: bool = False


@dataclass(frozen=True, slots=True)
class PlannedInput:
    """An input as the plan needs it: task id, relative path, SAS URL of its blob."""

    task_id: str
    relpath: str
    blob_url: str


@dataclass(frozen=True, slots=True)
class PlanOptions:
    job_id: str
    numwords: int
    retries: int
    max_wall_clock: timedelta | None
    code_url: str
    output_container_url: str
    command_template: str | None = None
    identity_id: str | None = None
    #: ``--allow-failures``: the merges run on the files that succeeded.
    allow_failures: bool = False


def safe_node_name(relpath: str) -> str:
    """Node-side file name for an input: the basename with unsafe characters replaced."""
    name = PurePosixPath(relpath).name
    safe = _SAFE.sub("_", name)
    if not safe or safe.startswith(".") or safe.startswith("-"):
        safe = "_" + safe
    return safe


def report_names(node_name: str) -> tuple[str, str]:
    """nodetask's output names for an input file: (``<stem>_OUTPUT<ext>``, ``<stem>_counts.json``).

    Delegates to nodetask itself so the runner can never expect other names than
    the ones the node writes (e.g. for ``name.`` or ``.hidden`` inputs).
    """
    return output_names(PurePosixPath(node_name).name)


def task_output_prefix(job_id: str, task_id: str) -> str:
    return f"{job_id}/{task_id}/"


def validate_command_template(template: str) -> None:
    """``{input}`` is required, ``{output_dir}`` optional; nothing else may be a field."""
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise UsageError(f"--command: {exc} (write {{{{ and }}}} for literal braces)") from None
    unknown = names - {"input", "output_dir"}
    if unknown:
        raise UsageError(f"--command: unknown placeholder(s) {', '.join(sorted(unknown))}")
    if "input" not in names:
        raise UsageError("--command must contain the {input} placeholder")


def file_task(item: PlannedInput, opts: PlanOptions) -> TaskSpec:
    """The task that processes one input file."""
    node_path = f"{NODE_INPUT_DIR}/{safe_node_name(item.relpath)}"
    resources = [ResourceFileSpec(file_path=node_path, http_url=item.blob_url)]
    if opts.command_template is not None:
        command = opts.command_template.format(
            input=shlex.quote(node_path), output_dir=shlex.quote(NODE_OUTPUT_DIR)
        )
        # The output directory must exist before a user command writes to it; Batch does not
        # run command lines through a shell, so we ask for one explicitly.
        command_line = f"/bin/sh -c {shlex.quote(f'mkdir -p {NODE_OUTPUT_DIR} && {command}')}"
    else:
        resources.append(ResourceFileSpec(file_path=NODE_CODE_FILE, http_url=opts.code_url))
        command_line = shlex.join(
            [
                *NODE_PYTHON,
                NODE_CODE_FILE,
                "--filepath",
                node_path,
                "--numwords",
                str(opts.numwords),
                "--output-dir",
                NODE_OUTPUT_DIR,
            ]
        )
    return TaskSpec(
        id=item.task_id,
        display_name=item.relpath[:_MAX_DISPLAY_NAME],
        command_line=command_line,
        resource_files=tuple(resources),
        output_files=(_outputs(opts, item.task_id),),
        max_task_retry_count=opts.retries,
        max_wall_clock_time=opts.max_wall_clock,
        satisfies_dependents_on_failure=opts.allow_failures and opts.command_template is None,
    )


#: How many counts files one merge task reads. Each is a per-blob resource file of
#: at most about 800 bytes (a 255-character file name, a 64-character job id, a
#: user-delegation SAS), and Batch refuses a task over 1 MB: 1,000 of them serialize
#: to about 0.8 MB (tests/runner/test_tasks.py checks it). A job with more files is
#: merged in two levels: ``merge-1..merge-K`` each merge a group of this many
#: consecutive tasks, and ``merge`` merges their results.
MERGE_GROUP_SIZE = 500
#: The largest group ``--merge-group-size`` accepts.
MAX_MERGE_GROUP_SIZE = 1000
_GROUP_PREFIX = "merge-"


@dataclass(frozen=True, slots=True)
class DeltaSources:
    """What a delta merge (:mod:`runner.delta_merge`) reads besides its sources' counts: the
    cached corpus counts it starts from (``base``) and the cached counts it takes away
    (``subtract``), blobs of the output container; the result's inputs in order (``order``,
    a JSON list in the input container)."""

    base: str
    subtract: tuple[str, ...]
    order: str

    def to_json(self) -> dict[str, object]:
        return {"base": self.base, "subtract": list(self.subtract), "order": self.order}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> DeltaSources:
        subtract = data["subtract"]
        if not isinstance(subtract, list):
            raise ValueError("deltaMerge.subtract must be a list")
        return cls(str(data["base"]), tuple(str(s) for s in subtract), str(data["order"]))


@dataclass(frozen=True, slots=True)
class MergeStep:
    """One merge task: its id, the task ids whose counts it reads (and depends on)."""

    task_id: str
    sources: tuple[str, ...]
    source_range: tuple[int, int] | None = None
    #: The Batch tasks it waits for when they are not its sources (packed files).
    depends_on: tuple[str, ...] | None = None
    #: A delta merge: the one ``merge`` of a job, from a cached corpus (``sources``: the files
    #: new or changed since it).
    delta: DeltaSources | None = None
    #: The final merge of a job grouped by reads (:func:`merge_steps_by_reads`): the blob (input
    #: container, :func:`merge_order_blob`) listing the result's inputs as the grouping by files
    #: orders them, read as ``order.json`` and passed as ``nodetask merge --order``.
    order: str | None = None

    @property
    def is_final(self) -> bool:
        return self.task_id == MERGE_TASK_ID

    @property
    def dependencies(self) -> tuple[str, ...]:
        return self.sources if self.depends_on is None else self.depends_on


def merge_steps(n_files: int, group_size: int = MERGE_GROUP_SIZE) -> list[MergeStep]:
    """The merge tasks of an ``n_files`` job, in dependency order (the final ``merge`` last).

    Up to ``group_size`` files: one ``merge`` reading tasks ``1..n``. Above: groups
    ``merge-k`` of ``group_size`` consecutive task ids, then ``merge`` reading the groups,
    so at most ``group_size ** 2`` files. Deterministic, so the manifest (which records
    ``group_size``) reproduces it.
    """
    if n_files < 1:
        return []
    if group_size < 2:
        raise ValueError("a merge group needs at least 2 files")
    if n_files > group_size**2:
        raise ValueError(f"{n_files} files need more than two merge levels of {group_size}")
    if n_files <= group_size:
        return [MergeStep(MERGE_TASK_ID, tuple(str(i) for i in range(1, n_files + 1)), (1, n_files))]
    groups = []
    for k, first in enumerate(range(1, n_files + 1, group_size), start=1):
        last = min(first + group_size - 1, n_files)
        groups.append(
            MergeStep(f"{_GROUP_PREFIX}{k}", tuple(str(i) for i in range(first, last + 1)), (first, last))
        )
    return [*groups, MergeStep(MERGE_TASK_ID, tuple(g.task_id for g in groups))]


def merge_steps_by_reads(units: Sequence[str], group_size: int = MERGE_GROUP_SIZE) -> list[MergeStep]:
    """The merge tasks of a job whose file ``i`` (id ``str(i)``) is read from ``units[i - 1]``: a
    bundled pack's id (its one results tar, whatever number of its files a merge takes) or the
    file's own id (its counts blob). A merge's resource files are one per distinct unit, so
    groups count units, not files: consecutive file ids while at most ``group_size`` units, a
    pack whose files two groups share read by both (each for its own files). One ``merge``
    when every unit fits; else ``merge-k`` and ``merge`` as :func:`merge_steps` (more groups
    than ``group_size``: ``ValueError``; not within ``group_size ** 2`` files, which ``submit``
    refuses). Deterministic, from the manifest."""
    n_files = len(units)
    if n_files < 1:
        return []
    if group_size < 2:
        raise ValueError("a merge group needs at least 2 files")
    bounds: list[tuple[int, int]] = []
    first, seen = 1, set[str]()
    for fid, unit in enumerate(units, start=1):
        if unit not in seen and len(seen) == group_size:
            bounds.append((first, fid - 1))
            first, seen = fid, set()
        seen.add(unit)
    bounds.append((first, n_files))
    if len(bounds) == 1:
        return [MergeStep(MERGE_TASK_ID, tuple(str(i) for i in range(1, n_files + 1)), (1, n_files))]
    if len(bounds) > group_size:
        raise ValueError(f"{n_files} files need more than two merge levels of {group_size} reads")
    groups = [
        MergeStep(f"{_GROUP_PREFIX}{k}", tuple(str(i) for i in range(a, b + 1)), (a, b))
        for k, (a, b) in enumerate(bounds, start=1)
    ]
    return [*groups, MergeStep(MERGE_TASK_ID, tuple(g.task_id for g in groups))]


def merge_order_blob(job_id: str) -> str:
    """The blob (input container) listing a merge's result inputs in order: a delta merge's, or
    the final merge's of a job grouped by reads (``MergeStep.order``)."""
    return f"{job_id}/merge-order.json"


def counts_blob(job_id: str, task_id: str, node_name: str | None = None) -> str:
    """The blob holding a task's counts JSON: a per-file task's (``node_name`` given) or a merge's."""
    name = report_names(node_name)[1] if node_name is not None else CORPUS_COUNTS
    return f"{task_output_prefix(job_id, task_id)}{name}"


def merge_task(
    step: MergeStep,
    opts: PlanOptions,
    counts_urls: Mapping[str, str],
    bundle_urls: Mapping[str, tuple[str, str]] | None = None,
) -> TaskSpec:
    """A merge: reads its sources' ``*_counts.json`` (one read-only URL per blob), writes their sum.

    Each source lands flat in ``counts/<task id>_counts.json``, and nodetask's
    merge reads that directory: no shell, no listing, and the SAS reaches only
    this job's counts files. The result (``corpus_OUTPUT.txt``, ``corpus_counts.json``
    with the full counts) is what the next level reads, or the corpus result.

    It depends on ``step.dependencies`` (:func:`merge_dependencies`: the tasks that carry its
    sources; a cached file has none) but reads every source's counts. ``bundle_urls`` maps a
    file id of a bundled pack to ``(pack id, URL of its results tar)``: such sources are read
    from the tar, one resource file per pack (module docstring).
    """
    bundle_urls = bundle_urls or {}
    missing = [tid for tid in step.sources if tid not in counts_urls and tid not in bundle_urls]
    if missing:
        raise ValueError(f"no counts URL for task(s) {', '.join(missing[:5])}")
    argv = [*NODE_PYTHON, NODE_CODE_FILE, "merge", "--numwords", str(opts.numwords)]
    argv += [NODE_MERGE_INPUT_DIR, "--output-dir", NODE_OUTPUT_DIR]
    argv += ["--allow-missing"] if opts.allow_failures else []
    delta_files, delta_argv = _delta_inputs(step.delta, counts_urls) if step.delta else ([], [])
    if step.order is not None and step.delta is None:
        if step.order not in counts_urls:
            raise ValueError(f"no URL for the merge's order blob {step.order}")
        delta_files.append(ResourceFileSpec(file_path=_DELTA_ORDER, http_url=counts_urls[step.order]))
        delta_argv += ["--order", _DELTA_ORDER]
    argv += delta_argv
    final = step.is_final
    return TaskSpec(
        id=step.task_id,
        display_name=("corpus-wide top words" if final else f"partial merge of tasks {_span(step)}")[
            :_MAX_DISPLAY_NAME
        ],
        command_line=shlex.join(argv),
        resource_files=(
            ResourceFileSpec(file_path=NODE_CODE_FILE, http_url=opts.code_url),
            *_merge_sources(step, counts_urls, bundle_urls),
            *delta_files,
        ),
        output_files=(_outputs(opts, step.task_id),),
        max_task_retry_count=opts.retries,
        max_wall_clock_time=opts.max_wall_clock,
        depends_on_range=step.source_range,
        depends_on_ids=() if step.source_range is not None else step.dependencies,
        satisfies_dependents_on_failure=opts.allow_failures and not final,
    )


_DELTA_BASE = "base/" + CORPUS_COUNTS
_DELTA_SUBTRACT = "subtract"
_DELTA_ORDER = "order.json"


def _delta_inputs(delta: DeltaSources, urls: Mapping[str, str]) -> tuple[list[ResourceFileSpec], list[str]]:
    """A delta merge's extra resource files (``urls`` by blob name) and arguments."""
    blobs = [delta.base, *delta.subtract, delta.order]
    missing = [b for b in blobs if b not in urls]
    if missing:
        raise ValueError(f"no URL for the delta merge's blob(s) {', '.join(missing[:5])}")
    files = [ResourceFileSpec(file_path=_DELTA_BASE, http_url=urls[delta.base])]
    files += [
        ResourceFileSpec(file_path=f"{_DELTA_SUBTRACT}/{i}{COUNTS_SUFFIX}", http_url=urls[blob])
        for i, blob in enumerate(delta.subtract, start=1)
    ]
    files.append(ResourceFileSpec(file_path=_DELTA_ORDER, http_url=urls[delta.order]))
    argv = ["--base", _DELTA_BASE, "--order", _DELTA_ORDER]
    argv += ["--subtract", _DELTA_SUBTRACT] if delta.subtract else []
    return files, argv


def _merge_sources(
    step: MergeStep, counts_urls: Mapping[str, str], bundle_urls: Mapping[str, tuple[str, str]]
) -> list[ResourceFileSpec]:
    """A merge's inputs: each plain source's counts blob, and each bundled pack's results tar
    once, named with the range of the step's file ids it holds."""
    out: list[ResourceFileSpec] = []
    spans: dict[str, list[int]] = {}
    for tid in step.sources:
        if tid in bundle_urls:
            spans.setdefault(bundle_urls[tid][0], []).append(int(tid))
        else:
            path = f"{NODE_MERGE_INPUT_DIR}/{tid}{COUNTS_SUFFIX}"
            out.append(ResourceFileSpec(file_path=path, http_url=counts_urls[tid]))
    urls = {pack: url for pack, url in bundle_urls.values()}
    for pack, ids in spans.items():
        path = f"{NODE_MERGE_INPUT_DIR}/{pack}.{min(ids)}-{max(ids)}.tar"
        out.append(ResourceFileSpec(file_path=path, http_url=urls[pack]))
    return out


def pack_task(
    task: PlannedTask, items: Mapping[str, PlannedInput], opts: PlanOptions, input_tar_url: str | None = None
) -> TaskSpec:
    """A packed task: ``nodetask pack`` over its files, each file's results at its own prefix;
    with ``input_tar_url`` (a bundled pack) its files come from that tar and its results go into
    one results tar (module docstring)."""
    files = [items[fid] for fid in task.file_ids]
    resources = [ResourceFileSpec(file_path=NODE_CODE_FILE, http_url=opts.code_url)]
    argv = [*NODE_PYTHON, NODE_CODE_FILE, "pack", "--in-dir", NODE_INPUT_DIR, "--output-dir", NODE_OUTPUT_DIR]
    outputs = OutputFileSpec(
        pattern=f"{NODE_OUTPUT_DIR}/**/*", container_url=opts.output_container_url, path=opts.job_id
    )
    if input_tar_url is not None:
        resources.append(ResourceFileSpec(file_path=NODE_INPUT_TAR, http_url=input_tar_url))
        argv += ["--in-tar", NODE_INPUT_TAR, "--results-tar"]
        outputs = OutputFileSpec(
            pattern=f"{NODE_OUTPUT_DIR}/{RESULTS_TAR}",
            container_url=opts.output_container_url,
            path=f"{task_output_prefix(opts.job_id, task.task_id)}{RESULTS_TAR}",
        )
    else:
        resources += [
            ResourceFileSpec(
                file_path=f"{NODE_INPUT_DIR}/{f.task_id}/{safe_node_name(f.relpath)}", http_url=f.blob_url
            )
            for f in files
        ]
    if opts.command_template is not None:
        argv += ["--command", opts.command_template]
    else:
        argv += ["--numwords", str(opts.numwords)]
    first = files[0].relpath
    return TaskSpec(
        id=task.task_id,
        display_name=f"{len(files)} files: {first} ..."[:_MAX_DISPLAY_NAME],
        command_line=shlex.join(argv),
        resource_files=tuple(resources),
        output_files=(outputs,),
        max_task_retry_count=opts.retries,
        max_wall_clock_time=opts.max_wall_clock,
        satisfies_dependents_on_failure=opts.allow_failures and opts.command_template is None,
        blocks_dependents_at_staging=opts.allow_failures and opts.command_template is None,
    )


def merge_dependencies(step: MergeStep, task_of: Mapping[str, str] | None) -> MergeStep:
    """``step`` with its dependencies on the Batch tasks that carry its source files.

    ``task_of`` maps file id -> Batch task id (``None``: one task per file, as the
    step already says). Files with no task (nothing to run) add no dependency.
    """
    if step.delta is not None and task_of is not None:  # its sources: the files that changed
        return replace(
            step, depends_on=tuple(dict.fromkeys(task_of[f] for f in step.sources if f in task_of))
        )
    if task_of is None or step.source_range is None:
        return step
    deps = list(dict.fromkeys(task_of[fid] for fid in step.sources if fid in task_of))
    if deps == list(step.sources):
        return step
    return replace(step, source_range=None, depends_on=tuple(deps))


def _span(step: MergeStep) -> str:
    """The sources of a merge in words: ``1..500`` for consecutive file ids (whatever tasks
    carry them), else the ids listed."""
    if step.source_range is not None:
        return f"{step.source_range[0]}..{step.source_range[1]}"
    ids = step.sources
    if all(i.isdigit() for i in ids) and [int(i) for i in ids] == list(
        range(int(ids[0]), int(ids[0]) + len(ids))
    ):
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(ids)


def _outputs(opts: PlanOptions, task_id: str) -> OutputFileSpec:
    return OutputFileSpec(
        pattern=f"{NODE_OUTPUT_DIR}/**/*",
        container_url=opts.output_container_url,
        path=task_output_prefix(opts.job_id, task_id).rstrip("/"),
    )


def plan(
    inputs: list[PlannedInput],
    opts: PlanOptions,
    *,
    aggregate: bool,
    counts_urls: Mapping[str, str] | None,
    merge_group_size: int = MERGE_GROUP_SIZE,
    n_files: int | None = None,
    tasks: list[PlannedTask] | None = None,
    delta: MergeStep | None = None,
    bundles: Mapping[str, tuple[str, str]] | None = None,
    steps: Sequence[MergeStep] | None = None,
) -> list[TaskSpec]:
    """All tasks of a job: the per-file work, plus the merge tasks when ``aggregate``.

    ``inputs`` are the files that run; ``n_files`` (default ``len(inputs)``) is how many
    files the job has. When some do not run (their results are already in place, from
    the result cache), ``inputs`` keep their ids (not contiguous then) and the merges
    still read every file's counts but depend only on the tasks that carry ``inputs``.
    ``tasks`` (:func:`runner.packing.group`) says which Batch task carries which file ids;
    ``None`` is one task per input. ``counts_urls`` maps every file id a merge reads
    (see :func:`merge_steps`) to a read-only URL of its counts blob (:func:`counts_blob`).
    ``delta``: the one merge step instead (:mod:`runner.delta_merge`); ``counts_urls`` then
    also maps each blob its :class:`DeltaSources` names to a read URL.
    ``bundles`` (:mod:`runner.pack_tars`): pack id -> ``(URL of its input tar, URL of its
    results tar)`` for bundled packs; their files need no ``counts_urls``.
    ``steps``: the merge steps (before dependencies: :meth:`runner.manifest.Manifest.merge_plan`)
    instead of :func:`merge_steps` of ``n_files`` and ``merge_group_size``.
    """
    total = len(inputs) if n_files is None else n_files
    items = {i.task_id: i for i in inputs}
    bundles = bundles or {}
    if tasks is None:
        tasks = [PlannedTask(i.task_id, (i.task_id,)) for i in inputs]
    specs = [
        file_task(items[t.file_ids[0]], opts)
        if t.file_ids == (t.task_id,)
        else pack_task(t, items, opts, bundles[t.task_id][0] if t.task_id in bundles else None)
        for t in tasks
    ]
    tar_of = {
        fid: (t.task_id, bundles[t.task_id][1]) for t in tasks if t.task_id in bundles for fid in t.file_ids
    }
    if aggregate and opts.command_template is None:
        if counts_urls is None:
            raise ValueError("the aggregate needs a read URL of every counts blob it merges")
        task_of = {fid: t.task_id for t in tasks for fid in t.file_ids}
        steps = [
            merge_dependencies(s, task_of)
            for s in (
                [delta] if delta else steps if steps is not None else merge_steps(total, merge_group_size)
            )
        ]
        specs += [merge_task(step, opts, counts_urls, tar_of) for step in steps]
    if opts.identity_id is not None:
        specs = [through_identity(spec, opts.identity_id) for spec in specs]
    return specs


def through_identity(spec: TaskSpec, identity_id: str) -> TaskSpec:
    """``spec`` with every resource file and output destination reached as the pool identity
    ``identity_id``; its URLs must be plain ones (a SAS in one is a programming error)."""
    urls = [r.http_url or r.container_url or "" for r in spec.resource_files]
    urls += [o.container_url for o in spec.output_files]
    if any("sig=" in url for url in urls):
        raise ValueError(f"task {spec.id}: a URL carries a SAS although the pool identity reaches it")
    return replace(
        spec,
        resource_files=tuple(replace(r, identity_id=identity_id) for r in spec.resource_files),
        output_files=tuple(replace(o, identity_id=identity_id) for o in spec.output_files),
    )


def placeholder(missing: list[tuple[str, str]]) -> bytes:
    """What stands in for a counts blob until its task writes it (``--allow-failures``): the
    ``(task id, input)`` pairs it would have held, read by ``nodetask merge --allow-missing``."""
    return json.dumps({"missing": [{"task": t, "input": i} for t, i in missing]}).encode()
