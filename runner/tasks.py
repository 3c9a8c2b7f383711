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
* The aggregate task ``merge`` depends on ``1..N``. Batch's default applies
  when a per-file task fails: the dependency is not satisfied and the merge
  stays blocked. The runner detects that state (all per-file tasks completed,
  at least one failed, merge not completed) and reports the aggregate as
  *skipped* rather than waiting: a corpus-wide result computed from part of
  the corpus would look complete and be wrong.
* ``--command TEMPLATE``: ``{input}`` and ``{output_dir}`` are replaced by the
  shlex-quoted node paths; there is no aggregate; everything the command
  writes under the output directory comes back.
"""

from __future__ import annotations

import re
import shlex
import string
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath

from nodetask.results import output_names
from runner.errors import UsageError

MERGE_TASK_ID = "merge"
NODE_CODE_FILE = "nodetask.pyz"
NODE_INPUT_DIR = "in"
NODE_OUTPUT_DIR = "out"
NODE_MERGE_INPUT_DIR = "counts"
_SAFE = re.compile(r"[^\w.\-]", re.ASCII)
_MAX_DISPLAY_NAME = 1024


@dataclass(frozen=True)
class ResourceFileSpec:
    """A file (``http_url``) or a container prefix (``container_url`` + ``blob_prefix``)."""

    file_path: str
    http_url: str | None = None
    container_url: str | None = None
    blob_prefix: str | None = None


@dataclass(frozen=True)
class OutputFileSpec:
    """Files matching ``pattern`` go to ``container_url`` under ``path``."""

    pattern: str
    container_url: str
    path: str


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class PlannedInput:
    """An input as the plan needs it: task id, relative path, SAS URL of its blob."""

    task_id: str
    relpath: str
    blob_url: str


@dataclass(frozen=True)
class PlanOptions:
    job_id: str
    numwords: int
    retries: int
    max_wall_clock: timedelta | None
    code_url: str
    output_container_url: str
    command_template: str | None = None


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
                "python3",
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
    )


#: Above this many inputs the merge's per-blob resource files would push the task
#: past Batch's 1 MB request limit; it then reads the job's prefix with a container SAS.
MAX_PER_BLOB_MERGE_INPUTS = 1500


@dataclass(frozen=True)
class MergeInputs:
    """Where the merge reads the per-file counts: one read-only URL per blob, or a container SAS.

    ``blob_urls`` (task id, URL) is preferred: that SAS reaches only this job's
    counts files. ``container_url`` (read+list on the output container) is the
    fallback for jobs with more than :data:`MAX_PER_BLOB_MERGE_INPUTS` files.
    """

    blob_urls: tuple[tuple[str, str], ...] = ()
    container_url: str | None = None


def merge_task(n_files: int, opts: PlanOptions, counts: MergeInputs | str) -> TaskSpec:
    """The aggregate: reads every per-file ``*_counts.json`` of the job, writes the corpus top N.

    The job's output prefix is downloaded under ``counts/`` (Batch keeps the
    blob names' directories), so the counts files are found with ``find``,
    which needs a shell. Every name in that tree is safe for word splitting:
    the job id, numeric task ids and :func:`safe_node_name` names contain no
    whitespace and no glob character.
    """
    merge = shlex.join(["python3", NODE_CODE_FILE, "merge", "--numwords", str(opts.numwords)])
    # Double quotes inside, so the whole script needs one plain pair of single quotes.
    find = (
        f'find {NODE_MERGE_INPUT_DIR} -type f -name "*_counts.json" '
        f'! -path "{NODE_MERGE_INPUT_DIR}/*/{MERGE_TASK_ID}/*"'
    )
    script = f"{merge} $({find}) --output-dir {NODE_OUTPUT_DIR}"
    return TaskSpec(
        id=MERGE_TASK_ID,
        display_name="corpus-wide top words",
        command_line=f"/bin/sh -c {shlex.quote(script)}",
        resource_files=(
            ResourceFileSpec(file_path=NODE_CODE_FILE, http_url=opts.code_url),
            *_merge_resources(opts, counts),
        ),
        output_files=(_outputs(opts, MERGE_TASK_ID),),
        max_task_retry_count=opts.retries,
        max_wall_clock_time=opts.max_wall_clock,
        depends_on_range=(1, n_files),
    )


def _merge_resources(opts: PlanOptions, counts: MergeInputs | str) -> list[ResourceFileSpec]:
    if isinstance(counts, str):
        counts = MergeInputs(container_url=counts)
    if counts.blob_urls:
        return [
            ResourceFileSpec(file_path=f"{NODE_MERGE_INPUT_DIR}/{tid}/{tid}_counts.json", http_url=url)
            for tid, url in counts.blob_urls
        ]
    if counts.container_url is None:
        raise ValueError("the merge needs its counts files' URLs or a container URL")
    return [
        ResourceFileSpec(
            file_path=NODE_MERGE_INPUT_DIR, container_url=counts.container_url, blob_prefix=f"{opts.job_id}/"
        )
    ]


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
    counts_container_url: MergeInputs | str | None,
) -> list[TaskSpec]:
    """All tasks of a job: one per input, plus the merge when ``aggregate``."""
    specs = [file_task(item, opts) for item in inputs]
    if aggregate and opts.command_template is None:
        if counts_container_url is None:
            raise ValueError("the aggregate needs a read+list URL of the output container")
        specs.append(merge_task(len(inputs), opts, counts_container_url))
    return specs
